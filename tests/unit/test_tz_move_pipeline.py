"""A timezone move with pending idle and event steps, through ``simulate`` and through
the real handlers on the local stack (ingest, tick, send on moto), which must decide
the same (``both``); and the moved schedule items as the pipeline stores them.

The engine side is in test_tz_move_idle.py and test_tz_move_event.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench._ddb_meter import DdbMeter, attach
from chalicelib import clock
from chalicelib.clock import parse_iso
from chalicelib.local.stack import LocalStack
from chalicelib.store import tx
from chalicelib.store.models import ALL_MODELS, CustomerModel, MessageModel, ScheduleModel
from tests.e2e.test_simulate_semantics_audit import campaign, email, ev, sms
from tests.integration.test_decision_core_gaps import both, push

TOKYO = "Asia/Tokyo"
NY = "America/New_York"


def win_back() -> dict[str, object]:
    return campaign("wb", {"idle": "P120D"},
                    [email("miss-you", at="10:30"), email("last-call", after="P7D", at="10:30")])


def ts(at: str) -> int:
    return int(parse_iso(at).timestamp())


def test_a_move_replans_the_pending_idle_items_in_place(stack: LocalStack,
                                                         tmp_path: Path) -> None:
    push(stack, tmp_path, [win_back()])
    clock.set_now(parse_iso("2026-01-10T15:00:00Z"))
    stack.ingest([ev("o1", "order.placed", "2026-01-10T15:00:00Z", "c1", order="o1")])
    # Planned in New York: 10:30 EDT on 10 and 17 May.
    assert sorted(i.due_at for i in ScheduleModel.scan()) == [
        ts("2026-05-10T14:30:00Z"), ts("2026-05-17T14:30:00Z")]
    clock.set_now(parse_iso("2026-03-01T00:00:00Z"))
    (result,) = stack.ingest([ev("m1", "customer.updated", "2026-03-01T00:00:00Z", "c1",
                                 tz=TOKYO)])
    assert result["due"] == ["2026-05-11T01:30:00Z", "2026-05-18T01:30:00Z"]
    items = sorted(ScheduleModel.scan(), key=lambda i: i.due_at)
    # The same two items, still pending, at 10:30 JST; the due index follows.
    assert [(i.step["step_id"], i.status, i.due_at, i.step["due_at"], i.step["enrolled_at"])
            for i in items] == [
        ("miss-you", "pending", ts("2026-05-11T01:30:00Z"), "2026-05-11T01:30:00Z",
         "2026-05-10T14:00:00Z"),
        ("last-call", "pending", ts("2026-05-18T01:30:00Z"), "2026-05-18T01:30:00Z",
         "2026-05-10T14:00:00Z")]
    assert not list(ScheduleModel.due.query(items[0].due_shard,
                                            ScheduleModel.due_at <= ts("2026-05-11T01:29:00Z")))
    record = CustomerModel.get("c1").profile["enrollments"]["wb"]
    assert (record["ref"], record["at"]) == ("idle:2026-01-10T15:00:00Z",
                                             "2026-05-10T14:00:00Z")
    stack.run_due(parse_iso("2026-05-11T01:30:00Z"))
    (msg,) = MessageModel.scan()
    assert (msg.step_id, msg.outcome, msg.decided_at) == ("miss-you", "send",
                                                          "2026-05-11T01:30:00Z")


def test_idle_steps_follow_timezone_moves_on_both_sides(stack: LocalStack,
                                                        tmp_path: Path) -> None:
    push(stack, tmp_path, [
        win_back(),
        campaign("soon", {"idle": "P120D"}, [email("soon", after="PT2H")]),
        campaign("ck", {"event": "order.delivered"}, [email("mail", after="P2D", at="10:00")]),
    ])
    rows = both(stack, [
        # Moves east before the spell: 10:30 JST, from the spell's start (23:00 JST).
        ev("a1", "order.placed", "2026-01-10T15:00:00Z", "east", order="o1"),
        ev("a2", "customer.updated", "2026-03-01T00:00:00Z", "east", tz=TOKYO),
        # Moves after the first step was sent: only the second moves.
        ev("b1", "order.placed", "2026-01-10T15:00:00Z", "between", order="o1"),
        ev("b2", "customer.updated", "2026-05-12T00:00:00Z", "between", tz=TOKYO),
        # Moves west from Tokyo onto New York's spring-forward day: 10:30 EDT.
        ev("c1", "order.placed", "2025-11-08T05:00:00Z", "dst", tz=TOKYO, order="o1"),
        ev("c2", "customer.updated", "2026-02-01T00:00:00Z", "dst", tz=NY),
        # Moves on the idle day before 10:30 EDT, at 23:20 JST: the spell started at
        # 23:00 JST, so 10:30 JST is the next morning.
        ev("d1", "order.placed", "2026-01-10T15:00:00Z", "sameday", order="o1"),
        ev("d2", "customer.updated", "2026-05-10T14:20:00Z", "sameday", tz=TOKYO),
        # Idle from 20:00 EDT on 9 May (00:00Z), 09:00 JST on 10 May: moves at 14:00
        # JST, when 10:30 JST (and the PT2H step, 11:00 JST) had passed: due at once.
        ev("f1", "order.placed", "2026-01-10T01:00:00Z", "late", order="o1"),
        ev("f2", "customer.updated", "2026-05-10T05:00:00Z", "late", tz=TOKYO),
        # Delivered at 23:00 JST, then moves: the event step goes at 10:00 JST two
        # days later, past 10:00: on 4 April (not 10:00 EDT, 23:00 JST, on 3 April).
        ev("e1", "order.delivered", "2026-04-01T14:00:00Z", "event", order="o1"),
        ev("e2", "customer.updated", "2026-04-02T00:00:00Z", "event", tz=TOKYO),
    ], "2026-06-01T00:00:00Z")
    assert [(r.customer, r.campaign, r.step, r.at, r.outcome) for r in rows] == [
        ("between", "soon", "soon", "2026-05-10T16:00:00Z", "sent"),  # before the move
        ("between", "wb", "last-call", "2026-05-18T01:30:00Z", "sent"),
        ("between", "wb", "miss-you", "2026-05-10T14:30:00Z", "sent"),  # before the move
        # PT2H is 07:00Z, 03:00 EDT (16:00 JST): out of New York's night at 08:00 EDT.
        ("dst", "soon", "soon", "2026-03-08T12:00:00Z", "sent"),
        ("dst", "wb", "last-call", "2026-03-15T14:30:00Z", "sent"),
        ("dst", "wb", "miss-you", "2026-03-08T14:30:00Z", "sent"),
        # PT2H is 16:00Z, 01:00 JST: 08:00 JST.
        ("east", "soon", "soon", "2026-05-10T23:00:00Z", "sent"),
        ("east", "wb", "last-call", "2026-05-18T01:30:00Z", "sent"),
        ("east", "wb", "miss-you", "2026-05-11T01:30:00Z", "sent"),
        ("event", "ck", "mail", "2026-04-04T01:00:00Z", "sent"),
        ("late", "soon", "soon", "2026-05-10T05:00:00Z", "sent"),
        ("late", "wb", "last-call", "2026-05-17T01:30:00Z", "sent"),
        ("late", "wb", "miss-you", "2026-05-10T05:00:00Z", "sent"),
        ("sameday", "soon", "soon", "2026-05-10T23:00:00Z", "sent"),
        ("sameday", "wb", "last-call", "2026-05-18T01:30:00Z", "sent"),
        ("sameday", "wb", "miss-you", "2026-05-11T01:30:00Z", "sent")]


# ------------------------------------------------------------------ event enrollments

GIFT = {"==": [{"var": "event.data.gift"}, True]}


def checkin() -> dict[str, Any]:
    """A delivery check-in by SMS two days later at 10:00 (its text names the order's
    first item), and a tip ten days later whose condition reads the event's data."""
    return campaign("care", {"event": "order.delivered"},
                    [sms("checkin", after="P2D", at="10:00"),
                     email("tip", after="P10D", at="10:00", condition=GIFT)],
                    exit={"event": "order.returned"})


