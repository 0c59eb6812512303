"""Resource limits for templates: how much work a render may do, how big a value may get.

Templates are written by marketers, so a typo (or a probe) must fail fast with a
clear message, never hang a Lambda or exhaust its memory. Three guards:

- a **work budget** per render: loop iterations (and the items ``sum`` adds) and
  calls (macros, methods, ``loop()``, the filters and tests ``map``, ``select``
  and the like run for each item) are counted, and a render stops past
  :data:`MAX_STEPS` or after :data:`MAX_SECONDS`, looked at before every call
  (nested ``range(100000)`` loops, exponential macros, ``|map('wordwrap', 1)``
  over long texts);
- a **size limit** on values a template builds (:data:`MAX_VALUE` characters or
  items): checked *before* operations that can amplify their input (``*``,
  ``%``, ``~``, ``join``, ``replace``, ``center``, ``indent``, ``format``,
  ``int.to_bytes``...) by estimating the result, and after every filter and
  method call; what they build is also counted, :data:`MAX_BUILT` in all per
  render, so that many values under the limit cannot fill the memory together;
- a cap on **integers** (:data:`MAX_INT_BITS`) so ``*`` and ``**`` cannot
  build numbers that take minutes to compute or print.

The budget lives in a context variable that :class:`~chalicelib.render.Renderer`
sets around each render (:func:`render_budget`).
"""

from __future__ import annotations

import contextlib
import re
import string
import time
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Final

from jinja2.exceptions import SecurityError

MAX_STEPS: Final = 250_000  # loop iterations + calls in one render
MAX_SECONDS: Final = 2.0  # wall clock for one render
MAX_VALUE: Final = 1_000_000  # characters (or items) in one value a template builds
# characters (or items) that filters, method calls and operators build in one render,
# all values together: `range(5000)|map('center', 100000)|list` is 5000 values under
# MAX_VALUE each, and 500 MB held at once
MAX_BUILT: Final = 20 * MAX_VALUE
MAX_WIDTH: Final = 100_000  # field width, padding, precision, repeat count
MAX_INT_BITS: Final = 12_000  # about 3,600 decimal digits
MAX_JSON_INDENT: Final = 16
# textwrap splits a long word by slicing what is left, chunk by chunk: quadratic in
# the text (1,000,000 characters at width 1: 15 s in one call, which the clock cannot
# interrupt); 100,000 takes at most a quarter of a second.
MAX_WRAP_TEXT: Final = 100_000

_SMALL: Final = 16  # size counted for a number, a date, any other scalar


# Calls nested inside one another (a macro calling a macro...). Python's own limit
# would stop a recursive macro too, but at a depth that depends on how deep the
# caller's stack already is (the sender, simulate, a forked worker): this one is the
# same everywhere, far below it.
MAX_CALL_DEPTH: Final = 64


@dataclass(slots=True)
class Budget:
    steps: int = 0
    deadline: float = field(default_factory=lambda: time.monotonic() + MAX_SECONDS)
    depth: int = 0
    built: int = 0  # characters built so far (see MAX_BUILT)


TOO_DEEP = (f"calls and includes nested deeper than {MAX_CALL_DEPTH} levels (a macro or "
            f"template calling itself?)")


@contextlib.contextmanager
def nested_call() -> Iterator[None]:
    """Count one level of call nesting; SecurityError past ``MAX_CALL_DEPTH``."""
    budget = _BUDGET.get()
    if budget is None:
        yield
        return
    if budget.depth >= MAX_CALL_DEPTH:
        raise SecurityError(TOO_DEEP)
    budget.depth += 1
    try:
        yield
    finally:
        budget.depth -= 1


_BUDGET: ContextVar[Budget | None] = ContextVar("aftercare_render_budget", default=None)


@contextlib.contextmanager
def render_budget() -> Iterator[Budget]:
    """Give the renders inside one shared budget (nested uses share the outer one)."""
    current = _BUDGET.get()
    if current is not None:
        yield current
        return
    budget = Budget()
    token = _BUDGET.set(budget)
    try:
        yield budget
    finally:
        _BUDGET.reset(token)


def tick(steps: int = 1, *, call: bool = False) -> None:
    """Count work; raise SecurityError when the render has done too much.

    A loop iteration (cheap) looks at the clock every 1024 steps; a ``call`` (a
    method, or a filter ``map`` runs, which may take long: ``wordwrap`` of a long
    text) looks each time (see :func:`check_clock`).
    """
    budget = _BUDGET.get()
    if budget is None:
        return
    budget.steps += steps
    if budget.steps > MAX_STEPS:
        raise SecurityError(
            f"the template does too much work (over {MAX_STEPS:,} loop iterations and calls)"
        )
    if call or budget.steps & 1023 == 0:
        _check_deadline(budget)


def check_clock() -> None:
    """Raise SecurityError past the render's time limit. Called before every call (of
    a filter, a method, a macro), so a render stops within about :data:`MAX_SECONDS`
    plus one call, wherever the calls come from (``|map``, ``|select``...)."""
    budget = _BUDGET.get()
    if budget is not None:
        _check_deadline(budget)


