"""The oracle: `aftercare simulate` and the Lambda pipeline decide identically.

The same generated event log goes through the in-memory backtest and through the
real handlers on moto (ingest, tick, send, with SQS, DynamoDB transactions, the
local Twilio server and SES); every step decision must match on (customer,
campaign, step, send time, outcome, reason).
"""

from __future__ import annotations

import io
import json
from collections import Counter
from datetime import timedelta

from chalicelib.clock import parse_iso
from chalicelib.journeys.engine import CampaignSet
from chalicelib.journeys.simulate import simulate
from chalicelib.local.generator import generate
from chalicelib.local.replay import Replay, pipeline_rows
from chalicelib.local.stack import LocalStack
from chalicelib.store.campaigns import load_live


def test_simulate_and_pipeline_make_the_same_decisions(live_stack: LocalStack) -> None:
    events = generate(customers=36, days=150, seed=3)
    # Duplicates and a late event: both sides must shrug them off the same way.
    events += [events[5], events[17]]
    end = parse_iso(events[-3]["occurred_at"]) + timedelta(days=40)

    campaigns: CampaignSet = load_live().campaigns
    log = io.StringIO("".join(json.dumps(e) + "\n" for e in events))
    sim = simulate(log, campaigns, end=end)
    expected = sorted(r.as_tuple() for r in sim.rows if r.step != "-")

    ordered = sorted(events, key=lambda e: e["occurred_at"])
    Replay(live_stack).run(ordered, until=end)
    actual = sorted(r.as_tuple() for r in pipeline_rows())

    assert actual == expected
    outcomes = Counter(row[4] for row in expected)
    # The log must exercise the decisions, or equality proves little.
    assert outcomes["sent"] > 40 and outcomes["held_out"] > 0
    assert outcomes["exited"] > 0 and outcomes["suppressed"] > 0
    campaigns_hit = {row[1] for row in expected if row[4] == "sent"}
    assert {"delivery-checkin", "care-tips", "birthday"} <= campaigns_hit
