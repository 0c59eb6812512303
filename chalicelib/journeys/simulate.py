"""``aftercare simulate``: a backtest of an event log on a virtual clock.

It replays events in time order through the same decision functions the Lambda
pipeline uses (:func:`process_event` at each event, :func:`decide_step` at each
step's due time), keeping profiles and the schedule in memory.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import IO, Any

from chalicelib.clock import iso
from chalicelib.events import EventError, parse_event
from chalicelib.journeys.engine import CampaignSet, PlannedStep, Row, decide_step, process_event
from chalicelib.journeys.profile import Profile

OUTCOME_NAME = {"send": "sent"}
DEFAULT_HORIZON = timedelta(days=365)


@dataclass(slots=True)
class BadLine:
    line: int
    reason: str


@dataclass(slots=True)
class Simulator:
    campaigns: CampaignSet
    default_tz: str = "America/New_York"
    profiles: dict[str, Profile] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)
    bad: list[BadLine] = field(default_factory=list)
    duplicates: int = 0
    events: int = 0
    _heap: list[tuple[datetime, int, PlannedStep]] = field(default_factory=list)
    _pending: dict[str, PlannedStep] = field(default_factory=dict)
    _known: set[str] = field(default_factory=set)
    _seen_events: set[str] = field(default_factory=set)
    _seq: int = 0

    def _plan(self, step: PlannedStep) -> None:
        if step.id in self._known:
            return
        self._known.add(step.id)
        self._push(step, step.due_at)

    def _push(self, step: PlannedStep, due: datetime) -> None:
        self._pending[step.id] = step
        self._seq += 1
        heapq.heappush(self._heap, (due, self._seq, step))

    def advance(self, until: datetime) -> None:
        """Decide every step due at or before ``until``, each at its own due time."""
        heap = self._heap
        while heap and heap[0][0] <= until:
            due, _, step = heapq.heappop(heap)
            if self._pending.get(step.id) is not step:
                continue  # cancelled, or superseded by a deferral
            del self._pending[step.id]
            decision = decide_step(step, self.profiles.get(step.customer_id),
                                   self.campaigns.get(step.campaign_id), due, self.default_tz)
            if decision.outcome == "deferred" and decision.defer_until is not None:
                self._push(step, decision.defer_until)
                continue
            self.rows.append(Row(step.customer_id, step.campaign_id, step.step_id,
                                 iso(step.due_at),
                                 OUTCOME_NAME.get(decision.outcome, decision.outcome),
                                 decision.reason))
            for follow in decision.follow_ups:
                self._plan(follow)

    def feed(self, event: dict[str, Any]) -> None:
        """Process one parsed event at its own time (steps due before it go first)."""
        at: datetime = event["_at"]
        self.advance(at)
        if event["id"] in self._seen_events:
            self.duplicates += 1
            return
        self._seen_events.add(event["id"])
        self.events += 1
        customer_id = event["customer"]["id"]
        result = process_event(event, self.profiles.get(customer_id), self.campaigns,
                               self.default_tz)
        self.profiles[customer_id] = result.profile
        for cancel in result.cancelled:
            step = self._pending.pop(cancel.schedule_id, None)
            if step is not None:
                self.rows.append(Row(step.customer_id, step.campaign_id, step.step_id,
                                     iso(step.due_at), cancel.outcome, cancel.reason))
        self.rows.extend(result.rows)
        for step in result.planned:
            self._plan(step)

    def pending(self) -> list[PlannedStep]:
        return sorted(self._pending.values(), key=lambda s: (s.due_at, s.id))


def read_events(lines: Iterable[str], start: datetime | None = None,
                end: datetime | None = None, bad: list[BadLine] | None = None,
                ) -> Iterator[dict[str, Any]]:
    """Parse a JSONL event log; bad lines are collected with their reason, not raised."""
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            event = parse_event(json.loads(line))
        except json.JSONDecodeError as exc:
            if bad is not None:
                bad.append(BadLine(number, f"invalid JSON: {exc.msg}"))
            continue
        except EventError as exc:
            if bad is not None:
                bad.append(BadLine(number, str(exc)))
            continue
        at = event["_at"]
        if (start is not None and at < start) or (end is not None and at >= end):
            continue
        yield event


def simulate(stream: IO[str], campaigns: CampaignSet, *, start: datetime | None = None,
             end: datetime | None = None, default_tz: str = "America/New_York",
             presorted: bool = False) -> Simulator:
    """Replay a JSONL log; events are sorted by time unless ``presorted``."""
    sim = Simulator(campaigns, default_tz)
    events: Iterable[dict[str, Any]] = read_events(stream, start, end, sim.bad)
    if not presorted:
        events = sorted(events, key=lambda e: e["_at"])
    last: datetime | None = None
    for event in events:
        sim.feed(event)
        last = event["_at"]
    if end is None and last is not None:
        end = last + DEFAULT_HORIZON
    if end is not None:
        sim.advance(end)
    return sim
