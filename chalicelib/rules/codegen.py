"""Compile a JSON Logic rule into one Python function.

A rule is compiled once into Python source, ``compile()``-d and ``exec``-uted with
the runtime helpers as its globals.  Evaluating it is one call of that function:
no tree walk, no dispatch on operator names.

Two variants of the rule are generated:

* the **safe** variant calls a runtime helper with the full JSON Logic semantics
  for every operation, for any input;
* the **fast** variant inlines plain Python where Python gives the JSON Logic
  answer for the usual inputs (``data['customer'].get('attributes', {}).get('tier')``
  for ``var``: a subscript for the context's own key, always there in the engine's
  contexts, ``.get`` for the objects below it, which may be absent; ``x >= 3`` for
  a comparison with a number, ``x in frozenset`` for ``in`` a constant list, ...)
  and is written so that, for every other input, Python raises ``TypeError``,
  ``AttributeError``, ``KeyError`` or an ``ArithmeticError`` instead of giving a
  wrong answer: ``None.get``, ``"5" >= 3``, ``1 / 0``, a context without the key.
  The fast function catches those and re-evaluates with the safe variant.  Rules
  are pure (``log`` aside), so this is invisible to callers.  The data is plain
  JSON (dicts, lists, strings, numbers, booleans, None), as the engine builds it: a
  ``defaultdict`` context would answer a subscript that ``.get`` does not.  (The
  subscript of the context's key runs 5% faster over the benchmark's rules than
  ``.get(key, {})``; subscripting deeper objects too gained nothing more there and
  would deoptimise on every absent one, as ``customer.consent.email`` without an
  email record.)

The fast variant also shares repeated data lookups: ``customer.tier`` and
``customer.order_count`` fetch ``customer`` once, through assignment expressions
whose availability follows Python's evaluation order (a value computed in one
branch of an ``if`` is not reused in the other).
"""

from __future__ import annotations

import contextlib
import math
import re
import warnings
from collections.abc import Callable, Iterator
from typing import Any

from . import dates, runtime
from .errors import INVALID_ARGUMENTS, UNKNOWN_OPERATOR, RuleError
from .model import (
    ANY,
    BOOL,
    DICT,
    PLAIN_TRUTH,
    Expr,
    Frame,
    child_index,
    child_key,
    literal,
)

Rule = Callable[[Any], Any]

MAX_DEPTH = 64
# Marks the assignment of a shared lookup: ``(\0_v1\0data['customer'])``.  NUL never
# appears in generated code otherwise (``repr`` escapes it in literals).
_SHARED = re.compile("\0(_v[0-9]+)\0")
DEOPT = (TypeError, AttributeError, ArithmeticError, KeyError)

# Names the generated code may use, bound once in every rule's globals.
RUNTIME: dict[str, Any] = {
    "_E": runtime.EMPTY,
    "_NUMT": runtime.NUMERIC_TYPES,
    "_DEOPT": DEOPT,
    "_add": runtime.add,
    "_sub": runtime.subtract,
    "_mul": runtime.multiply,
    "_div": runtime.divide,
    "_mod": runtime.modulo,
    "_max": runtime.maximum,
    "_min": runtime.minimum,
    "_eq": runtime.loose_eq,
    "_ne": runtime.loose_ne,
    "_seq": runtime.strict_eq,
    "_sne": runtime.strict_ne,
    "_lt": runtime.less,
    "_le": runtime.less_equal,
    "_gt": runtime.greater,
    "_ge": runtime.greater_equal,
    "_cat": runtime.concat,
    "_substr": runtime.substr,
    "_in": runtime.contains,
    "_in_strs": runtime.contains_str,
    "_spread": runtime.spread,
    "_merge": runtime.merge,
    "_coalesce": runtime.coalesce,
    "_map": runtime.it_map,
    "_filter": runtime.it_filter,
    "_reduce": runtime.it_reduce,
    "_all": runtime.it_all,
    "_some": runtime.it_some,
    "_none": runtime.it_none,
    "_var": runtime.var,
    "_var_dyn": runtime.var_dynamic,
    "_val": runtime.val,
    "_val_dyn": runtime.val_dynamic,
    "_exists": runtime.exists,
    "_exists_dyn": runtime.exists_dynamic,
    "_missing": runtime.missing,
    "_missing_some": runtime.missing_some,
    "_throw": runtime.throw,
    "_try": runtime.attempt,
    "_log": runtime.log,
    "_days_since": dates.days_since,
    "_days_until": dates.days_until,
    "_years_since": dates.years_since,
    "_is_anniversary": dates.is_anniversary,
    "_contains_any": dates.contains_any,
}


