"""At-most-once sending and the batch rules, through the real handlers."""

from __future__ import annotations

import json
import re
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from chalicelib import aws, clock, settings
from chalicelib.local.stack import LocalStack, sqs_lambda_event
from chalicelib.pipeline.batch import BatchIncomplete
from chalicelib.pipeline.stats import stats_totals
from chalicelib.store import tx
from chalicelib.store.models import MessageModel, ScheduleModel
from tests.conftest import load_event

DELIVERED = datetime(2026, 3, 1, 14, 3, tzinfo=UTC)
SMS_DUE = datetime(2026, 3, 3, 15, 0, tzinfo=UTC)


def _sms_message() -> MessageModel:
    (msg,) = [m for m in MessageModel.scan() if m.channel == "sms"]
    return msg


@pytest.fixture
def enrolled(slice_stack: LocalStack) -> LocalStack:
    clock.set_now(DELIVERED)
    slice_stack.ingest([load_event("order_delivered")])
    return slice_stack


def test_5xx_after_accept_is_ambiguous_and_never_resent(enrolled: LocalStack) -> None:
    enrolled.twilio.fail_next(500, after_accept=True)
    enrolled.tick(SMS_DUE)
    sends = _received("sends")
    _invoke(enrolled, "send", "sends", sends)
    assert len(enrolled.twilio.messages) == 1  # the provider did take it
    assert _sms_message().status == "ambiguous"
    # SQS delivers the same send request again, and later ticks run: nothing is resent.
    _invoke(enrolled, "send", "sends", sends)
    enrolled.run_due(datetime(2026, 3, 4, tzinfo=UTC))
    assert len(enrolled.twilio.messages) == 1
    assert _sms_message().status == "ambiguous"


def test_429_is_retried_later_and_sent_once(enrolled: LocalStack) -> None:
    enrolled.twilio.fail_next(429, 20429)
    results = enrolled.run_due(SMS_DUE)
    assert enrolled.twilio.messages == []
    assert _sms_message().status == "retry"
    retry_at = clock.parse_iso(results[0]["due"][0])
    assert retry_at > SMS_DUE
    enrolled.run_due(retry_at)
    assert len(enrolled.twilio.messages) == 1
    msg = _sms_message()
    assert msg.status == "sent" and msg.provider_id == enrolled.twilio.messages[0]["sid"]
    assert [h["status"] for h in msg.history] == ["sending", "retry", "sending", "sent"]


def test_refused_connection_is_retried(enrolled: LocalStack) -> None:
    enrolled.twilio.stop()
    enrolled.run_due(SMS_DUE)
    assert _sms_message().status == "retry"


def test_unsubscribed_number_is_a_permanent_failure(enrolled: LocalStack) -> None:
    enrolled.twilio.unsubscribed.add("+14155550123")
    enrolled.run_due(SMS_DUE)
    msg = _sms_message()
    assert (msg.status, msg.error_code) == ("failed", "21610")
    enrolled.run_due(datetime(2026, 3, 4, tzinfo=UTC))
    assert enrolled.twilio.messages == []


def test_step_past_expire_after_is_dropped_with_its_reason(enrolled: LocalStack) -> None:
    enrolled.run_due(datetime(2026, 3, 6, 15, 0, tzinfo=UTC))  # 3 days late, limit P2D
    msg = _sms_message()
    assert (msg.outcome, msg.reason) == ("expired", "3d late, expire_after 2d")
    assert enrolled.twilio.messages == []
    (step,) = [s for s in ScheduleModel.scan() if s.schedule_id == msg.message_id]
    assert step.status == "done" and step.due_shard is None  # off the due index


def test_sms_consent_withdrawn_between_enrollment_and_send_wins(enrolled: LocalStack) -> None:
    stop = load_event("order_delivered")
    stop.update(id="evt-stop", type="customer.updated", occurred_at="2026-03-02T10:00:00Z",
                order=None)
    stop["customer"] = {"id": "c-42", "consent": {"sms": False}}
    enrolled.ingest([stop])
    enrolled.run_due(SMS_DUE)
    assert enrolled.twilio.messages == []
    assert (_sms_message().outcome, _sms_message().reason) == (
        "suppressed", "sms consent withdrawn")


