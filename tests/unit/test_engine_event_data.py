"""Step conditions read the triggering event's ``data``: what a planned step keeps of it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from chalicelib.config.compiled import compile_campaign
from chalicelib.config.model import Campaign
from chalicelib.events import parse_event
from chalicelib.journeys.engine import (
    MAX_STEP_DATA_BYTES,
    CampaignSet,
    PlannedStep,
    decide_step,
    process_event,
)
from chalicelib.rules.reads import event_data_reads

CUSTOMER = {"id": "c1", "email": "a@example.com", "timezone": "America/New_York",
            "consent": {"email": True}}
GIFT = {"==": [{"var": "event.data.gift"}, True]}


def campaign(cid: str, condition: Any = None, **over: Any) -> Campaign:
    step: dict[str, Any] = {"id": "s1", "after": "P1D", "at": "10:00", "channel": "email",
                            "template": "win_back"}
    if condition is not None:
        step["condition"] = condition
    return Campaign.model_validate({"id": cid, "name": cid,
                                    "trigger": {"event": "order.delivered"},
                                    "steps": [step], **over})


def cset(*campaigns: Campaign) -> CampaignSet:
    return CampaignSet(compile_campaign(c) for c in campaigns)


def delivered(data: dict[str, Any] | None, eid: str = "e1") -> dict[str, Any]:
    raw: dict[str, Any] = {"id": eid, "type": "order.delivered",
                           "occurred_at": "2026-04-01T14:00:00Z", "customer": CUSTOMER,
                           "order": {"id": "o1", "total": 10.0}}
    if data is not None:
        raw["data"] = data
    return parse_event(raw)


@pytest.mark.parametrize(("rule", "expected"), [
    ({"var": "event.data.gift"}, (False, {"gift"})),
    ({"var": ["event.data.gift.wrap", False]}, (False, {"gift"})),
    ({"val": ["event", "data", "a.b"]}, (False, {"a.b"})),
    ({"exists": ["event", "data", "x"]}, (False, {"x"})),
    ({"missing": ["event.data.x", "customer.email"]}, (False, {"x"})),
    ({"missing": [["event.data.x", "event.data.y"]]}, (False, {"x", "y"})),
    ({"missing_some": [1, ["event.data.y", "event.id"]]}, (False, {"y"})),
    ({"var": ["customer.tier", {"var": "event.data.tier"}]}, (False, {"tier"})),
    ({"some": [{"var": "event.data.items"}, {"==": [{"var": "sku"}, "K"]}]},
     (False, {"items"})),
    ({"var": "customer.tier"}, (False, set())),
    ({"var": "event.order.categories"}, (False, set())),
    ({"preserve": {"var": "event.data"}}, (False, set())),
    # Readers of all of it: the data, the event, the context, a computed path.
    ({"var": "event.data"}, (True, set())),
    ({"var": "event"}, (True, set())),
    ({"var": ""}, (True, set())),
    ({"var": []}, (True, set())),
    ({"var": {"cat": ["event.data.", {"var": "customer.tier"}]}}, (True, set())),
    ({"val": ["event", {"var": "customer.key"}]}, (True, set())),
    ({"val": [[1], "event", "data"]}, (True, set())),
    ({"missing": {"merge": ["event.data.x"]}}, (True, set())),
])
def test_which_keys_of_the_event_data_a_rule_reads(rule: Any, expected: Any) -> None:
    whole, keys = event_data_reads({"and": [True, rule]})
    assert (whole, set(keys)) == (expected[0], expected[1])


def test_a_step_keeps_only_the_data_its_campaigns_conditions_read() -> None:
    cs = cset(campaign("gift", GIFT), campaign("plain"),
              campaign("all", {"!!": [{"var": "event.data"}]}))
    r = process_event(delivered({"gift": True, "note": "x" * 1000}), None, cs)
    kept = {s.campaign_id: s.data for s in r.planned}
    assert kept == {"gift": {"gift": True}, "plain": None,
                    "all": {"gift": True, "note": "x" * 1000}}
    # Stored only where kept: records of campaigns that read no data are unchanged.
    stored = {s.campaign_id: s.to_dict() for s in r.planned}
    assert stored["gift"]["data"] == {"gift": True} and "data" not in stored["plain"]
    (gift,) = [s for s in r.planned if s.campaign_id == "gift"]
    assert PlannedStep.from_dict(stored["gift"]) == gift


def test_the_condition_sees_the_kept_data_at_send_time() -> None:
    c = campaign("gift", GIFT)
    cs = cset(c)
    for data, outcome in (({"gift": True}, "send"), ({"gift": False}, "skipped"),
                          (None, "skipped")):
        r = process_event(delivered(data), None, cs)
        (step,) = r.planned
        assert step.data == (None if data is None else data)
        d = decide_step(PlannedStep.from_dict(json.loads(json.dumps(step.to_dict()))),
                        r.profile, cs.get("gift"), step.due_at)
        assert d.outcome == outcome, data


def test_a_record_written_before_data_was_kept_still_reads() -> None:
    cs = cset(campaign("gift", GIFT))
    r = process_event(delivered({"gift": True}), None, cs)
    old = r.planned[0].to_dict()
    del old["data"]
    step = PlannedStep.from_dict(old)
    assert step.data is None
    d = decide_step(step, r.profile, cs.get("gift"), step.due_at)
    assert (d.outcome, d.reason) == ("skipped", "step condition false")


def test_an_enrollment_needing_more_data_than_a_step_keeps_is_skipped_with_the_reason() -> None:
    cs = cset(campaign("all", {"!!": [{"var": "event.data"}]}), campaign("plain"))
    big = {"note": "x" * MAX_STEP_DATA_BYTES}
    r = process_event(delivered(big), None, cs)
    assert [s.campaign_id for s in r.planned] == ["plain"]
    (row,) = [row for row in r.rows if row.campaign == "all"]
    size = len(json.dumps(big, separators=(",", ":")))
    assert (row.outcome, row.reason) == (
        "skipped", f"event data read by step conditions is {size} bytes, over the "
                   f"{MAX_STEP_DATA_BYTES} kept with a step")
    assert "all" not in r.profile["enrollments"]
    # At the limit it is kept.
    fits = {"note": "x" * (MAX_STEP_DATA_BYTES - len('{"note":""}'))}
    assert len(process_event(delivered(fits), None, cs).planned) == 2
