"""Customer retention and churn, from counters kept at ingest (pure; no AWS here).

A campaign's report says whether *it* worked (conversion against its holdout); the
business also wants to know whether customers come back at all. Ingest keeps four
counters per UTC day in the stats table, under the reserved id :data:`CUSTOMERS`
(campaign ids start with a letter or digit, so it is no campaign's), bumped in the
same transaction as the order's event, so a duplicate or replayed event counts
nothing:

- ``ordered``: customers who ordered that day (a customer's second order on the
  same day is not counted again);
- ``customers_new``: of them, those ordering for the first time;
- ``returned``: of the customers who ordered that day, those who ordered again
  within :data:`RETENTION_DAYS` (bumped on the day of the earlier order, when the
  later one arrives);
- ``reactivated``: customers who ordered after more than :data:`RETENTION_DAYS`
  without an order (churned customers won back).

For a cohort of days, ``retention_rate`` = returned / ordered and ``churn_rate`` =
1 - retention_rate. Both are final once :data:`RETENTION_DAYS` have passed since the
cohort's last day; before that, retention can still grow (the report says until
when). An order that arrives older than the customer's latest order (a late event,
an import of old orders after newer ones) changes nothing here, and neither does a
cancellation: the counters follow orders in the order they were placed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from chalicelib.clock import parse_iso

CUSTOMERS = "_customers"
RETENTION_DAYS = 120  # as the example win-back campaign's "no order for 120 days"
ARM = "treatment"
COUNTERS = ("ordered", "customers_new", "returned", "reactivated")

Bump = tuple[tuple[str, str | None, str, str], str]


def _key(day: str) -> tuple[str, str | None, str, str]:
    return (CUSTOMERS, None, ARM, day)


def retention_bumps(before: Mapping[str, Any] | None, after: Mapping[str, Any]) -> list[Bump]:
    """The counters one event bumps, from the profile before and after it."""
    new = after.get("last_order_at")
    old = before.get("last_order_at") if before else None
    count_before = int(before.get("order_count", 0)) if before else 0
    if new is None or int(after.get("order_count", 0)) <= count_before:
        return []  # no new purchase counted
    if old is None:
        return [(_key(new[:10]), "ordered"), (_key(new[:10]), "customers_new")]
    if new <= old or new[:10] == old[:10]:
        return []  # an older order arriving late, or a second order the same day
    if parse_iso(new) - parse_iso(old) <= timedelta(days=RETENTION_DAYS):
        return [(_key(new[:10]), "ordered"), (_key(old[:10]), "returned")]
    return [(_key(new[:10]), "ordered"), (_key(new[:10]), "reactivated")]


@dataclass(frozen=True, slots=True)
class RetentionReport:
    start: str
    end: str
    counts: dict[str, int]
    retention_rate: float | None
    churn_rate: float | None
    final_from: str  # the day from which the rates can no longer change

    def final(self, today: date) -> bool:
        return today >= date.fromisoformat(self.final_from)

    def state(self, today: date) -> str:
        return "final" if self.final(today) else f"can still grow until {self.final_from}"

    def to_json(self) -> dict[str, Any]:
        return {"from": self.start, "to": self.end, "counts": self.counts,
                "retention_rate": self.retention_rate, "churn_rate": self.churn_rate,
                "retention_days": RETENTION_DAYS, "final_from": self.final_from}


def summarize_retention(start: date, end: date, counts: Mapping[str, int]) -> RetentionReport:
    kept = {name: int(counts.get(name, 0)) for name in COUNTERS}
    ordered = kept["ordered"]
    retention = round(kept["returned"] / ordered, 4) if ordered else None
    return RetentionReport(
        start.isoformat(), end.isoformat(), kept, retention,
        None if retention is None else round(1 - retention, 4),
        (end + timedelta(days=RETENTION_DAYS + 1)).isoformat())