def _received(queue: str) -> list[dict[str, Any]]:
    sqs = aws.client("sqs")
    got: list[dict[str, Any]] = sqs.receive_message(
        QueueUrl=aws.queue_url(settings.resource_name(queue)), MaxNumberOfMessages=10,
    ).get("Messages", [])
    return got


def _invoke(stack: LocalStack, function: str, queue: str, messages: list[dict[str, Any]]) -> Any:
    return stack.client.lambda_.invoke(function,
                                       sqs_lambda_event(stack.queue_arn(queue), messages))


def _remaining(queue: str) -> list[str]:
    return [m["Body"] for m in _received(queue)]


C1_KEY = re.compile(r'customer_id\W+S\W+c-1\b')


def test_transient_failure_deletes_the_successes_and_raises(slice_stack: LocalStack) -> None:
    clock.set_now(DELIVERED)
    events = []
    for i in range(3):
        e = load_event("order_delivered")
        e["id"] = f"evt-{i}"
        e["customer"] = {**e["customer"], "id": f"c-{i}"}
        events.append(e)
    slice_stack.send_events(events)
    received = _received("events")
    assert len(received) == 3

    client = tx.connection().client

    def throttle_c1(params: dict[str, Any], **_: Any) -> Any:
        # The customer's key, not the text "c-1", which a request's random
        # ClientRequestToken (a UUID, hex digits and dashes) holds now and then.
        if C1_KEY.search(json.dumps(params, default=str)):
            return ({"status_code": 400, "headers": {}, "body": b""},
                    {"Error": {"Code": "ProvisionedThroughputExceededException",
                               "Message": "injected"}})
        return None

    client.meta.events.register("before-call.dynamodb.TransactWriteItems", throttle_c1)
    try:
        with pytest.raises(BatchIncomplete) as info:
            _invoke(slice_stack, "ingest", "events", received)
    finally:
        client.meta.events.unregister("before-call.dynamodb.TransactWriteItems", throttle_c1)
    assert (info.value.failed, info.value.total) == (1, 3)
    remaining = _remaining("events")  # visibility timeout 0 locally: the rest is visible
    assert [json.loads(b)["id"] for b in remaining] == ["evt-1"]
    # Redelivered, it succeeds; the other two were processed exactly once.
    _invoke(slice_stack, "ingest", "events", _received("events"))
    customers = {s.step["customer_id"] for s in ScheduleModel.scan()}
    assert customers == {"c-0", "c-1", "c-2"}


