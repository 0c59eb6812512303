"""When a step goes out: delays, local send times, weekdays and quiet hours.

All arithmetic on wall-clock times happens in the recipient's own timezone, so a
"10:00" step is at 10:00 local on both sides of a DST change.

This runs for every step of every enrollment (the pipeline's ingest and
``aftercare simulate``), so the common case is memoised: a step with a local
``at`` time and a whole-day delay lands on a time that depends only on the zone,
the enrollment's local date and whether it was already past ``at`` that day.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from chalicelib.config.compiled import CompiledStep
from chalicelib.config.durations import Delay

QUIET_START = time(21, 0)
QUIET_END = time(8, 0)
_ONE_DAY = timedelta(days=1)
# Bounds of the memo tables below; they are cleared when full. Replays move forward
# in time, so the entries still in use after a clear are few and refill at once.
_MEMO_MAX = 65_536

# (at, weekdays, whole days of delay, zone, enrollment's local date, past ``at``?)
# -> UTC due time, or None when the delay lands on a DST day (computed exactly).
_PlanKey = tuple[time, frozenset[int] | None, int, ZoneInfo, date, bool]
_planned: dict[_PlanKey, datetime | None] = {}
_MISSING = object()
_allowed: dict[tuple[datetime, ZoneInfo], datetime | None] = {}


@lru_cache(maxsize=1024)
def zone(name: str | None, default: str = "America/New_York") -> ZoneInfo:
    """The customer's zone; unknown or invalid names resolve to the default."""
    if name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    return ZoneInfo(default)


@lru_cache(maxsize=16_384)
def _changes_offset(tz: ZoneInfo, d: date) -> bool:
    """Whether the zone's UTC offset changes during local day ``d`` (a DST day)."""
    start = datetime.combine(d, time(0), tzinfo=tz)
    return start.utcoffset() != (start + _ONE_DAY).utcoffset()


def local_time(d: date, t: time, tz: ZoneInfo) -> datetime:
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
    t = local.time()  # the naive wall time
    if start <= end:
        return start <= t < end
    return t >= start or t < end


def _out_of_quiet(local: datetime, tz: ZoneInfo) -> datetime:
    if not in_quiet_hours(local):
        return local
    day = local.date()
    if local.time() >= QUIET_START:
        day += _ONE_DAY
    return local_time(day, QUIET_END, tz)


def on_allowed_day(local: datetime, weekdays: frozenset[int] | None, tz: ZoneInfo) -> datetime:
    """The first allowed weekday from ``local``: the same time on a later day, or 08:00
    on that day when the same time is in quiet hours there (22:00 Saturday with
    ``["mon"]`` goes out at 08:00 Monday, not 22:00 Monday and on to 08:00 Tuesday,
    which is not allowed, and so a week later)."""
    if not weekdays:
        return local
    day = local.date()
    for _ in range(7):
        if day.weekday() in weekdays:
            break
        day += _ONE_DAY
    if day == local.date():
        return local
    moved = local_time(day, local.time(), tz)
    return local_time(day, QUIET_END, tz) if in_quiet_hours(moved) else moved


def add_local(base: datetime, delay: Delay, tz: ZoneInfo) -> datetime:
    """``base + delay``: its whole days on the local calendar, then its hours, minutes
    and seconds in elapsed time (``PT20H`` and ``PT24H`` are 20 and 24 real hours, also
    across a DST change)."""
    local = base.astimezone(tz)
    if delay.days:
        wall = local.replace(tzinfo=None) + timedelta(days=delay.days)
        local = local_time(wall.date(), wall.time(), tz)
    rest = delay.elapsed
    # Aware + timedelta is wall-clock arithmetic in Python: go through UTC.
    return (local.astimezone(UTC) + rest).astimezone(tz) if rest else local


def _settle(local: datetime, weekdays: frozenset[int] | None, tz: ZoneInfo) -> datetime:
    """The next allowed weekday, then out of quiet hours, re-checking after a move."""
    for _ in range(3):
        moved = _out_of_quiet(on_allowed_day(local, weekdays, tz), tz)
        if moved == local:
            break
        local = moved
    return local.astimezone(UTC)


def _plan_exact(base_local: datetime, step: CompiledStep, tz: ZoneInfo) -> datetime:
    after, at = step.after, step.at
    if at is None:
        return _settle(add_local(base_local, after, tz), step.weekdays, tz)
    if after.elapsed:
        wall = add_local(base_local, after, tz).replace(tzinfo=None)
    else:
        # The wall time the whole days land on, before a DST gap moves it: 02:30 + P1D
        # onto a spring-forward day is before 03:00 that day, as on any other day.
        wall = base_local.replace(tzinfo=None) + timedelta(days=after.days)
    day = wall.date() if at >= wall.time() else wall.date() + _ONE_DAY
    return _settle(local_time(day, at, tz), step.weekdays, tz)


def _plan_at(at: time, weekdays: frozenset[int] | None, days: int, tz: ZoneInfo,
             base_date: date, past_at: bool) -> datetime | None:
    """The due time of a step at local ``at`` after ``days`` whole days (a memo entry).

    None when the delay lands on a day whose UTC offset changes: there the wall
    time may move (a spring-forward gap), so the caller computes it exactly.
    """
    day = base_date + timedelta(days=days)
    if _changes_offset(tz, day):
        return None
    if past_at:
        day += _ONE_DAY
    return _settle(local_time(day, at, tz), weekdays, tz)


def plan_from_local(base_local: datetime, step: CompiledStep, tz: ZoneInfo) -> datetime:
    """:func:`plan_send_time` with the enrollment time already in ``tz`` (``base.astimezone(tz)``).

    Planning an enrollment converts its time once and plans every step from it.
    """
    at = step.at
    after = step.after
    if at is None or after.elapsed:
        return _plan_exact(base_local, step, tz)
    # With a whole-day delay off a DST day the wall time of ``base_local`` is kept,
    # so "already past ``at``" is a comparison of wall times, the same on any day.
    base_date = base_local.date()
    key = (at, step.weekdays, after.days, tz, base_date, at < base_local.time())
    due = _planned.get(key, _MISSING)
    if due is _MISSING:  # a third of lookups miss: no exception on that path
        if len(_planned) >= _MEMO_MAX:
            _planned.clear()
        due = _planned[key] = _plan_at(*key)
    return due if due is not None else _plan_exact(base_local, step, tz)  # type: ignore[return-value]


def plan_send_time(base: datetime, step: CompiledStep, tz: ZoneInfo) -> datetime:
    """The UTC time a step is due, given the enrollment time ``base``.

    ``base + after``, whole days counted on the local calendar (P2D from 10:00 is
    10:00 two days later, across a DST change too); then the step's local ``at``
    time on that day (or the next day if it has passed); then the next allowed
    weekday; then out of quiet hours (21:00-08:00 local), re-checking the weekday
    after a move.
    """
    return plan_from_local(base.astimezone(tz), step, tz)


def next_allowed(now: datetime, tz: ZoneInfo) -> datetime | None:
    """None when ``now`` may send; otherwise the next time out of quiet hours."""
    key = (now, tz)
    try:
        return _allowed[key]
    except KeyError:
        pass
    local = now.astimezone(tz)
    later = _out_of_quiet(local, tz).astimezone(UTC) if in_quiet_hours(local) else None
    if len(_allowed) >= _MEMO_MAX:
        _allowed.clear()
    _allowed[key] = later
    return later
