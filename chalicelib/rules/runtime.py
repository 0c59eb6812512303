"""Runtime helpers that compiled rules call.

Every function here implements the full JSON Logic semantics of one operation for
any input, so the *safe* variant of a compiled rule is built from them alone.  The
*fast* variant inlines plain Python operations and falls back to the safe variant
when Python raises (see :mod:`chalicelib.rules.codegen`).

Coercions follow the JavaScript reference closely, with the stricter choices of
the newer JSON Logic suites: a value that is not a number where a number is needed
raises ``RuleEvaluationError("NaN")`` instead of producing ``NaN``.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Iterator, Sequence
from decimal import Decimal
from typing import Any

from .errors import INVALID_ARGUMENTS, RuleEvaluationError

Number = int | float

_LOG = logging.getLogger("chalicelib.rules")

# Default for ``.get`` of an object on the way to a value in generated code; never
# mutated and never returned.
EMPTY: dict[str, Any] = {}

NUMERIC_TYPES = frozenset({int, float, bool})

_INT_RE = re.compile(r"[+-]?[0-9]+")
# Unambiguous (the digits before and after the point cannot trade places), so a long
# run of digits that is not a number fails in linear time, not polynomial.
_DEC_RE = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_JS_SPACE = " \t\n\r\x0b\x0c\xa0\ufeff\u2028\u2029"


def nan_error(value: Any) -> RuleEvaluationError:
    return RuleEvaluationError("NaN", f"{describe(value)} is not a number")


def invalid_arguments(message: str) -> RuleEvaluationError:
    return RuleEvaluationError(INVALID_ARGUMENTS, message)


def describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, str):
        return f"string {value[:40]!r}"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


# --------------------------------------------------------------------------- truth


def truthy(value: Any) -> bool:
    """JSON Logic truthiness.

    ``false``, ``null``, ``0``, ``""`` and ``[]`` are falsy; everything else,
    including ``"0"`` and every object (even ``{}``), is truthy.

    Examples
    --------
    >>> truthy([]), truthy("0"), truthy({})
    (False, True, True)
    """
    if isinstance(value, dict):
        return True
    return bool(value)


# ------------------------------------------------------------------------ numbers


def parse_number(text: str) -> Number | None:
    """``Number(text)`` as JavaScript reads it, or None where that gives NaN."""
    s = text.strip(_JS_SPACE)
    if not s:
        return 0
    if _INT_RE.fullmatch(s):
        try:
            return int(s)
        except ValueError:  # more digits than Python converts: as JavaScript, a float
            return float(s)
    if _DEC_RE.fullmatch(s):
        return float(s)
    if s in ("Infinity", "+Infinity"):
        return math.inf
    if s == "-Infinity":
        return -math.inf
    if len(s) > 2 and s[0] == "0" and s[1] in "xXoObB" and "_" not in s:
        try:
            return int(s, 0)
        except ValueError:
            return None
    return None


def to_number(value: Any) -> Number:
    """Coerce to a number: null → 0, booleans → 0/1, numeric strings; else NaN."""
    cls = value.__class__
    if cls is int or cls is float:
        return value
    if cls is bool:
        return 1 if value else 0
    if value is None:
        return 0
    if cls is str:
        number = parse_number(value)
        if number is None:
            raise nan_error(value)
        return number
    if isinstance(value, bool):
        return 1 if value else 0
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, Decimal) and value.is_finite():
        return int(value) if value == value.to_integral_value() else float(value)
    raise nan_error(value)


def _checked(result: Number) -> Number:
    if result != result:  # NaN, e.g. Infinity - Infinity
        raise RuleEvaluationError("NaN", "arithmetic result is not a number")
    return result


def _double(value: Number) -> float:
    """``value`` as JavaScript holds it: an integer beyond a double's range is infinite."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def _as_doubles(args: Sequence[Any]) -> list[float]:
    return [_double(to_number(arg)) for arg in args]


# Integers are exact in Python; mixed with a float, one too large for a double
# overflows (``10**400 + 0.5``), where JavaScript, whose numbers are all doubles,
# has Infinity. The helpers then compute again as JavaScript does.


def add(args: Sequence[Any]) -> Number:
    total: Number = 0
    try:
        for arg in args:
            total += to_number(arg)
    except OverflowError:
        total = 0.0
        for number in _as_doubles(args):
            total += number
    return _checked(total)


