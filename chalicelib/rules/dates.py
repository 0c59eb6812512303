"""Date operators for audience rules: ``days_since``, ``days_until``,
``years_since``, ``is_anniversary``, plus ``contains_any``.

Rules see the evaluation time as the context's ``now`` (an ISO-8601 string, UTC,
``Z`` or ``+00:00``).  Dates are ``YYYY-MM-DD`` strings or ISO datetimes; a
datetime without offset is taken as UTC.  A null or unparseable date gives null.

- A date-only value counts calendar days against today's UTC date.
- A datetime counts whole elapsed days (floor) against ``now``.
- ``anniversary_in_year`` maps 29 February to 28 February in non-leap years;
  ``years_since`` and ``is_anniversary`` use it, so a leap-day birthday is
  celebrated, and counted, on 28 February in common years.
"""

from __future__ import annotations

import calendar
from datetime import date, datetime, timedelta, timezone, tzinfo
from typing import Any, Union
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import INVALID_ARGUMENTS, RuleEvaluationError

__all__ = [
    "anniversary_in_year",
    "contains_any",
    "days_since",
    "days_until",
    "is_anniversary",
    "parse_instant",
    "years_since",
]

UTC = timezone.utc
_DAY = timedelta(days=1)
_CACHE_LIMIT = 512

Instant = Union[date, datetime]

# Parsed ``now`` strings: a rule set is evaluated for many customers at the same
# tick, and parsing is the costly part of a date operator.
_NOW_CACHE: dict[str, tuple[datetime, date]] = {}
_ZONE_CACHE: dict[Any, tzinfo] = {}
_LOCAL_TODAY: dict[tuple[datetime, tzinfo], date] = {}


def anniversary_in_year(d: date, year: int) -> date:
    """The day in ``year`` on which the anniversary of ``d`` falls.

    Examples
    --------
    >>> anniversary_in_year(date(1992, 2, 29), 2027)
    datetime.date(2027, 2, 28)
    >>> anniversary_in_year(date(1992, 2, 29), 2028)
    datetime.date(2028, 2, 29)
    """
    if d.month == 2 and d.day == 29 and not calendar.isleap(year):
        return date(year, 2, 28)
    return d.replace(year=year)


def parse_instant(value: Any) -> Instant | None:
    """A ``date`` for a date-only value, an aware ``datetime`` otherwise.

    Returns None for null, non-strings and text that is not ISO-8601.
    """
    cls = value.__class__
    if cls is str:
        try:
            if len(value) == 10:
                return date.fromisoformat(value)
            moment = datetime.fromisoformat(value)
        except ValueError:
            return None
    elif isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        return value
    else:
        return None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment


def _now(data: Any) -> tuple[datetime, date]:
    """``now`` of the evaluation context, as (UTC datetime, UTC date).

    Without a ``now`` in the context the wall clock is used, so that a rule can be
    previewed; the engine always passes one.
    """
    raw = data.get("now") if isinstance(data, dict) else None
    if raw.__class__ is str:
        hit = _NOW_CACHE.get(raw)
        if hit is not None:
            return hit
    if raw is None:
        moment = datetime.now(UTC)
        return moment, moment.date()
    parsed = parse_instant(raw)
    if parsed is None:
        raise RuleEvaluationError(
            INVALID_ARGUMENTS, f"'now' is not an ISO-8601 datetime: {raw!r}"
        )
    if isinstance(parsed, datetime):
        moment = parsed.astimezone(UTC)
    else:
        moment = datetime(parsed.year, parsed.month, parsed.day, tzinfo=UTC)
    result = (moment, moment.date())
    if raw.__class__ is str:
        if len(_NOW_CACHE) >= _CACHE_LIMIT:
            _NOW_CACHE.clear()
        _NOW_CACHE[raw] = result
    return result


def _zone(name: Any) -> tzinfo:
    """The IANA zone called ``name``; UTC when absent or unknown."""
    try:
        return _ZONE_CACHE[name]
    except KeyError:
        pass
    except TypeError:  # unhashable: not a zone name
        return UTC
    zone: tzinfo = UTC
    if isinstance(name, str) and name and name.upper() != "UTC":
        try:
            zone = ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            zone = UTC
    if len(_ZONE_CACHE) >= _CACHE_LIMIT:
        _ZONE_CACHE.clear()
    _ZONE_CACHE[name] = zone
    return zone


def _local_today(now: datetime, today: date, zone: tzinfo) -> date:
    if zone is UTC:
        return today
    key = (now, zone)
    hit = _LOCAL_TODAY.get(key)
    if hit is None:
        hit = now.astimezone(zone).date()
        if len(_LOCAL_TODAY) >= _CACHE_LIMIT:
            _LOCAL_TODAY.clear()
        _LOCAL_TODAY[key] = hit
    return hit


def _as_date(when: Instant, zone: tzinfo) -> date:
    if isinstance(when, datetime):
        return when.astimezone(zone).date()
    return when


def days_since(value: Any, data: Any) -> int | None:
    """Whole days from ``value`` to ``now`` (negative for a future date)."""
    when = parse_instant(value)
    if when is None:
        return None
    now, today = _now(data)
    if isinstance(when, datetime):
        return (now - when) // _DAY
    return (today - when).days


def days_until(value: Any, data: Any) -> int | None:
    """Whole days from ``now`` to ``value`` (negative for a past date)."""
    when = parse_instant(value)
    if when is None:
        return None
    now, today = _now(data)
    if isinstance(when, datetime):
        return (when - now) // _DAY
    return (when - today).days


def years_since(value: Any, data: Any) -> int | None:
    """Whole years from ``value`` to today (UTC): an age or a tenure."""
    when = parse_instant(value)
    if when is None:
        return None
    _, today = _now(data)
    start = _as_date(when, UTC)
    years = today.year - start.year
    if today < anniversary_in_year(start, today.year):
        years -= 1
    return years


def is_anniversary(value: Any, zone_name: Any, data: Any) -> bool | None:
    """True when today, in ``zone_name``, is an anniversary of ``value``.

    The date itself is not its own anniversary: year 1 is the first.
    """
    when = parse_instant(value)
    if when is None:
        return None
    zone = _zone(zone_name)
    now, today = _now(data)
    local = _local_today(now, today, zone)
    start = _as_date(when, zone)
    return local.year > start.year and anniversary_in_year(start, local.year) == local


def contains_any(left: Any, right: Any) -> bool | None:
    """True when the two arrays share an element (a scalar counts as [scalar])."""
    if left is None or right is None:
        return None
    left = left if isinstance(left, list) else [left]
    right = right if isinstance(right, list) else [right]
    try:
        return not set(left).isdisjoint(right)
    except TypeError:  # unhashable elements
        return any(item in right for item in left)