class Compiler:
    """Turns a rule into one Python expression over the name ``data``.

    Operator emitters (:mod:`chalicelib.rules.operators`) call back into it for
    their arguments and for the shared machinery: temporaries, constants,
    branches, data frames.
    """

    def __init__(
        self, *, fast: bool, consts: dict[str, Any], collect: bool = False
    ) -> None:
        self.fast = fast
        self.consts = consts
        self.errors: list[RuleError] | None = [] if collect else None
        self.optimistic = False
        self.frames: list[Frame] = [Frame("data")]
        self._avail: dict[tuple[str, tuple[str, ...], bool], str] = {}
        # What each lookup remembered replaced, in order: leaving a branch undoes
        # its own entries (a copy of the table per branch would be quadratic in an
        # ``and`` of many operands, each compiled in a nested branch).
        self._journal: list[tuple[tuple[str, tuple[str, ...], bool], str | None]] = []
        self._counter = 0
        self._depth = 0
        self._used: set[str] = set()

    # ----------------------------------------------------------------- plumbing

    @property
    def frame(self) -> Frame:
        return self.frames[-1]

    def tmp(self, prefix: str = "_t") -> str:
        self._counter += 1
        return f"{prefix}{self._counter}"

    def bind(self, value: Any, prefix: str = "_k") -> str:
        """Bind a constant object into the rule's globals; returns its name."""
        name = f"{prefix}{len(self.consts)}"
        self.consts[name] = value
        return name

    def assume(self) -> None:
        """Note that the fast code relies on the deopt fallback."""
        self.optimistic = True

    def fail(
        self, path: str, message: str, *, error_type: str | None = None
    ) -> Expr:
        error = RuleError(path, message, error_type=error_type or INVALID_ARGUMENTS)
        if self.errors is None:
            raise error
        self.errors.append(error)
        return literal(None)

    def _remember(self, key: tuple[str, tuple[str, ...], bool], name: str) -> None:
        self._journal.append((key, self._avail.get(key)))
        self._avail[key] = name

    def _forget_since(self, mark: int) -> None:
        journal, avail = self._journal, self._avail
        while len(journal) > mark:
            key, previous = journal.pop()
            if previous is None:
                del avail[key]
            else:
                avail[key] = previous

    @contextlib.contextmanager
    def branch(self) -> Iterator[None]:
        """Code that may not run: lookups it shares are forgotten after it."""
        mark = len(self._journal)
        try:
            yield
        finally:
            self._forget_since(mark)

    @contextlib.contextmanager
    def scope(self, frame: Frame | None = None) -> Iterator[None]:
        """A nested function (lambda) body, optionally with a new data frame."""
        mark = len(self._journal)
        if frame is not None:
            self.frames.append(frame)
        try:
            yield
        finally:
            if frame is not None:
                self.frames.pop()
            self._forget_since(mark)

    # ------------------------------------------------------------------- nodes

    def node(self, rule: Any, path: str) -> Expr:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                return self.fail(path, f"rule nested deeper than {MAX_DEPTH} levels")
            if isinstance(rule, dict):
                return self._operation(rule, path)
            if isinstance(rule, list):
                return self._array(rule, path)
            return self.data_literal(rule, path)
        finally:
            self._depth -= 1

    def _operation(self, rule: dict[Any, Any], path: str) -> Expr:
        from .operators import EMITTERS

        if not rule:
            return literal({})
        if len(rule) != 1:
            keys = ", ".join(repr(k) for k in rule)
            return self.fail(
                path,
                f"an operation has exactly one key, got {keys} "
                "(wrap literal objects in 'preserve')",
            )
        ((op, raw),) = rule.items()
        if not isinstance(op, str):
            return self.fail(path, f"object key {op!r} is not a string")
        op_path = child_key(path, op)
        emitter = EMITTERS.get(op)
        if emitter is None:
            return self.fail(
                op_path, f"unknown operator {op!r}", error_type=UNKNOWN_OPERATOR
            )
        return emitter(self, op, raw, op_path)

    def _array(self, rule: list[Any], path: str) -> Expr:
        items = [self.node(item, child_index(path, i)) for i, item in enumerate(rule)]
        if all(item.const for item in items):
            return literal([item.value for item in items])
        return Expr("[" + ", ".join(item.code for item in items) + "]", "list")

    def data_literal(self, value: Any, path: str) -> Expr:
        """A literal JSON value (checked to be JSON all the way down)."""
        problem = json_problem(value)
        if problem is not None:
            return self.fail(path, problem)
        return literal(value)

    # ---------------------------------------------------------- shared pieces

    def items(self, raw: Any, path: str) -> list[tuple[Any, str]]:
        """Argument nodes with their paths; a non-array is one argument."""
        if isinstance(raw, list):
            return [(item, child_index(path, i)) for i, item in enumerate(raw)]
        return [(raw, path)]

    def eager(self, raw: Any, path: str) -> list[Expr] | None:
        """Arguments that are all evaluated, in order; None when they are given
        as a single operation whose (array) result is the argument list."""
        if is_operation(raw):
            return None
        return [self.node(item, item_path) for item, item_path in self.items(raw, path)]

    def named(self, expr: Expr) -> tuple[str, str]:
        """(code for the first use, code for later uses) of a value used twice."""
        if expr.simple:
            return expr.code, expr.code
        if expr.name is not None:
            self._used.add(expr.name)
            return expr.code, expr.name
        name = self.tmp()
        return f"({name} := {expr.code})", name

    def truth(self, expr: Expr) -> str:
        """Code whose Python truth is the JSON Logic truth of ``expr``."""
        if expr.kind in PLAIN_TRUTH:
            return expr.code
        if expr.kind == DICT and expr.const:
            return "True"
        first, name = self.named(expr)
        return f"({first} or {name}.__class__ is dict)"

    def boolean(self, expr: Expr, *, negate: bool = False) -> Expr:
        """``!!expr`` (or ``!expr``) as an exact bool."""
        if expr.kind == BOOL:
            return Expr(f"(not {expr.code})" if negate else expr.code, BOOL)
        if expr.kind in PLAIN_TRUTH:
            return Expr(f"(not {expr.code})" if negate else f"(not not {expr.code})", BOOL)
        if expr.kind == DICT and expr.const:
            return literal(not negate)
        first, name = self.named(expr)
        if negate:
            return Expr(f"(not {first} and {name}.__class__ is not dict)", BOOL)
        return Expr(f"(not not {first} or {name}.__class__ is dict)", BOOL)

    def lookup(
        self,
        frame: Frame,
        segments: tuple[str, ...],
        default: Expr | None,
        *,
        classic: bool,
    ) -> Expr:
        """Read a path from a frame: classic ``var`` (with default) or ``val``."""
        base = frame.ctx
        if frame.fields and segments:
            field = frame.fields.get(segments[0])
            if field is None:
                return default if (classic and default is not None) else literal(None)
            base, segments = field, segments[1:]
        if not segments:
            return Expr(base, ANY, simple=base.isidentifier())
        if not self.fast:
            if classic:
                fallback = default.code if default is not None else "None"
                return Expr(f"_var({base}, {segments!r}, {fallback})")
            return Expr(f"_val({base}, {segments!r})")
        self.assume()
        return self._get_chain(base, segments, default)

    def _get_chain(
        self, base: str, segments: tuple[str, ...], default: Expr | None
    ) -> Expr:
        # Keys: (base, path, is_prefix).  A prefix defaults to the empty dict (so the
        # next ``.get`` works; the context's own key is subscripted: a missing one
        # raises KeyError, which deoptimises), a full path to None: they differ.
        last = len(segments) - 1
        known = self._avail.get((base, segments, False))
        if known is not None and (default is None or (default.const and default.value is None)):
            self._used.add(known)
            return Expr(known, ANY, simple=True)
        code, start = base, 0
        for cut in range(last, 0, -1):
            known = self._avail.get((base, segments[:cut], True))
            if known is not None:
                self._used.add(known)
                code, start = known, cut
                break
        name = ""
        for i in range(start, last + 1):
            key = segments[i]
            if i < last:
                # The root context's own keys (customer, event) are always there: a
                # subscript; deeper objects may be absent: .get with an empty dict.
                root = i == 0 and base == self.frames[0].ctx
                step = f"{code}[{key!r}]" if root else f"{code}.get({key!r}, _E)"
            elif default is not None and not (default.const and default.value is None):
                return Expr(f"{code}.get({key!r}, {default.code})")
            else:
                step = f"{code}.get({key!r})"
            name = self.tmp("_v")
            self._remember((base, segments[: i + 1], i < last), name)
            code = f"(\0{name}\0{step})"
        return Expr(code, ANY, name=name)

    def finish(self, code: str) -> str:
        """Drop the assignments of shared lookups that nothing reused."""

        def assignment(match: re.Match[str]) -> str:
            name = match.group(1)
            return f"{name} := " if name in self._used else ""

        return _SHARED.sub(assignment, code)


