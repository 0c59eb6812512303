"""Parse and check the event envelope that other systems send.

Hand-written rather than a pydantic model: it runs once per event on the hot path
(ingest and ``aftercare simulate``), where a few dict checks cost a microsecond.
Errors name the JSON path of the problem. The published contract is
``chalicelib/events/events.schema.json``; a test holds the two together.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any, TypeGuard
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from chalicelib.journeys.dates import parse_date
from chalicelib.jsonkind import json_kind


@lru_cache(maxsize=1024)
def valid_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True

MAX_EVENT_BYTES = 64 * 1024
_EMAIL_DOMAIN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}\.)+[A-Za-z]{2,63}$")
_TYPE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,31}")  # a key safe to show in a path
_OPTIONAL_STR = ("email", "phone", "name", "timezone", "locale", "birthday")
_known_types: set[str] = set()  # types that matched _TYPE (a few; bounded anyway)


class EventError(ValueError):
    """An event that can never be processed; ``path`` says where."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


def _eventbridge(raw: Any) -> bool:
    """EventBridge's shape: ``detail-type`` with a ``detail`` (or without a ``type``,
    which an envelope has: one with a stray ``detail-type`` field is still one)."""
    return isinstance(raw, dict) and "detail-type" in raw and (
        "detail" in raw or "type" not in raw)


def unwrap(raw: Any) -> Any:
    """Accept the bare envelope or an EventBridge event carrying it in ``detail``."""
    if _eventbridge(raw):
        detail = raw.get("detail")
        if isinstance(detail, dict) and "type" not in detail:
            detail = {**detail, "type": raw["detail-type"]}
        return detail
    return raw


MAX_STR_CHARS = 512  # an envelope's ids and other text fields


def _str(obj: dict[str, Any], key: str, path: str, *, required: bool = False) -> str | None:
    value = obj.get(key)
    if value is None:
        if required:
            raise EventError(f"{path}.{key}", "required field is missing")
        return None
    if not isinstance(value, str):
        raise EventError(f"{path}.{key}", f"must be a non-empty string, got {json_kind(value)}")
    if required and not value.strip():
        raise EventError(f"{path}.{key}", "must be a non-empty string, got an empty one")
    if len(value) > MAX_STR_CHARS:
        raise EventError(f"{path}.{key}", f"longer than {MAX_STR_CHARS} characters")
    return value


# Event times outside these years are refused: a year-1 or year-9999 time is a
# data error, and yearly planning (next year's birthday) needs room on both sides.
MIN_YEAR, MAX_YEAR = 1900, 2199


_DAY = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)


def parse_day(text: str) -> date:
    """A day of a report's range: ``YYYY-MM-DD`` only (not ``20260301`` nor a week
    date), in the years an event may carry. Raises ValueError saying which."""
    try:
        if not _DAY.fullmatch(text):
            raise ValueError
        day = date.fromisoformat(text)  # raises for 2026-02-30
    except ValueError:
        raise ValueError("not a day (YYYY-MM-DD)") from None
    if not MIN_YEAR <= day.year <= MAX_YEAR:
        raise ValueError(f"year {day.year} is outside {MIN_YEAR}-{MAX_YEAR}")
    return day


def parse_time(value: str, path: str) -> datetime:
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        # The value is not quoted: a mis-mapped export can put an email or a phone in
        # any column, and reasons go to logs, DLQ attributes and import reports.
        raise EventError(path, "not an ISO 8601 datetime (such as "
                         "2026-03-01T14:02:00Z)") from None
    if dt.tzinfo is None:
        raise EventError(path, "datetime needs a timezone offset or Z")
    try:
        utc = dt.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00:00+01:00 is before year 1 in UTC
        raise EventError(path, f"year {dt.year} is outside {MIN_YEAR}-{MAX_YEAR}") from None
    if not MIN_YEAR <= utc.year <= MAX_YEAR:  # in UTC, as it is stored and compared
        raise EventError(path, f"year {utc.year} is outside {MIN_YEAR}-{MAX_YEAR}")
    # Whole seconds, as every time is stored (clock.iso) and the schedule's due_at
    # index counts: a fraction kept here would make simulate decide a step at
    # 16:00:00.9 that the pipeline, reading it back as 16:00:00, decides before an
    # event at 16:00:00.1.
    return utc.replace(microsecond=0)