def subtract(args: Sequence[Any]) -> Number:
    if not args:
        raise invalid_arguments("'-' needs at least one argument")
    try:
        return _subtract([to_number(arg) for arg in args])
    except OverflowError:
        return _subtract(_as_doubles(args))


def _subtract(numbers: list[Number] | list[float]) -> Number:
    result = numbers[0]
    if len(numbers) == 1:
        return _checked(-result)
    for number in numbers[1:]:
        result -= number
    return _checked(result)


def multiply(args: Sequence[Any]) -> Number:
    product: Number = 1
    try:
        for arg in args:
            product *= to_number(arg)
            if product.__class__ is int and product.bit_length() > 1024:
                # Past a double's range, as JavaScript's Infinity (a `reduce` that
                # squares its accumulator must not grow a gigabit integer).
                raise OverflowError
    except OverflowError:
        product = 1.0
        for number in _as_doubles(args):
            product *= number
    return _checked(product)


def divide(args: Sequence[Any]) -> Number:
    if not args:
        raise invalid_arguments("'/' needs at least one argument")
    try:
        return _divide([to_number(arg) for arg in args])
    except OverflowError:
        return _divide(_as_doubles(args))


def _divide(numbers: list[Number] | list[float]) -> Number:
    if len(numbers) == 1:
        result: Number = 1
        rest = numbers
    else:
        result = numbers[0]
        rest = numbers[1:]
    for divisor in rest:
        if divisor == 0:
            raise RuleEvaluationError("NaN", "division by zero")
        result = result / divisor
    return _checked(result)


def _js_mod(a: Number, b: Number) -> Number:
    if a.__class__ is int and b.__class__ is int:
        rest = abs(a) % abs(b)
        return -rest if a < 0 else rest
    a, b = _double(a), _double(b)
    if math.isinf(a):  # JavaScript: Infinity % x is NaN, x % Infinity is x
        raise RuleEvaluationError("NaN", "modulo of an infinite number")
    if math.isinf(b):
        return a
    return math.fmod(a, b)


def modulo(args: Sequence[Any]) -> Number:
    if len(args) < 2:
        raise invalid_arguments("'%' needs at least two arguments")
    result = to_number(args[0])
    for arg in args[1:]:
        divisor = to_number(arg)
        if divisor == 0:
            raise RuleEvaluationError("NaN", "modulo by zero")
        result = _js_mod(result, divisor)
    return _checked(result)


def maximum(args: Sequence[Any]) -> Number | None:
    numbers = [to_number(arg) for arg in args]
    return max(numbers) if numbers else None


def minimum(args: Sequence[Any]) -> Number | None:
    numbers = [to_number(arg) for arg in args]
    return min(numbers) if numbers else None


# -------------------------------------------------------------------- comparisons


def _number_pair(a: Any, b: Any) -> tuple[Number, Number] | None:
    """Both sides as numbers; None when null meets a non-numeric string.

    A missing value never matches a text: ``null == "gold"`` is false and
    ``null < "gold"`` is false, rather than an error.
    """
    if a is None and isinstance(b, str) and parse_number(b) is None:
        return None
    if b is None and isinstance(a, str) and parse_number(a) is None:
        return None
    return to_number(a), to_number(b)


def loose_eq(a: Any, b: Any) -> bool:
    """``==``: strings compare as strings, anything else as numbers."""
    if isinstance(a, str) and isinstance(b, str):
        return a == b
    if a is None and b is None:
        return True
    pair = _number_pair(a, b)
    return pair is not None and pair[0] == pair[1]


def loose_ne(a: Any, b: Any) -> bool:
    return not loose_eq(a, b)


def strict_eq(a: Any, b: Any) -> bool:
    """``===``: same JSON type and same value (1 === 1.0; true !== 1)."""
    a_cls, b_cls = a.__class__, b.__class__
    if a_cls is bool or b_cls is bool:
        return a is b
    if a_cls in NUMERIC_TYPES or isinstance(a, Decimal):
        if not (b_cls in NUMERIC_TYPES or isinstance(b, Decimal)):
            return False
        if a_cls is Decimal or b_cls is Decimal:  # as the doubles they stand for
            return bool(to_number(a) == to_number(b))
        return bool(a == b)
    if isinstance(a, str):
        return isinstance(b, str) and a == b
    if a_cls is list or a_cls is dict:
        return _same_json(a, b)
    return a_cls is b_cls and a == b


