"""A customer who moves timezone has the pending steps of their event enrollments
planned again in the new zone (docs/campaigns.md, "A customer whose timezone
changes"), from the steps as stored: each keeps its enrollment, order snapshot,
event data and event id; only its due time is planned again, from the enrollment's
instant in the new zone. Steps already due or decided are left as they are.

The pipeline side (moto) is in test_tz_move_pipeline.py.
"""

from __future__ import annotations

import io
import json
from typing import Any

from chalicelib.clock import iso, parse_iso
from chalicelib.config.compiled import compile_campaign
from chalicelib.config.model import Campaign
from chalicelib.events import parse_event
from chalicelib.journeys.engine import (
    CampaignSet,
    EventResult,
    PlannedStep,
    event_steps_to_move,
    move_event_steps,
    process_event,
)
from chalicelib.journeys.simulate import simulate

NY = "America/New_York"
TOKYO = "Asia/Tokyo"
GIFT = {"==": [{"var": "event.data.gift"}, True]}
FIRST_ORDER = {"==": [{"var": "event.order.id"}, "o1"]}


def mail(step_id: str, **kw: Any) -> dict[str, Any]:
    return {"id": step_id, "channel": "email", "template": "win_back", **kw}


def on(cid: str, event: str, steps: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"id": cid, "name": cid, "trigger": {"event": event}, "steps": steps, **extra}


# A delivery check-in two days later at 10:00, and a tip ten days later at 10:00.
CHECKIN = on("ck", "order.delivered", [mail("checkin", after="P2D", at="10:00"),
                                       mail("tip", after="P10D", at="10:00")])
# 20 hours after shipping: elapsed time, only moved out of quiet hours.
SOON = on("soon", "order.shipped", [mail("soon", after="PT20H")])


def campaigns(*raw: dict[str, Any]) -> CampaignSet:
    return CampaignSet(compile_campaign(Campaign.model_validate(r)) for r in raw)


def ev(eid: str, etype: str, at: str, cid: str, tz: str = NY, order: str | None = None,
       data: dict[str, Any] | None = None) -> dict[str, Any]:
    customer = {"id": cid, "email": f"{cid}@example.com", "consent": {"email": True},
                "timezone": tz}
    raw: dict[str, Any] = {"id": eid, "type": etype, "occurred_at": at, "customer": customer}
    if order is not None:
        raw["order"] = {"id": order, "total": 80.0, "items": [{"sku": "KX-200",
                                                               "name": "Kettle"}]}
    if data is not None:
        raw["data"] = data
    return raw


def run(cs: CampaignSet, *events: dict[str, Any]) -> list[tuple[dict[str, Any] | None,
                                                                   EventResult]]:
    """Each parsed event's profile before it and its result (no step decided)."""
    out: list[tuple[dict[str, Any] | None, EventResult]] = []
    profile = None
    for raw in events:
        result = process_event(parse_event(raw), profile, cs)
        out.append((profile, result))
        profile = result.profile
    return out


def sent(cs: CampaignSet, events: list[dict[str, Any]], end: str = "2026-05-01T00:00:00Z",
         ) -> list[tuple[str, str, str, str, str]]:
    log = io.StringIO("".join(json.dumps(e) + "\n" for e in events))
    sim = simulate(log, cs, end=parse_iso(end))
    return sorted((r.customer, r.campaign, r.step, r.at, r.outcome)
                  for r in sim.rows if r.step != "-")


# Delivered at 10:00 EDT on 1 April (14:00Z), 23:00 JST: planned in New York, the
# check-in at 10:00 EDT on 3 April (14:00Z); in Tokyo 2 days later is 23:00 on 3
# April, past 10:00, so 10:00 JST on 4 April (01:00Z).
DELIVERED = ev("d1", "order.delivered", "2026-04-01T14:00:00Z", "c1", order="o1",
               data={"gift": True})
MOVE = ev("m1", "customer.updated", "2026-04-02T00:00:00Z", "c1", tz=TOKYO)