@lru_cache(maxsize=65536)
def normalize_phone(raw: str, locale: str | None = None) -> str:
    """E.164 form of a phone number; national numbers use the locale's country.

    Raises
    ------
    ValueError
        When the number is not a valid phone number.
    """
    import phonenumbers

    region = locale.replace("_", "-").split("-")[-1].upper() if locale and "-" in locale else None
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"not a phone number: {exc._msg}") from None
    if not phonenumbers.is_valid_number(number):
        raise ValueError("not a valid phone number" + ("" if raw.startswith("+") else
                                                      " (use +country format)"))
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


@lru_cache(maxsize=65536)
def normalize_email(raw: str) -> str:
    address = raw.strip()
    local, _, domain = address.rpartition("@")
    # No space nor control character (a NUL from a CSV cell): no mailbox has one.
    if not local or not _EMAIL_DOMAIN.fullmatch(domain) or any(
            c.isspace() or not c.isprintable() for c in address):
        raise ValueError("not an email address")
    return f"{local}@{domain.lower()}"


def _plain_str(value: Any) -> TypeGuard[str]:
    """A string ``_str`` accepts as it is: the common case, checked inline."""
    return type(value) is str and len(value) <= MAX_STR_CHARS


@lru_cache(maxsize=65536)
def _valid_birthday(value: str) -> bool:
    return parse_date(value) is not None


def _normalize_contact(raw: dict[str, Any]) -> dict[str, Any]:
    """Phone in E.164, email with a lowercased domain, unknown timezones dropped."""
    phone = raw.get("phone")
    if phone:
        try:
            raw["phone"] = normalize_phone(phone, raw.get("locale"))
        except ValueError as exc:
            raise EventError("$.customer.phone", str(exc)) from None
    email = raw.get("email")
    if email:
        try:
            raw["email"] = normalize_email(email)
        except ValueError as exc:
            raise EventError("$.customer.email", str(exc)) from None
    timezone = raw.get("timezone")
    if timezone and not valid_zone(timezone):
        # Unknown, not an error: resolved to the default timezone at send time.
        raw["timezone"] = None
    return raw


def _customer(raw: Any) -> dict[str, Any]:
    if raw is None:
        raise EventError("$.customer", "required object is missing")
    if not isinstance(raw, dict):
        raise EventError("$.customer", f"must be an object, got {json_kind(raw)}")
    customer_id = raw.get("id")
    if not (_plain_str(customer_id) and customer_id.strip()):
        _str(raw, "id", "$.customer", required=True)
    for key in _OPTIONAL_STR:
        value = raw.get(key)
        if value is not None and not _plain_str(value):
            _str(raw, key, "$.customer")  # raises with the reason, unless a str subclass
    raw = _normalize_contact(dict(raw))
    birthday = raw.get("birthday")
    if birthday is not None and not _valid_birthday(birthday):
        raise EventError("$.customer.birthday", "not a date (YYYY-MM-DD)")
    consent = raw.get("consent")
    if consent is not None:
        if not isinstance(consent, dict):
            raise EventError("$.customer.consent", "must be an object of channel -> consent")
        normalized = {}
        for channel, value in consent.items():
            if channel not in ("sms", "email"):
                if _WORD.fullmatch(channel):  # a word such as "fax": name it
                    raise EventError(f"$.customer.consent.{channel}",
                                     "unknown channel (sms or email)")
                # Anything else may be data in the wrong place (an email): not shown.
                raise EventError("$.customer.consent",
                                 "has a key that is not a channel (sms or email)")
            normalized[channel] = _consent_value(channel, value)
        raw["consent"] = normalized
    attrs = raw.get("attributes")
    if attrs is not None and not isinstance(attrs, dict):
        raise EventError("$.customer.attributes", "must be an object")
    return raw


