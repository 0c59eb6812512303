"""``Replay(replies=True)`` (what ``make demo`` runs): recipients text back through
signed inbound webhooks as SMS arrive; answers and replies land in the stats the
report reads, and the decisions stay those of ``aftercare simulate``."""

from __future__ import annotations

import io
import json
from datetime import timedelta

from chalicelib import clock
from chalicelib.journeys.simulate import simulate
from chalicelib.local.generator import generate
from chalicelib.local.replay import Replay, pipeline_rows
from chalicelib.local.stack import LocalStack
from chalicelib.store.campaigns import load_live
from chalicelib.store.models import COUNTERS, MessageModel, StatsModel


def _totals() -> dict[str, int]:
    out = dict.fromkeys(COUNTERS, 0)
    for item in StatsModel.scan():
        if not item.pk.startswith("_"):
            for name in COUNTERS:
                out[name] += int(getattr(item, name) or 0)
    return out


def test_a_replay_with_replies_records_answers_and_replies(live_stack: LocalStack) -> None:
    events = generate(customers=25, days=45, seed=3)
    # simulate's end is also its --to, which excludes events at it: a second later.
    end = clock.parse_iso(events[-1]["occurred_at"]) + timedelta(seconds=1)
    replay = Replay(live_stack, callbacks=True, replies=True)
    replay.text_share = 0.35  # more than the demo's 12%: some on every seed
    replay.run(events, until=end)
    assert replay.replied["survey"] > 0 and replay.replied["text"] > 0
    totals = _totals()
    assert 0 < totals["survey_responses"] <= replay.replied["survey"]
    assert totals["replied"] == len([m for m in MessageModel.scan() if m.reply])
    assert 0 < totals["replied"] <= replay.replied["text"]
    # Replies change no decision: the pipeline still decides as simulate does.
    log = io.StringIO("".join(json.dumps(e) + "\n" for e in events))
    sim = simulate(log, load_live().campaigns, end=end)
    decided = sorted(r for r in sim.rows if r.step != "-")
    assert sorted(pipeline_rows()) == decided