def _check_deadline(budget: Budget) -> None:
    if time.monotonic() > budget.deadline:
        # The same refusal as the step count (which of the two trips first depends
        # on the machine's load): one message, so a report does not flicker.
        raise SecurityError(
            f"the template does too much work (over {MAX_SECONDS:g}s to render)")


def counted(iterable: Any) -> Iterator[Any]:
    """Iterate, counting each item against the render's budget (every ``{% for %}``)."""
    for item in iterable:
        tick()
        yield item


# ----------------------------------------------------------------- sizes


def size(value: Any, limit: int = MAX_VALUE) -> int:
    """Roughly how many characters ``value`` prints as; stops counting past ``limit``."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, bool) or value is None:
        return 5
    if isinstance(value, int):
        return value.bit_length() // 3 + 1
    if isinstance(value, (bytes, bytearray)):
        return len(value)
    total = 0
    stack: list[Any] = []
    if isinstance(value, dict):
        stack.extend(value.keys())
        stack.extend(value.values())
    elif isinstance(value, (list, tuple, set, frozenset)):
        stack.extend(value)
    else:
        return _SMALL
    seen = 0
    while stack:
        item = stack.pop()
        seen += 1
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
            total += 2
        elif isinstance(item, (list, tuple, set, frozenset)):
            stack.extend(item)
            total += 2
        else:
            total += size(item) + 2
        if total > limit or seen > limit:
            return max(total, seen)
    return total


def check_size(value: Any, what: str = "value", *, built: bool = True) -> Any:
    """Return ``value``; raise SecurityError when it is over :data:`MAX_VALUE`, or
    when the template ``built`` it (a filter's, a call's or an operator's result,
    not a value printed) and the render has built over :data:`MAX_BUILT` in all."""
    if isinstance(value, (str, list, tuple, dict, set, frozenset, bytes)):
        measured = size(value)
        if measured > MAX_VALUE:
            raise SecurityError(
                f"the {what} would be too large (over {MAX_VALUE:,} characters)")
        if built:
            count_built(measured)
    if isinstance(value, int) and not isinstance(value, bool) and (
        value.bit_length() > MAX_INT_BITS
    ):
        raise SecurityError("the number would be too large")
    return value


def count_built(measured: int) -> None:
    """Count what the template built (``measured`` characters) against :data:`MAX_BUILT`."""
    budget = _BUDGET.get()
    if budget is None:
        return
    budget.built += measured
    if budget.built > MAX_BUILT:
        raise SecurityError(f"the template builds too much text (over {MAX_BUILT:,} "
                            "characters in all)")


def refuse_over(estimate: int, what: str) -> None:
    if estimate > MAX_VALUE:
        raise SecurityError(f"{what} would build a value too large (over {MAX_VALUE:,} characters)")


def check_width(value: Any, what: str) -> None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > MAX_WIDTH:
        raise SecurityError(f"{what} {value} is too large (at most {MAX_WIDTH:,})")


# ------------------------------------------------------- format strings

_DIGITS: Final = frozenset("0123456789")
_PAREN: Final = re.compile("[()]")


def _number(fmt: str, start: int) -> tuple[str, int]:
    """A printf width or precision at ``start`` (``*`` or digits) and where it ends."""
    if start < len(fmt) and fmt[start] == "*":
        return "*", start + 1
    end = start
    while end < len(fmt) and fmt[end] in _DIGITS:
        end += 1
    return fmt[start:end], end


def _printf_fields(fmt: str) -> Iterator[tuple[str, str]]:
    """``(width, precision)`` of each conversion in ``fmt``, as Python's ``%`` reads it.

    Parsed the way CPython does, in one pass: a mapping key may hold nested
    parentheses (``%(a(b))9s``), which a regular expression stopping at the first
    ``)`` would miss, and a key that is never closed ends the scan (Python then
    refuses the whole format) instead of being searched for at every ``%(``.
    """
    end = len(fmt)
    i = fmt.find("%")
    while i >= 0:
        j = i + 1
        if j < end and fmt[j] == "(":
            depth, j = 1, j + 1
            while depth:
                paren = _PAREN.search(fmt, j)
                if paren is None:
                    return  # incomplete format key: Python raises
                depth += 1 if paren.group() == "(" else -1
                j = paren.end()
        while j < end and fmt[j] in "#0- +":
            j += 1
        width, j = _number(fmt, j)
        precision = ""
        if j < end and fmt[j] == ".":
            precision, j = _number(fmt, j + 1)
        if j < end and fmt[j] in "hlL":
            j += 1
        yield width, precision
        i = fmt.find("%", j + 1)  # past the conversion type (``%%`` included)


def _shown(digits: str) -> str:
    return digits if len(digits) <= 12 else digits[:12] + "..."


def _field_size(part: str, text: str) -> int:
    """What one width or precision adds to the output; refuses one over MAX_WIDTH."""
    if len(text) > 6 or int(text) > MAX_WIDTH:
        raise SecurityError(f"format {part} {_shown(text)} is too large "
                            f"(at most {MAX_WIDTH:,})")
    return int(text)


def check_printf(fmt: str, args: Any) -> None:
    """Refuse ``'%1000000000s' % x`` and estimate what ``fmt % args`` builds.

    The estimate counts each field's width and precision (a thousand
    ``%99999s`` fields build 100 million characters from a one-character value).
    """
    fields = 0
    padding = 0
    for width, precision in _printf_fields(fmt):
        for part, text in (("width", width), ("precision", precision)):
            if text == "*":
                raise SecurityError(f"a computed {part} ('*') is not allowed in a format")
            if text:
                padding += _field_size(part, text)
        fields += 1
    refuse_over(len(fmt) + fields * size(args) + padding, "this format")


def check_format(fmt: str, args: Any) -> None:
    """Refuse ``'{0:>1000000000}'.format(x)`` and estimate what it builds."""
    fields = 0
    padding = 0
    try:
        parsed = list(string.Formatter().parse(fmt))
    except ValueError:
        return  # str.format raises the same error with a clearer message
    for _literal, name, spec, _conversion in parsed:
        if name is None:
            continue
        fields += 1
        if spec and "{" in spec:
            raise SecurityError("a computed width or precision is not allowed in a format")
        for digits in re.findall(r"\d+", spec or ""):
            padding += _field_size("width", digits)
    refuse_over(len(fmt) + fields * size(args) + padding, "this format")


# ------------------------------------------- operations that can amplify input


def _count_new(text: str, old: str, count: Any) -> int:
    found = len(text) + 1 if old == "" else text.count(old)
    if isinstance(count, int) and not isinstance(count, bool) and count >= 0:
        found = min(found, count)
    return found


def check_string_operation(name: str, text: Any, args: tuple[Any, ...],
                           kwargs: dict[str, Any]) -> None:
    """Estimate what a str method or a filter of the same name builds; refuse if too big.

    ``name`` is a ``str`` method (``replace``, ``center``...) or a Jinja filter
    (``indent``, ``wordwrap``, ``batch``...); ``text`` is the string (or value)
    it applies to and ``args``/``kwargs`` the rest of the call.
    """
    def arg(index: int, key: str, default: Any = None) -> Any:
        if len(args) > index:
            return args[index]
        return kwargs.get(key, default)

    length = size(text)
    if name in {"center", "ljust", "rjust", "zfill"}:
        check_width(arg(0, "width", 0), "width")
    elif name == "expandtabs":
        tabsize = arg(0, "tabsize", 8)
        check_width(tabsize, "tab size")
        if isinstance(tabsize, int):
            refuse_over(length * max(tabsize, 1), "expandtabs")
    elif name == "replace":
        old, new = arg(0, "old", ""), arg(1, "new", "")
        if isinstance(text, str) and isinstance(old, str) and isinstance(new, str):
            found = _count_new(text, old, arg(2, "count"))
            refuse_over(length + found * max(len(new) - len(old), 0), "replace")
    elif name == "indent":
        width = arg(0, "width", 4)
        check_width(width, "indent width")
        pad = width if isinstance(width, int) else size(width)
        lines = text.count("\n") + 1 if isinstance(text, str) else 1
        refuse_over(length + lines * pad, "indent")
    elif name == "wordwrap":
        if length > MAX_WRAP_TEXT:
            raise SecurityError(f"wordwrap of a text of {length:,} characters is refused "
                                f"(at most {MAX_WRAP_TEXT:,})")
        width = arg(0, "width", 79)
        wrap = arg(2, "wrapstring", "\n")
        lines = length // max(width, 1) + 1 if isinstance(width, int) else length
        refuse_over(length + lines * size(wrap if wrap is not None else "\n"), "wordwrap")
    elif name in {"batch", "slice"}:
        check_width(arg(0, "linecount" if name == "batch" else "slices", 0), f"{name} size")
    elif name == "tojson":
        indent = arg(0, "indent")
        if isinstance(indent, int) and indent > MAX_JSON_INDENT:
            raise SecurityError(f"tojson indent {indent} is too large (at most {MAX_JSON_INDENT})")


def check_join(separator: Any, items: list[Any]) -> None:
    refuse_over(sum(size(item) for item in items) + size(separator) * max(len(items) - 1, 0),
                "join")


def check_repeat(left: Any, right: Any) -> None:
    """``*``: a string or list times a count, or two integers."""
    for seq, times in ((left, right), (right, left)):
        if isinstance(seq, (str, list, tuple)) and isinstance(times, int):
            if len(seq) * times > MAX_WIDTH:
                raise SecurityError("repetition would build a value too large")
            refuse_over(size(seq) * max(times, 0), "repetition")
    if _is_int(left) and _is_int(right) and (
        left.bit_length() + right.bit_length() > MAX_INT_BITS
    ):
        raise SecurityError("the number would be too large")


def check_power(left: Any, right: Any, max_exponent: int) -> None:
    if _is_int(right) and abs(right) > max_exponent:
        raise SecurityError("exponent too large")
    if _is_int(left) and _is_int(right) and right > 0 and abs(left) > 1 and (
        left.bit_length() * right > MAX_INT_BITS
    ):
        raise SecurityError("the number would be too large")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
