"""The tick: claim what is due in each shard and hand it to the sends queue.

One Query per shard on the sparse due index (``due_shard = s AND due_at <= now``),
so a tick reads only what is due, however large the future backlog and however
long the scheduler was down. A claim moves ``due_at`` forward by a lease: if the
sender dies, the step becomes due again when the lease runs out.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import datetime

from pynamodb.exceptions import UpdateError

from chalicelib import aws, clock, settings
from chalicelib.store.models import ScheduleModel
from chalicelib.store.tx import RequiredConditionFailed

log = logging.getLogger(__name__)

MAX_PER_SHARD = 1000


@dataclass(frozen=True, slots=True)
class TickReport:
    claimed: int
    lost_races: int
    enqueued: int
    swept: int = 0


def claim(item: ScheduleModel, now: datetime, lease_seconds: int) -> str | None:
    """Claim one due item; None if another tick or sender got there first."""
    token = uuid.uuid4().hex
    try:
        item.update(
            actions=[
                ScheduleModel.status.set("claimed"),
                ScheduleModel.due_at.set(int(now.timestamp()) + lease_seconds),
                ScheduleModel.claim_token.set(token),
                ScheduleModel.updated_at.set(clock.iso(now)),
            ],
            condition=(ScheduleModel.due_at == item.due_at)
            & ScheduleModel.status.is_in("pending", "claimed"),
        )
    except UpdateError as exc:
        if exc.cause_response_code == "ConditionalCheckFailedException":
            return None
        raise
    return token


def sweep_stuck(item: ScheduleModel, now: datetime) -> bool:
    """A step left ``sending`` past its timeout: the worker died between the claim and
    recording the provider's answer. It may have been sent, so it is recorded as
    ``ambiguous`` and never resent."""
    from chalicelib.pipeline.send import record_stuck

    try:
        became = record_stuck(item, now)
    except RequiredConditionFailed:
        return False  # settled meanwhile
    except Exception:  # one bad item must not stop the tick
        log.exception("could not settle stuck step %s", item.schedule_id)
        return False
    log.warning("stuck step %s settled: %s", item.schedule_id, became)
    return True


class _Enqueuer:
    """Sends claimed steps to the sends queue ten at a time, as they are claimed, so
    a tick that runs out of time has handed on everything it claimed."""

    def __init__(self, queue: str) -> None:
        self.queue = queue
        self.pending: list[str] = []
        self.sent = 0

    def add(self, body: str) -> None:
        self.pending.append(body)
        if len(self.pending) == 10:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        sqs = aws.client("sqs")
        response = sqs.send_message_batch(
            QueueUrl=aws.queue_url(self.queue),
            Entries=[{"Id": str(i), "MessageBody": b} for i, b in enumerate(self.pending)],
        )
        failed = len(response.get("Failed") or [])
        self.sent += len(self.pending) - failed
        self.pending = []
        if failed:
            # Unsent claims are not lost: their lease expires and a later tick retries.
            raise RuntimeError(f"{failed} sends not enqueued")


def run_tick(now: datetime | None = None, deadline: float | None = None) -> TickReport:
    """Claim what is due in every shard; stop claiming at ``deadline`` (monotonic)."""
    conf = settings.load()
    now = now or clock.now()
    cutoff = int(now.timestamp())
    claimed = lost = swept = 0
    out = _Enqueuer(conf.sends_queue)
    # Start at a shard that turns with the minute: when a backlog outlasts the
    # deadline, no shard is always last.
    first = (cutoff // 60) % settings.DUE_SHARDS
    for n in range(settings.DUE_SHARDS):
        shard = (first + n) % settings.DUE_SHARDS
        for item in ScheduleModel.due.query(
            f"due#{shard:02d}", ScheduleModel.due_at <= cutoff, limit=MAX_PER_SHARD
        ):
            if deadline is not None and time.monotonic() > deadline:
                out.flush()
                return TickReport(claimed, lost, out.sent, swept)
            if item.status == "sending":
                swept += sweep_stuck(item, now)
                continue
            token = claim(item, now, conf.claim_lease_seconds)
            if token is None:
                lost += 1
                continue
            claimed += 1
            out.add(json.dumps(
                {"schedule_id": item.schedule_id, "claim_token": token, "step": item.step,
                 "attempt": int(item.retries or 0) + 1},
                separators=(",", ":"),
            ))
    out.flush()
    return TickReport(claimed, lost, out.sent, swept)
