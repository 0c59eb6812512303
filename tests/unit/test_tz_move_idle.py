"""A customer who moves timezone has the pending steps of their idle spell planned
again in the new zone (docs/campaigns.md, "A customer whose timezone changes").

The spell keeps its start (the instant the customer went idle, as recorded); each
step not yet due is planned from it in the new zone, with the same key; steps
already due or decided are left as they are. A delay in hours is elapsed time: only
the quiet hours it was moved out of are the new zone's.
"""

from __future__ import annotations

import io
import json
from typing import Any

from chalicelib.clock import iso, parse_iso
from chalicelib.config.compiled import compile_campaign
from chalicelib.config.model import Campaign
from chalicelib.events import parse_event
from chalicelib.journeys.engine import CampaignSet, EventResult, process_event
from chalicelib.journeys.simulate import simulate

NY = "America/New_York"
TOKYO = "Asia/Tokyo"


def idle(cid: str, steps: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"id": cid, "name": cid, "trigger": {"idle": "P120D"}, "steps": steps, **extra}


def mail(step_id: str, **kw: Any) -> dict[str, Any]:
    return {"id": step_id, "channel": "email", "template": "win_back", **kw}


WIN_BACK = idle("wb", [mail("miss-you", at="10:30"), mail("last-call", after="P7D", at="10:30")])
SOON = idle("soon", [mail("soon", after="PT2H")])


def campaigns(*raw: dict[str, Any]) -> CampaignSet:
    return CampaignSet(compile_campaign(Campaign.model_validate(r)) for r in raw)


def ev(eid: str, etype: str, at: str, cid: str, tz: str | None = None,
       order: str | None = None) -> dict[str, Any]:
    customer: dict[str, Any] = {"id": cid, "email": f"{cid}@example.com",
                                "consent": {"email": True}}
    if tz is not None:
        customer["timezone"] = tz
    raw: dict[str, Any] = {"id": eid, "type": etype, "occurred_at": at, "customer": customer}
    if order is not None:
        raw["order"] = {"id": order, "total": 20.0}
    return raw


def results(cs: CampaignSet, *events: dict[str, Any]) -> list[EventResult]:
    """Each event's result in turn (no step decided in between)."""
    out: list[EventResult] = []
    profile = None
    for raw in events:
        result = process_event(parse_event(raw), profile, cs)
        profile = result.profile
        out.append(result)
    return out


def moved(result: EventResult) -> list[tuple[str, str, str]]:
    return [(s.step_id, s.enrolled_at, iso(s.due_at)) for s in result.moved]


def sent(cs: CampaignSet, events: list[dict[str, Any]], end: str = "2026-07-01T00:00:00Z",
         ) -> list[tuple[str, str, str, str]]:
    log = io.StringIO("".join(json.dumps(e) + "\n" for e in events))
    sim = simulate(log, cs, end=parse_iso(end))
    return sorted((r.customer, r.step, r.at, r.outcome) for r in sim.rows if r.step != "-")


# Ordered at 10:00 EST on 10 January: idle from 10:00 EDT on 10 May (14:00Z), 120 days
# on the New York calendar. Planned there: 10:30 EDT on 10 and 17 May (14:30Z).
ORDER = ev("o", "order.placed", "2026-01-10T15:00:00Z", "c1", tz=NY, order="o1")


