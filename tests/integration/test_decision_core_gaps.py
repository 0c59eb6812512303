"""Decision-core gaps fixed after the second semantics audit, on the pipeline side.

tests/e2e/test_simulate_semantics_audit2.py holds ``aftercare simulate`` to the docs
for these cases; here the same logs go through the real handlers on the local stack
(ingest, tick, send, DynamoDB), which must decide the same, and what the fixes store
is checked: the part of an event's ``data`` a step keeps, the yearly enrollment.
"""

from __future__ import annotations

import io
import json
from datetime import datetime
from pathlib import Path
from typing import Any

from chalicelib import clock
from chalicelib.clock import parse_iso
from chalicelib.journeys.engine import MAX_STEP_DATA_BYTES, Row
from chalicelib.journeys.simulate import simulate
from chalicelib.local.replay import Replay, pipeline_rows
from chalicelib.local.stack import LocalStack
from chalicelib.store.campaigns import load_live
from chalicelib.store.models import MessageModel, ScheduleModel
from tests.conftest import ROOT
from tests.e2e.test_simulate_semantics_audit import campaign, email, ev

GIFT = {"==": [{"var": "event.data.gift"}, True]}


def push(stack: LocalStack, tmp: Path, campaigns: list[dict[str, Any]]) -> None:
    cdir = tmp / "campaigns"
    cdir.mkdir()
    for c in campaigns:
        (cdir / f"{c['id']}.json").write_text(json.dumps(c))
    stack.push_campaigns(cdir, ROOT / "templates")


def both(stack: LocalStack, events: list[dict[str, Any]], until: str) -> list[Row]:
    """Run ``events`` through ``simulate`` and through the pipeline; the step rows of
    both, which must be equal."""
    end = parse_iso(until)
    log = io.StringIO("".join(json.dumps(e) + "\n" for e in events))
    sim = simulate(log, load_live().campaigns, end=end)
    expected = sorted(r for r in sim.rows if r.step != "-")
    Replay(stack).run(sorted(events, key=lambda e: e["occurred_at"]), until=end)
    actual = sorted(pipeline_rows())
    assert actual == expected
    return actual


def stored_steps(campaign_id: str) -> list[dict[str, Any]]:
    return [s.step for s in ScheduleModel.scan() if s.step["campaign_id"] == campaign_id]


# ------------------------------------------------------------- event data in conditions

def test_a_step_keeps_the_event_data_its_condition_reads(stack: LocalStack,
                                                         tmp_path: Path) -> None:
    push(stack, tmp_path, [
        campaign("gift", {"event": "order.delivered"},
                 [email("by-data", after="P1D", at="11:00", condition=GIFT)]),
        campaign("plain", {"event": "order.delivered"}, [email(after="P1D", at="10:00")]),
    ])
    notes = "n" * 3000  # not read by any condition: never stored with a step
    rows = both(stack, [
        ev("e1", "order.delivered", "2026-04-01T14:00:00Z", "yes", order="o1",
           data={"gift": True, "notes": notes}),
        ev("e2", "order.delivered", "2026-04-01T14:00:00Z", "no", order="o1",
           data={"gift": False, "notes": notes}),
        ev("e3", "order.delivered", "2026-04-01T14:00:00Z", "none", order="o1"),
    ], "2026-04-10T00:00:00Z")
    assert [(r.customer, r.outcome, r.reason) for r in rows if r.campaign == "gift"] == [
        ("no", "skipped", "step condition false"),
        ("none", "skipped", "step condition false"),
        ("yes", "sent", "")]
    kept = {s["customer_id"]: s.get("data", "absent") for s in stored_steps("gift")}
    assert kept == {"yes": {"gift": True}, "no": {"gift": False}, "none": "absent"}
    # A campaign whose conditions read no data stores none: its items are unchanged.
    assert all("data" not in s for s in stored_steps("plain"))
    assert max(len(json.dumps(s)) for s in stored_steps("gift")) < 1000