def metered() -> None:
    attach(tx.connection().client)
    for model in ALL_MODELS:
        attach(model._get_connection().connection.client)


def test_a_move_replans_the_pending_event_items_in_place(stack: LocalStack,
                                                          tmp_path: Path) -> None:
    push(stack, tmp_path, [checkin()])
    metered()
    # Two deliveries (two enrollments: orders o1 and o2) at 10:00 EDT, 23:00 JST.
    clock.set_now(parse_iso("2026-04-01T14:00:00Z"))
    stack.ingest([ev("d1", "order.delivered", "2026-04-01T14:00:00Z", "c1", order="o1",
                     data={"gift": True})])
    clock.set_now(parse_iso("2026-04-02T14:00:00Z"))
    with DdbMeter() as plain:
        stack.ingest([ev("d2", "order.delivered", "2026-04-02T14:00:00Z", "c1",
                         order="o2", data={"gift": True})])
    before = {i.schedule_id: i.step for i in ScheduleModel.scan()}
    assert sorted((s["ref"], s["step_id"], s["due_at"]) for s in before.values()) == [
        ("order:o1", "checkin", "2026-04-03T14:00:00Z"),
        ("order:o1", "tip", "2026-04-11T14:00:00Z"),
        ("order:o2", "checkin", "2026-04-04T14:00:00Z"),
        ("order:o2", "tip", "2026-04-12T14:00:00Z")]
    # Moves to Tokyo on 3 April at 20:00Z, after o1's check-in was sent.
    stack.run_due(parse_iso("2026-04-03T14:00:00Z"))
    clock.set_now(parse_iso("2026-04-03T20:00:00Z"))
    with DdbMeter() as move:
        (result,) = stack.ingest([ev("m1", "customer.updated", "2026-04-03T20:00:00Z",
                                     "c1", tz=TOKYO)])
    with DdbMeter() as after:
        stack.ingest([ev("u1", "customer.updated", "2026-04-03T21:00:00Z", "c1",
                         tz=TOKYO)])
    # An event that moves no zone makes the usual two requests; the move reads the
    # four candidate items in one BatchGetItem.
    assert plain.requests == after.requests == {"GetItem": 1, "TransactWriteItems": 1}
    assert move.requests == {"GetItem": 1, "BatchGetItem": 1, "TransactWriteItems": 1}
    assert result["due"] == ["2026-04-05T01:00:00Z", "2026-04-12T01:00:00Z",
                             "2026-04-13T01:00:00Z"]
    items = {i.schedule_id: i for i in ScheduleModel.scan()}
    assert set(items) == set(before)  # rewritten in place, under the same ids
    assert sorted((i.step["ref"], i.step["step_id"], i.status,
                   i.due_at if i.status == "pending" else None, i.step["due_at"])
                  for i in items.values()) == [
        ("order:o1", "checkin", "done", None, "2026-04-03T14:00:00Z"),
        ("order:o1", "tip", "pending", ts("2026-04-12T01:00:00Z"), "2026-04-12T01:00:00Z"),
        ("order:o2", "checkin", "pending", ts("2026-04-05T01:00:00Z"),
         "2026-04-05T01:00:00Z"),
        ("order:o2", "tip", "pending", ts("2026-04-13T01:00:00Z"), "2026-04-13T01:00:00Z")]
    for sid, item in items.items():  # all else as planned: order, data, event, enrollment
        assert {k: v for k, v in item.step.items() if k != "due_at"} == {
            k: v for k, v in before[sid].items() if k != "due_at"}
    # The moved check-in goes at 10:00 JST and still names the order's item.
    stack.run_due(parse_iso("2026-04-05T01:00:00Z"))
    texts = [m["body"] for m in stack.twilio.messages]
    assert len(texts) == 2 and all("Kettle" in t for t in texts)
    assert sorted((m.step_id, m.decided_at) for m in MessageModel.scan()) == [
        ("checkin", "2026-04-03T14:00:00Z"), ("checkin", "2026-04-05T01:00:00Z")]


