"""Audit of the delivery and tracking side: sending, webhooks, links.

Each test holds one defect found by the audit, through the real parts: the
handlers behind ``chalice.test.Client``, moto, the real twilio client against the
local Twilio server, and real signatures.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from itertools import count
from typing import Any
from urllib.parse import urlencode

import pytest

from chalicelib import aws, clock, settings
from chalicelib.local.stack import TWILIO_AUTH_TOKEN, LocalStack
from chalicelib.pipeline.stats import stats_totals
from chalicelib.store.models import CustomerModel, MessageModel
from tests.conftest import FIXTURES, load_event

DELIVERED = datetime(2026, 3, 1, 14, 3, tzinfo=UTC)
SMS_DUE = datetime(2026, 3, 3, 15, 0, tzinfo=UTC)
PHONE = "+14155550123"
FORM = "application/x-www-form-urlencoded"


@pytest.fixture
def enrolled(slice_stack: LocalStack) -> LocalStack:
    """The sliced stack with c-42 enrolled by a delivery: an SMS check-in due at
    SMS_DUE, an email tip a week after the delivery."""
    clock.set_now(DELIVERED)
    slice_stack.ingest([load_event("order_delivered")])
    return slice_stack


def _sms_message() -> MessageModel:
    (msg,) = [m for m in MessageModel.scan() if m.channel == "sms"]
    return msg


def _set_twilio_token(token: str) -> None:
    """Ops set the Twilio secret's auth token; the secret cache then expires."""
    name = settings.load().twilio_secret
    sm = aws.client("secretsmanager")
    secret = json.loads(sm.get_secret_value(SecretId=name)["SecretString"])
    sm.put_secret_value(SecretId=name, SecretString=json.dumps({**secret, "auth_token": token}))
    aws.reset()  # the 5-minute secret cache has expired


# -- what counts as transient --------------------------------------------------------


def test_refused_credentials_are_retried_with_the_token_read_again(enrolled: LocalStack) -> None:
    # The auth token was rotated in Twilio before the secret was updated. Twilio
    # refuses the request (401, 20003) before accepting anything: the check-in is
    # retried, not failed for good, and the retry reads the fixed secret instead of
    # the warm Lambda's cached client.
    _set_twilio_token("revoked-token")
    results = enrolled.run_due(SMS_DUE)
    assert enrolled.twilio.messages == []
    msg = _sms_message()
    assert (msg.status, msg.error_code) == ("retry", "20003")
    retry_at = clock.parse_iso(results[0]["due"][0])

    _set_twilio_token(TWILIO_AUTH_TOKEN)
    enrolled.run_due(retry_at)
    assert len(enrolled.twilio.messages) == 1
    msg = _sms_message()
    assert msg.status == "sent" and msg.provider_id == enrolled.twilio.messages[0]["sid"]


def test_a_full_sender_queue_is_retried_not_failed(enrolled: LocalStack) -> None:
    # 21611: the sender's queue holds more than 10 hours of messages; Twilio took
    # nothing. Later the queue has drained and the same check-in goes out, once.
    enrolled.twilio.fail_next(400, 21611)
    results = enrolled.run_due(SMS_DUE)
    assert enrolled.twilio.messages == []
    assert (_sms_message().status, _sms_message().error_code) == ("retry", "21611")
    enrolled.run_due(clock.parse_iso(results[0]["due"][0]))
    assert len(enrolled.twilio.messages) == 1 and _sms_message().status == "sent"


# -- inbound SMS: keywords and survey replies -------------------------------------------

_SIDS = count(1)


def _text(stack: LocalStack, body: str, *, extra: str = "") -> Any:
    """Post a Twilio-signed inbound SMS from c-42's phone; the app's reply."""
    url = settings.load().public_base_url + "/webhooks/twilio/inbound"
    params = {"MessageSid": f"SM{next(_SIDS):032d}", "From": PHONE, "To": "+15005550006",
              "Body": body, "AccountSid": stack.twilio.account_sid}
    if extra:
        params["Padding"] = extra
    headers = {"Content-Type": FORM, "X-Twilio-Signature": stack.twilio.sign(url, params)}
    return stack.client.http.post("/webhooks/twilio/inbound", headers=headers,
                                  body=urlencode(params))


def _sms_consent(stack: LocalStack) -> bool:
    stack.pump("events", "ingest")
    granted: bool = CustomerModel.get("c-42").profile["consent"]["sms"]["granted"]
    return granted


def test_a_reply_of_odd_digits_is_no_answer_and_no_500(enrolled: LocalStack) -> None:
    # "²" is a digit to str.isdigit() but not to int(); 5,000 nines are past
    # int()'s limit. Both were a 500 (the body quoted in the error log).
    enrolled.run_due(SMS_DUE)  # the check-in asks for a CSAT score
    for body in ("²", "9" * 5000, "٣"):
        reply = _text(enrolled, body)
        assert reply.status_code == 200, body
        assert b"Thank you" not in reply.body
    assert _sms_message().survey_score is None


