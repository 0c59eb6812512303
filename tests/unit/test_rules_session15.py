"""A differential fuzz of the rule engine (session 15): the fast code and the safe
code of a rule agree, and a rule that passed validation raises nothing but
``RuleEvaluationError``, whatever the data.

Each case failed before: an integer past a double's range added to a float raised
OverflowError from the fast code; a path index of 4,301 digits raised ValueError; a
bad ``now`` whose text Python cannot make raised from the error message itself;
``{"+": [-0.0]}`` kept the sign in the fast code; ``days_since`` read an ISO week
date that every other date operator (and lint) refuses; lint recursed into a
constant nested 3,000 deep.
"""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib.rules import compile_rule, lint_rule, validate_rule
from chalicelib.rules.codegen import build_variants
from chalicelib.rules.errors import RuleEvaluationError

HUGE = 2**1024 - 1  # past a double's range
NOW = "2026-03-01T00:00:00Z"


def _variants(rule: Any) -> tuple[Any, Any, Any]:
    """(the rule as the engine calls it, its fast code alone, its safe code)."""
    fast, safe = build_variants(rule)
    return compile_rule(rule), fast, safe


@pytest.mark.parametrize(("rule", "data", "expected"), [
    ({"+": [{"+": {"merge": [10**308, 10**308]}}, 0.5]}, {}, float("inf")),
    ({"-": [{"*": [HUGE]}, 0.5]}, {}, float("inf")),
    ({"-": [{"var": {"cat": ["customer.x"]}}, 0.5]}, {"customer": {"x": HUGE}}, float("inf")),
    ({"+": [{"var": "customer.x"}, 1.5]}, {"customer": {"x": HUGE}}, float("inf")),
    ({"-": [{"var": "customer.a"}, {"var": "customer.b"}]},
     {"customer": {"a": 5, "b": 2}}, 3),
])
def test_huge_integers_added_to_floats(rule: Any, data: dict[str, Any], expected: Any) -> None:
    assert validate_rule(rule) == [] and lint_rule(rule) == []
    rule_fn, _, safe = _variants(rule)
    assert rule_fn(data) == safe(data) == expected
    assert type(rule_fn(data)) is type(expected)


@pytest.mark.parametrize(("rule", "data"), [
    ({"+": [-0.0]}, {}),
    ({"+": [{"var": "customer.x"}]}, {"customer": {"x": -0.0}}),
])
def test_one_argument_plus_adds_from_zero(rule: Any, data: dict[str, Any]) -> None:
    rule_fn, fast, safe = _variants(rule)
    for fn in (rule_fn, fast, safe):
        result = fn(data)  # 0 + -0.0 is 0.0, as JSON Logic adds from 0
        assert result == 0 and str(result) == "0.0"  # not -0.0


@pytest.mark.parametrize("op", ["var", "val"])
def test_a_path_index_of_thousands_of_digits_is_missing(op: str) -> None:
    index = "1" * 4301
    rule = ({"var": f"customer.xs.{index}"} if op == "var"
            else {"val": ["customer", "xs", index]})
    assert compile_rule(rule)({"customer": {"xs": [1, 2]}}) is None
    assert compile_rule({"missing": [f"customer.xs.{index}"]})(
        {"customer": {"xs": [1, 2]}}) == [f"customer.xs.{index}"]
    # A long index that fits is still read.
    assert compile_rule({"var": "customer.xs.1"})({"customer": {"xs": [1, 2]}}) == 2


@pytest.mark.parametrize("now", [10**5000, "x" * 1000, [[[[]]]]], ids=["digits", "long", "list"])
def test_a_bad_now_is_a_rule_error_with_a_short_message(now: Any) -> None:
    deep: Any = []
    for _ in range(5000):
        deep = [deep]
    for value in (now, deep):
        with pytest.raises(RuleEvaluationError) as caught:
            compile_rule({"days_since": ["2026-01-01"]})({"now": value})
        assert len(str(caught.value)) < 200


@pytest.mark.parametrize("op", ["days_since", "days_until", "years_since"])
def test_a_week_date_is_no_date_for_any_date_operator(op: str) -> None:
    rule = {op: [{"var": "customer.d"}]}
    assert compile_rule(rule)({"now": NOW, "customer": {"d": "2026-W09-1"}}) is None
    assert compile_rule(rule)({"now": NOW, "customer": {"d": "2026-02-22"}}) is not None
    assert any("needs a date" in e.message for e in lint_rule({op: ["2026-W09-1"]}))


def test_lint_of_a_constant_nested_thousands_deep() -> None:
    deep: Any = "x"
    for _ in range(3000):
        deep = [deep]
    problems = lint_rule({"days_since": [deep]})
    assert [p.path for p in problems] == ["$.days_since[0]"]
    # Python 3.11's json refuses this depth ("list too large to show"); 3.13's shows
    # its start: either way one short line, and no RecursionError.
    message = problems[0].message
    assert message.startswith("'days_since' needs a date") and len(message) < 200
    assert "list too large to show" in message or message.endswith("[[...")
