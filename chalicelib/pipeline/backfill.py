"""Backfill: plan date and idle campaigns for customers already known.

When a birthday, anniversary or win-back campaign goes live after customers were
imported, no event will come to plan it. This job pages through the customers
table (the one place a Scan is acceptable: a one-off batch job, never a hot path)
and plans each customer exactly as an event would, with the same deterministic
schedule ids, so an interrupted run can simply be resumed, or run again.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chalicelib import clock, settings
from chalicelib.journeys.engine import CampaignSet, backfill_profile
from chalicelib.pipeline.ingest import result_transaction
from chalicelib.store.campaigns import load_live
from chalicelib.store.models import CustomerModel
from chalicelib.store.tx import RequiredConditionFailed, commit

PAGE_SIZE = 100
CHECKPOINT_EVERY = 25


class FileCheckpoint:
    """The last customer id done, in a JSON file (the CLI's resumable state)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, Any] | None:
        if not self.path.exists():
            return None
        data: dict[str, Any] = json.loads(self.path.read_text())
        return data

    def save(self, state: dict[str, Any]) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        tmp.replace(self.path)

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


@dataclass(slots=True)
class BackfillReport:
    customers: int = 0
    planned: int = 0
    already_planned: int = 0
    complete: bool = False


def backfill_campaigns(campaigns: CampaignSet | None = None) -> CampaignSet:
    live = campaigns or load_live().campaigns
    return CampaignSet(c for c in live.all if c.trigger_kind in ("date", "idle"))


def _plan_one(customer: CustomerModel, campaigns: CampaignSet, tz: str) -> tuple[int, int]:
    for _ in range(4):
        result = backfill_profile(dict(customer.profile), campaigns, clock.now(), tz)
        if not result.planned and not result.cancelled:
            return 0, 0
        try:
            dropped = commit(result_transaction(result, customer))
        except RequiredConditionFailed:
            customer.refresh(consistent_read=True)  # changed under us: plan again
            continue
        return len(result.planned) - dropped, dropped
    raise RuntimeError(f"customer {customer.customer_id} kept changing during backfill")


def run_backfill(checkpoint: FileCheckpoint, campaigns: CampaignSet | None = None,
                 limit: int | None = None,
                 progress: Callable[[int], None] | None = None) -> BackfillReport:
    """Plan every known customer; stop after ``limit`` customers (an interruption)."""
    targets = backfill_campaigns(campaigns)
    report = BackfillReport()
    if not targets.all:
        report.complete = True
        return report
    tz = settings.load().default_timezone
    state = checkpoint.load() or {}
    start = {"customer_id": {"S": state["after"]}} if state.get("after") else None
    customers: Iterable[CustomerModel] = CustomerModel.scan(page_size=PAGE_SIZE,
                                                            last_evaluated_key=start)
    for customer in customers:
        if limit is not None and report.customers >= limit:
            checkpoint.save(state)
            return report
        planned, dropped = _plan_one(customer, targets, tz)
        report.customers += 1
        report.planned += planned
        report.already_planned += dropped
        state["after"] = customer.customer_id
        if report.customers % CHECKPOINT_EVERY == 0:
            checkpoint.save(state)
        if progress is not None:
            progress(report.customers)
    checkpoint.clear()
    report.complete = True
    return report
