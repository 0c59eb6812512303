"""The Jinja2 sandbox every template runs in, and error translation.

Templates are written by marketers and stored with campaign versions, so they
run in an :class:`~jinja2.sandbox.ImmutableSandboxedEnvironment`: no access to
underscore attributes, no mutation of the context, no file system (templates
come only from the in-memory mapping) and no helper globals beyond ``range``
and ``dict``. Undefined values fail loudly (a strict undefined). Functions and
template internals cannot be printed (``{{ self }}``, ``{{ ''.join }}``), and
the limits of :mod:`chalicelib.render.limits` bound the work and memory of a
render (nested loops, ``'%1000000000s'|format``, ``x.replace('', big)``...).
"""

from __future__ import annotations

import contextlib
import functools
import re
import sys
import types
from collections.abc import (
    Callable,
    ItemsView,
    Iterable,
    Iterator,
    KeysView,
    Mapping,
    MappingView,
    MutableMapping,
    Sequence,
    ValuesView,
)
from contextvars import ContextVar
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NoReturn

import jinja2
from jinja2 import (
    DictLoader,
    Environment,
    StrictUndefined,
    Template,
    TemplateNotFound,
    TemplateRuntimeError,
    TemplateSyntaxError,
    Undefined,
    UndefinedError,
    nodes,
)
from jinja2.compiler import CodeGenerator, optimizeconst
from jinja2.compiler import Frame as CodeFrame
from jinja2.exceptions import FilterArgumentError, SecurityError
from jinja2.filters import do_attr, make_attrgetter
from jinja2.runtime import TemplateReference
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedFormatter
from jinja2.utils import missing, pass_environment
from markupsafe import EscapeFormatter, Markup, soft_str

from chalicelib.render import limits
from chalicelib.render.errors import RenderError
from chalicelib.render.filters import FILTERS, FilterValueError, shown_value

if TYPE_CHECKING:
    from jinja2.nodes import EvalContext
    from jinja2.runtime import Context

REMOVED_GLOBALS: Final = ("cycler", "joiner", "lipsum", "namespace")
# A message must be a function of its customer and order: what `aftercare simulate
# --render` and `preview` show is what the sender sends.
REMOVED_FILTERS: Final = ("random",)
MAX_EXPONENT: Final = 1_000
# str methods (and filters of the same name) whose output can be much larger
# than their input: checked with an estimate before they run.
# (`str.format` is checked where the sandbox wraps it, the `format` filter as printf.)
_AMPLIFYING: Final = frozenset({
    "center", "ljust", "rjust", "zfill", "expandtabs", "replace", "indent", "wordwrap",
    "batch", "slice", "tojson",
})
# str methods no message needs, refused like underscore attributes.
_UNSAFE_STR_METHODS: Final = frozenset({"translate", "maketrans", "encode"})


class UndefinedVariableError(UndefinedError):
    """A template used a value the context does not have."""

    def __init__(self, message: str, name: str | None, has_owner: bool,
                 owner: Any = None) -> None:
        super().__init__(message)
        self.variable = name
        self.has_owner = has_owner
        self.owner = owner


class _StrictUndefined(StrictUndefined):
    __slots__ = ()

    def _fail_with_undefined_error(self, *args: Any, **kwargs: Any) -> NoReturn:
        if self._undefined_exception is not UndefinedError:  # e.g. SecurityError
            raise self._undefined_exception(self._undefined_message)
        raise UndefinedVariableError(
            self._undefined_message,
            self._undefined_name,
            self._undefined_obj is not missing,
            self._undefined_obj,
        )


# Jinja binds the operators to the base method object: rebind them to ours.
for _klass in (Undefined, StrictUndefined):
    for _attr, _value in vars(_klass).items():
        if _value is Undefined._fail_with_undefined_error and _attr.startswith("__"):
            setattr(_StrictUndefined, _attr, _StrictUndefined._fail_with_undefined_error)


# While validation collects problems (see `collecting_undefined`), the undefined
# values met are appended here with their template and line instead of raising.
_RECORDS: ContextVar[list[tuple[Undefined, str | None, int | None]] | None] = ContextVar(
    "aftercare_undefined_records", default=None)


# Jinja's constant folding (``Node.as_const``, called by its optimizer and compiler).
_JINJA_COMPILING: Final = tuple(str(Path(jinja2.__file__).with_name(name))
                                for name in ("nodes.py", "optimizer.py", "compiler.py"))


def _live_location() -> tuple[str | None, int | None]:
    """Template and line of the innermost template frame on the current stack; none
    while Jinja folds constants as it compiles (an included file is compiled during
    its includer's render: that frame is not where the constant is)."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_filename.endswith(_JINJA_COMPILING):
            return None, None
        template = frame.f_globals.get("__jinja_template__")
        if template is not None:
            return template.name, template.get_corresponding_lineno(frame.f_lineno)
        frame = frame.f_back  # type: ignore[assignment]
    return None, None


class _CollectingUndefined(_StrictUndefined):
    """For validation: notes each failing use of an undefined value and carries on.

    A strict render stops at the first undefined variable or unsafe attribute;
    rendering again with this one lists them all, one line each. Outside
    :func:`collecting_undefined` it is as strict as its parent.
    """

    __slots__ = ()

    def _fail_with_undefined_error(self, *args: Any, **kwargs: Any) -> Any:
        records = _RECORDS.get()
        where, line = _live_location() if records is not None else (None, None)
        if records is None or where is None:
            # Not collecting, or not rendering (Jinja folding constants while it
            # compiles): strict, so that the render meets it and notes its line.
            super()._fail_with_undefined_error(*args, **kwargs)
        else:
            records.append((self, where, line))
        return self


def _lenient(result: Callable[[Any], Any]) -> Callable[..., Any]:
    """A dunder of the collecting undefined: note the use, then answer ``result``."""

    def method(self: _CollectingUndefined, *args: Any, **kwargs: Any) -> Any:
        self._fail_with_undefined_error()
        return result(self)

    return method


# What a collecting undefined answers where the strict one raises: as if empty.
_LENIENT: dict[str, Callable[[Any], Any]] = {
    "__str__": lambda _: "", "__iter__": lambda _: iter(()), "__len__": lambda _: 0,
    "__bool__": lambda _: False, "__eq__": lambda _: False, "__ne__": lambda _: True,
    "__hash__": id, "__contains__": lambda _: False, "__int__": lambda _: 0,
    "__float__": lambda _: 0.0, "__complex__": lambda _: 0j,
}
for _attr, _value in list(vars(_StrictUndefined).items()):
    if _value is _StrictUndefined._fail_with_undefined_error and _attr.startswith("__"):
        setattr(_CollectingUndefined, _attr, _lenient(_LENIENT[_attr]) if _attr in _LENIENT
                else _CollectingUndefined._fail_with_undefined_error)


class _StrictKeyOrMethod(_StrictUndefined):
    """``order.items`` where the order has no ``items``: undefined, as the missing key
    it means, not Python's ``dict.items`` (a loop over it was a TypeError about a
    'builtin_function_or_method'); called (``attributes.items()``) it is the method.
    The dict is ``_undefined_obj``, the method's name ``_undefined_name``."""

    __slots__ = ()


