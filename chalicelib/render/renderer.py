"""Render SMS and email messages from an in-memory set of templates.

In Lambda the templates come from the campaign version stored in DynamoDB, so
a :class:`Renderer` works on a ``{filename: source}`` mapping; use
:func:`load_template_dir` to build one from a folder when working locally.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

from babel import Locale
from jinja2 import UndefinedError
from jinja2.exceptions import SecurityError

from chalicelib.render.errors import RenderError, TemplateNotFoundError
from chalicelib.render.filters import LOCALE_KEY, TIMEZONE_KEY, UTC, parse_locale, parse_timezone
from chalicelib.render.htmltext import html_to_text
from chalicelib.render.limits import render_budget
from chalicelib.render.naming import check_channel, locale_chain, parse_filename
from chalicelib.render.sandbox import (
    AftercareSandbox,
    collecting_undefined,
    make_environment,
    plain_type_error,
    to_render_error,
    undefined_record_message,
)
from chalicelib.render.sms import SmsEncoding, sms_encoding_info, tidy_sms_body

MAX_SMS_CHARS: Final = 1600  # Twilio refuses longer bodies
MAX_EMAIL_BYTES: Final = 256 * 1024  # subject + HTML + text, UTF-8
EMAIL_BLOCKS: Final = ("subject", "html", "text")


@dataclass(frozen=True, slots=True)
class RenderedSms:
    """A rendered SMS, measured as carriers bill it.

    ``characters`` counts encoding units (GSM-7 septets or UTF-16 code units),
    the quantity the 160/70 per-segment limits apply to. ``locale`` is the
    locale the filters formatted with.
    """

    body: str
    template: str
    encoding: SmsEncoding
    segments: int
    characters: int
    locale: str = ""


@dataclass(frozen=True, slots=True)
class RenderedEmail:
    """A rendered email: one-line subject, HTML part and plain-text part."""

    subject: str
    html: str
    text: str
    template: str
    locale: str = ""


class UnreadableTemplate(str):
    """The source of a template file that could not be read (not UTF-8, no permission).

    It is an empty string carrying ``reason``, so that loading a folder never
    raises: :func:`~chalicelib.render.validate_templates` reports the reason
    when a campaign uses the file, and rendering it fails with that reason.
    """

    reason: str

    def __new__(cls, reason: str) -> UnreadableTemplate:
        self = super().__new__(cls, "")
        self.reason = reason
        return self


def _read_template(file: Path) -> str:
    try:
        data = file.read_bytes()
    except OSError as exc:
        return UnreadableTemplate(f"cannot read the file: {exc.strerror or exc}")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        before = data[: exc.start]
        line = before.count(b"\n") + 1
        column = exc.start - (before.rfind(b"\n") + 1) + 1
        return UnreadableTemplate(
            f"not UTF-8 text: byte 0x{data[exc.start]:02x} at line {line} column {column}")


def load_template_dir(path: Path) -> dict[str, str]:
    """Read every ``*.j2`` file under ``path`` into a ``{filename: source}`` mapping.

    Parameters
    ----------
    path
        The templates folder. Files in sub-folders are keyed by their POSIX
        relative path (``partials/footer.j2``) and can be included or extended;
        hidden files and folders are skipped. A file that cannot be read (not
        UTF-8, no permission) is kept as an :class:`UnreadableTemplate`, which
        validation reports: loading a folder never raises for one bad file.

    Returns
    -------
    dict[str, str]
        Sources keyed by file name, ready for :class:`Renderer`.

    Examples
    --------
    >>> renderer = Renderer(load_template_dir(Path("templates")))  # doctest: +SKIP
    """
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"template folder not found: {root}")
    found: dict[str, str] = {}
    for file in sorted(root.rglob("*.j2")):
        relative = file.relative_to(root)
        if file.is_file() and not any(part.startswith(".") for part in relative.parts):
            found[relative.as_posix()] = _read_template(file)
    return found


def _owes_to_undefined(exc: BaseException | None) -> bool:
    """Whether an error that ended a collecting render may come from an undefined value
    it let through as empty: all but a type error of Python's own that names no
    undefined value and a sandbox refusal (an empty currency for ``|money``, a division
    by an undefined count taken as 0 are the undefined variable again)."""
    if exc is None or isinstance(exc, UndefinedError) or "ndefined" in str(exc):
        return True
    if isinstance(exc, SecurityError):
        return False
    return not (type(exc) is TypeError and plain_type_error(str(exc)) is not None)


def _collect(chunks: Iterable[str], template: str) -> str:
    parts: list[str] = []
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if size > MAX_EMAIL_BYTES:
            raise RenderError(template, None, "output exceeds 256 KiB")
        parts.append(chunk)
    return "".join(parts)


def _check_unicode(filename: str, text: str) -> None:
    """A message holding an unpaired surrogate (``{{ '\\ud800' }}``, or data that
    carried one) cannot be encoded for any provider: a render error, not a crash."""
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise RenderError(filename, None, "the message holds an unpaired surrogate "
                              "(not valid Unicode)") from None


class Renderer:
    """Resolve, render and measure message templates.

    Parameters
    ----------
    templates
        ``{filename: source}``; message templates are named
        ``{name}.sms.j2``, ``{name}.email.j2`` and ``{name}.{locale}.{channel}.j2``.
        Other entries (``_layout.email.j2``, ``partials/x.j2``) may be extended
        or included. The mapping is copied.
    default_locale
        Locale of the locale-less files, used when a render names no locale.

    Notes
    -----
    Each template compiles once, on first use, and stays cached: build one
    renderer per campaign version and keep it for the Lambda's lifetime.
    Renders share no mutable state and may run concurrently.
    """

    def __init__(self, templates: Mapping[str, str], *, default_locale: str = "en-US",
                 stand_ins: Iterable[tuple[str, str]] = ()) -> None:
        default = parse_locale(default_locale)
        if default is None:
            raise ValueError(f"unknown default locale {default_locale!r}")
        self.default_locale = default_locale
        self._default = default
        self._templates = dict(templates)
        # Validation only: unknown filters and tests it reported, passed over.
        self._stand_ins = tuple(stand_ins)
        self._text_env = make_environment(self._templates, autoescape=False,
                                          stand_ins=self._stand_ins)
        self._html_env = make_environment(self._templates, autoescape=True,
                                          stand_ins=self._stand_ins)
        self._collecting: tuple[AftercareSandbox, AftercareSandbox] | None = None
        self._index: dict[tuple[str, str], dict[str | None, str]] = {}
        for filename in sorted(self._templates):
            parsed = parse_filename(filename)
            if parsed is not None and not parsed.is_partial:
                variants = self._index.setdefault((parsed.name, parsed.channel), {})
                variants.setdefault(parsed.locale, filename)

    @property
    def templates(self) -> Mapping[str, str]:
        """The template sources, read-only."""
        return MappingProxyType(self._templates)

    def resolve(self, name: str, channel: str, locale: str | None = None) -> str | None:
        """Return the file a render would use, or None.

        For ``pt-BR`` the order is ``name.pt-BR`` → ``name.pt`` → ``name`` and,
        as a last resort, the variants of the default locale. Matching ignores
        case and treats ``_`` and ``-`` alike.
        """
        check_channel(channel)
        variants = self._index.get((name, channel))
        if not variants:
            return None
        if not isinstance(locale, str) or not locale.strip():
            locale = None  # a profile may hold anything: treat it as no locale
        keys = [*locale_chain(locale or self.default_locale), None]
        for key in [*keys, *locale_chain(self.default_locale)]:
            if key in variants:
                return variants[key]
        return None

    def compile(self, filename: str) -> None:
        """Compile ``filename`` now rather than on first use.

        Raises
        ------
        RenderError
            The file is missing or has a syntax error (with its line).
        """
        self._check_readable(filename)
        for env in (self._text_env, self._html_env):
            try:
                env.get_template(filename)
            except Exception as exc:
                raise to_render_error(exc, env, filename) from exc

    def unknown_names(self) -> dict[str, list[tuple[int, str, str]]]:
        """Per file, ``(line, "filter" or "test", name)`` of the filters and tests
        it uses that do not exist (files that do not parse are left out)."""
        from chalicelib.render.static import unknown_names

        found: dict[str, list[tuple[int, str, str]]] = {}
        for filename, source in self._templates.items():
            try:
                tree = self._text_env.parse(source, filename)
                names = list(dict.fromkeys(unknown_names(self._text_env, tree)))
            except Exception:  # compiling reports it
                continue
            if names:
                found[filename] = names
        return found

    def static_problems(self, filename: str, contexts: Sequence[Mapping[str, Any]], *,
                        judge_data: bool = True) -> list[RenderError]:
        """What :mod:`chalicelib.render.static` finds in ``filename`` without rendering
        it (branches the sample data does not take), judged against ``contexts``."""
        from chalicelib.render.static import static_problems

        variables = [self._variables(filename, context, None) for context in contexts]
        return [RenderError(filename, line, message) for line, message in
                static_problems(self._text_env, filename, self._templates[filename],
                                variables, judge_data=judge_data)]

    def referenced(self) -> set[str]:
        """The files another file of the set includes, imports or extends."""
        from chalicelib.render.static import referenced_templates

        return referenced_templates(self._text_env, self._templates)

    def include_cycles(self) -> dict[str, tuple[int | None, list[str]]]:
        """Files that include, import or extend themselves (see
        :func:`chalicelib.render.static.include_cycles`)."""
        from chalicelib.render.static import include_cycles

        return include_cycles(self._text_env, self._templates)

    def _check_readable(self, filename: str) -> None:
        source = self._templates.get(filename)
        if isinstance(source, UnreadableTemplate):
            raise RenderError(filename, None, source.reason)

    def has_template(self, name: str, channel: str, locale: str | None = None) -> bool:
        """Tell whether ``render_<channel>(name, ..., locale)`` would find a template."""
        return self.resolve(name, channel, locale) is not None

    def render_sms(
        self, name: str, context: Mapping[str, Any], locale: str | None = None
    ) -> RenderedSms:
        """Render the SMS template ``name`` for a recipient.

        Parameters
        ----------
        name
            Template name without locale or suffix (``checkin``).
        context
            Template variables (``customer``, ``order``, ``links``...).
        locale
            Recipient locale (``pt-BR``); None means ``customer.locale`` from
            the context, else the default locale.

        Returns
        -------
        RenderedSms
            Body tidied (no-break spaces made plain, blank runs squeezed) and
            measured.

        Raises
        ------
        TemplateNotFoundError
            No variant of ``name`` fits.
        RenderError
            Undefined variable, sandbox violation, filter error, empty body or
            a body over 1600 characters.
        """
        locale = locale or _customer_value(context, "locale")
        filename = self.resolve(name, "sms", locale)
        if filename is None:
            raise TemplateNotFoundError(name, "sms", locale)
        return self.render_sms_file(filename, context, locale)

    def render_sms_file(
        self, filename: str, context: Mapping[str, Any], locale: str | None = None
    ) -> RenderedSms:
        """Render one specific SMS file (no locale resolution); see :meth:`render_sms`."""
        self._check_readable(filename)
        variables = self._variables(filename, context, locale)
        try:
            template = self._text_env.get_template(filename)
            with render_budget():
                raw = _collect(template.root_render_func(template.new_context(variables)),
                               filename)
        except RenderError:
            raise
        except Exception as exc:
            raise to_render_error(exc, self._text_env, filename, variables) from exc
        body = tidy_sms_body(raw)
        _check_unicode(filename, body)
        if not body:
            raise RenderError(filename, None, "SMS body is empty")
        if len(body) > MAX_SMS_CHARS:
            raise RenderError(
                filename, None, f"SMS body has {len(body)} characters (limit {MAX_SMS_CHARS})"
            )
        encoding, segments, units = sms_encoding_info(body)
        return RenderedSms(body, filename, encoding, segments, units, variables[LOCALE_KEY])

    def render_email(
        self, name: str, context: Mapping[str, Any], locale: str | None = None
    ) -> RenderedEmail:
        """Render the email template ``name`` for a recipient.

        The ``subject`` and ``text`` blocks render without HTML escaping, the
        ``html`` block with it. The subject is collapsed to one line; without
        a ``text`` block (or with a blank one) the text part is derived from
        the HTML.

        Parameters
        ----------
        name
            Template name without locale or suffix (``care_tip``).
        context
            Template variables.
        locale
            Recipient locale; None means ``customer.locale``, else the default.

        Returns
        -------
        RenderedEmail

        Raises
        ------
        TemplateNotFoundError
            No variant of ``name`` fits.
        RenderError
            As for :meth:`render_sms`, plus a missing ``subject`` or ``html``
            block, an empty subject or HTML part, or more than 256 KiB in all.
        """
        locale = locale or _customer_value(context, "locale")
        filename = self.resolve(name, "email", locale)
        if filename is None:
            raise TemplateNotFoundError(name, "email", locale)
        return self.render_email_file(filename, context, locale)

    def render_email_file(
        self, filename: str, context: Mapping[str, Any], locale: str | None = None
    ) -> RenderedEmail:
        """Render one specific email file (no locale resolution); see :meth:`render_email`."""
        self._check_readable(filename)
        variables = self._variables(filename, context, locale)
        with render_budget():
            plain = self._blocks(self._text_env, filename, variables, ("subject", "text"))
            html = self._blocks(self._html_env, filename, variables, ("html",))["html"]
        if plain["subject"] is None or html is None:
            missing = "subject" if plain["subject"] is None else "html"
            raise RenderError(filename, None, f"missing {{% block {missing} %}}")
        subject = " ".join(plain["subject"].split())
        html = html.strip()
        if not subject or not html:
            raise RenderError(filename, None, "subject and html block are empty"
                              if not (subject or html) else "subject is empty"
                              if not subject else "the html block is empty")
        text = (plain["text"] or "").strip() or html_to_text(html)
        for part in (subject, html, text):
            _check_unicode(filename, part)
        size = sum(len(part.encode("utf-8")) for part in (subject, html, text))
        if size > MAX_EMAIL_BYTES:
            raise RenderError(filename, None, f"email is {size} bytes (limit {MAX_EMAIL_BYTES})")
        return RenderedEmail(subject, html, text, filename, variables[LOCALE_KEY])

    def undefined_problems(
        self, filename: str, context: Mapping[str, Any], locale: str | None = None
    ) -> list[RenderError]:
        """Every undefined variable and unsafe attribute a render of ``filename`` meets.

        A render stops at the first; validation calls this after such a failure
        to list them all, one :class:`RenderError` each (template, line,
        message). Any other error ends the pass: what was found until then is
        returned, with that error when it is on another line and owes nothing to
        an undefined value (``{{ 1 + "a" }}`` after ``{{ customer.nmae }}``).
        """
        if self._collecting is None:
            self._collecting = (
                make_environment(self._templates, autoescape=False, collecting=True,
                                 stand_ins=self._stand_ins),
                make_environment(self._templates, autoescape=True, collecting=True,
                                 stand_ins=self._stand_ins),
            )
        text_env, html_env = self._collecting
        variables = self._variables(filename, context, locale)
        parsed = parse_filename(filename)
        ended: RenderError | None = None
        with collecting_undefined() as records, render_budget():
            try:
                if parsed is not None and parsed.channel == "email":
                    self._blocks(text_env, filename, variables, ("subject", "text"))
                    self._blocks(html_env, filename, variables, ("html",))
                else:
                    template = text_env.get_template(filename)
                    _collect(template.root_render_func(template.new_context(variables)),
                             filename)
            except Exception as exc:
                cause = exc.__cause__ if isinstance(exc, RenderError) else exc
                if not _owes_to_undefined(cause):
                    ended = (exc if isinstance(exc, RenderError)
                             else to_render_error(exc, text_env, filename, variables))
        found: dict[tuple[str, int | None, str], RenderError] = {}
        for undefined, where, line in records:
            message, line = undefined_record_message(undefined, text_env, where, line,
                                                     variables)
            error = RenderError(where or filename, line, message)
            found.setdefault((error.template, error.line, error.message), error)
        if ended is not None and found and ended.line is not None and not any(
                (e.template, e.line) == (ended.template, ended.line) for e in found.values()):
            found.setdefault((ended.template, ended.line, ended.message), ended)
        return list(found.values())

    def _blocks(
        self,
        env: AftercareSandbox,
        filename: str,
        variables: dict[str, Any],
        names: tuple[str, ...],
    ) -> dict[str, str | None]:
        try:
            template = env.get_template(filename)
            context = template.new_context(variables)
            # Run the top level once: it resolves {% extends %} (adding the
            # layout's blocks) and defines imports, macros and top-level sets.
            _collect(template.root_render_func(context), filename)
            return {
                name: _collect(context.blocks[name][0](context), filename)
                if context.blocks.get(name)
                else None
                for name in names
            }
        except RenderError:
            raise
        except Exception as exc:
            raise to_render_error(exc, env, filename, variables) from exc

    def _variables(
        self, filename: str, context: Mapping[str, Any], locale: str | None
    ) -> dict[str, Any]:
        parsed = parse_filename(filename)
        variables = dict(context)
        variables[LOCALE_KEY] = str(self._format_locale(locale, parsed.locale if parsed else None))
        variables[TIMEZONE_KEY] = _recipient_timezone(context)
        return variables

    def _format_locale(self, requested: str | None, file_locale: str | None) -> Locale:
        """Pick the locale for numbers and dates.

        The most specific locale whose language is the template's own: a
        ``pt`` file sent to ``pt-BR`` formats as ``pt_BR``, an English
        fallback file sent to ``fr-FR`` formats as the default locale.
        """
        wanted = parse_locale(requested) if isinstance(requested, str) and requested else None
        own = parse_locale(file_locale) if file_locale else None
        language = (own or self._default).language
        for candidate in (wanted, self._default, own):
            if candidate is not None and candidate.language == language:
                return candidate
        return self._default


def _customer_value(context: Mapping[str, Any], key: str) -> str | None:
    customer = context.get("customer")
    value = customer.get(key) if isinstance(customer, Mapping) else None
    return value if isinstance(value, str) and value else None


def _recipient_timezone(context: Mapping[str, Any]) -> dt.tzinfo:
    zone = _customer_value(context, "timezone")
    return (parse_timezone(zone) if zone else None) or UTC