def _consent_value(channel: str, value: Any) -> Any:
    """A consent record's ``at`` is compared with other records': it must be a real
    datetime, stored in the one UTC format, or a bogus time could outrank a STOP."""
    path = f"$.customer.consent.{channel}"
    if isinstance(value, bool):
        return value
    if not isinstance(value, dict):
        raise EventError(path, "must be true/false or an object")
    if not isinstance(value.get("granted"), bool):
        raise EventError(f"{path}.granted", "must be true or false")
    explicit = value.get("explicit")
    if explicit is not None and not isinstance(explicit, bool):
        # "false" as text must never count as an explicit opt-in that lifts a STOP.
        raise EventError(f"{path}.explicit", "must be true or false")
    for key in ("source", "text"):
        if value.get(key) is not None and not isinstance(value[key], str):
            raise EventError(f"{path}.{key}", "must be a string")
    at = value.get("at")
    if at is None:
        return value
    if not isinstance(at, str):
        raise EventError(f"{path}.at", "must be an ISO 8601 datetime")
    moment = parse_time(at, f"{path}.at")
    return {**value, "at": moment.strftime("%Y-%m-%dT%H:%M:%SZ")}


_ITEM_STR = ("sku", "name", "category")
_ITEM_NUMBER = ("quantity", "price")


_MAX_DOUBLE = 1.7976931348623157e308


def _is_number(value: Any) -> bool:
    """A finite number a double holds (totals are summed as floats): not a bool, not
    NaN or an infinity, not an integer such as 10**400."""
    if type(value) is float:
        return value - value == 0.0  # NaN and infinities give NaN
    return (isinstance(value, int) and not isinstance(value, bool)
            and -_MAX_DOUBLE <= value <= _MAX_DOUBLE)


def _number_error(path: str) -> EventError:
    return EventError(path, "must be a finite number (within a double's range)")


def check_order(raw: Any) -> dict[str, Any] | None:
    """An event's ``order`` checked (paths from ``$.order``), with ``categories`` and
    ``category`` derived from its items; ``aftercare preview --order`` uses it too."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise EventError("$.order", f"must be an object, got {json_kind(raw)}")
    order_id = raw.get("id")
    if not (_plain_str(order_id) and order_id.strip()):
        _str(raw, "id", "$.order", required=True)
    total = raw.get("total")
    if total is not None and not _is_number(total):
        raise _number_error("$.order.total")
    currency = raw.get("currency")
    if currency is not None and not _plain_str(currency):
        raise EventError("$.order.currency", "must be a string (an ISO 4217 code)")
    items = raw.get("items")
    if items is None:
        return raw
    if not isinstance(items, list):
        raise EventError("$.order.items", "must be a list")
    categories = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise EventError(f"$.order.items[{i}]", "must be an object")
        for key in _ITEM_STR:
            if item.get(key) is not None and not _plain_str(item[key]):
                raise EventError(f"$.order.items[{i}].{key}", "must be a string")
        for key in _ITEM_NUMBER:
            if item.get(key) is not None and not _is_number(item[key]):
                raise _number_error(f"$.order.items[{i}].{key}")
        category = item.get("category")
        if isinstance(category, str) and category not in categories:
            categories.append(category)
    # Derived for rules: every category in the order, and the first as "category".
    return {**raw, "categories": categories, "category": categories[0] if categories else None}


def parse_event(raw: Any) -> dict[str, Any]:
    """Check an envelope and return it normalised (with ``_at``, the parsed time).

    Raises
    ------
    EventError
        Naming the JSON path of the first problem.
    """
    if _eventbridge(raw):
        detail = raw.get("detail")
        if not isinstance(detail, dict):
            got = "missing" if detail is None else f"a {type(detail).__name__}"
            raise EventError("$.detail", f"an EventBridge event carries the event as "
                                         f"an object in detail; it is {got}")
        raw = unwrap(raw)
    if not isinstance(raw, dict):
        raise EventError("$", "an event must be a JSON object")
    event_id = _str(raw, "id", "$", required=True)
    event_type = _str(raw, "type", "$", required=True)
    assert event_id is not None and event_type is not None
    if event_type not in _known_types:
        if not _TYPE.fullmatch(event_type):
            raise EventError("$.type",
                             "not an event type like 'order.delivered' (lowercase "
                             "words joined by dots)")
        if len(_known_types) < 1024:
            _known_types.add(event_type)
    occurred = _str(raw, "occurred_at", "$", required=True)
    assert occurred is not None
    at = parse_time(occurred, "$.occurred_at")
    customer = _customer(raw.get("customer"))
    order = check_order(raw.get("order"))
    data = raw.get("data")
    if data is not None and not isinstance(data, dict):
        raise EventError("$.data", "must be an object")
    return {
        "id": event_id,
        "type": event_type,
        "occurred_at": occurred,
        "_at": at,
        "customer": customer,
        "order": order,
        "data": data or {},
    }