class _CollectingKeyOrMethod(_CollectingUndefined):
    __slots__ = ()


_KEY_OR_METHOD: Final[dict[type[Undefined], type[Undefined]]] = {
    _StrictUndefined: _StrictKeyOrMethod, _CollectingUndefined: _CollectingKeyOrMethod}
# The dict methods a template may call (the sandbox refuses the ones that change data).
_DICT_READERS: Final = frozenset({"items", "keys", "values", "get"})


@contextlib.contextmanager
def collecting_undefined() -> Iterator[list[tuple[Undefined, str | None, int | None]]]:
    """Collect the undefined values met while rendering with a collecting environment."""
    records: list[tuple[Undefined, str | None, int | None]] = []
    token = _RECORDS.set(records)
    try:
        yield records
    finally:
        _RECORDS.reset(token)


def undefined_record_message(undefined: Undefined, env: AftercareSandbox, template: str | None,
                             line: int | None, variables: Mapping[str, Any]
                             ) -> tuple[str, int | None]:
    """The problem for one collected undefined value, and its line (see
    :func:`_undefined_message`)."""
    if undefined._undefined_exception is not UndefinedError:
        message = str(undefined._undefined_message)
        return f"not allowed: {message}", _attribute_line(env, template, line, message)
    exc = UndefinedVariableError(undefined._undefined_message, undefined._undefined_name,
                                 undefined._undefined_obj is not missing,
                                 undefined._undefined_obj)
    return _undefined_message(exc, env, template, line, variables)


class _SizedBuffer(list[str]):
    """The output buffer of a macro, ``{% set %}`` block or filter block, with a size cap.

    Jinja collects such output in a list before joining it; this one refuses to
    grow past :data:`~chalicelib.render.limits.MAX_VALUE` characters, so a loop
    inside a macro cannot hold gigabytes before the join.
    """

    __slots__ = ("size",)

    def __init__(self) -> None:
        super().__init__()
        self.size = 0

    def _grow(self, items: Iterable[Any]) -> None:
        self.size += sum(len(item) for item in items if isinstance(item, str))
        if self.size > limits.MAX_VALUE:
            raise SecurityError(f"a block would render over {limits.MAX_VALUE:,} characters")

    def append(self, item: str) -> None:
        self._grow((item,))
        super().append(item)

    def extend(self, items: Iterable[str]) -> None:
        items = tuple(items)
        self._grow(items)
        super().extend(items)


def _checked_fold(concat: nodes.Concat) -> Callable[..., str]:
    """``as_const`` for one ``~`` node. Jinja joins a ``~`` of constants while it
    compiles (``{{ 'x'.upper ~ '' }}``, ``{{ none ~ '' }}``), where the render's check
    of its parts (:meth:`AftercareSandbox.checked_parts`) never runs: the parts are
    checked here too, and a ``~`` holding one that cannot be made text is left for
    the render to refuse. (Jinja allows no node classes of one's own, hence a
    function set on the node.)"""

    def as_const(eval_ctx: EvalContext | None = None) -> str:
        eval_ctx = nodes.get_eval_context(concat, eval_ctx)
        parts = [node.as_const(eval_ctx) for node in concat.nodes]
        try:
            for part in parts:
                _refuse_text_of(part, "~")
        except (NullValueError, SecurityError):
            raise nodes.Impossible() from None
        return "".join(str(part) for part in parts)  # Jinja's Concat.as_const

    return as_const


class _CodeGenerator(CodeGenerator):
    """Jinja's code generator, with loops, buffers and ``~`` going through the limits."""

    def buffer(self, frame: CodeFrame) -> None:
        frame.buffer = self.temporary_identifier()
        self.writeline(f"{frame.buffer} = environment.new_buffer()")

    def visit_For(self, node: nodes.For, frame: CodeFrame) -> None:
        wrapped = node.iter
        if not (isinstance(wrapped, nodes.Call)
                and isinstance(wrapped.node, nodes.EnvironmentAttribute)
                and wrapped.node.name == "counted_iter"):
            node.iter = nodes.Call(nodes.EnvironmentAttribute("counted_iter"), [wrapped], [],
                                   None, None, lineno=wrapped.lineno)
        super().visit_For(node, frame)

    @optimizeconst
    def visit_Concat(self, node: nodes.Concat, frame: CodeFrame) -> None:
        # Jinja's own, with the parts measured before `str()` joins them.
        if frame.eval_ctx.volatile:
            func_name = "(markup_join if context.eval_ctx.volatile else str_join)"
        elif frame.eval_ctx.autoescape:
            func_name = "markup_join"
        else:
            func_name = "str_join"
        self.write(f"{func_name}(environment.checked_parts((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write(")))")


