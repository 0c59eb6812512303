"""Lambda entry points behind ``app.py``: Chalice objects in, the pipeline out.

Kept free of Chalice imports so the same functions could be wired to Powertools'
event handler (Chalice's maintainers call it "on life support").
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from aws_lambda_powertools import Logger

from chalicelib import settings
from chalicelib.pipeline.batch import BatchReport, Record, process_batch
from chalicelib.pipeline.ingest import decode, ingest_event
from chalicelib.pipeline.send import Channels, clear_renderers, send_one
from chalicelib.pipeline.tick import TickReport, run_tick
from chalicelib.store.campaigns import LiveCache, clear_compiled
from chalicelib.tracking.ses_events import record_ses_event

logger = Logger(service="aftercare")
TICK_SAFETY_SECONDS = 10.0
_live: LiveCache | None = None
_channels: Channels | None = None


def live() -> LiveCache:
    global _live
    if _live is None:
        _live = LiveCache(settings.load().campaign_cache_seconds)
    return _live


def channels() -> Channels:
    global _channels
    if _channels is None:
        _channels = Channels()
    return _channels


def reset() -> None:
    """Drop per-container caches (tests and the local stack). A new stack numbers
    campaign versions from 1 again: what was cached per (campaign, version) goes too,
    or a campaign id reused with other templates would render with the old ones."""
    global _live, _channels
    _live = None
    _channels = None
    clear_renderers()
    clear_compiled()


def records(sqs_event: Iterable[Any]) -> list[Record]:
    out = []
    for r in sqs_event:
        raw = r.to_dict()
        out.append(Record(body=r.body, receipt_handle=r.receipt_handle,
                          message_id=raw.get("messageId", ""),
                          source_arn=raw.get("eventSourceARN", "")))
    return out


def _summary(report: BatchReport, due: set[str]) -> dict[str, Any]:
    # Lambda ignores what an SQS-triggered function returns; the local stack uses
    # the due times to drive its virtual clock.
    return {"processed": report.processed, "dead_lettered": report.dead_lettered,
            "due": sorted(due)}


def ingest_batch(sqs_event: Iterable[Any]) -> dict[str, Any]:
    cache = live()
    due: set[str] = set()

    def handle(body: str) -> None:
        outcome = ingest_event(decode(body), cache)
        due.update(outcome.due)
        logger.info("event processed", extra={
            "event_id": outcome.event_id, "duplicate": outcome.duplicate,
            "planned": outcome.planned, "cancelled": outcome.cancelled,
            "erased": outcome.erased})

    report: BatchReport = process_batch(records(sqs_event), handle, settings.load().events_dlq)
    return _summary(report, due)


def send_batch(sqs_event: Iterable[Any]) -> dict[str, Any]:
    cache, chans = live(), channels()
    due: set[str] = set()

    def handle(body: str) -> None:
        outcome = send_one(body, cache, chans)
        due.update(outcome.due)
        logger.info("step decided", extra={
            "schedule_id": outcome.schedule_id, "outcome": outcome.outcome,
            "reason": outcome.reason})

    report = process_batch(records(sqs_event), handle, settings.load().sends_dlq)
    return _summary(report, due)


def ses_events_batch(sqs_event: Iterable[Any]) -> dict[str, Any]:
    """SES events, from the configuration set's SNS topic through the ses-events queue
    (raw message delivery): an unreadable record goes to its DLQ with the reason, a
    DynamoDB failure leaves it to be retried, as for the other queues."""
    results: dict[str, int] = {}

    def handle(body: str) -> None:
        result = record_ses_event(body)
        results[result] = results.get(result, 0) + 1

    report = process_batch(records(sqs_event), handle, settings.load().ses_events_dlq)
    return {**_summary(report, set()), "results": results}


def tick(context: Any = None) -> dict[str, int]:
    deadline = None
    remaining = (context.get_remaining_time_in_millis() / 1000
                 if hasattr(context, "get_remaining_time_in_millis") else 0.0)
    if remaining > TICK_SAFETY_SECONDS * 1.5:
        # Stop claiming with time to spare to hand on what was claimed. (Chalice's
        # local and test contexts report a fixed 3 s: no deadline there.)
        deadline = time.monotonic() + remaining - TICK_SAFETY_SECONDS
    report: TickReport = run_tick(deadline=deadline)
    logger.info("tick", extra={"claimed": report.claimed, "lost_races": report.lost_races})
    return {"claimed": report.claimed, "enqueued": report.enqueued, "swept": report.swept}
