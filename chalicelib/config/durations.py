"""ISO 8601 durations restricted to fixed lengths (weeks, days, hours, minutes, seconds).

Calendar months and years have no fixed length, so a delay of ``P1M`` would mean
different things in different months; campaigns use days or weeks instead, and
yearly events use a date trigger.
"""

from __future__ import annotations

import re
from datetime import timedelta

_DURATION = re.compile(
    r"^P(?!$)(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?=\d)(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+)S)?)?$"
)
# The same language without look-arounds, for JSON Schema (editors, pydantic).
SCHEMA_DURATION_PATTERN = r"^P(\d+W)?(\d+D)?(T(\d+H)?(\d+M)?(\d+S)?)?$"


class DurationError(ValueError):
    pass


def parse_duration(text: str) -> timedelta:
    """Parse ``P2D``, ``P3W``, ``PT12H``, ``P1DT6H30M`` into a timedelta.

    Raises
    ------
    DurationError
        For anything else: negative, calendar (``P1M``, ``P1Y``), or malformed.
    """
    if not isinstance(text, str):
        raise DurationError(f"duration must be a string like 'P2D', got {type(text).__name__}")
    m = _DURATION.match(text)
    if m is None:
        hint = ""
        if text.startswith("-"):
            hint = " (durations cannot be negative)"
        elif re.match(r"^P(\d+Y|\d+M)", text):
            hint = " (months and years have no fixed length: use days or weeks)"
        raise DurationError(f"invalid ISO 8601 duration {text!r}{hint}")
    parts = {k: int(v) for k, v in m.groupdict().items() if v}
    return timedelta(
        weeks=parts.get("weeks", 0),
        days=parts.get("days", 0),
        hours=parts.get("hours", 0),
        minutes=parts.get("minutes", 0),
        seconds=parts.get("seconds", 0),
    )
