"""Drive the local pipeline through an event log on a virtual clock.

The clock jumps from event to event and to each due time in between (the
handlers report the due times they planned), so months replay in seconds and
every step is decided exactly at its due time, as ``aftercare simulate`` does.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from chalicelib import clock
from chalicelib.journeys.engine import Row
from chalicelib.local.stack import LocalStack

# What recipients text back in a replay with ``replies`` (chosen by a hash of the
# recipient and the message, so a seeded log replays the same way every time).
CSAT_ANSWERS = (5, 5, 4, 4, 5, 3, 4, 2, 5, 1)
NPS_ANSWERS = (10, 9, 9, 8, 10, 7, 6, 9, 3, 10)
FREE_TEXT = ("Thanks, it works great!", "Arrived a bit late but all good",
             "Can I get it in blue?", "who is this?")


class Replay:
    def __init__(self, stack: LocalStack, *, callbacks: bool = False,
                 replies: bool = False) -> None:
        self.stack = stack
        self.callbacks = callbacks  # deliver Twilio's signed status callbacks as they come
        # Recipients answer some SMS as they arrive (signed inbound webhooks): about
        # 60% of survey SMS with a score, 12% of SMS with a free-text reply.
        self.replies = replies
        self.survey_share, self.text_share = 0.6, 0.12
        self.replied: dict[str, int] = {"survey": 0, "text": 0}
        self._texts_seen = 0
        self._due: list[datetime] = []
        self._queued: set[datetime] = set()
        self._now: datetime | None = None  # the virtual clock: it never goes back
        self.invocations = 0

    def _add_due(self, results: Iterable[Mapping[str, Any]]) -> None:
        for result in results:
            for stamp in result.get("due", ()):
                at = clock.parse_iso(stamp)
                if at not in self._queued:
                    self._queued.add(at)
                    heapq.heappush(self._due, at)

    def run_due(self, until: datetime) -> None:
        while self._due and self._due[0] <= until:
            at = heapq.heappop(self._due)
            self._queued.discard(at)
            # A step planned after its due time (a birthday learnt late in the day)
            # is due in the past: the next tick, now, decides it.
            if self._now is not None and at < self._now:
                at = self._now
            self._now = at
            self._add_due(self.stack.run_due(at))
            if self.callbacks:
                self.stack.twilio.deliver_callbacks()
            if self.replies:
                self._text_back()
            self.invocations += 1

    def _text_back(self) -> None:
        """Answer the SMS sent since the last call, as some recipients would."""
        from chalicelib import settings
        from chalicelib.store.models import MessageModel

        sent = self.stack.twilio.messages[self._texts_seen:]
        self._texts_seen += len(sent)
        url = settings.load().public_base_url + "/webhooks/twilio/inbound"
        for sms in sent:
            if sms.get("status") in ("undelivered", "failed"):
                continue
            roll = int.from_bytes(hashlib.sha256(
                f"{sms['to']}|{sms['body']}".encode()).digest()[:4], "big")
            kind = None
            for hit in MessageModel.by_provider.query(sms["sid"], limit=1):
                kind = MessageModel.get(hit.message_id).survey_kind
            share = (roll % 1000) / 1000
            if kind in ("csat", "nps") and share < self.survey_share:
                answers = CSAT_ANSWERS if kind == "csat" else NPS_ANSWERS
                body = str(answers[(roll // 1000) % len(answers)])
                self.replied["survey"] += 1
            elif share >= 1 - self.text_share:
                body = FREE_TEXT[(roll // 1000) % len(FREE_TEXT)]
                self.replied["text"] += 1
            else:
                continue
            self.stack.twilio.simulate_inbound(sms["to"], body, sms["from"], url)

    def feed(self, event: Mapping[str, Any]) -> None:
        at = clock.parse_iso(str(event["occurred_at"]))
        self.run_due(at)
        if self._now is None or at > self._now:
            self._now = at
        clock.set_now(at)
        self._add_due(self.stack.ingest([event]))
        self.invocations += 1

    def run(self, events: Iterable[Mapping[str, Any]], until: datetime | None = None) -> None:
        last: datetime | None = None
        for event in events:
            self.feed(event)
            last = clock.parse_iso(str(event["occurred_at"]))
        end = until or last
        if end is not None:
            self.run_due(end)
            clock.set_now(end)


SENT_STATUS = {"sent": "sent", "delivered": "sent", "undelivered": "sent", "queued": "sent"}


def pipeline_rows() -> list[Row]:
    """Every step decision the pipeline recorded (a Scan: tests and demo only)."""
    from chalicelib.store.models import MessageModel, ScheduleModel

    rows = []
    for m in MessageModel.scan():
        if m.outcome == "send":  # the decision was to send; what the provider did next
            outcome = SENT_STATUS.get(m.status, m.status)  # (delivered...) is not a decision
            reason = ""
        else:
            outcome, reason = m.outcome, m.reason or ""
        # The decision's time (a deferred step's is when it was finally decided).
        rows.append(Row(m.customer_id, m.campaign_id, m.step_id, m.decided_at, outcome,
                        reason, m.channel or "", m.template or ""))
    for s in ScheduleModel.scan(ScheduleModel.status == "cancelled"):
        step = s.step
        rows.append(Row(step["customer_id"], step["campaign_id"], step["step_id"],
                        step["due_at"], s.outcome or "cancelled", s.reason or ""))
    return rows
