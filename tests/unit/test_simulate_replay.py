"""``Simulator.replay`` (customer by customer) decides exactly what feeding every
event in time order does.

The reference is the definition: ``feed`` on each event of the time-sorted log,
then ``advance(end)`` (:meth:`Simulator.feed_in_order`). ``replay`` must give the
same rows (each customer's in the same order), counters, duplicates and pending
steps, including for event ids shared across customers, a ``--to`` end that cuts
timelines short, and a simulator that already holds steps of many customers.
"""

from __future__ import annotations

import json
import random
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from chalicelib.journeys.engine import CampaignSet, Row
from chalicelib.journeys.simulate import (
    DEFAULT_HORIZON,
    Simulator,
    in_time_order,
    read_events,
    simulate,
)
from chalicelib.local.generator import generate


@pytest.fixture(scope="module")
def campaigns(example_campaigns: CampaignSet) -> CampaignSet:
    return example_campaigns


@pytest.fixture(scope="module")
def log() -> list[str]:
    """300 customers over a year, with events whose ids other customers reuse."""
    events = generate(customers=300, days=365, seed=8)
    rng = random.Random(4)
    for _ in range(40):  # a later event of another customer reusing an earlier id
        first, later = sorted(rng.sample(range(len(events)), 2))
        if events[first]["customer"]["id"] != events[later]["customer"]["id"]:
            events[later] = {**events[later], "id": events[first]["id"]}
    for _ in range(20):  # a same-time duplicate of another customer's event
        i = rng.randrange(len(events))
        other = events[rng.randrange(len(events))]["customer"]
        events.insert(i + 1, {**events[i], "customer": {"id": other["id"]}})
    return [json.dumps(e) + "\n" for e in events]


def _by_customer(rows: list[Row]) -> dict[str, list[Row]]:
    grouped: dict[str, list[Row]] = defaultdict(list)
    for r in rows:
        grouped[r.customer].append(r)
    return dict(grouped)


def _reference(lines: list[str], campaigns: CampaignSet, end: datetime | None) -> Simulator:
    sim = Simulator(campaigns)
    events = sorted(read_events(lines, end=end, bad=sim.bad), key=lambda e: e["_at"])
    if end is None:
        end = events[-1]["_at"] + DEFAULT_HORIZON
    sim.feed_in_order(events, end)
    return sim


def _same(got: Simulator, want: Simulator) -> None:
    assert _by_customer(got.rows) == _by_customer(want.rows)  # each customer's in order
    assert Counter(got.rows) == Counter(want.rows)
    assert (got.events, got.duplicates) == (want.events, want.duplicates)
    assert [(s.id, s.due_at) for s in got.pending()] == [
        (s.id, s.due_at) for s in want.pending()]
    assert got.profiles == want.profiles


@pytest.mark.parametrize("end", [None, datetime(2026, 7, 1, 9, 30, tzinfo=UTC)])
def test_replay_matches_feeding_in_time_order(log: list[str], campaigns: CampaignSet,
                                              end: datetime | None) -> None:
    shuffled = list(log)  # events of equal times are sorted in file order (stable)
    random.Random(2).shuffle(shuffled)
    want = _reference(shuffled, campaigns, end)
    assert want.duplicates >= 10 and len(want.rows) > 5_000 and want.pending()
    got = simulate(iter(shuffled), campaigns, end=end)
    _same(got, want)
    # The rows of different customers interleave differently, nothing else.
    assert got.rows != want.rows


def test_replay_after_feeding_keeps_the_global_order(log: list[str],
                                                     campaigns: CampaignSet) -> None:
    """Steps already pending belong to many customers: replay feeds in order then."""
    events = sorted(read_events(log), key=lambda e: e["_at"])
    half = len(events) // 2
    end = events[-1]["_at"] + timedelta(days=30)
    sim = Simulator(campaigns)
    for event in events[:half]:
        sim.feed(event)
    assert sim.pending()
    sim.replay(events[half:], end)
    want = Simulator(campaigns)
    want.feed_in_order(events, end)
    _same(sim, want)
    assert sim.rows == want.rows


def test_presorted_claim_is_checked(log: list[str], campaigns: CampaignSet,
                                    tmp_path: Path) -> None:
    """A log said to be presorted but out of time order runs in file order."""
    events: list[dict[str, Any]] = sorted(read_events(log), key=lambda e: e["_at"])
    assert in_time_order(events)
    lines = [json.dumps({k: v for k, v in e.items() if k != "_at"}, default=str) + "\n"
             for e in events]
    lines[10], lines[500] = lines[500], lines[10]
    assert not in_time_order(list(read_events(lines)))
    got = simulate(iter(lines), campaigns, presorted=True)
    want = Simulator(campaigns)
    in_file_order = list(read_events(lines))
    want.feed_in_order(in_file_order, in_file_order[-1]["_at"] + DEFAULT_HORIZON)
    assert got.rows == want.rows