def _same_json(a: Any, b: Any) -> bool:
    """Arrays and objects compared by value, each element strictly (Python's ``==``
    says ``[1] == [True]``); without recursion, however deep."""
    stack = [(a, b)]
    while stack:
        x, y = stack.pop()
        x_cls = x.__class__
        if x_cls is list:
            if y.__class__ is not list or len(x) != len(y):
                return False
            stack.extend(zip(x, y, strict=True))
        elif x_cls is dict:
            if y.__class__ is not dict or x.keys() != y.keys():
                return False
            stack.extend((x[key], y[key]) for key in x)
        elif not strict_eq(x, y):
            return False
    return True


def json_key(value: Any) -> Any:
    """A hashable key equal for values ``===`` calls equal (``1`` and ``1.0``; not
    ``true`` and ``1``, nor ``[1]`` and ``[true]``): sets of arrays and objects."""
    cls = value.__class__
    if cls is bool or value is None:
        return (cls, value)
    if cls in NUMERIC_TYPES or isinstance(value, Decimal):
        return ("n", to_number(value))
    if cls is list:
        return ("l", tuple(json_key(item) for item in value))
    if cls is dict:
        return ("d", frozenset((key, json_key(item)) for key, item in value.items()))
    return (cls, value)


def strict_ne(a: Any, b: Any) -> bool:
    return not strict_eq(a, b)


def less(a: Any, b: Any) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        return a < b
    pair = _number_pair(a, b)
    return pair is not None and pair[0] < pair[1]


def less_equal(a: Any, b: Any) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        return a <= b
    pair = _number_pair(a, b)
    return pair is not None and pair[0] <= pair[1]


def greater(a: Any, b: Any) -> bool:
    return less(b, a)


def greater_equal(a: Any, b: Any) -> bool:
    return less_equal(b, a)


# ------------------------------------------------------------------------ strings


def _js_float(value: float) -> str:
    if value != value:
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value.is_integer() and abs(value) < 9007199254740992.0:  # 2**53: exact digits
        return str(int(value))
    text = repr(value)
    if "e" not in text:
        return text.removesuffix(".0")  # a whole number from 2**53 to 1e16
    mantissa, exponent = text.split("e")
    exp = int(exponent)
    if -7 < exp < 21:
        digits = mantissa.replace(".", "").lstrip("-")
        sign = "-" if value < 0 else ""
        point = mantissa.lstrip("-").find(".")
        whole = (point if point >= 0 else len(digits)) + exp
        if whole <= 0:
            return f"{sign}0.{'0' * -whole}{digits}"
        if whole >= len(digits):  # shortest digits, zero-padded: 2**60 is 1152921504606847000
            return f"{sign}{digits}{'0' * (whole - len(digits))}"
        return f"{sign}{digits[:whole]}.{digits[whole:]}"
    return f"{mantissa}e{'+' if exp > 0 else '-'}{abs(exp)}"


def js_string(value: Any, null: str = "") -> str:
    """``String(value)`` as ``cat`` uses it (null becomes ``null``'s text)."""
    cls = value.__class__
    if cls is str:
        return value
    if value is None:
        return null
    if cls is bool:
        return "true" if value else "false"
    if cls is int:
        try:
            return str(value)
        except ValueError:  # more digits than Python prints: JavaScript's Infinity
            return _js_float(_double(value))
    if cls is float:
        return _js_float(value)
    if isinstance(value, list):
        return _js_list(value)
    if isinstance(value, dict):
        return "[object Object]"
    if isinstance(value, Decimal):
        return js_string(to_number(value))
    return str(value)


_END = object()


def _js_list(value: list[Any]) -> str:
    """``String(array)``: the items' strings joined with commas, nested arrays alike
    (``[[], [1]]`` is ``",1"``); without recursion, however deep the array."""
    out: list[str] = []
    stack = [iter(value)]
    first = [True]
    while stack:
        item = next(stack[-1], _END)
        if item is _END:
            stack.pop()
            first.pop()
            continue
        if not first[-1]:
            out.append(",")
        first[-1] = False
        if isinstance(item, list):
            stack.append(iter(item))
            first.append(True)
        else:
            out.append(js_string(item))
    return "".join(out)