class NullValueError(ValueError):
    """A template printed null (or made text of it): a value this customer lacks,
    never text to send (``Hi None``).

    ``filter`` names the operation that was given null (see :func:`_target`): None
    when the value was printed, ``"~"`` for a concatenation, ``"%"`` for the
    operator, ``".format"``, ``".format_map"`` or ``".join"`` for those ``str``
    methods, else the filter's name. ``argument`` tells that null was an argument
    of the filter (``|format(x)``, ``|replace('a', x)``), not the value it filters.
    """

    def __init__(self, filter: str | None = None, argument: bool = False) -> None:
        super().__init__("null")
        self.filter = filter
        self.argument = argument


# Filters that would make text of the value they filter: "None" of null,
# "<built-in method ...>" of a function (see _refuse_text_of).
_TEXT_FILTERS: Final = frozenset({
    "capitalize", "center", "e", "escape", "forceescape", "indent", "lower", "replace",
    "string", "striptags", "title", "trim", "truncate", "upper", "urlencode", "urlize",
    "wordcount", "wordwrap", "format", "safe", "pprint",
})


def _target(use: str) -> str:
    """How an operation is written, for messages: ``|upper``, ``'%'``, ``.format()``."""
    if use == "%":
        return "'%'"
    return f"{use}()" if use.startswith(".") else f"|{use}"


def _used(use: str | None) -> str:
    """What was done with a value, for messages: ``printed``, ``given to |upper``..."""
    if use is None:
        return "printed"
    if use == "~":
        return "joined with '~'"
    return f"given to {_target(use)}"


def _refuse_text_of(value: Any, use: str | None, argument: bool = False) -> None:
    """Refuse a value that must not be made text: null (:class:`NullValueError`), a
    function (``name.upper``, a macro, ``range``) or a template object (``self``,
    ``loop``), whose text would be ``<built-in method upper of str object at 0x...>``.

    ``use`` and ``argument`` say where it was met (see :class:`NullValueError`).
    An undefined value (callable, as Jinja makes it) is left to the
    undefined-variable handling.
    """
    if value is None:
        raise NullValueError(use, argument)
    _refuse_non_value(value, use)


_PLAIN: Final = frozenset({int, float, bool, list, dict, tuple, Decimal, datetime, date})


def _refuse_non_value(value: Any, use: str | None) -> None:
    """The part of :func:`_refuse_text_of` that applies inside a printed list or
    object too: a function or a template object, and a sequence not made a list
    (``|map``, ``|select``, ``|reverse``, ``.keys()``, ``range()``), whose text would
    be ``<generator object ... at 0x...>``."""
    if type(value) in _PLAIN or isinstance(value, (str, Undefined)):
        return  # the common case first: a plain value, without the ABC checks below
    if callable(value) or isinstance(value, (TemplateReference, type)):
        name = getattr(value, "__name__", None) or type(value).__name__
        what = "a function or a template object, not a value (call it, or pick one of its values)"
    elif isinstance(value, (Iterator, range, MappingView)):
        name = type(value).__name__
        what = "a sequence not made a list yet (add |list, or |join(', ') to print its items)"
    else:
        return
    done = (f"print {name!r}" if use is None
            else f"join {name!r} with '~'" if use == "~"
            else f"give {name!r} to {_target(use)}")
    raise SecurityError(f"cannot {done}: it is {what}")


class _CheckedMapping(dict[Any, Any]):
    """The mapping of a ``'%(key)s' % mapping`` (or ``|format(key=...)``): each value
    a key of the format reads is checked as it is read, so the keys it does not
    read may hold anything."""

    __slots__ = ("use",)

    def __init__(self, data: Mapping[Any, Any], use: str) -> None:
        super().__init__(data)
        self.use = use

    def __getitem__(self, key: Any) -> Any:
        value = super().__getitem__(key)
        _refuse_text_of(value, self.use, argument=True)
        return value


def _printf_operand(operand: Any, use: str) -> Any:
    """The right side of ``fmt % operand`` (``|format``'s arguments), checked as
    Python reads it: each item of a tuple, the values of a mapping as their keys
    are read, or the one value."""
    if isinstance(operand, tuple):
        for item in operand:
            _refuse_text_of(item, use, argument=True)
        return operand
    if isinstance(operand, Mapping):
        return _CheckedMapping(operand, use)
    _refuse_text_of(operand, use, argument=True)
    return operand


def _format_filter(value: Any, *args: Any, **kwargs: Any) -> str:
    """Jinja's ``format`` (``'%s'|format(x)``), its arguments checked like ``%``'s."""
    if args and kwargs:
        raise FilterArgumentError(
            "can't handle positional and keyword arguments at the same time")
    return soft_str(value) % _printf_operand(kwargs or args, "format")


class _CheckedFormatter(SandboxedFormatter):
    """The formatter of ``str.format``: every field's value is checked as it is read
    (``'{}'.format(x)``, ``'{0.name}'.format(x)``, ``'{k}'.format_map(m)``)."""

    def __init__(self, env: Environment, use: str, **kwargs: Any) -> None:
        self.use = use
        super().__init__(env, **kwargs)

    def get_field(self, field_name: str, args: Sequence[Any],
                  kwargs: Mapping[str, Any]) -> tuple[Any, str]:
        value, first = super().get_field(field_name, args, kwargs)
        _refuse_text_of(value, self.use, argument=True)
        return value, first


class _CheckedEscapeFormatter(_CheckedFormatter, EscapeFormatter):
    """:class:`_CheckedFormatter` for a ``Markup`` format string (escapes the values)."""


_MAX_INSPECTED = 10_000  # items of a printed list or object looked at for undefined values


def _undefined_inside(value: Any) -> Undefined | None:
    """An undefined value inside a printed list or object (``map(attribute="nmae")``);
    a function or an unlisted sequence inside it is refused (:func:`_refuse_non_value`)."""
    stack = [value]
    seen = 0
    while stack and seen < _MAX_INSPECTED:
        item = stack.pop()
        seen += 1
        if isinstance(item, Undefined):
            return item
        _refuse_non_value(item, None)
        if isinstance(item, Mapping):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple, set, frozenset)):
            stack.extend(item)
    return None


