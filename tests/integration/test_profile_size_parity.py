"""`aftercare simulate` refuses the events the pipeline dead-letters for the profile
size (an item limit: attributes merge across events): same event, same reason.

Before, simulate processed them (README "Known issues"), so a backtest could show
messages the pipeline would never send."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from chalicelib.journeys.parallel import simulate_file
from chalicelib.journeys.profile import MAX_PROFILE_BYTES
from chalicelib.journeys.simulate import open_log, simulate
from chalicelib.local.stack import LocalStack
from chalicelib.store.models import CustomerModel
from tests.integration import test_audit_ingest_doors as doors
from tests.unit.test_simulate_input_edges import _examples

now = doors.now  # the fixture: the slice stack, its clock at the fixture delivery
CHUNK = 50_000  # one attribute per event: each event stays under 64 KB


def growing(cid: str, count: int) -> list[dict[str, Any]]:
    """``count`` updates of one customer, each adding a 50 KB attribute."""
    return [doors.updated(f"{cid}-u{i}", cid, f"2026-03-01T{10 + i:02d}:00:00Z",
                          attributes={f"note{i}": "x" * CHUNK})
            for i in range(count)]


def test_the_pipeline_and_simulate_refuse_the_same_event(now: LocalStack,
                                                         tmp_path: Path) -> None:
    events = growing("c-big", 9)  # 7 fit (350 KB); the 8th would pass 380,000 bytes
    events[8]["customer"]["attributes"] = {"small": "y"}  # the 9th is small again
    bodies = [json.dumps(e) for e in events]
    assert all(len(b) < 64 * 1024 for b in bodies)
    doors.deliver(now, bodies[:8])
    doors.deliver(now, bodies[8:])
    dead = doors.dead(now)
    assert list(dead) == [bodies[7]]
    reason = dead[bodies[7]]["reason"]
    assert reason.startswith("$.customer: the customer's profile would be ")
    stored = CustomerModel.get("c-big").profile["attributes"]
    assert sorted(stored) == [*(f"note{i}" for i in range(7)), "small"]

    log = tmp_path / "events.jsonl"
    log.write_text("".join(b + "\n" for b in bodies))
    with open_log(log) as fh:
        sim = simulate(fh, _examples())
    assert [(b.line, b.reason) for b in sim.bad] == [(8, reason)]
    assert sim.events == 8
    assert sorted(sim.profiles["c-big"]["attributes"]) == sorted(stored)


def test_the_parallel_run_refuses_it_too(tmp_path: Path) -> None:
    lines = [json.dumps(e) for e in growing("c-big", 8)]
    filler = [json.dumps(doors.updated(f"f{i}", f"c-{i}", "2026-03-02T10:00:00Z",
                                       name="Ann")) for i in range(2_100)]
    log = tmp_path / "events.jsonl"
    log.write_text("".join(line + "\n" for line in lines + filler))
    campaigns = _examples()
    one = simulate_file(log, campaigns, workers=1)
    two = simulate_file(log, campaigns, workers=2)
    assert two.workers_used == 2, two.fallback
    assert [(b.line, b.reason[:40]) for b in one.bad] == [
        (8, "$.customer: the customer's profile would")]
    assert [(b.line, b.reason) for b in one.bad] == [(b.line, b.reason) for b in two.bad]
    assert one.events == two.events == len(lines) + len(filler) - 1


def test_events_fed_one_by_one_are_measured_exactly() -> None:
    """Events fed without a file (no line to bound their size) are measured each
    time: the same refusal, line 0."""
    from chalicelib.events import parse_event
    from chalicelib.journeys.simulate import Simulator

    sim = Simulator(_examples())
    for raw in growing("c-big", 8):
        sim.feed(parse_event(raw))
    assert [b.line for b in sim.bad] == [0]
    assert str(MAX_PROFILE_BYTES) in sim.bad[0].reason
    assert sim.events == 7


def test_the_size_bound_holds_for_ids_copied_into_every_enrollment(tmp_path: Path) -> None:
    """An order id of 512 emoji (12 escaped bytes each) is copied into the records of
    20 campaigns per event: the bound must see it, as the exact measure does."""
    from chalicelib.config.compiled import compile_campaign
    from chalicelib.config.loader import parse_campaign
    from chalicelib.journeys.engine import CampaignSet
    from chalicelib.journeys.simulate import Simulator

    models = [parse_campaign("c.json", {
        "id": f"c{i}", "name": f"c{i}", "trigger": {"event": "order.placed"},
        "steps": [{"id": "s1", "after": "P2D", "channel": "email",
                   "template": "care_tip"}]})[0] for i in range(20)]
    campaigns = CampaignSet(compile_campaign(m) for m in models if m is not None)
    lines = [json.dumps({
        "id": f"e{k}", "type": "order.placed", "occurred_at": f"2026-03-01T00:0{k}:00Z",
        "customer": {"id": "c1", "email": "a@example.com"},
        "order": {"id": f"{k:03d}" + "\U0001F600" * 509, "total": 1, "currency": "USD"}},
        ensure_ascii=False) for k in range(4)]
    log = tmp_path / "events.jsonl"
    log.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    with open_log(log) as fh:
        bounded = simulate(fh, campaigns)
    exact = Simulator(campaigns)  # no origins: every event measured
    for line in lines:
        from chalicelib.events import parse_event

        exact.feed(parse_event(json.loads(line)))
    assert [b.line for b in bounded.bad] == [2, 3, 4]
    assert [b.reason for b in bounded.bad] == [b.reason for b in exact.bad]
    assert bounded.profiles["c1"] == exact.profiles["c1"]
