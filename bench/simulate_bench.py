"""Benchmark of ``aftercare simulate`` against the floor of just reading the log.

``run()`` returns:

- ``simulate.events_per_s``: events per second through the whole backtest
  (read, ``json.loads``, check the envelope, fold into profiles, enroll, decide
  every step at its due time) with the example campaigns.
- ``simulate.cost_vs_parse``: the backtest's time, as the CLI runs it by default
  (:func:`simulate_file` with ``workers`` auto: the log split by customer across
  one process per usable CPU, at most 8; the time includes reading the file from
  its path), divided by the time to read the same file and ``json.loads`` every
  line in one process: how close the backtest runs to the floor of reading its
  input. Both are best of N.
- ``simulate.cost_vs_parse_1worker``: the same with ``workers=1`` (the sequential
  :func:`simulate`, in this process).
- ``simulate.workers``: the number of processes the default run used (1 when it
  fell back to the sequential run).
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
from chalicelib.journeys.parallel import simulate_file  # noqa: E402
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

        runs: dict[int | None, tuple[int, int, int]] = {}  # rows, events, workers used

        def backtest(workers: int | None) -> None:
            # As the CLI calls it: the log is sorted by time here too (it is already).
            sim = simulate_file(path, campaigns, workers=workers)
            runs[workers] = (len(sim.rows), sim.events, sim.workers_used)

        t_parse = _best(parse_only, REPEAT + 1)
        t_sim = _best(lambda: backtest(None), REPEAT)
        t_one = _best(lambda: backtest(1), REPEAT)
    n = len(events)
    (rows, fed, workers), one = runs[None], runs[1]
    if (rows, fed) != one[:2]:
        raise SystemExit(f"simulate: {workers} workers and 1 worker disagree: {runs}")
    print(f"simulate: {n} events, parse floor {t_parse:.2f}s, backtest {t_sim:.2f}s with "
          f"{workers} worker(s) ({n / t_sim:,.0f} events/s, {t_sim / t_parse:.1f}x the floor), "
          f"{t_one:.2f}s with 1 ({t_one / t_parse:.1f}x the floor)", file=sys.stderr)
    return {
        "simulate.events_per_s": round(n / t_sim, 1),
        "simulate.cost_vs_parse": round(t_sim / t_parse, 2),
        "simulate.cost_vs_parse_1worker": round(t_one / t_parse, 2),
        "simulate.workers": workers,
        "simulate.events": n,
        "simulate.rows": rows,
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
