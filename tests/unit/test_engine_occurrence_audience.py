"""Goals strictly after the enrollment, and date and idle audiences asked as of the
occurrence: the clock they read (_occurrence_now), the profile they read (asked again
at later events and when each step is decided), and the rows they leave."""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib.config.compiled import compile_campaign
from chalicelib.config.model import Campaign
from chalicelib.events import parse_event
from chalicelib.journeys import engine
from chalicelib.journeys.engine import (
    CampaignSet,
    Row,
    backfill_profile,
    decide_step,
    process_event,
)
from chalicelib.journeys.profile import Profile
from chalicelib.journeys.timing import zone
from chalicelib.rules.reads import reads_clock

GOLD = {"==": [{"var": "customer.attributes.tier"}, "gold"]}
ADULT = {">=": [{"years_since": [{"var": "customer.birthday"}]}, 18]}
IDLE_120 = {">=": [{"days_since": [{"var": "customer.last_order_at"}]}, 120]}
STEP = {"id": "s", "at": "10:00", "channel": "email", "template": "t"}


def camp(cid: str, trigger: dict[str, Any], audience: Any = None,
         **over: Any) -> Campaign:
    raw: dict[str, Any] = {"id": cid, "name": cid, "trigger": trigger, "steps": [STEP]}
    if audience is not None:
        raw["audience"] = audience
    raw.update(over)
    return Campaign.model_validate(raw)


def cset(*campaigns: Campaign) -> CampaignSet:
    return CampaignSet(compile_campaign(c) for c in campaigns)


def ev(eid: str, etype: str, at: str, order: str | None = None, **customer: Any
       ) -> dict[str, Any]:
    raw: dict[str, Any] = {"id": eid, "type": etype, "occurred_at": at,
                           "customer": {"id": "c1", "email": "a@example.com",
                                        "timezone": "America/New_York", **customer}}
    if order:
        raw["order"] = {"id": order, "total": 10.0}
    return parse_event(raw)


def run(cs: CampaignSet, *events: dict[str, Any]) -> tuple[Profile, list[Any]]:
    """Process ``events`` in turn: the last profile and every result."""
    profile: Profile | None = None
    results = []
    for e in events:
        r = process_event(e, profile, cs)
        profile = r.profile
        results.append(r)
    assert profile is not None
    return profile, results


# ----------------------------------------------------------------- goals strictly after

def test_a_goal_at_the_enrollments_own_instant_does_not_convert_it() -> None:
    cs = cset(camp("g", {"event": "order.delivered"},
                   goal={"event": "order.placed", "within": "P7D"}))
    for at, converted in (("2026-04-01T14:00:00Z", False), ("2026-04-01T14:00:01Z", True)):
        _, (enrolled, goal) = run(cs, ev("d", "order.delivered", "2026-04-01T14:00:00Z", "o1"),
                                  ev("p", "order.placed", at, "o2"))
        assert enrolled.rows[0].outcome == "enrolled"
        assert bool(goal.conversions) is converted, at
        assert [r.outcome for r in goal.rows if r.outcome == "converted"] == (
            ["converted"] if converted else [])


# ------------------------------------------------------------- the occurrence's clock

def test_reads_clock() -> None:
    reads = reads_clock
    assert not reads(GOLD)
    assert not reads({">=": [{"var": "customer.order_count"}, 1]})
    assert not reads(True)
    assert reads(ADULT) and reads(IDLE_120)
    assert reads({"is_anniversary": [{"var": "customer.birthday"}, "UTC"]})
    assert reads({"<": [{"var": "now"}, "2026-06-01"]})
    assert reads({"var": ["now", "x"]}) and reads({"val": ["now"]}) and reads({"val": []})
    assert reads({"var": ""}) and reads({"var": {"cat": ["n", "ow"]}})
    assert reads({"and": [GOLD, {"!": {"var": "now"}}]})
    assert not reads({"preserve": {"var": "now"}})
    assert not reads({"missing": ["now"]})  # presence only: the same at any time


def _now(c: Campaign, ref: str, start: str, tz: str) -> str:
    return engine._occurrence_now(compile_campaign(c), ref, start, zone(tz))


