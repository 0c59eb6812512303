"""Session 8: a step waiting for its retry that ingest cancels settles its message.

Through the real handlers on moto and the local Twilio server, as the other
integration tests: an exit or a change of date that cancels a step whose first
attempt Twilio refused with a 429 (message ``retry``) must not leave the message
saying for ever that it will be retried, and a change back must still send it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from bench._ddb_meter import DdbMeter, attach
from chalicelib import clock, handlers
from chalicelib.journeys.engine import Cancellation
from chalicelib.local.stack import LocalStack
from chalicelib.pipeline.ingest import add_cancelled
from chalicelib.store import tx
from chalicelib.store.models import ALL_MODELS, MessageModel, ScheduleModel
from tests.conftest import FIXTURES, ROOT, delivered, load_event

DELIVERED = datetime(2026, 3, 1, 14, 3, tzinfo=UTC)
SMS_DUE = datetime(2026, 3, 3, 15, 0, tzinfo=UTC)  # P2D at 10:00 New York (EST)
BIRTHDAY_DUE = datetime(2026, 5, 20, 15, 0, tzinfo=UTC)  # 10:00 in Chicago (CDT)


def _only_message() -> MessageModel:
    (msg,) = list(MessageModel.scan())
    return msg


def _customer_update(event_id: str, at: datetime, **customer: Any) -> dict[str, Any]:
    event = load_event("customer_updated")
    event.update(id=event_id, occurred_at=clock.iso(at))
    event["customer"] = {"id": "b-1", **customer}
    return event


def test_an_exit_settles_the_message_of_a_step_waiting_for_its_retry_in_one_more_write(
        slice_stack: LocalStack) -> None:
    clock.set_now(DELIVERED)
    slice_stack.ingest([delivered()])
    slice_stack.twilio.fail_next(429, 20429)
    slice_stack.run_due(SMS_DUE)
    assert _only_message().status == "retry"
    returned = load_event("order_returned")
    returned["occurred_at"] = "2026-03-03T15:02:00Z"
    clock.set_now(SMS_DUE + timedelta(minutes=2))
    attach(tx.connection().client)
    for model in ALL_MODELS:
        attach(model._get_connection().connection.client)
    with DdbMeter() as meter:
        slice_stack.ingest([returned])
    # The SMS step's cancel fails on its retries and is written again with its
    # message; the email step (never attempted) is cancelled by the first attempt.
    assert meter.requests["TransactWriteItems"] == 2
    msg = _only_message()
    assert (msg.status, msg.outcome, msg.reason) == ("exited", "exited", "order.returned")
    assert [h["status"] for h in msg.history] == ["sending", "retry"]  # attempts kept
    assert sorted((s.status, s.outcome) for s in ScheduleModel.scan()) == [
        ("cancelled", "exited"), ("cancelled", "exited")]
    slice_stack.run_due(SMS_DUE + timedelta(days=10))
    assert len(slice_stack.twilio.create_requests) == 1


def test_a_date_change_back_sends_the_step_whose_retry_the_first_change_cancelled(
        stack: LocalStack) -> None:
    stack.push_campaigns(FIXTURES / "campaigns_birthday", ROOT / "templates")
    handlers.live().invalidate()
    clock.set_now(datetime(2026, 4, 1, 12, 0, tzinfo=UTC))
    stack.ingest([_customer_update("b-1-new", clock.now(), phone="+14155550131",
                                   birthday="1980-05-20", timezone="America/Chicago",
                                   consent={"sms": True})])
    stack.twilio.fail_next(429, 20429)
    results = stack.run_due(BIRTHDAY_DUE)
    assert _only_message().status == "retry"
    retry_at = min(clock.parse_iso(d) for r in results for d in r["due"])
    # Before the retry, the birthday is corrected, then put back.
    clock.set_now(BIRTHDAY_DUE + timedelta(minutes=1))
    stack.ingest([_customer_update("b-1-typo", clock.now(), birthday="1980-05-21")])
    msg = _only_message()
    assert (msg.status, msg.reason) == ("cancelled", "date changed")
    clock.set_now(BIRTHDAY_DUE + timedelta(minutes=2))
    stack.ingest([_customer_update("b-1-back", clock.now(), birthday="1980-05-20")])
    stack.run_due(max(retry_at, clock.now()) + timedelta(minutes=1))
    texts = [r for r in stack.twilio.create_requests]
    assert len(texts) == 2, "the greeting of 2026-05-20 was never sent"
    greeting = [m for m in MessageModel.scan() if m.customer_id == "b-1"
                and m.due_at.startswith("2026-05-20")]
    assert [m.status for m in greeting] == ["sent"]


def test_cancellations_past_the_transactions_room_are_left_to_the_sender() -> None:
    """A step waiting for its retry needs two items to cancel; those that would not
    fit one transaction are not given the two-item fallback (its retry decides)."""
    t = tx.Transaction(required=[lambda tw: None] * 97)
    cancels = [Cancellation(("c", "k", "r", f"s{i}"), "exited", "order.returned")
               for i in range(3)]
    add_cancelled(t, cancels)
    assert len(t.optional) == 3 and len(t) == 100
    assert not t.fallback and not t.fallback_if
    t = tx.Transaction(required=[lambda tw: None] * 95)
    add_cancelled(t, cancels)
    assert sorted(t.fallback) == [0, 1] and len(t) == 100
