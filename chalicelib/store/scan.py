"""DynamoDB's parallel scan, for the ops commands that must read a whole table
(erasure, the suppression backfill); never used by ingest, tick or send."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
PAGE_SIZE = 500
SEGMENTS = 4  # threads: the work is waiting on I/O
MAX_SEGMENTS = 64


def parallel_scan(model: Any, attributes: list[str] | None, pick: Callable[[Any], T | None],
                  segments: int = SEGMENTS) -> list[T]:
    """``pick(item)`` of every item of ``model``'s table it does not map to None,
    scanning the table in ``segments`` parallel segments (in no particular order).
    ``attributes``: the attributes to read (None: all)."""
    if not 1 <= segments <= MAX_SEGMENTS:
        raise ValueError(f"segments must be from 1 to {MAX_SEGMENTS}")

    def segment(n: int) -> list[T]:
        found = []
        for item in model.scan(segment=n, total_segments=segments, page_size=PAGE_SIZE,
                               attributes_to_get=attributes):
            value = pick(item)
            if value is not None:
                found.append(value)
        return found

    with ThreadPoolExecutor(max_workers=segments) as pool:
        return [value for part in pool.map(segment, range(segments)) for value in part]