@pytest.mark.parametrize(("tz", "start", "expected"), [
    # Local midnight on 10 June is the day before in UTC east of it: midnight UTC.
    ("Asia/Tokyo", "2026-06-09T15:00:00Z", "2026-06-10T00:00:00Z"),
    ("Pacific/Kiritimati", "2026-06-09T10:00:00Z", "2026-06-10T00:00:00Z"),
    # West of UTC it is already 10 June in UTC: the start itself.
    ("America/New_York", "2026-06-10T04:00:00Z", "2026-06-10T04:00:00Z"),
    ("UTC", "2026-06-10T00:00:00Z", "2026-06-10T00:00:00Z"),
])
def test_a_date_is_asked_on_its_local_date(tz: str, start: str, expected: str) -> None:
    c = camp("b", {"date": "customer.birthday"}, ADULT)
    assert _now(c, "birthday:2008-06-10:2026", start, tz) == expected
    # Read from the ref: the same after a move to another zone.
    assert _now(c, "birthday:2008-06-10:2026", start, "America/Los_Angeles") == expected


def test_a_leap_day_is_asked_on_the_day_it_is_celebrated() -> None:
    feb28 = camp("b", {"date": "customer.birthday"}, ADULT)
    mar1 = camp("m", {"date": "customer.birthday", "leap_day": "mar1"}, ADULT)
    ref = "birthday:2008-02-29:2026"
    assert _now(feb28, ref, "2026-02-27T15:00:00Z", "Asia/Tokyo") == "2026-02-28T00:00:00Z"
    assert _now(mar1, ref, "2026-02-28T15:00:00Z", "Asia/Tokyo") == "2026-03-01T00:00:00Z"


def test_an_idle_spell_is_asked_once_its_duration_has_elapsed() -> None:
    wb = camp("wb", {"idle": "P120D"}, IDLE_120)
    # 09:00 EST on 5 Jan + 120 calendar days = 09:00 EDT on 5 May (13:00Z), an hour
    # short of 120 elapsed days: asked at 14:00Z, where days_since reads 120.
    assert _now(wb, "idle:2026-01-05T14:00:00Z", "2026-05-05T13:00:00Z",
                "America/New_York") == "2026-05-05T14:00:00Z"
    # Across the autumn change the calendar days are longer: the start.
    assert _now(wb, "idle:2026-08-01T13:00:00Z", "2026-11-29T14:00:00Z",
                "America/New_York") == "2026-11-29T14:00:00Z"
    # 08:00 JST on 5 May is 23:00Z on 4 May: midnight UTC of the local date.
    assert _now(wb, "idle:2026-01-04T23:00:00Z", "2026-05-04T23:00:00Z",
                "Asia/Tokyo") == "2026-05-05T00:00:00Z"


def test_a_ref_this_release_did_not_write_is_asked_at_its_start() -> None:
    c = camp("b", {"date": "customer.birthday"}, ADULT)
    assert _now(c, "odd", "2026-06-09T15:00:00Z", "Asia/Tokyo") == "2026-06-09T15:00:00Z"
    assert _now(c, "birthday:2008-13-10:2026", "2026-06-09T15:00:00Z",
                "Asia/Tokyo") == "2026-06-09T15:00:00Z"


def test_an_audience_that_does_not_read_now_is_asked_at_the_start(
        monkeypatch: pytest.MonkeyPatch) -> None:
    called: list[str] = []

    def occurrence_now(campaign: Any, ref: str, start: str, tz: Any) -> str:
        called.append(ref)
        return "2026-06-10T00:00:00Z"

    monkeypatch.setattr(engine, "_occurrence_now", occurrence_now)
    profile: Profile = {"id": "c1", "attributes": {"tier": "gold"}}
    gold = compile_campaign(camp("g", {"date": "customer.birthday"}, GOLD))
    adult = compile_campaign(camp("a", {"date": "customer.birthday"}, ADULT))
    ref, start, tz = "birthday:2008-06-10:2026", "2026-06-09T15:00:00Z", zone("Asia/Tokyo")
    assert engine._audience_holds(gold, ref, start, profile, tz)
    assert called == []
    assert not engine._audience_holds(adult, ref, start, profile, tz)  # no birthday
    assert called == [ref]


# --------------------------------------------------------------- date campaigns

