"""Time a peer JSON Logic library on the benchmark's rules and contexts.

Run by ``bench/rules_bench.py`` with the Python of a virtualenv in which one peer
(``json-logic-qubit`` or ``panzi-json-logic``, both imported as ``json_logic``)
is installed.  Standard library only, so it runs in that bare environment.

Usage: ``python _peer_rules.py WORKLOAD.json`` where the file holds
``{"rules": [...], "contexts": [...], "repeat": n}``.  Prints one JSON object:
``{"evals_per_s": float, "truthy_counts": [int per rule], "seconds": float}``.

Timing: every rule on every context, context by context, the same loop as for
our compiled rules; the best of ``repeat`` runs, with the garbage collector paused as
``timeit`` does.
"""

from __future__ import annotations

import gc
import json
import sys
import time
from typing import Any


def _truthy(value: Any) -> bool:
    if isinstance(value, dict):
        return True
    return bool(value)


def main(path: str) -> None:
    from json_logic import jsonLogic  # the peer under test

    with open(path, encoding="utf-8") as handle:
        workload = json.load(handle)
    rules = workload["rules"]
    contexts = workload["contexts"]
    repeat = int(workload.get("repeat", 3))

    counts = [sum(_truthy(jsonLogic(rule, ctx)) for ctx in contexts) for rule in rules]

    best = float("inf")
    gc.disable()
    try:
        for _ in range(repeat):
            start = time.perf_counter()
            for ctx in contexts:
                for rule in rules:
                    jsonLogic(rule, ctx)
            best = min(best, time.perf_counter() - start)
    finally:
        gc.enable()
    evaluations = len(rules) * len(contexts)
    print(
        json.dumps(
            {"evals_per_s": evaluations / best, "truthy_counts": counts, "seconds": best}
        )
    )


if __name__ == "__main__":
    main(sys.argv[1])
