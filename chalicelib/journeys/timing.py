"""When a step goes out: delays, local send times, weekdays and quiet hours.

All arithmetic on wall-clock times happens in the recipient's own timezone, so a
"10:00" step is at 10:00 local on both sides of a DST change.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from chalicelib.config.compiled import CompiledStep

QUIET_START = time(21, 0)
QUIET_END = time(8, 0)


@lru_cache(maxsize=1024)
def zone(name: str | None, default: str = "America/New_York") -> ZoneInfo:
    """The customer's zone; unknown or invalid names resolve to the default."""
    if name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    return ZoneInfo(default)


def _changes_offset(tz: ZoneInfo, d: date) -> bool:
    """Whether the zone's UTC offset changes during local day ``d`` (a DST day)."""
    start = datetime.combine(d, time(0), tzinfo=tz)
    return start.utcoffset() != (start + timedelta(days=1)).utcoffset()


def _local(d: date, t: time, tz: ZoneInfo) -> datetime:
    """A local wall time as an aware datetime; a time skipped by DST moves forward."""
    if not _changes_offset(tz, d):
        return datetime.combine(d, t, tzinfo=tz)
    naive = datetime.combine(d, t)
    aware = naive.replace(tzinfo=tz)
    roundtrip = aware.astimezone(UTC).astimezone(tz)
    if roundtrip.replace(tzinfo=None) != naive:  # inside a spring-forward gap
        return roundtrip
    return aware


def in_quiet_hours(local: datetime, start: time = QUIET_START, end: time = QUIET_END) -> bool:
    t = local.timetz().replace(tzinfo=None)
    if start <= end:
        return start <= t < end
    return t >= start or t < end


def _out_of_quiet(local: datetime, tz: ZoneInfo) -> datetime:
    if not in_quiet_hours(local):
        return local
    day = local.date()
    if local.time() >= QUIET_START:
        day += timedelta(days=1)
    return _local(day, QUIET_END, tz)


def _on_allowed_day(local: datetime, weekdays: frozenset[int] | None, tz: ZoneInfo) -> datetime:
    if not weekdays:
        return local
    day = local.date()
    for _ in range(7):
        if day.weekday() in weekdays:
            break
        day += timedelta(days=1)
    if day == local.date():
        return local
    return _local(day, local.time(), tz)


def add_local(base: datetime, delta: timedelta, tz: ZoneInfo) -> datetime:
    """``base + delta`` with whole days on the local calendar, the rest in elapsed time."""
    local = base.astimezone(tz)
    if delta.days:
        wall = local.replace(tzinfo=None) + timedelta(days=delta.days)
        local = _local(wall.date(), wall.time(), tz)
    rest = delta - timedelta(days=delta.days)
    return (local + rest).astimezone(tz) if rest else local


def plan_send_time(base: datetime, step: CompiledStep, tz: ZoneInfo) -> datetime:
    """The UTC time a step is due, given the enrollment time ``base``.

    ``base + after``, whole days counted on the local calendar (P2D from 10:00 is
    10:00 two days later, across a DST change too); then the step's local ``at``
    time on that day (or the next day if it has passed); then the next allowed
    weekday; then out of quiet hours (21:00-08:00 local), re-checking the weekday
    after a move.
    """
    local = add_local(base, step.after, tz)
    if step.at is not None:
        candidate = _local(local.date(), step.at, tz)
        if candidate < local:
            candidate = _local(local.date() + timedelta(days=1), step.at, tz)
        local = candidate
    for _ in range(3):
        moved = _out_of_quiet(_on_allowed_day(local, step.weekdays, tz), tz)
        if moved == local:
            break
        local = moved
    return local.astimezone(UTC)


def next_allowed(now: datetime, tz: ZoneInfo) -> datetime | None:
    """None when ``now`` may send; otherwise the next time out of quiet hours."""
    local = now.astimezone(tz)
    if not in_quiet_hours(local):
        return None
    return _out_of_quiet(local, tz).astimezone(UTC)