def test_event_data_over_the_limit_skips_the_enrollment_on_both_sides(
        stack: LocalStack, tmp_path: Path) -> None:
    push(stack, tmp_path, [campaign("gift", {"event": "order.delivered"},
                                    [email("by-data", after="P1D", condition=GIFT)])])
    big = {"gift": "x" * MAX_STEP_DATA_BYTES}  # the read key itself is too large
    end = parse_iso("2026-04-10T00:00:00Z")
    events = [ev("e1", "order.delivered", "2026-04-01T14:00:00Z", "big", order="o1",
                 data=big)]
    sim = simulate(io.StringIO(json.dumps(events[0]) + "\n"), load_live().campaigns, end=end)
    assert [(r.outcome, r.reason[:34]) for r in sim.rows] == [
        ("skipped", "event data read by step conditions")]
    Replay(stack).run(events, until=end)
    assert stored_steps("gift") == [] and pipeline_rows() == []


def test_a_step_stored_before_data_was_kept_is_still_decided(stack: LocalStack,
                                                             tmp_path: Path) -> None:
    push(stack, tmp_path, [campaign("gift", {"event": "order.delivered"},
                                    [email("by-data", after="P1D", at="11:00",
                                           condition=GIFT)])])
    clock.set_now(datetime.fromisoformat("2026-04-01T14:00:00+00:00"))
    stack.ingest([ev("e1", "order.delivered", "2026-04-01T14:00:00Z", "old", order="o1",
                     data={"gift": True})])
    (item,) = ScheduleModel.scan()
    record = dict(item.step)
    del record["data"]  # as written by the previous release
    item.update(actions=[ScheduleModel.step.set(record)])
    stack.run_due(parse_iso(record["due_at"]))
    (msg,) = MessageModel.scan()
    # The condition cannot see the data it was not given: skipped, not crashed.
    assert (msg.outcome, msg.reason) == ("skipped", "step condition false")


# ------------------------------------------------------ goals after yearly occurrences

def test_each_years_occurrence_is_the_enrollment_its_goals_count_for(
        stack: LocalStack, tmp_path: Path) -> None:
    push(stack, tmp_path, [campaign(
        "bday", {"date": "customer.birthday"},
        [{"id": "greeting", "at": "10:00", "channel": "sms", "template": "birthday"}],
        goal={"event": "order.placed", "within": "P30D"},
        exit={"event": "customer.complained"})])
    rows = both(stack, [
        ev("a1", "customer.updated", "2026-04-01T14:00:00Z", "goal", birthday="1990-05-20"),
        ev("a2", "order.placed", "2026-05-25T14:00:00Z", "goal", order="o1"),
        ev("a3", "order.placed", "2027-05-25T14:00:00Z", "goal", order="o2"),
        ev("b1", "customer.updated", "2026-04-01T14:00:00Z", "exit", birthday="1990-05-20"),
        # After 2027's occurrence began (00:00 EDT), before its greeting: exited at ingest.
        ev("b2", "customer.complained", "2027-05-20T09:00:00Z", "exit"),
    ], "2028-06-01T00:00:00Z")
    assert [(r.customer, r.at, r.outcome) for r in rows] == [
        ("exit", "2026-05-20T14:00:00Z", "sent"),
        ("exit", "2027-05-20T14:00:00Z", "exited"),
        ("exit", "2028-05-20T14:00:00Z", "sent"),
        ("goal", "2026-05-20T14:00:00Z", "sent"),
        ("goal", "2027-05-20T14:00:00Z", "sent"),
        ("goal", "2028-05-20T14:00:00Z", "sent")]
    from chalicelib.store.models import CustomerModel, StatsModel

    # Both conversions counted, each on its occurrence's day (intent-to-treat stats).
    converted = {s.day: int(s.converted) for s in StatsModel.scan() if s.converted}
    assert converted == {"2026-05-20": 1, "2027-05-20": 1}
    record = CustomerModel.get("goal").profile["enrollments"]["bday"]
    assert (record["ref"], record["at"], record["converted"]) == (
        "birthday:1990-05-20:2027", "2027-05-20T04:00:00Z", "2027-05-25T14:00:00Z")
    # The exit cancelled 2027's greeting at ingest and planned 2028 at once.
    (exited,) = [s for s in ScheduleModel.scan() if s.status == "cancelled"]
    assert exited.step["ref"] == "birthday:1990-05-20:2027"
