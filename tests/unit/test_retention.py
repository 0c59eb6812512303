"""The retention counters one event bumps (chalicelib.tracking.retention), pure."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from chalicelib.tracking.retention import (
    CUSTOMERS,
    RETENTION_DAYS,
    retention_bumps,
    summarize_retention,
)


def _p(count: int, last: str | None) -> dict[str, Any]:
    return {"order_count": count, **({"last_order_at": last} if last else {})}


def _bumps(before: dict[str, Any] | None, after: dict[str, Any],
           mark: str | None = None) -> list[tuple[str, str]]:
    out = []
    bumps, _mark = retention_bumps(before, after, mark)
    for (campaign, variant, arm, day), counter in bumps:
        assert (campaign, variant, arm) == (CUSTOMERS, None, "treatment")
        out.append((day, counter))
    return sorted(out)


@pytest.mark.parametrize(("before", "after", "expected"), [
    # A first order: a new customer who ordered that day.
    (None, _p(1, "2026-03-01T10:00:00Z"),
     [("2026-03-01", "customers_new"), ("2026-03-01", "ordered")]),
    (_p(0, None), _p(1, "2026-03-01T10:00:00Z"),
     [("2026-03-01", "customers_new"), ("2026-03-01", "ordered")]),
    # Again within the window: the earlier day's cohort returned.
    (_p(1, "2026-03-01T10:00:00Z"), _p(2, "2026-05-01T10:00:00Z"),
     [("2026-03-01", "returned"), ("2026-05-01", "ordered")]),
    # RETENTION_DAYS UTC days later still counts; a day more is a churned customer back.
    (_p(1, "2026-01-01T00:00:00Z"), _p(2, "2026-05-01T23:59:59Z"),
     [("2026-01-01", "returned"), ("2026-05-01", "ordered")]),
    (_p(1, "2026-01-01T23:59:59Z"), _p(2, "2026-05-02T00:00:00Z"),
     [("2026-05-02", "ordered"), ("2026-05-02", "reactivated")]),
    # A second order the same UTC day: that day's customer is counted once.
    (_p(1, "2026-03-01T01:00:00Z"), _p(2, "2026-03-01T23:00:00Z"), []),
    # An older order arriving late (the latest order is unchanged), a delivery of an
    # order already counted, a cancellation, a profile update: nothing.
    (_p(1, "2026-03-01T10:00:00Z"), _p(2, "2026-03-01T10:00:00Z"), []),
    (_p(2, "2026-03-01T10:00:00Z"), _p(2, "2026-03-05T10:00:00Z"), []),
    (_p(2, "2026-03-05T10:00:00Z"), _p(1, "2026-03-01T10:00:00Z"), []),
    (_p(1, "2026-03-01T10:00:00Z"), _p(1, "2026-03-01T10:00:00Z"), []),
    (None, _p(0, None), []),
])
def test_bumps(before: dict[str, Any] | None, after: dict[str, Any],
               expected: list[tuple[str, str]]) -> None:
    assert RETENTION_DAYS == 120
    assert _bumps(before, after) == expected


def test_the_mark_only_moves_forward_through_cancellations() -> None:
    """A on 01-01, B on 01-03 (then cancelled: last_order_at goes back to 01-01), C on
    01-05: 01-01's customer returned once, not twice; then all cancelled and D placed:
    no second new customer."""
    mark: str | None = None
    steps = [(None, _p(1, "2026-01-01T10:00:00Z")),
             (_p(1, "2026-01-01T10:00:00Z"), _p(2, "2026-01-03T10:00:00Z")),
             (_p(2, "2026-01-03T10:00:00Z"), _p(1, "2026-01-01T10:00:00Z")),  # B cancelled
             (_p(1, "2026-01-01T10:00:00Z"), _p(2, "2026-01-02T10:00:00Z")),  # before mark
             (_p(2, "2026-01-02T10:00:00Z"), _p(3, "2026-01-05T10:00:00Z")),
             (_p(3, "2026-01-05T10:00:00Z"), _p(0, None)),  # every order cancelled
             (_p(0, None), _p(1, "2026-01-09T10:00:00Z"))]
    seen: list[tuple[str, str]] = []
    for before, after in steps:
        bumps, moved = retention_bumps(before, after, mark)
        seen += [(key[3], counter) for key, counter in bumps]
        mark = moved or mark
    assert sorted(seen) == [
        ("2026-01-01", "customers_new"), ("2026-01-01", "ordered"),
        ("2026-01-01", "returned"), ("2026-01-03", "ordered"), ("2026-01-03", "returned"),
        ("2026-01-05", "ordered"), ("2026-01-05", "returned"), ("2026-01-09", "ordered")]
    assert mark == "2026-01-09"


def test_rates_and_when_they_are_final() -> None:
    report = summarize_retention(date(2026, 3, 1), date(2026, 3, 31),
                                 {"ordered": 8, "returned": 2, "customers_new": 5,
                                  "reactivated": 1, "sent": 99})
    assert report.counts == {"ordered": 8, "customers_new": 5, "returned": 2,
                             "reactivated": 1}
    assert (report.retention_rate, report.churn_rate) == (0.25, 0.75)
    assert report.final_from == "2026-07-30"  # 120 days after the cohort's last day
    assert not report.final(date(2026, 7, 29)) and report.final(date(2026, 7, 30))
    assert report.state(date(2026, 4, 1)) == "can still grow until 2026-07-30"
    empty = summarize_retention(date(2026, 3, 1), date(2026, 3, 1), {})
    assert (empty.retention_rate, empty.churn_rate) == (None, None)
    assert empty.to_json()["retention_days"] == 120