def test_pending_idle_steps_move_to_their_local_time_in_the_new_zone() -> None:
    first, move = results(campaigns(WIN_BACK), ORDER,
                          ev("m", "customer.updated", "2026-03-01T00:00:00Z", "c1", tz=TOKYO))
    assert [iso(s.due_at) for s in first.planned] == ["2026-05-10T14:30:00Z",
                                                     "2026-05-17T14:30:00Z"]
    # The spell still starts at 14:00Z, 23:00 JST on 10 May: 10:30 JST is the next
    # morning, and 10:30 JST seven days on.
    assert moved(move) == [("miss-you", "2026-05-10T14:00:00Z", "2026-05-11T01:30:00Z"),
                           ("last-call", "2026-05-10T14:00:00Z", "2026-05-18T01:30:00Z")]
    # Same keys, same enrollment: no row, nothing planned, the record unchanged.
    assert [s.key for s in move.moved] == [s.key for s in first.planned]
    assert move.planned == [] and move.rows == [] and move.cancelled == []
    assert move.profile["enrollments"]["wb"] == first.profile["enrollments"]["wb"]
    # (Before: kept at 14:30Z, 23:30 JST, and held back to 08:00 JST.)
    assert sent(campaigns(WIN_BACK), [
        ORDER, ev("m", "customer.updated", "2026-03-01T00:00:00Z", "c1", tz=TOKYO)]) == [
        ("c1", "last-call", "2026-05-18T01:30:00Z", "sent"),
        ("c1", "miss-you", "2026-05-11T01:30:00Z", "sent")]


def test_only_steps_not_yet_due_move() -> None:
    cs = campaigns(WIN_BACK)
    events = [ORDER, ev("m", "customer.updated", "2026-05-12T00:00:00Z", "c1", tz=TOKYO)]
    _, move = results(cs, *events)
    # miss-you was due at 14:30Z on 10 May (and decided): only last-call moves.
    assert moved(move) == [("last-call", "2026-05-10T14:00:00Z", "2026-05-18T01:30:00Z")]
    assert sent(cs, events) == [("c1", "last-call", "2026-05-18T01:30:00Z", "sent"),
                                ("c1", "miss-you", "2026-05-10T14:30:00Z", "sent")]


def test_a_move_onto_a_dst_day_lands_on_the_local_time() -> None:
    # Ordered at 14:00 JST on 8 November 2025: idle from 14:00 JST on 8 March 2026
    # (05:00Z), which is 00:00 EST on the day New York springs forward.
    cs = campaigns(WIN_BACK)
    events = [ev("o", "order.placed", "2025-11-08T05:00:00Z", "c1", tz=TOKYO, order="o1"),
              ev("m", "customer.updated", "2026-02-01T00:00:00Z", "c1", tz=NY)]
    first, move = results(cs, *events)
    assert [iso(s.due_at) for s in first.planned] == ["2026-03-09T01:30:00Z",
                                                     "2026-03-16T01:30:00Z"]
    # 10:30 EDT (14:30Z, not 15:30Z) that day, and seven calendar days on.
    assert moved(move) == [("miss-you", "2026-03-08T05:00:00Z", "2026-03-08T14:30:00Z"),
                           ("last-call", "2026-03-08T05:00:00Z", "2026-03-15T14:30:00Z")]
    assert sent(cs, events) == [("c1", "last-call", "2026-03-15T14:30:00Z", "sent"),
                                ("c1", "miss-you", "2026-03-08T14:30:00Z", "sent")]


def test_a_delay_in_hours_keeps_its_instant_but_not_the_old_zones_quiet_hours() -> None:
    cs = campaigns(SOON)
    # Idle from 14:00Z on 10 May: PT2H is 16:00Z, 12:00 EDT, in any zone.
    chicago = results(cs, ORDER, ev("m", "customer.updated", "2026-03-01T00:00:00Z", "c1",
                                    tz="America/Chicago"))
    assert iso(chicago[0].planned[0].due_at) == "2026-05-10T16:00:00Z"
    assert chicago[1].moved == []  # 11:00 CDT: the same instant, nothing to move
    # 16:00Z is 01:00 JST, in quiet hours there: planned at 08:00 JST (23:00Z).
    tokyo = results(cs, ORDER, ev("m", "customer.updated", "2026-03-01T00:00:00Z", "c1",
                                  tz=TOKYO))
    assert moved(tokyo[1]) == [("soon", "2026-05-10T14:00:00Z", "2026-05-10T23:00:00Z")]
    # The other way: ordered at 21:00 JST, idle from 21:00 JST (12:00Z), and 14:00Z is
    # 23:00 JST, so planned at 08:00 JST (23:00Z). In New York 14:00Z is 10:00 EDT:
    # the delay's own instant, no longer held back by Tokyo's night.
    events = [ev("o", "order.placed", "2026-01-10T12:00:00Z", "c2", tz=TOKYO, order="o1"),
              ev("m", "customer.updated", "2026-03-01T00:00:00Z", "c2", tz=NY)]
    first, move = results(cs, *events)
    assert iso(first.planned[0].due_at) == "2026-05-10T23:00:00Z"
    assert moved(move) == [("soon", "2026-05-10T12:00:00Z", "2026-05-10T14:00:00Z")]
    assert sent(cs, events) == [("c2", "soon", "2026-05-10T14:00:00Z", "sent")]