def test_stop_on_its_own_line_or_with_a_comma_opts_out(enrolled: LocalStack) -> None:
    # The first word of "STOP\nI moved" is STOP (it was "STOP\nI"), as is "Stop," 's.
    clock.set_now(datetime(2026, 3, 2, 12, 0, tzinfo=UTC))
    assert _text(enrolled, "STOP\nI moved away").status_code == 200
    assert _sms_consent(enrolled) is False
    clock.set_now(datetime(2026, 3, 2, 13, 0, tzinfo=UTC))
    assert _text(enrolled, "START").status_code == 200
    assert _sms_consent(enrolled) is True
    clock.set_now(datetime(2026, 3, 2, 14, 0, tzinfo=UTC))
    assert _text(enrolled, "Stop, please").status_code == 200
    assert _sms_consent(enrolled) is False
    enrolled.run_due(SMS_DUE)
    assert enrolled.twilio.messages == []


def test_yes_in_a_sentence_does_not_lift_a_stop(enrolled: LocalStack) -> None:
    # An opt-in must be explicit (DESIGN: only START or an explicit opt-in lifts a
    # STOP): "Yes it arrived" answers a question; "Yes!" alone is the keyword.
    clock.set_now(datetime(2026, 3, 2, 12, 0, tzinfo=UTC))
    _text(enrolled, "STOP")
    assert _sms_consent(enrolled) is False
    clock.set_now(datetime(2026, 3, 2, 13, 0, tzinfo=UTC))
    assert _text(enrolled, "Yes it arrived yesterday, thanks").status_code == 200
    assert _sms_consent(enrolled) is False
    clock.set_now(datetime(2026, 3, 2, 14, 0, tzinfo=UTC))
    assert _text(enrolled, " Yes! ").status_code == 200
    assert _sms_consent(enrolled) is True


def test_an_oversized_inbound_sms_is_413_like_the_status_callback(
        enrolled: LocalStack) -> None:
    reply = _text(enrolled, "hi", extra="x" * (64 * 1024))
    assert reply.status_code == 413


# -- SES events (the configuration set's SNS topic) ---------------------------------------

EMAIL_DUE = datetime(2026, 3, 8, 13, 30, tzinfo=UTC)


def _email_message() -> MessageModel:
    (msg,) = [m for m in MessageModel.scan() if m.channel == "email"]
    return msg


def _ses_record(stack: LocalStack, body: str) -> dict[str, Any]:
    """Deliver one record through the ses-events queue to its function, as the
    topic's raw-delivery subscription and the event source mapping do."""
    sqs = aws.client("sqs")
    sqs.send_message(QueueUrl=aws.queue_url(settings.resource_name("ses-events")),
                     MessageBody=body)
    (summary,) = stack.pump("ses-events", "ses_events")
    return summary


def _ses_event(stack: LocalStack, name: str, msg: MessageModel) -> dict[str, str]:
    """A real-shaped SES event for ``msg`` through the queue; what it did."""
    text = (FIXTURES / "ses_events" / f"{name}.json").read_text()
    text = text.replace("MESSAGE_ID", str(msg.provider_id)).replace("TAGGED_ID", msg.message_id)
    summary = _ses_record(stack, text)
    assert (summary["processed"], summary["dead_lettered"]) == (1, 0), summary
    (result,) = summary["results"]
    return {"result": result}


def test_an_ses_complaint_withdraws_email_consent(enrolled: LocalStack) -> None:
    # The configuration set publishes complaints to the topic (infra/); nothing
    # listened, so a customer who reported the care tip as spam kept getting email.
    enrolled.run_due(EMAIL_DUE)
    msg = _email_message()
    assert msg.status == "sent" and msg.provider_id
    assert _ses_event(enrolled, "complaint", msg) == {"result": "recorded"}
    assert _ses_event(enrolled, "complaint", msg) == {"result": "duplicate"}  # SNS redelivers
    enrolled.pump("events", "ingest")
    consent = CustomerModel.get("c-42").profile["consent"]["email"]
    assert (consent["granted"], consent["source"]) == (False, "email:complaint")
    after = _email_message()
    assert after.status == "sent"  # a complaint is not a delivery status
    assert [(e["status"], e.get("source")) for e in after.history][-1] == ("complained", "ses")


