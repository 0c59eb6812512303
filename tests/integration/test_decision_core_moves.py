"""Steps held back by deferrals, on the pipeline side.

tests/e2e/test_simulate_semantics_audit3.py holds ``aftercare simulate`` to the
docs for a quiet-hours deferral under ``expire_after``; here the same log goes
through the real handlers on the local stack (ingest, tick, send, DynamoDB), which
must decide the same (``both``), and what the fix stores is checked: how long a
step was held back.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from chalicelib import clock
from chalicelib.clock import parse_iso
from chalicelib.journeys.engine import PlannedStep
from chalicelib.local.stack import LocalStack
from chalicelib.store.models import MessageModel, ScheduleModel
from tests.e2e.test_simulate_semantics_audit import campaign, email, ev
from tests.integration.test_decision_core_gaps import both, push


def ts(at: str) -> int:
    return int(parse_iso(at).timestamp())


# ------------------------------------------------------ deferrals are not lateness

def test_a_deferral_is_not_lateness_on_both_sides(stack: LocalStack,
                                                     tmp_path: Path) -> None:
    push(stack, tmp_path, [campaign("ck", {"event": "order.delivered"},
                                    [email(after="P1D", at="10:00", expire_after="PT6H")])])
    events = [
        ev("a1", "order.delivered", "2026-04-01T14:00:00Z", "moved", order="o1"),
        ev("a2", "customer.updated", "2026-04-01T20:00:00Z", "moved", tz="Asia/Tokyo"),
    ]
    rows = both(stack, events, "2026-04-10T00:00:00Z")
    # 10:00 EDT is 23:00 JST: held back to 08:00 JST (23:00Z), then sent, not expired.
    assert [(r.at, r.outcome) for r in rows] == [("2026-04-02T23:00:00Z", "sent")]


def test_an_outage_after_a_deferral_still_expires(stack: LocalStack, tmp_path: Path) -> None:
    push(stack, tmp_path, [campaign("ck", {"event": "order.delivered"},
                                    [email(after="P1D", at="10:00", expire_after="PT6H")])])
    clock.set_now(parse_iso("2026-04-01T14:00:00Z"))
    stack.ingest([ev("a1", "order.delivered", "2026-04-01T14:00:00Z", "c1", order="o1")])
    clock.set_now(parse_iso("2026-04-01T20:00:00Z"))
    stack.ingest([ev("a2", "customer.updated", "2026-04-01T20:00:00Z", "c1",
                     tz="Asia/Tokyo")])
    stack.run_due(parse_iso("2026-04-02T14:00:00Z"))  # 23:00 JST: deferred
    (item,) = ScheduleModel.scan()
    assert (item.status, item.due_at) == ("pending", ts("2026-04-02T23:00:00Z"))
    assert item.step["deferred_for"] == 9 * 3600
    assert item.step["due_at"] == "2026-04-02T14:00:00Z"  # the plan is kept
    # The scheduler is down until 15:00 JST: 7 hours late, counted from 08:00 JST.
    stack.run_due(parse_iso("2026-04-03T06:00:00Z"))
    (msg,) = MessageModel.scan()
    assert (msg.outcome, msg.reason) == ("expired", "7h late, expire_after 6h")


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
