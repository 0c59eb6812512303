"""Audit: no personal data in logs, dead-letter reasons, HTTP errors or CLI errors.

docs/api.md: "Logs carry SIDs, statuses and error codes, never phone numbers or
bodies", "Logs carry ids and event types, never addresses", "CloudWatch logs
(which carry ids, never contact details)". The rule audited here is the whole of
it: phone numbers, email addresses, names, message bodies, SMS replies, birthdays,
order contents, IP addresses and free-text attributes never reach a log record, the
``reason`` (or any other attribute) of a dead-lettered record, the body of an HTTP
error, or the error output of ``aftercare import`` / ``erase``. Ids and hashed keys
are fine.

Every case drives the real code paths (the handlers behind ``chalice.test.Client``,
moto, the real twilio client against the local Twilio server, Twilio-signed
webhooks, real-shaped SES events) with data carrying distinctive markers, captures
every log record (root logger at DEBUG; the app's Powertools logger at DEBUG too;
third-party clients at INFO, the deployed level, since their DEBUG dumps of request
parameters are opt-in tracing) and what reached stdout/stderr, and asserts no marker
is there. Each case also checks that its capture saw the app's own log line, so a
silenced logger cannot make it pass. The local Twilio server's own logger
(``chalicelib.local``) stands in for Twilio and is not audited.

A leak is a strict xfail whose reason names where it leaks.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import count
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from chalicelib import aws, clock, handlers, settings
from chalicelib.api.signature import sign_header
from chalicelib.cli.main import main
from chalicelib.local.stack import LINK_KEY, LocalStack
from chalicelib.store.models import MessageModel
from chalicelib.tracking import links
from tests.conftest import FIXTURES, load_event

# -- the markers ------------------------------------------------------------------------

PHONE = "+14155550199"
EMAIL = "canary.pii@example.com"
NAME = "Zebulon Canary"
BIRTHDAY = "1987-07-14"
NOTE = "SECRET-NOTE"
REPLY = "my address is 1 Canary Street"
ITEM = "Quetzal Kettle"
SKU = "QZ-KETTLE-77"
IP = "203.0.113.77"
# Case-insensitive substrings that must never show: the phone in any common shape
# (a masked form such as "+1415555[redacted]" still shows no complete marker), the
# mailbox, the name's parts, the birthday, the attribute, the reply, the order lines.
MARKERS = ("4155550199", "415-555-0199", "canary.pii", "zebulon", "canary", "1987-07-14",
           "secret-note", "1 canary street", "quetzal", "qz-kettle", IP)

DELIVERED = datetime(2026, 3, 1, 14, 3, tzinfo=UTC)
SMS_DUE = datetime(2026, 3, 3, 15, 0, tzinfo=UTC)  # the check-in: P2D at 10:00 New York
EMAIL_DUE = datetime(2026, 3, 8, 13, 30, tzinfo=UTC)  # the tip: P7D at 09:30 New York
FORM = "application/x-www-form-urlencoded"
EVENTS_KEY = b"local-events-hmac-key"
_SIDS = count(1)

# Third-party loggers kept at INFO (the deployed POWERTOOLS_LOG_LEVEL): their DEBUG
# output is request tracing nobody enables in production.
_LIBRARIES = ("botocore", "boto3", "urllib3", "s3transfer", "moto", "pynamodb",
              "twilio", "werkzeug", "docker", "requests", "chalice", "asyncio", "jinja2",
              "aws_xray_sdk", "responses", "openapi_spec_validator")
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def _leaks(text: str) -> list[str]:
    low = text.lower()
    return [m for m in MARKERS if m.lower() in low]


def _record_text(record: logging.LogRecord) -> str:
    """Everything a handler could write for ``record``: message, extras, traceback."""
    parts = [record.getMessage()]
    parts += [f"{k}={v!r}" for k, v in vars(record).items() if k not in _STANDARD]
    if record.exc_info:
        parts.append(logging.Formatter().formatException(record.exc_info))
    if record.exc_text:
        parts.append(record.exc_text)
    if record.stack_info:
        parts.append(record.stack_info)
    return "\n".join(parts)


@dataclass
class Watch:
    """What the app logged and printed while a test ran."""

    caplog: pytest.LogCaptureFixture
    capfd: pytest.CaptureFixture[str]

    def records(self) -> list[logging.LogRecord]:
        return [r for r in self.caplog.records if not r.name.startswith("chalicelib.local")]

    def assert_clean(self, *texts: Any, expect_log: str | None = None) -> None:
        """No marker in any log record, stdout, stderr, or ``texts``; and (as a
        check that the capture works) a record whose message holds ``expect_log``."""
        out, err = self.capfd.readouterr()
        found: list[str] = []
        for r in self.records():
            hits = _leaks(_record_text(r))
            if hits:
                found.append(f"log {r.name}:{r.lineno} {r.levelname}: {hits}: "
                             f"{_record_text(r)[:400]!r}")
        for name, stream in (("stdout", out), ("stderr", err)):
            for line in stream.splitlines():
                if _leaks(line):
                    found.append(f"{name}: {line[:400]!r}")
        for text in texts:
            shown = text if isinstance(text, str) else json.dumps(text, default=str)
            if _leaks(shown):
                found.append(f"output: {shown[:400]!r}")
        assert not found, "personal data leaked:\n" + "\n".join(found)
        if expect_log is not None:
            messages = [r.getMessage() for r in self.caplog.records] + out.splitlines()
            assert any(expect_log in m for m in messages), (
                f"the capture saw no {expect_log!r} log line: {messages[:20]}")


@pytest.fixture
def watch(caplog: pytest.LogCaptureFixture,
          capfd: pytest.CaptureFixture[str]) -> Iterator[Watch]:
    caplog.set_level(logging.DEBUG)
    for name in _LIBRARIES:
        caplog.set_level(logging.INFO, logger=name)
    pt_logger = handlers.logger
    before = pt_logger.log_level
    pt_logger.setLevel(logging.DEBUG)
    try:
        yield Watch(caplog, capfd)
    finally:
        pt_logger.setLevel(before)


# -- helpers ---------------------------------------------------------------------------


def _customer(cid: str, **changes: Any) -> dict[str, Any]:
    return {"id": cid, "email": EMAIL, "phone": PHONE, "name": NAME,
            "timezone": "America/New_York", "locale": "en-US", "birthday": BIRTHDAY,
            "consent": {"sms": True, "email": True},
            "attributes": {"tier": "gold", "note": NOTE}, **changes}


def _event(eid: str = "evt-a1", cid: str = "c-a1", when: datetime = DELIVERED,
           **customer: Any) -> dict[str, Any]:
    event = load_event("order_delivered")
    event["id"] = eid
    event["occurred_at"] = clock.iso(when - timedelta(minutes=1))
    event["customer"] = _customer(cid, **customer)
    event["order"] = {"id": f"o-{eid}", "total": 129.5, "currency": "USD",
                      "items": [{"sku": SKU, "name": ITEM, "category": "appliance",
                                 "quantity": 1, "price": 129.5}]}
    event["data"] = {"gift_message": NOTE}
    return event


def _dlq_attributes(stack: LocalStack, what: str = "events-dlq") -> list[dict[str, str]]:
    return [{k: v.get("StringValue", "") for k, v in m.get("MessageAttributes", {}).items()}
            for m in stack.dead_letters(what)]


def _post_events(stack: LocalStack, body: bytes, *, signed: bool = True,
                 content_type: str = "application/json") -> Any:
    headers = {"Content-Type": content_type, "X-Forwarded-For": IP,
               "User-Agent": f"shop {NAME}"}
    if signed:
        headers["X-Aftercare-Signature"] = sign_header(EVENTS_KEY, _now_epoch(), body)
    return stack.client.http.post("/events", headers=headers, body=body)


def _now_epoch() -> int:
    return int(clock.real_now().timestamp())


def _reply_json(reply: Any) -> Any:
    try:
        return json.loads(reply.body)
    except (TypeError, ValueError):
        return reply.body.decode("utf-8", "replace") if isinstance(reply.body, bytes) \
            else str(reply.body)


def _twilio_post(stack: LocalStack, path: str, params: dict[str, str], *,
                 query: str = "", bad_signature: bool = False) -> Any:
    target = path + (f"?{query}" if query else "")
    signature = stack.twilio.sign(settings.load().public_base_url + target, params)
    if bad_signature:
        signature = "x" + signature[1:]
    return stack.client.http.post(target, body=urlencode(params), headers={
        "Content-Type": FORM, "X-Twilio-Signature": signature, "X-Forwarded-For": IP})


def _inbound(stack: LocalStack, body: str, **extra: str) -> Any:
    sid = f"SM{next(_SIDS):032x}"
    params = {"ToCountry": "US", "SmsMessageSid": sid, "MessageSid": sid, "NumMedia": "0",
              "SmsStatus": "received", "Body": body, "To": "+15005550006", "From": PHONE,
              "FromCity": "Canary Falls", "AccountSid": stack.twilio.account_sid,
              "ApiVersion": "2010-04-01", **extra}
    return _twilio_post(stack, "/webhooks/twilio/inbound", params)


def _messages(channel: str) -> list[MessageModel]:
    return sorted((m for m in MessageModel.scan() if m.channel == channel),
                  key=lambda m: m.decided_at)


def _ses(stack: LocalStack, name: str, msg: MessageModel | None,
         **changes: Any) -> dict[str, Any]:
    text = (FIXTURES / "ses_events" / f"{name}.json").read_text().replace(
        "ana@example.com", EMAIL)
    if msg is not None:
        text = text.replace("MESSAGE_ID", str(msg.provider_id)).replace(
            "TAGGED_ID", msg.message_id)
    event = json.loads(text)
    event.update(changes)
    return _ses_raw(stack, json.dumps(event))


def _ses_raw(stack: LocalStack, body: str) -> dict[str, Any]:
    sqs = aws.client("sqs")
    sqs.send_message(QueueUrl=aws.queue_url(settings.resource_name("ses-events")),
                     MessageBody=body)
    (summary,) = stack.pump("ses-events", "ses_events")
    result: dict[str, Any] = summary
    return result


@pytest.fixture
def enrolled(slice_stack: LocalStack) -> LocalStack:
    """c-a1 (all the markers) enrolled by a delivery: SMS check-in at SMS_DUE, email
    tip at EMAIL_DUE."""
    clock.set_now(DELIVERED)
    slice_stack.ingest([_event()])
    return slice_stack


# -- ingest ----------------------------------------------------------------------------


def test_ingest_of_a_valid_event_logs_ids_only(slice_stack: LocalStack, watch: Watch) -> None:
    clock.set_now(DELIVERED)
    (summary,) = slice_stack.ingest([_event()])
    assert summary["processed"] == 1 and summary["dead_lettered"] == 0
    slice_stack.ingest([_event()])  # a duplicate: logged too
    watch.assert_clean(summary, expect_log="event processed")


@pytest.mark.parametrize("customer, why", [
    ({"phone": NAME}, "$.customer.phone"),
    ({"phone": "+1415555019"}, "$.customer.phone"),
    ({"email": "canary.pii at example.com"}, "$.customer.email"),
    ({"email": f"{NAME} <{EMAIL}>"}, "$.customer.email"),
    ({"birthday": NAME}, "$.customer.birthday"),
    ({"attributes": [NOTE, EMAIL]}, "$.customer.attributes"),
    ({"name": {"first": "Zebulon", "last": "Canary"}}, "$.customer.name"),
], ids=["name-as-phone", "short-phone", "bad-email", "named-email", "bad-birthday",
        "attributes-list", "name-object"])
def test_an_invalid_event_is_dead_lettered_with_a_reason_free_of_personal_data(
        slice_stack: LocalStack, watch: Watch, customer: dict[str, Any], why: str) -> None:
    clock.set_now(DELIVERED)
    (summary,) = slice_stack.ingest([_event("evt-bad", "c-bad", **customer)])
    assert summary["dead_lettered"] == 1
    (attrs,) = _dlq_attributes(slice_stack)
    assert attrs["reason"].startswith(why), attrs
    watch.assert_clean(attrs, summary)


def test_unparseable_and_oversize_records_are_dead_lettered_without_personal_data(
        slice_stack: LocalStack, watch: Watch) -> None:
    clock.set_now(DELIVERED)
    good = json.dumps(_event())
    truncated = good[: good.index(NAME) + 8]  # cut inside the name
    trailing = good + f' {{"reply": "{REPLY}"}}'
    oversize = _event("evt-big", "c-big", attributes={"note": NOTE + " " + REPLY * 3000})
    summaries = slice_stack.ingest([truncated, trailing, json.dumps(oversize),
                                    good.replace('"id": "evt-a1"', f'"id": {PHONE[1:]}')])
    assert sum(s["dead_lettered"] for s in summaries) == 4
    attrs = _dlq_attributes(slice_stack)
    assert len(attrs) == 4 and all(a["reason"] for a in attrs)
    watch.assert_clean(attrs, summaries)


def test_a_misplaced_contact_in_occurred_at_stays_out_of_the_dlq_reason(
        slice_stack: LocalStack, watch: Watch) -> None:
    clock.set_now(DELIVERED)
    event = _event("evt-shift", "c-shift")
    event["occurred_at"] = EMAIL  # an export whose columns slipped by one
    (summary,) = slice_stack.ingest([event])
    assert summary["dead_lettered"] == 1
    (attrs,) = _dlq_attributes(slice_stack)
    assert attrs["reason"].startswith("$.occurred_at")
    watch.assert_clean(attrs)


# -- POST /events ------------------------------------------------------------------------


def test_post_events_valid_and_partly_invalid_batches_answer_without_personal_data(
        slice_stack: LocalStack, watch: Watch) -> None:
    clock.set_now(DELIVERED)
    one = _post_events(slice_stack, json.dumps(_event()).encode())
    assert one.status_code == 202, one.body
    batch = {"events": [_event("evt-b1", "c-b1"),
                        _event("evt-b2", "c-b2", phone=NAME),
                        _event("evt-b3", "c-b3", email=f"{NAME} <{EMAIL}>"),
                        _event("evt-b4", "c-b4", birthday="Zebulon's birthday")]}
    partly = _post_events(slice_stack, json.dumps(batch).encode())
    assert partly.status_code == 207, partly.body
    body = _reply_json(partly)
    assert [r["id"] for r in body["rejected"]] == ["evt-b2", "evt-b3", "evt-b4"]
    slice_stack.pump("events", "ingest")
    watch.assert_clean(_reply_json(one), body, expect_log="events queued")


def test_post_events_errors_do_not_echo_the_body(slice_stack: LocalStack,
                                                  watch: Watch) -> None:
    clock.set_now(DELIVERED)
    good = json.dumps(_event()).encode()
    replies = {
        "truncated": _post_events(slice_stack, good[: good.index(NAME.encode()) + 8]),
        "not an object": _post_events(slice_stack, json.dumps([NAME, EMAIL, PHONE]).encode()),
        "bad string": _post_events(slice_stack, f'{{"name": "{NAME}\\x"}}'.encode()),
        "none valid": _post_events(slice_stack, json.dumps(
            {"events": [_event("evt-n1", "c-n1", phone=EMAIL),
                        _event("evt-n2", "c-n2", email=PHONE)]}).encode()),
        "single invalid": _post_events(slice_stack, json.dumps(
            _event("evt-n3", "c-n3", email=NAME)).encode()),
        "event too large": _post_events(slice_stack, json.dumps(
            _event("evt-big", attributes={"note": REPLY * 3000})).encode()),
        "oversize": _post_events(slice_stack, json.dumps(
            _event("evt-big", attributes={"note": REPLY * 10000})).encode()),
        "unsigned": _post_events(slice_stack, good, signed=False),
        "bad signature": slice_stack.client.http.post("/events", body=good, headers={
            "Content-Type": "application/json", "X-Forwarded-For": IP,
            "X-Aftercare-Signature": f"t={_now_epoch()},v1={'0' * 64}"}),
        "not utf-8": _post_events(slice_stack, f'{{"name": "{NAME}"}}'.encode("utf-16")),
    }
    statuses = {k: r.status_code for k, r in replies.items()}
    assert statuses == {"truncated": 400, "not an object": 400, "bad string": 400,
                        "none valid": 400, "single invalid": 400, "event too large": 400,
                        "oversize": 413,
                        "unsigned": 401, "bad signature": 401, "not utf-8": 400}
    watch.assert_clean(*[_reply_json(r) for r in replies.values()],
                       expect_log="request refused")


def test_post_events_error_does_not_quote_a_misplaced_contact(
        slice_stack: LocalStack, watch: Watch) -> None:
    clock.set_now(DELIVERED)
    event = _event("evt-shift", "c-shift")
    event["occurred_at"] = PHONE
    reply = _post_events(slice_stack, json.dumps(event).encode())
    assert reply.status_code == 400
    watch.assert_clean(_reply_json(reply))


# -- tick and send -------------------------------------------------------------------------


def test_sms_and_email_sends_and_their_status_callbacks_log_no_personal_data(
        enrolled: LocalStack, watch: Watch) -> None:
    results = enrolled.run_due(SMS_DUE)
    (sms,) = enrolled.twilio.messages
    assert sms["to"] == PHONE and "Zebulon" in sms["body"]  # the markers did go out
    assert enrolled.twilio.deliver_callbacks() == 3
    assert _messages("sms")[0].status == "delivered"
    results += enrolled.run_due(EMAIL_DUE)
    (email,) = enrolled.sent_emails()
    assert email["to"] == [EMAIL]
    watch.assert_clean(results, expect_log="step decided")


@pytest.mark.parametrize("status, code, after_accept, outcome", [
    (400, 21211, False, "failed"),
    (400, 21610, False, "failed"),
    (429, 20429, False, "retry"),
    (500, None, False, "ambiguous"),
    (503, None, True, "ambiguous"),
], ids=["21211-invalid-to", "21610-unsubscribed", "429", "500", "503-after-accept"])
def test_twilio_errors_are_logged_without_the_recipient_or_body(
        enrolled: LocalStack, watch: Watch, status: int, code: int | None,
        after_accept: bool, outcome: str) -> None:
    enrolled.twilio.fail_next(status, code, after_accept=after_accept)
    results = enrolled.run_due(SMS_DUE)
    enrolled.pump("events", "ingest")  # a 21610 queues an opt-out
    (msg,) = _messages("sms")
    assert msg.status == outcome
    watch.assert_clean(results, msg.error_code, expect_log="sms send")


def test_a_twilio_error_echoing_the_recipient_is_masked_in_logs(
        enrolled: LocalStack, watch: Watch) -> None:
    # Real Twilio echoes the number in 21211 ("Invalid 'To' Phone Number: +1415...");
    # the local server does the same for a number it finds invalid.
    enrolled.twilio.unsubscribed.add(PHONE)
    results = enrolled.run_due(SMS_DUE)
    enrolled.pump("events", "ingest")
    (msg,) = _messages("sms")
    assert (msg.status, msg.error_code) == ("failed", "21610")
    watch.assert_clean(results, expect_log="sms send")


def test_a_step_that_cannot_render_records_no_customer_value_in_the_log(
        stack: LocalStack, tmp_path: Path, watch: Watch) -> None:
    # A template formats a free-text attribute as a date; it validates (the sample
    # customer has no such attribute), and fails for a customer whose note is text.
    campaigns, templates = tmp_path / "c", tmp_path / "t"
    campaigns.mkdir()
    templates.mkdir()
    (campaigns / "since.json").write_text(json.dumps({
        "id": "since", "name": "Since", "trigger": {"event": "order.delivered"},
        "steps": [{"id": "hello", "after": "P2D", "at": "10:00", "channel": "sms",
                   "template": "since"}]}))
    (templates / "since.sms.j2").write_text(
        "Hi{% if customer.attributes.note is defined %} since "
        "{{ customer.attributes.note|date }}{% endif %}. Reply STOP to opt out.")
    stack.push_campaigns(campaigns, templates)
    clock.set_now(DELIVERED)
    stack.ingest([_event()])
    results = stack.run_due(SMS_DUE)
    assert enrolled_outcome() == "failed"
    watch.assert_clean(results, expect_log="step decided")


def enrolled_outcome() -> str:
    (msg,) = _messages("sms")
    return str(msg.status)


def _push_rule_campaign(stack: LocalStack, tmp_path: Path, audience: Any) -> None:
    campaigns = tmp_path / "rule"
    campaigns.mkdir()
    (campaigns / "rule.json").write_text(json.dumps({
        "id": "rule", "name": "Rule", "trigger": {"event": "order.delivered"},
        "audience": audience,
        "steps": [{"id": "hello", "after": "P2D", "at": "10:00", "channel": "sms",
                   "template": "checkin"}]}))
    stack.push_campaigns(campaigns, FIXTURES.parent.parent / "templates")


def test_a_failing_audience_rule_logs_no_customer_value(
        stack: LocalStack, tmp_path: Path, watch: Watch) -> None:
    _push_rule_campaign(stack, tmp_path, {"if": [
        {"==": [{"var": "customer.attributes.tier"}, "gold"]},
        {"throw": {"var": "customer.attributes.note"}}, True]})
    clock.set_now(DELIVERED)
    (summary,) = stack.ingest([_event()])
    assert summary["processed"] == 1
    watch.assert_clean(summary, expect_log="failed to evaluate")


# -- Twilio webhooks ---------------------------------------------------------------------


def test_status_callbacks_with_contact_fields_log_sids_only(
        enrolled: LocalStack, watch: Watch) -> None:
    enrolled.run_due(SMS_DUE)
    (msg,) = _messages("sms")
    fields = {"AccountSid": enrolled.twilio.account_sid, "From": "+15005550006",
              "To": PHONE, "Body": REPLY, "ApiVersion": "2010-04-01"}
    replies = [
        # delivered, for the message named by m
        _twilio_post(enrolled, "/webhooks/twilio/status", {
            **fields, "MessageSid": str(msg.provider_id), "MessageStatus": "undelivered",
            "ErrorCode": "30003"}, query=f"m={msg.message_id}"),
        # a SID the message does not have (mismatch)
        _twilio_post(enrolled, "/webhooks/twilio/status", {
            **fields, "MessageSid": "SM" + "9" * 32, "MessageStatus": "sent"},
            query=f"m={msg.message_id}"),
        # m naming no message
        _twilio_post(enrolled, "/webhooks/twilio/status", {
            **fields, "MessageSid": "SM" + "8" * 32, "MessageStatus": "sent"},
            query="m=no-such-message"),
        # neither m nor a known SID (looked up by provider id, then "unknown")
        _twilio_post(enrolled, "/webhooks/twilio/status", {
            **fields, "MessageSid": "SM" + "7" * 32, "MessageStatus": "delivered"}),
    ]
    assert [_reply_json(r)["result"] for r in replies] == [
        "recorded", "mismatch", "unknown", "unknown"]
    refused = [
        _twilio_post(enrolled, "/webhooks/twilio/status", {**fields, "MessageSid": "SMx",
                     "MessageStatus": "sent"}, bad_signature=True),
        _twilio_post(enrolled, "/webhooks/twilio/status", fields),  # no sid or status
        _twilio_post(enrolled, "/webhooks/twilio/status", {
            **fields, "MessageSid": "SMy", "MessageStatus": "sent"}, query=f"m={PHONE}&m=x"),
    ]
    assert [r.status_code for r in refused] == [403, 400, 400]
    watch.assert_clean(*[_reply_json(r) for r in replies + refused],
                       expect_log="status report")


def test_inbound_replies_log_the_keyword_never_the_number_or_text(
        enrolled: LocalStack, watch: Watch) -> None:
    enrolled.run_due(SMS_DUE)  # the check-in carries a CSAT survey
    replies = [
        _inbound(enrolled, REPLY),                       # free text: nothing
        _inbound(enrolled, "4"),                         # the survey answer
        _inbound(enrolled, "42"),                        # out of range
        _inbound(enrolled, "HELP"),
        _inbound(enrolled, f"STOP {REPLY}"),             # opt-out, first word
        _inbound(enrolled, "START"),
        _inbound(enrolled, f"Arret {NAME}", OptOutType="STOP"),  # Advanced Opt-Out
    ]
    assert [r.status_code for r in replies] == [200] * len(replies)
    enrolled.pump("events", "ingest")
    refused = [
        _twilio_post(enrolled, "/webhooks/twilio/inbound", {"From": PHONE, "Body": REPLY,
                     "MessageSid": "SM1"}, bad_signature=True),
        _twilio_post(enrolled, "/webhooks/twilio/inbound", {"From": PHONE, "Body": REPLY}),
    ]
    assert [r.status_code for r in refused] == [403, 400]
    watch.assert_clean(*[_reply_json(r) for r in replies + refused],
                       expect_log="sms keyword")


# -- signed links ------------------------------------------------------------------------


def test_survey_and_unsubscribe_links_log_no_personal_data(
        enrolled: LocalStack, watch: Watch) -> None:
    enrolled.run_due(SMS_DUE)
    enrolled.run_due(EMAIL_DUE)
    (sms,) = _messages("sms")
    (email,) = _messages("email")
    key = LINK_KEY.encode()
    exp = int(clock.real_now().timestamp()) + 86_400
    survey = links.sign({"m": sms.message_id, "k": "csat", "t": "survey", "exp": exp}, key)
    unsub = links.sign({"m": email.message_id, "t": "unsubscribe", "exp": exp}, key)
    forged = links.sign({"m": EMAIL, "t": "unsubscribe", "exp": exp, "r": PHONE}, b"x" * 32)
    headers = {"Content-Type": FORM, "X-Forwarded-For": IP}
    http = enrolled.client.http
    replies = [
        http.get(f"/l/survey/{survey}", headers={"X-Forwarded-For": IP}),
        http.post(f"/l/survey/{survey}", headers=headers, body=f"score=9&note={REPLY}"),
        http.post(f"/l/survey/{survey}", headers=headers, body="score=4"),
        http.get(f"/l/unsubscribe/{unsub}", headers={"X-Forwarded-For": IP}),
        http.post(f"/l/unsubscribe/{unsub}", headers=headers,
                  body="List-Unsubscribe=One-Click"),
        http.post(f"/l/unsubscribe/{forged}", headers=headers,
                  body="List-Unsubscribe=One-Click"),
        http.get(f"/l/survey/{EMAIL}", headers={"X-Forwarded-For": IP}),
    ]
    assert [r.status_code for r in replies] == [200, 400, 200, 200, 200, 404, 404]
    enrolled.pump("events", "ingest")
    watch.assert_clean(*[_reply_json(r) for r in replies if r.status_code >= 400],
                       expect_log="request refused")


# -- SES events ----------------------------------------------------------------------------


def test_ses_events_log_ids_and_types_never_addresses(
        enrolled: LocalStack, watch: Watch) -> None:
    enrolled.run_due(EMAIL_DUE)
    (msg,) = _messages("email")
    summaries = [
        _ses(enrolled, "delivery", msg),
        _ses(enrolled, "bounce_permanent", msg),
        _ses(enrolled, "complaint", msg),
        _ses(enrolled, "complaint", None),  # not tagged: "without a message tag"
    ]
    enrolled.pump("events", "ingest")
    assert [s["dead_lettered"] for s in summaries] == [0, 0, 0, 0]
    watch.assert_clean(summaries, expect_log="SES event")


def test_unreadable_ses_records_are_dead_lettered_without_addresses(
        enrolled: LocalStack, watch: Watch) -> None:
    complaint = (FIXTURES / "ses_events" / "complaint.json").read_text().replace(
        "ana@example.com", EMAIL)
    summaries = [_ses_raw(enrolled, complaint[:-40]),
                 _ses_raw(enrolled, json.dumps([EMAIL, PHONE, NAME])),
                 _ses_raw(enrolled, json.dumps({"Type": "Notification",
                                                "Message": complaint[:-10]}))]
    assert [s["dead_lettered"] for s in summaries] == [1, 1, 1]
    attrs = _dlq_attributes(enrolled, "ses-events-dlq")
    assert len(attrs) == 3 and all(a["reason"].startswith("SES event") for a in attrs)
    watch.assert_clean(attrs)


# -- aftercare import / erase ----------------------------------------------------------------


def _csv(tmp_path: Path, rows: list[str]) -> Path:
    path = tmp_path / "customers.csv"
    path.write_text("id,name,email,phone,birthday,consent_sms,attributes,updated_at\n"
                    + "\n".join(rows) + "\n")
    return path


def test_import_reports_bad_rows_without_their_values(
        stack: LocalStack, tmp_path: Path, watch: Watch) -> None:
    clock.set_now(DELIVERED)
    note = json.dumps({"note": NOTE}).replace('"', '""')
    at = "2026-02-01T00:00:00Z"
    path = _csv(tmp_path, [
        f'k-1,{NAME},{EMAIL},{PHONE},{BIRTHDAY},yes,"{note}",{at}',      # fine
        f'k-2,{NAME},{EMAIL},{PHONE},{BIRTHDAY},{PHONE},"{note}",{at}',  # consent shifted
        f'k-3,{NAME},{EMAIL},{NAME},{BIRTHDAY},yes,"{note}",{at}',       # phone is a name
        f'k-4,{NAME},{PHONE},{PHONE},{BIRTHDAY},yes,"{note}",{at}',      # email is a phone
        f'k-5,{NAME},{EMAIL},{PHONE},{NAME},yes,"{note}",{at}',          # birthday is a name
        f'k-6,{NAME},{EMAIL},{PHONE},{BIRTHDAY},yes,{NOTE},{at}',        # attributes not JSON
        f'k-7,{NAME},{EMAIL},{PHONE},{BIRTHDAY},yes,"[""{NOTE}""]",{at}',  # not an object
        f',{NAME},{EMAIL},{PHONE},{BIRTHDAY},yes,"{note}",{at}',         # no id
    ])
    assert main(["import", "customers", str(path)]) == 1
    jsonl = tmp_path / "customers.jsonl"
    jsonl.write_text(f'{{"id": "k-8", "name": "{NAME}", "note": "{NOTE}"\n'
                     f'["{EMAIL}", "{PHONE}"]\n'
                     f'{{"id": "k-9", "phone": "{EMAIL}", "name": "{NAME}"}}\n')
    assert main(["import", "customers", str(jsonl)]) == 1
    watch.assert_clean()


def test_import_of_a_shifted_row_does_not_print_the_contact(
        stack: LocalStack, tmp_path: Path, watch: Watch) -> None:
    clock.set_now(DELIVERED)
    # The export wrote the name's comma unquoted, so the cells slid: "Canary" sits in
    # the email column, and the last column (updated_at) holds the mailbox.
    path = _csv(tmp_path, [f"k-1,Zebulon,Canary,{PHONE},{BIRTHDAY},yes,{{}},{EMAIL}"])
    assert main(["import", "customers", str(path)]) == 1
    watch.assert_clean()


def test_import_orders_of_a_shifted_row_does_not_print_the_contact(
        stack: LocalStack, tmp_path: Path, watch: Watch) -> None:
    clock.set_now(DELIVERED)
    path = tmp_path / "orders.csv"
    path.write_text("order_id,customer_id,placed_at,total,sku\n"
                    f"o-1,k-1,{EMAIL},12.5,{SKU}\n")
    assert main(["import", "orders", str(path)]) == 1
    watch.assert_clean()


def test_erase_reports_counts_and_problems_without_personal_data(
        enrolled: LocalStack, tmp_path: Path, watch: Watch) -> None:
    enrolled.run_due(SMS_DUE)
    _inbound(enrolled, "STOP")
    enrolled.pump("events", "ingest")
    ids = tmp_path / "ids.txt"
    ids.write_text(f"c-a1\nc-a2 {NAME} {EMAIL}\n# {NAME}\n")
    assert main(["erase", "--file", str(ids)]) == 1  # the line with spaces: refused
    ids.write_text(f"c-a1  # {NAME}, {EMAIL}\nc-unknown\n")
    assert main(["erase", "--dry-run", "--file", str(ids)]) == 0
    assert main(["erase", "--file", str(ids)]) == 0
    bad = tmp_path / "latin1.txt"
    bad.write_bytes(f"c-a1\n{NAME}\xe9\n".encode("latin-1"))
    assert main(["erase", "--file", str(bad)]) == 1
    # The erased customer's late event is dropped, logged with erased: true.
    enrolled.ingest([_event("evt-late", "c-a1", when=DELIVERED)])
    watch.assert_clean(expect_log="event processed")
