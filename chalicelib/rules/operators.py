"""Code emitters, one per JSON Logic operator.

An emitter gets the compiler, the operator name, its raw (JSON) argument and the
JSON path of the operator, and returns an :class:`Expr`.  In the compiler's
*fast* mode it may inline plain Python, provided Python raises (rather than
answers wrongly) wherever JSON Logic differs; see :mod:`.codegen`.

Arguments must be compiled in the order Python will evaluate them, and code that
may not run is compiled inside ``c.branch()``: shared lookups depend on it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from . import runtime
from .codegen import is_operation, json_problem
from .errors import RuleEvaluationError
from .model import (
    ANY,
    BOOL,
    DICT,
    LIST,
    NULL,
    NUM,
    PLAIN_TRUTH,
    SCALAR,
    STR,
    Expr,
    Frame,
    child_index,
    json_shown,
    literal,
)

if TYPE_CHECKING:
    from .codegen import Compiler

Emitter = Callable[["Compiler", str, Any, str], Expr]
EMITTERS: dict[str, Emitter] = {}

NUMERIC = frozenset({NUM, BOOL})


def emitter(*names: str) -> Callable[[Emitter], Emitter]:
    def register(function: Emitter) -> Emitter:
        for name in names:
            EMITTERS[name] = function
        return function

    return register


def _tuple(exprs: list[Expr]) -> str:
    if len(exprs) == 1:
        return f"({exprs[0].code},)"
    return "(" + ", ".join(e.code for e in exprs) + ")"


def _common_kind(exprs: list[Expr]) -> str:
    kinds = {e.kind for e in exprs}
    return kinds.pop() if len(kinds) == 1 else ANY


def _need_array(c: Compiler, op: str, raw: Any, path: str) -> bool:
    if isinstance(raw, list):
        return True
    c.fail(path, f"'{op}' takes an array of arguments")
    return False


def _arity(c: Compiler, op: str, raw: Any, path: str, low: int, high: int) -> bool:
    count = len(raw) if isinstance(raw, list) else 1
    if low <= count <= high:
        return True
    expected = str(low) if low == high else f"{low} to {high}"
    if high > 99:  # "no limit", but a bound on the generated code
        expected = f"at least {low}" if count < low else f"at most {high}"
    c.fail(path, f"'{op}' takes {expected} argument(s), got {count}")
    return False


# ------------------------------------------------------------------ data access


def _ctx(c: Compiler) -> str:
    return c.frame.ctx


@emitter("var")
def _var(c: Compiler, op: str, raw: Any, path: str) -> Expr:
    default: Expr | None = None
    if isinstance(raw, list):
        if len(raw) > 2:
            return c.fail(path, "'var' takes a path and an optional default")
        spec, spec_path = (raw[0], child_index(path, 0)) if raw else (None, path)
    else:
        spec, spec_path = raw, path
    if is_operation(spec):
        dynamic = c.node(spec, spec_path)
        if isinstance(raw, list) and len(raw) == 2:
            default = c.node(raw[1], child_index(path, 1))
        fallback = default.code if default is not None else "None"
        return Expr(f"_var_dyn({_ctx(c)}, {dynamic.code}, {fallback})")
    if isinstance(raw, list) and len(raw) == 2:
        # Evaluated after the lookup: its shared names must not leak into it.
        with c.branch():
            default = c.node(raw[1], child_index(path, 1))
    segments = _var_segments(c, spec, spec_path)
    if segments is None:
        return c.lookup(c.frame, (), None, classic=True)
    return c.lookup(c.frame, segments, default, classic=True)


def _var_segments(c: Compiler, spec: Any, path: str) -> tuple[str, ...] | None:
    if spec is None or spec == "":
        return None
    if isinstance(spec, float) and spec.is_integer():
        spec = int(spec)
    if isinstance(spec, bool) or not isinstance(spec, (str, int)):
        c.fail(path, f"'var' path must be a string or an index, got {json_shown(spec)}")
        return ()
    if isinstance(spec, int):
        problem = json_problem(spec)
        if problem is not None:  # before str(): a huge one would not even convert
            c.fail(path, f"'var' index: {problem}")
            return ()
        if spec < 0:
            c.fail(path, f"'var' index must not be negative, got {spec}")
        return (str(spec),)
    segments = tuple(spec.split("."))
    if "" in segments:
        c.fail(path, f"malformed 'var' path {spec!r}: empty segment")
    return segments


def _scope_base(c: Compiler, level: int) -> tuple[Frame, bool]:
    """The frame ``level`` scopes up, and whether it is that frame's metadata."""
    up, meta = divmod(abs(level), 2)
    if up >= len(c.frames):
        return c.frames[0], False
    return c.frames[-1 - up], bool(meta)


