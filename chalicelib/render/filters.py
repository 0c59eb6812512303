"""Locale-aware template filters.

Each render puts its resolved locale and the recipient's timezone in the
template context (``_locale``, ``_timezone``); the filters read them from
there, so one shared environment serves concurrent renders in any locale.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_datetime
from babel.numbers import format_currency, is_currency
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
    zone = parse_timezone(str(tz))
    if zone is None:
        raise ValueError(f"unknown timezone {tz!r}")
    return zone


def _to_datetime(value: Any) -> dt.datetime | dt.date:
    if isinstance(value, Undefined):
        value._fail_with_undefined_error()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        text = value.strip()
        try:
            if len(text) == 10:
                return dt.date.fromisoformat(text)
            return dt.datetime.fromisoformat(text)
        except ValueError:
            pass
    raise ValueError(f"expected a date, a datetime or an ISO 8601 string, got {value!r}")


@pass_context
def money(context: Context, amount: Any, currency: str = "USD") -> str:
    """Format ``amount`` in ``currency`` for the render's locale.

    ``{{ order.total|money(order.currency) }}`` gives ``$129.50`` in en-US and
    ``129,50 €`` in de-DE.
    """
    if isinstance(amount, bool):
        raise ValueError(f"money expects a number, got {amount!r}")
    try:
        value = amount if isinstance(amount, Decimal) else Decimal(str(amount))
    except InvalidOperation:
        raise ValueError(f"money expects a number, got {amount!r}") from None
    code = str(currency).upper()
    if not is_currency(code):
        raise ValueError(f"unknown currency {currency!r}")
    return str(format_currency(value, code, locale=_locale(context)))


@pass_context
def date(context: Context, value: Any, format: str = "medium") -> str:
    """Format a date (``short``, ``medium``, ``long``, ``full`` or a CLDR pattern).

    An aware datetime is first moved to the recipient's timezone, so a
    delivery at 02:00 UTC is still "yesterday" in New York.
    """
    parsed = _to_datetime(value)
    if isinstance(parsed, dt.datetime):
        if parsed.tzinfo is not None:
            parsed = parsed.astimezone(_timezone(context, None))
        parsed = parsed.date()
    return str(format_date(parsed, format=format, locale=_locale(context)))


@pass_context
def datetime(
    context: Context, value: Any, format: str = "medium", tz: str | None = None
) -> str:
    """Format a date and time in ``tz`` (default: the recipient's timezone).

    Naive values are taken as UTC; a bare date is taken as its midnight.
    """
    parsed = _to_datetime(value)
    if not isinstance(parsed, dt.datetime):
        parsed = dt.datetime.combine(parsed, dt.time())
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    zone = _timezone(context, tz)
    return str(format_datetime(parsed, format=format, tzinfo=zone, locale=_locale(context)))


def first_name(value: Any, fallback: str = "") -> str:
    """Return the first word of a name, or ``fallback`` when the name is blank.

    ``{{ customer.name|first_name("there") }}`` gives ``Ana`` for
    ``"Ana María Souza"`` and ``there`` for ``None`` or ``""``.
    """
    words = str(value).split() if value is not None else []
    return words[0] if words else fallback


FILTERS: Final[dict[str, Callable[..., str]]] = {
    "money": money,
    "date": date,
    "datetime": datetime,
    "first_name": first_name,
}
