"""Differential edges a search found (session 10): event times with a fraction of a
second, offsets other than Z, and an event at the window's end.

Simulate kept a fractional event time while the pipeline stores whole seconds, so
a step due at 16:00:00.9 was decided by the pipeline before an event at 16:00:00.1
and by simulate after it (event times are now whole seconds everywhere). The two
others were flaws of the oracle, which fed the pipeline events sorted as text and
past the window's end.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from chalicelib.events import parse_event
from chalicelib.local.stack import LocalStack
from tests.e2e.test_differential_random import run_both, write_set

END = datetime(2026, 3, 5, tzinfo=UTC)
CUSTOMER = {"id": "c1", "email": "c1@example.com", "phone": "+14155550123",
            "timezone": "America/New_York", "consent": {"email": True, "sms": True}}
ORDER = {"id": "o1", "total": 50.0, "currency": "USD",
         "items": [{"sku": "MG-1", "name": "Mug", "category": "kitchen", "quantity": 1,
                    "price": 50.0}]}


def campaign(trigger: str = "order.delivered", after: str = "PT1H",
             **extra: Any) -> dict[str, Any]:
    return {"id": "sub", "name": "sub", "trigger": {"event": trigger},
            "steps": [{"id": "s1", "after": after, "channel": "email",
                       "template": "care_tip"}], **extra}


def event(eid: str, etype: str, at: str, customer: dict[str, Any] | None = None,
          **rest: Any) -> dict[str, Any]:
    return {"id": eid, "type": etype, "occurred_at": at,
            "customer": customer or {"id": "c1"}, **rest}


def test_event_times_are_whole_seconds() -> None:
    parsed = parse_event(event("e1", "order.placed", "2026-03-02T15:00:00.900Z"))
    assert parsed["_at"] == datetime(2026, 3, 2, 15, tzinfo=UTC)


CASES = {
    # The delivery at .9 s: its step is due at 16:00:00 (whole seconds), so the
    # withdrawal at 16:00:00.1 (16:00:00 too) comes after it, in both.
    "consent withdrawn within the second": (
        campaign(),
        [event("e1", "order.delivered", "2026-03-02T15:00:00.900Z", CUSTOMER, order=ORDER),
         event("e2", "customer.updated", "2026-03-02T16:00:00.100Z",
               {"id": "c1", "consent": {"email": False}})],
        [("c1", "sub", "s1", "2026-03-02T16:00:00Z", "sent", "", "email", "care_tip")]),
    "return within the second": (
        campaign(exit={"event": "order.returned"}),
        [event("e1", "order.delivered", "2026-03-02T15:00:00.500Z", CUSTOMER, order=ORDER),
         event("e2", "order.returned", "2026-03-02T16:00:00.200Z", order={"id": "o1"})],
        [("c1", "sub", "s1", "2026-03-02T16:00:00Z", "sent", "", "email", "care_tip")]),
    # 20:00+05:00 is 15:00Z, before the withdrawal at 16:30Z (as text it sorts after).
    "an offset other than Z": (
        campaign("order.placed"),
        [event("e1", "order.placed", "2026-03-02T20:00:00+05:00", CUSTOMER, order=ORDER),
         event("e2", "customer.updated", "2026-03-02T16:30:00Z",
               {"id": "c1", "consent": {"email": False}})],
        [("c1", "sub", "s1", "2026-03-02T16:00:00Z", "sent", "", "email", "care_tip")]),
    # An event at the window's end is outside it (--to is exclusive), on both sides.
    "an event at the end": (
        campaign("order.placed", after="PT0S"),
        [event("e1", "order.placed", "2026-03-05T00:00:00Z", CUSTOMER, order=ORDER)],
        []),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_simulate_and_the_pipeline_agree(stack: LocalStack, tmp_path: Path, name: str) -> None:
    campaigns, events, expected = CASES[name]
    folder = write_set([campaigns], tmp_path / "campaigns")
    simulated, piped = run_both(stack, folder, events, END)
    assert simulated == piped
    assert simulated == expected
