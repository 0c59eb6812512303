"""Steps planned again, moved or held back, on the pipeline side.

tests/e2e/test_simulate_semantics_audit2.py and audit3 hold ``aftercare simulate``
to the docs for a timezone move before a birthday, a birthday changed and changed
back, and a quiet-hours deferral under ``expire_after``; here the same logs go
through the real handlers on the local stack (ingest, tick, send, DynamoDB), which
must decide the same (``both``), and what the fixes store is checked: the moved
schedule item and its due index, a cancelled item planned anew, how long a step
was held back, and ``enrolled`` counted once per yearly occurrence.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from chalicelib import clock
from chalicelib.clock import parse_iso
from chalicelib.journeys.engine import PlannedStep
from chalicelib.local.stack import LocalStack
from chalicelib.store.models import CustomerModel, MessageModel, ScheduleModel, StatsModel
from tests.e2e.test_simulate_semantics_audit import campaign, ev
from tests.integration.test_decision_core_gaps import both, push


def bday(cid: str = "bday", **extra: Any) -> dict[str, Any]:
    return campaign(cid, {"date": "customer.birthday"},
                    [{"id": "greeting", "at": "10:00", "channel": "sms",
                      "template": "birthday"}], **extra)


def ts(at: str) -> int:
    return int(parse_iso(at).timestamp())


def enrolled_by_day(campaign_id: str) -> dict[str, int]:
    totals: dict[str, int] = {}
    for item in StatsModel.scan():
        if item.pk.startswith(f"{campaign_id}#") and item.enrolled:
            totals[item.day] = totals.get(item.day, 0) + int(item.enrolled)
    return totals


# ------------------------------------------------------------------ timezone moves

def test_a_timezone_move_moves_the_pending_item_and_its_due_index(
        stack: LocalStack, tmp_path: Path) -> None:
    push(stack, tmp_path, [bday()])
    clock.set_now(parse_iso("2026-04-01T14:00:00Z"))
    stack.ingest([ev("e1", "customer.updated", "2026-04-01T14:00:00Z", "c1",
                     birthday="1990-05-20")])
    clock.set_now(parse_iso("2026-05-01T14:00:00Z"))
    (result,) = stack.ingest([ev("e2", "customer.updated", "2026-05-01T14:00:00Z", "c1",
                                 tz="Asia/Tokyo")])
    assert result["due"] == ["2026-05-20T01:00:00Z"]  # the moved step's: the clock's cue
    (item,) = ScheduleModel.scan()
    # 10:00 JST on 20 May, from local midnight in Tokyo; same key, still pending.
    assert (item.status, item.due_at) == ("pending", ts("2026-05-20T01:00:00Z"))
    assert (item.step["due_at"], item.step["enrolled_at"]) == (
        "2026-05-20T01:00:00Z", "2026-05-19T15:00:00Z")
    # The due index follows: a tick at the new time finds it (and not a minute before).
    assert [i.schedule_id for i in ScheduleModel.due.query(
        item.due_shard, ScheduleModel.due_at <= ts("2026-05-20T01:00:00Z"))] == [
        item.schedule_id]
    assert not list(ScheduleModel.due.query(
        item.due_shard, ScheduleModel.due_at <= ts("2026-05-20T00:59:00Z")))
    record = CustomerModel.get("c1").profile["enrollments"]["bday"]
    assert (record["ref"], record["at"]) == ("birthday:1990-05-20:2026",
                                             "2026-05-19T15:00:00Z")
    assert enrolled_by_day("bday") == {"2026-05-20": 1}
    stack.run_due(parse_iso("2026-05-20T01:00:00Z"))
    (msg,) = MessageModel.scan()
    assert (msg.outcome, msg.decided_at) == ("send", "2026-05-20T01:00:00Z")


def test_birthdays_follow_timezone_moves_on_both_sides(stack: LocalStack,
                                                       tmp_path: Path) -> None:
    push(stack, tmp_path, [bday(goal={"event": "order.placed", "within": "P30D"})])
    rows = both(stack, [
        # Moves before the birthday: greeted at 10:00 JST.
        ev("a1", "customer.updated", "2026-04-01T14:00:00Z", "before", birthday="1990-05-20"),
        ev("a2", "customer.updated", "2026-05-01T14:00:00Z", "before", tz="Asia/Tokyo"),
        # Moves in the goal window after the greeting: next year's (planned when this
        # year's greeting was decided, in New York) moves with it.
        ev("b1", "customer.updated", "2026-04-01T14:00:00Z", "window", birthday="1990-05-20"),
        ev("b2", "customer.updated", "2026-06-01T14:00:00Z", "window", tz="Asia/Tokyo"),
        # Moves after the occurrence is over: next year's is planned again, in Tokyo.
        ev("c1", "customer.updated", "2026-04-01T14:00:00Z", "later", birthday="1990-05-20"),
        ev("c2", "customer.updated", "2026-08-01T14:00:00Z", "later", tz="Asia/Tokyo"),
        # Moves west on the day itself, before the greeting: 10:00 PDT.
        ev("d1", "customer.updated", "2026-04-01T14:00:00Z", "west", birthday="1990-05-20"),
        ev("d2", "customer.updated", "2026-05-20T12:00:00Z", "west",
           tz="America/Los_Angeles"),
    ], "2027-06-01T00:00:00Z")
    assert [(r.customer, r.at, r.outcome) for r in rows] == [
        ("before", "2026-05-20T01:00:00Z", "sent"),
        ("before", "2027-05-20T01:00:00Z", "sent"),
        ("later", "2026-05-20T14:00:00Z", "sent"),
        ("later", "2027-05-20T01:00:00Z", "sent"),
        ("west", "2026-05-20T17:00:00Z", "sent"),
        ("west", "2027-05-20T17:00:00Z", "sent"),
        ("window", "2026-05-20T14:00:00Z", "sent"),
        ("window", "2027-05-20T01:00:00Z", "sent")]
    # Moves and plans again count no enrollment: one per customer per year.
    assert enrolled_by_day("bday") == {"2026-05-20": 4, "2027-05-20": 3,
                                       "2027-05-19": 1, "2028-05-20": 1, "2028-05-19": 3}


# ------------------------------------------------- a date changed and changed back

def test_a_birthday_changed_and_changed_back_is_planned_anew(stack: LocalStack,
                                                             tmp_path: Path) -> None:
    push(stack, tmp_path, [bday(exit={"event": "customer.complained"})])
    rows = both(stack, [
        ev("a1", "customer.updated", "2026-04-01T14:00:00Z", "back", birthday="1990-05-20"),
        ev("a2", "customer.updated", "2026-04-10T14:00:00Z", "back", birthday="1990-05-21"),
        ev("a3", "customer.updated", "2026-04-20T14:00:00Z", "back", birthday="1990-05-20"),
        # An exited occurrence stays exited when its date comes back.
        ev("b1", "customer.updated", "2026-04-01T14:00:00Z", "exit", birthday="1990-05-20"),
        ev("b2", "customer.complained", "2026-05-20T05:00:00Z", "exit"),
        ev("b3", "customer.updated", "2026-05-20T06:00:00Z", "exit", birthday="1990-05-21"),
        ev("b4", "customer.updated", "2026-05-20T07:00:00Z", "exit", birthday="1990-05-20"),
    ], "2026-06-01T00:00:00Z")
    assert [(r.customer, r.at, r.outcome, r.reason) for r in rows] == [
        # One row per step: the first plan's cancellation went with its new plan.
        ("back", "2026-05-20T14:00:00Z", "sent", ""),
        ("back", "2026-05-21T14:00:00Z", "cancelled", "date changed"),
        ("exit", "2026-05-20T14:00:00Z", "exited", "customer.complained"),
        ("exit", "2026-05-21T14:00:00Z", "cancelled", "date changed"),
        ("exit", "2027-05-20T14:00:00Z", "cancelled", "date changed")]
    back = [i for i in ScheduleModel.scan() if i.step["customer_id"] == "back"]
    sent = [i for i in back if i.step["ref"] == "birthday:1990-05-20:2026"]
    assert [(i.status, i.outcome, i.reason) for i in sent] == [("done", "sent", "")]
    # Each occurrence enrolled once: for "back" 20 May 2026 (planned twice), 21 May
    # 2026 and 20 May 2027 (planned when the greeting was sent); for "exit" 20 May
    # 2026, 20 May 2027 (planned at the exit) and 21 May 2026.
    assert enrolled_by_day("bday") == {"2026-05-20": 2, "2026-05-21": 2, "2027-05-20": 2}


# ------------------------------------------------------ deferrals are not lateness

def _late_bday() -> dict[str, Any]:
    """A birthday greeting at 10:00 that expires 13 hours late."""
    return campaign("bday", {"date": "customer.birthday"},
                    [{"id": "greeting", "at": "10:00", "channel": "sms",
                      "template": "birthday", "expire_after": "PT13H"}])


def test_a_deferral_is_not_lateness_on_both_sides(stack: LocalStack,
                                                     tmp_path: Path) -> None:
    push(stack, tmp_path, [_late_bday()])
    # The birthday is learnt at 22:30 EDT on the day: 12h30m after its 10:00, decided
    # at once, in quiet hours: held back 9h30m to 08:00 EDT (12:00Z). Then 22h after
    # 10:00, but 12h30m late, within 13h: sent, not expired.
    events = [ev("a1", "customer.updated", "2026-04-02T02:30:00Z", "late",
                 birthday="1990-04-01")]
    rows = both(stack, events, "2026-04-10T00:00:00Z")
    assert [(r.at, r.outcome) for r in rows] == [("2026-04-02T12:00:00Z", "sent")]


def test_an_outage_after_a_deferral_still_expires(stack: LocalStack, tmp_path: Path) -> None:
    push(stack, tmp_path, [_late_bday()])
    clock.set_now(parse_iso("2026-04-02T02:30:00Z"))
    stack.ingest([ev("a1", "customer.updated", "2026-04-02T02:30:00Z", "c1",
                     birthday="1990-04-01")])
    stack.run_due(parse_iso("2026-04-02T02:30:00Z"))  # 22:30 EDT: deferred
    (item,) = ScheduleModel.scan()
    assert (item.status, item.due_at) == ("pending", ts("2026-04-02T12:00:00Z"))
    assert item.step["deferred_for"] == 9 * 3600 + 30 * 60
    assert item.step["due_at"] == "2026-04-01T14:00:00Z"  # the plan is kept
    # The scheduler is down until 09:00 EDT: 13h30m late, counted without the wait.
    stack.run_due(parse_iso("2026-04-02T13:00:00Z"))
    (msg,) = MessageModel.scan()
    assert (msg.outcome, msg.reason) == ("expired", "13h30m late, expire_after 13h")


def test_a_step_stored_before_deferrals_were_kept_is_read() -> None:
    step = PlannedStep("c1", "ck", 1, "mail", "order:o1", "2026-04-01T14:00:00Z",
                       parse_iso("2026-04-02T14:00:00Z"), False, None, "e1")
    record = step.to_dict()
    assert "deferred_for" not in record  # unchanged for a step never deferred
    assert PlannedStep.from_dict(record).deferred_for == timedelta(0)
    step.held_back(parse_iso("2026-04-02T14:00:00.700000Z"),
                   parse_iso("2026-04-02T23:00:00Z"))
    assert step.to_dict()["deferred_for"] == 9 * 3600 - 1  # whole seconds, as stored
    assert PlannedStep.from_dict(step.to_dict()) == step


# --------------------------------------------------- enrolled, once per occurrence

def test_each_yearly_occurrence_is_enrolled_once(stack: LocalStack, tmp_path: Path) -> None:
    push(stack, tmp_path, [bday()])
    rows = both(stack, [
        ev("e1", "customer.updated", "2026-04-01T14:00:00Z", "c1", birthday="1990-05-20"),
        # After each occurrence: ingest plans next year's again, which the decision
        # on this year's greeting planned already (and counted).
        ev("e2", "customer.updated", "2026-08-01T14:00:00Z", "c1"),
        ev("e3", "customer.updated", "2027-08-01T14:00:00Z", "c1"),
    ], "2028-06-01T00:00:00Z")
    assert [(r.at, r.outcome) for r in rows] == [
        ("2026-05-20T14:00:00Z", "sent"), ("2027-05-20T14:00:00Z", "sent"),
        ("2028-05-20T14:00:00Z", "sent")]
    # 2029's was planned by the decision on 2028's greeting.
    assert enrolled_by_day("bday") == {"2026-05-20": 1, "2027-05-20": 1, "2028-05-20": 1,
                                       "2029-05-20": 1}