def test_event_steps_follow_timezone_moves_on_both_sides(stack: LocalStack,
                                                         tmp_path: Path) -> None:
    push(stack, tmp_path, [
        checkin(),
        campaign("ship", {"event": "order.shipped"}, [email("soon", after="PT20H")]),
        campaign("view", {"event": "order.delivered"}, [email("mail", after="P1D")],
                 reentry={"policy": "always"}, exit={"event": "order.returned"}),
    ])
    rows = both(stack, [
        # Two enrollments, then a move before anything is due: 10:00 JST.
        ev("a1", "order.delivered", "2026-04-01T14:00:00Z", "two", order="o1",
           data={"gift": True}),
        ev("a2", "order.delivered", "2026-04-02T14:00:00Z", "two", order="o2"),
        ev("a3", "customer.updated", "2026-04-02T20:00:00Z", "two", tz=TOKYO),
        # Moves after the check-in was sent: only the tip moves.
        ev("b1", "order.delivered", "2026-04-01T14:00:00Z", "sent", order="o1",
           data={"gift": True}),
        ev("b2", "customer.updated", "2026-04-05T00:00:00Z", "sent", tz=TOKYO),
        # PT20H: 06:00 EDT, held to 08:00 EDT (12:00Z) in New York; 19:00 JST (10:00Z)
        # in Tokyo, passed at the move (11:00Z): due at the move.
        ev("c1", "order.shipped", "2026-04-01T14:00:00Z", "passed", order="o1"),
        ev("c2", "customer.updated", "2026-04-02T11:00:00Z", "passed", tz=TOKYO),
        # Returned in the event that moves: exited, not moved.
        ev("d1", "order.delivered", "2026-04-01T14:00:00Z", "gone", order="o1"),
        ev("d2", "order.returned", "2026-04-02T00:00:00Z", "gone", tz=TOKYO, order="o1"),
        # Moves back west before it is due: 10:00 EDT again.
        ev("e1", "order.delivered", "2026-04-01T14:00:00Z", "back", order="o1"),
        ev("e2", "customer.updated", "2026-04-02T00:00:00Z", "back", tz=TOKYO),
        ev("e3", "customer.updated", "2026-04-02T12:00:00Z", "back", tz=NY),
    ], "2026-05-01T00:00:00Z")
    assert [(r.customer, r.campaign, r.step, r.at, r.outcome) for r in rows] == [
        ("back", "care", "checkin", "2026-04-03T14:00:00Z", "sent"),
        ("back", "care", "tip", "2026-04-11T14:00:00Z", "skipped"),  # no gift
        # P1D with no time from 10:00 EDT on 1 April: due before the first move.
        ("back", "view", "mail", "2026-04-02T14:00:00Z", "sent"),
        ("gone", "care", "checkin", "2026-04-03T14:00:00Z", "exited"),
        ("gone", "care", "tip", "2026-04-11T14:00:00Z", "exited"),
        ("gone", "view", "mail", "2026-04-02T14:00:00Z", "exited"),
        ("passed", "ship", "soon", "2026-04-02T11:00:00Z", "sent"),
        ("sent", "care", "checkin", "2026-04-03T14:00:00Z", "sent"),
        ("sent", "care", "tip", "2026-04-12T01:00:00Z", "sent"),
        ("sent", "view", "mail", "2026-04-02T14:00:00Z", "sent"),
        ("two", "care", "checkin", "2026-04-04T01:00:00Z", "sent"),
        ("two", "care", "checkin", "2026-04-05T01:00:00Z", "sent"),
        ("two", "care", "tip", "2026-04-12T01:00:00Z", "sent"),
        ("two", "care", "tip", "2026-04-13T01:00:00Z", "skipped"),  # o2: no gift
        ("two", "view", "mail", "2026-04-02T14:00:00Z", "sent"),
        # From 23:00 JST on 2 April (the second delivery), a day on Tokyo's calendar
        # is 23:00 JST on 3 April, quiet: 08:00 JST on 4 April (not 14:00Z, 10:00 EDT).
        ("two", "view", "mail", "2026-04-03T23:00:00Z", "sent")]