def test_worker_dying_mid_send_is_recorded_ambiguous_not_resent(enrolled: LocalStack) -> None:
    client = tx.connection().client
    enrolled.tick(SMS_DUE)
    calls = {"n": 0}

    def fail_after_claim(**_: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            return None  # the claim (message `sending`) goes through
        return ({"status_code": 500, "headers": {}, "body": b""},
                {"Error": {"Code": "InternalServerError", "Message": "injected"}})

    client.meta.events.register("before-call.dynamodb.TransactWriteItems", fail_after_claim)
    try:
        enrolled.pump("sends", "send")  # sent, but its outcome can never be written
    finally:
        client.meta.events.unregister("before-call.dynamodb.TransactWriteItems",
                                      fail_after_claim)
    assert len(enrolled.twilio.messages) == 1
    assert _sms_message().status == "sending"
    report = enrolled.tick(SMS_DUE + timedelta(minutes=16))
    assert report["swept"] == 1
    msg = _sms_message()
    assert msg.status == "ambiguous" and "stopped mid-send" in (msg.reason or "")
    enrolled.run_due(SMS_DUE + timedelta(hours=2))
    assert len(enrolled.twilio.messages) == 1


def test_exit_after_the_claim_still_stops_the_send(enrolled: LocalStack) -> None:
    enrolled.tick(SMS_DUE)  # claimed, request waiting in the sends queue
    returned = load_event("order_returned")
    returned["occurred_at"] = "2026-03-03T14:59:00Z"
    enrolled.ingest([returned])
    enrolled.pump("sends", "send")
    assert enrolled.twilio.messages == []
    (step,) = [s for s in ScheduleModel.scan() if s.step["campaign_id"] == "checkin"]
    assert step.status == "cancelled"


def test_template_that_fails_for_this_customer_is_recorded_not_looped(
        stack: LocalStack, tmp_path: Path) -> None:
    (tmp_path / "c.json").write_text(json.dumps({
        "id": "nick", "name": "Nickname", "trigger": {"event": "order.delivered"},
        "steps": [{"id": "s", "after": "P2D", "channel": "sms", "template": "nick"}]}))
    (tmp_path / "t").mkdir()
    # Valid against the sample data; fails for a customer without this attribute.
    (tmp_path / "t" / "nick.sms.j2").write_text("Hi {{ customer.attributes.tier|upper }}\n")
    stack.push_campaigns(tmp_path, tmp_path / "t")
    clock.set_now(DELIVERED)
    event = load_event("order_delivered")
    del event["customer"]["attributes"]
    stack.ingest([event])
    stack.run_due(SMS_DUE)
    (msg,) = list(MessageModel.scan())
    assert (msg.status, msg.outcome) == ("failed", "failed")
    assert "template" in (msg.reason or "")
    assert stack.dead_letters("sends-dlq") == []
    (step,) = list(ScheduleModel.scan())
    assert step.status == "done" and step.due_shard is None


def test_tick_past_its_deadline_claims_nothing(enrolled: LocalStack) -> None:
    import time as _time

    from chalicelib.pipeline.tick import run_tick

    report = run_tick(SMS_DUE, deadline=_time.monotonic() - 1)
    assert (report.claimed, report.enqueued) == (0, 0)
    assert run_tick(SMS_DUE).claimed == 1


def test_an_event_arriving_days_late_drops_its_stale_step(slice_stack: LocalStack) -> None:
    clock.set_now(datetime(2026, 3, 7, 12, 0, tzinfo=UTC))  # the delivery was on Mar 1
    results = slice_stack.ingest([load_event("order_delivered")])
    assert "2026-03-03T15:00:00Z" in results[0]["due"]  # planned from occurred_at
    slice_stack.run_due(datetime(2026, 3, 7, 12, 1, tzinfo=UTC))
    assert slice_stack.twilio.messages == []
    msg = _sms_message()
    assert (msg.outcome, msg.reason) == ("expired", "3d22h late, expire_after 2d")


def test_outcome_written_only_in_part_is_settled_by_the_tick(enrolled: LocalStack) -> None:
    client = tx.connection().client
    enrolled.tick(SMS_DUE)
    calls = {"n": 0}
    # claim ok; 4 full outcome writes fail; the fallback's message write lands and its
    # schedule write fails (stats writes after it land).
    failing = {2, 3, 4, 5, 7}

    def flaky(**_: Any) -> Any:
        calls["n"] += 1
        if calls["n"] in failing:
            return ({"status_code": 500, "headers": {}, "body": b""},
                    {"Error": {"Code": "InternalServerError", "Message": "injected"}})
        return None

    client.meta.events.register("before-call.dynamodb.TransactWriteItems", flaky)
    try:
        enrolled.pump("sends", "send")
    finally:
        client.meta.events.unregister("before-call.dynamodb.TransactWriteItems", flaky)
    assert _sms_message().status == "sent"
    (step,) = [s for s in ScheduleModel.scan() if s.step["campaign_id"] == "checkin"]
    assert step.status == "sending"
    report = enrolled.tick(SMS_DUE + timedelta(minutes=16))
    assert report["swept"] == 1
    (step,) = [s for s in ScheduleModel.scan() if s.step["campaign_id"] == "checkin"]
    assert (step.status, step.outcome, step.due_shard) == ("done", "sent", None)
    assert _sms_message().status == "sent" and len(enrolled.twilio.messages) == 1


def _fail_outcome_writes(only_schedule: bool) -> Any:
    """Fail the worker's transactions after its claim (all of them, or those that
    touch the schedule); status reports, posted from the Twilio server's thread, land."""
    client = tx.connection().client
    worker = threading.get_ident()
    calls = {"n": 0}

    def fail(params: dict[str, Any], **_: Any) -> Any:
        if threading.get_ident() != worker:
            return None
        calls["n"] += 1
        touches = ScheduleModel.Meta.table_name in json.dumps(params, default=str)
        if calls["n"] > 1 and (touches or not only_schedule):
            return ({"status_code": 500, "headers": {}, "body": b""},
                    {"Error": {"Code": "InternalServerError", "Message": "injected"}})
        return None

    client.meta.events.register("before-call.dynamodb.TransactWriteItems", fail)
    return lambda: client.meta.events.unregister("before-call.dynamodb.TransactWriteItems", fail)


def _counts(msg: MessageModel) -> tuple[Any, ...]:
    totals = stats_totals(msg.campaign_id, msg.variant, "treatment", msg.decided_at[:10])
    return tuple(totals.get(k) for k in ("sent", "delivered", "ambiguous"))


def _sender_entries(msg: MessageModel) -> list[str]:
    return [h["status"] for h in msg.history if "source" not in h]


def test_worker_dying_after_the_provider_reported_is_settled_sent(
        enrolled: LocalStack) -> None:
    """The callbacks (naming the message) outran the reply, then the worker died before
    recording the outcome: the provider has the message, so the tick settles it
    ``sent`` (counted once), keeps the reported ``delivered``, and never resends."""
    enrolled.twilio.report_before_reply()
    enrolled.tick(SMS_DUE)
    undo = _fail_outcome_writes(only_schedule=False)
    try:
        enrolled.pump("sends", "send")
    finally:
        undo()
    [sms] = enrolled.twilio.messages
    msg = _sms_message()
    assert (msg.status, msg.provider_id, _sender_entries(msg)) == (
        "delivered", sms["sid"], ["sending"])
    report = enrolled.tick(SMS_DUE + timedelta(minutes=16))
    assert report["swept"] == 1
    msg = _sms_message()
    assert msg.status == "delivered" and "provider reported" in (msg.reason or "")
    assert _sender_entries(msg) == ["sending", "sent"]
    (step,) = [s for s in ScheduleModel.scan() if s.step["campaign_id"] == "checkin"]
    assert (step.status, step.outcome, step.due_shard) == ("done", "sent", None)
    assert _counts(msg) == (1, 1, None)
    enrolled.run_due(SMS_DUE + timedelta(hours=2))
    assert len(enrolled.twilio.messages) == 1


def test_outcome_written_alone_after_a_report_is_counted_once(
        enrolled: LocalStack) -> None:
    """The fallback writes the message alone, after the reports already on it, and
    the stats on their own; the tick then finishes the step without counting again."""
    enrolled.twilio.report_before_reply()
    enrolled.tick(SMS_DUE)
    undo = _fail_outcome_writes(only_schedule=True)
    try:
        enrolled.pump("sends", "send")
    finally:
        undo()
    msg = _sms_message()
    assert (msg.status, _sender_entries(msg)) == ("delivered", ["sending", "sent"])
    assert enrolled.tick(SMS_DUE + timedelta(minutes=16))["swept"] == 1
    (step,) = [s for s in ScheduleModel.scan() if s.step["campaign_id"] == "checkin"]
    assert (step.status, step.outcome) == ("done", "sent")
    assert _counts(_sms_message()) == (1, 1, None)


def test_reports_before_the_reply_then_after_it(
        enrolled: LocalStack) -> None:
    """Two reports outrun the reply, the last comes after the outcome is recorded."""
    enrolled.twilio.report_before_reply(statuses=2)  # queued, sent; delivered comes later
    enrolled.run_due(SMS_DUE)
    [sms] = enrolled.twilio.messages
    msg = _sms_message()
    assert (msg.status, msg.provider_id) == ("sent", sms["sid"])
    assert [(h["status"], h.get("source")) for h in msg.history] == [
        ("sending", None), ("queued", "twilio"), ("sent", "twilio"), ("sent", None)]
    assert enrolled.twilio.deliver_callbacks() == 1
    msg = _sms_message()
    assert msg.status == "delivered"
    assert _counts(msg) == (1, 1, None)