def concat(args: Sequence[Any]) -> str:
    return "".join([js_string(arg) for arg in args])


def _integer(value: Any) -> int:
    number = to_number(value)
    if number.__class__ is float:
        if number != number:  # NaN: JavaScript's ToIntegerOrInfinity gives 0
            return 0
        if math.isinf(number):
            return 1 << 62 if number > 0 else -(1 << 62)
    return int(number)


def substr(args: Sequence[Any]) -> str:
    """``substr(source, start[, length])``; negative length drops from the end."""
    if not args:
        return ""
    text = js_string(args[0])
    size = len(text)
    start = _integer(args[1]) if len(args) > 1 else 0
    start = max(size + start, 0) if start < 0 else min(start, size)
    if len(args) < 3 or args[2] is None:
        return text[start:]
    length = _integer(args[2])
    if length < 0:
        rest = text[start:]
        return rest[: max(len(rest) + length, 0)]
    return text[start : start + length]


def contains(needle: Any, haystack: Any) -> bool:
    """``in``: substring of a string, or strict membership in an array."""
    if isinstance(haystack, str):
        if not isinstance(needle, str):
            needle = js_string(needle, "null")
        return needle in haystack
    if not isinstance(haystack, list):
        return False
    cls = needle.__class__
    if cls is str or needle is None:
        return needle in haystack
    if cls is bool:
        return any(item is needle for item in haystack)
    if cls in NUMERIC_TYPES or isinstance(needle, Decimal):
        return any(strict_eq(item, needle) for item in haystack)
    if cls is list or cls is dict:
        return any(_same_json(needle, item) for item in haystack)
    return needle in haystack


def contains_str(needle: Any, options: frozenset[str]) -> bool:
    """``in`` against a constant array of strings."""
    return needle.__class__ is str and needle in options


# ------------------------------------------------------------------------- arrays


def spread(value: Any) -> list[Any]:
    """Arguments given as one operation: its array result, or that one value."""
    return value if isinstance(value, list) else [value]


def merge(args: Sequence[Any]) -> list[Any]:
    out: list[Any] = []
    for arg in args:
        if isinstance(arg, list):
            out.extend(arg)
        else:
            out.append(arg)
    return out


def coalesce(args: Sequence[Any]) -> Any:
    for arg in args:
        if arg is not None:
            return arg
    return None


# Iterator helpers take the compiled body as a function of the item, or of the
# item and its index when the body reads the index (``{"val": [[1], "index"]}``).
# Bodies of filter/all/some/none return a value whose Python truth is the JSON
# Logic truth.


def it_map(items: Any, fn: Callable[..., Any], indexed: bool = False) -> list[Any]:
    if not isinstance(items, list):
        return []
    if indexed:
        return [fn(item, index) for index, item in enumerate(items)]
    return list(map(fn, items))


def it_filter(items: Any, fn: Callable[..., Any], indexed: bool = False) -> list[Any]:
    if not isinstance(items, list):
        return []
    if indexed:
        return [item for index, item in enumerate(items) if fn(item, index)]
    return list(filter(fn, items))


def it_reduce(
    items: Any, fn: Callable[..., Any], initial: Any, indexed: bool = False
) -> Any:
    if not isinstance(items, list):
        return initial
    accumulator = initial
    if indexed:
        for index, item in enumerate(items):
            accumulator = fn(item, accumulator, index)
    else:
        for item in items:
            accumulator = fn(item, accumulator)
    return accumulator


def _require_list(items: Any, op: str) -> list[Any]:
    if not isinstance(items, list):
        raise invalid_arguments(f"'{op}' needs an array, got {describe(items)}")
    return items


def _indexed(items: list[Any], fn: Callable[..., Any]) -> Iterator[Any]:
    return (fn(item, index) for index, item in enumerate(items))


def it_all(items: Any, fn: Callable[..., Any], indexed: bool = False) -> bool:
    if items.__class__ is not list:
        items = _require_list(items, "all")
    if not items:
        return False
    return all(_indexed(items, fn) if indexed else map(fn, items))