@emitter("val")
def _val(c: Compiler, op: str, raw: Any, path: str) -> Expr:
    if is_operation(raw):
        dynamic = c.node(raw, path)
        return Expr(f"_val_dyn({_ctx(c)}, {dynamic.code})")
    parts = list(raw) if isinstance(raw, list) else ([] if raw is None else [raw])
    frame, meta = c.frame, False
    if parts and isinstance(parts[0], list):
        scope = parts.pop(0)
        if len(scope) != 1 or isinstance(scope[0], bool) or not isinstance(scope[0], int):
            return c.fail(child_index(path, 0), "scope must be [integer]")
        frame, meta = _scope_base(c, scope[0])
    if meta:
        if frame.index is None or parts[:1] not in ([], ["index"]) or len(parts) > 1:
            return literal(None)
        frame.index_used = True
        if not parts:
            return Expr(f"{{'index': {frame.index}}}", DICT)
        return Expr(frame.index, NUM, simple=True)
    if any(is_operation(p) or isinstance(p, list) for p in parts):
        exprs = [c.node(p, child_index(path, i)) for i, p in enumerate(parts)]
        return Expr(f"_val({frame.ctx}, {_tuple(exprs)})")
    segments: list[str] = []
    for i, part in enumerate(parts):
        if isinstance(part, bool) or not isinstance(part, (str, int)):
            return c.fail(child_index(path, i), f"'val' path part {part!r} is not a key")
        problem = json_problem(part)
        if problem is not None:
            return c.fail(child_index(path, i), f"'val' path part: {problem}")
        segments.append(part if isinstance(part, str) else str(part))
    return c.lookup(frame, tuple(segments), None, classic=False)


@emitter("exists")
def _exists(c: Compiler, op: str, raw: Any, path: str) -> Expr:
    if is_operation(raw):
        return Expr(f"_exists_dyn({_ctx(c)}, {c.node(raw, path).code})", BOOL)
    parts = raw if isinstance(raw, list) else [raw]
    exprs = [c.node(p, child_index(path, i)) for i, p in enumerate(parts)]
    return Expr(f"_exists({_ctx(c)}, {_tuple(exprs) if exprs else '()'})", BOOL)


@emitter("missing")
def _missing(c: Compiler, op: str, raw: Any, path: str) -> Expr:
    args = c.eager(raw, path)
    if args is None:
        args = [c.node(raw, path)]
    return Expr(f"_missing({_ctx(c)}, {_tuple(args) if args else '()'})", LIST)


@emitter("missing_some")
def _missing_some(c: Compiler, op: str, raw: Any, path: str) -> Expr:
    if not _need_array(c, op, raw, path) or not _arity(c, op, raw, path, 2, 2):
        return literal(None)
    need = c.node(raw[0], child_index(path, 0))
    keys = c.node(raw[1], child_index(path, 1))
    return Expr(f"_missing_some({_ctx(c)}, {need.code}, {keys.code})", LIST)


@emitter("preserve")
def _preserve(c: Compiler, op: str, raw: Any, path: str) -> Expr:
    return c.data_literal(raw, path)


# ------------------------------------------------------------------------ logic