def is_operation(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1


def json_problem(value: Any, depth: int = 0) -> str | None:
    """Why ``value`` is not a JSON value (or is nested too deep), or None."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 1024:
        return "integer too large for a JSON number"
    if value is None or isinstance(value, (bool, int, str)):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{value!r} is not a JSON number"
    if depth >= MAX_DEPTH:
        return f"value nested deeper than {MAX_DEPTH} levels"
    if isinstance(value, list):
        for item in value:
            problem = json_problem(item, depth + 1)
            if problem is not None:
                return problem
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"object key {key!r} is not a string"
            problem = json_problem(item, depth + 1)
            if problem is not None:
                return problem
        return None
    return f"{type(value).__name__} is not a JSON value"


def _variants(rule: Any, path: str) -> tuple[str, str, bool, dict[str, Any]]:
    """(safe code, fast code, whether fast code needs the fallback, constants)."""
    consts: dict[str, Any] = {}
    safe = Compiler(fast=False, consts=consts)
    safe_code = safe.node(rule, path).code
    fast = Compiler(fast=True, consts=consts)
    fast_code = fast.finish(fast.node(rule, path).code)
    return safe_code, fast_code, fast.optimistic, consts


def generate(
    rule: Any, path: str = "$", *, fast_only: bool = False
) -> tuple[str, dict[str, Any]]:
    """Python source of the rule's functions and the constants they use.

    The source defines ``_rule_safe(data)`` and ``_rule(data)`` (and, with
    ``fast_only``, ``_rule_fast_only(data)``: the fast code without fallback).
    """
    safe_code, fast_code, optimistic, consts = _variants(rule, path)
    source = f"def _rule_safe(data):\n    return {safe_code}\n\n"
    if optimistic:
        source += (
            "def _rule(data):\n"
            "    try:\n"
            f"        return {fast_code}\n"
            "    except _DEOPT:\n"
            "        return _rule_safe(data)\n"
        )
    else:
        source += f"def _rule(data):\n    return {fast_code}\n"
    if fast_only:
        source += f"\ndef _rule_fast_only(data):\n    return {fast_code}\n"
    return source, consts


def _load(source: str, consts: dict[str, Any], path: str) -> dict[str, Any]:
    namespace: dict[str, Any] = dict(RUNTIME)
    namespace.update(consts)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)
            code = compile(source, f"<rule {path}>", "exec")
    except (SyntaxError, RecursionError, MemoryError) as exc:
        detail = f" ({exc})" if str(exc) else ""
        raise RuleError(path, "rule too complex to compile: too many operands in one "
                        f"'and', 'or', 'if' or '??', or nested too deeply{detail}") from exc
    exec(code, namespace)
    return namespace


def build(rule: Any, path: str = "$") -> tuple[Rule, str]:
    """Compile ``rule``; returns the callable and its generated source."""
    source, consts = generate(rule, path)
    function: Rule = _load(source, consts, path)["_rule"]
    return function, source


def build_variants(rule: Any, path: str = "$") -> tuple[Rule, Rule]:
    """(fast variant without its fallback, safe variant), for differential tests.

    The fast variant must give the safe variant's answer or raise one of
    ``DEOPT``.
    """
    source, consts = generate(rule, path, fast_only=True)
    namespace = _load(source, consts, path)
    return namespace["_rule_fast_only"], namespace["_rule_safe"]


def collect_errors(rule: Any, path: str = "$") -> list[RuleError]:
    compiler = Compiler(fast=False, consts={}, collect=True)
    compiler.node(rule, path)
    assert compiler.errors is not None
    if not compiler.errors:
        # A rule every node of which is fine can still be more than Python compiles
        # (thousands of 'or' operands): validation must say so, as loading would.
        try:
            build(rule, path)
        except RuleError as exc:
            return [exc]
    return compiler.errors
