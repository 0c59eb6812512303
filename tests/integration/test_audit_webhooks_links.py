"""Audit of the webhooks and signed links: Twilio signatures, status history,
STOP/START keywords, survey replies, unsubscribe and survey links, SES events and
what the logs carry.

Every case goes through the real handlers (``chalice.test.Client``), moto, the
local Twilio server's real ``RequestValidator`` signatures and real-shaped SES
events on the ses-events queue. A defect is kept as a strict xfail whose reason
says what is wrong; the plain tests hold behaviour that was checked and is right.
"""

from __future__ import annotations

import json
import logging
import re
import string
from datetime import UTC, datetime, timedelta
from itertools import count
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from chalicelib import aws, clock, settings
from chalicelib.local.stack import LINK_KEY, LocalStack
from chalicelib.pipeline.stats import stats_totals
from chalicelib.store import suppression
from chalicelib.store.models import CustomerModel, MessageModel, SuppressionModel
from chalicelib.tracking import links
from tests.conftest import FIXTURES, ROOT, load_event

PHONE = "+14155550123"
PHONE2 = "+14155550188"
EMAIL = "ana@example.com"
TWILIO_NUMBER = "+15005550006"
FORM = "application/x-www-form-urlencoded"
INBOUND_PATH = "/webhooks/twilio/inbound"
STATUS_PATH = "/webhooks/twilio/status"
DELIVERED = datetime(2026, 3, 1, 14, 3, tzinfo=UTC)
SMS_DUE = datetime(2026, 3, 3, 15, 0, tzinfo=UTC)  # the check-in: P2D at 10:00 New York
EMAIL_DUE = datetime(2026, 3, 8, 13, 30, tzinfo=UTC)  # the tip: P7D at 09:30 New York
LATER = datetime(2026, 3, 9, 9, 0, tzinfo=UTC)

_SIDS = count(1)


# -- helpers ----------------------------------------------------------------------------


def _sid() -> str:
    return f"SM{next(_SIDS):032x}"


def _url(path: str) -> str:
    return settings.load().public_base_url + path


def _pairs(params: dict[str, Any]) -> list[tuple[str, str]]:
    """Form fields in order; a list value is a field given once per value."""
    return [(k, v) for k, vs in params.items() for v in (vs if isinstance(vs, list) else [vs])]


def _sign(url: str, pairs: list[tuple[str, str]]) -> str:
    """``X-Twilio-Signature`` as Twilio computes it: twilio's ``RequestValidator`` with
    the account's auth token, over every value of every field."""
    from twilio.request_validator import RequestValidator

    from chalicelib.api.webhooks import FormParams
    from chalicelib.local.stack import TWILIO_AUTH_TOKEN

    form = FormParams()
    for name, value in pairs:
        form.setdefault(name, []).append(value)
    return str(RequestValidator(TWILIO_AUTH_TOKEN).compute_signature(url, form))


def _signed_post(stack: LocalStack, path: str, params: dict[str, Any], *,
                 url: str | None = None, query: str = "") -> Any:
    """POST a form signed over ``url`` (default: the configured URL of ``path``, with
    ``query``, which goes along as the request's query string)."""
    target = path + (f"?{query}" if query else "")
    signature = _sign(url or settings.load().public_base_url + target, _pairs(params))
    return stack.client.http.post(target, body=urlencode(_pairs(params)).encode(), headers={
        "Content-Type": FORM, "X-Twilio-Signature": signature})


def _inbound(stack: LocalStack, body: str, *, sender: str = PHONE, sid: str | None = None,
             **extra: str) -> Any:
    params = {"ToCountry": "US", "SmsMessageSid": sid or _sid(), "NumMedia": "0",
              "SmsStatus": "received", "Body": body, "To": TWILIO_NUMBER, "From": sender,
              "AccountSid": stack.twilio.account_sid, "ApiVersion": "2010-04-01", **extra}
    params["MessageSid"] = params["SmsMessageSid"]
    return _signed_post(stack, INBOUND_PATH, params)


def _text(stack: LocalStack, body: str, **kw: Any) -> bytes:
    reply = _inbound(stack, body, **kw)
    assert reply.status_code == 200, (body, reply.body)
    text: bytes = reply.body
    return text


def _consent(customer_id: str, channel: str) -> dict[str, Any]:
    record: dict[str, Any] = CustomerModel.get(customer_id).profile["consent"][channel]
    return record


