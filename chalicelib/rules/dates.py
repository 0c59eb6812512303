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
import re
from datetime import UTC, date, datetime, tzinfo
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import INVALID_ARGUMENTS, RuleEvaluationError
from .model import json_shown
from .runtime import json_key, strict_eq

__all__ = [
    "anniversary_in_year",
    "contains_any",
    "days_since",
    "days_until",
    "is_anniversary",
    "parse_instant",
    "years_since",
]

_CACHE_LIMIT = 512

Instant = date | datetime


class _Today(NamedTuple):
    """Today's date in one zone, in the forms ``is_anniversary`` compares."""

    day: date
    year: int
    month_day: int  # month * 100 + day
    day_of_year: int  # in a leap-year calendar
    leap_day_today: bool  # 28 February of a common year: 29 February counts


class _Clock(NamedTuple):
    """``now`` of an evaluation, in the forms the operators need."""

    moment: datetime  # aware, UTC
    today: _Today  # in UTC
    ordinal: int  # today's ordinal
    # Today in other zones, by zone name, filled on demand.
    zones: dict[Any, tuple[_Today, tzinfo]]


# Parsed ``now`` strings: a rule set is evaluated for many customers at the same
# tick, and parsing is the costly part of a date operator.
_CLOCKS: dict[str, _Clock] = {}
_ZONES: dict[Any, tzinfo] = {}
_DAY_OF_YEAR = {
    d.month * 100 + d.day: i
    for i, d in enumerate(date.fromordinal(date(2000, 1, 1).toordinal() + n) for n in range(366))
}


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


_EXTENDED = re.compile(r"\d{4}-\d{2}-\d{2}(?:[T ]|\Z)")


def parse_instant(value: Any) -> Instant | None:
    """A ``date`` for a date-only value, an aware ``datetime`` otherwise.

    Returns None for null, non-strings and text that is not ISO-8601.
    """
    cls = value.__class__
    if cls is str:
        # Python reads more than ISO's extended form (20260301, 2026W097): those are
        # not the documented YYYY-MM-DD, and the yearly scheduler refuses them too.
        if _EXTENDED.match(value) is None:
            return None
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


def _clock(data: Any) -> _Clock:
    """``now`` of the evaluation context.

    Without a ``now`` in the context the wall clock is used, so that a rule can be
    previewed; the engine always passes one.
    """
    raw = data.get("now") if isinstance(data, dict) else None
    if raw.__class__ is str:
        hit = _CLOCKS.get(raw)
        if hit is not None:
            return hit
    if raw is None:
        return _make_clock(datetime.now(UTC))
    parsed = parse_instant(raw)
    moment_utc = _utc(parsed) if isinstance(parsed, datetime) else parsed
    if moment_utc is None:
        raise RuleEvaluationError(
            INVALID_ARGUMENTS, f"'now' is not an ISO-8601 datetime: {json_shown(raw)}"
        )
    if isinstance(moment_utc, datetime):
        moment = moment_utc
    else:
        moment = datetime(moment_utc.year, moment_utc.month, moment_utc.day, tzinfo=UTC)
    clock = _make_clock(moment)
    if raw.__class__ is str:
        if len(_CLOCKS) >= _CACHE_LIMIT:
            _CLOCKS.clear()
        _CLOCKS[raw] = clock
    return clock


def _make_clock(moment: datetime) -> _Clock:
    today = moment.date()
    return _Clock(moment, _make_today(today), today.toordinal(), {})


def _now(data: Any) -> _Clock:
    try:
        return _CLOCKS[data["now"]]
    except (KeyError, TypeError, IndexError):
        return _clock(data)


def _zone(name: Any) -> tzinfo:
    """The IANA zone called ``name``; UTC when absent or unknown."""
    try:
        return _ZONES[name]
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
    if len(_ZONES) >= _CACHE_LIMIT:
        _ZONES.clear()
    _ZONES[name] = zone
    return zone


def is_zone_name(name: Any) -> bool:
    """Whether ``name`` is ``"UTC"`` or an IANA zone this machine knows."""
    if not isinstance(name, str) or not name:
        return False
    return name.upper() == "UTC" or _zone(name) is not UTC


def _make_today(day: date) -> _Today:
    month_day = day.month * 100 + day.day
    return _Today(
        day,
        day.year,
        month_day,
        _DAY_OF_YEAR[month_day],
        month_day == 228 and not calendar.isleap(day.year),
    )


