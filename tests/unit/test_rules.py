"""The rule compiler: domain operators, compile errors with paths, evaluation
errors, and that a compiled rule does not go back to the rule or the compiler."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from chalicelib.rules import (
    OPERATORS,
    RuleError,
    RuleEvaluationError,
    anniversary_in_year,
    codegen,
    compile_rule,
    lint_rule,
    operators,
    rule_source,
    truthy,
    validate_rule,
)
from chalicelib.rules.dates import is_anniversary, years_since

NOW = "2026-03-01T03:00:00Z"  # still 28 February in New York (UTC-5)


def evaluate(rule: Any, data: Any = None, **fields: Any) -> Any:
    context = {"now": NOW, **fields} if data is None else data
    return compile_rule(rule)(context)


def op(name: str, *args: Any) -> Any:
    return evaluate({name: list(args)})


# ------------------------------------------------------------ domain operators


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-02-01", 28),
        ("2026-03-01", 0),
        ("2026-03-02", -1),
        ("2026-02-28T03:00:00Z", 1),
        ("2026-02-28T04:00:00Z", 0),  # 23 hours: not a whole day
        ("2026-02-28T04:00:00+01:00", 1),  # 03:00Z: the offset counts
        ("2026-02-27T12:00:00", 1),  # no offset: UTC
        (None, None),
        ("yesterday", None),
        ("2026-02-30", None),
        (20260201, None),
    ],
)
def test_days_since(value: Any, expected: Any) -> None:
    assert op("days_since", value) == expected


def test_days_until_is_the_opposite() -> None:
    assert op("days_until", "2026-03-31") == 30
    assert op("days_until", "2026-02-27") == -2
    assert op("days_until", "2026-03-02T03:00:00Z") == 1
    assert op("days_until", None) is None


@pytest.mark.parametrize(
    ("born", "now", "expected"),
    [
        ("2000-03-01", NOW, 26),
        ("2000-03-02", NOW, 25),
        ("1992-02-29", "2026-02-27T12:00:00Z", 33),
        ("1992-02-29", "2026-02-28T12:00:00Z", 34),  # celebrated on 28 February
        ("1992-02-29", "2028-02-28T12:00:00Z", 35),  # leap year: on the 29th
        ("1992-02-29", "2028-02-29T12:00:00Z", 36),
        ("2024-06-01T10:00:00Z", NOW, 1),
        (None, NOW, None),
    ],
)
def test_years_since(born: Any, now: str, expected: Any) -> None:
    assert evaluate({"years_since": [born]}, {"now": now}) == expected


@pytest.mark.parametrize(
    ("value", "zone", "now", "expected"),
    [
        ("1990-02-28", "America/New_York", NOW, True),  # local date is 28 Feb
        ("1990-02-28", "UTC", NOW, False),
        ("1990-02-28", None, NOW, False),
        ("1990-02-28", "Not/A_Zone", NOW, False),  # unknown zone: UTC
        ("1990-03-01", "Europe/Paris", NOW, True),
        ("1992-02-29", "America/New_York", NOW, True),  # common year: 28 Feb
        ("1992-02-29", "UTC", NOW, False),
        ("1992-02-29", "UTC", "2028-02-29T12:00:00Z", True),
        ("1992-02-29", "UTC", "2028-02-28T12:00:00Z", False),  # leap year: wait
        ("1992-02-28", "UTC", "2028-02-29T12:00:00Z", False),
        ("2026-03-01", "UTC", NOW, False),  # the day itself is not an anniversary
        ("2025-03-01", "UTC", NOW, True),
        ("2025-02-28T23:30:00Z", "America/New_York", NOW, True),  # 18:30 local
        ("2025-02-28T23:30:00Z", "Asia/Tokyo", NOW, True),  # 1 Mar 08:30 local
        ("2025-02-28T23:30:00Z", "UTC", NOW, False),
        ("2025-07-04T12:00:00Z", "Asia/Tokyo", NOW, False),
        (None, "UTC", NOW, None),
        ("not a date", "UTC", NOW, None),
    ],
)
def test_is_anniversary(value: Any, zone: Any, now: str, expected: Any) -> None:
    args = [value] if zone is None else [value, zone]
    assert evaluate({"is_anniversary": args}, {"now": now}) == expected


def test_is_anniversary_reads_dates_and_zone_from_the_context() -> None:
    rule = {"is_anniversary": [{"var": "customer.birthday"}, {"var": "customer.timezone"}]}
    customer = {"birthday": "1992-02-29", "timezone": "America/New_York"}
    assert evaluate(rule, customer=customer) is True
    assert evaluate(rule, customer={"timezone": "America/New_York"}) is None


def test_anniversary_in_year() -> None:
    assert anniversary_in_year(date(1992, 2, 29), 2027) == date(2027, 2, 28)
    assert anniversary_in_year(date(1992, 2, 29), 2028) == date(2028, 2, 29)
    assert anniversary_in_year(date(2000, 5, 17), 2030) == date(2030, 5, 17)


@pytest.mark.parametrize("born", [date(1992, 2, 29), date(1990, 2, 28), date(1985, 3, 1),
                                  date(2001, 12, 31), date(2003, 1, 1), date(2026, 6, 15)])
def test_date_operators_agree_with_anniversary_in_year(born: date) -> None:
    day = date(2026, 1, 1)
    while day < date(2029, 1, 1):
        context = {"now": f"{day.isoformat()}T12:00:00Z"}
        anniversary = anniversary_in_year(born, day.year)
        expected = anniversary == day and day.year > born.year
        assert is_anniversary(born.isoformat(), "UTC", context) is expected, day
        assert years_since(born.isoformat(), context) == (
            day.year - born.year - (day < anniversary)
        ), day
        day += timedelta(days=1)


def test_contains_any() -> None:
    assert op("contains_any", ["kitchen", "coffee"], ["coffee", "tea"]) is True
    assert op("contains_any", ["kitchen"], ["tea"]) is False
    assert op("contains_any", "tea", ["tea"]) is True
    assert op("contains_any", [], ["tea"]) is False
    assert op("contains_any", None, ["tea"]) is None
    assert op("contains_any", [[1]], [[1]]) is True  # unhashable items


def test_now_comes_from_the_context() -> None:
    rule = {"days_since": ["2026-01-01"]}
    assert evaluate(rule, {"now": "2026-01-11T00:00:00+00:00"}) == 10
    assert evaluate(rule, {"now": datetime(2026, 1, 21)}) == 20
    assert evaluate(rule, {"now": "2026-01-31"}) == 30
    today = date.today()
    assert evaluate(rule, {}) == (today - date(2026, 1, 1)).days  # no now: wall clock
    with pytest.raises(RuleEvaluationError) as caught:
        evaluate(rule, {"now": "soon"})
    assert caught.value.type == "Invalid Arguments"


def test_domain_operators_inside_iterators_use_the_root_now() -> None:
    rule = {"filter": [{"var": "orders"}, {"<": [{"days_since": [{"var": "at"}]}, 30]}]}
    orders = [{"at": "2026-02-20"}, {"at": "2025-12-01"}]
    assert evaluate(rule, orders=orders) == [{"at": "2026-02-20"}]


# ---------------------------------------------------------------- semantics


def test_truthy() -> None:
    assert [truthy(v) for v in ([], [0], "", "0", 0, 0.0, -1, None, {}, {"a": 1})] == [
        False, True, False, True, False, False, True, False, True, True,
    ]


@pytest.mark.parametrize(
    ("value", "expected"),
    [(5, True), (3, True), (2, False), ("5", True), (None, False), (True, False),
     (Decimal("3.5"), True), (4.5, True)],
)
def test_comparison_with_a_constant(value: Any, expected: bool) -> None:
    assert evaluate({">=": [{"var": "n"}, 3]}, {"n": value}) is expected


def test_comparison_of_a_missing_value_and_of_a_non_number() -> None:
    rule = {">=": [{"var": "n"}, 3]}
    assert evaluate(rule, {}) is False
    assert evaluate(rule, None) is False
    with pytest.raises(RuleEvaluationError) as caught:
        evaluate(rule, {"n": [1]})
    assert caught.value.type == "NaN"


@pytest.mark.parametrize(
    ("tier", "expected"), [("gold", True), ("silver", False), (None, False), ({}, None)]
)
def test_equality_with_a_string(tier: Any, expected: Any) -> None:
    rule = {"==": [{"var": "customer.tier"}, "gold"]}
    if expected is None:
        with pytest.raises(RuleEvaluationError):
            evaluate(rule, {"customer": {"tier": tier}})
    else:
        assert evaluate(rule, {"customer": {"tier": tier}}) is expected


def test_in_constant_list_and_empty_objects_are_truthy() -> None:
    rule = {"in": [{"var": "c"}, ["a", "b"]]}
    assert evaluate(rule, {"c": "a"}) is True
    assert evaluate(rule, {"c": ["a"]}) is False
    assert evaluate(rule, {"c": 1}) is False
    assert evaluate({"if": [{"var": "attrs"}, "yes", "no"]}, {"attrs": {}}) == "yes"
    assert evaluate({"and": [{"var": "attrs"}, 7]}, {"attrs": {}}) == 7
    assert evaluate({"!": [{"var": "attrs"}]}, {"attrs": {}}) is False


def test_decimal_values_count_as_numbers() -> None:
    assert evaluate({"+": [{"var": "spent"}, 1]}, {"spent": Decimal("150.5")}) == 151.5
    assert evaluate({"==": [{"var": "n"}, 2]}, {"n": Decimal(2)}) is True


def test_shared_lookups_follow_branches() -> None:
    """A lookup first made in a branch that did not run is made again later."""
    rule = {"and": [
        {"if": [{"var": "flag"}, {"var": "a.b"}, True]},
        {"==": [{"var": "a.b"}, 1]},
        {"or": [{"var": "flag"}, {"var": "a.c"}]},
        {"!=": [{"var": "a.c"}, 0]},
    ]}
    assert evaluate(rule, {"flag": False, "a": {"b": 1, "c": 2}}) is True
    assert evaluate(rule, {"flag": True, "a": {"b": 1, "c": 2}}) is True
    assert evaluate(rule, {"flag": True, "a": {"b": 2, "c": 2}}) is False


def test_prefix_and_full_lookups_are_not_confused() -> None:
    rule = {"==": [{"var": "b.tier"}, {"var": "b"}]}
    assert evaluate(rule, {}) is True  # null == null


def test_var_default_and_whole_context() -> None:
    assert evaluate({"var": ["a.b", 5]}, {"a": {}}) == 5
    assert evaluate({"var": ["a.b", 5]}, {"a": {"b": None}}) is None
    assert evaluate({"var": ["a.b", 5]}, {"a": None}) == 5
    assert evaluate({"var": "items.1.sku"}, {"items": [{"sku": "x"}, {"sku": "y"}]}) == "y"
    assert evaluate({"var": ""}, {"a": 1}) == {"a": 1}


def test_iterator_scopes() -> None:
    rule = {"map": [{"var": "xs"}, {"+": [{"val": []}, {"val": [[1], "index"]},
                                          {"val": [[2], "base"]}]}]}
    assert evaluate(rule, {"xs": [10, 20], "base": 100}) == [110, 121]
    rule = {"reduce": [{"var": "xs"}, {"+": [{"var": "current"}, {"var": "accumulator"}]}, 0]}
    assert evaluate(rule, {"xs": [1, 2, 3]}) == 6


# ------------------------------------------------------------- compile errors


def compile_error(rule: Any, path: str = "$") -> RuleError:
    with pytest.raises(RuleError) as caught:
        compile_rule(rule, path=path)
    return caught.value


def test_unknown_operator_has_its_path() -> None:
    error = compile_error({"and": [True, {"or": [{"foo": [1]}]}]}, "$.audience")
    assert error.path == "$.audience.and[1].or[0].foo"
    assert error.message == "unknown operator 'foo'"
    assert str(error) == "$.audience.and[1].or[0].foo: unknown operator 'foo'"
    assert error.type == "Unknown Operator"
    assert isinstance(error, ValueError)


@pytest.mark.parametrize(
    ("rule", "path", "message"),
    [
        ({"and": [True, {">=": [1]}]}, "$.audience.and[1]['>=']", "at least 2"),
        ({"==": 1}, "$.audience['==']", "array of arguments"),
        ({"in": ["a"]}, "$.audience.in", "takes 2 argument(s), got 1"),
        ({"!": [1, 2]}, "$.audience['!']", "takes 1 argument(s), got 2"),
        ({"days_since": []}, "$.audience.days_since", "got 0"),
        ({"is_anniversary": ["a", "b", "c"]}, "$.audience.is_anniversary", "1 to 2"),
        ({"%": [1]}, "$.audience['%']", "at least 2"),
        ({"-": []}, "$.audience['-']", "at least 1"),
        ({"if": 5}, "$.audience.if", "array of arguments"),
        ({"map": [{"var": "x"}, None]}, "$.audience.map[1]", "logic to apply"),
        ({"some": [None, True]}, "$.audience.some[0]", "needs an array"),
        ({"missing_some": [1]}, "$.audience.missing_some", "takes 2"),
    ],
)
def test_wrong_arity_has_its_path(rule: Any, path: str, message: str) -> None:
    error = compile_error(rule, "$.audience")
    assert error.path == path
    assert message in error.message
    assert error.type == "Invalid Arguments"


@pytest.mark.parametrize(
    ("rule", "path"),
    [
        ({"var": "a..b"}, "$.var"),
        ({"var": ".a"}, "$.var"),
        ({"var": ["a", 1, 2]}, "$.var"),
        ({"var": [True]}, "$.var[0]"),
        ({"var": -1}, "$.var"),
        ({"var": 1.5}, "$.var"),
        ({"var": {"a": 1, "b": 2}}, "$.var"),
        ({"val": [[1, 2], "a"]}, "$.val[0]"),
    ],
)
def test_malformed_var_paths(rule: Any, path: str) -> None:
    assert compile_error(rule).path == path


@pytest.mark.parametrize(
    ("rule", "path"),
    [
        ({"==": [{"var": "x"}, {1, 2}]}, "$['=='][1]"),
        ({"+": [float("nan"), 1]}, "$['+'][0]"),
        ({"preserve": {"a": object()}}, "$.preserve"),
        ({"var": "x", "default": 1}, "$"),
        ({"in": ["a", [1, (2, 3)]]}, "$.in[1][1]"),
    ],
)
def test_non_json_values(rule: Any, path: str) -> None:
    assert compile_error(rule).path == path


def test_deep_nesting_is_a_rule_error() -> None:
    rule: Any = True
    for _ in range(200):
        rule = {"!": [rule]}
    assert "nested deeper" in compile_error(rule).message


def test_validate_rule_lists_every_problem() -> None:
    assert validate_rule({"and": [{">=": [{"var": "a"}, 1]}]}) == []
    errors = validate_rule(
        {"and": [{"foo": 1}, {">": [1]}, {"var": "a..b"}]}, path="$.exit.rule"
    )
    assert [e.path for e in errors] == [
        "$.exit.rule.and[0].foo", "$.exit.rule.and[1]['>']", "$.exit.rule.and[2].var",
    ]


def test_operators_lists_standard_and_domain_operators() -> None:
    expected = {"var", "missing", "missing_some", "if", "?:", "==", "===", "!=", "!==", "!",
                "!!", "or", "and", ">", ">=", "<", "<=", "max", "min", "+", "-", "*", "/",
                "%", "map", "filter", "reduce", "all", "none", "some", "merge", "in", "cat",
                "substr", "log", "days_since", "days_until", "years_since",
                "is_anniversary", "contains_any", "val", "exists", "??", "throw", "try",
                "preserve"}
    assert expected <= OPERATORS


# ---------------------------------------------------------- evaluation errors


@pytest.mark.parametrize(
    ("rule", "data", "error_type"),
    [
        ({"throw": "boom"}, None, "boom"),
        ({"+": ["x", 1]}, None, "NaN"),
        ({"/": [{"var": "n"}, 0]}, {"n": 1}, "NaN"),
        ({"some": [{"var": "items"}, True]}, {}, "Invalid Arguments"),
    ],
)
def test_evaluation_errors(rule: Any, data: Any, error_type: str) -> None:
    with pytest.raises(RuleEvaluationError) as caught:
        compile_rule(rule)(data)
    assert caught.value.type == error_type
    assert str(caught.value).startswith(error_type)


def test_try_catches_evaluation_errors() -> None:
    rule = {"try": [{"/": [1, {"var": "n"}]}, {"cat": ["failed: ", {"var": "type"}]}]}
    assert evaluate(rule, {"n": 0}) == "failed: NaN"
    assert evaluate(rule, {"n": 4}) == 0.25


# -------------------------------------------------------------- no tree walk


def test_evaluation_does_not_walk_the_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    rule = {"and": [
        {">=": [{"var": "customer.order_count"}, 2]},
        {"in": [{"var": "customer.tier"}, ["gold", "platinum"]]},
        {">": [{"days_since": [{"var": "customer.last_order_at"}]}, 120]},
        {"some": [{"var": "event.items"}, {"==": [{"var": "category"}, "appliance"]}]},
    ]}
    compiled = compile_rule(rule)
    contexts = [
        {"customer": {"order_count": 3, "tier": "gold", "last_order_at": "2025-01-01"},
         "event": {"items": [{"category": "appliance"}]}, "now": NOW},
        # odd types take the fallback path: still no compiler involved
        {"customer": {"order_count": "3", "tier": "gold", "last_order_at": "2025-01-01"},
         "event": {"items": [{"category": "appliance"}]}, "now": NOW},
        {"customer": None, "now": NOW},
    ]
    expected = [compiled(ctx) for ctx in contexts]
    assert expected == [True, True, False]

    def fail(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the compiler ran during evaluation")

    monkeypatch.setattr(codegen.Compiler, "node", fail)
    monkeypatch.setattr(codegen, "build", fail)
    monkeypatch.setattr(operators, "EMITTERS", {})
    rule["and"].clear()  # the compiled function does not read the rule either
    assert [compiled(ctx) for ctx in contexts] == expected


def test_compiled_rule_is_one_generated_function() -> None:
    compiled = compile_rule({">=": [{"var": "customer.order_count"}, 2]})
    assert getattr(compiled, "__code__").co_name == "_rule"  # noqa: B009
    source = rule_source({"and": [{">=": [{"var": "customer.order_count"}, 2]},
                                  {"==": [{"var": "customer.tier"}, "gold"]}]})
    assert "data['customer']" in source  # lookups inlined, shared
    assert source.count("data['customer']") == 1


@pytest.mark.parametrize(("rule", "data", "expected"), [
    ({"==": [{"var": "customer.attributes.tier"}, "gold"]}, {"customer": {}}, False),
    ({"==": [{"var": "customer.attributes.tier"}, "gold"]}, {}, False),
    ({"var": ["customer.attributes.tier", "gold"]}, {"customer": {"id": "c"}}, "gold"),
    ({"missing": ["customer.attributes.tier"]}, {"customer": {}},
     ["customer.attributes.tier"]),
    ({"some": [{"var": "items"}, {"==": [{"var": "spec.kind"}, "x"]}]},
     {"items": [{"spec": {"kind": "y"}}, {}, {"spec": {"kind": "x"}}]}, True),
    ({"in": [{"var": "event.order.category"}, ["a", "b"]]}, {"customer": {}}, False),
    ({"var": ["event.order.total", 7]}, {"event": {}}, 7),
    ({"!": {"var": "a.b.c"}}, {"a": {"b": None}}, True),
])
def test_an_object_missing_on_the_way_to_a_value_gives_the_json_logic_answer(
    rule: Any, data: Any, expected: Any
) -> None:
    # The fast variant subscripts the context's own key (data['customer']) and
    # re-evaluates with the safe variant when it is missing (KeyError); it reads
    # deeper objects with .get, so an absent one costs no fallback.
    assert compile_rule(rule)(data) == expected


@pytest.mark.parametrize(("rule", "data"), [
    ({"==": [{"var": "customer.attributes.tier"}, "gold"]}, {"customer": {}}),
    ({"var": "customer.consent.email.granted"}, {"customer": {"consent": {}}}),
    ({"in": [{"var": "event.order.category"}, ["a", "b"]]}, {"customer": {}, "event": {}}),
])
def test_an_absent_object_below_the_context_key_costs_no_fallback(
    rule: Any, data: Any
) -> None:
    fast_only, safe = codegen.build_variants(rule)
    assert fast_only(data) == safe(data)  # answered without raising: no fallback


# ------------------------------------------------------- QA regressions


def test_integers_beyond_a_double_are_not_json() -> None:
    errors = validate_rule({"==": [{"var": "x"}, 10**400]}, path="$.audience")
    assert [str(e) for e in errors] == [
        "$.audience['=='][1]: integer too large for a JSON number"]
    with pytest.raises(RuleError):
        compile_rule({"==": [1, 10**5000]})  # no ValueError from int -> str


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ({"days_since": ["2026-02-30"]},
         ["$.days_since[0]: 'days_since' needs a date (YYYY-MM-DD or an ISO 8601 datetime), "
          "got the constant '2026-02-30'"]),
        ({"and": [{">": [{"years_since": "yesterday"}, 1]}]},
         ["$.and[0]['>'][0].years_since: 'years_since' needs a date (YYYY-MM-DD or an ISO 8601 "
          "datetime), got the constant 'yesterday'"]),
        ({"is_anniversary": [{"var": "customer.birthday"}, "Mars/Base"]},
         ["$.is_anniversary[1]: 'is_anniversary' needs an IANA timezone such as "
          "'Europe/Madrid', got 'Mars/Base'"]),
        ({"days_since": [{"var": "customer.last_order_at"}]}, []),
        ({"days_since": [None]}, []),
        ({"is_anniversary": ["1992-02-29", "UTC"]}, []),
        ({"is_anniversary": ["1992-02-29", {"var": "customer.timezone"}]}, []),
        ({"preserve": {"days_since": ["nope"]}}, []),
    ],
)
def test_lint_rule_finds_constants_the_date_operators_cannot_read(
        rule: Any, expected: list[str]) -> None:
    assert [str(e) for e in lint_rule(rule)] == expected
    assert validate_rule(rule) == []  # legal JSON Logic: null at run time, as documented