def _entry(channel: str, address: str) -> SuppressionModel | None:
    try:
        return SuppressionModel.get(suppression.address_key(channel, address))
    except SuppressionModel.DoesNotExist:
        return None


def _messages(customer_id: str, channel: str) -> list[MessageModel]:
    return sorted((m for m in MessageModel.scan()
                   if m.customer_id == customer_id and m.channel == channel),
                  key=lambda m: m.decided_at)


def _delivery(customer_id: str, when: datetime, **customer: Any) -> dict[str, Any]:
    event = load_event("order_delivered")
    event["id"] = f"evt-{customer_id}-{when:%m%d%H%M}"
    event["occurred_at"] = clock.iso(when)
    event["customer"] = {**event["customer"], "id": customer_id, **customer}
    event["order"] = {**event["order"], "id": f"o-{customer_id}-{when:%m%d}"}
    return event


def _token(payload: dict[str, Any]) -> str:
    return links.sign(payload, LINK_KEY.encode())


def _future() -> int:
    return int(clock.real_now().timestamp()) + 86_400


def _email_token(stack: LocalStack) -> str:
    """The unsubscribe token of the one email sent, as its body carries it."""
    (email,) = stack.sent_emails()
    found = re.search(r"/l/unsubscribe/([\w.-]+)", email["body"])
    assert found is not None
    return found.group(1)


def _unsubscribe(stack: LocalStack, token: str, **kw: Any) -> Any:
    headers = kw.pop("headers", {"Content-Type": FORM})
    return stack.client.http.post(f"/l/unsubscribe/{token}", headers=headers,
                                  body=kw.pop("body", b"List-Unsubscribe=One-Click"))


def _ses(stack: LocalStack, name: str, msg: MessageModel, **changes: Any) -> str:
    """A real-shaped SES event for ``msg`` through the ses-events queue; its result."""
    event = json.loads((FIXTURES / "ses_events" / f"{name}.json").read_text()
                       .replace("MESSAGE_ID", str(msg.provider_id))
                       .replace("TAGGED_ID", msg.message_id))
    for path, value in changes.items():
        *parents, leaf = path.split("__")
        node = event
        for part in parents:
            node = node[part]
        node[leaf] = value
    sqs = aws.client("sqs")
    sqs.send_message(QueueUrl=aws.queue_url(settings.resource_name("ses-events")),
                     MessageBody=json.dumps(event))
    (summary,) = stack.pump("ses-events", "ses_events")
    assert summary["processed"] == 1 and summary["dead_lettered"] == 0, summary
    (result,) = summary["results"]
    return str(result)


@pytest.fixture
def known(slice_stack: LocalStack) -> LocalStack:
    """c-42 enrolled by a delivery: an SMS check-in with a CSAT survey at SMS_DUE, an
    email tip at EMAIL_DUE."""
    clock.set_now(DELIVERED)
    slice_stack.ingest([load_event("order_delivered")])
    return slice_stack


def _survey_campaigns(tmp: Path) -> Path:
    folder = tmp / "survey_campaigns"
    folder.mkdir()
    step = {"after": "P2D", "at": "10:00", "channel": "sms", "expire_after": "P2D"}
    (folder / "nps.json").write_text(json.dumps({
        "id": "nps-audit", "name": "NPS by SMS", "trigger": {"event": "order.delivered"},
        "steps": [{**step, "id": "nps", "template": "nps", "survey": "nps"}]}))
    (folder / "ces.json").write_text(json.dumps({
        "id": "ces-audit", "name": "CES by SMS", "trigger": {"event": "order.placed"},
        "steps": [{**step, "id": "ces", "template": "checkin", "survey": "ces"}]}))
    return folder


@pytest.fixture
def surveyed(stack: LocalStack, tmp_path: Path) -> LocalStack:
    """c-42 (PHONE) got an NPS survey SMS, c-88 (PHONE2) a CES one, both at SMS_DUE."""
    stack.push_campaigns(_survey_campaigns(tmp_path), ROOT / "templates")
    clock.set_now(DELIVERED)
    placed = load_event("order_placed")
    placed.update(id="evt-c88", occurred_at=clock.iso(DELIVERED))
    placed["customer"] = {**placed["customer"], "id": "c-88", "phone": PHONE2,
                          "email": "c88@example.com"}
    stack.ingest([load_event("order_delivered"), placed])
    stack.run_due(SMS_DUE)
    assert sorted(m["to"] for m in stack.twilio.messages) == sorted([PHONE, PHONE2])
    clock.set_now(datetime(2026, 3, 3, 16, 0, tzinfo=UTC))
    return stack