def _finalize(value: Any) -> Any:
    """What ``{{ ... }}`` prints: data, never a function or a template object, never null."""
    if isinstance(value, Undefined):
        return value  # printing it raises the undefined-variable error
    _refuse_text_of(value, None)
    if isinstance(value, (Mapping, list, tuple, set, frozenset)):
        inner = _undefined_inside(value)
        if inner is not None:
            inner._fail_with_undefined_error()  # raises, unless validation is collecting
    return limits.check_size(value, "printed value", built=False)


@pass_environment
def _attr_filter(environment: AftercareSandbox, obj: Any, name: str) -> Any:
    """``|attr``: like Jinja's, but an unsafe or undefined object fails right away."""
    if isinstance(obj, Undefined):
        obj._fail_with_undefined_error()  # raises, unless validation is collecting
        return obj
    return do_attr(environment, obj, name)


def _guard_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a filter so that each call looks at the render's clock, and its arguments
    and result respect the limits (no null or function made text, no value too large)."""
    passes = getattr(func, "jinja_pass_arg", None) is not None

    @functools.wraps(func)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        # One call may take long (`wordwrap` of a long text): look at the clock
        # before each, wherever it comes from (the template, `map`...). The calls
        # `map` makes are also counted as work (AftercareSandbox.call_filter).
        limits.check_clock()
        rest = args[1:] if passes else args
        if rest and name in ("urlencode", "xmlattr"):
            args = _checked_pairs(name, args, len(args) - len(rest))
            rest = args[1:] if passes else args
        if rest and name in _TEXT_FILTERS:
            _refuse_text_of(rest[0], name)
        if name == "urlize":
            for given in (kwargs.get("target"), kwargs.get("rel")):
                if given is not None:
                    _refuse_text_of(given, name, argument=True)
        if name == "replace":  # `|replace('a', x)` would put "None" in the text
            for given in (*rest[1:3], *(kwargs[k] for k in ("old", "new") if k in kwargs)):
                _refuse_text_of(given, name, argument=True)
        if rest and name in _AMPLIFYING:
            limits.check_string_operation(name, rest[0], tuple(rest[1:]), kwargs)
        if rest and name == "format" and isinstance(rest[0], str):
            limits.check_printf(rest[0], (rest[1:], kwargs))
        if rest and name == "join":
            args, kwargs = _join_arguments(args[: len(args) - len(rest)], rest, kwargs)
        if rest and name == "sum":
            # Each item is work, like a loop's: adding lists (`|sum(start=[])`) takes
            # time that grows with the square of their number, in this one call.
            args = (*args[: len(args) - len(rest)], limits.counted(rest[0]), *rest[1:])
        return limits.check_size(func(*args, **kwargs), f"result of |{name}")

    return guarded


def _checked_pairs(name: str, args: tuple[Any, ...], at: int) -> tuple[Any, ...]:
    """``|urlencode``'s or ``|xmlattr``'s arguments (the value at ``args[at]``), each
    value of its mapping or pairs checked (no null or function made text). Pairs from
    ``.items()`` or ``|items`` are listed once, so they can be checked and read."""
    value = args[at]
    if name == "urlencode" and isinstance(value, (Iterator, ItemsView, KeysView, ValuesView)):
        value = list(value)
        args = (*args[:at], value, *args[at + 1:])
    pairs = (value.items() if isinstance(value, Mapping) else
             value if name == "urlencode" and isinstance(value, (list, tuple)) else ())
    for pair in pairs:
        item = pair[1] if isinstance(pair, tuple) and len(pair) == 2 else None
        if item is not None or name == "urlencode":  # xmlattr leaves null out
            _refuse_text_of(item, name)
    return args


def _join_arguments(passed: tuple[Any, ...], rest: tuple[Any, ...], kwargs: dict[str, Any],
                    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """``|join``'s arguments (``passed`` its evaluation context, ``rest`` the others), its
    items listed, each read through ``attribute`` when given, and checked: no null
    made text, nor a result over the size limit."""
    if len(rest) > 3:  # more than `|join(d, attribute)`: let Jinja's own raise
        return (*passed, *rest), kwargs
    items = list(rest[0])
    separator = rest[1] if len(rest) > 1 else kwargs.get("d", "")
    attribute = rest[2] if len(rest) > 2 else kwargs.get("attribute")
    if attribute is not None and passed:
        items = list(map(make_attrgetter(passed[0].environment, attribute), items))
    _refuse_text_of(separator, "join", argument=True)
    for item in items:
        _refuse_text_of(item, "join")
    limits.check_join(separator, items)
    others = {k: v for k, v in kwargs.items() if k not in ("d", "attribute")}
    return (*passed, items, separator), others


class _NestedTemplate(Template):
    """A template whose render counts as one level of nesting (see
    :func:`limits.nested_call`): an include, import or layout inside another is one
    more, so a template including itself stops at the render's own depth limit, the
    same everywhere, not at Python's, which depends on the caller's stack."""

    @classmethod
    def _from_namespace(cls, environment: Environment, namespace: MutableMapping[str, Any],
                        globals: MutableMapping[str, Any]) -> Template:
        template = super()._from_namespace(environment, namespace, globals)
        inner = template.root_render_func

        def root_render_func(context: Context) -> Iterator[str]:
            with limits.nested_call():
                yield from inner(context)

        template.root_render_func = root_render_func
        return template


class AftercareSandbox(ImmutableSandboxedEnvironment):
    """Immutable sandbox that prefers dict keys and refuses runaway work and output."""

    intercepted_binops = frozenset({"*", "**", "%", "+"})
    code_generator_class = _CodeGenerator
    template_class = _NestedTemplate

    def _generate(self, source: nodes.Template, name: str | None, filename: str | None,
                  defer_init: bool = False) -> str:
        for concat in source.find_all(nodes.Concat):
            setattr(concat, "as_const", _checked_fold(concat))  # noqa: B010 (a method)
        return str(super()._generate(source, name, filename, defer_init))

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, Undefined):  # report `cycler`, not `cycler.__init__`
            obj._fail_with_undefined_error()  # raises, unless validation is collecting
            return obj
        # Data keys win over dict methods, so `order.items` is the item list.
        if isinstance(obj, Mapping) and attribute in obj:
            return obj[attribute]
        if attribute.startswith("__"):  # never a value a template may read, however
            return self.unsafe_undefined(obj, attribute)  # the object is wrapped
        if attribute in _DICT_READERS and isinstance(obj, dict):
            kind = _KEY_OR_METHOD.get(self.undefined)
            if kind is not None:
                return kind(obj=obj, name=attribute)
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        if isinstance(obj, Undefined):
            obj._fail_with_undefined_error()  # raises, unless validation is collecting
            return obj
        # A missing key of a data object is undefined: `order["items"]` on an
        # order without items must not fall back to the dict method `items`.
        if isinstance(obj, dict):
            try:
                return obj[argument]
            except (KeyError, TypeError):
                if isinstance(argument, str) and argument.startswith("__"):
                    # `customer['__class__']`: what it tries, as `customer.__class__`
                    # says (not also an undefined variable of the same spot).
                    return self.unsafe_undefined(obj, argument)
                return self.undefined(obj=obj, name=argument)
        return super().getitem(obj, argument)

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if isinstance(obj, (str, bytes)) and attr in _UNSAFE_STR_METHODS:
            return False
        return bool(super().is_safe_attribute(obj, attr, value))

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        # Jinja's, with a formatter that checks each field's value (no null made
        # text) and the size of what it builds.
        if not (isinstance(value, (types.MethodType, types.BuiltinMethodType))
                and value.__name__ in ("format", "format_map")
                and isinstance(value.__self__, str)):
            return None
        text: str = value.__self__
        use = f".{value.__name__}"
        formatter = (_CheckedEscapeFormatter(self, use, escape=text.escape)
                     if isinstance(text, Markup) else _CheckedFormatter(self, use))

        def checked(*args: Any, **kwargs: Any) -> str:
            positional: Sequence[Any] = args
            named: Mapping[str, Any] = kwargs
            if use == ".format_map":
                if kwargs:
                    raise TypeError("format_map() takes no keyword arguments")
                if len(args) != 1:
                    raise TypeError(
                        f"format_map() takes exactly one argument ({len(args)} given)")
                positional, named = (), args[0]
            limits.check_format(text, (positional, named))
            built = type(text)(formatter.vformat(text, positional, named))
            return limits.check_size(built, "formatted text")

        return functools.update_wrapper(checked, value)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            limits.check_repeat(left, right)
        elif operator == "**":
            limits.check_power(left, right, MAX_EXPONENT)
        elif operator == "%" and isinstance(left, str):
            limits.check_printf(left, right)
            right = _printf_operand(right, "%")
        elif operator == "+":
            limits.refuse_over(limits.size(left) + limits.size(right), "'+'")
        result = super().call_binop(context, operator, left, right)
        return limits.check_size(result)

    def call_filter(self, name: str, value: Any, args: Sequence[Any] | None = None,
                    kwargs: Mapping[str, Any] | None = None, context: Context | None = None,
                    eval_ctx: EvalContext | None = None) -> Any:
        # How `map` runs a filter for each item (`|map('wordwrap', 1)`): work, like a
        # loop's iteration, which the sandbox's `call` never sees.
        limits.tick(call=True)
        return super().call_filter(name, value, args, kwargs, context, eval_ctx)

    def call_test(self, name: str, value: Any, args: Sequence[Any] | None = None,
                  kwargs: Mapping[str, Any] | None = None, context: Context | None = None,
                  eval_ctx: EvalContext | None = None) -> Any:
        # How `select`, `reject`... run a test for each item (`select('in', long_list)`).
        limits.tick(call=True)
        return super().call_test(name, value, args, kwargs, context, eval_ctx)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        limits.tick(call=True)
        if isinstance(__obj, (_StrictKeyOrMethod, _CollectingKeyOrMethod)):
            method = getattr(__obj._undefined_obj, str(__obj._undefined_name))
            return limits.check_size(method(*args, **kwargs))
        owner = getattr(__obj, "__self__", None)
        name = getattr(__obj, "__name__", "")
        if isinstance(owner, (str, bytes)):
            if name in _AMPLIFYING:
                limits.check_string_operation(name, owner, args, kwargs)
            elif name == "join" and args:
                items = list(args[0])
                for item in items:
                    _refuse_text_of(item, ".join", argument=True)
                limits.check_join(owner, items)
                args = (items, *args[1:])
        elif isinstance(owner, int) and name == "to_bytes":
            # `(1).to_bytes(10**9, 'big')` would allocate the bytes before any check.
            limits.check_width(args[0] if args else kwargs.get("length", 1), "to_bytes length")
        with limits.nested_call():
            result = super().call(__context, __obj, *args, **kwargs)
        return limits.check_size(result, f"result of {name or 'the call'}()")

    # Called by the generated code: `new_buffer` and `concat` hold and join the
    # output of macros, `{% set %}` blocks and filter blocks, `counted_iter` wraps
    # every loop, `checked_parts` measures the operands of every `~`.
    def concat(self, parts: Iterable[str]) -> str:
        out: list[str] = []
        total = 0
        for part in parts:
            total += len(part)
            if total > limits.MAX_VALUE:
                raise SecurityError(
                    f"a block would render over {limits.MAX_VALUE:,} characters")
            out.append(part)
        return "".join(out)

    def new_buffer(self) -> list[str]:
        return _SizedBuffer()

    def counted_iter(self, iterable: Any) -> Iterator[Any]:
        return limits.counted(iterable)

    def checked_parts(self, parts: tuple[Any, ...]) -> tuple[Any, ...]:
        for part in parts:
            _refuse_text_of(part, "~")
        total = sum(limits.size(part) for part in parts)
        limits.refuse_over(total, "'~'")
        limits.count_built(total)
        return parts


def make_environment(templates: Mapping[str, str], *, autoescape: bool,
                     collecting: bool = False,
                     stand_ins: Iterable[tuple[str, str]] = ()) -> AftercareSandbox:
    """Build a sandbox over an in-memory ``{filename: source}`` mapping.

    Templates compile on first use and stay cached for the environment's life
    (no reload checks: a campaign version's templates never change). A
    ``collecting`` environment is for validation: inside
    :class:`collecting_undefined` it notes every undefined value instead of
    stopping at the first. ``stand_ins``: ``(kind, name)`` of unknown filters and
    tests that validation has reported and stands in for, to check the rest.
    """
    env = AftercareSandbox(
        loader=DictLoader(dict(templates)),
        undefined=_CollectingUndefined if collecting else _StrictUndefined,
        autoescape=autoescape,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
        cache_size=-1,
        finalize=_finalize,
    )
    for name in REMOVED_GLOBALS:
        env.globals.pop(name, None)
    for name in REMOVED_FILTERS:
        env.filters.pop(name, None)
    env.filters.update(FILTERS)
    env.filters["attr"] = _attr_filter
    env.filters["format"] = _format_filter
    for name, func in list(env.filters.items()):
        env.filters[name] = _guard_filter(name, func)
    for kind, name in stand_ins:
        if kind == "filter":
            env.filters.setdefault(name, _stand_in_filter)
        else:
            env.tests.setdefault(name, _stand_in_test)
    return env


def _stand_in_filter(value: Any, *args: Any, **kwargs: Any) -> Any:
    """For validation, an unknown filter (reported on its own) passes its value on,
    so that the rest of the file can still be rendered and checked."""
    return value


def _stand_in_test(value: Any, *args: Any, **kwargs: Any) -> bool:
    """For validation, an unknown test (reported on its own) is true."""
    return True


def error_location(exc: BaseException) -> tuple[str | None, int | None]:
    """Return the innermost template file and line where ``exc`` was raised."""
    if isinstance(exc, TemplateSyntaxError):
        return exc.name, exc.lineno
    name: str | None = None
    line: int | None = None
    tb = exc.__traceback__
    while tb is not None:
        template = tb.tb_frame.f_globals.get("__jinja_template__")
        if template is not None:
            name, line = template.name, template.get_corresponding_lineno(tb.tb_lineno)
        tb = tb.tb_next
    return name, line


def _dotted(node: nodes.Node) -> str | None:
    if isinstance(node, nodes.Name):
        return node.name
    if isinstance(node, nodes.Getattr):
        base = _dotted(node.node)
        return f"{base}.{node.attr}" if base else None
    if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
        base, key = _dotted(node.node), node.arg.value
        if base is None:
            return None
        if isinstance(key, str) and key.isidentifier():
            return f"{base}.{key}"
        return f"{base}[{key!r}]"
    return None


def _variable_paths(env: AftercareSandbox, source: str, line: int, name: Any,
                    owned: Callable[[nodes.Node], bool] | None = None,
                    ) -> tuple[list[tuple[str, nodes.Node]], int]:
    """Find how ``name`` was reached on ``line``: ``customer.nickname``, with the owner
    node; and the line it is on. A render names the line a statement starts on, so
    when nothing there reads ``name``, the rest of an expression that statement
    spans over several lines (``{{ customer.name\n ~ customer.nickname }}``) is
    read: the first later line with a path whose owner is the object that lacked
    the key (``owned``, when it can be told; else the first with any) gives the
    paths and the line."""
    tree = env.parse(source)
    found = _paths_on(tree.find_all((nodes.Getattr, nodes.Getitem)), line, name)
    if found and (owned is None or any(owned(n) for _, n in found)):
        return found, line
    spanning = _spanning(tree, line)
    first: tuple[list[tuple[str, nodes.Node]], int] = (found, line)
    for candidate in sorted({n.lineno for n in spanning if n.lineno > line}):
        found = _paths_on(spanning, candidate, name)
        if found and owned is not None and any(owned(n) for _, n in found):
            return found, candidate
        if found and not first[0]:
            first = (found, candidate)
            if owned is None:
                break
    return first


def _spanning(tree: nodes.Template, line: int) -> list[nodes.Node]:
    """The expression nodes of the statements that start on ``line`` (an if's test,
    an output's parts; not the statements of a body, which a render names by their
    own lines), however many lines they span."""
    spanning: list[nodes.Node] = []
    for statement in tree.find_all(nodes.Stmt):
        if statement.lineno == line:
            for child in statement.iter_child_nodes():
                if not isinstance(child, nodes.Stmt):
                    spanning += [child, *child.find_all(nodes.Expr)]
    return spanning


_UNSAFE_ATTRIBUTE: Final = re.compile(r"attribute '([^']+)'")


def _attribute_line(env: AftercareSandbox, template: str | None, line: int | None,
                    message: str) -> int | None:
    """The line of the attribute a sandbox refusal names, when the render gave the
    line its statement starts on (an expression over several lines)."""
    named = _UNSAFE_ATTRIBUTE.search(message)
    source = env.loader.mapping.get(template or "") if isinstance(env.loader, DictLoader) else None
    if named is None or not source or not line:
        return line
    tree = env.parse(source)
    attribute = named.group(1)

    def reads(node: nodes.Node) -> bool:
        return isinstance(node, nodes.Getattr) and node.attr == attribute

    if any(reads(n) and n.lineno == line for n in tree.find_all(nodes.Getattr)):
        return line
    return min((n.lineno for n in _spanning(tree, line) if reads(n) and n.lineno > line),
               default=line)


def _paths_on(candidates: Iterable[nodes.Node], line: int,
              name: Any) -> list[tuple[str, nodes.Node]]:
    found: dict[str, nodes.Node] = {}
    for node in candidates:
        if node.lineno != line or not isinstance(node, (nodes.Getattr, nodes.Getitem)):
            continue
        key: Any = missing
        if isinstance(node, nodes.Getattr):
            key = node.attr
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            key = node.arg.value
        if key is missing or not (key == name or str(key) == str(name)):
            continue
        path = _dotted(node)
        if path and isinstance(node, (nodes.Getattr, nodes.Getitem)):
            found.setdefault(path, node.node)
    return list(found.items())


def _resolve(node: nodes.Node, variables: Mapping[str, Any]) -> Any:
    """The value of a plain ``a.b[0]`` expression in the render's variables, or ``missing``."""
    if isinstance(node, nodes.Name):
        return variables.get(node.name, missing)
    if isinstance(node, nodes.Getattr):
        key: Any = node.attr
    elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
        key = node.arg.value
    else:
        return missing
    owner = _resolve(node.node, variables)
    if isinstance(owner, Mapping):
        return owner.get(key, missing)
    if isinstance(owner, (list, tuple, str)) and isinstance(key, int) and (
            -len(owner) <= key < len(owner)):
        return owner[key]
    return missing


def _undefined_message(
    exc: UndefinedVariableError, env: AftercareSandbox, template: str | None, line: int | None,
    variables: Mapping[str, Any] | None = None,
) -> tuple[str, int | None]:
    """The problem, and its line: the render's, or a later one its statement spans to
    where the expression that lacked the value is (:func:`_variable_paths`)."""
    name = exc.variable
    if not exc.has_owner or name is None:
        return f"undefined variable {name!r}", line
    source = env.loader.mapping.get(template or "") if isinstance(env.loader, DictLoader) else None
    candidates: list[tuple[str, nodes.Node]] = []

    def owns(node: nodes.Node) -> bool:
        return variables is not None and _resolve(node, variables) is exc.owner

    if source and line:
        candidates, line = _variable_paths(env, source, line, name,
                                           owns if variables is not None else None)
    if variables is not None and len(candidates) > 1:
        # `customer.name or order.items[0].name`: keep the one whose owner is the
        # object that lacked the key, when it can be told.
        owned = [(p, n) for p, n in candidates if owns(n)]
        candidates = owned or candidates
    if candidates:
        return "undefined variable " + " or ".join(repr(p) for p, _ in candidates), line
    return f"undefined variable {name!r} ({exc.message})", line


def _items(node: nodes.Node) -> list[nodes.Node]:
    """The items of a list or tuple literal (``[a, b]|join``), else the node itself."""
    return list(node.items) if isinstance(node, (nodes.List, nodes.Tuple)) else [node]


def _arguments(node: nodes.Call | nodes.Filter) -> list[nodes.Node]:
    return [*node.args, *(keyword.value for keyword in node.kwargs)]


def _null_candidates(tree: nodes.Template, line: int, use: str | None,
                     argument: bool) -> list[nodes.Node]:
    """The expressions on ``line`` a null could have come from, given how it was used
    (see :class:`NullValueError`): printed ones (``{{ customer.email }}``), the parts
    of a ``~``, the right side of ``%``, the arguments of ``.format()`` or ``.join()``,
    those fed to a filter (``customer.x|date``), or given to it when ``argument``
    (``'%s'|format(customer.x)``); the items of a list or tuple written there count."""
    candidates: list[nodes.Node] = []
    if use is None:
        for output in tree.find_all(nodes.Output):
            candidates += [n for n in output.nodes if n.lineno == line]
    elif use == "~":
        for concat in tree.find_all(nodes.Concat):
            candidates += [n for n in concat.nodes if n.lineno == line]
    elif use == "%":
        for mod in tree.find_all(nodes.Mod):
            candidates += _items(mod.right) if mod.lineno == line else []
    elif use.startswith("."):
        for call in tree.find_all(nodes.Call):
            if (call.lineno == line and isinstance(call.node, nodes.Getattr)
                    and call.node.attr == use[1:]):
                candidates += [item for arg in _arguments(call) for item in _items(arg)]
    else:
        for found in tree.find_all(nodes.Filter):
            if found.name != use or found.lineno != line:
                continue
            given = (_arguments(found) if argument
                     else [found.node] if found.node is not None else [])
            candidates += [item for node in given for item in _items(node)]
    return candidates


def _null_paths(env: AftercareSandbox, template: str | None, line: int | None,
                variables: Mapping[str, Any] | None, use: str | None,
                argument: bool = False) -> list[str]:
    """The expressions on ``line`` that hold null (see :func:`_null_candidates`)."""
    source = env.loader.mapping.get(template or "") if isinstance(env.loader, DictLoader) else None
    if not source or not line or variables is None:
        return []
    try:
        tree = env.parse(source)
    except Exception:  # only a hint: the error stands without it
        return []
    found: dict[str, None] = {}
    for node in _null_candidates(tree, line, use, argument):
        path = _dotted(node)
        if path is not None and _resolve(node, variables) is None:
            found.setdefault(path, None)
    return list(found)


def _null_message(exc: NullValueError, env: AftercareSandbox, template: str | None,
                  line: int | None, variables: Mapping[str, Any] | None) -> str:
    paths = _null_paths(env, template, line, variables, exc.filter, exc.argument)
    used = _used(exc.filter)
    if not paths:
        return (f"a value is null (empty for this customer) and cannot be {used}: give a "
                "fallback with |default(\"...\") or test it with {% if %}")
    shown = " or ".join(repr(p) for p in paths)
    return (f"{shown} is null (empty for this customer) and cannot be {used}: give a "
            f"fallback with {paths[0]}|default(\"...\") or test it with {{% if {paths[0]} %}}")


def _filter_message(exc: FilterValueError, env: AftercareSandbox, template: str | None,
                    line: int | None, variables: Mapping[str, Any] | None) -> str:
    message = (f"|{exc.message}" if exc.message.startswith(f"{exc.filter} ")
               else f"|{exc.filter}: {exc.message}")
    if exc.value is None:
        paths = _null_paths(env, template, line, variables, exc.filter)
        if paths:
            shown = " or ".join(repr(p) for p in paths)
            message += (f" ({shown} is empty for this customer: test it with "
                        f"{{% if {paths[0]} %}})")
    return message


_UNKNOWN = re.compile(r"No (filter|test) named '([^']*)'")


def to_render_error(exc: Exception, env: AftercareSandbox, template: str,
                    variables: Mapping[str, Any] | None = None) -> RenderError:
    """Translate any failure while compiling or rendering ``template``.

    ``variables`` (the render's context, when known) lets an undefined-variable
    message name the right expression when a line has several candidates.
    """
    if isinstance(exc, RenderError):
        return exc
    where, line = error_location(exc)
    where = where or template
    unknown = _UNKNOWN.search(str(exc)) if isinstance(
        exc, (TemplateSyntaxError, TemplateRuntimeError)) else None
    if unknown:
        message = f"unknown {unknown.group(1)} {unknown.group(2)!r}"
    elif isinstance(exc, TemplateSyntaxError):
        message = f"syntax error: {exc.message}"
    elif isinstance(exc, TemplateNotFound):
        message = f"template {exc.name!r} not found in the templates folder"
    elif isinstance(exc, UndefinedVariableError):
        message, line = _undefined_message(exc, env, where, line, variables)
    elif isinstance(exc, SecurityError):
        message = f"not allowed: {exc}"
        line = _attribute_line(env, where, line, str(exc))
    elif isinstance(exc, NullValueError):
        message = _null_message(exc, env, where, line, variables)
    elif isinstance(exc, FilterValueError):
        message = _filter_message(exc, env, where, line, variables)
        return RenderError(where, line, message, _without_value(message, exc.value))
    elif isinstance(exc, UndefinedError):
        message = str(exc)
    elif isinstance(exc, (RecursionError, SyntaxError, MemoryError)):
        # Parsing or Python's compiler gave up: an expression or blocks nested too
        # deep (the line Python names is one of the generated code, not the file's).
        return RenderError(where, None, "template nested too deeply: split the "
                           "expression or the blocks", type(exc).__name__)
    elif isinstance(exc, TypeError) and (arity := _filter_arity(env, str(exc))):
        message = arity
    elif isinstance(exc, TypeError) and (plain := plain_type_error(str(exc))):
        return RenderError(where, line, plain)
    else:
        message = f"{type(exc).__name__}: {exc}"
        if not isinstance(exc, (TemplateRuntimeError, SecurityError, NullValueError)):
            # An error of Python's own may quote the value (``int('abc')``).
            return RenderError(where, line, message, type(exc).__name__)
    return RenderError(where, line, message)


# Python's type names, as a template writer knows the values.
_TYPE_WORDS: Final = {
    "int": "a number", "float": "a number", "Decimal": "a number", "str": "text",
    "Markup": "text", "NoneType": "null", "bool": "true/false", "list": "a list",
    "tuple": "a tuple",
    "dict": "an object", "builtin_function_or_method": "a function", "method": "a function",
    "function": "a function", "Macro": "a macro", "range": "a range", "LoopContext": "loop",
}
_TYPE_ERRORS: Final = [
    (re.compile(r"unsupported operand type\(s\) for (\S+): '(\w+)' and '(\w+)'"),
     "cannot use '{0}' on {1} and {2}"),
    (re.compile(r'can only concatenate str \(not "(\w+)"\) to str'),
     "cannot use '+' on text and {0} (to join text, use '~': "
     "{{{{ 'Order ' ~ order.id }}}})"),
    (re.compile(r'can only concatenate (\w+) \(not "(\w+)"\) to \w+'),
     "cannot use '+' on {0} and {1}"),
    # From an operator, or from a sort (|sort, |max) of values of mixed kinds.
    (re.compile(r"'\S+' not supported between instances of '(\w+)' and '(\w+)'"),
     "cannot compare {0} with {1}"),
    (re.compile(r"argument of type '(\w+)' is not iterable"),
     "cannot look for a value in {0} with 'in'"),
    (re.compile(r"'(\w+)' object is not iterable"), "cannot loop over {0}"),
    (re.compile(r"object of type '(\w+)' has no len\(\)"), "{0} has no length"),
    (re.compile(r"'(\w+)' object is not callable"), "{0} is not a function: remove the ()"),
    (re.compile(r"'(\w+)' object is not subscriptable"), "cannot take an item of {0}"),
    (re.compile(r"bad operand type for unary (\S+): '(\w+)'"), "cannot use '{0}' on {1}"),
]


def plain_type_error(error: str) -> str | None:
    """Python's TypeError about a template's values, in the words of the template
    (``1 + "a"``: "cannot use '+' on a number and text"); None when not one of those."""
    for pattern, template in _TYPE_ERRORS:
        found = pattern.fullmatch(error)
        if found is not None:
            return template.format(*[  # type names as words; operators as they are
                _TYPE_WORDS.get(part, f"a {part} value") if part.isidentifier() else part
                for part in found.groups()])
    return None


_ARITY = re.compile(r"(\w+)\(\) takes (?:from (\d+) to (\d+)|(\d+)) positional "
                    r"arguments? but (\d+) (?:were|was) given")


def _filter_arity(env: AftercareSandbox, error: str) -> str | None:
    """Python's count of a filter's arguments includes the value filtered (and what
    Jinja passes first): ``first_name("there", "x")`` "takes from 1 to 2 positional
    arguments but 3 were given". Say it as the template writes it."""
    found = _ARITY.fullmatch(error)
    if found is None:
        return None
    function, _, high, exact, given = found.groups()  # Jinja's upper is do_upper()
    name = function.removeprefix("sync_").removeprefix("do_")
    if name not in env.filters:  # a filter of another name (an alias first: |d, |e)
        name = next((n for n, f in env.filters.items()
                     if getattr(f, "__wrapped__", f).__name__ == function), name)
    if name not in env.filters:
        return None
    skip = 1 + (getattr(env.filters[name], "jinja_pass_arg", None) is not None)
    most = int(high or exact) - skip
    takes = f"at most {most}" if high else str(most)
    return (f"|{name} takes {takes} argument{'' if most == 1 else 's'} in parentheses, "
            f"{int(given) - skip} given")


def _without_value(message: str, value: Any) -> str:
    """A filter's error without the value it quotes (see RenderError.redacted): the
    value may be a customer's; its type says enough."""
    if value is None or isinstance(value, bool):
        return message
    for shown in {shown_value(value), repr(value)}:
        message = message.replace(shown, f"a {type(value).__name__} value")
    return message