@emitter("if", "?:")
def _if(c: Compiler, op: str, raw: Any, path: str) -> Expr:
    if not _need_array(c, op, raw, path):
        return literal(None)
    items = c.items(raw, path)
    if not items:
        return literal(None)
    if len(items) % 2 == 0:
        items.append((None, path))
    parts: list[str] = []
    results: list[Expr] = []
    with contextlib.ExitStack() as stack:
        for i in range(0, len(items) - 1, 2):
            test = c.truth(c.node(*items[i]))
            with c.branch():
                then = c.node(*items[i + 1])
            parts.append(f"{then.code} if {test} else")
            results.append(then)
            stack.enter_context(c.branch())
        last = c.node(*items[-1])
    if not parts:
        return last
    results.append(last)
    return Expr("(" + " ".join(parts) + f" {last.code})", _common_kind(results))


@emitter("and", "or")
def _and_or(c: Compiler, op: str, raw: Any, path: str) -> Expr:
    if not _need_array(c, op, raw, path):
        return literal(None)
    if not raw:
        return literal(False)
    exprs: list[Expr] = []
    with contextlib.ExitStack() as stack:
        for item, item_path in c.items(raw, path):
            exprs.append(c.node(item, item_path))
            stack.enter_context(c.branch())
    if len(exprs) == 1:
        return exprs[0]
    kind = _common_kind(exprs)
    if all(e.kind in PLAIN_TRUTH for e in exprs[:-1]):
        return Expr("(" + f" {op} ".join(e.code for e in exprs) + ")", kind)
    parts: list[str] = []
    for e in exprs[:-1]:
        if e.kind == DICT and e.const:  # always truthy, nothing to evaluate
            if op == "or":
                return Expr("(" + " ".join(parts) + f" {e.code})" if parts else e.code, ANY)
            continue
        first, name = c.named(e)
        if e.kind in PLAIN_TRUTH:
            test = f"not {first}" if op == "and" else first
        elif op == "and":
            test = f"(not {first} and {name}.__class__ is not dict)"
        else:
            test = f"({first} or {name}.__class__ is dict)"
        parts.append(f"{name} if {test} else")
    last = exprs[-1]
    if not parts:
        return last
    return Expr("(" + " ".join(parts) + f" {last.code})", kind)


@emitter("!", "!!")
def _not(c: Compiler, op: str, raw: Any, path: str) -> Expr:
    if isinstance(raw, list):
        if not raw:
            return literal(op == "!")
        if not _arity(c, op, raw, path, 1, 1):
            return literal(None)
    (item, item_path) = c.items(raw, path)[0]
    return c.boolean(c.node(item, item_path), negate=op == "!")


@emitter("??")
def _coalesce(c: Compiler, op: str, raw: Any, path: str) -> Expr:
    if is_operation(raw):
        return Expr(f"_coalesce(_spread({c.node(raw, path).code}))")
    exprs: list[Expr] = []
    with contextlib.ExitStack() as stack:
        for item, item_path in c.items(raw, path):
            exprs.append(c.node(item, item_path))
            stack.enter_context(c.branch())
    if not exprs:
        return literal(None)
    parts: list[str] = []
    for e in exprs[:-1]:
        if e.const:
            if e.value is None:
                continue
            return Expr("(" + " ".join(parts) + f" {e.code})" if parts else e.code, ANY)
        first, name = c.named(e)
        parts.append(f"{name} if {first} is not None else")
    if not parts:
        return exprs[-1]
    return Expr("(" + " ".join(parts) + f" {exprs[-1].code})", ANY)


# ------------------------------------------------------------------ comparisons

_ORDER_HELPERS = {"<": "_lt", "<=": "_le", ">": "_gt", ">=": "_ge"}
_ORDER_SAFE: dict[str, Callable[[Any, Any], bool]] = {
    "<": runtime.less,
    "<=": runtime.less_equal,
    ">": runtime.greater,
    ">=": runtime.greater_equal,
}


