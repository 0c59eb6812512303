"""Twilio status callbacks, from the local Twilio server into the app, end to end.

A real SMS goes out through the pipeline; the local server posts Twilio-signed
callbacks (queued, sent, delivered) through ``chalice.test.Client`` into
``POST /webhooks/twilio/status``, to the URL the sender gave Twilio, which names
the message (``?m=<message id>``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
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
         content_type: str = FORM, query: str = "", extra: dict[str, str] | None = None,
         ) -> Any:
    headers = {"Content-Type": content_type, **(extra or {})}
    if signature is not None:
        headers["X-Twilio-Signature"] = signature
    return post_route(stack, PATH + (f"?{query}" if query else ""), params, headers)


@dataclass(frozen=True, slots=True)
class Reply:
    status_code: int
    body: bytes


def post_route(stack: LocalStack, target: str, params: Mapping[str, str],
               headers: Mapping[str, str]) -> Reply:
    """POST a form to ``target`` (route + query string) through the app."""
    body = urlencode(dict(params)).encode()
    r = stack.client.http.post(target, headers=dict(headers), body=body)
    return Reply(r.status_code, r.body)


def route_of(url: str) -> str:
    """A callback URL less the configured public base: the route and query string."""
    return url.removeprefix(settings.load().public_base_url)


def replay_callbacks(stack: LocalStack) -> list[Any]:
    """Post every callback the server delivered again, exactly as it was signed."""
    return [post_route(stack, route_of(cb.url), cb.params, cb.headers)
            for cb in stack.twilio.callbacks]


@pytest.fixture
def names_messages(slice_stack: LocalStack) -> LocalStack:
    """The sliced stack, whose callbacks name their message (kept as a name for the
    tests that depend on it)."""
    return slice_stack


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


# -- callbacks that name their message (?m=) -----------------------------------------------


def test_the_callback_url_names_the_message(names_messages: LocalStack) -> None:
    msg = send_checkin(names_messages)
    [create] = names_messages.twilio.create_requests
    assert create["StatusCallback"] == [f"{callback_url()}?m={msg.message_id}"]


def test_a_report_that_outruns_the_api_reply_is_recorded_once(
        names_messages: LocalStack, monkeypatch: pytest.MonkeyPatch) -> None:
    """Twilio posts queued, sent and delivered before its reply to the create call
    reaches the sender: the message is still ``sending``, without a provider id, and
    its outcome write is still to come. The reports land; the outcome is appended
    after them and does not undo ``delivered``; each counter counts once."""
    import chalicelib.tracking.status_updates as updates

    lookups: list[str] = []
    monkeypatch.setattr(updates, "find_message_id", lookups.append)  # no index query
    names_messages.twilio.report_before_reply()
    clock.set_now(DELIVERED_AT)
    names_messages.ingest([load_event("order_delivered")])
    names_messages.run_due(CHECKIN_DUE)
    [sms] = names_messages.twilio.messages
    sid = sms["sid"]
    assert [cb.error for cb in names_messages.twilio.callbacks] == [None, None, None]
    assert names_messages.twilio.deliver_callbacks() == 0  # all were posted early

    [msg] = [m for m in MessageModel.scan() if m.channel == "sms"]
    assert (msg.status, msg.provider_id) == ("delivered", sid)
    assert twilio_entries(msg) == [("queued", sid, None), ("sent", sid, None),
                                   ("delivered", sid, None)]
    assert [(h["status"], h.get("source")) for h in msg.history] == [
        ("sending", None), ("queued", "twilio"), ("sent", "twilio"),
        ("delivered", "twilio"), ("sent", None)]  # the sender's outcome, after the reports
    counts = stats_of(msg)
    assert (counts.sent, counts.delivered, counts.failed, counts.ambiguous) == (1, 1, None, None)
    assert lookups == []

    replies = replay_callbacks(names_messages)
    assert {json.loads(r.body)["result"] for r in replies} == {"duplicate"}
    again = MessageModel.get(msg.message_id, consistent_read=True)
    assert again.history == msg.history and again.status == "delivered"
    assert (stats_of(msg).sent, stats_of(msg).delivered) == (1, 1)


def test_a_report_before_an_ambiguous_reply_keeps_the_reported_status(
        names_messages: LocalStack) -> None:
    """Accepted, reported delivered, then the reply is a 5xx: the message is counted
    ambiguous by the sender (never resent) and shows what Twilio reported."""
    names_messages.twilio.report_before_reply()
    names_messages.twilio.fail_next(500, after_accept=True)
    clock.set_now(DELIVERED_AT)
    names_messages.ingest([load_event("order_delivered")])
    names_messages.run_due(CHECKIN_DUE)
    names_messages.run_due(datetime(2026, 3, 4, tzinfo=UTC))
    [sms] = names_messages.twilio.messages  # sent once
    [msg] = [m for m in MessageModel.scan() if m.channel == "sms"]
    assert (msg.status, msg.provider_id) == ("delivered", sms["sid"])
    assert msg.error_code is None  # the sender's 20500 is in its history entry only
    assert msg.history[-1] == {"status": "ambiguous", "at": msg.history[-1]["at"],
                               "code": "20500"}
    counts = stats_of(msg)
    assert (counts.sent, counts.ambiguous, counts.delivered) == (None, 1, 1)


def test_a_report_that_lands_between_claim_and_outcome_is_kept(
        names_messages: LocalStack) -> None:
    """The outcome write conditions on the history written at the claim: a report
    recorded in between makes it read the message again instead of overwriting it."""
    from chalicelib.channels.base import SendResult
    from chalicelib.journeys.engine import PlannedStep
    from chalicelib.pipeline.send import record_outcome
    from chalicelib.store.models import ScheduleModel
    from chalicelib.tracking.status_updates import record_report

    clock.set_now(DELIVERED_AT)
    names_messages.ingest([load_event("order_delivered")])
    names_messages.tick(CHECKIN_DUE)
    names_messages.twilio.fail_next(500)  # refused before accepting: ambiguous
    names_messages.pump("sends", "send")
    [msg] = [m for m in MessageModel.scan() if m.channel == "sms"]
    [item] = [s for s in ScheduleModel.scan() if s.schedule_id == msg.message_id]
    # Rewind to "sending", as if the provider had not answered yet, then let a report
    # land and the outcome come after it.
    claimed = msg.history[:1]
    msg.update(actions=[MessageModel.status.set("sending"), MessageModel.history.set(claimed),
                        MessageModel.provider_id.remove()])
    item.update(actions=[ScheduleModel.status.set("sending")])
    sid = "SM" + "a" * 32
    assert record_report(StatusReport(sid, "sent"), msg.message_id).result == "recorded"
    record_outcome(PlannedStep.from_dict(item.step), str(item.claim_token),
                   SendResult("accepted", provider_id=sid), 1, claimed)
    after = MessageModel.get(msg.message_id, consistent_read=True)
    assert [h["status"] for h in after.history] == ["sending", "sent", "sent"]
    assert (after.status, after.provider_id) == ("sent", sid)


def test_signature_covers_the_callback_query_string(names_messages: LocalStack) -> None:
    msg = send_checkin(names_messages)
    sid, mid = str(msg.provider_id), msg.message_id
    params = status_params(names_messages, sid, "delivered")
    named = f"{callback_url()}?m={mid}"
    other = "0" * 32
    proxy = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "hooks.example.net",
             "Host": "abc123.execute-api.us-east-1.amazonaws.com"}
    sign = names_messages.twilio.sign
    refused = [
        post(names_messages, params, sign(callback_url(), params), query=f"m={mid}"),
        post(names_messages, params, sign(named, params), query=f"m={other}"),
        post(names_messages, params, sign(named, params)),  # query string dropped
        post(names_messages, params, sign(f"https://hooks.example.net{PATH}?m={mid}", params),
             query=f"m={mid}", extra=proxy),
        post(names_messages, params, sign(f"{named}&x=1", params), query=f"m={mid}"),
    ]
    assert [r.status_code for r in refused] == [403] * 5
    assert MessageModel.get(msg.message_id).status == "sent"

    reply = post(names_messages, params, sign(named, params), query=f"m={mid}", extra=proxy)
    assert (reply.status_code, json.loads(reply.body)) == (200, {"result": "recorded"})
    assert MessageModel.get(msg.message_id).status == "delivered"
    twice = f"m={mid}&m={mid}"
    reply = post(names_messages, params, sign(f"{callback_url()}?{twice}", params), query=twice)
    assert reply.status_code == 400


def test_a_report_naming_a_message_sent_with_another_sid_changes_nothing(
        names_messages: LocalStack, caplog: pytest.LogCaptureFixture) -> None:
    msg = send_checkin(names_messages)
    params = status_params(names_messages, "SM" + "b" * 32, "delivered")
    named = f"{callback_url()}?m={msg.message_id}"
    with caplog.at_level(logging.INFO, logger="chalicelib"):
        reply = post(names_messages, params, names_messages.twilio.sign(named, params),
                     query=f"m={msg.message_id}")
    assert (reply.status_code, json.loads(reply.body)) == (200, {"result": "mismatch"})
    assert "another provider id" in caplog.text
    after = MessageModel.get(msg.message_id, consistent_read=True)
    assert after.history == msg.history and after.status == "sent"
    assert stats_of(msg).delivered is None


def test_a_report_naming_an_unknown_message_is_200_unknown(names_messages: LocalStack) -> None:
    params = status_params(names_messages, "SM" + "c" * 32, "delivered")
    mid = "f" * 32
    reply = post(names_messages, params,
                 names_messages.twilio.sign(f"{callback_url()}?m={mid}", params), query=f"m={mid}")
    assert (reply.status_code, json.loads(reply.body)) == (200, {"result": "unknown"})


def test_an_old_style_callback_without_m_is_found_by_provider_id(
        names_messages: LocalStack) -> None:
    """Messages sent before the URL named them: their callbacks have no ``m``."""
    msg = send_checkin(names_messages)
    params = status_params(names_messages, str(msg.provider_id), "delivered")
    reply = post(names_messages, params, names_messages.twilio.sign(callback_url(), params))
    assert (reply.status_code, json.loads(reply.body)) == (200, {"result": "recorded"})
    assert MessageModel.get(msg.message_id).status == "delivered"
    assert stats_of(msg).delivered == 1
