"""The one source of "now": real time in Lambda, a settable clock locally.

The local stack and the demo replay months of events in seconds by setting this
clock; the handlers call :func:`now` and never ``datetime.now`` directly.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

_fixed: datetime | None = None
_fast: tuple[datetime, float, float] | None = None  # virtual start, real start, speed


def now() -> datetime:
    """Business time: when steps are due, how late an event is."""
    if _fixed is not None:
        return _fixed
    if _fast is not None:
        start, real_start, speed = _fast
        return start + timedelta(seconds=(time.time() - real_start) * speed)
    return datetime.now(UTC)


def real_now() -> datetime:
    """Wall-clock time for security checks (signature replay windows): the same as
    :func:`now` in Lambda; unaffected by ``make run``'s accelerated clock."""
    return _fixed if _fixed is not None else datetime.now(UTC)


def set_now(value: datetime | None) -> None:
    """Freeze the clock at ``value`` (timezone-aware), or release it with None."""
    global _fixed, _fast
    if value is not None and value.tzinfo is None:
        raise ValueError("clock.set_now needs a timezone-aware datetime")
    _fixed = value.astimezone(UTC) if value is not None else None
    _fast = None


def run_faster(speed: float) -> None:
    """Let business time run ``speed`` times faster than real time, from now."""
    global _fixed, _fast
    _fixed = None
    _fast = (datetime.now(UTC), time.time(), speed) if speed != 1 else None


# iso() runs several times per event on the event's time, and once per decided step
# on its due time (steps due together are decided one after another), so the last
# value is remembered by identity: no hashing, no table.
_iso_last: tuple[datetime, str] = (datetime(1970, 1, 1, tzinfo=UTC), "1970-01-01T00:00:00Z")


def iso(value: datetime) -> str:
    """UTC ISO-8601 with a Z, second precision: the format stored everywhere."""
    global _iso_last
    last = _iso_last  # one read: a consistent pair even with threads
    if value is last[0]:
        return last[1]
    utc = value if value.tzinfo is UTC else value.astimezone(UTC)
    # %-formatting: about twice as fast as an f-string with format specs or isoformat().
    text = "%04d-%02d-%02dT%02d:%02d:%02dZ" % (  # noqa: UP031
        utc.year, utc.month, utc.day, utc.hour, utc.minute, utc.second)
    _iso_last = (value, text)
    return text


def parse_iso(value: str) -> datetime:
    """Parse an ISO-8601 datetime; naive values are taken as UTC."""
    dt = datetime.fromisoformat(value)
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