def _survey_msg(customer_id: str) -> MessageModel:
    (msg,) = _messages(customer_id, "sms")
    return msg


# -- Twilio signatures ------------------------------------------------------------------


def test_inbound_signature_must_be_over_the_configured_url_exactly(known: LocalStack) -> None:
    base = _url(INBOUND_PATH)  # http://127.0.0.1:8000/webhooks/twilio/inbound
    wrong = [base + "/", base.replace("http://", "https://"),
             base.replace("127.0.0.1", "hooks.example.com"),
             base.replace("/webhooks/", "/api/webhooks/"), base + "?x=1"]
    params = {"MessageSid": _sid(), "From": PHONE, "To": TWILIO_NUMBER, "Body": "STOP",
              "AccountSid": known.twilio.account_sid}
    for url in wrong:
        reply = _signed_post(known, INBOUND_PATH, params, url=url)
        assert reply.status_code == 403, url
    known.pump("events", "ingest")
    assert _consent("c-42", "sms")["granted"] is True and _entry("sms", PHONE) is None
    # The same form signed over the configured URL is honoured (Twilio may add a
    # charset to the content type).
    signature = known.twilio.sign(base, params)
    reply = known.client.http.post(INBOUND_PATH, body=urlencode(params), headers={
        "Content-Type": f"{FORM}; charset=UTF-8", "X-Twilio-Signature": signature})
    assert reply.status_code == 200
    known.pump("events", "ingest")
    assert _consent("c-42", "sms")["granted"] is False


def test_repeated_form_fields_and_unicode_are_signed_and_checked_whole(
        known: LocalStack) -> None:
    clock.set_now(LATER)
    # Every value of a repeated field is signed: adding one breaks the signature.
    params: dict[str, Any] = {"MessageSid": _sid(), "From": PHONE, "To": TWILIO_NUMBER,
                              "Body": ["Stöp ✋ — merci", "x"], "AccountSid": "AC1"}
    good = _signed_post(known, INBOUND_PATH, params)
    assert good.status_code == 200
    signature = _sign(_url(INBOUND_PATH), _pairs(params))
    tampered = urlencode([*_pairs(params), ("Body", "STOP")])
    refused = known.client.http.post(INBOUND_PATH, body=tampered.encode(), headers={
        "Content-Type": FORM, "X-Twilio-Signature": signature})
    assert refused.status_code == 403
    # A unicode body signed as Twilio signs it is read: "STOP ✋" is an opt-out,
    # "Stöp" is no keyword of ours.
    known.pump("events", "ingest")
    assert _consent("c-42", "sms")["granted"] is True
    assert _text(known, "STOP ✋ 🙏") is not None
    known.pump("events", "ingest")
    assert _consent("c-42", "sms")["granted"] is False


def test_a_status_callback_signature_cannot_be_moved_to_another_message(
        known: LocalStack) -> None:
    known.run_due(SMS_DUE)
    (msg,) = _messages("c-42", "sms")
    sid = str(msg.provider_id)
    params = {"AccountSid": known.twilio.account_sid, "MessageSid": sid,
              "MessageStatus": "delivered"}
    query = f"m={msg.message_id}"
    signature = known.twilio.sign(f"{_url(STATUS_PATH)}?{query}", params)
    other_sid = {**params, "MessageSid": "SM" + "9" * 32}
    moved = known.client.http.post(f"{STATUS_PATH}?{query}", body=urlencode(other_sid),
                                   headers={"Content-Type": FORM, "X-Twilio-Signature": signature})
    assert moved.status_code == 403
    assert MessageModel.get(msg.message_id).status == "sent"
    ok = known.client.http.post(f"{STATUS_PATH}?{query}", body=urlencode(params),
                                headers={"Content-Type": FORM, "X-Twilio-Signature": signature})
    assert (ok.status_code, json.loads(ok.body)) == (200, {"result": "recorded"})


# -- status history ---------------------------------------------------------------------


