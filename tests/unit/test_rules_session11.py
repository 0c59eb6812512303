"""Rule engine defects a review found (session 11). Each test fails on the code before.

The fast variant inlined Python's `*`, so a `reduce` squaring its accumulator grew an
integer without end (seconds, then hours) and `inf * 0` gave NaN instead of the
documented error; `===`, `!==`, `in` and `contains_any` compared arrays and objects
with Python's `==`, for which `[1] == [true]`; `contains_any` over arrays of arrays
compared every pair in Python (seconds for an event under 64 KB).
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from chalicelib.rules import RuleEvaluationError, compile_rule
from chalicelib.rules.codegen import build_variants

SQUARING = {"reduce": [{"var": "a"}, {"*": [{"+": [{"var": "accumulator"}]},
                                            {"+": [{"var": "accumulator"}]}]}, 3]}


def test_a_reduce_squaring_its_accumulator_is_infinity_not_a_huge_integer() -> None:
    fast, safe = build_variants(SQUARING)
    assert fast({"a": [0] * 10}) == safe({"a": [0] * 10}) == math.inf
    # 40 squarings: 3 ** (2 ** 40) would not finish; Infinity is immediate.
    assert compile_rule(SQUARING)({"a": [0] * 40}) == math.inf


@pytest.mark.parametrize(("rule", "data"), [
    ({"*": [{"+": [{"var": "x"}, {"var": "x"}]}, 0]}, {"x": 1e308}),
    ({"*": [{"var": "x"}, 0]}, {"x": 1e308 * 10}),
])
def test_infinity_times_zero_is_the_nan_error_in_both_variants(
        rule: dict[str, Any], data: dict[str, Any]) -> None:
    for variant in build_variants(rule):
        with pytest.raises(RuleEvaluationError):
            variant(data)


def test_literal_products_past_a_double_are_infinity() -> None:
    assert compile_rule({"*": [10**300, 10**300, 0.5]})(None) == math.inf


@pytest.mark.parametrize(("rule", "data", "expected"), [
    ({"===": [{"var": "a"}, {"var": "b"}]}, {"a": [1], "b": [True]}, False),
    ({"!==": [{"var": "a"}, {"var": "b"}]}, {"a": [0], "b": [False]}, True),
    ({"===": [{"var": "a"}, {"var": "b"}]}, {"a": {"x": 1}, "b": {"x": True}}, False),
    ({"===": [{"var": "a"}, {"var": "b"}]}, {"a": [1, {"y": [2]}], "b": [1.0, {"y": [2]}]},
     True),
    ({"in": [{"var": "a"}, {"var": "b"}]}, {"a": [1], "b": [[True]]}, False),
    ({"in": [{"var": "a"}, {"var": "b"}]}, {"a": [1], "b": [[1.0]]}, True),
    ({"contains_any": [{"var": "a"}, {"var": "b"}]}, {"a": [[1]], "b": [[True]]}, False),
    ({"contains_any": [{"var": "a"}, {"var": "b"}]}, {"a": [[1]], "b": [[1.0]]}, True),
    ({"contains_any": [{"var": "a"}, {"var": "b"}]},
     {"a": [{"k": [1, True]}], "b": [{"k": [1.0, True]}]}, True),
])
def test_arrays_and_objects_compare_their_elements_strictly(
        rule: dict[str, Any], data: dict[str, Any], expected: bool) -> None:
    for variant in build_variants(rule):
        assert variant(data) is expected


def test_contains_any_of_arrays_of_arrays_is_not_quadratic() -> None:
    # The review's case took 3.2 s; 10,000 x 10,000 pairs took about 20 s.
    left = [[i] for i in range(10_000)]
    right = [[-i - 1] for i in range(10_000)] + [[9_999.0]]
    rule = compile_rule({"contains_any": [{"var": "a"}, {"var": "b"}]})
    assert rule({"a": left, "b": right}) is True
    assert rule({"a": left, "b": right[:-1]}) is False


def test_deeply_nested_arrays_compare_without_recursion() -> None:
    deep: Any = []
    other: Any = []
    for _ in range(5000):
        deep, other = [deep], [other]
    assert compile_rule({"===": [{"var": "a"}, {"var": "b"}]})({"a": deep, "b": other})


@pytest.mark.parametrize("value", ["20260301", "2026W097", "2026060"])
def test_only_the_extended_iso_form_is_a_date(value: str) -> None:
    """Python's fromisoformat reads the basic form as midnight UTC; the docs (and the
    yearly scheduler) read only YYYY-MM-DD and datetimes: anything else is null."""
    now = {"now": "2026-02-27T14:02:00Z"}
    assert compile_rule({"days_until": [value]})(now) is None
    assert compile_rule({"is_anniversary": [value, "America/New_York"]})(now) is None
    assert compile_rule({"days_until": ["2026-03-01"]})(now) == 2
    assert compile_rule({"days_since": ["2026-02-01 10:00"]})(now) == 26


def test_a_deeply_nested_array_is_made_text_without_recursion() -> None:
    deep: Any = []
    for _ in range(5000):
        deep = [deep]
    data = {"event": {"data": {"tags": deep}}}
    assert compile_rule({"cat": [{"var": "event.data.tags"}]})(data) == ""
    assert compile_rule({"cat": [[[], [1, [2, None]]], "!"]})(None) == ",1,2,!"