def _order_pair(c: Compiler, sym: str, a: Expr, b: Expr) -> Expr:
    helper = Expr(f"{_ORDER_HELPERS[sym]}({a.code}, {b.code})", BOOL)
    if not c.fast or (a.const and b.const):
        return helper
    if b.const or a.const:
        const, other = (b, a) if b.const else (a, b)
        if const.kind not in SCALAR or other.kind in (LIST, DICT):
            return helper

        def make(x: str) -> str:
            return f"{x} {sym} {const.code}" if b.const else f"{const.code} {sym} {x}"

        if other.kind in SCALAR:
            if (other.kind == STR) != (const.kind == STR):
                return helper
            return Expr(f"({make(other.code)})", BOOL)
        c.assume()
        try:
            args = (None, const.value) if b.const else (const.value, None)
            folded = repr(_ORDER_SAFE[sym](*args))
        except RuleEvaluationError:
            folded = f"{_ORDER_HELPERS[sym]}(None, {const.code})"
        first, name = c.named(other)
        return Expr(f"({make(name)} if {first} is not None else {folded})", BOOL)
    if a.kind in SCALAR and b.kind in SCALAR:
        if (a.kind == STR) != (b.kind == STR):
            return helper
        return Expr(f"({a.code} {sym} {b.code})", BOOL)
    if a.kind in SCALAR or b.kind in SCALAR:
        # The other side is a number/string or Python raises: lists, null, mixed.
        if a.kind in (LIST, DICT) or b.kind in (LIST, DICT):
            return helper
        c.assume()
        return Expr(f"({a.code} {sym} {b.code})", BOOL)
    return helper


def _loose_pair(c: Compiler, a: Expr, b: Expr) -> Expr:
    helper = Expr(f"_eq({a.code}, {b.code})", BOOL)
    if not c.fast or (a.const and b.const):
        return helper
    if not (a.const or b.const):
        if a.kind in SCALAR and a.kind == b.kind:
            return Expr(f"({a.code} == {b.code})", BOOL)
        if a.kind in NUMERIC and b.kind in NUMERIC:
            return Expr(f"({a.code} == {b.code})", BOOL)
        return helper
    const, other = (b, a) if b.const else (a, b)
    if const.kind == STR:
        if other.kind == STR:
            return Expr(f"({other.code} == {const.code})", BOOL)
        other_type = "{}.__class__ is not str"
    elif const.kind in NUMERIC:
        if other.kind in NUMERIC:
            return Expr(f"({other.code} == {const.code})", BOOL)
        other_type = "{}.__class__ not in _NUMT"
    else:
        return helper
    if other.kind != ANY:
        return helper
    # Python's == answers when it says yes, or when the type is the constant's;
    # otherwise coercion decides.
    first, name = c.named(other)
    call = f"_eq({name}, {const.code})" if b.const else f"_eq({const.code}, {name})"
    return Expr(
        f"({first} == {const.code} or {other_type.format(name)} and {call})", BOOL
    )


def _strict_pair(c: Compiler, a: Expr, b: Expr) -> Expr:
    helper = Expr(f"_seq({a.code}, {b.code})", BOOL)
    if not c.fast or (a.const and b.const):
        return helper
    if not (a.const or b.const):
        if a.kind in (STR, NUM) and a.kind == b.kind:
            return Expr(f"({a.code} == {b.code})", BOOL)
        return helper
    const, other = (b, a) if b.const else (a, b)
    if const.kind == STR:
        return Expr(f"({other.code} == {const.code})", BOOL)
    if const.kind == NULL:
        return Expr(f"({other.code} is None)", BOOL)
    if const.kind == BOOL:
        return Expr(f"({other.code} is {const.code})", BOOL)
    if const.kind == NUM:
        if const.value in (0, 1) and other.kind != NUM:
            first, name = c.named(other)
            return Expr(
                f"({first} == {const.code} and {name}.__class__ is not bool)", BOOL
            )
        return Expr(f"({other.code} == {const.code})", BOOL)
    return helper