def test_out_of_order_callbacks_never_regress_and_count_once(known: LocalStack) -> None:
    known.run_due(SMS_DUE)
    (msg,) = _messages("c-42", "sms")
    sid, query = str(msg.provider_id), f"m={msg.message_id}"

    def report(status: str, **extra: str) -> str:
        params = {"AccountSid": known.twilio.account_sid, "MessageSid": sid,
                  "MessageStatus": status, **extra}
        reply = _signed_post(known, STATUS_PATH, params, query=query)
        assert reply.status_code == 200
        return str(json.loads(reply.body)["result"])

    results = [report(s) for s in ("delivered", "queued", "sent", "DELIVERED", "accepted",
                                   "delivered")]
    assert results == ["recorded", "recorded", "recorded", "duplicate", "recorded", "duplicate"]
    after = MessageModel.get(msg.message_id, consistent_read=True)
    assert after.status == "delivered"
    reports = [e["status"] for e in after.history if e.get("source") == "twilio"]
    assert reports == ["delivered", "queued", "sent", "accepted"]
    totals = stats_totals(msg.campaign_id, msg.variant, "treatment", msg.decided_at[:10])
    assert totals.get("delivered") == 1 and totals.get("failed") is None


def test_undelivered_and_failed_in_either_order_count_one_failure(known: LocalStack) -> None:
    known.run_due(SMS_DUE)
    (msg,) = _messages("c-42", "sms")
    query = f"m={msg.message_id}"
    for status, code in (("failed", "30008"), ("sent", ""), ("undelivered", "30003")):
        params = {"AccountSid": known.twilio.account_sid, "MessageSid": str(msg.provider_id),
                  "MessageStatus": status, "ErrorCode": code}
        assert _signed_post(known, STATUS_PATH, params, query=query).status_code == 200
    after = MessageModel.get(msg.message_id, consistent_read=True)
    assert after.status in ("failed", "undelivered") and after.status != "sent"
    totals = stats_totals(msg.campaign_id, msg.variant, "treatment", msg.decided_at[:10])
    assert totals.get("failed") == 1 and totals.get("delivered") is None


# -- STOP / START / HELP ----------------------------------------------------------------


def test_every_default_keyword_in_any_case_and_punctuation_changes_consent(
        known: LocalStack) -> None:
    at = count(0)

    def tick() -> None:
        clock.set_now(datetime(2026, 3, 2, 0, next(at), tzinfo=UTC))

    for body, keyword in [("stop", "STOP"), ("  Stop  ", "STOP"), ("STOP!!!", "STOP"),
                          ("stopall", "STOPALL"), ("Unsubscribe.", "UNSUBSCRIBE"),
                          ("cancel", "CANCEL"), ("End", "END"), ("quit\n", "QUIT"),
                          ("OptOut", "OPTOUT"), ("revoke", "REVOKE")]:
        tick()
        _text(known, body)
        known.pump("events", "ingest")
        record = _consent("c-42", "sms")
        assert (record["granted"], record["source"]) == (False, f"sms:{keyword}"), body
        entry = _entry("sms", PHONE)
        assert entry is not None and entry.source == f"sms:{keyword}" and not entry.lifted_at
        tick()
        _text(known, " start. " if keyword != "QUIT" else "unstop")
        known.pump("events", "ingest")
        assert _consent("c-42", "sms")["granted"] is True, body
        lifted = _entry("sms", PHONE)
        assert lifted is not None and lifted.lifted_at is not None


def test_other_language_keywords_count_only_when_twilio_names_them(known: LocalStack) -> None:
    clock.set_now(datetime(2026, 3, 2, 12, 0, tzinfo=UTC))
    assert b"<Message>" not in _text(known, "PARAR")  # no Advanced Opt-Out: not ours
    known.pump("events", "ingest")
    assert _consent("c-42", "sms")["granted"] is True and _entry("sms", PHONE) is None
    _text(known, "Parar", OptOutType="STOP")
    known.pump("events", "ingest")
    assert (_consent("c-42", "sms")["granted"], _consent("c-42", "sms")["source"]) == (
        False, "sms:PARAR")
    entry = _entry("sms", PHONE)
    assert entry is not None and entry.source == "sms:PARAR"
    assert b"Reply STOP" in _text(known, "info?")  # our HELP keywords, without Twilio's


