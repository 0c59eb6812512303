"""ISO 8601 durations restricted to fixed lengths (weeks, days, hours, minutes, seconds).

Calendar months and years have no fixed length, so a delay of ``P1M`` would mean
different things in different months; campaigns use days or weeks instead, and
yearly events use a date trigger.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

_DURATION = re.compile(
    r"^P(?!$)(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?=\d)(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+)S)?)?\Z",
    re.ASCII,  # `\d` is 0-9 only (not other scripts' digits), as in the JSON Schema
)  # `\Z`, not `$`: Python's `$` also matches before a final newline ("P2D\n")
# Longer delays are typos (P2000D for P200D) and would push dates past year 9999.
MAX_DURATION = timedelta(days=3660)
# The same language without look-arounds, for JSON Schema (editors): at least
# one part, and a `T` only before a time part ("P" and "P1DT" are refused).
_TIME = r"T(?:[0-9]+H(?:[0-9]+M)?(?:[0-9]+S)?|[0-9]+M(?:[0-9]+S)?|[0-9]+S)"
SCHEMA_DURATION_PATTERN = (
    rf"^P(?:[0-9]+W(?:[0-9]+D)?(?:{_TIME})?|[0-9]+D(?:{_TIME})?|{_TIME})$"
)


_UNIT_SECONDS = {"weeks": 604_800, "days": 86_400, "hours": 3_600, "minutes": 60, "seconds": 1}


class DurationError(ValueError):
    pass


def _shown(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:37] + "...")


@dataclass(frozen=True, slots=True)
class Delay:
    """A delay as steps and idle triggers count it: ``days`` whole days (weeks and
    days) on the recipient's calendar, then ``elapsed`` real time (hours, minutes,
    seconds). ``PT24H`` is 24 real hours, one hour more than ``P1D`` across a
    spring-forward day."""

    days: int
    elapsed: timedelta = timedelta(0)

    @property
    def span(self) -> timedelta:
        """The nominal length (a calendar day as 24 hours): for bounds, not for planning."""
        return timedelta(days=self.days) + self.elapsed


def _parts(text: str) -> dict[str, int]:
    """The parts of a duration, checked (see :func:`parse_duration`)."""
    if not isinstance(text, str):
        raise DurationError(f"duration must be a string like 'P2D', got {type(text).__name__}")
    m = _DURATION.match(text)
    if m is None:
        hint = ""
        if text.startswith("-") or re.search(r"[PT]-", text):
            hint = " (durations cannot be negative)"
        elif re.match(r"^P([0-9]+Y|[0-9]+M)", text):
            hint = " (months and years have no fixed length: use days or weeks)"
        elif re.search(r"[0-9][.,][0-9]", text):
            hint = " (whole numbers only: P1DT12H, not P1.5D)"
        raise DurationError(f"invalid ISO 8601 duration {_shown(text)}{hint}")
    too_long = DurationError(
        f"duration {_shown(text)} is too long (at most {MAX_DURATION.days} days)")
    # Each part is bounded first, so that timedelta() cannot overflow.
    if any(v and len(v.lstrip("0")) > 12 for v in m.groupdict().values()):
        raise too_long
    parts = {k: int(v.lstrip("0") or "0") for k, v in m.groupdict().items() if v}
    if _seconds(parts) > MAX_DURATION.total_seconds():
        raise too_long
    return parts


def _seconds(parts: dict[str, int]) -> int:
    return sum(parts.get(unit, 0) * length for unit, length in _UNIT_SECONDS.items())


def parse_duration(text: str) -> timedelta:
    """Parse ``P2D``, ``P3W``, ``PT12H``, ``P1DT6H30M`` into a timedelta (elapsed time:
    for windows and expiry; a step's or idle trigger's delay is :func:`parse_delay`).

    Raises
    ------
    DurationError
        For anything else: negative, calendar (``P1M``, ``P1Y``), malformed, or
        longer than :data:`MAX_DURATION` (about ten years).
    """
    return timedelta(seconds=_seconds(_parts(text)))


def parse_delay(text: str) -> Delay:
    """Parse a duration as a :class:`Delay`: ``P1DT6H`` is one calendar day, then six
    real hours. Errors as :func:`parse_duration`."""
    parts = _parts(text)
    return Delay(
        days=parts.get("weeks", 0) * 7 + parts.get("days", 0),
        elapsed=timedelta(hours=parts.get("hours", 0), minutes=parts.get("minutes", 0),
                          seconds=parts.get("seconds", 0)),
    )