def _pair(c: Compiler, op: str, a: Expr, b: Expr) -> Expr:
    if op in _ORDER_HELPERS:
        return _order_pair(c, op, a, b)
    strict = op in ("===", "!==")
    result = _strict_pair(c, a, b) if strict else _loose_pair(c, a, b)
    if op in ("!=", "!=="):
        return Expr(f"(not {result.code})", BOOL)
    return result


@emitter("==", "!=", "===", "!==", "<", "<=", ">", ">=")
def _compare(c: Compiler, op: str, raw: Any, path: str) -> Expr:
    if not _need_array(c, op, raw, path) or not _arity(c, op, raw, path, 2, 999):
        return literal(None)
    items = c.items(raw, path)
    pairs: list[str] = []
    with contextlib.ExitStack() as stack:
        left = c.node(*items[0])
        for index in range(1, len(items)):
            right = c.node(*items[index])
            later = right
            if index < len(items) - 1:
                first, name = c.named(right)
                later = replace(right, code=name, simple=True, name=None)
                if not right.simple:
                    right = replace(right, code=first, name=name)
            pairs.append(_pair(c, op, left, right).code)
            left = later
            stack.enter_context(c.branch())
    if len(pairs) == 1:
        return Expr(pairs[0], BOOL)
    return Expr("(" + " and ".join(pairs) + ")", BOOL)


# ------------------------------------------------------------------- arithmetic

_ARITH_HELPERS = {"+": "_add", "-": "_sub", "*": "_mul", "/": "_div", "%": "_mod"}
_MIN_ARGS = {"+": 0, "-": 1, "*": 0, "/": 1, "%": 2}


def _fast_arith(c: Compiler, op: str, args: list[Expr]) -> str | None:
    if op == "%" or not args:
        return None
    if any(e.const and e.kind not in NUMERIC for e in args):
        return None  # would always take the slow path
    if op == "*":
        # Python repeats strings and lists, grows integers without end (a `reduce`
        # squaring its accumulator) and makes NaN of inf * 0: the helper is JSON
        # Logic's (Infinity past a double, NaN an error).
        return None
    if len(args) == 1:
        e = args[0]
        if op == "-":
            code = f"(-{e.code})"
        elif op == "/":
            code = f"(1 / {e.code})"
        else:
            code = f"(0 + {e.code})"  # as the helper adds from 0: -0.0 gives 0.0
    else:
        if args[0].kind not in NUMERIC and args[1].kind not in NUMERIC:
            return None  # "1" + "2" concatenates
        code = "(" + f" {op} ".join(e.code for e in args) + ")"
    # An integer past a double's range (a product of huge numbers, such data) added to
    # a float raises OverflowError, where the helpers give Infinity: fall back too.
    if op == "/" or len(args) > 1 or any(e.kind not in NUMERIC for e in args):
        c.assume()
    return code


@emitter("+", "-", "*", "/", "%")
def _arith(c: Compiler, op: str, raw: Any, path: str) -> Expr:
    helper = _ARITH_HELPERS[op]
    args = c.eager(raw, path)
    if args is None:
        return Expr(f"{helper}(_spread({c.node(raw, path).code}))", NUM)
    if not _arity(c, op, raw, path, _MIN_ARGS[op], 999):
        return literal(None)
    if not args:
        return literal(0 if op == "+" else 1)
    if c.fast:
        code = _fast_arith(c, op, args)
        if code is not None:
            return Expr(code, NUM)
    return Expr(f"{helper}({_tuple(args)})", NUM)


@emitter("max", "min")
def _extreme(c: Compiler, op: str, raw: Any, path: str) -> Expr:
    helper = "_max" if op == "max" else "_min"
    args = c.eager(raw, path)
    if args is None:
        return Expr(f"{helper}(_spread({c.node(raw, path).code}))")
    return Expr(f"{helper}({_tuple(args) if args else '()'})")


