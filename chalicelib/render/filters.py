"""Locale-aware template filters.

Each render puts its resolved locale and the recipient's timezone in the
template context (``_locale``, ``_timezone``); the filters read them from
there, so one shared environment serves concurrent renders in any locale.
"""

from __future__ import annotations

import datetime as dt
import unicodedata
from decimal import Decimal, InvalidOperation, localcontext
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_datetime
from babel.numbers import format_currency, get_currency_symbol, is_currency
from jinja2 import Undefined, pass_context

if TYPE_CHECKING:
    from collections.abc import Callable

    from jinja2.runtime import Context

LOCALE_KEY: Final = "_locale"
TIMEZONE_KEY: Final = "_timezone"
UTC: Final = dt.UTC


@lru_cache(maxsize=256)
def parse_locale(value: str) -> Locale | None:
    """Parse ``pt-BR``, ``pt_br`` or ``PT-br`` into a Babel locale (None if unknown)."""
    try:
        return Locale.parse(value.strip().replace("-", "_"))
    except (UnknownLocaleError, ValueError, TypeError):
        return None


@lru_cache(maxsize=256)
def parse_timezone(value: str) -> dt.tzinfo | None:
    """Return the IANA timezone called ``value``, or None if there is none."""
    try:
        return ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def _locale(context: Context) -> Locale:
    found = parse_locale(str(context.get(LOCALE_KEY) or "en_US"))
    return found if found is not None else Locale("en", "US")


def _timezone(context: Context, tz: str | None) -> dt.tzinfo:
    if tz is None:
        default = context.get(TIMEZONE_KEY)
        return default if isinstance(default, dt.tzinfo) else UTC
    zone = parse_timezone(tz) if isinstance(tz, str) else None
    if zone is None:
        raise FilterValueError("datetime", f"unknown timezone {shown_value(tz)} (use an IANA "
                               "name such as 'Europe/Berlin')", tz)
    return zone


class FilterValueError(ValueError):
    """A filter was given a value or an argument it cannot format.

    ``filter`` names the filter (``date``), ``value`` is what it was given, so
    that the error can name the template expression that held it.
    """

    def __init__(self, filter: str, message: str, value: Any = None) -> None:
        super().__init__(message)
        self.filter = filter
        self.message = message
        self.value = value


def shown_value(value: Any) -> str:
    """``value`` for an error message: ``null`` for None, long values cut."""
    if value is None:
        return "null (empty)"
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def _to_datetime(value: Any, filter: str) -> dt.datetime | dt.date:
    if isinstance(value, Undefined):
        value._fail_with_undefined_error()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        text = value.strip()
        for parse in (dt.date.fromisoformat, dt.datetime.fromisoformat):
            try:  # a date first: "20260301" is a day, not midnight UTC
                return parse(text)
            except ValueError:
                pass
    raise FilterValueError(filter, "expected a date, a datetime or an ISO 8601 string, got "
                           f"{shown_value(value)}", value)


def _format(filter: str, format: Any) -> str:
    if not isinstance(format, str) or not format.strip():
        raise FilterValueError(filter, "the format must be 'short', 'medium', 'long', 'full' "
                               f"or a pattern such as 'd MMM y', got {shown_value(format)}", format)
    return format


def _babel(filter: str, format: str, call: Callable[[], Any]) -> str:
    """Run a Babel formatter; a pattern it cannot apply is the template's error."""
    try:
        return str(call())
    except (AttributeError, KeyError, ValueError, TypeError, IndexError) as exc:
        hint = ("it asks for a time of day: use |datetime"
                if filter == "date" and isinstance(exc, AttributeError) else str(exc))
        raise FilterValueError(filter, f"cannot format with pattern {format!r}: {hint}",
                               format) from None
    except OverflowError:
        raise FilterValueError(filter, "the date is out of range in this timezone") from None


def _currency_spacing(text: str, symbol: str) -> str:
    """Apply CLDR's currency spacing, which Babel leaves out: a no-break space goes
    between the number and a symbol whose side towards it is a letter
    (``USD 129.50`` in es-MX, ``CHF 129.50`` in en-GB, but ``$129.50``)."""
    at = text.find(symbol) if symbol else -1
    if at < 0:
        return text
    end = at + len(symbol)

    def letter(char: str) -> bool:
        return not unicodedata.category(char).startswith(("S", "Z"))

    if end < len(text) and text[end].isdigit() and letter(symbol[-1]):
        return f"{text[:end]}\u00a0{text[end:]}"
    if at > 0 and text[at - 1].isdigit() and letter(symbol[0]):
        return f"{text[:at]}\u00a0{text[at:]}"
    return text


