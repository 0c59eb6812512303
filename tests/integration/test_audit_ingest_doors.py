"""Audit of issue 4, "Bad input", through the three doors of ingest.

SQS (``@app.on_sqs_message``), EventBridge (its envelope on the same queue) and
``POST /events`` (signed), each through the real handlers (``chalice.test.Client``,
real Lambda SQS and API Gateway event shapes, moto). Expectations come from the
requirement, DESIGN.md and docs/api.md / docs/events.md, not from the code: every
bad record is a clear 4xx or a DLQ entry with its reason, the rest of the batch is
processed, nothing is lost silently, nothing is sent twice.

Cases the other tests (test_events_api.py, test_pipeline_audit.py, unit envelope
tests) already hold are not repeated. A defect found is kept as a strict xfail whose
reason says what is wrong.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from chalicelib import aws, clock, settings
from chalicelib.api.signature import sign_header
from chalicelib.local.stack import LocalStack, sqs_lambda_event
from chalicelib.store.models import CustomerModel, ScheduleModel, StatsModel
from tests.conftest import delivered
from tests.integration.sqs_helpers import queue_counts, queue_url

KEY = b"local-events-hmac-key"  # the events_hmac_key of the local stack's secret
DELIVERED = datetime(2026, 3, 1, 14, 3, tzinfo=UTC)
SMS_DUE = datetime(2026, 3, 3, 15, 0, tzinfo=UTC)  # checkin: P2D at 10:00 New York
EMAIL_DUE = datetime(2026, 3, 8, 13, 30, tzinfo=UTC)  # tip: P7D at 09:30 New York (EDT)
EMAIL = "ana@example.com"
PHONE = "+14155550123"
NAME = "Ana Souza"
# What SQS accepts in a message body or a String attribute value.
SQS_ALLOWED = ((0x9, 0x9), (0xA, 0xA), (0xD, 0xD), (0x20, 0xD7FF), (0xE000, 0xFFFD),
               (0x10000, 0x10FFFF))


# -- helpers ---------------------------------------------------------------------------


@pytest.fixture
def now(slice_stack: LocalStack) -> LocalStack:
    """The two fixed campaigns (SMS check-in, email tip, both on order.delivered),
    the business clock at the fixture delivery."""
    clock.set_now(DELIVERED)
    return slice_stack


def updated(eid: str, cid: str, occurred_at: str, **customer: Any) -> dict[str, Any]:
    return {"id": eid, "type": "customer.updated", "occurred_at": occurred_at,
            "customer": {"id": cid, **customer}}


def eventbridge(detail: Any, detail_type: str = "order.delivered", *,
                with_detail: bool = True) -> dict[str, Any]:
    """The envelope the EventBridge rule forwards to the events queue."""
    envelope: dict[str, Any] = {
        "version": "0", "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
        "detail-type": detail_type, "source": "shop.orders", "account": "123456789012",
        "time": "2026-03-01T14:02:00Z", "region": "us-east-1", "resources": []}
    if with_detail:
        envelope["detail"] = detail
    return envelope


def deliver(stack: LocalStack, bodies: list[str]) -> dict[str, Any]:
    """Send ``bodies`` to the events queue, receive them as one Lambda batch (the
    mapping's batch_size is 10), invoke ``ingest``; on a normal return delete the
    batch as the event source mapping does. A raise propagates, leaving the batch
    in flight (300 s) as Lambda would."""
    assert len(bodies) <= 10
    sqs = aws.client("sqs")
    url = queue_url("events")
    for body in bodies:
        sqs.send_message(QueueUrl=url, MessageBody=body)
    got: list[dict[str, Any]] = []
    while len(got) < len(bodies):
        more = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=300,
                                   AttributeNames=["All"]).get("Messages", [])
        assert more, f"received {len(got)} of {len(bodies)}"
        got.extend(more)
    reply = stack.client.lambda_.invoke("ingest",
                                        sqs_lambda_event(stack.queue_arn("events"), got))
    for m in got:
        sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    payload: dict[str, Any] = reply.payload
    return payload


def dead(stack: LocalStack) -> dict[str, dict[str, str]]:
    """The events DLQ: body -> its attributes (reason, error_kind, source_queue...)."""
    return {m["Body"]: {k: v["StringValue"] for k, v in m["MessageAttributes"].items()}
            for m in stack.dead_letters()}


def post(stack: LocalStack, body: bytes, *, header: str | None = None,
         header_name: str = "X-Aftercare-Signature",
         content_type: str = "application/json") -> Any:
    """POST ``body`` to /events, signed now (the route checks the real clock)."""
    t = int(clock.real_now().timestamp())
    value = header if header is not None else sign_header(KEY, t, body)
    return stack.client.http.post("/events", body=body, headers={
        "Content-Type": content_type, header_name: value})


def reply_json(reply: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(reply.body)
    return data


def queued_ids() -> list[str]:
    got = aws.client("sqs").receive_message(QueueUrl=queue_url("events"),
                                            MaxNumberOfMessages=10).get("Messages", [])
    return [json.loads(m["Body"])["id"] for m in got]


def customer_ids() -> set[str]:
    return {c.customer_id for c in CustomerModel.scan()}


def planned_for() -> list[str]:
    return sorted(s.step["customer_id"] for s in ScheduleModel.scan())


def enrolled(campaign: str) -> int:
    return sum(int(s.enrolled or 0) for s in StatsModel.scan()
               if s.pk.startswith(f"{campaign}#"))


def sqs_accepts(text: str) -> bool:
    return all(any(lo <= ord(ch) <= hi for lo, hi in SQS_ALLOWED) for ch in text)


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def ingest_logs() -> Iterator[list[logging.LogRecord]]:
    """The records of the ingest function's Powertools logger ("aftercare") at INFO
    (its level in .chalice/config.json) and of chalicelib's loggers."""
    handler = _Capture()
    loggers = [logging.getLogger("aftercare"), logging.getLogger("chalicelib")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.INFO)
    try:
        yield handler.records
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.removeHandler(handler)
            lg.setLevel(level)


# -- SQS: every bad record is a DLQ entry naming its field; the rest is processed -------


NOT_OBJECTS = ["null", "[1, 2]", '"order.delivered"', "42", "true"]


def test_bodies_that_are_json_but_not_objects_are_dead_lettered_beside_good_ones(
        now: LocalStack) -> None:
    good = json.dumps(delivered("evt-ok", "c-ok"))
    wrapped = json.dumps(eventbridge(delivered("evt-eb", "c-eb")))
    bad = list(NOT_OBJECTS)
    result = deliver(now, [good, *bad, wrapped])
    assert (result["processed"], result["dead_lettered"]) == (len(bad) + 2, len(bad))
    letters = dead(now)
    assert set(letters) == set(bad)  # each kept as sent, for a redrive
    for body, attrs in letters.items():
        assert attrs["reason"].startswith("$"), (body, attrs)
        assert "JSON object" in attrs["reason"], (body, attrs)
        assert attrs["error_kind"] == "invalid_event"
        assert attrs["source_queue"] == settings.resource_name("events")
        assert attrs["failed_at"]
    assert planned_for() == ["c-eb", "c-eb", "c-ok", "c-ok"]
    assert queue_counts("events") == (0, 0)


def _wrong(eid: str, path: list[Any], value: Any) -> dict[str, Any]:
    event = delivered(eid, f"c-{eid}")
    target: Any = event
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return event


WRONG_TYPES: list[tuple[str, list[Any], Any, str]] = [
    # (what, path to set, value, the path the reason must name)
    ("bool-as-number", ["customer", "consent", "sms"], 1, "$.customer.consent.sms"),
    ("number-as-string", ["order", "total"], "129.50", "$.order.total"),
    ("bool-as-quantity", ["order", "items", 0, "quantity"], True,
     "$.order.items[0].quantity"),
    ("string-consent", ["customer", "consent", "email"], "yes", "$.customer.consent.email"),
    ("empty-customer-id", ["customer", "id"], "", "$.customer.id"),
    ("blank-event-id", ["id"], "   ", "$.id"),
    ("long-event-id", ["id"], "e" * 513, "$.id"),
    ("numeric-time", ["occurred_at"], 1772373720, "$.occurred_at"),
    ("list-data", ["data"], [1], "$.data"),
]


def test_wrong_types_are_dead_lettered_each_naming_its_field(now: LocalStack) -> None:
    bodies = {what: json.dumps(_wrong(f"evt-{i}", path, value))
              for i, (what, path, value, _) in enumerate(WRONG_TYPES)}
    result = deliver(now, [*bodies.values(), json.dumps(delivered("evt-ok", "c-ok"))])
    assert (result["processed"], result["dead_lettered"]) == (len(WRONG_TYPES) + 1,
                                                              len(WRONG_TYPES))
    letters = dead(now)
    for what, _, _, field in WRONG_TYPES:
        reason = letters[bodies[what]]["reason"]
        assert reason.startswith(f"{field}:"), (what, reason)
    assert customer_ids() == {"c-ok"}


def test_an_unknown_customer_and_an_unknown_well_formed_type_are_processed_not_dropped(
        now: LocalStack) -> None:
    """Events create profiles (DESIGN: everything but the ids merges into the profile),
    and any well-formed type may be a trigger, exit or goal: neither is an error, and
    neither is lost: the profile records them."""
    event = delivered("evt-new", "c-never-seen", type="order.teleported")
    result = deliver(now, [json.dumps(event)])
    assert (result["processed"], result["dead_lettered"]) == (1, 0)
    profile = CustomerModel.get("c-never-seen").profile
    assert profile["last_events"] == {"order.teleported": "2026-03-01T14:02:00Z"}
    assert ScheduleModel.count() == 0  # no campaign listens for it


def test_ids_of_512_four_byte_characters_are_processed_and_513_refused(
        now: LocalStack) -> None:
    """512 characters is the contract's limit; in 4-byte UTF-8 that is 2,048 bytes,
    exactly DynamoDB's partition-key limit."""
    long_event = delivered("\U0001f600" * 512, "\U0001f389" * 512)
    too_long = delivered("evt-513", "\U0001f389" * 513)
    body_ok = json.dumps(long_event, ensure_ascii=False)
    body_bad = json.dumps(too_long, ensure_ascii=False)
    result = deliver(now, [body_ok, body_bad])
    assert (result["processed"], result["dead_lettered"]) == (2, 1)
    assert dead(now)[body_bad]["reason"] == "$.customer.id: longer than 512 characters"
    assert planned_for() == ["\U0001f389" * 512] * 2
    # Through POST too, and a replay of it is a duplicate.
    reply = post(now, body_ok.encode("utf-8"))
    assert reply.status_code == 202 and reply_json(reply)["accepted"] == ["\U0001f600" * 512]
    assert now.pump("events", "ingest")[0]["processed"] == 1
    assert enrolled("checkin") == 1


# -- timestamps ----------------------------------------------------------------------------


ODD_BUT_VALID = [
    ("2026-03-01T14:02:00+14:00", "2026-03-01T00:02:00Z"),
    ("2026-03-01T14:02:00-12:00", "2026-03-02T02:02:00Z"),
    ("2026-03-01T14:02:00+05:45", "2026-03-01T08:17:00Z"),
    ("2026-03-01T14:02:00.123456789Z", "2026-03-01T14:02:00Z"),
    ("2026-03-01t14:02:00-00:00", "2026-03-01T14:02:00Z"),
    ("2199-12-31T18:59:59-05:00", "2199-12-31T23:59:59Z"),  # the last second allowed
]
REFUSED_TIMES = [
    "2026-03-01T14:02:00",  # no offset
    "2026-03-01",  # no time, no offset
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59Z",
    "2199-12-31T23:00:00-05:00",  # 2200 in UTC: the year is checked as it is stored
    "2026-03-01T14:02:00+24:00",
    "2026-02-29T10:00:00Z",  # not a leap year
    "yesterday",
]


def test_odd_offsets_are_normalised_to_utc_seconds(now: LocalStack) -> None:
    bodies = [json.dumps(updated(f"evt-t{i}", f"c-t{i}", when))
              for i, (when, _) in enumerate(ODD_BUT_VALID)]
    result = deliver(now, bodies)
    assert (result["processed"], result["dead_lettered"]) == (len(bodies), 0)
    for i, (_, utc) in enumerate(ODD_BUT_VALID):
        assert CustomerModel.get(f"c-t{i}").profile["updated_at"] == utc


def test_impossible_or_naive_times_are_dead_lettered_naming_occurred_at(
        now: LocalStack) -> None:
    bodies = [json.dumps(updated(f"evt-r{i}", f"c-r{i}", when))
              for i, when in enumerate(REFUSED_TIMES)]
    result = deliver(now, bodies)
    assert (result["processed"], result["dead_lettered"]) == (len(bodies), len(bodies))
    for body, attrs in dead(now).items():
        assert attrs["reason"].startswith("$.occurred_at: "), (body, attrs)
    assert CustomerModel.count() == 0


def test_out_of_order_events_with_different_offsets_keep_the_later_contact(
        now: LocalStack) -> None:
    """Later in UTC, earlier as text: 10:00-08:00 is 18:00Z, after 15:00Z."""
    later = updated("evt-late", "c-42", "2026-03-01T10:00:00-08:00", name="Later")
    earlier = updated("evt-early", "c-42", "2026-03-01T15:00:00+00:00", name="Earlier")
    deliver(now, [json.dumps(later)])
    deliver(now, [json.dumps(earlier)])
    profile = CustomerModel.get("c-42").profile
    assert (profile["name"], profile["updated_at"]) == ("Later", "2026-03-01T18:00:00Z")


# -- duplicates and id collisions -----------------------------------------------------------


def test_a_replayed_signed_request_is_accepted_and_enrolls_and_sends_once(
        now: LocalStack) -> None:
    body = json.dumps(delivered()).encode()
    t = int(clock.real_now().timestamp())
    header = sign_header(KEY, t, body)
    first = post(now, body, header=header)
    again = post(now, body, header=header)  # the same bytes and signature, within 300 s
    assert (first.status_code, again.status_code) == (202, 202)
    results = now.pump("events", "ingest")
    assert sum(r["processed"] for r in results) == 2
    assert planned_for() == ["c-42", "c-42"]
    assert (enrolled("checkin"), enrolled("tip")) == (1, 1)
    now.run_due(SMS_DUE)
    assert len(now.twilio.messages) == 1


def test_an_id_reused_for_other_content_is_dropped_as_a_logged_duplicate(
        now: LocalStack, ingest_logs: list[logging.LogRecord]) -> None:
    """Ingest dedupes by id (DESIGN): the first event with an id wins; the other is not
    processed, and the log says so under its id (not silently)."""
    first = delivered("evt-same", "c-first")
    other = delivered("evt-same", "c-other", type="order.placed")
    result = deliver(now, [json.dumps(first)])
    result2 = deliver(now, [json.dumps(other)])
    assert (result["processed"], result2["processed"]) == (1, 1)
    assert customer_ids() == {"c-first"}
    dup = [r for r in ingest_logs if r.getMessage() == "event processed"
           and getattr(r, "event_id", None) == "evt-same"]
    assert [getattr(r, "duplicate", None) for r in dup] == [False, True]


def test_a_duplicate_after_its_marker_expired_sends_nothing_twice(now: LocalStack) -> None:
    """The processed-event marker lives 30 days (TTL); a sender replaying the event
    later must still not enrol or message the customer again."""
    from chalicelib.store.models import EventModel

    event = delivered()
    deliver(now, [json.dumps(event)])
    now.run_due(SMS_DUE)
    now.run_due(EMAIL_DUE)
    assert (len(now.twilio.messages), len(now.sent_emails())) == (1, 1)
    EventModel.get("evt-0001").delete()  # what DynamoDB's TTL does after 30 days
    later = DELIVERED + timedelta(days=40)
    clock.set_now(later)
    assert deliver(now, [json.dumps(event)])["dead_lettered"] == 0
    assert EventModel.get("evt-0001").type == "order.delivered"  # processed afresh
    now.run_due(later + timedelta(days=10))
    assert (len(now.twilio.messages), len(now.sent_emails())) == (1, 1)
    assert (enrolled("checkin"), enrolled("tip")) == (1, 1)


# -- POST /events: headers ----------------------------------------------------------------


@pytest.mark.parametrize("name", ["x-aftercare-signature", "X-AFTERCARE-SIGNATURE",
                                  "X-Aftercare-Signature"])
def test_the_signature_header_name_is_case_insensitive(now: LocalStack, name: str) -> None:
    reply = post(now, json.dumps(delivered()).encode(), header_name=name)
    assert reply.status_code == 202, reply.body
    assert queued_ids() == ["evt-0001"]


def test_signature_header_variants(now: LocalStack) -> None:
    body = json.dumps(delivered()).encode()
    t = int(clock.real_now().timestamp())
    sig = sign_header(KEY, t, body).split("v1=")[1]
    accepted = [f"v1={sig},t={t}", f"t={t} , v1={sig.upper()}", f"t={t},v1=00,v1={sig}"]
    for header in accepted:
        assert post(now, body, header=header).status_code == 202, header
    refused = {
        f"t={t},V1={sig}": "malformed",  # the scheme name is case-sensitive
        f"t={t},v1=": "malformed",
        f"t=+{t},v1={sig}": "malformed",
        f"t={t},t={t + 1},v1={sig}": "does not match",  # the last t is the one checked
        f"t={t}.0,v1={sig}": "malformed",
        f"t={t},v1={sig[:-1]}": "does not match",
        # milliseconds, a common slip: signed correctly, but outside the window
        sign_header(KEY, t * 1000, body): "timestamp",
    }
    for header, phrase in refused.items():
        reply = post(now, body, header=header)
        assert reply.status_code == 401, header
        assert phrase in reply_json(reply)["Message"], (header, reply.body)
    assert len(queued_ids()) == len(accepted)


# -- defects ------------------------------------------------------------------------------


def test_a_type_with_a_trailing_newline_is_refused_at_both_doors(now: LocalStack) -> None:
    event = delivered(type="order.delivered\n")
    reply = post(now, json.dumps(event).encode())
    assert reply.status_code == 400, reply.body
    assert reply_json(reply)["errors"][0]["error"].startswith("$.type")
    result = deliver(now, [json.dumps(event)])
    assert result["dead_lettered"] == 1
    assert ScheduleModel.count() == 0


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_numbers_are_refused_at_both_doors(now: LocalStack, literal: str) -> None:
    text = json.dumps(delivered(order={"id": "o-1", "total": 0})).replace(
        '"total": 0', f'"total": {literal}')
    reply = post(now, text.encode())
    assert reply.status_code == 400, reply.body
    result = deliver(now, [text, json.dumps(delivered("evt-ok", "c-ok"))])
    assert (result["processed"], result["dead_lettered"]) == (2, 1)
    stored = CustomerModel.get("c-ok").profile
    json.dumps(stored, allow_nan=False)  # what is stored stays standard JSON
    assert customer_ids() == {"c-ok"}


def test_an_integer_total_too_large_for_a_double_is_dead_lettered_not_retried(
        now: LocalStack) -> None:
    text = json.dumps(delivered(order={"id": "o-1", "total": 10 ** 400}))
    reply = post(now, text.encode())
    assert reply.status_code == 400, reply.body
    result = deliver(now, [text, json.dumps(delivered("evt-ok", "c-ok"))])
    assert (result["processed"], result["dead_lettered"]) == (2, 1)


def test_a_lone_surrogate_in_an_id_is_dead_lettered_by_the_sqs_door(now: LocalStack) -> None:
    text = json.dumps(delivered("evt-\ud800", "c-sur"))
    assert text.isascii()  # SQS takes it as it is
    reply = post(now, text.encode())
    assert reply.status_code == 400 and reply_json(reply)["errors"][0]["kind"] == "invalid_json"
    result = deliver(now, [text, json.dumps(delivered("evt-ok", "c-ok"))])
    assert (result["processed"], result["dead_lettered"]) == (2, 1)
    assert customer_ids() == {"c-ok"}


def test_a_lone_surrogate_in_a_name_is_refused_by_both_doors(now: LocalStack) -> None:
    event = delivered("evt-name", "c-name")
    event["customer"]["name"] = "Ana \ud800"
    text = json.dumps(event)
    assert post(now, text.encode()).status_code == 400
    result = deliver(now, [text])
    assert result["dead_lettered"] == 1
    assert customer_ids() == set()


@pytest.mark.parametrize("key", ["\ud800", "sms\u0000", "sms\uffff"])
def test_a_dlq_reason_quoting_a_sender_key_holds_only_characters_sqs_accepts(
        now: LocalStack, key: str) -> None:
    event = delivered("evt-key", "c-key")
    event["customer"]["consent"] = {key: True}
    result = deliver(now, [json.dumps(event), json.dumps(delivered("evt-ok", "c-ok"))])
    assert (result["processed"], result["dead_lettered"]) == (2, 1)
    ((_, attrs),) = dead(now).items()
    if key == "\ud800":  # refused before its key is read: the text is not Unicode
        assert attrs["reason"] == "invalid JSON: text is not valid Unicode (an unpaired surrogate)"
    else:
        assert attrs["reason"].startswith("$.customer.consent")
    assert sqs_accepts(attrs["reason"]), ascii(attrs["reason"])


def test_an_event_that_would_overflow_the_profile_is_dead_lettered_with_a_reason(
        now: LocalStack) -> None:
    for i in range(6):
        big = updated(f"evt-big{i}", "c-big", "2026-03-01T12:00:00Z",
                      attributes={f"note{i}": "x" * 60_000})
        assert deliver(now, [json.dumps(big)])["dead_lettered"] == 0
    overflow = updated("evt-big6", "c-big", "2026-03-01T12:00:00Z",
                       attributes={"note6": "x" * 60_000})
    result = deliver(now, [json.dumps(overflow), json.dumps(delivered("evt-ok", "c-ok"))])
    assert (result["processed"], result["dead_lettered"]) == (2, 1)
    ((_, attrs),) = dead(now).items()
    assert "$.customer" in attrs["reason"] or "profile" in attrs["reason"], attrs


@pytest.mark.parametrize("case", ["missing", "string", "null", "list"])
def test_a_bad_eventbridge_detail_is_named_in_the_dlq_reason(now: LocalStack,
                                                             case: str) -> None:
    detail: Any = {"string": json.dumps(delivered()), "null": None,
                   "list": [delivered()], "missing": None}[case]
    body = json.dumps(eventbridge(detail, with_detail=case != "missing"))
    result = deliver(now, [body])
    assert result["dead_lettered"] == 1
    assert "detail" in dead(now)[body]["reason"]


def test_a_refused_eventbridge_event_is_reported_under_its_own_id(now: LocalStack) -> None:
    inner = delivered("evt-inner")
    del inner["occurred_at"]
    envelope = eventbridge(inner)
    good = eventbridge(delivered("evt-good", "c-good"))
    reply = post(now, json.dumps({"events": [good, envelope]}).encode())
    assert reply.status_code == 207, reply.body
    data = reply_json(reply)
    assert data["accepted"] == ["evt-good"]
    (refused,) = data["rejected"]
    assert refused["error"].startswith("$.occurred_at")
    assert refused["id"] != envelope["id"], refused
    assert refused["id"] == "evt-inner", refused


@pytest.mark.parametrize("encoding", ["utf-16", "utf-32"])
def test_a_body_not_in_utf8_is_400(now: LocalStack, encoding: str) -> None:
    body = json.dumps(delivered()).encode(encoding)
    reply = post(now, body)
    assert reply.status_code == 400, reply.body
    assert "UTF-8" in reply_json(reply)["Message"]


# -- personal data ------------------------------------------------------------------------


def test_dlq_reasons_and_logs_of_refused_contacts_quote_no_personal_data(
        now: LocalStack, ingest_logs: list[logging.LogRecord]) -> None:
    def contact(eid: str, **customer: Any) -> str:
        event = delivered(eid, f"c-{eid}")
        event["customer"] = {**event["customer"], **customer}
        return json.dumps(event)

    bodies = [contact("p1", phone="+1415555012"), contact("p2", email="ana@example"),
              contact("p3", email="ana souza@example.com"),
              contact("p4", phone="ana@example.com"),
              contact("p5", birthday="1992-13-45"),
              contact("p6", name=["Ana", "Souza"])]
    result = deliver(now, bodies)
    assert result["dead_lettered"] == len(bodies)
    reasons = [a["reason"] for a in dead(now).values()]
    assert sorted(r.split(":")[0] for r in reasons) == sorted(
        ["$.customer.phone"] * 2 + ["$.customer.email"] * 2
        + ["$.customer.birthday", "$.customer.name"])
    text = "\n".join(reasons + [f"{r.getMessage()} {r.__dict__}" for r in ingest_logs])
    for pii in ("+1415555012", "4155550", "ana@example", "ana souza", "Ana", "Souza",
                "1992-13-45"):
        assert pii not in text, pii