def test_more_moved_items_than_one_transaction_holds(stack: LocalStack,
                                                     tmp_path: Path) -> None:
    """60 enrollments of two steps, 50 of them kept in the profile's refs: their 100
    pending items move, in more than one transaction (the event's own holds as many
    as fit); the ten enrollments no longer listed keep their times."""
    push(stack, tmp_path, [campaign(
        "many", {"event": "page.viewed"},
        [email("a", after="P3D", at="10:00"), email("b", after="P4D", at="10:00")],
        reentry={"policy": "always"})])
    clock.set_now(parse_iso("2026-04-01T14:00:00Z"))
    stack.ingest([ev(f"v{i:02d}", "page.viewed", f"2026-04-01T14:{i:02d}:00Z", "c1")
                  for i in range(50)])
    stack.ingest([ev(f"w{i:02d}", "page.viewed", f"2026-04-01T15:{i:02d}:00Z", "c1")
                  for i in range(10)])
    assert len(list(ScheduleModel.scan())) == 120
    clock.set_now(parse_iso("2026-04-02T00:00:00Z"))
    stack.ingest([ev("m1", "customer.updated", "2026-04-02T00:00:00Z", "c1", tz=TOKYO)])
    dues = sorted((i.step["event_id"] >= "v10", i.step["step_id"], i.status, i.due_at)
                  for i in ScheduleModel.scan())
    # Only the latest 50 refs are kept (v10..v49, w00..w09): v00..v09 keep 10:00 EDT.
    assert dues == [
        # 10:00 EDT for v00, planned at 10:00 EDT; 10:01-10:09 EDT is past 10:00.
        (False, "a", "pending", ts("2026-04-04T14:00:00Z")),
        *[(False, "a", "pending", ts("2026-04-05T14:00:00Z"))] * 9,
        (False, "b", "pending", ts("2026-04-05T14:00:00Z")),
        *[(False, "b", "pending", ts("2026-04-06T14:00:00Z"))] * 9,
        *[(True, "a", "pending", ts("2026-04-05T01:00:00Z"))] * 50,
        *[(True, "b", "pending", ts("2026-04-06T01:00:00Z"))] * 50]
