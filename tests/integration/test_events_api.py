"""``POST /events`` through ``chalice.test.Client``: signatures, limits, queueing.

Good requests land in the events queue (moto SQS) and are enrolled only when the
ingest function takes them from there, as events sent to SQS directly are.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

import pytest

from chalicelib import api, aws, clock, settings
from chalicelib.api.signature import sign_header
from chalicelib.local.stack import LocalStack
from chalicelib.store.models import ScheduleModel
from tests.conftest import load_event

NOW = datetime(2026, 3, 1, 14, 3, tzinfo=UTC)
KEY = b"local-events-hmac-key"  # what the local stack puts in the signing secret
JSON = "application/json"


@pytest.fixture
def events_stack(slice_stack: LocalStack) -> LocalStack:
    clock.set_now(NOW)
    return slice_stack


def post(stack: LocalStack, body: bytes, *, t: int | None = None, key: bytes = KEY,
         header: str | None = None, content_type: str = JSON) -> Any:
    """POST raw ``body``, signed with ``key`` at ``t`` unless ``header`` is given."""
    stamp = int(clock.now().timestamp()) if t is None else t
    headers = {"Content-Type": content_type,
               "X-Aftercare-Signature": header if header is not None
               else sign_header(key, stamp, body)}
    return stack.client.http.post("/events", headers=headers, body=body)


def encode(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def reply_json(reply: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(reply.body)
    return data


def queued() -> list[dict[str, Any]]:
    """The events in the events queue (peeked: the local queues have no visibility timeout)."""
    sqs = aws.client("sqs")
    url = aws.queue_url(settings.load().events_queue)
    got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    return [json.loads(m["Body"]) for m in got]


def assert_refused(reply: Any, status: int, *phrases: str) -> None:
    assert reply.status_code == status, reply.body
    message = reply_json(reply)["Message"]
    for phrase in phrases:
        assert phrase in message, message
    assert queued() == []


def test_a_signed_event_is_queued_then_enrolled_by_ingest(events_stack: LocalStack) -> None:
    event = load_event("order_delivered")
    reply = post(events_stack, encode(event))
    assert reply.status_code == 202
    assert reply_json(reply) == {"accepted": ["evt-0001"], "rejected": []}
    assert [e["id"] for e in queued()] == ["evt-0001"]
    assert ScheduleModel.count() == 0  # not processed inline

    results = events_stack.pump("events", "ingest")
    assert sum(r["processed"] for r in results) == 1
    assert ScheduleModel.count() == 2  # the SMS check-in and the email tip
    assert queued() == []


def test_a_batch_with_a_bad_event_queues_the_rest(events_stack: LocalStack) -> None:
    good = load_event("order_delivered")
    other = {**good, "id": "evt-0002", "customer": {**good["customer"], "id": "c-43"}}
    no_customer = {k: v for k, v in good.items() if k != "customer"} | {"id": "evt-bad"}
    reply = post(events_stack, encode({"events": [good, no_customer, other]}))
    assert reply.status_code == 207
    body = reply_json(reply)
    assert body["accepted"] == ["evt-0001", "evt-0002"]
    [rejected] = body["rejected"]
    assert rejected["index"] == 1 and rejected["id"] == "evt-bad"
    assert rejected["error"].startswith("$.customer")
    assert sorted(e["id"] for e in queued()) == ["evt-0001", "evt-0002"]
    events_stack.pump("events", "ingest")
    assert ScheduleModel.count() == 4


def test_an_eventbridge_shaped_event_is_accepted_by_its_inner_id(
        events_stack: LocalStack) -> None:
    wrapped = load_event("eventbridge_order_placed")
    reply = post(events_stack, encode(wrapped))
    assert reply.status_code == 202
    assert reply_json(reply)["accepted"] == [wrapped["detail"]["id"]]


def test_only_invalid_events_is_400_with_each_problem(events_stack: LocalStack) -> None:
    reply = post(events_stack, encode({"id": "evt-1", "type": "order.delivered"}))
    assert_refused(reply, 400, "invalid event", "occurred_at")
    assert reply_json(reply)["errors"][0]["id"] == "evt-1"

    reply = post(events_stack, encode({"events": [{"id": 1}, "nope"]}))
    assert_refused(reply, 400, "none of the 2 events is valid")
    assert [e["index"] for e in reply_json(reply)["errors"]] == [0, 1]


def test_a_wrong_or_missing_signature_is_401(events_stack: LocalStack) -> None:
    body = encode(load_event("order_delivered"))
    assert_refused(post(events_stack, body, key=b"someone-elses-key-123"), 401, "does not match")
    assert_refused(post(events_stack, body, header=""), 401, "missing X-Aftercare-Signature")
    assert_refused(post(events_stack, body, header="sha256=abc"), 401, "malformed")
    # The signature covers the exact bytes: the same JSON re-spaced is another body.
    t = int(NOW.timestamp())
    respaced = json.dumps(json.loads(body), indent=2).encode()
    assert_refused(post(events_stack, respaced, header=sign_header(KEY, t, body)), 401,
                   "does not match")
    # ...and the timestamp: re-dating a signature breaks it.
    moved = sign_header(KEY, t, body).replace(f"t={t}", f"t={t + 1}")
    assert_refused(post(events_stack, body, header=moved), 401, "does not match")


def test_a_stale_or_future_timestamp_is_401(events_stack: LocalStack) -> None:
    body = encode(load_event("order_delivered"))
    now = int(NOW.timestamp())
    assert_refused(post(events_stack, body, t=now - 301), 401, "timestamp", "301 s")
    assert_refused(post(events_stack, body, t=now + 301), 401, "timestamp")
    assert post(events_stack, body, t=now - 300).status_code == 202


def test_a_rotating_sender_may_send_two_signatures(events_stack: LocalStack) -> None:
    body = encode(load_event("order_delivered"))
    t = int(NOW.timestamp())
    old = sign_header(b"the-previous-key-0000", t, body).split(",")[1]
    reply = post(events_stack, body, header=f"{sign_header(KEY, t, body)},{old}")
    assert reply.status_code == 202


@pytest.mark.parametrize(("body", "phrases"), [
    (b'{"id": "evt-1",', ("not valid JSON", "line 1 column 16")),
    (b"", ("body is empty",)),
    (b'["evt-1"]', ("must be a JSON object", "list")),
    (b'{"events": {}}', ("$.events must be a non-empty array",)),
    (b'{"events": []}', ("$.events must be a non-empty array",)),
    (b"\xff\xfe\x00", ("not UTF-8",)),
    (b"[" * 30_000 + b"]" * 30_000, ("not valid JSON", "nested too deeply")),
    (b'{"n": ' + b"9" * 5_000 + b"}", ("not valid JSON", "too many digits")),
])
def test_malformed_json_is_400_naming_the_problem(events_stack: LocalStack, body: bytes,
                                                  phrases: tuple[str, ...]) -> None:
    assert_refused(post(events_stack, body), 400, *phrases)


def test_more_than_100_events_is_400(events_stack: LocalStack) -> None:
    event = load_event("order_delivered")
    body = encode({"events": [{**event, "id": f"evt-{i}"} for i in range(101)]})
    assert_refused(post(events_stack, body), 400, "101 events", "at most 100")


def test_100_events_are_queued_in_sqs_batches(events_stack: LocalStack) -> None:
    event = load_event("order_delivered")
    body = encode({"events": [{**event, "id": f"evt-{i}"} for i in range(100)]})
    reply = post(events_stack, body)
    assert reply.status_code == 202 and len(reply_json(reply)["accepted"]) == 100
    results = events_stack.pump("events", "ingest")
    assert sum(r["processed"] for r in results) == 100


def test_an_oversized_body_is_413_before_anything_else(events_stack: LocalStack) -> None:
    event = load_event("order_delivered")
    event["data"] = {"notes": "x" * (256 * 1024)}
    assert_refused(post(events_stack, encode(event)), 413, "at most 262144")
    assert_refused(post(events_stack, encode(event), header="garbage"), 413)


def test_a_wrong_content_type_is_415(events_stack: LocalStack) -> None:
    body = encode(load_event("order_delivered"))
    assert_refused(post(events_stack, body, content_type="text/plain"), 415, "text/plain")
    ok = post(events_stack, body, content_type="application/json; charset=utf-8")
    assert ok.status_code == 202
    # The handler checks it too, for any wiring other than Chalice's.
    direct = api.dispatch(api.post_events, api.HttpRequest.build(
        "POST", "/events", {"Content-Type": "text/csv"}, body))
    assert direct.status == 415 and direct.body["Code"] == "UnsupportedMediaType"


@pytest.mark.parametrize("key", ["", "short"])
def test_no_usable_key_closes_the_route(events_stack: LocalStack, key: str) -> None:
    conf = settings.load()
    aws.client("secretsmanager").put_secret_value(
        SecretId=conf.signing_secret,
        SecretString=json.dumps({"link_key": "k", "events_hmac_key": key}))
    aws.reset()  # forget the cached secret
    body = encode(load_event("order_delivered"))
    assert_refused(post(events_stack, body, key=key.encode()), 503, "events_hmac_key")


def test_a_queue_failure_is_503_and_safe_to_retry(events_stack: LocalStack) -> None:
    sqs = aws.client("sqs")
    sqs.delete_queue(QueueUrl=aws.queue_url(settings.load().events_queue))
    aws.queue_url.cache_clear()
    reply = post(events_stack, encode(load_event("order_delivered")))
    assert reply.status_code == 503
    assert "send the request again" in reply_json(reply)["Message"]


def test_no_personal_data_in_logs(events_stack: LocalStack,
                                  caplog: pytest.LogCaptureFixture) -> None:
    event = load_event("order_delivered")
    bad = {**event, "id": "evt-bad", "occurred_at": "yesterday"}
    with caplog.at_level(logging.DEBUG, logger="chalicelib"):  # botocore DEBUG is off in Lambda
        post(events_stack, encode({"events": [event, bad]}))
        post(events_stack, encode(bad))
        post(events_stack, encode(event), key=b"wrong-key-wrong-key")
    assert caplog.records  # something was logged
    for secret in ("ana@example.com", "+14155550123", "Ana Souza", "local-events-hmac-key"):
        assert secret not in caplog.text
