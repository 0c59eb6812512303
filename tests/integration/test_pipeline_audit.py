"""Audit of the Lambda pipeline (issue #4) with cases the other tests do not cover.

Expectations come from the spec, README.md, docs/*.md and DESIGN.md, not from the
code. The defects it found were fixed; each test stays as a regression test.

Everything runs on the local stack (moto, the local Twilio server, the handlers
through ``chalice.test.Client``); fixtures are in ``tests/fixtures/pipeline_audit``.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from bench._ddb_meter import DdbMeter, attach
from chalicelib import aws, clock, settings
from chalicelib.api.signature import sign_header
from chalicelib.cli.main import main
from chalicelib.local.stack import LINK_KEY, TWILIO_AUTH_TOKEN, LocalStack
from chalicelib.pipeline.batch import BatchIncomplete
from chalicelib.pipeline.stats import stats_totals
from chalicelib.store import tx
from chalicelib.store.models import (
    ALL_MODELS,
    CustomerModel,
    MessageModel,
    ScheduleModel,
    StatsModel,
)
from chalicelib.tracking import links
from tests.conftest import FIXTURES, ROOT, delivered, load_event
from tests.integration.sqs_helpers import invoke, queue_counts, queue_url, receive

AUDIT = FIXTURES / "pipeline_audit"
KEY = b"local-events-hmac-key"  # what the local stack stores as events_hmac_key
DELIVERED = datetime(2026, 3, 1, 14, 3, tzinfo=UTC)
SMS_DUE = datetime(2026, 3, 3, 15, 0, tzinfo=UTC)  # P2D at 10:00 New York
EMAIL_DUE = datetime(2026, 3, 8, 13, 30, tzinfo=UTC)  # P7D at 09:30 New York (EDT)
PHONE = "+14155550123"
EMAIL = "ana@example.com"
NAME = "Ana Souza"
STATUS_PATH = "/webhooks/twilio/status"
FORM = "application/x-www-form-urlencoded"


# -- helpers ---------------------------------------------------------------------------


def eventbridge(event: dict[str, Any]) -> dict[str, Any]:
    """``event`` as the EventBridge rule forwards it to the events queue."""
    return {"version": "0", "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
            "detail-type": event["type"], "source": "shop.orders",
            "account": "123456789012", "time": event["occurred_at"],
            "region": "us-east-1", "resources": [], "detail": event}


def post_events(stack: LocalStack, body: bytes, *, t: int | None = None,
                header: str | None = None) -> Any:
    stamp = int(clock.real_now().timestamp()) if t is None else t
    signature = header if header is not None else sign_header(KEY, stamp, body)
    return stack.client.http.post("/events", body=body, headers={
        "Content-Type": "application/json", "X-Aftercare-Signature": signature})


def reply_json(reply: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(reply.body)
    return data


def injected_error(status: int, code: str) -> tuple[Any, dict[str, Any]]:
    """What a botocore ``before-call`` hook returns to fail a call without sending it."""
    from botocore.awsrequest import AWSResponse, HTTPHeaders

    return (AWSResponse("https://injected.invalid", status, HTTPHeaders(), None),
            {"Error": {"Code": code, "Message": "injected"},
             "ResponseMetadata": {"HTTPStatusCode": status}})


def steps_of(campaign: str) -> list[ScheduleModel]:
    return [s for s in ScheduleModel.scan() if s.step["campaign_id"] == campaign]


def messages(channel: str | None = None) -> list[MessageModel]:
    return [m for m in MessageModel.scan() if channel is None or m.channel == channel]


def stat_sum(campaign: str, counter: str) -> int:
    """A counter summed over every day, variant, arm and write shard of a campaign."""
    return sum(int(getattr(s, counter) or 0) for s in StatsModel.scan()
               if s.pk.startswith(f"{campaign}#"))


@pytest.fixture
def slice_now(slice_stack: LocalStack) -> LocalStack:
    """Two fixed campaigns (SMS check-in P2D 10:00, email tip P7D 09:30), clock at
    the fixture delivery."""
    clock.set_now(DELIVERED)
    return slice_stack


@pytest.fixture
def no_lookup_pauses(monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib.tracking import status_updates

    monkeypatch.setattr(status_updates, "pause", lambda _seconds: None)


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self._fmt = logging.Formatter("%(name)s %(levelname)s %(message)s")

    def emit(self, record: logging.LogRecord) -> None:
        extras = {k: v for k, v in record.__dict__.items()
                  if k not in logging.LogRecord("", 0, "", 0, "", (), None).__dict__}
        self.lines.append(f"{self._fmt.format(record)} {extras!r}")


@pytest.fixture
def log_lines() -> Iterator[list[str]]:
    """Every log record at INFO and above, of every logger (Powertools' included),
    formatted with its extras and traceback."""
    handler = _Records()
    root = logging.getLogger()
    powertools = logging.getLogger("aftercare")
    saved = (root.level, powertools.level)
    root.addHandler(handler)
    powertools.addHandler(handler)
    root.setLevel(logging.INFO)
    powertools.setLevel(logging.INFO)  # POWERTOOLS_LOG_LEVEL is INFO in .chalice/config.json
    quiet = [logging.getLogger(n) for n in ("botocore", "boto3", "urllib3", "moto")]
    quiet_levels = [q.level for q in quiet]
    for q in quiet:
        q.setLevel(logging.WARNING)  # their DEBUG/INFO is off in Lambda
    try:
        yield handler.lines
    finally:
        root.removeHandler(handler)
        powertools.removeHandler(handler)
        root.setLevel(saved[0])
        powertools.setLevel(saved[1])
        for q, level in zip(quiet, quiet_levels, strict=True):
            q.setLevel(level)


# -- three doors, one ingest -------------------------------------------------------------


def test_the_same_event_through_all_three_doors_enrolls_and_counts_once(
        slice_now: LocalStack) -> None:
    event = delivered()
    reply = post_events(slice_now, json.dumps(event).encode())
    assert reply.status_code == 202
    slice_now.send_events([event, eventbridge(event), json.dumps(event, indent=2)])
    results = slice_now.pump("events", "ingest")
    assert sum(r["processed"] for r in results) == 4
    assert sum(r["dead_lettered"] for r in results) == 0
    assert len(steps_of("checkin")) == 1 and len(steps_of("tip")) == 1
    profile = CustomerModel.get("c-42").profile
    assert (profile["order_count"], profile["total_spent"]) == (1, 129.5)
    assert stat_sum("checkin", "enrolled") == 1 and stat_sum("tip", "enrolled") == 1
    slice_now.run_due(SMS_DUE)
    slice_now.run_due(EMAIL_DUE)
    assert len(slice_now.twilio.messages) == 1
    assert len(slice_now.sent_emails()) == 1


def test_a_mixed_sqs_batch_deletes_exactly_the_records_that_are_done(
        slice_now: LocalStack) -> None:
    """Real SQS semantics: the handler raises, so Lambda deletes nothing itself; what
    the handler did not delete comes back after the visibility timeout."""
    good = delivered("evt-good", "c-good")
    throttled = delivered("evt-throttled", "c-throttled")
    oversized = delivered("evt-big", "c-big")
    oversized["data"] = {"blob": "x" * (64 * 1024)}
    bodies = [json.dumps(good), "{not json", json.dumps(good),  # a duplicate
              json.dumps(throttled), json.dumps({"id": "evt-x", "type": "order.delivered"}),
              json.dumps(oversized), json.dumps(eventbridge(delivered("evt-eb", "c-eb")))]
    slice_now.send_events(bodies)
    batch = receive("events", visibility=300)
    assert len(batch) == len(bodies)

    client = tx.connection().client

    def throttle(params: dict[str, Any], **_: Any) -> Any:
        if "c-throttled" in json.dumps(params, default=str):
            return injected_error(500, "InternalServerError")
        return None

    client.meta.events.register("before-call.dynamodb.TransactWriteItems", throttle)
    try:
        with pytest.raises(BatchIncomplete) as info:
            invoke(slice_now, "ingest", "events", batch)
    finally:
        client.meta.events.unregister("before-call.dynamodb.TransactWriteItems", throttle)
    assert (info.value.failed, info.value.total) == (1, len(bodies))
    # Only the throttled record is left in the queue (in flight until its timeout).
    assert queue_counts("events") == (0, 1)
    dead = slice_now.dead_letters()
    reasons = sorted(m["MessageAttributes"]["reason"]["StringValue"] for m in dead)
    assert len(reasons) == 3
    assert any(r.startswith("invalid JSON") for r in reasons)
    assert any("$.occurred_at" in r for r in reasons)
    assert any("larger than" in r for r in reasons)
    assert {m["MessageAttributes"]["error_kind"]["StringValue"] for m in dead} == {
        "invalid_json", "invalid_event", "too_large"}
    assert {s.step["customer_id"] for s in ScheduleModel.scan()} == {"c-good", "c-eb"}
    assert stat_sum("checkin", "enrolled") == 2
    # The retry of the one left succeeds; nothing else is processed twice.
    (left,) = [m for m in batch if '"evt-throttled"' in m["Body"]]
    aws.client("sqs").change_message_visibility(
        QueueUrl=queue_url("events"), ReceiptHandle=left["ReceiptHandle"], VisibilityTimeout=0)
    slice_now.pump("events", "ingest")
    assert {s.step["customer_id"] for s in ScheduleModel.scan()} == {
        "c-good", "c-eb", "c-throttled"}
    assert stat_sum("checkin", "enrolled") == 3
    assert queue_counts("events") == (0, 0)


def test_a_failing_dead_letter_queue_is_a_transient_failure_of_that_record_only(
        slice_now: LocalStack) -> None:
    slice_now.send_events([json.dumps(delivered("evt-a", "c-a")), "{poison",
                           json.dumps(delivered("evt-b", "c-b"))])
    batch = receive("events", visibility=300)
    sqs = aws.client("sqs")
    dlq = settings.resource_name("events-dlq")

    def refuse_dlq(params: dict[str, Any], **_: Any) -> Any:
        if dlq in json.dumps(params, default=str):
            return injected_error(403, "KMS.AccessDeniedException")
        return None

    sqs.meta.events.register("before-call.sqs.SendMessage", refuse_dlq)
    try:
        with pytest.raises(BatchIncomplete):
            invoke(slice_now, "ingest", "events", batch)
    finally:
        sqs.meta.events.unregister("before-call.sqs.SendMessage", refuse_dlq)
    # evt-a and evt-b are processed and deleted; only the poison record is retried.
    assert {s.step["customer_id"] for s in ScheduleModel.scan()} == {"c-a", "c-b"}
    assert queue_counts("events") == (0, 1)


# -- POST /events --------------------------------------------------------------------------


def test_a_unicode_body_signed_over_its_utf8_bytes_is_accepted_as_sent(
        slice_now: LocalStack) -> None:
    event = delivered(customer={"id": "c-ü", "name": "Zoë Ñandú 🎉", "phone": PHONE,
                                "consent": {"sms": True}})
    raw = json.dumps(event, ensure_ascii=False).encode("utf-8")
    assert post_events(slice_now, raw).status_code == 202
    # The same document re-serialized (\\u escapes) is other bytes: the signature of the
    # raw body does not cover it.
    escaped = json.dumps(event).encode()
    t = int(clock.real_now().timestamp())
    reply = post_events(slice_now, escaped, header=sign_header(KEY, t, raw))
    assert reply.status_code == 401
    slice_now.pump("events", "ingest")
    assert CustomerModel.get("c-ü").profile["name"] == "Zoë Ñandú 🎉"


def test_timestamps_inside_the_window_either_side_are_accepted(slice_now: LocalStack) -> None:
    body = json.dumps(delivered()).encode()
    now = int(clock.real_now().timestamp())
    assert post_events(slice_now, body, t=now + 299).status_code == 202
    assert post_events(slice_now, body, t=now - 299).status_code == 202
    reply = post_events(slice_now, body, t=now + 3600)
    assert reply.status_code == 401 and "timestamp" in reply_json(reply)["Message"]


def test_the_body_limit_is_262144_bytes_exactly(slice_now: LocalStack) -> None:
    doc = json.dumps({"events": [delivered()]}).encode()
    limit = 256 * 1024
    at_limit = doc + b" " * (limit - len(doc))
    assert len(at_limit) == limit
    assert post_events(slice_now, at_limit).status_code == 202
    over = at_limit + b" "
    reply = post_events(slice_now, over, header="t=1,v1=00")  # size is checked first
    assert reply.status_code == 413


def test_a_batch_repeating_an_event_in_both_shapes_enrolls_once(slice_now: LocalStack) -> None:
    event = delivered()
    body = json.dumps({"events": [event, eventbridge(event), event,
                                  delivered("evt-0002", "c-43")]}).encode()
    reply = post_events(slice_now, body)
    assert reply.status_code == 202
    assert reply_json(reply)["accepted"] == ["evt-0001", "evt-0001", "evt-0001", "evt-0002"]
    slice_now.pump("events", "ingest")
    assert sorted(s.step["customer_id"] for s in steps_of("checkin")) == ["c-42", "c-43"]
    assert stat_sum("checkin", "enrolled") == 2


def test_every_route_refuses_a_request_without_credentials(slice_now: LocalStack) -> None:
    http = slice_now.client.http
    body = json.dumps(delivered()).encode()
    assert http.post("/events", body=body,
                     headers={"Content-Type": "application/json"}).status_code == 401
    form = urlencode({"MessageSid": "SM1", "MessageStatus": "delivered",
                      "From": PHONE, "Body": "STOP"}).encode()
    for path in (STATUS_PATH, "/webhooks/twilio/inbound"):
        assert http.post(path, body=form, headers={"Content-Type": FORM}).status_code == 403
    for kind in ("unsubscribe", "survey"):
        assert http.get(f"/l/{kind}/not-a-token").status_code == 404
        assert http.post(f"/l/{kind}/not-a-token", body=b"score=5",
                         headers={"Content-Type": FORM}).status_code == 404
    assert CustomerModel.count() == 0 and queue_counts("events") == (0, 0)


def test_a_signature_header_with_non_ascii_digits_is_401_not_500(slice_now: LocalStack) -> None:
    body = json.dumps(delivered()).encode()
    reply = post_events(slice_now, body, header="t=\u00b2,v1=" + "0" * 64)
    assert reply.status_code == 401


def test_an_event_over_64_kib_of_utf8_is_refused_at_both_doors(slice_now: LocalStack) -> None:
    event = delivered()
    event["customer"]["attributes"] = {"note": "€" * 22000}
    body = json.dumps(event, ensure_ascii=False).encode("utf-8")
    assert 64 * 1024 < len(body) < 256 * 1024
    reply = post_events(slice_now, body)
    assert reply.status_code == 400, reply.body
    assert reply_json(reply)["errors"][0]["kind"] == "too_large"
    slice_now.ingest([body.decode("utf-8")])  # the SQS door
    (dead,) = slice_now.dead_letters()
    assert dead["MessageAttributes"]["error_kind"]["StringValue"] == "too_large"
    assert ScheduleModel.count() == 0


def test_order_fields_of_the_wrong_type_are_refused_as_the_schema_says(
        slice_now: LocalStack) -> None:
    import jsonschema

    schema = json.loads((ROOT / "chalicelib/events/events.schema.json").read_text())
    event = delivered()
    event["order"] = {"id": "o-9", "total": 10, "currency": {"code": "USD"},
                      "items": [{"sku": 5, "name": "Kettle", "quantity": "two",
                                 "price": "abc"}]}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(event, schema)
    reply = post_events(slice_now, json.dumps(event).encode())
    assert reply.status_code == 400, reply.body
    assert reply_json(reply)["errors"][0]["error"].startswith("$.order")


SQS_ALLOWED = ((0x9, 0x9), (0xA, 0xA), (0xD, 0xD), (0x20, 0xD7FF), (0xE000, 0xFFFD),
               (0x10000, 0x10FFFF))


def _sqs_accepts(text: str) -> bool:
    return all(any(lo <= ord(ch) <= hi for lo, hi in SQS_ALLOWED) for ch in text)


def test_what_post_events_puts_on_sqs_is_only_characters_sqs_accepts(
        slice_now: LocalStack) -> None:
    sqs = aws.client("sqs")
    bodies: list[str] = []

    def capture(params: dict[str, Any], **_: Any) -> None:
        request = json.loads(params["body"])
        bodies.extend(e["MessageBody"] for e in request.get("Entries", []))

    sqs.meta.events.register("before-call.sqs.SendMessageBatch", capture)
    try:
        event = delivered()
        event["customer"] = {**event["customer"], "name": "Ana \uffff"}
        event["data"] = {"note": "\ufffe \u0000 \u007f ok"}
        assert post_events(slice_now, json.dumps(event).encode()).status_code == 202
    finally:
        sqs.meta.events.unregister("before-call.sqs.SendMessageBatch", capture)
    assert len(bodies) == 1
    assert _sqs_accepts(bodies[0]), [hex(ord(c)) for c in bodies[0] if not _sqs_accepts(c)]


def test_a_batch_reports_each_refused_event_by_index_and_kind(slice_now: LocalStack) -> None:
    big = delivered("evt-big", "c-big")
    big["data"] = {"blob": "x" * (64 * 1024)}
    wrong = delivered("evt-wrong", "c-wrong")
    wrong["order"] = {"id": "o-1", "total": "12.50"}
    body = json.dumps({"events": [delivered(), big, wrong, "not an event",
                                  {"detail-type": "order.placed", "detail": {"id": "evt-eb"}},
                                  delivered("evt-0002", "c-43")]}).encode()
    reply = post_events(slice_now, body)
    assert reply.status_code == 207
    data = reply_json(reply)
    assert data["accepted"] == ["evt-0001", "evt-0002"]
    refused = [(r["index"], r["id"], r["kind"]) for r in data["rejected"]]
    assert refused == [(1, "evt-big", "too_large"), (2, "evt-wrong", "invalid_event"),
                       (3, None, "invalid_event"), (4, "evt-eb", "invalid_event")]
    assert data["rejected"][1]["error"].startswith("$.order.total")


# -- consent evidence after a STOP -----------------------------------------------------------

INBOUND_URL = "http://127.0.0.1:8000/webhooks/twilio/inbound"


def _stop_by_sms(stack: LocalStack) -> None:
    clock.set_now(datetime(2026, 3, 2, 12, 0, tzinfo=UTC))
    assert stack.twilio.simulate_inbound(PHONE, "STOP", "+15005550006", INBOUND_URL).error is None
    stack.pump("events", "ingest")
    assert CustomerModel.get("c-42").profile["consent"]["sms"]["granted"] is False


def _consent_event(eid: str, record: dict[str, Any]) -> dict[str, Any]:
    return {"id": eid, "type": "customer.updated", "occurred_at": "2026-03-02T13:00:00Z",
            "customer": {"id": "c-42", "consent": {"sms": record}}}


def test_a_later_plain_grant_after_stop_does_not_send(slice_now: LocalStack) -> None:
    slice_now.ingest([delivered()])
    _stop_by_sms(slice_now)
    slice_now.ingest([_consent_event("evt-grant", {"granted": True,
                                                   "at": "2026-03-02T13:00:00Z"}),
                      delivered("evt-again")])
    slice_now.run_due(SMS_DUE)
    assert slice_now.twilio.messages == []
    (msg,) = messages("sms")
    assert (msg.outcome, msg.reason) == ("suppressed", "sms consent withdrawn")


def test_explicit_given_as_a_string_does_not_lift_a_stop(slice_now: LocalStack) -> None:
    slice_now.ingest([delivered()])
    _stop_by_sms(slice_now)
    slice_now.ingest([_consent_event("evt-str", {"granted": True, "explicit": "false",
                                                 "at": "2026-03-02T13:00:00Z"})])
    slice_now.run_due(SMS_DUE)
    assert slice_now.twilio.messages == []


def test_explicit_given_as_a_string_does_not_lift_an_unsubscribe(slice_now: LocalStack) -> None:
    from chalicelib.api.consent import consent_event

    slice_now.ingest([delivered()])
    clock.set_now(datetime(2026, 3, 2, 12, 0, tzinfo=UTC))
    slice_now.ingest([consent_event("unsubscribe:m:1", "c-42", "email", False,
                                    "email:unsubscribe-link")])
    assert _email_consent() is False
    lift = _consent_event("evt-str", {"granted": True, "explicit": "no",
                                      "at": "2026-03-02T13:00:00Z"})
    lift["customer"]["consent"] = {"email": lift["customer"]["consent"]["sms"]}
    slice_now.ingest([lift])
    slice_now.run_due(EMAIL_DUE)
    assert slice_now.sent_emails() == []


# -- Twilio status callbacks -------------------------------------------------------------------


def _sent_sms(stack: LocalStack) -> MessageModel:
    stack.ingest([delivered()])
    stack.run_due(SMS_DUE)
    (msg,) = messages("sms")
    assert msg.status == "sent" and msg.provider_id
    return msg


def _callback(stack: LocalStack, sid: str, status: str, *, url: str | None = None,
              token: str | None = None, headers: dict[str, str] | None = None,
              **extra: str) -> Any:
    params = {"AccountSid": stack.twilio.account_sid, "ApiVersion": "2010-04-01",
              "MessageSid": sid, "SmsSid": sid, "MessageStatus": status, "SmsStatus": status,
              "To": PHONE, "From": "+15005550006", **extra}
    signed_url = url or settings.load().public_base_url + STATUS_PATH
    if token is None:
        signature = stack.twilio.sign(signed_url, params)
    else:
        from twilio.request_validator import RequestValidator

        signature = RequestValidator(token).compute_signature(signed_url, params)
    return stack.client.http.post(STATUS_PATH, body=urlencode(params).encode(), headers={
        "Content-Type": FORM, "X-Twilio-Signature": signature, **(headers or {})})


def test_status_callbacks_out_of_order_and_repeated_behind_a_proxy(
        slice_now: LocalStack, no_lookup_pauses: None) -> None:
    sid = _sent_sms(slice_now).provider_id
    assert sid is not None
    proxy = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "hooks.example.net",
             "X-Forwarded-Port": "443", "Host": "abc123.execute-api.us-east-1.amazonaws.com"}
    results = [reply_json(_callback(slice_now, sid, status, headers=proxy))["result"]
               for status in ("delivered", "sent", "queued", "delivered", "sent", "queued")]
    assert results == ["recorded"] * 3 + ["duplicate"] * 3
    msg = MessageModel.get(messages("sms")[0].message_id)
    assert msg.status == "delivered"  # a late `sent` does not undo it
    reports = [(h["status"], h["provider_id"]) for h in msg.history if h.get("source")]
    assert reports == [("delivered", sid), ("sent", sid), ("queued", sid)]
    totals = stats_totals(msg.campaign_id, msg.variant, "treatment", msg.decided_at[:10])
    assert (totals.get("sent"), totals.get("delivered"), totals.get("failed")) == (1, 1, None)


def test_status_callbacks_signed_for_another_url_or_key_change_nothing(
        slice_now: LocalStack, no_lookup_pauses: None) -> None:
    msg = _sent_sms(slice_now)
    sid = str(msg.provider_id)
    proxied = "https://hooks.example.net" + STATUS_PATH  # the URL rebuilt from X-Forwarded-*
    refused = [
        _callback(slice_now, sid, "delivered", url=proxied, headers={
            "X-Forwarded-Proto": "https", "X-Forwarded-Host": "hooks.example.net"}),
        _callback(slice_now, sid, "delivered", url=settings.load().public_base_url
                  + STATUS_PATH + "?x=1"),
        _callback(slice_now, sid, "delivered", token="not-the-" + TWILIO_AUTH_TOKEN),
    ]
    assert [r.status_code for r in refused] == [403, 403, 403]
    after = MessageModel.get(msg.message_id)
    assert after.status == "sent" and after.history == msg.history
    assert reply_json(_callback(slice_now, sid, "undelivered", ErrorCode="30003"))[
        "result"] == "recorded"
    after = MessageModel.get(msg.message_id)
    assert (after.status, after.error_code) == ("undelivered", "30003")


def test_a_status_callback_for_a_sid_never_sent_is_200_unknown(
        slice_now: LocalStack, no_lookup_pauses: None) -> None:
    reply = _callback(slice_now, "SM" + "f" * 32, "delivered")
    assert reply.status_code == 200 and reply_json(reply) == {"result": "unknown"}
    assert MessageModel.count() == 0


# -- signed links ------------------------------------------------------------------------------


def _sent_email(stack: LocalStack) -> MessageModel:
    stack.ingest([delivered()])
    stack.run_due(EMAIL_DUE)
    (msg,) = messages("email")
    assert msg.status == "sent"
    return msg


def _token(kind: str, message_id: str, *, key: bytes = LINK_KEY.encode(),
           exp: int | None = None, **extra: Any) -> str:
    expiry = int((clock.now() + timedelta(days=60)).timestamp()) if exp is None else exp
    return links.sign({"m": message_id, "t": kind, "exp": expiry, **extra}, key)


def _unsubscribe(stack: LocalStack, token: str) -> int:
    return int(stack.client.http.post(f"/l/unsubscribe/{token}", body=b"List-Unsubscribe=One-Click",
                                      headers={"Content-Type": FORM}).status_code)


def _email_consent() -> Any:
    return CustomerModel.get("c-42").profile["consent"]["email"]["granted"]


def test_the_unsubscribe_link_in_the_sent_email_works_and_others_do_not(
        slice_now: LocalStack) -> None:
    import re

    msg = _sent_email(slice_now)
    (sent,) = slice_now.sent_emails()
    base = settings.load().public_base_url
    found = re.findall(re.escape(base) + r"/l/unsubscribe/([A-Za-z0-9_\-.]+)", str(sent["body"]))
    assert found, "the email carries its unsubscribe link"
    real = found[0]
    body, mac = real.split(".")
    payload = json.loads(links._unb64(body))
    other = dict(payload, m="0" * 32)
    forged = links._b64(json.dumps(other, separators=(",", ":"), sort_keys=True).encode())
    past = int((clock.now() - timedelta(seconds=1)).timestamp())
    refused = {
        "tampered payload": f"{forged}.{mac}",
        "truncated mac": f"{body}.{mac[:-2]}",
        "survey token": _token("survey", msg.message_id, k="csat"),
        "other key": _token("unsubscribe", msg.message_id, key=b"some-other-signing-key"),
        "expired": _token("unsubscribe", msg.message_id, exp=past),
        "no kind": links.sign({"m": msg.message_id, "exp": past + 10**6}, LINK_KEY.encode()),
        "non-ascii": real + "é",
    }
    for label, token in refused.items():
        assert _unsubscribe(slice_now, token) == 404, label
        assert slice_now.client.http.get(f"/l/unsubscribe/{token}").status_code == 404, label
    slice_now.pump("events", "ingest")
    assert _email_consent() is True
    assert slice_now.client.http.get(f"/l/unsubscribe/{real}").status_code == 200
    slice_now.pump("events", "ingest")
    assert _email_consent() is True  # a GET changes nothing
    assert _unsubscribe(slice_now, real) == 200
    slice_now.pump("events", "ingest")
    assert _email_consent() is False
    # ...and the link expires: 61 days later it is refused.
    clock.set_now(clock.now() + timedelta(days=61))
    assert _unsubscribe(slice_now, real) == 404


def test_an_unsubscribe_token_cannot_answer_a_survey(slice_now: LocalStack) -> None:
    msg = _sent_sms(slice_now)
    unsubscribe = _token("unsubscribe", msg.message_id, k="csat")
    reply = slice_now.client.http.post(f"/l/survey/{unsubscribe}", body=b"score=5",
                                       headers={"Content-Type": FORM})
    assert reply.status_code == 404
    expired = _token("survey", msg.message_id, k="csat",
                     exp=int((clock.now() - timedelta(seconds=5)).timestamp()))
    reply = slice_now.client.http.post(f"/l/survey/{expired}", body=b"score=5",
                                       headers={"Content-Type": FORM})
    assert reply.status_code == 404
    assert MessageModel.get(msg.message_id).survey_score is None


# -- no personal data in logs ---------------------------------------------------------------


def test_a_full_run_logs_no_email_phone_or_name(slice_now: LocalStack, log_lines: list[str],
                                                no_lookup_pauses: None) -> None:
    stack = slice_now
    event = delivered()
    assert post_events(stack, json.dumps(event).encode()).status_code == 202
    bad_phone = delivered("evt-bad-phone", "c-bad")
    bad_phone["customer"] = {**bad_phone["customer"], "phone": "+1415555012"}
    bad_email = delivered("evt-bad-email", "c-bad2")
    bad_email["customer"] = {**bad_email["customer"], "email": "ana@example"}
    reply = post_events(stack, json.dumps({"events": [bad_phone, bad_email]}).encode())
    assert reply.status_code == 400
    stack.send_events([bad_phone, bad_email, json.dumps(event)[:-5]])

    client = tx.connection().client
    calls = {"n": 0}

    def fail_once(params: dict[str, Any], **_: Any) -> Any:
        calls["n"] += 1
        return injected_error(500, "InternalServerError") if calls["n"] == 1 else None

    client.meta.events.register("before-call.dynamodb.TransactWriteItems", fail_once)
    try:
        with pytest.raises(BatchIncomplete):
            stack.pump("events", "ingest")
    finally:
        client.meta.events.unregister("before-call.dynamodb.TransactWriteItems", fail_once)
    stack.pump("events", "ingest")
    assert len(stack.dead_letters()) == 3
    stack.twilio.fail_next(429, 20429)
    results = stack.run_due(SMS_DUE)
    stack.run_due(clock.parse_iso(results[0]["due"][0]))
    stack.twilio.deliver_callbacks()
    stack.run_due(EMAIL_DUE)
    assert len(stack.twilio.messages) == 1 and len(stack.sent_emails()) == 1
    clock.set_now(EMAIL_DUE + timedelta(hours=1))
    stack.twilio.simulate_inbound(PHONE, "4", "+15005550006", INBOUND_URL)
    stack.twilio.simulate_inbound(PHONE, "STOP", "+15005550006", INBOUND_URL)
    (email,) = messages("email")
    assert _unsubscribe(stack, _token("unsubscribe", email.message_id)) == 200
    stack.pump("events", "ingest")
    assert CustomerModel.get("c-42").profile["consent"]["sms"]["granted"] is False

    text = "\n".join(log_lines)
    assert "transient failure" in text and "status recorded" in text  # records were captured
    for pii in (EMAIL, PHONE, "4155550123", "415-555-0123", NAME, "Souza", "ana@example"):
        assert pii not in text, pii


# -- the tick after a long outage ----------------------------------------------------------


def _meter_all() -> None:
    attach(tx.connection().client)
    for model in ALL_MODELS:
        attach(model._get_connection().connection.client)


def _count_calls(client: Any, operation: str) -> list[int]:
    calls: list[int] = []

    def hook(params: dict[str, Any], **_: Any) -> None:
        calls.append(1)

    client.meta.events.register(f"before-call.{client.meta.service_model.endpoint_prefix}"
                                f".{operation}", hook)
    return calls


def test_a_tick_after_a_month_down_claims_every_shard_once_and_drops_stale_steps(
        slice_now: LocalStack) -> None:
    from chalicelib.journeys import keys

    old = [delivered(f"evt-old-{i}", f"c-old-{i}") for i in range(30)]
    slice_now.ingest(old)
    assert len({keys.shard_for(f"c-old-{i}") for i in range(30)}) >= 10
    clock.set_now(datetime(2026, 3, 30, 14, 0, tzinfo=UTC))
    slice_now.ingest([delivered(f"evt-new-{i}", f"c-new-{i}",
                                occurred_at="2026-03-30T14:00:00Z") for i in range(3)])
    assert ScheduleModel.count() == 66
    _meter_all()
    batches = _count_calls(aws.client("sqs"), "SendMessageBatch")
    down_until = datetime(2026, 3, 31, 12, 0, tzinfo=UTC)
    with DdbMeter() as meter:
        report = slice_now.tick(down_until)
    assert report["claimed"] == 60
    assert meter.requests["Query"] == 16  # one per shard, whatever the backlog
    assert meter.items_returned == 60  # the six future steps are not read
    assert len(batches) == 6  # enqueued ten at a time
    slice_now.pump("sends", "send")
    assert slice_now.twilio.messages == [] and slice_now.sent_emails() == []
    outcomes = {(m.outcome, m.reason.split(" late")[1] if m.reason else "") for m in messages()}
    assert outcomes == {("expired", ", expire_after 2d"), ("expired", ", expire_after 3d")}
    assert len(messages()) == 60
    with DdbMeter() as meter:
        again = slice_now.tick(down_until)
    assert again["claimed"] == 0 and meter.requests["Query"] == 16
    # The recent enrollments still go out when due.
    slice_now.run_due(datetime(2026, 4, 1, 14, 0, tzinfo=UTC))
    assert len(slice_now.twilio.messages) == 3


def test_a_claim_is_conditional_two_ticks_never_enqueue_one_step_twice(
        slice_now: LocalStack) -> None:
    from chalicelib.pipeline.tick import claim

    slice_now.ingest([delivered()])
    shard = steps_of("checkin")[0].due_shard
    reads = [list(ScheduleModel.due.query(shard, ScheduleModel.due_at <= int(SMS_DUE.timestamp())))
             for _ in range(2)]  # two ticks read the same due item
    assert claim(reads[0][0], SMS_DUE, 300) is not None
    assert claim(reads[1][0], SMS_DUE, 300) is None
    assert slice_now.tick(SMS_DUE)["claimed"] == 0  # its lease keeps it off the index
    # The lease runs out (the sender never came): claimed again, sent once.
    slice_now.run_due(SMS_DUE + timedelta(minutes=6))
    slice_now.run_due(SMS_DUE + timedelta(minutes=20))
    assert len(slice_now.twilio.messages) == 1


# -- the sender dying between `sending` and the provider call ---------------------------------


def test_a_sender_dying_before_the_provider_call_never_sends_and_settles_ambiguous(
        slice_now: LocalStack, monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib.pipeline import send

    slice_now.ingest([delivered()])
    slice_now.tick(SMS_DUE)
    requests = receive("sends", visibility=300)
    assert len(requests) == 1

    def die(*_: Any, **__: Any) -> Any:
        raise RuntimeError("Lambda timed out")  # after `sending` was written

    monkeypatch.setattr(send, "_deliver", die)
    with pytest.raises(BatchIncomplete):
        invoke(slice_now, "send", "sends", requests)
    monkeypatch.undo()
    (msg,) = messages("sms")
    assert msg.status == "sending"
    # SQS delivers the request again: the message record stops a second attempt.
    invoke(slice_now, "send", "sends", requests)
    assert slice_now.twilio.messages == []
    assert slice_now.tick(SMS_DUE + timedelta(minutes=16))["swept"] == 1
    msg = MessageModel.get(msg.message_id)
    assert msg.status == "ambiguous"
    slice_now.run_due(SMS_DUE + timedelta(hours=3))
    slice_now.run_due(SMS_DUE + timedelta(days=1))
    assert slice_now.twilio.messages == []
    assert stat_sum("checkin", "ambiguous") == 1 and stat_sum("checkin", "sent") == 0


# -- aftercare import ------------------------------------------------------------------------

IMPORT_NOW = datetime(2026, 4, 1, 12, 0, tzinfo=UTC)
BIRTHDAY = FIXTURES / "campaigns_birthday"


def _copy(tmp_path: Path, name: str) -> Path:
    target = tmp_path / name
    target.write_bytes((AUDIT / name).read_bytes())
    return target


def _imported(prefix: str) -> dict[str, dict[str, Any]]:
    return {c.customer_id: c.profile for c in CustomerModel.scan()
            if c.customer_id.startswith(prefix)}


def test_a_csv_with_quoted_newlines_and_bad_rows_imports_the_rest_once_when_resumed(
        stack: LocalStack, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clock.set_now(IMPORT_NOW)
    stack.push_campaigns(BIRTHDAY, ROOT / "templates")
    path = _copy(tmp_path, "customers_multiline.csv")
    assert main(["import", "customers", str(path), "--limit", "3"]) == 1
    first = capsys.readouterr()
    assert "stopped, resume" in first.out
    assert "line 5: $.customer.phone" in first.err and "line 6: consent_sms" in first.err
    assert main(["import", "customers", str(path)]) == 1
    second = capsys.readouterr()
    assert "complete" in second.out
    assert "line 7: id: required column is missing" in second.err
    assert "line 11: $.customer.email" in second.err
    assert "line 5:" not in second.err  # the rows before the checkpoint are not redone
    profiles = _imported("m-")
    assert sorted(profiles) == ["m-1", "m-5", "m-6", "m-8"]
    assert profiles["m-1"]["name"] == "Mia\nOne"
    assert profiles["m-1"]["attributes"]["note"] == "first\nsecond"
    assert profiles["m-5"]["name"] == 'Mia "Five"'
    assert profiles["m-8"]["attributes"]["note"] == "multi\nline\nnote"
    assert profiles["m-5"]["consent"]["sms"]["granted"] is False
    planned = sorted(s.step["customer_id"] for s in steps_of("birthday"))
    assert planned == ["m-1", "m-5", "m-6", "m-8"]
    # A third run of the whole file changes nothing.
    assert main(["import", "customers", str(path)]) == 1
    assert "4 already imported" in capsys.readouterr().out
    assert sorted(s.step["customer_id"] for s in steps_of("birthday")) == planned


def test_the_rejected_rows_report_survives_a_resume(
        stack: LocalStack, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clock.set_now(IMPORT_NOW)
    path = _copy(tmp_path, "customers_multiline.csv")
    main(["import", "customers", str(path), "--limit", "3"])
    main(["import", "customers", str(path)])
    capsys.readouterr()
    report = (tmp_path / "customers_multiline.csv.rejected.txt").read_text()
    for line in (5, 6, 7, 11):
        assert f"line {line}:" in report, report


def test_a_csv_with_a_byte_order_mark_imports_every_row(
        stack: LocalStack, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clock.set_now(IMPORT_NOW)
    path = _copy(tmp_path, "customers_bom.csv")
    code = main(["import", "customers", str(path)])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert sorted(_imported("b-")) == ["b-1", "b-2", "b-3"]


def test_a_jsonl_with_a_byte_order_mark_imports_every_row(
        stack: LocalStack, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clock.set_now(IMPORT_NOW)
    path = _copy(tmp_path, "customers_bom.jsonl")
    code = main(["import", "customers", str(path)])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert sorted(_imported("j-")) == ["j-1", "j-2"]


# -- backfill --------------------------------------------------------------------------------


def _known_customers(tmp_path: Path, n: int) -> None:
    path = tmp_path / "known.jsonl"
    path.write_text("".join(json.dumps({
        "id": f"k-{i:03d}", "name": f"Kim {i}", "phone": f"+1415555{i:04d}",
        "timezone": "America/Chicago", "birthday": f"19{70 + i % 30}-{1 + i % 12:02d}-15",
        "consent": {"sms": True}, "updated_at": "2026-03-31T00:00:00Z"}) + "\n"
        for i in range(n)))
    assert main(["import", "customers", str(path)]) == 0


def _planned(campaign: str) -> list[str]:
    return sorted(s.step["customer_id"] for s in steps_of(campaign))


def test_a_backfill_that_crashed_between_checkpoints_plans_and_counts_once(
        stack: LocalStack, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from chalicelib.pipeline.backfill import FileCheckpoint, run_backfill

    clock.set_now(IMPORT_NOW)
    _known_customers(tmp_path, 40)
    assert main(["push", str(BIRTHDAY), "--templates", str(ROOT / "templates"),
                 "--no-backfill"]) == 0
    checkpoint = FileCheckpoint(tmp_path / "backfill.json")

    def crash(n: int) -> None:
        if n == 31:
            raise KeyboardInterrupt  # killed after customer 31; checkpoint at 25

    with pytest.raises(KeyboardInterrupt):
        run_backfill(checkpoint, progress=crash)
    assert len(_planned("birthday")) == 31
    report = run_backfill(checkpoint)
    assert report.complete
    assert _planned("birthday") == [f"k-{i:03d}" for i in range(40)]
    assert stat_sum("birthday", "enrolled") == 40
    assert run_backfill(checkpoint).planned == 0
    assert stat_sum("birthday", "enrolled") == 40
    capsys.readouterr()


def test_a_campaign_pushed_while_a_backfill_is_unfinished_reaches_every_customer(
        stack: LocalStack, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clock.set_now(IMPORT_NOW)
    _known_customers(tmp_path, 30)
    checkpoint = str(tmp_path / ".aftercare-backfill.json")
    templates = str(ROOT / "templates")
    assert main(["push", str(BIRTHDAY), "--templates", templates, "--no-backfill"]) == 0
    assert main(["backfill", "--checkpoint", checkpoint, "--limit", "10"]) == 0
    assert main(["push", str(AUDIT / "campaigns_second"), "--templates", templates,
                 "--checkpoint", checkpoint]) == 0
    capsys.readouterr()
    everyone = [f"k-{i:03d}" for i in range(30)]
    assert _planned("birthday") == everyone
    assert _planned("birthday-second") == everyone


# -- ingest semantics: out of order, goals, dated and idle triggers ------------------------


def _order_events(cid: str) -> list[dict[str, Any]]:
    placed = load_event("order_placed")
    placed.update(id=f"{cid}-placed", occurred_at="2026-02-20T15:00:00Z")
    placed["customer"] = {**placed["customer"], "id": cid}
    placed["order"] = {**placed["order"], "id": "o-77"}
    shipped = delivered(f"{cid}-delivered", cid, occurred_at="2026-02-26T15:00:00Z")
    shipped["order"] = {**shipped["order"], "id": "o-77"}
    return [placed, shipped]


AGGREGATES = ("order_count", "total_spent", "first_order_at", "last_delivery_at", "products")


def test_a_delivery_before_its_order_enrolls_once_and_counts_the_order_once(
        live_stack: LocalStack) -> None:
    clock.set_now(datetime(2026, 2, 27, 12, 0, tzinfo=UTC))
    in_order, reversed_ = _order_events("c-in"), _order_events("c-out")[::-1]
    live_stack.ingest(in_order)
    live_stack.ingest([reversed_[0]])
    live_stack.ingest([eventbridge(reversed_[1]), reversed_[0]])  # late, and a duplicate
    a, b = (CustomerModel.get(c).profile for c in ("c-in", "c-out"))
    assert {k: a.get(k) for k in AGGREGATES} == {k: b.get(k) for k in AGGREGATES}
    assert (b["order_count"], b["first_order_at"]) == (1, "2026-02-20T15:00:00Z")
    for cid in ("c-in", "c-out"):
        refs = [s.step["ref"] for s in steps_of("delivery-checkin")
                if s.step["customer_id"] == cid]
        assert refs == ["order:o-77"]
    assert stat_sum("delivery-checkin", "enrolled") == 2


def test_last_order_and_the_win_back_do_not_depend_on_arrival_order(
        live_stack: LocalStack) -> None:
    clock.set_now(datetime(2026, 2, 27, 12, 0, tzinfo=UTC))
    live_stack.ingest(_order_events("c-in"))
    live_stack.ingest(_order_events("c-out")[::-1])
    a, b = (CustomerModel.get(c).profile for c in ("c-in", "c-out"))
    assert b["last_order_at"] == a["last_order_at"] == "2026-02-20T15:00:00Z"
    due = {s.step["customer_id"]: s.step["due_at"] for s in steps_of("win-back")}
    assert due["c-in"] == due["c-out"]


def test_dated_and_idle_campaigns_are_planned_when_the_event_makes_them_known(
        live_stack: LocalStack) -> None:
    clock.set_now(datetime(2026, 3, 1, 12, 0, tzinfo=UTC))
    update = load_event("customer_updated")
    update.update(id="evt-bday", occurred_at="2026-03-01T11:00:00Z")
    update["customer"] = {"id": "c-77", "birthday": "1990-07-04",
                          "timezone": "America/Chicago", "phone": PHONE,
                          "consent": {"sms": True}}
    live_stack.ingest([eventbridge(update)])
    (greeting,) = steps_of("birthday")
    assert greeting.step["ref"] == "birthday:1990-07-04:2026"
    assert greeting.step["due_at"] == "2026-07-04T15:00:00Z"  # 10:00 in Chicago (CDT)
    placed = load_event("order_placed")
    placed.update(id="evt-first-order", occurred_at="2026-03-01T11:30:00Z")
    placed["customer"] = {"id": "c-77"}
    live_stack.ingest([placed])
    (miss_you,) = steps_of("win-back")
    assert miss_you.step["ref"] == "idle:2026-03-01T11:30:00Z"
    assert miss_you.step["due_at"] == "2026-06-29T15:30:00Z"  # 120 days, 10:30 local
    (anniversary,) = steps_of("purchase-anniversary")
    assert anniversary.step["ref"].endswith(":2027")
    # A later order re-plans the idle spell: the first one is cancelled.
    later = dict(placed, id="evt-second-order", occurred_at="2026-04-01T11:30:00Z",
                 order={**placed["order"], "id": "o-78"})
    live_stack.ingest([later])
    states = sorted((s.step["ref"], s.status) for s in steps_of("win-back"))
    assert states == [("idle:2026-03-01T11:30:00Z", "cancelled"),
                      ("idle:2026-04-01T11:30:00Z", "pending")]


def test_a_goal_event_through_two_doors_converts_once(slice_stack: LocalStack,
                                                      tmp_path: Path) -> None:
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "checkin.json").write_text(json.dumps({
        "id": "goal-checkin", "name": "Check-in with a goal",
        "trigger": {"event": "order.delivered"},
        "steps": [{"id": "checkin", "after": "P2D", "at": "10:00", "channel": "sms",
                   "template": "checkin"}],
        "goal": {"event": "order.placed", "within": "P30D"}}))
    slice_stack.push_campaigns(tmp_path / "c", ROOT / "templates")
    clock.set_now(DELIVERED)
    slice_stack.ingest([delivered()])
    again = load_event("order_placed")
    again.update(id="evt-reorder", occurred_at="2026-03-10T12:00:00Z")
    again["order"] = {**again["order"], "id": "o-10"}
    slice_stack.ingest([again, eventbridge(again)])
    assert post_events(slice_stack, json.dumps(again).encode()).status_code == 202
    slice_stack.pump("events", "ingest")
    late_goal = dict(again, id="evt-too-late", occurred_at="2026-04-15T12:00:00Z",
                     order={**again["order"], "id": "o-11"})
    slice_stack.ingest([late_goal])
    assert stat_sum("goal-checkin", "converted") == 1
    assert CustomerModel.get("c-42").profile["order_count"] == 3


def _many_step_campaigns(tmp_path: Path, campaigns: int, steps: int) -> Path:
    folder = tmp_path / "many"
    folder.mkdir()
    for c in range(campaigns):
        (folder / f"series-{c}.json").write_text(json.dumps({
            "id": f"series-{c}", "name": f"Series {c}", "trigger": {"event": "order.delivered"},
            "steps": [{"id": f"s{n:02d}", "after": f"P{n + 1}D", "at": "10:00",
                       "channel": "sms", "template": "checkin"} for n in range(steps)]}))
    return folder


def test_campaigns_an_event_could_not_write_in_one_transaction_are_refused(
        stack: LocalStack, tmp_path: Path) -> None:
    """Ingest writes an event's effects in one DynamoDB transaction (at most 100
    items): campaigns that together could need more are refused before they go live,
    one line per campaign, and should such a set be live anyway (pushed without
    validation) the event goes to the DLQ with the reason, not round the retry loop."""
    from chalicelib.config.loader import load_bundles
    from chalicelib.render import load_template_dir
    from chalicelib.store.campaigns import push

    folder = _many_step_campaigns(tmp_path, 6, 20)
    with pytest.raises(ValueError, match="could need 130 writes") as info:
        stack.push_campaigns(folder, ROOT / "templates")
    assert str(info.value).count("at most 100 fit") == 6
    bundles, _ = load_bundles([folder], load_template_dir(ROOT / "templates"))
    for b in bundles:  # live anyway, as an older version would have let them be
        push(b.campaign, b.templates)
    from chalicelib import handlers

    handlers.live().invalidate()
    clock.set_now(DELIVERED)
    stack.send_events([delivered()])
    invoke(stack, "ingest", "events", receive("events", visibility=300))
    (dead,) = stack.dead_letters()
    attrs = dead["MessageAttributes"]
    assert attrs["error_kind"]["StringValue"] == "too_many_writes"
    assert "needs 129 writes" in attrs["reason"]["StringValue"]  # 2 of them retention
    assert receive("events") == []  # not retried: nothing left in the queue


# -- provider outcomes at send time ------------------------------------------------------------


@pytest.mark.parametrize(("status", "code", "after_accept", "outcome", "counter"), [
    (400, 21211, False, "failed", "failed"),
    (400, 21610, False, "failed", "failed"),
    (503, None, False, "ambiguous", "ambiguous"),
    (502, None, True, "ambiguous", "ambiguous"),
])
def test_sms_failures_are_recorded_once_and_never_resent(
        slice_now: LocalStack, status: int, code: int | None, after_accept: bool,
        outcome: str, counter: str) -> None:
    slice_now.ingest([delivered()])
    slice_now.twilio.fail_next(status, code, after_accept=after_accept)
    slice_now.tick(SMS_DUE)
    requests = receive("sends", visibility=300)
    invoke(slice_now, "send", "sends", requests)
    invoke(slice_now, "send", "sends", requests)  # SQS delivers it again
    slice_now.run_due(SMS_DUE + timedelta(hours=1))
    slice_now.run_due(SMS_DUE + timedelta(days=1))
    (msg,) = messages("sms")
    assert msg.status == outcome
    assert len(slice_now.twilio.create_requests) == 1
    assert stat_sum("checkin", counter) == 1 and stat_sum("checkin", "sent") == 0


@pytest.mark.parametrize(("code", "status", "outcome", "attempts"), [
    ("TooManyRequestsException", 429, "sent", 2),
    ("InternalFailure", 500, "ambiguous", 1),
    ("MessageRejected", 400, "failed", 1),
])
def test_email_failures_follow_the_at_most_once_rules(
        slice_now: LocalStack, code: str, status: int, outcome: str, attempts: int) -> None:
    slice_now.ingest([delivered()])
    ses = aws.client("sesv2")
    calls: list[int] = []

    def fail_first(params: dict[str, Any], **_: Any) -> Any:
        calls.append(1)
        return injected_error(status, code) if len(calls) == 1 else None

    ses.meta.events.register("before-call.sesv2.SendEmail", fail_first)
    try:
        results = slice_now.run_due(EMAIL_DUE)
        for later in (*[clock.parse_iso(d) for r in results for d in r["due"]],
                      EMAIL_DUE + timedelta(days=1)):
            slice_now.run_due(later)
    finally:
        ses.meta.events.unregister("before-call.sesv2.SendEmail", fail_first)
    (msg,) = messages("email")
    assert msg.status == outcome
    assert len(calls) == attempts
    assert len(slice_now.sent_emails()) == (1 if outcome == "sent" else 0)


# -- least privilege -----------------------------------------------------------------------


def _policy(stage: str) -> list[dict[str, Any]]:
    """The statements of the stage's policies (the functions' and the API function's)."""
    statements: list[dict[str, Any]] = []
    for name in (f"policy-{stage}.json", f"policy-api-{stage}.json"):
        statements += json.loads((ROOT / ".chalice" / name).read_text())["Statement"]
    return statements