def test_an_eighteenth_birthday_east_of_utc_is_planned_and_sent() -> None:
    cs = cset(camp("adult", {"date": "customer.birthday"}, ADULT))
    profile, (r,) = run(cs, ev("e1", "customer.updated", "2026-03-01T14:00:00Z",
                               timezone="Asia/Tokyo", birthday="2008-06-10"))
    assert r.rows == [Row("c1", "adult", "-", "2026-03-01T14:00:00Z", "planned",
                          "birthday:2008-06-10:2026")]
    (step,) = r.planned
    d = decide_step(step, profile, cs.get("adult"), step.due_at)
    assert d.outcome == "send"


def test_a_date_audience_false_leaves_one_skipped_row_and_is_asked_again() -> None:
    cs = cset(camp("bd", {"date": "customer.birthday"}, GOLD))
    _, (known, again, joined, later) = run(
        cs,
        ev("e1", "customer.updated", "2026-04-01T14:00:00Z", birthday="1990-05-20",
           attributes={"tier": "silver"}),
        ev("e2", "customer.updated", "2026-04-05T14:00:00Z", attributes={"x": 1}),
        ev("e3", "customer.updated", "2026-04-10T14:00:00Z", attributes={"tier": "gold"}),
        ev("e4", "customer.updated", "2026-04-12T14:00:00Z", attributes={"tier": "silver"}),
    )
    # Skipped by the event that makes the date known; the next still false: no row.
    assert known.rows == [Row("c1", "bd", "-", "2026-04-01T14:00:00Z", "skipped",
                              "audience rule false")]
    assert (known.planned, again.rows, again.planned) == ([], [], [])
    # Asked at each event: planned once the customer joins.
    assert joined.rows == [Row("c1", "bd", "-", "2026-04-10T14:00:00Z", "planned",
                               "birthday:1990-05-20:2026")]
    assert [s.step_id for s in joined.planned] == ["s"]
    # Leaving again cancels nothing at ingest: the step asks when it is decided.
    assert (later.rows, later.planned, later.cancelled) == ([], [], [])


def test_a_changed_date_whose_audience_is_false_says_so() -> None:
    cs = cset(camp("bd", {"date": "customer.birthday"}, GOLD))
    _, (_, changed) = run(
        cs,
        ev("e1", "customer.updated", "2026-04-01T14:00:00Z", birthday="1990-05-20",
           attributes={"tier": "silver"}),
        ev("e2", "customer.updated", "2026-04-05T14:00:00Z", birthday="1990-05-21"))
    assert [(r.outcome, r.reason) for r in changed.rows] == [
        ("skipped", "audience rule false")]


def test_a_date_step_asks_the_audience_with_the_profile_when_decided() -> None:
    cs = cset(camp("bd", {"date": "customer.birthday"}, GOLD))
    profile, (r,) = run(cs, ev("e1", "customer.updated", "2026-04-01T14:00:00Z",
                               birthday="1990-05-20", attributes={"tier": "gold"}))
    (step,) = r.planned
    c = cs.get("bd")
    assert decide_step(step, profile, c, step.due_at).outcome == "send"
    silver = {**profile, "attributes": {"tier": "silver"}}
    d = decide_step(step, silver, c, step.due_at)
    assert (d.outcome, d.reason) == ("skipped", "audience rule false")
    assert [s.ref for s in d.follow_ups] == ["birthday:1990-05-20:2027"]  # asked then


def test_an_event_campaign_does_not_ask_its_audience_again_when_a_step_is_decided() -> None:
    cs = cset(camp("ev", {"event": "order.delivered"}, GOLD))
    profile, (r,) = run(cs, ev("e1", "order.delivered", "2026-04-01T14:00:00Z", "o1",
                               attributes={"tier": "gold"}))
    (step,) = r.planned
    silver = {**profile, "attributes": {"tier": "silver"}}
    assert decide_step(step, silver, cs.get("ev"), step.due_at).outcome == "send"


# --------------------------------------------------------------- idle campaigns

def test_an_idle_spell_leaves_a_planned_row() -> None:
    cs = cset(camp("wb", {"idle": "P30D"}))
    _, (r,) = run(cs, ev("e1", "order.placed", "2026-04-01T14:00:00Z", "o1"))
    assert r.rows == [Row("c1", "wb", "-", "2026-04-01T14:00:00Z", "planned",
                          "idle:2026-04-01T14:00:00Z")]
    assert [(s.ref, s.enrolled_at) for s in r.planned] == [
        ("idle:2026-04-01T14:00:00Z", "2026-05-01T14:00:00Z")]