# ----------------------------------------------------------- strings and arrays


@emitter("cat")
def _cat(c: Compiler, op: str, raw: Any, path: str) -> Expr:
    args = c.eager(raw, path)
    if args is None:
        return Expr(f"_cat(_spread({c.node(raw, path).code}))", STR)
    if not _arity(c, op, raw, path, 0, 999):
        return literal(None)
    if not args:
        return literal("")
    # `a + b + ...` nests one level per operand in Python's compiler: a long one is a
    # tuple joined at run time.
    if c.fast and len(args) <= 64 and all(e.kind == STR for e in args):
        return Expr("(" + " + ".join(e.code for e in args) + ")", STR)
    return Expr(f"_cat({_tuple(args)})", STR)


@emitter("substr")
def _substr(c: Compiler, op: str, raw: Any, path: str) -> Expr:
    args = c.eager(raw, path)
    if args is None:
        return Expr(f"_substr(_spread({c.node(raw, path).code}))", STR)
    if not _arity(c, op, raw, path, 1, 3):
        return literal(None)
    return Expr(f"_substr({_tuple(args)})", STR)


@emitter("merge")
def _merge(c: Compiler, op: str, raw: Any, path: str) -> Expr:
    args = c.eager(raw, path)
    if args is None:
        return Expr(f"_merge(_spread({c.node(raw, path).code}))", LIST)
    return Expr(f"_merge({_tuple(args) if args else '()'})", LIST)


@emitter("in")
def _in(c: Compiler, op: str, raw: Any, path: str) -> Expr:
    if not _need_array(c, op, raw, path) or not _arity(c, op, raw, path, 2, 2):
        return literal(None)
    needle = c.node(raw[0], child_index(path, 0))
    hay = c.node(raw[1], child_index(path, 1))
    if hay.const and hay.kind == LIST and all(isinstance(x, str) for x in hay.value):
        options = c.bind(frozenset(hay.value))
        if not c.fast:
            return Expr(f"_in_strs({needle.code}, {options})", BOOL)
        if needle.kind not in SCALAR and needle.kind != NULL:
            c.assume()  # unhashable needle: TypeError
        return Expr(f"({needle.code} in {options})", BOOL)
    if c.fast and needle.kind == STR and hay.kind in (STR, LIST):
        return Expr(f"({needle.code} in {hay.code})", BOOL)
    if c.fast and needle.kind == STR and hay.kind == ANY and needle.simple:
        # Python's ``in`` is JSON Logic's for arrays and strings; else the helper.
        first, name = c.named(hay)
        test = f"{first}.__class__ is list or {name}.__class__ is str"
        fallback = f"_in({needle.code}, {name})"
        return Expr(f"({needle.code} in {name} if {test} else {fallback})", BOOL)
    return Expr(f"_in({needle.code}, {hay.code})", BOOL)


# -------------------------------------------------------------------- iterators

_ITERATORS = {
    "map": ("_map", LIST),
    "filter": ("_filter", LIST),
    "all": ("_all", BOOL),
    "some": ("_some", BOOL),
    "none": ("_none", BOOL),
}


