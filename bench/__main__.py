"""``make bench``: every benchmark, as ratios against same-process baselines.

Each module's ``run()`` returns a dict of figures; human-readable lines go to
stderr as they run, and the last line on stdout is one JSON object holding every
figure under stable key names.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

MODULES = ("bench.rules_bench", "bench.simulate_bench", "bench.pipeline_bench")


def main(argv: list[str]) -> int:
    wanted = [m for m in MODULES if not argv or any(a in m for a in argv)]
    figures: dict[str, object] = {}
    for name in wanted:
        started = time.perf_counter()
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            print(f"{name}: not available ({exc})", file=sys.stderr)
            continue
        result = module.run()
        figures.update(result)
        print(f"{name}: done in {time.perf_counter() - started:.0f}s", file=sys.stderr)
        for key, value in result.items():
            print(f"  {key} = {value}")
    print(json.dumps(figures, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
