"""One order event becomes one SMS and one email, through the real handlers."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from chalicelib import clock
from chalicelib.local.stack import LocalStack
from chalicelib.store.models import MessageModel, ScheduleModel
from tests.conftest import load_event

DELIVERED_AT = datetime(2026, 3, 1, 14, 3, tzinfo=UTC)


def test_one_event_becomes_an_sms_and_an_email(slice_stack: LocalStack) -> None:
    clock.set_now(DELIVERED_AT)
    event = load_event("order_delivered")
    results = slice_stack.ingest([event])
    assert results[0]["processed"] == 1
    # The SMS check-in is P2D at 10:00 New York time: 2026-03-03 15:00 UTC.
    assert "2026-03-03T15:00:00Z" in results[0]["due"]

    slice_stack.run_due(datetime(2026, 3, 3, 15, 0, tzinfo=UTC))
    sms = slice_stack.twilio.messages
    assert len(sms) == 1
    assert sms[0]["to"] == "+14155550123"
    assert "Ana" in sms[0]["body"] and "Kettle" in sms[0]["body"]

    # The care tip: P7D at 09:30 local, 2026-03-08 (after the DST change) 13:30 UTC.
    slice_stack.run_due(datetime(2026, 3, 8, 13, 30, tzinfo=UTC))
    emails = slice_stack.sent_emails()
    assert len(emails) == 1
    assert emails[0]["to"] == ["ana@example.com"]
    assert "Kettle" in emails[0]["subject"]

    sent = {m.channel: m for m in MessageModel.scan()}
    assert sent["sms"].status == "sent" and sent["sms"].provider_id == sms[0]["sid"]
    assert sent["email"].status == "sent" and sent["email"].provider_id == emails[0]["id"]


def test_the_same_event_three_times_enrolls_and_sends_once(slice_stack: LocalStack) -> None:
    clock.set_now(DELIVERED_AT)
    event = load_event("order_delivered")
    slice_stack.ingest([event])
    slice_stack.ingest([event, json.dumps(event)])
    assert ScheduleModel.count() == 2  # one step in each of the two campaigns
    for _ in range(2):
        slice_stack.run_due(datetime(2026, 3, 3, 15, 0, tzinfo=UTC))
        slice_stack.run_due(datetime(2026, 3, 8, 13, 30, tzinfo=UTC))
    assert len(slice_stack.twilio.messages) == 1
    assert len(slice_stack.sent_emails()) == 1


def test_unparseable_events_go_to_the_dlq_with_a_reason(slice_stack: LocalStack) -> None:
    clock.set_now(DELIVERED_AT)
    good = load_event("order_delivered")
    no_customer = {**good, "id": "evt-x"}
    del no_customer["customer"]
    results = slice_stack.ingest(["{not json", json.dumps(no_customer), json.dumps(good)])
    assert sum(r["processed"] for r in results) == 3
    assert sum(r["dead_lettered"] for r in results) == 2
    dead = slice_stack.dead_letters("events-dlq")
    reasons = sorted(m["MessageAttributes"]["reason"]["StringValue"] for m in dead)
    assert reasons[0].startswith("$.customer: required")
    assert reasons[1].startswith("invalid JSON")
    assert {m["Body"] for m in dead} == {"{not json", json.dumps(no_customer)}
    assert ScheduleModel.count() == 2  # the good event still enrolled


def test_exit_cancels_pending_steps(slice_stack: LocalStack) -> None:
    clock.set_now(DELIVERED_AT)
    slice_stack.ingest([load_event("order_delivered")])
    clock.set_now(datetime(2026, 3, 2, 9, tzinfo=UTC))
    slice_stack.ingest([load_event("order_returned")])
    slice_stack.run_due(datetime(2026, 3, 10, tzinfo=UTC))
    assert slice_stack.twilio.messages == []
    assert slice_stack.sent_emails() == []
    statuses = {s.status for s in ScheduleModel.scan()}
    assert statuses == {"cancelled"}


def test_hostile_json_goes_to_the_dlq_not_round_the_retry_loop(slice_stack: LocalStack) -> None:
    """Nesting deeper than the parser's recursion limit, an integer too long to
    convert, and a time outside the supported years are permanent errors."""
    clock.set_now(DELIVERED_AT)
    good = load_event("order_delivered")
    far = {**good, "id": "evt-far", "occurred_at": "9999-01-01T00:00:00Z"}
    bodies = ["[" * 30_000 + "]" * 30_000, '{"n": ' + "9" * 5_000 + "}", json.dumps(far)]
    results = slice_stack.ingest(bodies)
    assert sum(r["dead_lettered"] for r in results) == 3
    dead = slice_stack.dead_letters("events-dlq")
    reasons = sorted(m["MessageAttributes"]["reason"]["StringValue"] for m in dead)
    assert reasons[0] == "$.occurred_at: year 9999 is outside 1900-2199"
    assert reasons[1].startswith("invalid JSON: Exceeds the limit")
    assert reasons[2] == "invalid JSON: nested too deeply"