def test_stop_from_a_number_two_customers_share_withdraws_both(known: LocalStack) -> None:
    clock.set_now(datetime(2026, 3, 1, 15, 0, tzinfo=UTC))
    # c-77 gave the same number in national form: ingest stores it as E.164.
    known.ingest([_delivery("c-77", datetime(2026, 3, 1, 14, 30, tzinfo=UTC),
                            phone="(415) 555-0123")])
    assert CustomerModel.get("c-77").phone == PHONE
    clock.set_now(datetime(2026, 3, 2, 12, 0, tzinfo=UTC))
    _text(known, "Stop")
    known.pump("events", "ingest")
    assert [_consent(c, "sms")["granted"] for c in ("c-42", "c-77")] == [False, False]
    known.run_due(datetime(2026, 3, 3, 15, 30, tzinfo=UTC))
    assert known.twilio.messages == []
    clock.set_now(datetime(2026, 3, 3, 16, 0, tzinfo=UTC))
    _text(known, "START")
    known.pump("events", "ingest")
    assert [_consent(c, "sms")["granted"] for c in ("c-42", "c-77")] == [True, True]


def test_a_retried_stop_after_a_start_changes_nothing(known: LocalStack) -> None:
    stop_sid = _sid()
    clock.set_now(datetime(2026, 3, 2, 12, 0, tzinfo=UTC))
    _text(known, "STOP", sid=stop_sid)
    known.pump("events", "ingest")
    clock.set_now(datetime(2026, 3, 2, 12, 5, tzinfo=UTC))
    _text(known, "START")
    known.pump("events", "ingest")
    clock.set_now(datetime(2026, 3, 2, 12, 6, tzinfo=UTC))
    _text(known, "STOP", sid=stop_sid)  # Twilio retries the first webhook
    known.pump("events", "ingest")
    assert _consent("c-42", "sms")["granted"] is True  # the replay was deduped here...
    known.run_due(SMS_DUE)
    (msg,) = _messages("c-42", "sms")
    assert (msg.outcome, msg.reason) == ("send", None), msg.reason  # ...but not on the list
    assert [m["to"] for m in known.twilio.messages] == [PHONE]


# -- survey replies by SMS --------------------------------------------------------------


def test_nps_and_ces_replies_are_recorded_once_on_their_own_scale(
        surveyed: LocalStack) -> None:
    assert b"from 0 to 10" in _text(surveyed, "11")
    assert b"from 0 to 10" in _text(surveyed, "12!")
    assert b"Thank you" not in _text(surveyed, "nine")
    assert b"Thank you" not in _text(surveyed, "100")  # three digits: no score
    assert _survey_msg("c-42").survey_score is None
    sid = _sid()
    assert b"Thank you" in _text(surveyed, " 10! ", sid=sid)
    assert b"Thank you" not in _text(surveyed, " 10! ", sid=sid)  # the webhook, retried
    assert b"Thank you" not in _text(surveyed, "3")  # a second answer changes nothing
    msg = _survey_msg("c-42")
    assert (msg.survey_kind, msg.survey_score) == ("nps", 10)
    totals = stats_totals("nps-audit", msg.variant, "treatment", msg.decided_at[:10])
    assert (totals.get("survey_responses"), totals.get("survey_score_sum"),
            totals.get("promoters"), totals.get("detractors")) == (1, 10, 1, None)

    assert b"from 1 to 7" in _text(surveyed, "8", sender=PHONE2)
    assert b"from 1 to 7" in _text(surveyed, "0", sender=PHONE2)
    assert b"Thank you" in _text(surveyed, " 7 ", sender=PHONE2)
    ces = _survey_msg("c-88")
    assert (ces.survey_kind, ces.survey_score) == ("ces", 7)


def test_an_nps_reply_of_spaced_digits_is_not_recorded_as_its_first_digit(
        surveyed: LocalStack) -> None:
    _text(surveyed, "1 0")
    assert _survey_msg("c-42").survey_score in (None, 10)


def test_a_negative_reply_is_out_of_range_not_a_score(known: LocalStack) -> None:
    known.run_due(SMS_DUE)
    clock.set_now(datetime(2026, 3, 3, 16, 0, tzinfo=UTC))
    _text(known, "-1")
    assert _messages("c-42", "sms")[0].survey_score is None


def test_a_number_after_a_message_without_a_survey_is_no_answer(known: LocalStack) -> None:
    known.run_due(EMAIL_DUE)  # the check-in (with a survey) has expired; the tip has none
    (sms,) = _messages("c-42", "sms")
    (email,) = _messages("c-42", "email")
    assert (sms.outcome, email.outcome) == ("expired", "send")
    clock.set_now(LATER)
    assert _text(known, "5") == _text(known, "Great, thanks")  # nothing to answer
    assert MessageModel.get(sms.message_id).survey_score is None
    assert MessageModel.get(email.message_id).survey_score is None
    # A number from a phone nobody has is no answer either.
    assert b"Thank you" not in _text(known, "5", sender="+14155550999")


