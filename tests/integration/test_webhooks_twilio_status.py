"""Twilio status callbacks, from the local Twilio server into the app, end to end.

A real SMS goes out through the pipeline; the local server posts Twilio-signed
callbacks (queued, sent, delivered) through ``chalice.test.Client`` into
``POST /webhooks/twilio/status``.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlencode

import pytest

from chalicelib import clock, settings
from chalicelib.local.stack import LocalStack
from chalicelib.pipeline.stats import stats_totals
from chalicelib.store.models import COUNTERS, MessageModel
from chalicelib.store.tx import RequiredConditionFailed, commit
from chalicelib.tracking.delivery import StatusReport, fold
from chalicelib.tracking.status_updates import record_report, report_transaction
from tests.conftest import load_event

PATH = "/webhooks/twilio/status"
FORM = "application/x-www-form-urlencoded"
DELIVERED_AT = datetime(2026, 3, 1, 14, 3, tzinfo=UTC)
CHECKIN_DUE = datetime(2026, 3, 3, 15, 0, tzinfo=UTC)
PHONE = "+14155550123"


def send_checkin(stack: LocalStack) -> MessageModel:
    """Ingest the delivery event and run the SMS check-in; the message record."""
    clock.set_now(DELIVERED_AT)
    stack.ingest([load_event("order_delivered")])
    stack.run_due(CHECKIN_DUE)
    assert len(stack.twilio.messages) == 1
    [msg] = [m for m in MessageModel.scan() if m.channel == "sms"]
    assert msg.status == "sent" and msg.provider_id == stack.twilio.messages[0]["sid"]
    return msg


def stats_of(msg: MessageModel) -> SimpleNamespace:
    totals = stats_totals(msg.campaign_id, msg.variant, "treatment", msg.decided_at[:10])
    return SimpleNamespace(**{name: totals.get(name) for name in COUNTERS})


def twilio_entries(msg: MessageModel) -> list[tuple[str, str, str | None]]:
    return [(e["status"], e["provider_id"], e["code"])
            for e in msg.history or [] if e.get("source") == "twilio"]


def callback_url() -> str:
    return settings.load().public_base_url + PATH


def status_params(stack: LocalStack, sid: str, status: str, **extra: str) -> dict[str, str]:
    return {"AccountSid": stack.twilio.account_sid, "ApiVersion": "2010-04-01",
            "MessageSid": sid, "SmsSid": sid, "MessageStatus": status, "SmsStatus": status,
            "To": PHONE, "From": "+15005550006", **extra}


def post(stack: LocalStack, params: dict[str, str], signature: str | None,
         content_type: str = FORM) -> Any:
    headers = {"Content-Type": content_type}
    if signature is not None:
        headers["X-Twilio-Signature"] = signature
    return stack.client.http.post(PATH, headers=headers, body=urlencode(params).encode())


def replay_callbacks(stack: LocalStack) -> list[Any]:
    """Post every callback the server delivered again, exactly as it was signed."""
    return [stack.client.http.post(PATH, headers=cb.headers, body=urlencode(cb.params).encode())
            for cb in stack.twilio.callbacks]


def test_callbacks_mark_the_message_delivered_and_count_once(slice_stack: LocalStack) -> None:
    msg = send_checkin(slice_stack)
    sid = msg.provider_id
    assert stats_of(msg).sent == 1 and stats_of(msg).delivered is None

    assert slice_stack.twilio.deliver_callbacks() == 3  # queued, sent, delivered
    assert [cb.error for cb in slice_stack.twilio.callbacks] == [None, None, None]
    after = MessageModel.get(msg.message_id, consistent_read=True)
    assert after.status == "delivered"
    assert twilio_entries(after) == [("queued", sid, None), ("sent", sid, None),
                                     ("delivered", sid, None)]
    assert [h["status"] for h in after.history[:2]] == ["sending", "sent"]  # sender entries kept
    assert stats_of(msg).delivered == 1

    replies = replay_callbacks(slice_stack)
    assert [r.status_code for r in replies] == [200, 200, 200]
    assert {json.loads(r.body)["result"] for r in replies} == {"duplicate"}
    again = MessageModel.get(msg.message_id, consistent_read=True)
    assert again.history == after.history and again.status == "delivered"
    assert stats_of(msg).delivered == 1
    assert stats_of(msg).failed is None


def test_a_late_sent_does_not_undo_delivered(slice_stack: LocalStack) -> None:
    msg = send_checkin(slice_stack)
    sid = str(msg.provider_id)
    for status in ("delivered", "sent"):
        params = status_params(slice_stack, sid, status)
        reply = post(slice_stack, params, slice_stack.twilio.sign(callback_url(), params))
        assert reply.status_code == 200
    after = MessageModel.get(msg.message_id, consistent_read=True)
    assert after.status == "delivered"
    assert [s for s, _, _ in twilio_entries(after)] == ["delivered", "sent"]


def test_undelivered_records_the_error_and_counts_a_failure(slice_stack: LocalStack) -> None:
    slice_stack.twilio.undeliverable.add(PHONE)
    msg = send_checkin(slice_stack)
    slice_stack.twilio.deliver_callbacks()
    after = MessageModel.get(msg.message_id, consistent_read=True)
    assert after.status == "undelivered" and after.error_code == "30003"
    assert twilio_entries(after)[-1] == ("undelivered", msg.provider_id, "30003")
    # A later "failed" for the same message is recorded but is the same failure.
    params = status_params(slice_stack, str(msg.provider_id), "failed", ErrorCode="21610")
    assert post(slice_stack, params, slice_stack.twilio.sign(callback_url(), params)
                ).status_code == 200
    final = MessageModel.get(msg.message_id, consistent_read=True)
    assert final.status == "failed" and final.error_code == "21610"
    replay_callbacks(slice_stack)
    assert stats_of(msg).failed == 1 and stats_of(msg).delivered is None


def test_tampered_signature_is_refused_and_changes_nothing(slice_stack: LocalStack) -> None:
    msg = send_checkin(slice_stack)
    before = MessageModel.get(msg.message_id, consistent_read=True)
    signed = status_params(slice_stack, str(msg.provider_id), "undelivered")
    signature = slice_stack.twilio.sign(callback_url(), signed)
    tampered = {**signed, "MessageStatus": "delivered", "SmsStatus": "delivered"}
    rebuilt = "http://localhost" + PATH  # what a URL rebuilt from the request would be

    for params, sig in [(tampered, signature), (signed, None), (signed, "bm90IGEgc2ln"),
                        (signed, slice_stack.twilio.sign(rebuilt, signed))]:
        reply = post(slice_stack, params, sig)
        assert reply.status_code == 403, params
        assert json.loads(reply.body)["Code"] == "ForbiddenError"
    after = MessageModel.get(msg.message_id, consistent_read=True)
    assert after.history == before.history and after.status == "sent"
    assert stats_of(msg).delivered is None and stats_of(msg).failed is None

    assert post(slice_stack, signed, signature).status_code == 200  # the genuine one
    assert MessageModel.get(msg.message_id).status == "undelivered"


def test_unknown_message_sid_is_answered_200_and_logged(
        slice_stack: LocalStack, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import chalicelib.tracking.status_updates as updates

    monkeypatch.setattr(updates, "pause", lambda _seconds: None)
    params = status_params(slice_stack, "SM" + "f" * 32, "delivered")
    with caplog.at_level(logging.INFO, logger="chalicelib"):
        reply = post(slice_stack, params, slice_stack.twilio.sign(callback_url(), params))
    assert reply.status_code == 200 and json.loads(reply.body) == {"result": "unknown"}
    assert "unknown message" in caplog.text
    assert PHONE not in caplog.text  # no phone numbers in logs


def test_a_callback_missing_fields_or_of_the_wrong_type_is_refused(
        slice_stack: LocalStack) -> None:
    params = {"AccountSid": slice_stack.twilio.account_sid, "MessageSid": "SM" + "1" * 32}
    reply = post(slice_stack, params, slice_stack.twilio.sign(callback_url(), params))
    assert reply.status_code == 400
    assert "MessageStatus" in json.loads(reply.body)["Message"]
    reply = post(slice_stack, params, "x", content_type="application/json")
    assert reply.status_code == 415


def test_a_racing_duplicate_cannot_count_twice(slice_stack: LocalStack) -> None:
    """Two copies of one report read the same history; only the first write wins."""
    msg = send_checkin(slice_stack)
    report = StatusReport(provider_id=str(msg.provider_id), status="delivered")
    stale = MessageModel.get(msg.message_id, consistent_read=True)
    change = fold(stale.history, stale.status, report, "2026-03-03T15:00:05Z")
    assert change is not None and change.counter == "delivered"

    assert record_report(report).result == "recorded"
    with pytest.raises(RequiredConditionFailed) as lost:
        commit(report_transaction(stale, change))  # the loser, with what it read
    assert lost.value.index == 0
    assert stats_of(msg).delivered == 1
    assert record_report(report).result == "duplicate"  # what the loser finds on re-read
    assert stats_of(msg).delivered == 1


def test_a_report_that_outruns_the_provider_id_is_looked_up_again(
        slice_stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> None:
    """The provider-id index is eventually consistent (moto's is not): a report
    whose message the index does not show yet is asked for again after a pause."""
    import chalicelib.tracking.status_updates as updates

    msg = send_checkin(slice_stack)
    real_find = updates.find_message_id
    lookups: list[str] = []
    pauses: list[float] = []

    def lagging(sid: str) -> str | None:  # the index shows the message on the third read
        lookups.append(sid)
        return None if len(lookups) <= 2 else real_find(sid)

    monkeypatch.setattr(updates, "find_message_id", lagging)
    monkeypatch.setattr(updates, "pause", pauses.append)
    params = status_params(slice_stack, str(msg.provider_id), "delivered")
    reply = post(slice_stack, params, slice_stack.twilio.sign(callback_url(), params))
    assert json.loads(reply.body) == {"result": "recorded"}
    assert pauses == list(updates.LOOKUP_PAUSES[:2]) and len(lookups) == 3
    assert MessageModel.get(msg.message_id).status == "delivered"
    assert stats_of(msg).delivered == 1


def test_a_report_for_a_message_never_found_gives_up_after_the_pauses(
        slice_stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> None:
    import chalicelib.tracking.status_updates as updates

    pauses: list[float] = []
    monkeypatch.setattr(updates, "pause", pauses.append)
    params = status_params(slice_stack, "SM" + "e" * 32, "delivered")
    reply = post(slice_stack, params, slice_stack.twilio.sign(callback_url(), params))
    assert reply.status_code == 200 and json.loads(reply.body) == {"result": "unknown"}
    assert pauses == list(updates.LOOKUP_PAUSES)
