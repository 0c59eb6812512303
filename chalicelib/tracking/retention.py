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
  within :data:`RETENTION_DAYS` days (bumped on the day of the earlier order, when
  the later one arrives);
- ``reactivated``: customers who ordered after more than :data:`RETENTION_DAYS`
  days without an order (churned customers won back).

For a cohort of days, ``retention_rate`` = returned / ordered and ``churn_rate`` =
1 - retention_rate: over several days they are rates of customer-days (a customer
who ordered on two of them counts twice, once returned). Both are final once
:data:`RETENTION_DAYS` have passed since the cohort's last day; before that,
retention can still grow (the report says until when). An order that arrives older
than the customer's latest order (a late event, an import of old orders after newer
ones) changes nothing here, and neither does a cancellation: the counters follow
orders in the order they were placed, and each day is counted at most once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

CUSTOMERS = "_customers"
RETENTION_DAYS = 120  # as the example win-back campaign's "no order for 120 days"
ARM = "treatment"
COUNTERS = ("ordered", "customers_new", "returned", "reactivated")

Bump = tuple[tuple[str, str | None, str, str], str]


def _key(day: str) -> tuple[str, str | None, str, str]:
    return (CUSTOMERS, None, ARM, day)


def retention_bumps(before: Mapping[str, Any] | None, after: Mapping[str, Any],
                    mark: str | None = None) -> tuple[list[Bump], str | None]:
    """The counters one event bumps, from the profile before and after it, and the
    new mark (None: unchanged).

    ``mark`` is the day of the customer's latest order counted here, kept beside the
    profile (``CustomerModel.retention_day``, not in it: rules do not see it). It
    only moves forward, so a cancellation (which moves ``last_order_at`` back) can
    make neither a day's customer count as returned twice nor a customer as new
    twice. Customers counted before it existed count from their ``last_order_at``.
    """
    new = after.get("last_order_at")
    old = before.get("last_order_at") if before else None
    count_before = int(before.get("order_count", 0)) if before else 0
    if new is None or int(after.get("order_count", 0)) <= count_before:
        return [], None  # no new purchase counted
    if old is not None and new <= old:
        return [], None  # an order older than the latest arriving late
    mark = mark or (old[:10] if old else None)
    day = new[:10]
    if mark is None:
        return [(_key(day), "ordered"), (_key(day), "customers_new")], day
    if day <= mark:
        return [], None  # a second order the same day (or before a counted one)
    gap = (date.fromisoformat(day) - date.fromisoformat(mark)).days
    if gap <= RETENTION_DAYS:
        return [(_key(day), "ordered"), (_key(mark), "returned")], day
    return [(_key(day), "ordered"), (_key(day), "reactivated")], day


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
