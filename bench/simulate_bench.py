"""Benchmark of ``aftercare simulate`` against the floor of just reading the log.

``run()`` returns:

- ``simulate.events_per_s``: events per second through the whole backtest
  (read, ``json.loads``, check the envelope, fold into profiles, enroll, decide
  every step at its due time) with the example campaigns.
- ``simulate.cost_vs_parse``: the backtest's time divided by the time to read the
  same file and ``json.loads`` every line, in the same process: how close the
  backtest runs to the floor of reading its input. Both are best of N.
- ``simulate.events``, ``simulate.rows``: the workload's size.
"""

from __future__ import annotations

import gc
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from chalicelib.config.loader import load_bundles  # noqa: E402
from chalicelib.journeys.engine import CampaignSet  # noqa: E402
from chalicelib.journeys.simulate import simulate  # noqa: E402
from chalicelib.local.generator import generate, write_jsonl  # noqa: E402
from chalicelib.render import load_template_dir  # noqa: E402

MIN_EVENTS = 200_000
REPEAT = 2


def _campaigns() -> CampaignSet:
    bundles, problems = load_bundles([ROOT / "campaigns"],
                                     load_template_dir(ROOT / "templates"))
    if any(p.severity == "error" for p in problems):
        raise SystemExit("example campaigns do not validate")
    return CampaignSet(b.compiled() for b in bundles)


def _best(fn: object, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        gc.disable()
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        best = min(best, time.perf_counter() - start)
        gc.enable()
    return best


def run() -> dict[str, float | int]:
    events = generate(customers=MIN_EVENTS // 6, days=365, seed=11)
    if len(events) < MIN_EVENTS:
        events = generate(customers=MIN_EVENTS // 5, days=365, seed=11)
    campaigns = _campaigns()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.jsonl"
        write_jsonl(events, path)

        def parse_only() -> None:
            with path.open(encoding="utf-8") as fh:
                for line in fh:
                    json.loads(line)

        rows: list[int] = []

        def backtest() -> None:
            with path.open(encoding="utf-8") as fh:
                sim = simulate(fh, campaigns, presorted=True)
            rows.append(len(sim.rows))

        t_parse = _best(parse_only, REPEAT + 1)
        t_sim = _best(backtest, REPEAT)
    n = len(events)
    print(f"simulate: {n} events, parse floor {t_parse:.2f}s, backtest {t_sim:.2f}s "
          f"({n / t_sim:,.0f} events/s, {t_sim / t_parse:.1f}x the floor)", file=sys.stderr)
    return {
        "simulate.events_per_s": round(n / t_sim, 1),
        "simulate.cost_vs_parse": round(t_sim / t_parse, 2),
        "simulate.events": n,
        "simulate.rows": rows[-1],
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
