"""The differential oracle both differential tests use: one log, two deciders."""

from __future__ import annotations

import io
import json
from datetime import datetime
from typing import Any

from chalicelib import settings
from chalicelib.events import parse_event
from chalicelib.journeys.messages import RenderCheck
from chalicelib.journeys.simulate import simulate
from chalicelib.local.replay import Replay, pipeline_rows
from chalicelib.local.stack import LocalStack
from chalicelib.store.campaigns import load_live

Rows = list[tuple[str, ...]]


def decide_both(stack: LocalStack, events: list[dict[str, Any]],
                end: datetime) -> tuple[Rows, Rows]:
    """The step rows (sorted) of `aftercare simulate --render` and of the Lambda
    pipeline on the same log, with the campaigns live on ``stack``: (simulate's, the
    pipeline's). Simulate renders each message it decides to send, as the sender does,
    so a template that cannot render for one customer is ``failed`` on both sides."""
    live = load_live()
    conf = settings.load()
    check = RenderCheck(live.templates, conf.default_timezone, conf.public_base_url)
    log = io.StringIO("".join(json.dumps(e) + "\n" for e in events))
    sim = simulate(log, live.campaigns, end=end, default_tz=conf.default_timezone,
                   send_check=check)
    expected: Rows = sorted(r.as_tuple() for r in sim.rows if r.step != "-")
    # The pipeline gets the events simulate replays, in its order: by time as parsed
    # (not as written: "+05:00" and ".5Z" times sort otherwise as text), ties in log
    # order, and only those before ``end`` (simulate's --to window).
    times = [parse_event(json.loads(json.dumps(e)))["_at"] for e in events]
    ordered = [e for at, _, e in sorted(zip(times, range(len(events)), events,
                                            strict=True), key=lambda x: x[:2])
               if at < end]
    Replay(stack).run(ordered, until=end)
    actual: Rows = sorted(r.as_tuple() for r in pipeline_rows())
    return expected, actual
