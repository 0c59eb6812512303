"""Differential test of the two variants of a compiled rule.

The fast variant inlines plain Python and relies on Python raising for inputs
where JSON Logic differs; the safe variant calls the helpers.  On random rules
and random (often ill-typed) data, the fast variant without its fallback must
give the safe variant's answer or raise one of ``DEOPT``.
"""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from chalicelib.rules.codegen import DEOPT, build_variants
from chalicelib.rules.conformance import json_equal
from chalicelib.rules.errors import RuleError, RuleEvaluationError

VALUES: list[Any] = [
    None, True, False, 0, 1, 2, -1, 3, 1.5, 0.0, "", "0", "1", "5", "abc", "gold",
    "2024-01-01", [], [1], [1, 2], ["a", "gold"], {}, {"a": 1},
]
KEYS = ["a", "b", "c", "tier", "n"]
BINARY = ["==", "!=", "===", "!==", "<", "<=", ">", ">=", "+", "-", "*", "/", "%", "in",
          "cat", "max", "min", "merge"]
COMPARISONS = {"==", "!=", "===", "!==", "<", "<=", ">", ">=", "%"}


def random_data(rng: random.Random, depth: int = 0) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for key in KEYS:
        roll = rng.random()
        if roll < 0.15:
            continue
        if roll < 0.35 and depth < 2:
            data[key] = random_data(rng, depth + 1)
        elif roll < 0.4:
            data[key] = [rng.choice(VALUES) for _ in range(rng.randint(0, 3))]
        else:
            data[key] = rng.choice(VALUES)
    return data


def random_var(rng: random.Random) -> Any:
    path = ".".join(rng.choice(KEYS) for _ in range(rng.randint(1, 3)))
    roll = rng.random()
    if roll < 0.1:
        return {"var": [path, rng.choice(VALUES[:12])]}
    if roll < 0.2:
        return {"val": path.split(".")}
    return {"var": path}


def random_special(rng: random.Random, depth: int) -> Any:
    kind = rng.choice(["try", "substr", "missing", "exists", "days_since", "anniversary",
                       "contains_any", "throw", "scope", "coalesce", "reduce"])
    sub = random_rule
    if kind == "try":
        return {"try": [sub(rng, depth + 1), {"var": "type"}, sub(rng, depth + 1)][
            : rng.randint(1, 3)]}
    if kind == "substr":
        return {"substr": [sub(rng, depth + 1), rng.choice([0, 1, -2, "1"]),
                           rng.choice([1, -1, 2])][: rng.randint(1, 3)]}
    if kind == "missing":
        return {"missing": [rng.choice(KEYS), "a.b", rng.choice(KEYS)]}
    if kind == "exists":
        return {"exists": [rng.choice(KEYS), rng.choice(KEYS)]}
    if kind == "days_since":
        return {"days_since": [rng.choice([{"var": "a"}, "2024-01-01", None,
                                           "2025-06-01T10:00:00Z"])]}
    if kind == "anniversary":
        return {"is_anniversary": [rng.choice([{"var": "a"}, "2020-01-01", "2024-02-29"]),
                                   rng.choice(["UTC", "America/New_York", None])]}
    if kind == "contains_any":
        return {"contains_any": [random_var(rng), ["a", "gold", 1]]}
    if kind == "throw":
        return {"if": [sub(rng, depth + 1), {"throw": "boom"}, sub(rng, depth + 1)]}
    if kind == "scope":
        return {"map": [random_var(rng), {"+": [{"val": [[rng.choice([1, 2, -2])],
                                                          rng.choice(["index", "n", "a"])]},
                                                 1]}]}
    if kind == "reduce":
        body = rng.choice([{"+": [{"var": "current"}, {"var": "accumulator"}]},
                           {"cat": [{"var": "accumulator"}, {"var": "current.a"}]}])
        return {"reduce": [random_var(rng), body, rng.choice([0, "", None])]}
    return {"??": [random_var(rng), random_var(rng), rng.choice(VALUES)]}


def random_rule(rng: random.Random, depth: int = 0) -> Any:
    if depth > 3 or rng.random() < 0.3:
        return random_var(rng) if rng.random() < 0.6 else rng.choice(VALUES)
    roll = rng.random()
    if roll < 0.45:
        op = rng.choice(BINARY)
        if op == "in":
            count = 2
        elif op in COMPARISONS:
            count = rng.choice([2, 2, 2, 3])
        else:
            count = rng.choice([1, 2, 2, 2, 3])
        return {op: [random_rule(rng, depth + 1) for _ in range(count)]}
    if roll < 0.65:
        op = rng.choice(["and", "or", "if", "??"])
        return {op: [random_rule(rng, depth + 1) for _ in range(rng.randint(0, 4))]}
    if roll < 0.75:
        return {rng.choice(["!", "!!"]): [random_rule(rng, depth + 1)]}
    if roll < 0.9:
        body = random_rule(rng, depth + 1)
        op = rng.choice(["map", "filter", "all", "some", "none"])
        return {op: [random_var(rng), 1 if body is None else body]}
    if roll < 0.95:
        return {"in": [rng.choice(VALUES[:19]), ["a", "gold", "x"]]}
    return random_special(rng, depth)


def outcome(function: Any, data: Any) -> tuple[str, Any]:
    try:
        return "ok", function(data)
    except RuleEvaluationError as exc:
        return "error", exc.type


@pytest.mark.parametrize("seed", range(4))
def test_fast_variant_matches_safe_variant_on_random_rules(seed: int) -> None:
    rng = random.Random(seed)
    checked = 0
    for _ in range(400):
        rule = random_rule(rng)
        try:
            fast, safe = build_variants(rule)
        except RuleError:
            continue
        for _ in range(4):
            data = random_data(rng)
            data["now"] = rng.choice(["2026-01-01T10:00:00Z", "2026-02-28T23:00:00+00:00"])
            expected = outcome(safe, data)
            try:
                got = outcome(fast, data)
            except DEOPT:
                continue
            checked += 1
            same = got[0] == expected[0] and (
                json_equal(got[1], expected[1]) if got[0] == "ok" else got[1] == expected[1]
            )
            assert same, f"{json.dumps(rule)} on {json.dumps(data)}: {got} != {expected}"
    assert checked > 500