# -- survey and unsubscribe links -------------------------------------------------------


def test_links_are_refused_when_expired_altered_or_for_another_route(
        known: LocalStack) -> None:
    known.run_due(SMS_DUE)
    (msg,) = _messages("c-42", "sms")
    now = int(clock.real_now().timestamp())
    expired_survey = _token({"m": msg.message_id, "k": "csat", "t": "survey", "exp": now - 1})
    expired_unsub = _token({"m": msg.message_id, "t": "unsubscribe", "exp": now - 1})
    unsub = _token({"m": msg.message_id, "t": "unsubscribe", "exp": _future()})
    survey = _token({"m": msg.message_id, "k": "csat", "t": "survey", "exp": _future()})
    body, mac = survey.split(".")
    other = links.sign({"m": "another-message", "k": "csat", "t": "survey", "exp": _future()},
                       LINK_KEY.encode()).split(".")[0]
    foreign = links.sign({"m": msg.message_id, "k": "csat", "t": "survey", "exp": _future()},
                         b"someone-elses-signing-key")
    no_kind = _token({"m": msg.message_id, "k": "stars", "t": "survey", "exp": _future()})
    survey_form = {"Content-Type": FORM}
    for token in (expired_survey, unsub, f"{other}.{mac}", foreign, no_kind, "", "a.b",
                  "%00.%00", body):
        assert known.client.http.get(f"/l/survey/{token}").status_code in (403, 404), token
        reply = known.client.http.post(f"/l/survey/{token}", headers=survey_form,
                                       body=b"score=5")
        assert reply.status_code in (403, 404), token
    for token in (expired_unsub, survey, f"{other}.{mac}", foreign):
        assert known.client.http.get(f"/l/unsubscribe/{token}").status_code == 404
        assert _unsubscribe(known, token).status_code == 404
    known.pump("events", "ingest")
    assert MessageModel.get(msg.message_id).survey_score is None
    assert _consent("c-42", "sms")["granted"] is True and _entry("sms", PHONE) is None
    # The genuine survey link works.
    assert known.client.http.post(f"/l/survey/{survey}", headers=survey_form,
                                  body=b"score=5").status_code == 200
    assert MessageModel.get(msg.message_id).survey_score == 5


def test_an_altered_token_is_refused(known: LocalStack) -> None:
    known.run_due(SMS_DUE)
    (msg,) = _messages("c-42", "sms")
    token = _token({"m": msg.message_id, "t": "unsubscribe", "exp": _future()})
    # 16 MAC bytes are 22 base64 characters: the last one's low 4 bits are unused.
    alphabet = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"
    flipped = token[:-1] + alphabet[alphabet.index(token[-1]) ^ 1]
    for altered in (token + "==", flipped):
        assert altered != token
        assert known.client.http.get(f"/l/unsubscribe/{altered}").status_code == 404, altered


def test_no_link_redirects_anywhere(known: LocalStack) -> None:
    """There is no click redirect route; links that carry a URL redirect nowhere."""
    known.run_due(SMS_DUE)
    (msg,) = _messages("c-42", "sms")
    evil = "https://evil.example/phish"
    unsub = _token({"m": msg.message_id, "t": "unsubscribe", "exp": _future(), "url": evil,
                    "redirect": evil})
    click = _token({"m": msg.message_id, "t": "click", "exp": _future(), "url": evil})
    replies = [
        known.client.http.get(f"/l/click/{click}?url={evil}"),
        known.client.http.get(f"/l/unsubscribe/{unsub}?next={evil}"),
        known.client.http.get(f"/l/survey/{click}?url={evil}"),
        _unsubscribe(known, unsub),
    ]
    for reply in replies:
        assert not 300 <= reply.status_code < 400
        assert "location" not in {k.lower() for k in reply.headers}
        assert evil.encode() not in reply.body
    assert replies[-1].status_code == 200  # the extra field does not stop the unsubscribe