def test_an_idle_audience_false_is_skipped_then_asked_until_the_idle_day() -> None:
    cs = cset(camp("wb", {"idle": "P30D"}, GOLD))
    _, (order, joined) = run(
        cs,
        ev("a1", "order.placed", "2026-04-01T14:00:00Z", "o1", attributes={"tier": "silver"}),
        ev("a2", "customer.updated", "2026-04-15T14:00:00Z", attributes={"tier": "gold"}))
    assert (order.planned, order.rows) == ([], [
        Row("c1", "wb", "-", "2026-04-01T14:00:00Z", "skipped", "audience rule false")])
    assert joined.rows == [Row("c1", "wb", "-", "2026-04-15T14:00:00Z", "planned",
                               "idle:2026-04-01T14:00:00Z")]
    assert [s.due_at.isoformat() for s in joined.planned] == ["2026-05-01T14:00:00+00:00"]
    # Joining on the idle day or after it is too late: the audience was asked as of then.
    _, (_, still, too_late) = run(
        cs,
        ev("b1", "order.placed", "2026-04-01T14:00:00Z", "o1", attributes={"tier": "silver"}),
        ev("b2", "customer.updated", "2026-04-20T14:00:00Z", attributes={"x": 1}),
        ev("b3", "customer.updated", "2026-05-01T14:00:00Z", attributes={"tier": "gold"}))
    assert (still.rows, still.planned) == ([], [])
    assert (too_late.rows, too_late.planned) == ([], [])


def test_a_new_order_out_of_the_audience_cancels_the_previous_spell() -> None:
    cs = cset(camp("wb", {"idle": "P30D"}, GOLD))
    _, (first, second) = run(
        cs,
        ev("a1", "order.placed", "2026-04-01T14:00:00Z", "o1", attributes={"tier": "gold"}),
        ev("a2", "order.placed", "2026-04-10T14:00:00Z", "o2", attributes={"tier": "silver"}))
    assert [r.outcome for r in first.rows] == ["planned"]
    assert [(c.outcome, c.reason) for c in second.cancelled] == [("cancelled", "ordered again")]
    assert [(r.outcome, r.reason) for r in second.rows] == [("skipped", "audience rule false")]
    assert second.planned == []


def test_an_idle_step_asks_the_audience_as_of_the_idle_day() -> None:
    cs = cset(camp("wb", {"idle": "P120D"}, IDLE_120),
              camp("gold", {"idle": "P120D"}, GOLD))
    profile, (r,) = run(cs, ev("e1", "order.placed", "2026-01-05T14:00:00Z", "o1",
                               attributes={"tier": "gold"}))
    by_campaign = {s.campaign_id: s for s in r.planned}
    assert set(by_campaign) == {"wb", "gold"}  # days_since reads 120 across the DST change
    step = by_campaign["wb"]
    assert decide_step(step, profile, cs.get("wb"), step.due_at).outcome == "send"
    step = by_campaign["gold"]
    silver = {**profile, "attributes": {"tier": "silver"}}
    d = decide_step(step, silver, cs.get("gold"), step.due_at)
    assert (d.outcome, d.reason) == ("skipped", "audience rule false")


def test_backfill_leaves_the_same_rows() -> None:
    cs = cset(camp("wb", {"idle": "P30D"}, GOLD), camp("bd", {"date": "customer.birthday"},
                                                      GOLD))
    profile: Profile = {"id": "c1", "timezone": "UTC", "attributes": {"tier": "silver"},
                        "birthday": "1990-05-20", "last_order_at": "2026-04-01T14:00:00Z",
                        "enrollments": {}}
    r = backfill_profile(profile, cs, engine.parse_iso("2026-04-02T00:00:00Z"))
    assert sorted((row.campaign, row.outcome) for row in r.rows) == [
        ("bd", "skipped"), ("wb", "skipped")]
    profile["attributes"] = {"tier": "gold"}
    r = backfill_profile(profile, cs, engine.parse_iso("2026-04-02T00:00:00Z"))
    assert sorted((row.campaign, row.outcome) for row in r.rows) == [
        ("bd", "planned"), ("wb", "planned")]
