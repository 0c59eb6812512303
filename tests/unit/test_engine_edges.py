"""Edge cases of the decision core found in review."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from chalicelib.config.model import Campaign
from chalicelib.events import EventError, parse_event
from chalicelib.journeys.engine import decide_step, process_event
from tests.unit.test_engine import campaign, cset, event


def test_cancellations_never_repeat_a_schedule_id() -> None:
    c = Campaign.model_validate({
        "id": "winback", "name": "W", "trigger": {"idle": "P30D"},
        "exit": {"event": "order.placed"},
        "steps": [{"id": "a", "channel": "email", "template": "w"},
                  {"id": "b", "after": "P14D", "channel": "email", "template": "w"}]})
    cs = cset(c)
    r1 = process_event(event("order.placed", "2026-01-01T14:00:00Z", "e1"), None, cs)
    r2 = process_event(event("order.placed", "2026-02-05T14:00:00Z", "e2", order="o2"),
                       r1.profile, cs)
    ids = [x.schedule_id for x in r2.cancelled]
    assert len(ids) == len(set(ids))
    assert not set(ids) & {s.id for s in r2.planned}


def test_a_return_exits_only_the_returned_orders_enrollment() -> None:
    cs = cset(campaign(exit={"event": "order.returned"}))
    r1 = process_event(event("order.delivered", "2026-03-01T14:00:00Z", "e1", order="o1"),
                       None, cs)
    r2 = process_event(event("order.delivered", "2026-03-01T15:00:00Z", "e2", order="o2"),
                       r1.profile, cs)
    r3 = process_event(event("order.returned", "2026-03-02T10:00:00Z", "e3", order="o1"),
                       r2.profile, cs)
    assert [c.schedule_id for c in r3.cancelled] == [r1.planned[0].id]
    step_o2 = r2.planned[0]
    assert decide_step(step_o2, r3.profile, cs.get("checkin"), step_o2.due_at).outcome == "send"
    step_o1 = r1.planned[0]
    assert decide_step(step_o1, r3.profile, cs.get("checkin"), step_o1.due_at).outcome == \
        "exited"


def test_yearly_campaign_goes_on_after_an_occurrence_is_cancelled() -> None:
    c = Campaign.model_validate({
        "id": "birthday", "name": "B", "trigger": {"date": "customer.birthday"},
        "exit": {"event": "customer.complained"},
        "steps": [{"id": "greet", "at": "10:00", "channel": "sms", "template": "b"}]})
    cs = cset(c)
    r1 = process_event(event("customer.updated", "2026-01-10T12:00:00Z", "e1", order=None,
                             birthday="1990-03-05"), None, cs)
    assert r1.planned[0].due_at.date().isoformat() == "2026-03-05"
    r2 = process_event(event("customer.complained", "2026-03-05T16:00:00Z", "e2",
                             order=None), r1.profile, cs)
    # The exit cancels the 2026 greeting, so no decision on it will plan 2027: the
    # exit plans it, and later events plan nothing more.
    assert [c.key[2] for c in r2.cancelled] == ["birthday:1990-03-05:2026"]
    assert [s.due_at.date().isoformat() for s in r2.planned] == ["2027-03-05"]
    r3 = process_event(event("order.placed", "2026-06-01T12:00:00Z", "e3"), r2.profile, cs)
    assert r3.planned == []


def test_consent_time_must_be_a_datetime_and_is_normalised() -> None:
    base = {"id": "e", "type": "customer.updated", "occurred_at": "2026-03-01T10:00:00Z"}
    with pytest.raises(EventError) as info:
        parse_event({**base, "customer": {"id": "c", "consent": {
            "sms": {"granted": True, "explicit": True, "at": "x"}}}})
    assert info.value.path == "$.customer.consent.sms.at"
    e = parse_event({**base, "customer": {"id": "c", "consent": {
        "sms": {"granted": True, "at": "2026-03-01T12:00:00+02:00"}}}})
    assert e["customer"]["consent"]["sms"]["at"] == "2026-03-01T10:00:00Z"


def test_quiet_hours_deferral_respects_allowed_weekdays() -> None:
    c = campaign(steps=[{"id": "s1", "after": "P1D", "channel": "sms", "template": "t",
                         "weekdays": ["mon"]}])
    cs = cset(c)
    r = process_event(event("order.delivered", "2026-03-01T14:00:00Z", "e1"), None, cs)
    step = r.planned[0]
    assert step.due_at.astimezone(UTC).weekday() == 0  # Monday
    late = datetime(2026, 3, 3, 2, 30, tzinfo=UTC)  # Monday 21:30 in New York
    d = decide_step(step, r.profile, cs.get("checkin"), late)
    assert d.outcome == "deferred" and d.defer_until is not None
    local = d.defer_until.astimezone(ZoneInfo("America/New_York"))
    assert (local.date().isoformat(), local.hour) == ("2026-03-09", 8)  # next Monday 08:00


def test_yearly_occurrence_is_not_replaced_while_its_goal_window_runs() -> None:
    c = Campaign.model_validate({
        "id": "birthday", "name": "B", "trigger": {"date": "customer.birthday"},
        "goal": {"event": "order.placed", "within": "P14D"},
        "steps": [{"id": "greet", "at": "10:00", "channel": "sms", "template": "b"},
                  {"id": "later", "after": "P5D", "at": "10:00", "channel": "sms",
                   "template": "b"}]})
    cs = cset(c)
    r1 = process_event(event("customer.updated", "2026-01-10T12:00:00Z", "e1", order=None,
                             birthday="1990-03-05"), None, cs)
    r2 = process_event(event("customer.updated", "2026-03-06T12:00:00Z", "e2", order=None),
                       r1.profile, cs)
    assert r2.planned == []  # 2026 still running: no 2027 yet
    r3 = process_event(event("order.placed", "2026-03-07T12:00:00Z", "e3"), r2.profile, cs)
    assert [x.campaign_id for x in r3.conversions] == ["birthday"]


@pytest.mark.parametrize(("local_day", "replanned"), [
    ("2026-03-25T23:59:00-04:00", False),  # 5 + 5 (last step) + 14 (goal) + 1 days
    ("2026-03-26T00:00:00-04:00", True),  # the next local day: 2026 is over
])
def test_yearly_occurrence_is_replanned_the_day_after_it_is_over(local_day: str,
                                                                 replanned: bool) -> None:
    """When this year's decisions never came (the campaign was paused), the first
    event after the occurrence's last live day, in the customer's timezone, plans
    next year; any event up to that day does not."""
    c = Campaign.model_validate({
        "id": "birthday", "name": "B", "trigger": {"date": "customer.birthday"},
        "goal": {"event": "order.placed", "within": "P14D"},
        "exit": {"event": "customer.complained"},
        "steps": [{"id": "greet", "at": "10:00", "channel": "sms", "template": "b"},
                  {"id": "later", "after": "P5D", "at": "10:00", "channel": "sms",
                   "template": "b"}]})
    cs = cset(c)
    r1 = process_event(event("customer.updated", "2026-01-10T12:00:00Z", "e1", order=None,
                             birthday="1990-03-05"), None, cs)
    # No decision on the 2026 steps (process_event only, as when the campaign was
    # paused over the occurrence): later events plan 2027 once 2026 is over.
    r2 = r1
    at = datetime.fromisoformat(local_day).astimezone(UTC).isoformat().replace("+00:00", "Z")
    r3 = process_event(event("customer.updated", at, "e3", order=None), r2.profile, cs)
    assert [s.due_at.date().isoformat() for s in r3.planned] == (
        ["2027-03-05", "2027-03-10"] if replanned else [])
    # The same answer when the campaign set has seen the question before (memoised).
    again = process_event(event("customer.updated", at, "e4", order=None), r2.profile, cs)
    assert len(again.planned) == len(r3.planned)


def test_order_exit_events_end_only_their_orders_enrollment() -> None:
    """``order.delivered`` as an exit is about one order: B's delivery exits the
    enrollment made for B, at ingest and at send time, and not A's."""
    cs = cset(campaign(id="thanks", trigger={"event": "order.placed"},
                       exit={"event": "order.delivered"}))
    r1 = process_event(event("order.placed", "2026-03-01T10:00:00Z", "e1", order="A"),
                       None, cs)
    r2 = process_event(event("order.placed", "2026-03-01T11:00:00Z", "e2", order="B"),
                       r1.profile, cs)
    r3 = process_event(event("order.delivered", "2026-03-02T11:00:00Z", "e3", order="B"),
                       r2.profile, cs)
    assert {x.schedule_id for x in r3.cancelled} == {r2.planned[0].id}
    step_a, step_b = r1.planned[0], r2.planned[0]
    assert decide_step(step_a, r3.profile, cs.get("thanks"), step_a.due_at).outcome == "send"
    assert decide_step(step_b, r3.profile, cs.get("thanks"), step_b.due_at).outcome == \
        "exited"
    # A's own delivery, arriving before the send, exits A's enrollment too.
    r4 = process_event(event("order.delivered", "2026-03-02T12:00:00Z", "e4", order="A"),
                       r3.profile, cs)
    assert decide_step(step_a, r4.profile, cs.get("thanks"), step_a.due_at).outcome == \
        "exited"


