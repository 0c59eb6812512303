"""The decision core, without AWS."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from chalicelib.config.compiled import compile_campaign
from chalicelib.config.model import Campaign
from chalicelib.events import parse_event
from chalicelib.journeys import keys
from chalicelib.journeys.engine import CampaignSet, decide_step, process_event

CUSTOMER = {"id": "c1", "phone": "+14155550123", "email": "a@example.com",
            "timezone": "America/New_York", "consent": {"sms": True, "email": True}}


def campaign(**over: Any) -> Campaign:
    base: dict[str, Any] = {
        "id": "checkin", "name": "Check-in", "trigger": {"event": "order.delivered"},
        "steps": [{"id": "s1", "after": "P2D", "at": "10:00", "channel": "sms",
                   "template": "checkin"}],
    }
    base.update(over)
    return Campaign.model_validate(base)


def cset(*campaigns: Campaign) -> CampaignSet:
    return CampaignSet(compile_campaign(c) for c in campaigns)


def event(etype: str, at: str, eid: str, order: str | None = "o1",
          **customer: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {"id": eid, "type": etype, "occurred_at": at,
                           "customer": {**CUSTOMER, **customer}}
    if order:
        raw["order"] = {"id": order, "total": 50.0,
                        "items": [{"sku": "K", "category": "appliance"}]}
    return parse_event(raw)


def test_enrolls_and_plans_the_step() -> None:
    cs = cset(campaign())
    r = process_event(event("order.delivered", "2026-03-01T14:00:00Z", "e1"), None, cs)
    assert [s.step_id for s in r.planned] == ["s1"]
    assert r.planned[0].due_at == datetime(2026, 3, 3, 15, 0, tzinfo=UTC)
    assert r.planned[0].id == keys.schedule_id("c1", "checkin", "order:o1", "s1")


def test_once_per_order_blocks_a_second_delivery_event_of_the_same_order() -> None:
    cs = cset(campaign())
    r1 = process_event(event("order.delivered", "2026-03-01T14:00:00Z", "e1"), None, cs)
    r2 = process_event(event("order.delivered", "2026-03-01T15:00:00Z", "e2"), r1.profile, cs)
    assert r2.planned == [] and r2.rows[0].reason == "already enrolled for this order"
    r3 = process_event(event("order.delivered", "2026-03-05T15:00:00Z", "e3", order="o2"),
                       r2.profile, cs)
    assert len(r3.planned) == 1


def test_reentry_window() -> None:
    cs = cset(campaign(reentry={"policy": "once_per_window", "window": "P30D"}))
    r1 = process_event(event("order.delivered", "2026-03-01T14:00:00Z", "e1"), None, cs)
    r2 = process_event(event("order.delivered", "2026-03-20T14:00:00Z", "e2", order="o2"),
                       r1.profile, cs)
    r3 = process_event(event("order.delivered", "2026-04-01T14:00:00Z", "e3", order="o3"),
                       r2.profile, cs)
    assert (len(r1.planned), len(r2.planned), len(r3.planned)) == (1, 0, 1)


def test_exit_cancels_and_send_time_recheck_exits() -> None:
    cs = cset(campaign(exit={"event": "order.returned"}))
    r1 = process_event(event("order.delivered", "2026-03-01T14:00:00Z", "e1"), None, cs)
    r2 = process_event(event("order.returned", "2026-03-02T14:00:00Z", "e2"), r1.profile, cs)
    assert [c.schedule_id for c in r2.cancelled] == [r1.planned[0].id]
    step = r1.planned[0]
    d = decide_step(step, r2.profile, cs.get("checkin"), step.due_at)
    assert (d.outcome, d.reason) == ("exited", "order.returned")


def test_exit_event_older_than_enrollment_does_not_exit() -> None:
    cs = cset(campaign(exit={"event": "order.returned"}))
    r1 = process_event(event("order.delivered", "2026-03-01T14:00:00Z", "e1"), None, cs)
    late = process_event(event("order.returned", "2026-02-20T14:00:00Z", "e0", order="o0"),
                         r1.profile, cs)
    assert late.cancelled == []
    step = r1.planned[0]
    assert decide_step(step, late.profile, cs.get("checkin"), step.due_at).outcome == "send"


def test_expire_after_drops_stale_steps() -> None:
    c = campaign(steps=[{"id": "s1", "after": "P2D", "channel": "sms", "template": "t",
                         "expire_after": "PT12H"}])
    cs = cset(c)
    r = process_event(event("order.delivered", "2026-03-01T14:00:00Z", "e1"), None, cs)
    step = r.planned[0]
    late = decide_step(step, r.profile, cs.get("checkin"), step.due_at + timedelta(hours=13))
    assert late.outcome == "expired" and "13h late" in late.reason
    assert decide_step(step, r.profile, cs.get("checkin"),
                       step.due_at + timedelta(hours=11)).outcome == "send"


def test_consent_is_checked_at_send_time() -> None:
    cs = cset(campaign())
    r1 = process_event(event("order.delivered", "2026-03-01T14:00:00Z", "e1"), None, cs)
    stop = event("customer.updated", "2026-03-02T14:00:00Z", "e2", order=None,
                 consent={"sms": False})
    r2 = process_event(stop, r1.profile, cs)
    d = decide_step(r1.planned[0], r2.profile, cs.get("checkin"), r1.planned[0].due_at)
    assert (d.outcome, d.reason) == ("suppressed", "sms consent withdrawn")


def test_holdout_is_deterministic_and_never_messaged() -> None:
    c = campaign(holdout_percent=50)
    cs = cset(c)
    held = [f"c{i}" for i in range(200) if keys.in_holdout("checkin", f"c{i}", 50)]
    assert 70 < len(held) < 130
    cid = held[0]
    r = process_event(event("order.delivered", "2026-03-01T14:00:00Z", "e1", id=cid), None, cs)
    assert r.planned[0].holdout
    d = decide_step(r.planned[0], r.profile, cs.get("checkin"), r.planned[0].due_at)
    assert d.outcome == "held_out"


def test_goal_conversion_counted_in_window_for_both_arms() -> None:
    c = campaign(goal={"event": "order.placed", "within": "P30D"})
    cs = cset(c)
    r1 = process_event(event("order.delivered", "2026-03-01T14:00:00Z", "e1"), None, cs)
    r2 = process_event(event("order.placed", "2026-03-10T14:00:00Z", "e2", order="o2"),
                       r1.profile, cs)
    assert len(r2.conversions) == 1
    r3 = process_event(event("order.placed", "2026-03-11T14:00:00Z", "e3", order="o3"),
                       r2.profile, cs)
    assert r3.conversions == []  # counted once per enrollment


def test_birthday_on_29_february_is_celebrated_on_28th_in_non_leap_years() -> None:
    c = Campaign.model_validate({
        "id": "birthday", "name": "Birthday", "trigger": {"date": "customer.birthday"},
        "steps": [{"id": "greet", "at": "10:00", "channel": "email", "template": "bday"}]})
    cs = cset(c)
    e = event("customer.updated", "2026-01-10T12:00:00Z", "e1", order=None,
              birthday="1992-02-29")
    r = process_event(e, None, cs)
    assert len(r.planned) == 1
    assert r.planned[0].due_at == datetime(2026, 2, 28, 15, 0, tzinfo=UTC)
    d = decide_step(r.planned[0], r.profile, cs.get("birthday"), r.planned[0].due_at)
    assert d.outcome == "send"
    (nxt,) = d.follow_ups
    assert nxt.due_at.astimezone(UTC).date().isoformat() == "2027-02-28"
    (leap,) = decide_step(nxt, r.profile, cs.get("birthday"), nxt.due_at).follow_ups
    assert leap.due_at.date().isoformat() == "2028-02-29"


def test_idle_winback_is_cancelled_by_a_new_order() -> None:
    c = Campaign.model_validate({
        "id": "winback", "name": "Win-back", "trigger": {"idle": "P120D"},
        "steps": [{"id": "miss-you", "at": "11:00", "channel": "email", "template": "w"}]})
    cs = cset(c)
    r1 = process_event(event("order.placed", "2026-01-01T14:00:00Z", "e1"), None, cs)
    (step,) = r1.planned
    assert step.due_at.date().isoformat() == "2026-05-01"
    r2 = process_event(event("order.placed", "2026-02-01T14:00:00Z", "e2", order="o2"),
                       r1.profile, cs)
    assert step.id in [c.schedule_id for c in r2.cancelled] and len(r2.planned) == 1
    d = decide_step(step, r2.profile, cs.get("winback"), step.due_at)
    assert (d.outcome, d.reason) == ("cancelled", "ordered again")


def test_audience_rule_filters() -> None:
    c = campaign(audience={">=": [{"var": "customer.order_count"}, 2]})
    cs = cset(c)
    r1 = process_event(event("order.delivered", "2026-03-01T14:00:00Z", "e1"), None, cs)
    assert r1.planned == [] and r1.rows[0].reason == "audience rule false"
    r2 = process_event(event("order.delivered", "2026-03-09T14:00:00Z", "e2", order="o2"),
                       r1.profile, cs)
    assert len(r2.planned) == 1


def test_delivery_before_its_order_enrolls_once() -> None:
    cs = cset(campaign(audience={">=": [{"var": "customer.order_count"}, 1]}),
              campaign(id="thanks", trigger={"event": "order.placed"}))
    r1 = process_event(event("order.delivered", "2026-03-03T14:00:00Z", "e2"), None, cs)
    assert r1.profile["order_count"] == 1 and len(r1.planned) == 1
    late = process_event(event("order.placed", "2026-03-01T10:00:00Z", "e1"), r1.profile, cs)
    assert late.profile["order_count"] == 1  # the same order, counted once
    assert [s.campaign_id for s in late.planned] == ["thanks"]
    again = process_event(event("order.delivered", "2026-03-03T15:00:00Z", "e3"),
                          late.profile, cs)
    assert [s.campaign_id for s in again.planned] == []


def _late_trigger(goal_at: str, goal: str = "order.placed", within: str = "P30D",
                  ) -> tuple[Any, Any]:
    """A goal event processed first, then the (late) delivery that enrolls at 03-01."""
    cs = cset(campaign(goal={"event": goal, "within": within}))
    r1 = process_event(event(goal, goal_at, "g1", order="o1" if goal != "order.placed"
                             else "o2"), None, cs)
    r2 = process_event(event("order.delivered", "2026-03-01T14:00:00Z", "e1"), r1.profile, cs)
    return r2, cs


def test_a_goal_processed_before_its_late_trigger_converts_the_enrollment_once() -> None:
    r, cs = _late_trigger("2026-03-10T14:00:00Z")
    assert [(c.campaign_id, c.arm, c.enrolled_at) for c in r.conversions] == [
        ("checkin", "treatment", "2026-03-01T14:00:00Z")]
    assert ("converted", "2026-03-10T14:00:00Z") in [(row.outcome, row.at) for row in r.rows]
    assert r.profile["enrollments"]["checkin"]["converted"] == "2026-03-10T14:00:00Z"
    later = process_event(event("order.placed", "2026-03-12T14:00:00Z", "g2", order="o3"),
                          r.profile, cs)
    assert later.conversions == []  # once per enrollment


def test_a_goal_processed_before_its_late_trigger_counts_only_inside_the_window() -> None:
    assert _late_trigger("2026-04-01T14:00:01Z")[0].conversions == []  # past 30 days
    assert _late_trigger("2026-03-01T14:00:00Z")[0].conversions == []  # its own instant
    assert _late_trigger("2026-02-20T14:00:00Z")[0].conversions == []  # before it


def test_an_order_scoped_goal_seen_before_its_late_trigger_converts() -> None:
    # Goal: a return (of order o1) logged before the delivery of o1 that enrolls.
    r, _ = _late_trigger("2026-03-05T09:00:00Z", goal="order.returned")
    assert len(r.conversions) == 1
