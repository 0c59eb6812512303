"""Audit of the tick and the sender (issue 4) with cases the other tests leave out.

Everything goes through the real handlers (``chalice.test.Client`` with real
scheduled-event and SQS event shapes), moto, the real twilio client against the
local Twilio server, and SES v2 in moto. Expectations come from the issue,
DESIGN.md, README.md and docs/, not from the code. A defect is kept as a strict
xfail whose reason starts with ``DEFECT:``; correct behaviour stays a plain test.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bench._ddb_meter import DdbMeter, attach
from chalicelib import aws, clock, handlers, settings
from chalicelib.journeys import keys
from chalicelib.journeys.engine import PlannedStep
from chalicelib.local.stack import LocalStack, scheduled_event
from chalicelib.pipeline.batch import BatchIncomplete
from chalicelib.pipeline.ingest import schedule_item
from chalicelib.store import tx
from chalicelib.store.models import (
    ALL_MODELS,
    COUNTERS,
    CustomerModel,
    MessageModel,
    ScheduleModel,
    StatsModel,
    SuppressionModel,
)
from tests.conftest import FIXTURES, ROOT, delivered, load_event
from tests.integration.sqs_helpers import invoke, receive

DELIVERED = datetime(2026, 3, 1, 14, 3, tzinfo=UTC)
SMS_DUE = datetime(2026, 3, 3, 15, 0, tzinfo=UTC)  # P2D at 10:00 New York (EST)
EMAIL_DUE = datetime(2026, 3, 8, 13, 30, tzinfo=UTC)  # P7D at 09:30 New York (EDT)
PHONE = "+14155550123"


# -- helpers ------------------------------------------------------------------------------


def messages(channel: str | None = None) -> list[MessageModel]:
    return [m for m in MessageModel.scan() if channel is None or m.channel == channel]


def steps_of(campaign: str) -> list[ScheduleModel]:
    return [s for s in ScheduleModel.scan() if s.step["campaign_id"] == campaign]


def stats(campaign: str) -> dict[str, int]:
    """Every non-zero counter of a campaign, summed over days, variants, arms, shards."""
    totals: Counter[str] = Counter()
    for item in StatsModel.scan():
        if item.pk.startswith(f"{campaign}#"):
            for name in COUNTERS:
                totals[name] += int(getattr(item, name) or 0)
    return {k: v for k, v in totals.items() if v}


def injected_error(status: int, code: str) -> tuple[Any, dict[str, Any]]:
    """What a botocore ``before-call`` hook returns to fail a call without sending it."""
    from botocore.awsrequest import AWSResponse, HTTPHeaders

    return (AWSResponse("https://injected.invalid", status, HTTPHeaders(), None),
            {"Error": {"Code": code, "Message": "injected"},
             "ResponseMetadata": {"HTTPStatusCode": status}})


def hooked(client: Any, event: str, hook: Callable[..., Any]) -> Callable[[], None]:
    client.meta.events.register(event, hook)
    return lambda: client.meta.events.unregister(event, hook)


def run_until_quiet(stack: LocalStack, first: datetime, rounds: int = 8) -> None:
    """Tick and send at ``first`` and then at every due time the sender reports."""
    todo = [first]
    for _ in range(rounds):
        if not todo:
            return
        at = min(todo)
        results = stack.run_due(at)
        todo = [t for t in (clock.parse_iso(d) for r in results for d in r["due"]) if t > at]


@pytest.fixture
def enrolled(slice_stack: LocalStack) -> LocalStack:
    """c-42 enrolled by the fixture delivery: SMS check-in due SMS_DUE, email tip EMAIL_DUE."""
    clock.set_now(DELIVERED)
    slice_stack.ingest([delivered()])
    return slice_stack


class _Monotonic:
    """A stand-in for ``time``: each ``monotonic()`` call is ``step`` seconds later, so a
    tick's deadline falls after a known number of items, whatever the machine's speed."""

    def __init__(self, step: float) -> None:
        self.now = 1000.0
        self.step = step

    def monotonic(self) -> float:
        self.now += self.step
        return self.now


class _Context:
    """A Lambda context with a chosen remaining time."""

    function_name = "aftercare-local-tick"
    aws_request_id = "audit"

    def __init__(self, remaining_ms: int) -> None:
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def _planned(customer_id: str, due: datetime) -> PlannedStep:
    return PlannedStep(customer_id, "checkin", 1, "checkin", f"order:o-{customer_id}",
                       "2026-03-01T14:02:00Z", due, False, None, f"evt-{customer_id}", None)


def _seed(customer_ids: list[str], due: datetime) -> None:
    with ScheduleModel.batch_write() as batch:
        for cid in customer_ids:
            batch.save(schedule_item(_planned(cid, due)))


def _enqueued_bodies() -> tuple[list[dict[str, Any]], list[int], Callable[[], None]]:
    """Every body the tick puts on the sends queue, and the size of each batch."""
    bodies: list[dict[str, Any]] = []
    batches: list[int] = []

    def hook(params: dict[str, Any], **_: Any) -> None:
        batches.append(len(params["Entries"]))
        bodies.extend(json.loads(e["MessageBody"]) for e in params["Entries"])

    undo = hooked(aws.client("sqs"), "provide-client-params.sqs.SendMessageBatch", hook)
    return bodies, batches, undo


# -- the same event three times ------------------------------------------------------------


def test_the_same_event_three_times_gives_one_enrollment_and_one_send(
        slice_stack: LocalStack) -> None:
    clock.set_now(DELIVERED)
    event = delivered()
    slice_stack.ingest([event, event])  # twice in one SQS batch
    slice_stack.ingest([event])  # and once more, later
    assert len(steps_of("checkin")) == 1
    slice_stack.run_due(SMS_DUE)
    slice_stack.run_due(SMS_DUE + timedelta(hours=1))
    assert len(slice_stack.twilio.create_requests) == 1
    assert stats("checkin") == {"enrolled": 1, "sent": 1}
    (msg,) = messages("sms")
    assert msg.status == "sent"


# -- the tick after a long outage ----------------------------------------------------------


def test_a_long_outage_with_the_deadline_hit_mid_shard_loses_nothing_and_claims_once(
        slice_stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> None:
    """A backlog after an outage, one shard holding more than a tick reads from a shard
    (MAX_PER_SHARD, scaled down from 1,000 to 50 to keep moto fast), ticks through the
    real scheduled handler with a Lambda context whose deadline falls mid-shard: the
    following ticks go on where it stopped; every step is handed to the sends queue
    exactly once, and nothing claimed is left behind."""
    from chalicelib.pipeline import tick as tick_module

    crowded = [c for c in (f"c-{i}" for i in range(5_000))
               if keys.shard_for(c) == "due#03"][:130]
    others = [c for c in (f"o-{i}" for i in range(400)) if keys.shard_for(c) != "due#03"][:170]
    _seed(crowded + others, SMS_DUE - timedelta(days=1))
    assert ScheduleModel.count() == 300
    monkeypatch.setattr(tick_module, "MAX_PER_SHARD", 50)
    monkeypatch.setenv("CLAIM_LEASE_SECONDS", "3600")  # no claim expires in this test
    fake = _Monotonic(step=0.1)  # a 20 s context leaves 10 s: about 100 items a tick
    monkeypatch.setattr(tick_module, "time", fake)
    monkeypatch.setattr(handlers, "time", fake)
    import app as app_module

    bodies, batches, undo = _enqueued_bodies()
    reports = []
    try:
        for minute in range(8):
            at = SMS_DUE + timedelta(minutes=minute)
            clock.set_now(at)
            reports.append(app_module.tick(scheduled_event(at), _Context(20_000)))
            if reports[-1]["claimed"] == 0:
                break
    finally:
        undo()
    claimed = [r["claimed"] for r in reports]
    assert 90 <= claimed[0] <= 101, claimed  # the deadline stopped the first tick
    assert sum(claimed) == 300 and claimed[-1] == 0, claimed
    assert [r["enqueued"] for r in reports] == claimed  # everything claimed was handed on
    ids = Counter(b["schedule_id"] for b in bodies)
    assert len(ids) == 300 and set(ids.values()) == {1}
    assert max(batches) == 10
    assert [s.schedule_id for s in ScheduleModel.scan() if s.status != "claimed"] == []


def _query_hook(client: Any, during: Callable[[], None]) -> Callable[[], None]:
    """Run ``during`` once, right after the first Query answered (its page is stale)."""
    state = {"done": False}

    def hook(**_: Any) -> None:
        if not state["done"]:
            state["done"] = True
            during()

    return hooked(client, "after-call.dynamodb.Query", hook)


def test_two_ticks_at_once_hand_on_each_step_once(slice_stack: LocalStack) -> None:
    """Tick B runs whole between tick A's first Query and A's claims: A's page is stale,
    its conditional claims lose, and no step reaches the sends queue twice."""
    customers = [f"c-{i}" for i in range(48)]
    _seed(customers, SMS_DUE - timedelta(hours=1))
    first = (int(SMS_DUE.timestamp()) // 60) % settings.DUE_SHARDS
    in_first = sum(keys.shard_for(c) == f"due#{first:02d}" for c in customers)
    assert in_first > 0
    inner: list[dict[str, Any]] = []
    bodies, _batches, undo_sqs = _enqueued_bodies()
    undo = _query_hook(ScheduleModel._get_connection().connection.client,
                       lambda: inner.append(slice_stack.tick(SMS_DUE)))
    try:
        outer = slice_stack.tick(SMS_DUE)
    finally:
        undo()
        undo_sqs()
    assert inner[0]["claimed"] == 48 and outer["claimed"] == 0
    ids = Counter(b["schedule_id"] for b in bodies)
    assert len(ids) == 48 and set(ids.values()) == {1}


def test_two_ticks_sweeping_one_stuck_send_count_it_ambiguous_once(
        enrolled: LocalStack, monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib.pipeline import send

    enrolled.tick(SMS_DUE)
    requests = receive("sends", visibility=300)

    def die(*_: Any, **__: Any) -> Any:
        raise RuntimeError("Lambda timed out")  # after `sending` was written

    monkeypatch.setattr(send, "_deliver", die)
    with pytest.raises(BatchIncomplete):
        invoke(enrolled, "send", "sends", requests)
    monkeypatch.undo()
    later = SMS_DUE + timedelta(minutes=16)
    inner: list[dict[str, Any]] = []
    undo = _query_hook(ScheduleModel._get_connection().connection.client,
                       lambda: inner.append(enrolled.tick(later)))
    try:
        outer = enrolled.tick(later)
    finally:
        undo()
    assert inner[0]["swept"] + outer["swept"] == 1
    (msg,) = messages("sms")
    assert msg.status == "ambiguous"
    assert stats("checkin") == {"enrolled": 1, "ambiguous": 1}
    enrolled.run_due(SMS_DUE + timedelta(hours=2))
    assert enrolled.twilio.create_requests == []


def test_a_tick_whose_enqueue_fails_leaves_its_claims_to_the_next_tick_after_the_lease(
        enrolled: LocalStack) -> None:
    def refuse(**_: Any) -> Any:
        return injected_error(500, "InternalError")

    undo = hooked(aws.client("sqs"), "before-call.sqs.SendMessageBatch", refuse)
    try:
        with pytest.raises(Exception, match="InternalError"):
            enrolled.tick(SMS_DUE)
    finally:
        undo()
    (step,) = steps_of("checkin")
    assert step.status == "claimed"
    assert enrolled.tick(SMS_DUE + timedelta(minutes=1))["claimed"] == 0  # leased
    enrolled.run_due(SMS_DUE + timedelta(minutes=6))  # the lease ran out
    enrolled.run_due(SMS_DUE + timedelta(minutes=30))
    assert len(enrolled.twilio.create_requests) == 1
    assert stats("checkin") == {"enrolled": 1, "sent": 1}


# -- SQS delivering a send request twice -----------------------------------------------------


def test_a_send_request_delivered_again_mid_send_calls_the_provider_once(
        enrolled: LocalStack) -> None:
    """The visibility timeout runs out while the first worker is calling Twilio: SQS
    hands the same request to a second worker, which must not call Twilio too."""
    enrolled.tick(SMS_DUE)
    requests = receive("sends", visibility=300)
    sms = handlers.channels().sms()
    real_send = sms.send
    second: list[Any] = []

    def send_with_a_second_delivery(message: Any) -> Any:
        if not second:
            second.append(invoke(enrolled, "send", "sends", requests).payload)
        return real_send(message)

    sms.send = send_with_a_second_delivery
    try:
        first = invoke(enrolled, "send", "sends", requests).payload
    finally:
        del sms.send
    assert second[0]["processed"] == 1 and first["processed"] == 1
    assert len(enrolled.twilio.create_requests) == 1
    (msg,) = messages("sms")
    assert msg.status == "sent" and msg.provider_id == enrolled.twilio.messages[0]["sid"]
    assert stats("checkin") == {"enrolled": 1, "sent": 1}
    assert enrolled.dead_letters("sends-dlq") == []


# -- Twilio: retries and their limit -------------------------------------------------------------


def test_429_then_success_is_one_message_counted_sent_once(enrolled: LocalStack) -> None:
    enrolled.twilio.fail_next(429, 20429, count=2)
    run_until_quiet(enrolled, SMS_DUE)
    assert len(enrolled.twilio.create_requests) == 3
    assert len(enrolled.twilio.messages) == 1
    (msg,) = messages("sms")
    assert msg.status == "sent"
    assert [h["status"] for h in msg.history] == [
        "sending", "retry", "sending", "retry", "sending", "sent"]
    assert stats("checkin") == {"enrolled": 1, "sent": 1}


def test_429_past_the_retry_limit_fails_once_and_stops(enrolled: LocalStack) -> None:
    from chalicelib.pipeline.send import MAX_SEND_ATTEMPTS

    enrolled.twilio.fail_next(429, 20429, count=10)
    run_until_quiet(enrolled, SMS_DUE, rounds=12)
    enrolled.run_due(SMS_DUE + timedelta(days=1))
    assert len(enrolled.twilio.create_requests) == MAX_SEND_ATTEMPTS
    assert enrolled.twilio.messages == []
    (msg,) = messages("sms")
    assert (msg.status, msg.error_code) == ("failed", "20429")
    (step,) = steps_of("checkin")
    assert (step.status, step.outcome, step.due_shard) == ("done", "failed", None)
    assert stats("checkin") == {"enrolled": 1, "failed": 1}


def test_a_21211_invalid_number_is_failed_once_and_is_no_opt_out(
        enrolled: LocalStack) -> None:
    enrolled.twilio.fail_next(400, 21211)  # Twilio: not a valid phone number
    run_until_quiet(enrolled, SMS_DUE)
    enrolled.run_due(SMS_DUE + timedelta(days=1))
    enrolled.pump("events", "ingest")
    (msg,) = messages("sms")
    assert (msg.status, msg.error_code) == ("failed", "21211")
    assert len(enrolled.twilio.create_requests) == 1
    assert stats("checkin") == {"enrolled": 1, "failed": 1}
    assert list(SuppressionModel.scan()) == []  # an invalid number is no opt-out
    assert CustomerModel.get("c-42").profile["consent"]["sms"]["granted"] is True


def test_a_twilio_read_timeout_is_ambiguous_never_resent_and_its_late_report_kept(
        enrolled: LocalStack) -> None:
    """Twilio takes the message but answers after the client's read timeout: recorded
    ``ambiguous`` (counted once), never resent; Twilio's status callbacks, which name
    the message, still land on it."""
    from chalicelib.channels.sms import TwilioSmsChannel
    from chalicelib.local.stack import MESSAGING_SERVICE_SID, TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN

    handlers.channels()._sms = TwilioSmsChannel(  # the production channel, a short timeout
        TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, MESSAGING_SERVICE_SID, None,
        base_url=enrolled.twilio.base_url, timeout=0.3)
    enrolled.twilio.delay_next(1.0)
    enrolled.tick(SMS_DUE)
    requests = receive("sends", visibility=300)
    invoke(enrolled, "send", "sends", requests)
    invoke(enrolled, "send", "sends", requests)  # SQS delivers it again
    run_until_quiet(enrolled, SMS_DUE + timedelta(minutes=20))
    assert len(enrolled.twilio.create_requests) == 1
    (msg,) = messages("sms")
    assert (msg.status, msg.error_code) == ("ambiguous", "read_timeout")
    (step,) = steps_of("checkin")
    assert (step.status, step.outcome, step.due_shard) == ("done", "ambiguous", None)
    assert stats("checkin") == {"enrolled": 1, "ambiguous": 1}
    assert enrolled.twilio.deliver_callbacks() == 3
    assert MessageModel.get(msg.message_id).status == "delivered"
    assert stats("checkin") == {"enrolled": 1, "ambiguous": 1, "delivered": 1}


def test_a_21610_opt_out_survives_a_transient_failure_of_its_suppression_write(
        enrolled: LocalStack) -> None:
    enrolled.twilio.unsubscribed.add(PHONE)
    client = SuppressionModel._get_connection().connection.client

    def throttled(**_: Any) -> Any:
        return injected_error(500, "InternalServerError")

    enrolled.tick(SMS_DUE)
    undo = hooked(client, "before-call.dynamodb.UpdateItem", throttled)
    try:
        with pytest.raises(BatchIncomplete):
            enrolled.pump("sends", "send")
    finally:
        undo()
    enrolled.pump("sends", "send")  # SQS redelivers the request: now every write works
    enrolled.pump("events", "ingest")
    (msg,) = messages("sms")
    assert (msg.status, msg.error_code) == ("failed", "21610")
    # The same phone, another customer id (a second account): the list must stop it.
    clock.set_now(DELIVERED + timedelta(days=10))
    enrolled.ingest([delivered("evt-other", "c-43", occurred_at="2026-03-11T13:02:00Z")])
    run_until_quiet(enrolled, datetime(2026, 3, 13, 14, 0, tzinfo=UTC))
    other = [m for m in messages("sms") if m.customer_id == "c-43"]
    assert [(m.outcome, (m.reason or "")[:35]) for m in other] == [
        ("suppressed", "address on the suppression list (sm")]
    assert len(enrolled.twilio.create_requests) == 1


# -- email: transport failures ---------------------------------------------------------------


@pytest.mark.parametrize(("failure", "status", "attempts", "counter"), [
    ("connect", "sent", 2, "sent"),  # never connected: retried, sent once
    ("read_timeout", "ambiguous", 1, "ambiguous"),  # the request went out: never resent
    ("reset", "ambiguous", 1, "ambiguous"),
])
def test_email_transport_failures_follow_the_at_most_once_rules(
        enrolled: LocalStack, failure: str, status: str, attempts: int, counter: str) -> None:
    from botocore.exceptions import (
        ConnectionClosedError,
        EndpointConnectionError,
        ReadTimeoutError,
    )

    url = "https://email.us-east-1.amazonaws.com"
    error = {"connect": EndpointConnectionError(endpoint_url=url),
             "read_timeout": ReadTimeoutError(endpoint_url=url),
             "reset": ConnectionClosedError(endpoint_url=url)}[failure]
    calls: list[int] = []

    def fail_first(**_: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise error
        return None

    run_until_quiet(enrolled, SMS_DUE)
    undo = hooked(aws.client("sesv2"), "before-call.sesv2.SendEmail", fail_first)
    try:
        run_until_quiet(enrolled, EMAIL_DUE)
        enrolled.run_due(EMAIL_DUE + timedelta(days=1))
    finally:
        undo()
    (msg,) = messages("email")
    assert msg.status == status
    assert len(calls) == attempts
    assert len(enrolled.sent_emails()) == (1 if status == "sent" else 0)
    assert stats("tip") == {"enrolled": 1, counter: 1}


# -- what may change between planning (or the claim) and the send ------------------------------


def test_a_stop_between_the_claim_and_the_send_wins(enrolled: LocalStack) -> None:
    enrolled.tick(SMS_DUE)  # claimed; the request waits in the sends queue
    inbound = settings.load().public_base_url + "/webhooks/twilio/inbound"
    record = enrolled.twilio.simulate_inbound(PHONE, "STOP", "+15005550006", inbound)
    assert record.error is None
    enrolled.pump("events", "ingest")
    enrolled.pump("sends", "send")
    assert enrolled.twilio.create_requests == []
    (msg,) = messages("sms")
    assert (msg.outcome, msg.reason) == ("suppressed", "sms consent withdrawn")
    (step,) = steps_of("checkin")
    assert (step.status, step.due_shard) == ("done", None)
    assert stats("checkin") == {"enrolled": 1, "suppressed": 1}


def test_a_campaign_paused_between_planning_and_sending_sends_nothing(
        enrolled: LocalStack, tmp_path: Path) -> None:
    definition = json.loads((FIXTURES / "campaigns" / "checkin.json").read_text())
    (tmp_path / "checkin.json").write_text(json.dumps({**definition, "status": "paused"}))
    enrolled.push_campaigns(tmp_path, ROOT / "templates")
    enrolled.run_due(SMS_DUE)
    enrolled.run_due(SMS_DUE + timedelta(hours=1))
    assert enrolled.twilio.create_requests == []
    (msg,) = [m for m in messages() if m.campaign_id == "checkin"]
    assert (msg.outcome, msg.reason) == ("cancelled", "campaign not active")
    (step,) = steps_of("checkin")
    assert (step.status, step.due_shard) == ("done", None)
    assert stats("checkin") == {"enrolled": 1, "cancelled": 1}
    enrolled.run_due(EMAIL_DUE)  # the other campaign is still live
    assert len(enrolled.sent_emails()) == 1


def test_a_customer_erased_between_the_claim_and_the_send_is_not_messaged(
        enrolled: LocalStack) -> None:
    from chalicelib.pipeline.erasure import erase

    enrolled.tick(SMS_DUE)  # claimed; the request waits in the sends queue
    report = erase(["c-42"])
    assert report.customers == 1 and report.schedule_items == 2
    enrolled.pump("sends", "send")
    enrolled.run_due(EMAIL_DUE)
    assert enrolled.twilio.create_requests == [] and enrolled.sent_emails() == []
    assert [m for m in MessageModel.scan() if m.customer_id == "c-42"] == []
    assert list(ScheduleModel.scan()) == []
    assert enrolled.dead_letters("sends-dlq") == []


def test_a_held_out_customer_is_logged_held_out_and_never_messaged(
        stack: LocalStack, tmp_path: Path) -> None:
    definition = json.loads((FIXTURES / "campaigns" / "checkin.json").read_text())
    (tmp_path / "checkin.json").write_text(json.dumps({**definition, "holdout_percent": 50}))
    stack.push_campaigns(tmp_path, ROOT / "templates")
    held = next(c for c in (f"c-{i}" for i in range(100)) if keys.in_holdout("checkin", c, 50))
    clock.set_now(DELIVERED)
    stack.ingest([delivered(cid=held)])
    run_until_quiet(stack, SMS_DUE)
    assert stack.twilio.create_requests == []
    (msg,) = messages("sms")
    assert (msg.outcome, msg.reason) == ("held_out", "holdout group")
    assert stats("checkin") == {"enrolled": 1, "held_out": 1}


def test_retries_that_outlast_expire_after_drop_the_step_with_its_reason(
        stack: LocalStack, tmp_path: Path) -> None:
    (tmp_path / "quick.json").write_text(json.dumps({
        "id": "quick", "name": "Quick check-in", "trigger": {"event": "order.delivered"},
        "steps": [{"id": "checkin", "after": "P2D", "at": "10:00", "channel": "sms",
                   "template": "checkin", "expire_after": "PT10M"}]}))
    stack.push_campaigns(tmp_path, ROOT / "templates")
    clock.set_now(DELIVERED)
    stack.ingest([delivered()])
    stack.twilio.fail_next(429, 20429, count=2)
    run_until_quiet(stack, SMS_DUE)  # retries at +5 min, then +15 min: past the limit
    assert len(stack.twilio.create_requests) == 2 and stack.twilio.messages == []
    (msg,) = messages("sms")
    assert (msg.status, msg.reason) == ("expired", "15m late, expire_after 10m")
    (step,) = steps_of("quick")
    assert (step.status, step.due_shard) == ("done", None)
    assert stats("quick") == {"enrolled": 1, "expired": 1}


def test_an_exit_while_a_step_waits_for_its_retry_settles_its_message(
        enrolled: LocalStack) -> None:
    enrolled.twilio.fail_next(429, 20429)
    results = enrolled.run_due(SMS_DUE)
    retry_at = min(clock.parse_iso(d) for r in results for d in r["due"])
    (msg,) = messages("sms")
    assert msg.status == "retry"
    returned = load_event("order_returned")
    returned["occurred_at"] = "2026-03-03T15:02:00Z"
    clock.set_now(SMS_DUE + timedelta(minutes=2))
    enrolled.ingest([returned])
    run_until_quiet(enrolled, retry_at)
    enrolled.run_due(SMS_DUE + timedelta(days=1))
    assert len(enrolled.twilio.create_requests) == 1  # never sent: correct
    (step,) = steps_of("checkin")
    assert (step.status, step.outcome) == ("cancelled", "exited")
    (msg,) = messages("sms")
    assert msg.status != "retry", "the message still says it will be retried"


# -- quiet hours and weekdays across DST -------------------------------------------------------


@pytest.mark.parametrize(("delivered_at", "tick_at", "deferred_to"), [
    # spring forward (2026-03-08): 01:30 EST -> 08:00 EDT
    ("2026-03-05T14:02:00Z", "2026-03-08T06:30:00Z", "2026-03-08T12:00:00Z"),
    # fall back (2026-11-01): 01:30 EDT, the first of the two -> 08:00 EST
    ("2026-10-29T13:02:00Z", "2026-11-01T05:30:00Z", "2026-11-01T13:00:00Z"),
    # ... and 01:30 EST, the second -> 08:00 EST
    ("2026-10-29T13:02:00Z", "2026-11-01T06:30:00Z", "2026-11-01T13:00:00Z"),
])
def test_a_step_reaching_the_sender_in_quiet_hours_on_a_dst_night_waits_for_8_local(
        slice_stack: LocalStack, delivered_at: str, tick_at: str, deferred_to: str) -> None:
    at = clock.parse_iso(delivered_at)
    clock.set_now(at + timedelta(minutes=1))
    slice_stack.ingest([delivered(occurred_at=delivered_at)])
    results = slice_stack.run_due(clock.parse_iso(tick_at))  # the tick was down until now
    assert [d for r in results for d in r["due"]] == [deferred_to]
    assert slice_stack.twilio.create_requests == [] and messages("sms") == []
    (step,) = steps_of("checkin")
    assert (step.status, step.due_at) == (
        "pending", int(clock.parse_iso(deferred_to).timestamp()))
    slice_stack.run_due(clock.parse_iso(deferred_to))
    assert len(slice_stack.twilio.create_requests) == 1
    assert stats("checkin") == {"enrolled": 1, "sent": 1}


@pytest.mark.parametrize(("tick_at", "deferred_to"), [
    # down until 21:30 EST Monday: quiet hours, Tuesday not allowed -> 08:00 EDT Monday
    (datetime(2026, 3, 3, 2, 30, tzinfo=UTC), "2026-03-09T12:00:00Z"),
    # down until 10:30 EST Tuesday: not an allowed weekday -> 10:30 EDT Monday
    (datetime(2026, 3, 3, 15, 30, tzinfo=UTC), "2026-03-09T14:30:00Z"),
])
def test_a_weekday_step_deferred_across_the_dst_change_keeps_its_local_time(
        stack: LocalStack, tmp_path: Path, tick_at: datetime, deferred_to: str) -> None:
    (tmp_path / "mondays.json").write_text(json.dumps({
        "id": "mondays", "name": "Monday check-in", "trigger": {"event": "order.delivered"},
        "steps": [{"id": "checkin", "after": "P1D", "at": "10:00", "weekdays": ["mon"],
                   "channel": "sms", "template": "checkin"}]}))
    stack.push_campaigns(tmp_path, ROOT / "templates")
    clock.set_now(DELIVERED)  # Sunday 2026-03-01: due Monday 10:00 EST
    stack.ingest([delivered()])
    (step,) = steps_of("mondays")
    assert step.due_at == int(datetime(2026, 3, 2, 15, 0, tzinfo=UTC).timestamp())
    results = stack.run_due(tick_at)
    assert [d for r in results for d in r["due"]] == [deferred_to]
    stack.run_due(clock.parse_iso(deferred_to))
    assert len(stack.twilio.create_requests) == 1
    assert stats("mondays") == {"enrolled": 1, "sent": 1}


def test_the_wait_over_the_fall_back_night_is_not_lateness(
        stack: LocalStack, tmp_path: Path) -> None:
    """Due 20:45 EDT, reached at 21:30 EDT (45 min late, limit 1 h), deferred to 08:00 EST:
    11.5 h elapsed, 10.5 h on the wall clock. Counting the wait in wall-clock hours would
    make it 1 h 45 min late at 08:00; it is 45 min late, and goes out."""
    (tmp_path / "evening.json").write_text(json.dumps({
        "id": "evening", "name": "Evening check-in", "trigger": {"event": "order.delivered"},
        "steps": [{"id": "checkin", "after": "P2D", "at": "20:45", "channel": "sms",
                   "template": "checkin", "expire_after": "PT1H"}]}))
    stack.push_campaigns(tmp_path, ROOT / "templates")
    clock.set_now(datetime(2026, 10, 29, 13, 3, tzinfo=UTC))
    stack.ingest([delivered(occurred_at="2026-10-29T13:02:00Z")])
    results = stack.run_due(datetime(2026, 11, 1, 1, 30, tzinfo=UTC))
    assert [d for r in results for d in r["due"]] == ["2026-11-01T13:00:00Z"]
    stack.run_due(datetime(2026, 11, 1, 13, 0, tzinfo=UTC))
    assert len(stack.twilio.create_requests) == 1
    assert stats("evening") == {"enrolled": 1, "sent": 1}


# -- malformed send requests ---------------------------------------------------------------------


def _claimed_request(stack: LocalStack) -> dict[str, Any]:
    stack.tick(SMS_DUE)
    (request,) = receive("sends", visibility=300)
    body: dict[str, Any] = json.loads(request["Body"])
    return body


def _deliver_raw(stack: LocalStack, body: str) -> Any:
    return invoke(stack, "send", "sends",
                  [{"MessageId": "m-raw", "ReceiptHandle": "rh-raw", "Body": body}])


@pytest.mark.parametrize("body", [
    "not json",
    "[]",
    '{"claim_token": "t"}',
    "STEP:due_at=tomorrow",
])
def test_a_malformed_send_request_is_dead_lettered_with_its_reason(
        enrolled: LocalStack, body: str) -> None:
    if body.startswith("STEP:"):
        request = _claimed_request(enrolled)
        request["step"]["due_at"] = "tomorrow"
        body = json.dumps(request)
    payload = _deliver_raw(enrolled, body).payload
    assert (payload["processed"], payload["dead_lettered"]) == (1, 1)
    (dead,) = enrolled.dead_letters("sends-dlq")
    assert dead["MessageAttributes"]["reason"]["StringValue"].startswith(
        "malformed send request")
    assert enrolled.twilio.create_requests == []


@pytest.mark.parametrize("case", ["null_customer", "order_not_an_object", "nested_too_deep"])
def test_a_send_request_that_can_never_succeed_goes_to_the_dlq_not_back_to_the_queue(
        enrolled: LocalStack, case: str) -> None:
    request = _claimed_request(enrolled)
    if case == "null_customer":
        request["step"]["customer_id"] = None
        body = json.dumps(request)
    elif case == "order_not_an_object":
        request["step"]["order"] = "o-9"
        body = json.dumps(request)
    else:
        body = "[" * 100_000 + "]" * 100_000
    payload = _deliver_raw(enrolled, body).payload  # raises BatchIncomplete today
    assert (payload["processed"], payload["dead_lettered"]) == (1, 1)
    (dead,) = enrolled.dead_letters("sends-dlq")
    assert dead["MessageAttributes"]["reason"]["StringValue"]
    assert enrolled.twilio.create_requests == []


# -- no Scan on the less common paths -------------------------------------------------------------


@pytest.fixture
def metered() -> Iterator[None]:
    attach(tx.connection().client)
    for model in ALL_MODELS:
        attach(model._get_connection().connection.client)
    yield


def test_retries_sweeps_and_refusals_never_scan(enrolled: LocalStack, metered: None,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib.pipeline import send

    allowed = {"GetItem", "Query", "TransactWriteItems", "UpdateItem", "PutItem"}
    enrolled.ingest([delivered("evt-2", "c-2", occurred_at="2026-03-01T14:02:00Z")])
    refused = delivered("evt-3", "c-3", occurred_at="2026-03-01T14:02:00Z")
    refused["customer"]["phone"] = "+14155550199"
    enrolled.ingest([refused])
    enrolled.twilio.fail_next(429, 20429)
    enrolled.twilio.unsubscribed.add("+14155550199")
    with DdbMeter() as meter:
        results = enrolled.run_due(SMS_DUE)
        run_until_quiet(enrolled, min(clock.parse_iso(d) for r in results for d in r["due"]))
    assert set(meter.requests) <= allowed, meter.requests
    # A stuck send, swept by the tick.
    clock.set_now(DELIVERED)
    enrolled.ingest([delivered("evt-4", "c-4", occurred_at="2026-03-01T14:02:00Z")])
    enrolled.tick(SMS_DUE + timedelta(hours=2))

    def die(*_: Any, **__: Any) -> Any:
        raise RuntimeError("Lambda timed out")

    monkeypatch.setattr(send, "_deliver", die)
    with pytest.raises(BatchIncomplete):
        enrolled.pump("sends", "send")
    monkeypatch.undo()
    with DdbMeter() as meter:
        assert enrolled.tick(SMS_DUE + timedelta(hours=3))["swept"] == 1
    assert set(meter.requests) <= allowed, meter.requests
    assert "Scan" not in meter.requests