def test_a_new_spell_in_the_moving_event_is_planned_in_the_new_zone_not_moved() -> None:
    cs = campaigns(WIN_BACK)
    _, again = results(cs, ORDER, ev("o2", "order.placed", "2026-03-01T00:00:00Z", "c1",
                                     tz=TOKYO, order="o2"))
    assert again.moved == []
    assert [c.reason for c in again.cancelled] == ["ordered again", "ordered again"]
    # 09:00 JST on 1 March + 120 days: 10:30 JST on 29 June.
    assert [iso(s.due_at) for s in again.planned] == ["2026-06-29T01:30:00Z",
                                                     "2026-07-06T01:30:00Z"]


def test_no_move_without_a_change_of_zone_or_a_spell_to_move() -> None:
    cs = campaigns(WIN_BACK | {"exit": {"event": "customer.complained"}})
    same = results(cs, ORDER, ev("m", "customer.updated", "2026-03-01T00:00:00Z", "c1", tz=NY))
    assert same[1].moved == []
    # No timezone given: the profile keeps New York's.
    kept = results(cs, ORDER, ev("m", "customer.updated", "2026-03-01T00:00:00Z", "c1"))
    assert kept[1].moved == []
    # A spell exited before the move had its steps cancelled: nothing moves.
    exited = results(cs, ORDER,
                     ev("x", "customer.complained", "2026-05-10T14:10:00Z", "c1"),
                     ev("m", "customer.updated", "2026-05-10T14:20:00Z", "c1", tz=TOKYO))
    assert len(exited[1].cancelled) == 2 and exited[2].moved == []


def test_a_timezone_learnt_after_the_spell_was_planned_moves_it() -> None:
    # Planned in the default zone (New York) while the customer's was unknown.
    cs = campaigns(WIN_BACK)
    _, move = results(cs, ev("o", "order.placed", "2026-01-10T15:00:00Z", "c1",
                             order="o1"),
                      ev("m", "customer.updated", "2026-03-01T00:00:00Z", "c1",
                         tz="Europe/Paris"))
    # Idle from 14:00Z (16:00 CEST) on 10 May: 10:30 CEST (08:30Z) the next morning.
    assert moved(move) == [("miss-you", "2026-05-10T14:00:00Z", "2026-05-11T08:30:00Z"),
                           ("last-call", "2026-05-10T14:00:00Z", "2026-05-18T08:30:00Z")]


def test_a_step_whose_new_time_has_passed_is_due_at_the_move_not_late() -> None:
    cs = campaigns(idle("wb", [mail("miss-you", at="10:30", expire_after="PT1H")]))
    # Ordered at 20:00 EST on 9 January: idle from 20:00 EDT on 9 May (00:00Z on 10
    # May), 10:30 EDT the next morning (14:30Z). In Tokyo the spell starts at 09:00
    # JST, so 10:30 JST (01:30Z) has passed when the customer moves at 14:00 JST.
    events = [ev("o", "order.placed", "2026-01-10T01:00:00Z", "c1", tz=NY, order="o1"),
              ev("m", "customer.updated", "2026-05-10T05:00:00Z", "c1", tz=TOKYO)]
    first, move = results(cs, *events)
    assert iso(first.planned[0].due_at) == "2026-05-10T14:30:00Z"
    assert moved(move) == [("miss-you", "2026-05-10T00:00:00Z", "2026-05-10T05:00:00Z")]
    # Sent at the move, not expired 3h30m late.
    assert sent(cs, events) == [("c1", "miss-you", "2026-05-10T05:00:00Z", "sent")]