def test_an_exit_event_without_an_order_ends_every_enrollment_before_it() -> None:
    cs = cset(campaign(id="thanks", trigger={"event": "order.placed"},
                       exit={"event": "customer.complained"}))
    r1 = process_event(event("order.placed", "2026-03-01T10:00:00Z", "e1", order="A"),
                       None, cs)
    r2 = process_event(event("order.placed", "2026-03-01T11:00:00Z", "e2", order="B"),
                       r1.profile, cs)
    r3 = process_event(event("customer.complained", "2026-03-01T12:00:00Z", "e3", order=None),
                       r2.profile, cs)
    for step in (r1.planned[0], r2.planned[0]):
        assert decide_step(step, r3.profile, cs.get("thanks"), step.due_at).outcome == "exited"


def test_a_late_send_on_a_disallowed_weekday_waits_for_an_allowed_one() -> None:
    c = campaign(steps=[{"id": "s1", "after": "P1D", "channel": "sms", "template": "t",
                         "weekdays": ["mon"]}])
    cs = cset(c)
    r = process_event(event("order.delivered", "2026-03-01T14:00:00Z", "e1"), None, cs)
    step = r.planned[0]
    tuesday_noon = datetime(2026, 3, 3, 17, 0, tzinfo=UTC)  # 12:00 in New York
    d = decide_step(step, r.profile, cs.get("checkin"), tuesday_noon)
    assert (d.outcome, d.reason) == ("deferred", "not an allowed weekday")
    assert d.defer_until is not None
    local = d.defer_until.astimezone(ZoneInfo("America/New_York"))
    assert (local.date().isoformat(), local.hour) == ("2026-03-09", 12)


@pytest.mark.parametrize(("value", "zone_name", "expected"), [
    ("1990-03-05", "Pacific/Kiritimati", "1990-03-05"),  # a date is the date
    ("2026-06-30T12:00:00Z", "Pacific/Kiritimati", "2026-07-01"),  # +14: next day
    ("2026-06-30T12:00:00Z", "Pacific/Pago_Pago", "2026-06-30"),
    ("2026-07-01T05:00:00Z", "America/Los_Angeles", "2026-06-30"),
    ("2026-07-01T05:00:00", "America/Los_Angeles", "2026-06-30"),  # no offset: UTC
    ("2026-07-01T05:00:00+09:00", "UTC", "2026-06-30"),
    ("2026-07-01Tnonsense", "UTC", "2026-07-01"),  # as before: its first ten characters
    ("yesterday", "UTC", None),
])
def test_the_date_a_yearly_campaign_celebrates(value: str, zone_name: str,
                                               expected: str | None) -> None:
    from chalicelib.journeys.dates import yearly_date

    day = yearly_date(value, ZoneInfo(zone_name))
    assert (day.isoformat() if day else None) == expected
    assert yearly_date(None, ZoneInfo(zone_name)) is None