def test_a_pending_event_step_is_planned_again_from_the_stored_step() -> None:
    cs = campaigns(on("ck", "order.delivered",
                      [mail("checkin", after="P2D", at="10:00", condition=GIFT)]))
    (_, delivered), (before, moved) = run(cs, DELIVERED, MOVE)
    (stored,) = delivered.planned
    assert iso(stored.due_at) == "2026-04-03T14:00:00Z"
    at = parse_iso("2026-04-02T00:00:00Z")
    assert event_steps_to_move(moved, before, at, cs) == [stored.key]
    (step,) = move_event_steps(moved, before, at, [stored], cs)
    assert iso(step.due_at) == "2026-04-04T01:00:00Z"
    # The same schedule item, enrollment, order snapshot, event data and event id.
    assert (step.id, step.enrolled_at, step.event_id) == (stored.id, "2026-04-01T14:00:00Z",
                                                          "d1")
    assert step.order == stored.order
    assert step.order is not None and step.order["items"][0]["name"] == "Kettle"
    assert step.data == {"gift": True}
    assert (step.holdout, step.variant, step.deferred_for) == (
        stored.holdout, stored.variant, stored.deferred_for)
    assert iso(stored.due_at) == "2026-04-03T14:00:00Z"  # the input is not modified
    # The engine alone moves nothing of an event enrollment (it has no stored steps).
    assert moved.moved == []


def test_nothing_is_looked_up_without_a_change_of_zone_or_a_recent_enrollment() -> None:
    cs = campaigns(CHECKIN)
    same = ev("u1", "customer.updated", "2026-04-02T00:00:00Z", "c1", tz=NY)
    (_, _), (before, result) = run(cs, DELIVERED, same)
    assert event_steps_to_move(result, before, parse_iso("2026-04-02T00:00:00Z"), cs) == []
    # 13 days on, past the tip's 10 days (and any slack): nothing can be pending.
    late = ev("m2", "customer.updated", "2026-04-30T00:00:00Z", "c1", tz=TOKYO)
    (_, _), (before, result) = run(cs, DELIVERED, late)
    assert event_steps_to_move(result, before, parse_iso("2026-04-30T00:00:00Z"), cs) == []
    # A new customer's first event sets their zone: nothing to move.
    ((before, result),) = run(cs, DELIVERED)
    assert event_steps_to_move(result, before, parse_iso("2026-04-01T14:00:00Z"), cs) == []


def test_every_kept_ref_is_looked_up_and_only_pending_not_due_steps_move() -> None:
    cs = campaigns(CHECKIN)
    second = ev("d2", "order.delivered", "2026-04-02T14:00:00Z", "c1", order="o2")
    move = ev("m1", "customer.updated", "2026-04-04T00:00:00Z", "c1", tz=TOKYO)
    (_, first), (_, other), (before, result) = run(cs, DELIVERED, second, move)
    at = parse_iso("2026-04-04T00:00:00Z")
    wanted = event_steps_to_move(result, before, at, cs)
    assert sorted(k[2:] for k in wanted) == [("order:o1", "checkin"), ("order:o1", "tip"),
                                             ("order:o2", "checkin"), ("order:o2", "tip")]
    stored = [*first.planned, *other.planned]
    moved = move_event_steps(result, before, at, stored, cs)
    # o1's check-in was due at 14:00Z on 3 April, before the move: left as it is.
    assert sorted((s.ref, s.step_id, iso(s.due_at)) for s in moved) == [
        ("order:o1", "tip", "2026-04-12T01:00:00Z"),
        ("order:o2", "checkin", "2026-04-05T01:00:00Z"),
        ("order:o2", "tip", "2026-04-13T01:00:00Z")]
    # A step deferred once (it was due) is decided as it is, in its new zone.
    deferred = [PlannedStep.from_dict({**s.to_dict(), "deferred_for": 3600}) for s in stored]
    assert move_event_steps(result, before, at, deferred, cs) == []