@emitter("map", "filter", "reduce", "all", "some", "none")
def _iterate(c: Compiler, op: str, raw: Any, path: str) -> Expr:
    if not _need_array(c, op, raw, path):
        return literal(None)
    if not _arity(c, op, raw, path, 2, 3 if op == "reduce" else 2):
        return literal(None)
    items_raw, body_raw = raw[0], raw[1]
    if not (isinstance(items_raw, list) or is_operation(items_raw)):
        return c.fail(child_index(path, 0), f"'{op}' needs an array, got {json_shown(items_raw)}")
    if body_raw is None and op in ("map", "filter", "reduce"):
        return c.fail(child_index(path, 1), f"'{op}' needs logic to apply, got null")
    items = c.node(items_raw, child_index(path, 0))
    item, index = c.tmp("_x"), c.tmp("_i")
    if op == "reduce":
        acc = c.tmp("_a")
        ctx = f"{{'current': {item}, 'accumulator': {acc}}}"
        frame = Frame(ctx, {"current": item, "accumulator": acc}, index)
        with c.scope(frame):
            body = c.node(body_raw, child_index(path, 1))
        initial = c.node(raw[2], child_index(path, 2)) if len(raw) == 3 else literal(None)
        params = f"{item}, {acc}, {index}" if frame.index_used else f"{item}, {acc}"
        return Expr(
            f"_reduce({items.code}, lambda {params}: {body.code}, {initial.code}"
            f"{', True' if frame.index_used else ''})"
        )
    helper, kind = _ITERATORS[op]
    frame = Frame(item, index=index)
    with c.scope(frame):
        body = c.node(body_raw, child_index(path, 1))
        code = body.code if op == "map" else c.truth(body)
    if frame.index_used:
        return Expr(f"{helper}({items.code}, lambda {item}, {index}: {code}, True)", kind)
    return Expr(f"{helper}({items.code}, lambda {item}: {code})", kind)


# ------------------------------------------------------------ errors and debug


@emitter("throw")
def _throw(c: Compiler, op: str, raw: Any, path: str) -> Expr:
    if isinstance(raw, list) and not _arity(c, op, raw, path, 1, 1):
        return literal(None)
    (item, item_path) = c.items(raw, path)[0]
    return Expr(f"_throw({c.node(item, item_path).code})")


@emitter("try")
def _try(c: Compiler, op: str, raw: Any, path: str) -> Expr:
    if not isinstance(raw, list):
        return c.node(raw, path)
    items = c.items(raw, path)
    if len(items) <= 1:
        return c.node(*items[0]) if items else literal(None)
    with c.scope():
        body = c.node(*items[0])
    handlers = []
    for item, item_path in items[1:]:
        error = c.tmp("_e")
        with c.scope(Frame(error)):
            handlers.append(f"lambda {error}: {c.node(item, item_path).code}")
    return Expr(f"_try(lambda: {body.code}, ({', '.join(handlers)},))")


@emitter("log")
def _log(c: Compiler, op: str, raw: Any, path: str) -> Expr:
    if isinstance(raw, list) and not _arity(c, op, raw, path, 1, 1):
        return literal(None)
    (item, item_path) = c.items(raw, path)[0]
    value = c.node(item, item_path)
    return Expr(f"_log({value.code})", value.kind)


# ----------------------------------------------------------- domain operators


def _domain_args(
    c: Compiler, op: str, raw: Any, path: str, low: int, high: int
) -> list[Expr] | None:
    if not _arity(c, op, raw, path, low, high):
        return None
    return [c.node(item, item_path) for item, item_path in c.items(raw, path)]


@emitter("days_since", "days_until", "years_since")
def _date_delta(c: Compiler, op: str, raw: Any, path: str) -> Expr:
    args = _domain_args(c, op, raw, path, 1, 1)
    if args is None:
        return literal(None)
    return Expr(f"_{op}({args[0].code}, data)")


@emitter("is_anniversary")
def _is_anniversary(c: Compiler, op: str, raw: Any, path: str) -> Expr:
    args = _domain_args(c, op, raw, path, 1, 2)
    if args is None:
        return literal(None)
    zone = args[1].code if len(args) == 2 else "None"
    return Expr(f"_is_anniversary({args[0].code}, {zone}, data)")


@emitter("contains_any")
def _contains_any(c: Compiler, op: str, raw: Any, path: str) -> Expr:
    if not _need_array(c, op, raw, path):
        return literal(None)
    args = _domain_args(c, op, raw, path, 2, 2)
    if args is None:
        return literal(None)
    return Expr(f"_contains_any({args[0].code}, {args[1].code})")


OPERATORS: frozenset[str] = frozenset(EMITTERS)
