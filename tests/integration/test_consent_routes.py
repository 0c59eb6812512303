"""STOP/START/HELP by SMS and one-click email unsubscribe, end to end."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from urllib.parse import urlencode

import pytest

from chalicelib import clock
from chalicelib.local.stack import LocalStack
from chalicelib.store.models import CustomerModel
from tests.conftest import load_event

PHONE = "+14155550123"
INBOUND = "http://127.0.0.1:8000/webhooks/twilio/inbound"


@pytest.fixture
def known(slice_stack: LocalStack) -> LocalStack:
    clock.set_now(datetime(2026, 3, 1, 14, 3, tzinfo=UTC))
    slice_stack.ingest([load_event("order_delivered")])
    return slice_stack


def _consent(channel: str) -> dict:
    record: dict = CustomerModel.get("c-42").profile["consent"][channel]
    return record


def test_stop_withdraws_sms_consent_and_the_check_in_is_suppressed(known: LocalStack) -> None:
    clock.set_now(datetime(2026, 3, 2, 12, 0, tzinfo=UTC))
    record = known.twilio.simulate_inbound(PHONE, "Stop", "+15005550006", INBOUND)
    assert record.error is None
    known.pump("events", "ingest")
    assert _consent("sms")["granted"] is False and _consent("sms")["source"] == "sms:STOP"
    known.run_due(datetime(2026, 3, 3, 15, 0, tzinfo=UTC))
    assert known.twilio.messages == []


def test_start_after_stop_restores_consent(known: LocalStack) -> None:
    clock.set_now(datetime(2026, 3, 2, 12, 0, tzinfo=UTC))
    known.twilio.simulate_inbound(PHONE, "STOP", "+15005550006", INBOUND)
    known.pump("events", "ingest")
    clock.set_now(datetime(2026, 3, 2, 13, 0, tzinfo=UTC))
    known.twilio.simulate_inbound(PHONE, "START", "+15005550006", INBOUND)
    known.pump("events", "ingest")
    assert _consent("sms")["granted"] is True
    # A later event saying consent: true is evidence only; it does not matter here,
    # and a plain true after a STOP would not have lifted it (see test_profile).
    known.run_due(datetime(2026, 3, 3, 15, 0, tzinfo=UTC))
    assert len(known.twilio.messages) == 1


def test_help_replies_and_a_bad_signature_is_refused(known: LocalStack) -> None:
    params = {"MessageSid": "SM" + "a" * 32, "From": PHONE, "To": "+15005550006",
              "Body": "help", "AccountSid": known.twilio.account_sid}
    headers = {"Content-Type": "application/x-www-form-urlencoded",
               "X-Twilio-Signature": known.twilio.sign(INBOUND, params)}
    reply = known.client.http.post("/webhooks/twilio/inbound", headers=headers,
                                   body=urlencode(params))
    assert reply.status_code == 200 and b"Reply STOP to opt out" in reply.body
    headers["X-Twilio-Signature"] = known.twilio.sign(INBOUND, {**params, "Body": "STOP"})
    reply = known.client.http.post("/webhooks/twilio/inbound", headers=headers,
                                   body=urlencode(params))
    assert reply.status_code == 403


def test_one_click_unsubscribe_withdraws_email_consent(known: LocalStack) -> None:
    known.run_due(datetime(2026, 3, 8, 13, 30, tzinfo=UTC))
    (email,) = known.sent_emails()
    link = re.search(r"http://127\.0\.0\.1:8000(/l/unsubscribe/[\w.-]+)", email["body"])
    assert link is not None
    path = link.group(1)
    page = known.client.http.get(path)
    assert page.status_code == 200 and b"Unsubscribe" in page.body
    assert _consent("email")["granted"] is True  # a GET (a link scanner) changes nothing
    reply = known.client.http.post(
        path, headers={"Content-Type": "application/x-www-form-urlencoded"},
        body="List-Unsubscribe=One-Click")
    assert reply.status_code == 200
    known.pump("events", "ingest")
    assert _consent("email") | {"at": None} == {
        "granted": False, "at": None, "source": "email:unsubscribe-link", "explicit": True}
    tampered = path[:-3] + ("AAA" if not path.endswith("AAA") else "BBB")
    assert known.client.http.post(
        tampered, headers={"Content-Type": "application/x-www-form-urlencoded"},
        body="List-Unsubscribe=One-Click").status_code == 404


def _survey_link(stack: LocalStack) -> str:
    from chalicelib import aws, settings
    from chalicelib.store.models import MessageModel
    from chalicelib.tracking.links import sign

    (msg,) = [m for m in MessageModel.scan() if m.channel == "sms"]
    key = str(aws.secret_json(settings.load().signing_secret)["link_key"]).encode()
    token = sign({"m": msg.message_id, "k": "csat", "t": "survey", "exp": 2_000_000_000}, key)
    return f"/l/survey/{token}"


def test_survey_link_records_one_answer_and_counts_it(known: LocalStack) -> None:
    from chalicelib.pipeline.stats import stats_totals
    from chalicelib.store.models import MessageModel

    known.run_due(datetime(2026, 3, 3, 15, 0, tzinfo=UTC))
    path = _survey_link(known)
    page = known.client.http.get(path)
    assert page.status_code == 200 and b"value=5" in page.body
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    assert known.client.http.post(path, headers=form, body="score=9").status_code == 400
    assert known.client.http.post(path, headers=form, body="score=4").status_code == 200
    again = known.client.http.post(path, headers=form, body="score=1")
    assert again.status_code == 200 and b"already" in again.body
    (msg,) = [m for m in MessageModel.scan() if m.channel == "sms"]
    assert (msg.survey_kind, msg.survey_score) == ("csat", 4)
    totals = stats_totals("checkin", None, "treatment", msg.decided_at[:10])
    assert (totals["survey_responses"], totals["survey_score_sum"]) == (1, 4)


def test_a_survey_link_cannot_unsubscribe(known: LocalStack) -> None:
    known.run_due(datetime(2026, 3, 3, 15, 0, tzinfo=UTC))
    token = _survey_link(known).rsplit("/", 1)[1]
    reply = known.client.http.post(
        f"/l/unsubscribe/{token}", headers={"Content-Type": "application/x-www-form-urlencoded"},
        body="List-Unsubscribe=One-Click")
    assert reply.status_code == 404


def _text(stack: LocalStack, body: str, sid: str, **extra: str) -> bytes:
    """An inbound SMS, signed; ``extra`` form fields (Advanced Opt-Out's ``OptOutType``)."""
    params = {"MessageSid": sid, "From": PHONE, "To": "+15005550006", "Body": body,
              "AccountSid": stack.twilio.account_sid, **extra}
    headers = {"Content-Type": "application/x-www-form-urlencoded",
               "X-Twilio-Signature": stack.twilio.sign(INBOUND, params)}
    reply = stack.client.http.post("/webhooks/twilio/inbound", headers=headers,
                                   body=urlencode(params))
    assert reply.status_code == 200
    body_bytes: bytes = reply.body
    return body_bytes


def test_a_number_texted_back_answers_the_survey_sms(known: LocalStack) -> None:
    from chalicelib.pipeline.stats import stats_totals
    from chalicelib.store.models import MessageModel

    known.run_due(datetime(2026, 3, 3, 15, 0, tzinfo=UTC))
    clock.set_now(datetime(2026, 3, 3, 16, 0, tzinfo=UTC))
    assert b"from 1 to 5" in _text(known, "9", "SM" + "1" * 32)
    assert b"Thank you" in _text(known, " 4!", "SM" + "2" * 32)
    assert b"Thank you" not in _text(known, "5", "SM" + "3" * 32)  # answered already
    (msg,) = [m for m in MessageModel.scan() if m.channel == "sms"]
    assert (msg.survey_kind, msg.survey_score) == ("csat", 4)
    totals = stats_totals("checkin", None, "treatment", msg.decided_at[:10])
    assert totals["survey_responses"] == 1 and totals["survey_score_sum"] == 4


def test_a_number_long_after_the_survey_is_not_an_answer(known: LocalStack) -> None:
    from chalicelib.store.models import MessageModel

    known.run_due(datetime(2026, 3, 3, 15, 0, tzinfo=UTC))
    clock.set_now(datetime(2026, 3, 20, 16, 0, tzinfo=UTC))
    assert b"Thank you" not in _text(known, "4", "SM" + "4" * 32)
    (msg,) = [m for m in MessageModel.scan() if m.channel == "sms"]
    assert msg.survey_score is None


def test_stop_is_applied_even_when_the_events_queue_refuses_it(known: LocalStack) -> None:
    from chalicelib import aws

    sqs = aws.client("sqs")

    from botocore.awsrequest import AWSResponse

    def refuse(**_: object) -> object:
        return (AWSResponse("https://sqs.local", 500, {}, None),
                {"Error": {"Code": "InternalError", "Message": "injected"}})

    sqs.meta.events.register("before-call.sqs.SendMessageBatch", refuse)
    try:
        clock.set_now(datetime(2026, 3, 2, 12, 0, tzinfo=UTC))
        record = known.twilio.simulate_inbound(PHONE, "STOP", "+15005550006", INBOUND)
    finally:
        sqs.meta.events.unregister("before-call.sqs.SendMessageBatch", refuse)
    assert record.error is None
    assert _consent("sms")["granted"] is False  # applied inline, nothing queued


def test_advanced_opt_out_keywords_are_honoured_in_any_language(known: LocalStack) -> None:
    # A custom opt-out keyword ("ARRET", configured in Twilio's Advanced Opt-Out) is
    # no keyword of ours: Twilio's OptOutType says what it is.
    clock.set_now(datetime(2026, 3, 2, 12, 0, tzinfo=UTC))
    assert b"<Message>" not in _text(known, "Arrêt", "SM" + "c" * 32, OptOutType="STOP")
    known.pump("events", "ingest")
    assert (_consent("sms")["granted"], _consent("sms")["source"]) == (False, "sms:STOP")
    clock.set_now(datetime(2026, 3, 2, 13, 0, tzinfo=UTC))
    _text(known, "OUI", "SM" + "d" * 32, OptOutType="START")
    known.pump("events", "ingest")
    assert (_consent("sms")["granted"], _consent("sms")["source"]) == (True, "sms:OUI")
    # Twilio has answered HELP itself: no second reply.
    assert b"<Message>" not in _text(known, "AIDE", "SM" + "e" * 32, OptOutType="HELP")


def test_stop_from_a_customer_with_a_long_id_withdraws_consent(known: LocalStack) -> None:
    """The consent event's id holds the customer's: with an id of 480 characters (the
    envelope takes up to 512) it was too long, dead-lettered, and consent stayed."""
    long_id = "c-" + "x" * 478
    event = load_event("order_delivered")
    event["id"] = "evt-long-id"
    event["customer"] = {**event["customer"], "id": long_id}
    known.ingest([event])
    clock.set_now(datetime(2026, 3, 2, 12, 0, tzinfo=UTC))
    record = known.twilio.simulate_inbound(PHONE, "STOP", "+15005550006", INBOUND)
    assert record.error is None
    known.pump("events", "ingest")
    for cid in ("c-42", long_id):
        consent = CustomerModel.get(cid).profile["consent"]["sms"]
        assert (consent["granted"], consent["source"]) == (False, "sms:STOP"), cid


def test_a_webhook_signed_with_a_webhook_settings_shared_key(known: LocalStack) -> None:
    """A Twilio Webhook Rule may sign Aftercare's URLs with a Webhook Setting's shared
    key (HMAC-SHA256, named by X-Twilio-Webhooks-Signature-Settings): every such
    webhook was refused (403), inbound STOPs lost with them (session 15)."""
    import json

    from twilio.request_validator import HMAC_SHA256, RequestValidator

    from chalicelib import aws, settings
    from chalicelib.local.stack import TWILIO_AUTH_TOKEN

    shared = "s" * 40
    params = {"MessageSid": "SM" + "d" * 32, "From": PHONE, "To": "+15005550006",
              "Body": "STOP", "AccountSid": known.twilio.account_sid}
    sha256 = RequestValidator(shared).compute_signature(INBOUND, params, HMAC_SHA256)
    headers = {"Content-Type": "application/x-www-form-urlencoded",
               "X-Twilio-Signature": sha256,
               "X-Twilio-Webhooks-Signature-Settings":
                   "key=webhooks_sharedkey_01,algorithm=HMAC_SHA256"}

    def post(**changed: str) -> int:
        reply = known.client.http.post("/webhooks/twilio/inbound",
                                       headers={**headers, **changed}, body=urlencode(params))
        return int(reply.status_code)

    # Not configured yet: 503 naming the secret's field (never checked against "").
    assert post() == 503
    aws.client("secretsmanager").put_secret_value(
        SecretId=settings.load().twilio_secret, SecretString=json.dumps({
            "account_sid": known.twilio.account_sid, "auth_token": TWILIO_AUTH_TOKEN,
            "webhook_shared_key": shared}))
    aws.reset()
    # The auth token's SHA-1 signature does not pass with the header, nor a SHA-1 of
    # the shared key, nor a SHA-256 of the auth token, nor an unknown algorithm.
    assert post(**{"X-Twilio-Signature": known.twilio.sign(INBOUND, params)}) == 403
    assert post(**{"X-Twilio-Signature": RequestValidator(shared).compute_signature(
        INBOUND, params)}) == 403
    assert post(**{"X-Twilio-Signature": RequestValidator(TWILIO_AUTH_TOKEN)
                   .compute_signature(INBOUND, params, HMAC_SHA256)}) == 403
    assert post(**{"X-Twilio-Webhooks-Signature-Settings": "key=k,algorithm=HMAC_MD5"}) == 403
    assert post() == 200
    known.pump("events", "ingest")
    assert _consent("sms")["granted"] is False
    # Without the header, the auth token's signature still passes.
    headers.pop("X-Twilio-Webhooks-Signature-Settings")
    assert post(**{"X-Twilio-Signature": known.twilio.sign(INBOUND, params)}) == 200
