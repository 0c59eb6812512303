"""SQS batches without Lambda's partial batch response (Chalice cannot enable it).

A record that can never succeed is sent to the dead-letter queue by the handler
itself, with the reason as message attributes, and counts as done. If any record
fails transiently, the records that succeeded are deleted from the source queue
and the handler raises, so SQS redelivers only the rest.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from chalicelib import aws, clock

log = logging.getLogger(__name__)


class PermanentError(Exception):
    """This record can never be processed; it goes to the DLQ with ``reason``."""

    def __init__(self, reason: str, kind: str = "invalid") -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind


class BatchIncomplete(Exception):
    """Raised after deleting the successes, so only failed records are retried."""

    def __init__(self, failed: int, total: int) -> None:
        super().__init__(f"{failed} of {total} records failed transiently; will be retried")
        self.failed = failed
        self.total = total


@dataclass(frozen=True, slots=True)
class Record:
    body: str
    receipt_handle: str
    message_id: str
    source_arn: str

    @property
    def queue_name(self) -> str:
        return self.source_arn.rsplit(":", 1)[-1]


@dataclass(slots=True)
class BatchReport:
    processed: int = 0
    dead_lettered: int = 0
    failed: list[Record] = field(default_factory=list)


# What SQS refuses in a message or attribute: anything outside #x9 | #xA | #xD |
# #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF (an unpaired surrogate included).
_NOT_SQS_TEXT = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def sqs_text(text: str) -> str:
    """``text`` with each character SQS refuses written as ``\\uXXXX``: a reason that
    quotes the input (a consent key) must not make the dead-lettering fail."""
    return _NOT_SQS_TEXT.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def dead_letter(queue_name: str, body: str, reason: str, kind: str, source: str) -> None:
    aws.client("sqs").send_message(
        QueueUrl=aws.queue_url(queue_name),
        MessageBody=body if body else "<empty>",
        MessageAttributes={
            "reason": {"DataType": "String",
                       "StringValue": sqs_text(reason[:1000]) or "unknown"},
            "error_kind": {"DataType": "String", "StringValue": kind},
            "source_queue": {"DataType": "String", "StringValue": source or "unknown"},
            "failed_at": {"DataType": "String", "StringValue": clock.iso(clock.now())},
        },
    )


def _delete(records: Iterable[Record]) -> None:
    by_queue: dict[str, list[Record]] = {}
    for r in records:
        by_queue.setdefault(r.queue_name, []).append(r)
    sqs = aws.client("sqs")
    for queue, items in by_queue.items():
        for start in range(0, len(items), 10):
            chunk = items[start:start + 10]
            sqs.delete_message_batch(
                QueueUrl=aws.queue_url(queue),
                Entries=[{"Id": str(i), "ReceiptHandle": r.receipt_handle}
                         for i, r in enumerate(chunk)],
            )


def process_batch(records: list[Record], handle: Callable[[str], object],
                  dlq_name: str) -> BatchReport:
    report = BatchReport()
    succeeded: list[Record] = []
    for record in records:
        try:
            try:
                handle(record.body)
            except PermanentError as exc:
                # If the DLQ cannot take it now, the record is a transient failure: it
                # stays in its queue and comes back, and the rest of the batch goes on.
                dead_letter(dlq_name, record.body, exc.reason, exc.kind, record.queue_name)
                report.dead_lettered += 1
        except Exception:
            log.exception("transient failure on record %s", record.message_id)
            report.failed.append(record)
            continue
        report.processed += 1
        succeeded.append(record)
    if report.failed:
        if succeeded:
            _delete(succeeded)
        raise BatchIncomplete(len(report.failed), len(records))
    return report
