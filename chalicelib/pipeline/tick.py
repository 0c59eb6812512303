"""The tick: claim what is due in each shard and hand it to the sends queue.

One Query per shard on the sparse due index (``due_shard = s AND due_at <= now``),
so a tick reads only what is due, however large the future backlog and however
long the scheduler was down. A claim moves ``due_at`` forward by a lease: if the
sender dies, the step becomes due again when the lease runs out.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime

from pynamodb.exceptions import UpdateError

from chalicelib import aws, clock, settings
from chalicelib.store.models import ScheduleModel

MAX_PER_SHARD = 1000


@dataclass(frozen=True, slots=True)
class TickReport:
    claimed: int
    lost_races: int
    enqueued: int


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


def _enqueue(queue: str, bodies: list[str]) -> None:
    sqs = aws.client("sqs")
    url = aws.queue_url(queue)
    for start in range(0, len(bodies), 10):
        chunk = bodies[start:start + 10]
        response = sqs.send_message_batch(
            QueueUrl=url,
            Entries=[{"Id": str(i), "MessageBody": b} for i, b in enumerate(chunk)],
        )
        if response.get("Failed"):
            # Unsent claims are not lost: their lease expires and a later tick retries.
            raise RuntimeError(f"{len(response['Failed'])} sends not enqueued")


def run_tick(now: datetime | None = None) -> TickReport:
    conf = settings.load()
    now = now or clock.now()
    cutoff = int(now.timestamp())
    claimed = lost = 0
    bodies: list[str] = []
    for shard in range(settings.DUE_SHARDS):
        for item in ScheduleModel.due.query(
            f"due#{shard:02d}", ScheduleModel.due_at <= cutoff, limit=MAX_PER_SHARD
        ):
            token = claim(item, now, conf.claim_lease_seconds)
            if token is None:
                lost += 1
                continue
            claimed += 1
            bodies.append(json.dumps(
                {"schedule_id": item.schedule_id, "claim_token": token, "step": item.step,
                 "attempt": int(item.retries or 0) + 1},
                separators=(",", ":"),
            ))
    if bodies:
        _enqueue(conf.sends_queue, bodies)
    return TickReport(claimed, lost, len(bodies))
