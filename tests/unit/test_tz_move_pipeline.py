"""A timezone move with pending idle steps, through ``simulate`` and through the real
handlers on the local stack (ingest, tick, send on moto), which must decide the same
(``both``); and the moved schedule item as the pipeline stores it.

The engine side is in test_tz_move_idle.py. Event steps keep the times planned in
the old zone (README, known issues): here they only show both sides still agree.
"""

from __future__ import annotations

from pathlib import Path

from chalicelib import clock
from chalicelib.clock import parse_iso
from chalicelib.local.stack import LocalStack
from chalicelib.store.models import CustomerModel, MessageModel, ScheduleModel
from tests.e2e.test_simulate_semantics_audit import campaign, email, ev
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
        # Delivered, then moves: the event step keeps its New York time (held back by
        # Tokyo's quiet hours when it comes).
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
        ("event", "ck", "mail", "2026-04-03T23:00:00Z", "sent"),
        ("late", "soon", "soon", "2026-05-10T05:00:00Z", "sent"),
        ("late", "wb", "last-call", "2026-05-17T01:30:00Z", "sent"),
        ("late", "wb", "miss-you", "2026-05-10T05:00:00Z", "sent"),
        ("sameday", "soon", "soon", "2026-05-10T23:00:00Z", "sent"),
        ("sameday", "wb", "last-call", "2026-05-18T01:30:00Z", "sent"),
        ("sameday", "wb", "miss-you", "2026-05-11T01:30:00Z", "sent")]