def test_event_steps_follow_a_move_in_simulate() -> None:
    cs = campaigns(CHECKIN, SOON)
    rows = sent(cs, [
        # Moves before anything is due: both steps at 10:00 JST.
        DELIVERED, MOVE,
        # Two overlapping enrollments (orders o1 and o2): both move.
        ev("t1", "order.delivered", "2026-04-01T14:00:00Z", "two", order="o1"),
        ev("t2", "order.delivered", "2026-04-02T14:00:00Z", "two", order="o2"),
        ev("t3", "customer.updated", "2026-04-02T20:00:00Z", "two", tz=TOKYO),
        # Moves after the check-in was sent: only the tip moves.
        ev("s1", "order.delivered", "2026-04-01T14:00:00Z", "sent", order="o1"),
        ev("s2", "customer.updated", "2026-04-05T00:00:00Z", "sent", tz=TOKYO),
        # PT20H from 10:00 EDT is 06:00 EDT (10:00Z), quiet: 08:00 EDT (12:00Z). In
        # Tokyo 10:00Z is 19:00 JST, already passed at the move (11:00Z): due at once.
        ev("p1", "order.shipped", "2026-04-01T14:00:00Z", "passed", order="o1"),
        ev("p2", "customer.updated", "2026-04-02T11:00:00Z", "passed", tz=TOKYO),
        # The same without a move: 08:00 EDT.
        ev("q1", "order.shipped", "2026-04-01T14:00:00Z", "stay", order="o1"),
        # Moves west, Tokyo to New York: 10:00 EDT after the delivery's local day.
        ev("w1", "order.delivered", "2026-04-01T01:00:00Z", "west", tz=TOKYO, order="o1"),
        ev("w2", "customer.updated", "2026-04-02T00:00:00Z", "west", tz=NY),
    ])
    assert rows == [
        ("c1", "ck", "checkin", "2026-04-04T01:00:00Z", "sent"),
        ("c1", "ck", "tip", "2026-04-12T01:00:00Z", "sent"),
        ("passed", "soon", "soon", "2026-04-02T11:00:00Z", "sent"),
        ("sent", "ck", "checkin", "2026-04-03T14:00:00Z", "sent"),
        ("sent", "ck", "tip", "2026-04-12T01:00:00Z", "sent"),
        ("stay", "soon", "soon", "2026-04-02T12:00:00Z", "sent"),
        ("two", "ck", "checkin", "2026-04-04T01:00:00Z", "sent"),
        ("two", "ck", "checkin", "2026-04-05T01:00:00Z", "sent"),
        ("two", "ck", "tip", "2026-04-12T01:00:00Z", "sent"),
        ("two", "ck", "tip", "2026-04-13T01:00:00Z", "sent"),
        # Delivered 10:00 JST on 1 April = 21:00 EDT on 31 March: 10:00 EDT on 3 and
        # 11 April (14:00Z), rather than 10:00 JST on 3 and 11 April (01:00Z).
        ("west", "ck", "checkin", "2026-04-03T14:00:00Z", "sent"),
        ("west", "ck", "tip", "2026-04-11T14:00:00Z", "sent")]


def test_the_order_snapshot_and_data_still_decide_after_the_move() -> None:
    cs = campaigns(on("ck", "order.delivered", [
        mail("gift", after="P2D", at="10:00", condition=GIFT),
        mail("first", after="P2D", at="11:00", condition=FIRST_ORDER)]))
    rows = sent(cs, [DELIVERED, MOVE])
    assert rows == [("c1", "ck", "first", "2026-04-04T02:00:00Z", "sent"),
                    ("c1", "ck", "gift", "2026-04-04T01:00:00Z", "sent")]


def test_an_exit_with_the_move_cancels_rather_than_moves() -> None:
    cs = campaigns({**CHECKIN, "exit": {"event": "order.returned"}})
    rows = sent(cs, [
        DELIVERED,
        ev("r1", "order.returned", "2026-04-02T00:00:00Z", "c1", tz=TOKYO, order="o1")])
    assert rows == [("c1", "ck", "checkin", "2026-04-03T14:00:00Z", "exited"),
                    ("c1", "ck", "tip", "2026-04-11T14:00:00Z", "exited")]