def test_ses_delivery_and_a_hard_bounce_are_recorded_and_counted_once(
        enrolled: LocalStack) -> None:
    enrolled.run_due(EMAIL_DUE)
    msg = _email_message()
    assert _ses_event(enrolled, "delivery", msg) == {"result": "recorded"}
    assert _email_message().status == "delivered"
    enrolled.run_due(EMAIL_DUE)  # nothing else due
    totals = stats_totals(msg.campaign_id, msg.variant, "treatment", msg.decided_at[:10])
    assert totals.get("delivered") == 1
    # Another customer's email hard-bounces.
    bounced = load_event("order_delivered")
    bounced.update(id="evt-b")
    bounced["customer"] = {**bounced["customer"], "id": "c-43", "email": "gone@example.com",
                           "phone": "+14155550124"}
    clock.set_now(DELIVERED)
    enrolled.ingest([bounced])
    enrolled.run_due(EMAIL_DUE)
    (other,) = [m for m in MessageModel.scan()
                if m.channel == "email" and m.customer_id == "c-43"]
    for _ in range(2):
        assert _ses_event(enrolled, "bounce_permanent", other)["result"] in (
            "recorded", "duplicate")
    other = MessageModel.get(other.message_id)
    assert (other.status, other.error_code) == ("undelivered", "bounce:General")
    totals = stats_totals(msg.campaign_id, msg.variant, "treatment", msg.decided_at[:10])
    assert totals.get("failed") == 1 and totals.get("delivered") == 1


# -- Twilio 21610: the recipient opted out at Twilio -------------------------------------


def test_a_21610_refusal_records_an_sms_opt_out_that_later_events_keep(
        enrolled: LocalStack) -> None:
    # c-42 texted STOP to the sending number before Aftercare knew it: Twilio refuses
    # the check-in with 21610. That is an opt-out, recorded as one (explicit, with
    # its source), so later SMS steps are suppressed at decision time (as a STOP
    # between enrollment and send is) instead of each failing at Twilio again; an
    # order system resending a plain "sms": true does not lift it.
    enrolled.twilio.unsubscribed.add(PHONE)
    enrolled.run_due(SMS_DUE)
    msg = _sms_message()
    assert (msg.status, msg.error_code) == ("failed", "21610")
    assert _sms_consent(enrolled) is False
    consent = CustomerModel.get("c-42").profile["consent"]["sms"]
    assert (consent["source"], consent["explicit"]) == ("sms:twilio-21610", True)

    later = load_event("order_delivered")  # carries consent {"sms": true}
    later.update(id="evt-later", occurred_at="2026-04-01T14:02:00Z")
    later["order"] = {**later["order"], "id": "o-10"}
    clock.set_now(datetime(2026, 4, 1, 14, 3, tzinfo=UTC))
    enrolled.ingest([later])
    assert _sms_consent(enrolled) is False


def test_a_start_after_a_21610_opt_out_lifts_it(enrolled: LocalStack) -> None:
    enrolled.twilio.unsubscribed.add(PHONE)
    enrolled.run_due(SMS_DUE)
    assert _sms_consent(enrolled) is False
    clock.set_now(datetime(2026, 3, 5, tzinfo=UTC))
    assert _text(enrolled, "START").status_code == 200
    assert _sms_consent(enrolled) is True


def test_an_unreadable_ses_record_is_dead_lettered_with_its_reason(
        enrolled: LocalStack) -> None:
    summary = _ses_record(enrolled, "{not json")
    assert summary["dead_lettered"] == 1 and summary["results"] == {}
    sqs = aws.client("sqs")
    got = sqs.receive_message(
        QueueUrl=aws.queue_url(settings.resource_name("ses-events-dlq")),
        MessageAttributeNames=["All"])["Messages"]
    assert got[0]["Body"] == "{not json"
    assert got[0]["MessageAttributes"]["reason"]["StringValue"] == "SES event: invalid JSON"


def test_an_ses_event_in_an_sns_envelope_is_read_too(enrolled: LocalStack) -> None:
    # A subscription without raw delivery wraps the event in an SNS notification.
    enrolled.run_due(EMAIL_DUE)
    msg = _email_message()
    text = (FIXTURES / "ses_events" / "delivery.json").read_text()
    text = text.replace("MESSAGE_ID", str(msg.provider_id)).replace("TAGGED_ID", msg.message_id)
    envelope = {"Type": "Notification", "MessageId": "1", "TopicArn": "arn:aws:sns:x",
                "Message": text}
    summary = _ses_record(enrolled, json.dumps(envelope))
    assert summary["results"] == {"recorded": 1}
    assert _email_message().status == "delivered"


def test_an_unsubscribe_link_sent_by_sms_withdraws_sms_consent(enrolled: LocalStack) -> None:
    # links.unsubscribe is in every template's context, SMS included; clicking it
    # in a text message must stop the texts, not the emails.
    from chalicelib.local.stack import LINK_KEY
    from chalicelib.tracking import links

    enrolled.run_due(SMS_DUE)
    msg = _sms_message()
    exp = int(clock.real_now().timestamp()) + 3600
    token = links.sign({"m": msg.message_id, "t": "unsubscribe", "exp": exp},
                       LINK_KEY.encode())
    response = enrolled.client.http.post(f"/l/unsubscribe/{token}",
                                         body=b"List-Unsubscribe=One-Click",
                                         headers={"Content-Type": FORM})
    assert response.status_code == 200
    enrolled.pump("events", "ingest")
    consent = CustomerModel.get("c-42").profile["consent"]
    assert (consent["sms"]["granted"], consent["sms"]["source"]) == (
        False, "sms:unsubscribe-link")
    assert consent["email"]["granted"] is True