@pass_context
def money(context: Context, amount: Any, currency: str = "USD") -> str:
    """Format ``amount`` in ``currency`` for the render's locale.

    ``{{ order.total|money(order.currency) }}`` gives ``$129.50`` in en-US and
    ``129,50 €`` for euros in de-DE.
    """
    # An undefined amount or currency raises here; while validation lists every
    # undefined value, each is noted and the filter gives "" so the render goes on
    # (else it would stop at a "not a number" that is the same mistake).
    missing = [v for v in (amount, currency) if isinstance(v, Undefined)]
    for undefined in missing:
        undefined._fail_with_undefined_error()
    if missing:
        return ""
    if isinstance(amount, bool) or not isinstance(amount, (int, float, Decimal, str)):
        raise FilterValueError("money", f"money expects a number, got {shown_value(amount)}",
                               amount)
    try:
        value = amount if isinstance(amount, Decimal) else Decimal(str(amount).strip())
    except InvalidOperation:
        raise FilterValueError("money", f"money expects a number, got {shown_value(amount)}",
                               amount) from None
    if not value.is_finite() or value.adjusted() >= 30:
        raise FilterValueError("money", "money expects a finite amount under 10^30, got "
                               f"{shown_value(amount)}", amount)
    code = str(currency).strip().upper() if isinstance(currency, str) else ""
    if not is_currency(code):
        raise FilterValueError("money", f"unknown currency {shown_value(currency)} (use an "
                               "ISO 4217 code such as 'USD' or 'EUR')", currency)
    locale = _locale(context)
    # Babel rounds in the current decimal context (28 digits): an amount from 10^26
    # up would fail with a bare InvalidOperation; 60 digits hold any amount allowed.
    with localcontext(prec=60):
        text = str(format_currency(value, code, locale=locale))
    return _currency_spacing(text, str(get_currency_symbol(code, locale=locale)))


@pass_context
def date(context: Context, value: Any, format: str = "medium") -> str:
    """Format a date (``short``, ``medium``, ``long``, ``full`` or a CLDR pattern).

    A datetime is first moved to the recipient's timezone (one without an offset
    is UTC), so a delivery at 02:00 UTC is still "yesterday" in New York.
    """
    if isinstance(value, Undefined):
        value._fail_with_undefined_error()  # raises, unless validation lists them all
        return ""
    parsed = _to_datetime(value, "date")
    pattern = _format("date", format)
    if isinstance(parsed, dt.datetime):
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        try:
            parsed = parsed.astimezone(_timezone(context, None))
        except OverflowError:
            raise FilterValueError("date", "the date is out of range in this timezone",
                                   value) from None
        parsed = parsed.date()
    day = parsed
    return _babel("date", pattern,
                  lambda: format_date(day, format=pattern, locale=_locale(context)))


@pass_context
def datetime(
    context: Context, value: Any, format: str = "medium", tz: str | None = None
) -> str:
    """Format a date and time in ``tz`` (default: the recipient's timezone).

    Naive values are taken as UTC; a bare date (``1992-02-29``) is taken as its
    midnight in that timezone, so it shows on its own day everywhere.
    """
    if isinstance(value, Undefined):
        value._fail_with_undefined_error()  # raises, unless validation lists them all
        return ""
    parsed = _to_datetime(value, "datetime")
    pattern = _format("datetime", format)
    zone = _timezone(context, tz)
    if not isinstance(parsed, dt.datetime):
        parsed = dt.datetime.combine(parsed, dt.time(), tzinfo=zone)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    moment = parsed
    return _babel("datetime", pattern, lambda: format_datetime(
        moment, format=pattern, tzinfo=zone, locale=_locale(context)))


def first_name(value: Any, fallback: str = "") -> str:
    """Return the first word of a name, or ``fallback`` when the name is blank.

    ``{{ customer.name|first_name("there") }}`` gives ``Ana`` for
    ``"Ana María Souza"`` and ``there`` for ``None`` or ``""``.
    """
    words = str(value).split() if value is not None else []
    return words[0] if words else fallback


def default(value: Any, default_value: Any = "", boolean: bool = False) -> Any:
    """Jinja's ``default``, except that null counts as missing too.

    A profile field a customer lacks (``customer.email``) is null, not undefined:
    ``{{ customer.email|default("no email") }}`` must still give the fallback.
    """
    if value is None or isinstance(value, Undefined) or (boolean and not value):
        return default_value
    return value


FILTERS: Final[dict[str, Callable[..., Any]]] = {
    "default": default,
    "d": default,
    "money": money,
    "date": date,
    "datetime": datetime,
    "first_name": first_name,
}
