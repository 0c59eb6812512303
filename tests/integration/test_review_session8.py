"""Session 8: a step waiting for its retry that ingest cancels settles its message.

Through the real handlers on moto and the local Twilio server, as the other
integration tests: an exit or a change of date that cancels a step whose first
attempt Twilio refused with a 429 (message ``retry``) must not leave the message
saying for ever that it will be retried, and a change back must still send it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from bench._ddb_meter import DdbMeter, attach_app_clients
from chalicelib import clock, handlers
from chalicelib.journeys.engine import Cancellation
from chalicelib.local.stack import LocalStack
from chalicelib.pipeline.ingest import add_cancelled
from chalicelib.store import tx
from chalicelib.store.models import MessageModel, ScheduleModel
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
    attach_app_clients()
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


# -- aftercare import writes its rows in batches ------------------------------------------

IMPORT_NOW = datetime(2026, 4, 1, 12, 0, tzinfo=UTC)


def _write_jsonl(path: Any, rows: list[dict[str, Any]]) -> Any:
    import json

    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _state() -> dict[str, Any]:
    """Everything an import writes, keyed so that two runs compare equal."""
    from chalicelib.store.models import CustomerModel, EventModel, StatsModel

    stats: dict[tuple[str, str], dict[str, int]] = {}
    for item in StatsModel.scan():
        pk = item.pk.rsplit("#", 1)[0]  # summed over the write shards
        totals = stats.setdefault((pk, item.day), {})
        for name, value in item.attribute_values.items():
            if isinstance(value, (int, float)) and name not in ("pk", "day"):
                totals[name] = totals.get(name, 0) + int(value)
    return {
        "customers": {c.customer_id: c.profile for c in CustomerModel.scan()},
        "schedule": {s.schedule_id: (s.status, s.due_at, s.step) for s in ScheduleModel.scan()},
        "markers": sorted(e.event_id for e in EventModel.scan()),
        "stats": stats,
    }


def _mixed_rows() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    customers = [{"id": f"m-{i:03d}", "phone": f"+1415555{i:04d}", "email": f"m{i}@example.com",
                  "timezone": ["America/Chicago", "Europe/Berlin", "Asia/Tokyo"][i % 3],
                  "birthday": f"19{70 + i % 30}-{1 + i % 12:02d}-{1 + i % 28:02d}",
                  "consent_sms": True, "consent_email": i % 4 != 0} for i in range(130)]
    orders = []
    for i in range(130):  # sorted by customer: each customer's orders one after another
        for j in range(i % 4):
            orders.append({"order_id": f"m-{i}-{j}", "customer_id": f"m-{i:03d}",
                           "placed_at": f"2025-{1 + j * 3:02d}-{1 + i % 28:02d}T10:00:00Z",
                           "total": 12.5 * (j + 1)})
    orders.append(dict(orders[5]))  # a row twice: counted once
    return customers, orders


def test_a_batched_import_writes_what_importing_each_row_alone_writes(
        live_stack: LocalStack, tmp_path: Any, monkeypatch: Any, capsys: Any) -> None:
    """The oracle for the batching: the same files through ``ingest_events`` (batches)
    and through ``ingest_event`` row by row (batches of one) end in the same tables."""
    from chalicelib.cli.main import main
    from chalicelib.pipeline import importer
    from chalicelib.store.models import ALL_MODELS as MODELS

    customers, orders = _mixed_rows()
    c_path = _write_jsonl(tmp_path / "c.jsonl", customers)
    o_path = _write_jsonl(tmp_path / "o.jsonl", orders)
    clock.set_now(IMPORT_NOW)
    assert main(["import", "customers", str(c_path)]) == 0
    assert main(["import", "orders", str(o_path)]) == 0
    batched = _state()
    assert "1 already imported" in capsys.readouterr().out  # the row given twice
    for model in MODELS:  # the same stack, emptied
        for item in model.scan():
            item.delete()
    monkeypatch.setattr(importer, "BATCH_ROWS", 1)
    assert main(["import", "customers", str(c_path)]) == 0
    assert main(["import", "orders", str(o_path)]) == 0
    capsys.readouterr()
    alone = _state()
    assert batched["customers"] == alone["customers"]
    assert batched["schedule"] == alone["schedule"]
    assert batched["markers"] == alone["markers"]
    assert batched["stats"] == alone["stats"]
    assert {cid: p.get("order_count", 0) for cid, p in batched["customers"].items()} == {
        f"m-{i:03d}": i % 4 for i in range(130)}


def test_a_profile_changed_between_the_batch_read_and_its_write_keeps_both_changes(
        live_stack: LocalStack, tmp_path: Any, monkeypatch: Any, capsys: Any) -> None:
    from chalicelib.cli.main import main
    from chalicelib.pipeline import ingest
    from chalicelib.store.models import CustomerModel

    clock.set_now(IMPORT_NOW)
    rows = [{"id": f"p-{i}", "phone": f"+1415555{i:04d}", "timezone": "America/Chicago",
             "birthday": "1980-06-01", "consent_sms": True, "updated_at": "2026-03-01T00:00:00Z"}
            for i in range(30)]
    path = _write_jsonl(tmp_path / "c.jsonl", rows)
    real = ingest.load_customers

    def read_then_live_event(ids: Any) -> Any:
        found = real(ids)
        live = load_event("customer_updated")
        live.update(id="live-1", occurred_at="2026-03-31T12:00:00Z")
        live["customer"] = {"id": "p-7", "email": "p7@example.com",
                            "attributes": {"tier": "gold"}}
        live_stack.ingest([live])  # lands after the batch read its customers
        return found

    monkeypatch.setattr(ingest, "load_customers", read_then_live_event)
    assert main(["import", "customers", str(path)]) == 0
    assert "30 imported" in capsys.readouterr().out
    profile = CustomerModel.get("p-7").profile
    assert profile["email"] == "p7@example.com" and profile["attributes"] == {"tier": "gold"}
    assert profile["phone"] == "+14155550007" and profile["birthday"] == "1980-06-01"
    assert len([s for s in ScheduleModel.scan() if s.step["customer_id"] == "p-7"
                and s.step["campaign_id"] == "birthday"]) == 1


def test_an_erased_customer_in_a_batch_stays_erased_and_the_rest_import(
        live_stack: LocalStack, tmp_path: Any, capsys: Any) -> None:
    from chalicelib.cli.main import main
    from chalicelib.pipeline.erasure import erase
    from chalicelib.store.models import CustomerModel

    clock.set_now(IMPORT_NOW)
    rows = [{"id": f"e-{i}", "phone": f"+1415555{i:04d}", "consent_sms": True,
             "updated_at": "2026-03-01T00:00:00Z"} for i in range(5)]
    path = _write_jsonl(tmp_path / "c.jsonl", rows)
    assert main(["import", "customers", str(path)]) == 0
    erase(["e-2"])
    # A later re-import of the old export (its markers gone) must not bring e-2 back.
    from chalicelib.store.models import EventModel
    for marker in EventModel.scan():
        marker.delete()
    assert main(["import", "customers", str(path)]) == 0
    capsys.readouterr()
    erased = CustomerModel.get("e-2")
    assert erased.erased_at is not None and not erased.phone
    assert [CustomerModel.get(f"e-{i}").phone for i in (0, 1, 3, 4)] == [
        "+14155550000", "+14155550001", "+14155550003", "+14155550004"]


def test_the_import_of_1000_customers_makes_few_requests(
        live_stack: LocalStack, tmp_path: Any, capsys: Any) -> None:
    from chalicelib.cli.main import main

    clock.set_now(IMPORT_NOW)
    rows = [{"id": f"r-{i:04d}", "phone": f"+1415555{i:04d}", "timezone": "America/Chicago",
             "birthday": f"19{70 + i % 30}-{1 + i % 12:02d}-20", "consent_sms": True}
            for i in range(1000)]
    path = _write_jsonl(tmp_path / "c.jsonl", rows)
    attach_app_clients()
    with DdbMeter() as meter:
        assert main(["import", "customers", str(path)]) == 0
    capsys.readouterr()
    requests = dict(meter.requests)
    # 10 batches of 100 rows: one BatchGetItem each, about 25 rows per transaction.
    assert requests.get("BatchGetItem", 0) == 10
    assert requests.get("TransactWriteItems", 0) <= 1000 / 20, requests
    assert requests.get("GetItem", 0) == 0, requests
