"""The oracle: `aftercare simulate` and the Lambda pipeline decide identically.

The same generated event log goes through the in-memory backtest and through the
real handlers on moto (ingest, tick, send, with SQS, DynamoDB transactions, the
local Twilio server and SES); every step decision must match on (customer,
campaign, step, send time, outcome, reason).
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from chalicelib.clock import parse_iso
from chalicelib.local.generator import generate
from chalicelib.local.stack import LocalStack
from tests.e2e.oracle import decide_both


def test_simulate_and_pipeline_make_the_same_decisions(live_stack: LocalStack) -> None:
    events = generate(customers=36, days=150, seed=3)
    # Duplicates and a late event: both sides must shrug them off the same way.
    events += [events[5], events[17]]
    end = parse_iso(events[-3]["occurred_at"]) + timedelta(days=40)

    expected, actual = decide_both(live_stack, events, end)
    assert actual == expected
    outcomes = Counter(row[4] for row in expected)
    # The log must exercise the decisions, or equality proves little.
    assert outcomes["sent"] > 40 and outcomes["held_out"] > 0
    assert outcomes["exited"] > 0 and outcomes["suppressed"] > 0
    campaigns_hit = {row[1] for row in expected if row[4] == "sent"}
    assert {"delivery-checkin", "care-tips", "birthday"} <= campaigns_hit
