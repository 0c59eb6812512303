"""Free-text SMS replies (docs/api.md, inbound route): recorded on the SMS they answer,
counted once per message in ``replied``, shown by ``aftercare report``.

Everything goes through the real inbound route (``chalice.test.Client``, signed with
twilio's ``RequestValidator``), the real sender on moto and the local Twilio server.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from chalicelib import clock
from chalicelib.local.stack import LocalStack
from chalicelib.store.models import MessageModel
from chalicelib.tracking import replies
from chalicelib.tracking.report import format_table, read_campaign
from tests.conftest import ROOT, load_event
from tests.integration.test_audit_stats import (
    DELIVERED,
    PHONE,
    SMS_DAY,
    SMS_DUE,
    first_write_runs,
    rows,
    sms_messages,
    text_back,
    write_campaigns,
)

SECOND_DUE = SMS_DUE + timedelta(days=1)  # P3D at 10:00 New York


def _step(step_id: str, after: str, **extra: Any) -> dict[str, Any]:
    return {"id": step_id, "after": after, "at": "10:00", "channel": "sms",
            "template": "checkin", "expire_after": "P2D", **extra}


@pytest.fixture
def texted(stack: LocalStack, tmp_path: Path) -> LocalStack:
    """c-42 got two SMS: ``first`` (P2D, a CSAT survey) and ``second`` (P3D, none)."""
    folder = write_campaigns(tmp_path / "c", *(
        {"id": cid, "name": cid, "trigger": {"event": "order.delivered"}, "steps": [step]}
        for cid, step in (("first", _step("ask", "P2D", survey="csat")),
                          ("second", _step("tip", "P3D")))))
    stack.push_campaigns(folder, ROOT / "templates")
    clock.set_now(DELIVERED)
    stack.ingest([load_event("order_delivered")])
    stack.run_due(SMS_DUE)
    stack.run_due(SECOND_DUE)
    assert len(stack.twilio.messages) == 2
    clock.set_now(SECOND_DUE + timedelta(hours=1))
    return stack


def _message(campaign: str) -> MessageModel:
    (msg,) = sms_messages(campaign)
    return MessageModel.get(msg.message_id, consistent_read=True)


def _replied(campaign: str) -> int:
    return sum(r.get("replied", 0) for r in rows(campaign).values())


def test_a_free_text_reply_is_recorded_on_the_latest_sms_and_counted_once(
        texted: LocalStack) -> None:
    assert text_back(texted, "It arrived broken :(").endswith(b"<Response></Response>")
    msg = _message("second")
    assert (msg.reply, msg.reply_at) == ("It arrived broken :(", clock.iso(clock.now()))
    assert len(msg.reply_sids) == 1
    assert rows("second")[("-", "treatment", msg.decided_at[:10])]["replied"] == 1
    assert _message("first").reply is None and _replied("first") == 0
    clock.set_now(clock.now() + timedelta(minutes=5))
    text_back(texted, "Never mind, it works")
    msg = _message("second")
    assert msg.reply == "Never mind, it works" and len(msg.reply_sids) == 2
    assert _replied("second") == 1  # messages replied to, not replies


def test_the_same_inbound_webhook_delivered_twice_is_recorded_once(texted: LocalStack) -> None:
    from chalicelib.tracking.replies import record_reply

    text_back(texted, "thanks")
    msg = _message("second")
    (sid,) = msg.reply_sids
    assert record_reply(msg.message_id, "thanks", sid, "2026-03-04T16:00:00Z") == "duplicate"
    assert len(_message("second").reply_sids) == 1 and _replied("second") == 1


def test_a_reply_after_an_undelivered_sms_goes_to_the_one_before(
        stack: LocalStack, tmp_path: Path) -> None:
    folder = write_campaigns(tmp_path / "c", *(
        {"id": cid, "name": cid, "trigger": {"event": "order.delivered"}, "steps": [step]}
        for cid, step in (("first", _step("ask", "P2D")), ("second", _step("tip", "P3D")))))
    stack.push_campaigns(folder, ROOT / "templates")
    clock.set_now(DELIVERED)
    stack.ingest([load_event("order_delivered")])
    stack.run_due(SMS_DUE)
    stack.twilio.deliver_callbacks()
    stack.twilio.undeliverable.add(PHONE)
    stack.run_due(SECOND_DUE)
    stack.twilio.deliver_callbacks()
    assert _message("second").status == "undelivered"
    clock.set_now(SECOND_DUE + timedelta(hours=1))
    text_back(stack, "who is this?")
    assert _message("first").reply == "who is this?"
    assert _message("second").reply is None
    assert (_replied("first"), _replied("second")) == (1, 0)


def test_a_reply_after_the_window_or_from_an_unknown_phone_records_nothing(
        texted: LocalStack) -> None:
    text_back(texted, "hello?", sender="+14155559999")
    clock.set_now(SECOND_DUE + replies.REPLY_WINDOW + timedelta(minutes=1))
    text_back(texted, "late reply")
    assert _message("first").reply is None and _message("second").reply is None
    assert _replied("first") == _replied("second") == 0


def test_a_number_answers_a_survey_and_is_a_reply_without_one(texted: LocalStack) -> None:
    assert b"Thank you" in text_back(texted, "4")
    first = _message("first")
    assert first.survey_score == 4 and first.reply is None  # an answer, not a reply
    assert _replied("first") == 0
    # Past the survey window (7 days from the survey SMS) a number is just a reply,
    # to the latest SMS still in the reply window.
    clock.set_now(SMS_DUE + timedelta(days=7, hours=1))
    assert b"Thank you" not in text_back(texted, "10")
    assert _message("second").reply == "10" and _replied("second") == 1


@pytest.mark.parametrize("body", ["STOP", "HELP", "start", "   "])
def test_keywords_and_blank_messages_are_not_replies(texted: LocalStack, body: str) -> None:
    text_back(texted, body)
    assert _message("second").reply is None and _replied("second") == 0


def test_a_long_reply_is_kept_to_the_first_1600_characters(texted: LocalStack) -> None:
    text_back(texted, "é" * 2000)
    assert _message("second").reply == "é" * replies.MAX_REPLY_CHARS


def test_replies_past_the_cap_are_not_recorded(texted: LocalStack,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(replies, "MAX_REPLIES", 2)
    for body in ("one", "two", "three"):
        text_back(texted, body)
    msg = _message("second")
    assert (msg.reply, len(msg.reply_sids)) == ("two", 2)


def test_two_replies_racing_count_the_message_once(
        texted: LocalStack, monkeypatch: pytest.MonkeyPatch) -> None:
    first_write_runs(monkeypatch, lambda: text_back(texted, "first"))
    text_back(texted, "second")
    msg = _message("second")
    assert len(msg.reply_sids) == 2 and _replied("second") == 1


def test_reply_texts_and_phones_are_never_logged(
        texted: LocalStack, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="chalicelib")
    text_back(texted, "my address is 5 Elm St")
    ours = [r for r in caplog.records if r.name.startswith("chalicelib")]
    logged = json.dumps([{**r.__dict__, "msg": r.getMessage()} for r in ours], default=str)
    assert "Elm St" not in logged and PHONE not in logged
    assert any(getattr(r, "result", None) == "recorded" for r in ours)


def test_an_erased_customer_s_replies_are_not_recorded(texted: LocalStack) -> None:
    from chalicelib.pipeline.erasure import erase

    assert erase(["c-42"]).messages == 2
    text_back(texted, "still there?")
    assert not list(MessageModel.scan())
    assert _replied("second") == 0


def test_the_report_shows_replies_and_the_reply_rate_of_sms_campaigns(
        texted: LocalStack) -> None:
    from datetime import date

    texted.twilio.deliver_callbacks()
    text_back(texted, "great, thanks")
    definition = {"steps": [{"channel": "sms"}]}
    day = date.fromisoformat(SMS_DAY)
    report = read_campaign("second", [definition], day, day + timedelta(days=2))
    (arm,) = report.arms
    assert (arm.counts["replied"], arm.rates["reply_rate"]) == (1, 1.0)
    assert arm.rates["open_rate"] is None  # SMS only: no opens
    table = format_table(report)
    assert "replied" in table and "reply%" in table and "100.0%" in table
    email = read_campaign("second", [{"steps": [{"channel": "email"}]}], day,
                          day + timedelta(days=2))
    assert email.arms[0].rates["reply_rate"] is None


def test_a_reply_racing_an_erasure_never_writes_the_message_again(
        texted: LocalStack, monkeypatch: pytest.MonkeyPatch) -> None:
    doomed = _message("second")
    first_write_runs(monkeypatch, doomed.delete)  # gone between the read and the write
    text_back(texted, "delete my data please")
    assert [m.campaign_id for m in MessageModel.scan()] == ["first"]
    assert _replied("second") == 0


def test_a_reply_that_cannot_be_recorded_still_gets_its_twiml(
        texted: LocalStack, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    def throttled(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("ProvisionedThroughputExceededException")

    monkeypatch.setattr(replies, "record_reply", throttled)
    caplog.set_level(logging.INFO, logger="chalicelib")
    assert text_back(texted, "hello there").endswith(b"<Response></Response>")
    (record,) = [r for r in caplog.records if r.getMessage() == "sms reply not recorded"]
    assert record.error == "RuntimeError" and record.message_id  # type: ignore[attr-defined]
    assert "hello there" not in json.dumps(record.__dict__, default=str)


def test_a_reply_while_the_latest_sms_is_in_flight_answers_the_one_before(
        texted: LocalStack) -> None:
    second = _message("second")
    second.update(actions=[MessageModel.status.set("sending")])  # claimed, not yet sent
    text_back(texted, "ok thanks")
    assert _message("first").reply == "ok thanks" and _message("second").reply is None


def test_a_number_answers_the_latest_survey_that_arrived(
        slice_stack: LocalStack) -> None:
    """A survey SMS Twilio refused never asked anything: a number texted back then
    answers the survey before it (session 15: it was recorded on the failed one)."""
    from tests.integration.test_audit_stats import text_back

    clock.set_now(datetime(2026, 3, 1, 14, 3, tzinfo=UTC))
    slice_stack.ingest([load_event("order_delivered")])
    second = load_event("order_delivered")
    second["id"], second["order"]["id"] = "evt-0002", "o-10"
    second["occurred_at"] = "2026-03-02T14:02:00Z"
    clock.set_now(datetime(2026, 3, 2, 14, 3, tzinfo=UTC))
    slice_stack.ingest([second])
    slice_stack.run_due(datetime(2026, 3, 3, 15, 0, tzinfo=UTC))  # the first check-in
    slice_stack.twilio.fail_next(400, 21211)  # the second: an invalid number, refused
    slice_stack.run_due(datetime(2026, 3, 4, 15, 0, tzinfo=UTC))
    surveys = sorted((m for m in MessageModel.scan() if m.survey_kind),
                     key=lambda m: str(m.decided_at))
    assert [m.status for m in surveys] == ["sent", "failed"]
    clock.set_now(datetime(2026, 3, 4, 16, 0, tzinfo=UTC))
    assert b"Thank you" in text_back(slice_stack, "4")
    answered = {m.message_id: m.survey_score for m in MessageModel.scan() if m.survey_kind}
    assert answered == {surveys[0].message_id: 4, surveys[1].message_id: None}