def _listed(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_the_function_policy_has_no_wildcard_action_and_stays_in_its_stage(stage: str) -> None:
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    assert config["autogen_policy"] is False
    assert config["stages"][stage]["iam_policy_file"] == f"policy-{stage}.json"
    for statement in _policy(stage):
        assert statement["Effect"] == "Allow"
        for action in _listed(statement["Action"]):
            assert "*" not in action, action
        for resource in _listed(statement["Resource"]):
            if ":dynamodb:" in resource or ":sqs:" in resource:
                assert f"aftercare-{stage}-" in resource, resource
            if ":logs:" in resource:  # the API function is aftercare-<stage>, no suffix
                assert re.search(rf"/aws/lambda/aftercare-{stage}([-:]\*)?$", resource), resource
            if ":secretsmanager:" in resource:
                assert f"secret:aftercare/{stage}/" in resource, resource


def test_the_function_policy_grants_no_unused_dynamodb_action() -> None:
    for stage in ("dev", "prod"):
        granted = {a for s in _policy(stage) for a in _listed(s["Action"])}
        assert "dynamodb:DeleteItem" not in granted, stage


def test_a_return_logged_before_its_delivery_still_exits_that_order_only(
        slice_now: LocalStack) -> None:
    returned = load_event("order_returned")
    returned.update(id="evt-ret", occurred_at="2026-03-01T10:00:00Z")
    other = delivered("evt-other", occurred_at="2026-03-01T14:02:00Z")
    other["order"] = {**other["order"], "id": "o-10"}
    slice_now.ingest([eventbridge(returned)])
    slice_now.ingest([delivered(), other])
    slice_now.run_due(SMS_DUE)
    slice_now.run_due(EMAIL_DUE)
    sent = sorted((m.step_id, m.outcome) for m in messages())
    assert sent == [("checkin", "exited"), ("checkin", "send"),
                    ("week-one", "exited"), ("week-one", "send")]
    assert len(slice_now.twilio.messages) == 1 and len(slice_now.sent_emails()) == 1
