"""``POST /events``: signed events over HTTPS, for systems that cannot reach AWS.

The route checks and enqueues; it never processes. Each valid event goes to the
events queue, where the ingest Lambda takes it like any event sent to SQS or
through EventBridge, so the three doors share one path: dedupe by event id,
profile, goals, exits, enrollments. Events are checked here too (with the same
:func:`~chalicelib.pipeline.ingest.decode`) so that a sender learns at once what is
wrong instead of finding its event in the dead-letter queue.

Responses: 202 when every event was queued, 207 when some were and some were
refused (both list ``accepted`` ids and ``rejected`` problems), 400 when none was.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from chalicelib import aws, clock, settings
from chalicelib.api import signature
from chalicelib.api.errors import (
    BadRequestError,
    PayloadTooLargeError,
    ServiceUnavailableError,
    UnsupportedMediaTypeError,
)
from chalicelib.api.http import HttpRequest, HttpResponse
from chalicelib.events import text as event_text
from chalicelib.events import unwrap
from chalicelib.pipeline.batch import PermanentError
from chalicelib.pipeline.ingest import decode

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 256 * 1024
MAX_EVENTS = 100
MIN_KEY_CHARS = 16
SQS_BATCH_ENTRIES = 10
SQS_BATCH_BYTES = 256 * 1024
MEDIA_TYPE = "application/json"


@dataclass(slots=True)
class Checked:
    """The events of one request: ``accepted`` as (event id, body to enqueue)."""

    accepted: list[tuple[str, str]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)


def post_events(request: HttpRequest) -> HttpResponse:
    """Check the size, type and signature of ``request``, then queue its events."""
    _check_envelope(request)
    signature.verify(request.body, request.header(signature.HEADER), hmac_key(), clock.real_now())
    batch, events = read_events(request.body)
    checked = check_events(events)
    if not checked.accepted:
        raise _nothing_valid(batch, checked.rejected)
    enqueue([body for _, body in checked.accepted])
    log.info("events queued", extra={"accepted": len(checked.accepted),
                                     "rejected": len(checked.rejected)})
    status = 207 if checked.rejected else 202
    return HttpResponse(status, {"accepted": [eid for eid, _ in checked.accepted],
                                 "rejected": checked.rejected})


def _check_envelope(request: HttpRequest) -> None:
    if len(request.body) > MAX_BODY_BYTES:
        raise PayloadTooLargeError(
            f"body is {len(request.body)} bytes; at most {MAX_BODY_BYTES} per request "
            f"(split the batch)")
    if request.media_type not in ("", MEDIA_TYPE):
        raise UnsupportedMediaTypeError(
            f"Unsupported media type: {request.media_type}; send {MEDIA_TYPE}")


def hmac_key() -> bytes:
    """``events_hmac_key`` from the signing secret; 503 until ops have set it.

    An empty or short key would let anyone sign, so the route stays closed.
    """
    secret = aws.secret_json(settings.load().signing_secret)
    key = str(secret.get("events_hmac_key") or "")
    if len(key) < MIN_KEY_CHARS:
        raise ServiceUnavailableError(
            "POST /events is not configured: set events_hmac_key "
            f"(at least {MIN_KEY_CHARS} characters) in the signing secret")
    return key.encode("utf-8")


def read_events(body: bytes) -> tuple[bool, list[Any]]:
    """Parse the body: one event, or ``{"events": [...]}``; returns (is batch, events)."""
    if not body.strip():
        raise BadRequestError("body is empty: send one event or {\"events\": [...]}")
    try:
        # Each event's text is checked on its own below (check_events), so that one
        # unpaired surrogate rejects its event, not the whole batch.
        doc = event_text.loads(event_text.decode_utf8(body), check_unicode=False)
    except UnicodeDecodeError:
        raise BadRequestError("body is not UTF-8 encoded JSON") from None
    except event_text.NotFiniteNumber as exc:
        raise BadRequestError(f"body is not valid JSON: {exc}") from None
    except json.JSONDecodeError as exc:
        raise BadRequestError(
            f"body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise BadRequestError("body is not valid JSON: nested too deeply") from None
    except ValueError:  # an integer of more digits than Python converts
        raise BadRequestError("body is not valid JSON: a number has too many digits") from None
    if not isinstance(doc, dict):
        raise BadRequestError(
            f"body must be a JSON object (one event, or {{\"events\": [...]}}), "
            f"got {type(doc).__name__}")
    if "events" not in doc:
        return False, [doc]
    events = doc["events"]
    if not isinstance(events, list) or not events:
        raise BadRequestError("$.events must be a non-empty array of events")
    if len(events) > MAX_EVENTS:
        raise BadRequestError(
            f"$.events has {len(events)} events; at most {MAX_EVENTS} per request")
    return True, events


def check_events(events: list[Any]) -> Checked:
    """Check each event as ingest will; a bad one is rejected, the rest go on."""
    checked = Checked()
    for index, raw in enumerate(events):
        try:
            body = json.dumps(raw, ensure_ascii=False, separators=(",", ":"))
            body.encode("utf-8")  # an unpaired surrogate (\ud800) cannot go to SQS
            if "\ufffe" in body or "\uffff" in body:  # valid JSON text SQS refuses
                body = body.replace("\ufffe", "\\ufffe").replace("\uffff", "\\uffff")
            event = decode(body)
        except UnicodeEncodeError:
            checked.rejected.append(_rejection(index, raw, "text is not valid Unicode",
                                               "invalid_json"))
        except PermanentError as exc:
            checked.rejected.append(_rejection(index, raw, exc.reason, exc.kind))
        else:
            checked.accepted.append((str(event["id"]), body))
    return checked


def _rejection(index: int, raw: Any, reason: str, kind: str) -> dict[str, Any]:
    inner = unwrap(raw)  # an EventBridge-shaped event is reported under its own id
    event_id = inner.get("id") if isinstance(inner, dict) else None
    return {"index": index, "id": event_id if isinstance(event_id, str) else None,
            "error": reason, "kind": kind}


def _nothing_valid(batch: bool, rejected: list[dict[str, Any]]) -> BadRequestError:
    if not batch:
        return BadRequestError(f"invalid event: {rejected[0]['error']}", details=rejected)
    return BadRequestError(f"none of the {len(rejected)} events is valid (see errors)",
                           details=rejected)


def enqueue(bodies: list[str]) -> None:
    """Send ``bodies`` to the events queue in SQS batches.

    Raises
    ------
    ServiceUnavailableError
        When SQS refused any of them; sending the whole request again is safe
        because ingest deduplicates by event id.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    sqs = aws.client("sqs")
    failed = 0
    try:
        url = aws.queue_url(settings.load().events_queue)
        for chunk in sqs_batches(bodies):
            reply = sqs.send_message_batch(QueueUrl=url, Entries=[
                {"Id": str(i), "MessageBody": b} for i, b in enumerate(chunk)])
            failed += len(reply.get("Failed", []))
    except (BotoCoreError, ClientError) as exc:
        log.warning("events queue unavailable", extra={"error": type(exc).__name__})
        failed = len(bodies)
    if failed:
        raise ServiceUnavailableError(
            f"{failed} of {len(bodies)} events could not be queued; send the request "
            "again (events are deduplicated by id)")


def sqs_batches(bodies: list[str]) -> Iterator[list[str]]:
    """Group bodies into SendMessageBatch calls: at most 10 entries and 256 KiB each."""
    chunk: list[str] = []
    size = 0
    for body in bodies:
        n = len(body.encode("utf-8"))
        if chunk and (len(chunk) == SQS_BATCH_ENTRIES or size + n > SQS_BATCH_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append(body)
        size += n
    if chunk:
        yield chunk