def _today_in(clock: _Clock, zone_name: Any) -> tuple[_Today, tzinfo]:
    """Today in the zone called ``zone_name`` (UTC if unknown), and the zone."""
    try:
        hit = clock.zones.get(zone_name)
    except TypeError:  # unhashable: not a zone name
        return clock.today, UTC
    if hit is None:
        zone = _zone(zone_name)
        if zone is UTC:
            hit = (clock.today, UTC)
        else:
            try:
                local = clock.moment.astimezone(zone)
            except OverflowError:  # `now` at the very end of year 9999
                raise RuleEvaluationError(
                    INVALID_ARGUMENTS, "'now' is out of range in that timezone") from None
            hit = (_make_today(local.date()), zone)
        if len(clock.zones) < _CACHE_LIMIT:
            clock.zones[zone_name] = hit
    return hit


def _utc(moment: datetime) -> datetime | None:
    """``moment`` in UTC; None when that is outside years 1-9999 (``0001-01-01T00:00+01:00``)."""
    if moment.tzinfo is UTC:
        return moment
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        return None


def days_since(value: Any, data: Any) -> int | None:
    """Whole days from ``value`` to ``now`` (negative for a future date)."""
    # The common date-only case (YYYY-MM-DD: not a week date such as 2026-W09-1,
    # which date.fromisoformat reads too and parse_instant refuses).
    if value.__class__ is str and len(value) == 10 and value[4] == value[7] == "-":
        try:
            ordinal = date.fromisoformat(value).toordinal()
        except ValueError:
            return None
        return _now(data).ordinal - ordinal
    when = parse_instant(value)
    if when is None:
        return None
    clock = _now(data)
    if isinstance(when, datetime):
        when = _utc(when)
        if when is None:
            return None  # not a date in UTC: unreadable, like any other
        return (clock.moment - when).days  # timedelta days are floored
    return clock.ordinal - when.toordinal()


def days_until(value: Any, data: Any) -> int | None:
    """Whole days from ``now`` to ``value`` (negative for a past date)."""
    when = parse_instant(value)
    if when is None:
        return None
    clock = _now(data)
    if isinstance(when, datetime):
        when = _utc(when)
        if when is None:
            return None
        return (when - clock.moment).days
    return when.toordinal() - clock.ordinal


def _years_between(start: date, today: _Today) -> int:
    """Whole years from ``start`` to ``today`` (29 February counts on 28th)."""
    month_day = start.month * 100 + start.day
    if month_day > today.month_day and not (month_day == 229 and today.leap_day_today):
        return today.year - start.year - 1
    return today.year - start.year


def years_since(value: Any, data: Any) -> int | None:
    """Whole years from ``value`` to today (UTC): an age or a tenure."""
    when = parse_instant(value)
    if isinstance(when, datetime):
        when = _utc(when)
        if when is None:
            return None  # not a date in UTC: unreadable, like any other
        return _years_between(when.date(), _now(data).today)
    if when is None:
        return None
    return _years_between(when, _now(data).today)


def is_anniversary(value: Any, zone_name: Any, data: Any) -> bool | None:
    """True when today, in ``zone_name``, is an anniversary of ``value``.

    The date itself is not its own anniversary: year 1 is the first.
    """
    when = parse_instant(value)
    if when is None:
        return None
    today, zone = _today_in(_now(data), zone_name)
    if isinstance(when, datetime):
        moment = _utc(when)
        if moment is None:
            return None  # not a date in UTC: unreadable, like any other
        if zone is not UTC:
            # Its local date is within a day of its UTC date: skip the costly
            # conversion when that cannot be an anniversary.
            gap = abs(_DAY_OF_YEAR[moment.month * 100 + moment.day] - today.day_of_year)
            if 2 < gap < 364:
                return False
            try:
                moment = moment.astimezone(zone)
            except OverflowError:  # 9999-12-31 ahead of UTC: no local date
                return None
        when = moment.date()
    month_day = when.month * 100 + when.day
    if month_day != today.month_day and not (month_day == 229 and today.leap_day_today):
        return False
    return today.year > when.year


def contains_any(left: Any, right: Any) -> bool | None:
    """True when the two arrays share an element (a scalar counts as [scalar])."""
    if left is None or right is None:
        return None
    left = left if isinstance(left, list) else [left]
    right = right if isinstance(right, list) else [right]
    try:
        if set(left).isdisjoint(right):
            return False
    except TypeError:  # unhashable elements (arrays, objects): by their JSON keys
        try:
            keys = {json_key(item) for item in left}
            return not keys.isdisjoint(json_key(item) for item in right)
        except RecursionError:  # nested too deep to key: compare pair by pair
            pass
    # Python's == says 1 == true: elements are the same as `in` says, strictly.
    for item in left:
        if item.__class__ is str:
            if item in right:
                return True
        elif any(strict_eq(item, other) for other in right):
            return True
    return False