def test_unsubscribe_get_and_head_change_nothing_one_click_post_does(
        known: LocalStack) -> None:
    known.run_due(EMAIL_DUE)
    token = _email_token(known)
    for _ in range(2):  # a mail scanner prefetches
        page = known.client.http.get(f"/l/unsubscribe/{token}")
        assert page.status_code == 200 and b"method=post" in page.body
    assert known.client.http.head(f"/l/unsubscribe/{token}").status_code in (200, 405)
    known.pump("events", "ingest")
    assert _consent("c-42", "email")["granted"] is True and _entry("email", EMAIL) is None
    # RFC 8058 allows the one-click POST as multipart/form-data too.
    clock.set_now(LATER)
    multipart = (b"--b\r\nContent-Disposition: form-data; name=\"List-Unsubscribe\"\r\n\r\n"
                 b"One-Click\r\n--b--\r\n")
    reply = _unsubscribe(known, token, body=multipart,
                         headers={"Content-Type": "multipart/form-data; boundary=b"})
    assert reply.status_code == 200
    known.pump("events", "ingest")
    assert (_consent("c-42", "email")["granted"], _consent("c-42", "email")["source"]) == (
        False, "email:unsubscribe-link")
    assert _consent("c-42", "sms")["granted"] is True  # only the link's channel
    entry = _entry("email", EMAIL)
    assert entry is not None and entry.source == "email:unsubscribe-link"


def test_a_real_unsubscribe_link_expires_after_its_ttl(known: LocalStack) -> None:
    known.run_due(EMAIL_DUE)
    token = _email_token(known)
    clock.set_now(EMAIL_DUE + links.LINK_TTL - timedelta(minutes=1))
    assert known.client.http.get(f"/l/unsubscribe/{token}").status_code == 200
    clock.set_now(EMAIL_DUE + links.LINK_TTL + timedelta(seconds=1))
    assert known.client.http.get(f"/l/unsubscribe/{token}").status_code == 404
    assert _unsubscribe(known, token).status_code == 404
    known.pump("events", "ingest")
    assert _consent("c-42", "email")["granted"] is True and _entry("email", EMAIL) is None


def test_double_unsubscribe_then_reopt_in_then_the_old_link_again(known: LocalStack) -> None:
    known.run_due(EMAIL_DUE)
    (email,) = _messages("c-42", "email")
    token = _email_token(known)
    clock.set_now(LATER)
    assert [_unsubscribe(known, token).status_code for _ in range(2)] == [200, 200]
    known.pump("events", "ingest")
    assert _consent("c-42", "email")["granted"] is False
    assert [e.address_key for e in SuppressionModel.scan()] == [email.recipient_key]
    # An explicit opt-in newer than the unsubscribe (a preference centre) brings the
    # emails back for this customer despite the list entry.
    clock.set_now(datetime(2026, 3, 10, 12, 0, tzinfo=UTC))
    optin = {"granted": True, "explicit": True, "at": "2026-03-10T12:00:00Z",
             "source": "preference-centre"}
    known.ingest([_delivery("c-42", datetime(2026, 3, 10, 11, 0, tzinfo=UTC),
                            consent={"sms": True, "email": optin})])
    assert _consent("c-42", "email")["granted"] is True
    known.run_due(datetime(2026, 3, 17, 13, 30, tzinfo=UTC))
    assert [m.outcome for m in _messages("c-42", "email")] == ["send", "send"]
    # The old link, clicked again later, unsubscribes again (not a duplicate).
    clock.set_now(datetime(2026, 3, 18, 9, 0, tzinfo=UTC))
    assert _unsubscribe(known, token).status_code == 200
    known.pump("events", "ingest")
    assert _consent("c-42", "email")["granted"] is False


# -- SES events ---------------------------------------------------------------------------


def test_a_complaint_about_a_shared_mailbox_suppresses_it_for_both_customers(
        known: LocalStack) -> None:
    clock.set_now(datetime(2026, 3, 1, 15, 0, tzinfo=UTC))
    known.ingest([_delivery("c-77", datetime(2026, 3, 2, 14, 2, tzinfo=UTC),
                            phone=PHONE2, email="Ana@Example.com")])
    known.run_due(EMAIL_DUE)
    (mine,) = _messages("c-42", "email")
    assert _ses(known, "complaint", mine,
                complaint__complainedRecipients=[{"emailAddress": "ANA@example.COM "}]
                ) == "recorded"
    known.pump("events", "ingest")
    assert (_consent("c-42", "email")["granted"], _consent("c-42", "email")["source"]) == (
        False, "email:complaint")
    assert _consent("c-77", "email")["granted"] is True  # their record is theirs...
    known.run_due(datetime(2026, 3, 9, 13, 30, tzinfo=UTC))
    (theirs,) = _messages("c-77", "email")
    assert theirs.outcome == "suppressed"  # ...but the mailbox is on the list
    assert theirs.reason is not None and "email:complaint" in theirs.reason
    assert len(known.sent_emails()) == 1


