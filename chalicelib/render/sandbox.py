"""The Jinja2 sandbox every template runs in, and error translation.

Templates are written by marketers and stored with campaign versions, so they
run in an :class:`~jinja2.sandbox.ImmutableSandboxedEnvironment`: no access to
underscore attributes, no mutation of the context, no file system (templates
come only from the in-memory mapping) and no helper globals beyond ``range``
and ``dict``. Undefined values fail loudly (a strict undefined).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final, NoReturn

from jinja2 import (
    DictLoader,
    StrictUndefined,
    TemplateNotFound,
    TemplateSyntaxError,
    Undefined,
    UndefinedError,
    nodes,
)
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import missing

from chalicelib.render.errors import RenderError
from chalicelib.render.filters import FILTERS

if TYPE_CHECKING:
    from jinja2.runtime import Context

REMOVED_GLOBALS: Final = ("cycler", "joiner", "lipsum", "namespace")
MAX_REPEAT: Final = 100_000  # longest string or list that `*` may build
MAX_EXPONENT: Final = 1_000
_PADDING_METHODS: Final = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs"})


class UndefinedVariableError(UndefinedError):
    """A template used a value the context does not have."""

    def __init__(self, message: str, name: str | None, has_owner: bool) -> None:
        super().__init__(message)
        self.variable = name
        self.has_owner = has_owner


class _StrictUndefined(StrictUndefined):
    __slots__ = ()

    def _fail_with_undefined_error(self, *args: Any, **kwargs: Any) -> NoReturn:
        if self._undefined_exception is not UndefinedError:  # e.g. SecurityError
            raise self._undefined_exception(self._undefined_message)
        raise UndefinedVariableError(
            self._undefined_message,
            self._undefined_name,
            self._undefined_obj is not missing,
        )


# Jinja binds the operators to the base method object: rebind them to ours.
for _klass in (Undefined, StrictUndefined):
    for _attr, _value in vars(_klass).items():
        if _value is Undefined._fail_with_undefined_error and _attr.startswith("__"):
            setattr(_StrictUndefined, _attr, _StrictUndefined._fail_with_undefined_error)


class AftercareSandbox(ImmutableSandboxedEnvironment):
    """Immutable sandbox that prefers dict keys and refuses runaway output."""

    intercepted_binops = frozenset({"*", "**"})

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, Undefined):  # report `cycler`, not `cycler.__init__`
            obj._fail_with_undefined_error()
        # Data keys win over dict methods, so `order.items` is the item list.
        if isinstance(obj, Mapping) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        if isinstance(obj, Undefined):
            obj._fail_with_undefined_error()
        return super().getitem(obj, argument)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                sized = isinstance(seq, (str, list, tuple)) and isinstance(times, int)
                if sized and len(seq) * times > MAX_REPEAT:
                    raise SecurityError("repetition would build a value too large")
        if operator == "**" and isinstance(right, int) and abs(right) > MAX_EXPONENT:
            raise SecurityError("exponent too large")
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        padding = isinstance(getattr(__obj, "__self__", None), str) and (
            getattr(__obj, "__name__", "") in _PADDING_METHODS
        )
        sizes = (*args, *kwargs.values())
        if padding and any(isinstance(a, int) and a > MAX_REPEAT for a in sizes):
            raise SecurityError("padding would build a value too large")
        return super().call(__context, __obj, *args, **kwargs)


def make_environment(templates: Mapping[str, str], *, autoescape: bool) -> AftercareSandbox:
    """Build a sandbox over an in-memory ``{filename: source}`` mapping.

    Templates compile on first use and stay cached for the environment's life
    (no reload checks: a campaign version's templates never change).
    """
    env = AftercareSandbox(
        loader=DictLoader(dict(templates)),
        undefined=_StrictUndefined,
        autoescape=autoescape,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
        cache_size=-1,
    )
    for name in REMOVED_GLOBALS:
        env.globals.pop(name, None)
    env.filters.update(FILTERS)
    return env


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


def _variable_paths(env: AftercareSandbox, source: str, line: int, name: str) -> list[str]:
    """Find how ``name`` was reached on ``line``: ``customer.nickname``."""
    found: dict[str, None] = {}
    for node in env.parse(source).find_all((nodes.Getattr, nodes.Getitem)):
        if node.lineno != line:
            continue
        key: Any = None
        if isinstance(node, nodes.Getattr):
            key = node.attr
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            key = node.arg.value
        path = _dotted(node) if key == name else None
        if path:
            found.setdefault(path, None)
    return list(found)


def _undefined_message(
    exc: UndefinedVariableError, env: AftercareSandbox, template: str | None, line: int | None
) -> str:
    name = exc.variable
    if not exc.has_owner or name is None:
        return f"undefined variable {name!r}"
    source = env.loader.mapping.get(template or "") if isinstance(env.loader, DictLoader) else None
    paths = _variable_paths(env, source, line, str(name)) if source and line else []
    if paths:
        return "undefined variable " + " or ".join(repr(p) for p in paths)
    return f"undefined variable {name!r} ({exc.message})"


def to_render_error(exc: Exception, env: AftercareSandbox, template: str) -> RenderError:
    """Translate any failure while compiling or rendering ``template``."""
    if isinstance(exc, RenderError):
        return exc
    where, line = error_location(exc)
    where = where or template
    if isinstance(exc, TemplateSyntaxError):
        message = f"syntax error: {exc.message}"
    elif isinstance(exc, TemplateNotFound):
        message = f"template {exc.name!r} not found"
    elif isinstance(exc, UndefinedVariableError):
        message = _undefined_message(exc, env, where, line)
    elif isinstance(exc, SecurityError):
        message = f"not allowed: {exc}"
    elif isinstance(exc, UndefinedError):
        message = str(exc)
    else:
        message = f"{type(exc).__name__}: {exc}"
    return RenderError(where, line, message)
