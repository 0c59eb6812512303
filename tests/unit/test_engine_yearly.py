"""A date campaign's yearly occurrences: the enrollment moves on to each year's
occurrence once it has started, as decide_step's follow-ups planned it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from chalicelib.config.compiled import compile_campaign
from chalicelib.config.model import Campaign
from chalicelib.events import parse_event
from chalicelib.journeys.engine import (
    CampaignSet,
    EventResult,
    PlannedStep,
    backfill_profile,
    decide_step,
    process_event,
)

NY = "America/New_York"


def birthday(**over: Any) -> CampaignSet:
    raw: dict[str, Any] = {
        "id": "bday", "name": "bday", "trigger": {"date": "customer.birthday"},
        "steps": [{"id": "greeting", "at": "10:00", "channel": "email",
                   "template": "birthday"}],
        "goal": {"event": "order.placed", "within": "P30D"},
        "exit": {"event": "customer.complained"}, "holdout_percent": 20,
        "variants": [{"id": "a", "weight": 50}, {"id": "b", "weight": 50}]}
    raw.update(over)
    return CampaignSet([compile_campaign(Campaign.model_validate(raw))])


def event(eid: str, etype: str, at: str, order: str | None = None,
          **customer: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {"id": eid, "type": etype, "occurred_at": at,
                           "customer": {"id": "c1", "email": "c1@example.com",
                                        "timezone": NY, **customer}}
    if order:
        raw["order"] = {"id": order, "total": 10.0}
    return parse_event(raw)


def run(cs: CampaignSet, *events: dict[str, Any]) -> tuple[list[EventResult],
                                                           list[PlannedStep]]:
    """Process events in turn, deciding each planned step (and its follow-ups) due
    before the next event, as simulate does; the results and every step planned."""
    profile = None
    results: list[EventResult] = []
    pending: list[PlannedStep] = []
    planned: list[PlannedStep] = []
    for e in events:
        while pending and min(s.due_at for s in pending) <= e["_at"]:
            step = min(pending, key=lambda s: s.due_at)
            pending.remove(step)
            d = decide_step(step, profile, cs.get(step.campaign_id), step.due_at)
            pending += d.follow_ups
            planned += d.follow_ups
        r = process_event(e, profile, cs)
        profile = r.profile
        cancelled = {c.key for c in r.cancelled}
        pending = [s for s in pending if s.key not in cancelled] + r.planned
        planned += r.planned
        results.append(r)
    return results, planned


def test_the_enrollment_moves_to_the_occurrence_that_has_started() -> None:
    cs = birthday()
    (_, within, after), planned = run(
        cs,
        event("e1", "customer.updated", "2026-04-01T14:00:00Z", birthday="1990-05-20"),
        event("e2", "customer.updated", "2026-06-01T14:00:00Z"),
        # 2027-05-20 00:30 EDT is 04:30Z: the 2027 occurrence began at 04:00Z.
        event("e3", "customer.updated", "2027-05-20T04:30:00Z"))
    assert within.profile["enrollments"]["bday"]["ref"] == "birthday:1990-05-20:2026"
    record = after.profile["enrollments"]["bday"]
    follow = [s for s in planned if s.ref == "birthday:1990-05-20:2027"]
    assert len(follow) == 1  # planned when 2026's greeting was decided
    # The record is the follow-up's enrollment: same ref, start, arm and variant.
    assert record == {"ref": follow[0].ref, "at": follow[0].enrolled_at,
                      "holdout": follow[0].holdout, "variant": follow[0].variant,
                      "refs": ["birthday:1990-05-20:2026", "birthday:1990-05-20:2027"]}
    assert record["at"] == "2027-05-20T04:00:00Z"
    assert after.planned == [] and after.rows == []  # nothing planned twice
    # A second before it began, 2026's enrollment (its window over) plans the next
    # occurrence again, as before: the same steps, recorded with the start ahead.
    (_, _, early), _ = run(
        cs,
        event("e1", "customer.updated", "2026-04-01T14:00:00Z", birthday="1990-05-20"),
        event("e2", "customer.updated", "2026-06-01T14:00:00Z"),
        event("e3", "customer.updated", "2027-05-20T03:59:59Z"))
    assert [s.key for s in early.planned] == [follow[0].key]
    assert early.profile["enrollments"]["bday"]["at"] == "2027-05-20T04:00:00Z"


def test_goals_count_after_each_year_and_once_per_year() -> None:
    cs = birthday()
    results, _ = run(
        cs,
        event("e1", "customer.updated", "2026-04-01T14:00:00Z", birthday="1990-05-20"),
        event("e2", "order.placed", "2026-05-25T14:00:00Z", order="o1"),
        event("e3", "order.placed", "2027-05-25T14:00:00Z", order="o2"),
        event("e4", "order.placed", "2027-05-26T14:00:00Z", order="o3"),
        event("e5", "order.placed", "2029-06-01T14:00:00Z", order="o4"))
    conversions = [[c.enrolled_at for c in r.conversions] for r in results]
    # 2029: three years on, the chain 2027 -> 2028 -> 2029 is followed in one event.
    assert conversions == [[], ["2026-05-20T04:00:00Z"], ["2027-05-20T04:00:00Z"], [],
                           ["2029-05-20T04:00:00Z"]]
    assert results[-1].profile["enrollments"]["bday"]["refs"][-1] == \
        "birthday:1990-05-20:2029"


def test_an_exit_ends_this_years_occurrence_at_ingest_and_plans_the_next() -> None:
    cs = birthday()
    results, _ = run(
        cs,
        event("e1", "customer.updated", "2026-04-01T14:00:00Z", birthday="1990-05-20"),
        event("e2", "customer.complained", "2027-05-20T09:00:00Z"))
    exit_ = results[-1]
    assert [c.key[2] for c in exit_.cancelled] == ["birthday:1990-05-20:2027"]
    assert [s.ref for s in exit_.planned] == ["birthday:1990-05-20:2028"]
    record = exit_.profile["enrollments"]["bday"]
    assert (record["ref"], record.get("exited")) == ("birthday:1990-05-20:2028", None)


def test_no_move_before_the_previous_last_step_was_due_or_for_another_date() -> None:
    # A greeting 400 days after the birthday: 2027's occurrence is planned only when
    # 2026's greeting is decided (2027-06-24), after 2027's birthday has begun.
    cs = birthday(steps=[{"id": "greeting", "after": "P400D", "at": "10:00",
                          "channel": "email", "template": "birthday"}])
    results, planned = run(
        cs,
        event("e1", "customer.updated", "2026-04-01T14:00:00Z", birthday="1990-05-20"),
        event("e2", "order.placed", "2027-06-01T14:00:00Z", order="o1"),
        event("e3", "order.placed", "2027-06-25T14:00:00Z", order="o2"))
    assert results[1].profile["enrollments"]["bday"]["ref"] == "birthday:1990-05-20:2026"
    # Planned as 2026's follow-up on 2027-06-24: the next birthday after that day.
    assert [s.ref for s in planned][-1] == "birthday:1990-05-20:2028"
    assert results[2].profile["enrollments"]["bday"]["ref"] == "birthday:1990-05-20:2026"
    # A record of a date the profile no longer holds is left to _enroll_dated.
    cs = birthday(audience={"==": [{"var": "customer.attributes.vip"}, True]})
    results, _ = run(
        cs,
        event("e1", "customer.updated", "2026-04-01T14:00:00Z", birthday="1990-05-20",
              attributes={"vip": True}),
        event("e2", "customer.updated", "2026-06-01T14:00:00Z", birthday="1990-07-01",
              attributes={"vip": False}),
        event("e3", "customer.updated", "2027-07-02T14:00:00Z"))
    assert results[-1].profile["enrollments"]["bday"]["ref"] == "birthday:1990-05-20:2026"


def test_backfill_moves_the_enrollment_too() -> None:
    cs = birthday()
    (first,), _ = run(cs, event("e1", "customer.updated", "2026-04-01T14:00:00Z",
                                birthday="1990-05-20"))
    r = backfill_profile(first.profile, cs, datetime(2027, 5, 21, tzinfo=UTC))
    assert r.profile["enrollments"]["bday"]["ref"] == "birthday:1990-05-20:2027"
    assert r.planned == [] and first.profile["enrollments"]["bday"]["ref"].endswith("2026")