def test_a_complaint_for_a_message_we_no_longer_have_still_suppresses(
        known: LocalStack) -> None:
    known.run_due(EMAIL_DUE)
    (email,) = _messages("c-42", "email")
    email.delete()  # erased meanwhile
    assert _ses(known, "complaint", email) == "unknown"
    entry = _entry("email", EMAIL)
    assert entry is not None and entry.source == "email:complaint"


def test_a_transient_bounce_is_history_only_and_delivery_still_counts(
        known: LocalStack) -> None:
    known.run_due(EMAIL_DUE)
    (email,) = _messages("c-42", "email")
    assert _ses(known, "bounce_permanent", email, bounce__bounceType="Transient",
                bounce__bounceSubType="MailboxFull") == "recorded"
    after = MessageModel.get(email.message_id)
    assert after.status == "sent" and after.history[-1]["status"] == "bounced"
    assert _entry("email", EMAIL) is None
    assert _ses(known, "delivery", email) == "recorded"
    assert _ses(known, "delivery", email) == "duplicate"
    assert MessageModel.get(email.message_id).status == "delivered"
    totals = stats_totals(email.campaign_id, email.variant, "treatment",
                          email.decided_at[:10])
    assert totals.get("delivered") == 1 and totals.get("failed") is None


def test_a_bounce_after_the_delivery_moves_the_count_to_failed(known: LocalStack) -> None:
    """SES reports a Delivery, then (the receiving server bounced it later) a
    permanent Bounce: the message counted as delivered and failed both (session 15)."""
    known.run_due(EMAIL_DUE)
    (email,) = _messages("c-42", "email")
    day = email.decided_at[:10]
    assert _ses(known, "delivery", email) == "recorded"
    totals = stats_totals(email.campaign_id, email.variant, "treatment", day)
    assert (totals.get("delivered"), totals.get("failed")) == (1, None)
    assert _ses(known, "bounce_permanent", email) == "recorded"
    assert _ses(known, "bounce_permanent", email) == "duplicate"
    assert MessageModel.get(email.message_id).status == "undelivered"
    totals = stats_totals(email.campaign_id, email.variant, "treatment", day)
    assert (totals.get("delivered"), totals.get("failed")) == (0, 1)
    assert _ses(known, "delivery", email) == "duplicate"  # seen: changes nothing
    totals = stats_totals(email.campaign_id, email.variant, "treatment", day)
    assert (totals.get("delivered"), totals.get("failed")) == (0, 1)


# -- no PII in logs ---------------------------------------------------------------------


def _logged(records: list[logging.LogRecord]) -> str:
    parts = []
    for record in records:
        parts.append(record.getMessage())
        parts.append(repr({k: v for k, v in vars(record).items()
                           if k not in ("msg", "args")}))
    return "\n".join(parts)


def test_no_phone_email_or_body_in_the_logs(known: LocalStack,
                                            caplog: pytest.LogCaptureFixture) -> None:
    secret_text = "my new address is 12 Rua Augusta"
    with caplog.at_level(logging.DEBUG, logger="chalicelib"), \
            caplog.at_level(logging.INFO):
        known.twilio.undeliverable.add(PHONE)
        known.run_due(SMS_DUE)
        assert known.twilio.deliver_callbacks() == 3  # queued, sent, undelivered 30003
        known.run_due(EMAIL_DUE)
        clock.set_now(LATER)
        assert b"Thank you" in _text(known, "4")
        assert b"from 1 to 5" in _text(known, "9")
        _text(known, f"STOP {secret_text}")
        _text(known, "HELP")
        _text(known, f"hello {secret_text} {EMAIL}", sender="+14155550777")
        assert _inbound(known, "x", sender="").status_code == 400
        clock.set_now(datetime(2026, 3, 9, 10, 0, tzinfo=UTC))
        _text(known, "START")
        (email,) = _messages("c-42", "email")
        token = _email_token(known)
        assert _unsubscribe(known, token).status_code == 200
        assert known.client.http.get("/l/unsubscribe/x.y").status_code == 404
        _ses(known, "complaint", email)
        known.pump("events", "ingest")
    logged = _logged(caplog.records)
    assert caplog.records, "nothing was logged at all"
    for pii in (PHONE, PHONE.lstrip("+"), "4155550777", EMAIL, secret_text):
        assert pii not in logged, pii


