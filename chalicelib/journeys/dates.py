"""Yearly dates: anniversaries and birthdays, with a stated 29 February rule."""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime, tzinfo
from functools import lru_cache


def anniversary(d: date, year: int, leap_day: str = "feb28") -> date:
    """The date ``d`` falls on in ``year``.

    A 29 February date is kept on 28 February in non-leap years (``feb28``, the
    default) or moved to 1 March (``mar1``).
    """
    if d.month == 2 and d.day == 29 and not calendar.isleap(year):
        return date(year, 3, 1) if leap_day == "mar1" else date(year, 2, 28)
    return d.replace(year=year)


def parse_date(value: object) -> date | None:
    """A ``YYYY-MM-DD`` or ISO datetime string as a date; None when unusable."""
    if not isinstance(value, str) or len(value) < 10:
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


def yearly_date(value: object, tz: tzinfo) -> date | None:
    """The calendar date a yearly campaign celebrates: a ``YYYY-MM-DD`` string as it
    is (a birthday), an ISO datetime (a purchase) as its local date in ``tz``
    (without an offset it is UTC). None when unusable."""
    return _local_date(value, tz) if isinstance(value, str) else None


@lru_cache(maxsize=65_536)
def _local_date(value: str, tz: tzinfo) -> date | None:
    if len(value) <= 10:
        return parse_date(value)
    try:
        moment = datetime.fromisoformat(value)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.astimezone(tz).date()
    except (ValueError, OverflowError):
        return parse_date(value)


def next_anniversary(d: date, today: date, leap_day: str = "feb28",
                     *, first_year_offset: int = 0) -> date:
    """The first anniversary of ``d`` on or after ``today``.

    ``first_year_offset=1`` skips the date's own year (a purchase is not its own
    anniversary); birthdays use 0 (a birthday in the current year counts).
    """
    year = max(today.year, d.year + first_year_offset)
    candidate = anniversary(d, year, leap_day)
    if candidate < today:
        candidate = anniversary(d, year + 1, leap_day)
    return candidate