def it_some(items: Any, fn: Callable[..., Any], indexed: bool = False) -> bool:
    if items.__class__ is not list:
        items = _require_list(items, "some")
    return any(_indexed(items, fn) if indexed else map(fn, items))


def it_none(items: Any, fn: Callable[..., Any], indexed: bool = False) -> bool:
    if items.__class__ is not list:
        items = _require_list(items, "none")
    return not any(_indexed(items, fn) if indexed else map(fn, items))


# ------------------------------------------------------------------- data access


def _step(current: Any, key: str) -> tuple[bool, Any]:
    """One path step: (found, value)."""
    if isinstance(current, dict):
        if key in current:
            return True, current[key]
        return False, None
    # An index as JavaScript reads one: "01" is not 1 (orders["01"] is undefined).
    # No list is longer than 19 digits' worth (and int() refuses over 4,300 digits).
    if isinstance(current, list) and len(key) < 20 and key.isdigit() and key.isascii() and (
            key[0] != "0" or key == "0"):
        index = int(key)
        if index < len(current):
            return True, current[index]
    return False, None


def var(context: Any, segments: Sequence[str], default: Any) -> Any:
    """Classic ``var``: missing key or null on the way gives the default."""
    current = context
    for key in segments:
        if current is None:
            return default
        found, current = _step(current, key)
        if not found:
            return default
    return current


def split_var_path(path: Any) -> list[str] | None:
    """Segments of a ``var`` path; None for the whole context."""
    if path is None or path == "" or path == []:
        return None
    if isinstance(path, str):
        return path.split(".")
    return js_string(path).split(".")


def var_dynamic(context: Any, path: Any, default: Any) -> Any:
    """``var`` whose path is computed by an operation."""
    if isinstance(path, list):
        if len(path) > 1:
            default = path[1]
        path = path[0] if path else None
    segments = split_var_path(path)
    if segments is None:
        return context
    return var(context, segments, default)


def _component(value: Any) -> str:
    return value if isinstance(value, str) else js_string(value)


def val(context: Any, components: Sequence[Any]) -> Any:
    """``val``: path given component by component, missing gives null."""
    current = context
    for component in components:
        found, current = _step(current, _component(component))
        if not found or current is None:
            return None
    return current


def val_dynamic(context: Any, spec: Any) -> Any:
    if spec is None:
        return context
    return val(context, spec if isinstance(spec, list) else [spec])


def exists(context: Any, components: Sequence[Any]) -> bool:
    current = context
    for component in components:
        found, current = _step(current, _component(component))
        if not found:
            return False
    return True


def exists_dynamic(context: Any, spec: Any) -> bool:
    return exists(context, spec if isinstance(spec, list) else [spec])


def missing(context: Any, args: Sequence[Any]) -> list[Any]:
    keys = args[0] if args and isinstance(args[0], list) else args
    out = []
    for key in keys:
        value = var_dynamic(context, key, None)
        if value is None or value == "":
            out.append(key)
    return out


def missing_some(context: Any, need: Any, keys: Any) -> list[Any]:
    keys = keys if isinstance(keys, list) else [keys]
    absent = missing(context, [keys])
    if len(keys) - len(absent) >= to_number(need):
        return []
    return absent


# -------------------------------------------------------------------- errors, log


def throw(value: Any) -> Any:
    if isinstance(value, list):
        value = value[0] if value else None
    if isinstance(value, dict):
        kind = value.get("type")
        raise RuleEvaluationError(
            js_string(kind, "null") if kind is not None else "Error", value=value
        )
    raise RuleEvaluationError(js_string(value, "null"))


def attempt(body: Callable[[], Any], handlers: Sequence[Callable[[Any], Any]]) -> Any:
    """``try``: the first branch that does not fail; a handler sees the error."""
    try:
        return body()
    except RuleEvaluationError as exc:
        error = exc
    for handler in handlers:
        try:
            return handler(error.value)
        except RuleEvaluationError as exc:
            error = exc
    raise error


def log(value: Any) -> Any:
    """JSON Logic's ``log``: the value, unchanged. Only its type is logged (at DEBUG):
    rules run on customer profiles, and values may be personal data."""
    _LOG.debug("rule log: a %s", type(value).__name__)
    return value
