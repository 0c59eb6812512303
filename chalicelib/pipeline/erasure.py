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
   and, for conditions that read it, event data) and messages are deleted: all of
   them while the customer is still a tombstone when the scans end; for a customer
   who came back meanwhile (an event after the erasure started a new profile),
   those last written before the erasure.

Stats are counts per campaign and day, with no customer in them: they stay.

Schedule items and messages have no index by customer (an index would cost every
ingest and send a write), so step 3 scans the two tables once for all the ids
given, in parallel segments (``segments``, 4 by default): erase in batches (say
daily), not one id per run. The run is idempotent; run it again after an
interruption.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from pynamodb.exceptions import PutError

from chalicelib import clock
from chalicelib.pipeline.ingest import load_customer
from chalicelib.store import suppression
from chalicelib.store.models import CustomerModel, MessageModel, ScheduleModel
from chalicelib.store.scan import MAX_SEGMENTS, SEGMENTS, parallel_scan

MAX_RETRIES = 4


@dataclass(slots=True)
class ErasureReport:
    customers: int = 0  # profiles turned into tombstones
    unknown: int = 0  # ids with no profile (a tombstone is written all the same)
    suppressed: int = 0  # opt-outs put on the suppression list
    schedule_items: int = 0
    messages: int = 0
    returned: int = 0  # came back (an event after the erasure) before the run ended
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
    schedule, messages = _found(wanted, segments)
    # Read after the scans: a customer still a tombstone then had no new profile while
    # the scans read, so every item they found is the erased profile's, whenever it
    # was last touched (the sender cancelling a queued step meanwhile, say). For one
    # that came back, items touched after the erasure started are the new profile's.
    back = set() if dry_run else _returned(wanted)
    when = report.erased_at
    doomed_steps = [i for cid, i in schedule if cid not in back or (i.updated_at or "") <= when]
    doomed_messages = [m for cid, m in messages if cid not in back or m.decided_at <= when]
    report.returned = len(back)
    report.schedule_items, report.messages = len(doomed_steps), len(doomed_messages)
    if not dry_run:
        _delete(ScheduleModel, doomed_steps)
        _delete(MessageModel, doomed_messages)
    return report


def _tombstone(customer_id: str, report: ErasureReport, dry_run: bool) -> None:
    for _ in range(MAX_RETRIES):
        current = load_customer(customer_id)
        if current is not None and current.erased_at is not None:
            report.customers += 1  # erased before: keep its first erasure time
            return
        profile: dict[str, Any] = dict(current.profile) if current is not None else {}
        outs = suppression.opt_outs(profile)
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
        item.retention_day = None
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


def _found(ids: set[str], segments: int) -> tuple[list[Any], list[Any]]:
    """The customers' schedule items and messages, (customer id, item) each, from one
    parallel scan of each table."""
    def step_owner(item: ScheduleModel) -> tuple[str, ScheduleModel] | None:
        customer_id = item.step.get("customer_id")
        return (customer_id, item) if customer_id in ids else None

    def message_owner(message: MessageModel) -> tuple[str, MessageModel] | None:
        return (message.customer_id, message) if message.customer_id in ids else None

    schedule = parallel_scan(ScheduleModel, ["schedule_id", "step", "updated_at"],
                             step_owner, segments)
    messages = parallel_scan(MessageModel, ["message_id", "customer_id", "decided_at"],
                             message_owner, segments)
    return schedule, messages


def _returned(ids: set[str]) -> set[str]:
    """The customers whose tombstone an event after the erasure has replaced already
    (a new profile)."""
    back: set[str] = set()
    for customer_id in ids:
        current = load_customer(customer_id)
        if current is not None and current.erased_at is None:
            back.add(customer_id)
    return back


def _delete(model: Any, items: list[Any]) -> None:
    with model.batch_write() as batch:
        for item in items:
            batch.delete(item)
