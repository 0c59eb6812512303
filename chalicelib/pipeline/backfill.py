"""Backfill: plan date and idle campaigns for customers already known.

When a birthday, anniversary or win-back campaign goes live after customers were
imported, no event will come to plan it. This job pages through the customers
table (the one place a Scan is acceptable: a one-off batch job, never a hot path)
and plans each customer exactly as an event would, with the same deterministic
schedule ids, so an interrupted run can simply be resumed, or run again.

The checkpoint belongs to the campaigns (ids and versions) it was made for: a run
for campaigns it does not cover (one pushed or changed since) starts from the first
customer, for all of them. Planning a customer again for a campaign already planned
writes and counts nothing, so that costs reads only.
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
    """The last customer id done and the campaigns it was done for, in a JSON file
    (the CLI's resumable state)."""

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


def _campaign_versions(campaigns: CampaignSet) -> dict[str, int]:
    return {c.id: c.version for c in campaigns.all}


def _resume_after(state: dict[str, Any], versions: dict[str, int]) -> str | None:
    """Where to resume: after the checkpoint's customer when it covers every campaign
    now backfilled, in the same version; otherwise from the first customer."""
    covered = state.get("campaigns")
    if not state.get("after") or not isinstance(covered, dict):
        return None  # nothing done, or a checkpoint that does not say for what
    if any(covered.get(cid) != version for cid, version in versions.items()):
        return None
    return str(state["after"])


def _plan_one(customer: CustomerModel, campaigns: CampaignSet, tz: str) -> tuple[int, int]:
    for _ in range(4):
        result = backfill_profile(dict(customer.profile), campaigns, clock.now(), tz)
        if not result.planned and not result.cancelled and not result.ended \
                and not result.conversions:
            return 0, 0  # nothing to write (an occurrence ended at once is written)
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
    versions = _campaign_versions(targets)
    after = _resume_after(checkpoint.load() or {}, versions)
    state: dict[str, Any] = {"campaigns": versions}
    if after is not None:
        state["after"] = after
    start = {"customer_id": {"S": after}} if after is not None else None
    customers: Iterable[CustomerModel] = CustomerModel.scan(page_size=PAGE_SIZE,
                                                            last_evaluated_key=start)
    for customer in customers:
        if limit is not None and report.customers >= limit:
            checkpoint.save(state)
            return report
        planned, dropped = (0, 0) if customer.erased_at is not None else \
            _plan_one(customer, targets, tz)
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
