"""Erasure: delete what Aftercare holds about customers (``aftercare erase``).

For each customer id:

1. Every opt-out on the profile whose address is known goes on the suppression
   list (a keyed hash of the address, :mod:`chalicelib.store.suppression`), so an
   erased STOP stays honoured if the address comes back (DESIGN.md).
2. The profile becomes a tombstone: no contact, no attributes, no history, only
   ``erased_at``. Ingest drops events that happened before it (late ones, or ones
   replayed from a dead-letter queue, must not bring the data back); an event
   after it starts a new profile. The sender finds no profile and cancels.
3. The customer's schedule items (pending or decided: a step holds its order
   and, for conditions that read it, event data) and messages are deleted.

Stats are counts per campaign and day, with no customer in them: they stay.

Schedule items and messages have no index by customer (an index would cost every
ingest and send a write), so step 3 scans the two tables once for all the ids
given, in parallel segments (``segments``, 4 by default): erase in batches (say
daily), not one id per run. Items planned or
messages decided after the erasure started are kept: they belong to a profile
started after it. The run is idempotent; run it again after an interruption.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from pynamodb.exceptions import PutError

from chalicelib import clock
from chalicelib.journeys.engine import CONTACT_FIELD
from chalicelib.pipeline.ingest import load_customer
from chalicelib.store import suppression
from chalicelib.store.models import CustomerModel, MessageModel, ScheduleModel

MAX_RETRIES = 4
PAGE_SIZE = 500
SEGMENTS = 4  # parallel scan segments per table (threads: the work is waiting on I/O)
MAX_SEGMENTS = 64


@dataclass(slots=True)
class ErasureReport:
    customers: int = 0  # profiles turned into tombstones
    unknown: int = 0  # ids with no profile (a tombstone is written all the same)
    suppressed: int = 0  # opt-outs put on the suppression list
    schedule_items: int = 0
    messages: int = 0
    erased_at: str = ""
    ids: list[str] = field(default_factory=list)


def erase(customer_ids: Iterable[str], *, dry_run: bool = False, segments: int = SEGMENTS,
          progress: Callable[[int], None] | None = None) -> ErasureReport:
    """Erase ``customer_ids`` (see the module docstring); ``dry_run`` counts only.
    ``segments``: how many parallel segments each table is scanned in."""
    if not 1 <= segments <= MAX_SEGMENTS:
        raise ValueError(f"segments must be from 1 to {MAX_SEGMENTS}")
    ids = sorted({c for c in customer_ids if c})
    report = ErasureReport(erased_at=clock.iso(clock.now()), ids=ids)
    for n, customer_id in enumerate(ids, 1):
        _tombstone(customer_id, report, dry_run)
        if progress is not None:
            progress(n)
    wanted = set(ids)
    report.schedule_items = _delete_schedule(wanted, report.erased_at, dry_run, segments)
    report.messages = _delete_messages(wanted, report.erased_at, dry_run, segments)
    return report


def opt_outs(profile: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(channel, address, at, source) of each withdrawn consent with a known address."""
    found = []
    consent = profile.get("consent") or {}
    for channel, contact in CONTACT_FIELD.items():
        record, address = consent.get(channel), profile.get(contact)
        if isinstance(record, dict) and record.get("granted") is False and address:
            found.append((channel, str(address), str(record.get("at") or ""),
                          str(record.get("source") or "opt-out")))
    return found


def _tombstone(customer_id: str, report: ErasureReport, dry_run: bool) -> None:
    for _ in range(MAX_RETRIES):
        current = load_customer(customer_id)
        if current is not None and current.erased_at is not None:
            report.customers += 1  # erased before: keep its first erasure time
            return
        profile: dict[str, Any] = dict(current.profile) if current is not None else {}
        outs = opt_outs(profile)
        if dry_run:
            report.customers += current is not None
            report.unknown += current is None
            report.suppressed += len(outs)
            return
        for channel, address, at, source in outs:
            report.suppressed += suppression.suppress(channel, address,
                                                      at or report.erased_at, source)
        item = current or CustomerModel(customer_id)
        item.profile = {}
        item.phone = None
        item.email = None
        item.erased_at = report.erased_at
        try:
            item.save()  # conditional on the version read: ingest may write meanwhile
        except PutError as exc:
            if exc.cause_response_code == "ConditionalCheckFailedException":
                continue  # the profile changed under us: read it again
            raise
        report.customers += current is not None
        report.unknown += current is None
        return
    raise RuntimeError(f"customer {customer_id} kept changing during erasure")


def _step_of(item: ScheduleModel) -> dict[str, Any]:
    step = item.step
    return step if isinstance(step, dict) else json.loads(step or "{}")


def _delete_schedule(ids: set[str], before: str, dry_run: bool, segments: int) -> int:
    def doomed(item: ScheduleModel) -> bool:
        return _step_of(item).get("customer_id") in ids and (item.updated_at or "") <= before

    return _delete_matching(ScheduleModel, ["schedule_id", "step", "updated_at"], doomed,
                            dry_run, segments)


def _delete_messages(ids: set[str], before: str, dry_run: bool, segments: int) -> int:
    def doomed(message: MessageModel) -> bool:
        return message.customer_id in ids and message.decided_at <= before

    return _delete_matching(MessageModel, ["message_id", "customer_id", "decided_at"], doomed,
                            dry_run, segments)


def _delete_matching(model: Any, attributes: list[str], doomed: Callable[[Any], bool],
                     dry_run: bool, segments: int) -> int:
    """Delete the items of ``model`` that ``doomed`` picks, scanning the table in
    ``segments`` parallel segments (DynamoDB's parallel scan); returns how many."""
    def segment(n: int) -> int:
        found = [item for item in model.scan(segment=n, total_segments=segments,
                                             page_size=PAGE_SIZE,
                                             attributes_to_get=attributes)
                 if doomed(item)]
        if not dry_run:
            with model.batch_write() as batch:
                for item in found:
                    batch.delete(item)
        return len(found)

    with ThreadPoolExecutor(max_workers=segments) as pool:
        return sum(pool.map(segment, range(segments)))
