"""Audit of the JSON Logic rule engine (``chalicelib/rules``).

Cases the other rule tests do not cover: the domain operators' documented examples
and edge cases (local midnight in far-off zones, leap days, odd date forms), compile
errors for every fixed-arity operator and for hostile rule shapes, that rules stay
data (no reach into Python internals, no code injection through the generated
source), and that evaluation only ever fails the documented way.

The defects the audit found were written as strict xfails and are fixed; their
tests now hold the fixes.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from chalicelib.config.compiled import _predicate
from chalicelib.config.loader import decode_json, parse_campaign
from chalicelib.rules import (
    RuleError,
    RuleEvaluationError,
    compile_rule,
    lint_rule,
    rule_source,
    validate_rule,
)
from chalicelib.rules.reads import event_data_reads, reads_clock

ROOT = Path(__file__).resolve().parents[2]
RULES_DOC = ROOT / "docs" / "rules.md"


def evaluate(rule: Any, data: Any) -> Any:
    return compile_rule(rule)(data)


def doc_example(operator: str) -> Any:
    """The first ```json block under the ``### `operator` `` heading of docs/rules.md."""
    text = RULES_DOC.read_text(encoding="utf-8")
    heading = text.index(f"### `{operator}`")
    match = re.compile(r"```json\n(.*?)\n```", re.S).search(text, heading)
    assert match is not None, operator
    return json.loads(match.group(1))


def doc_context() -> dict[str, Any]:
    """The evaluation context shown under "The evaluation context" in docs/rules.md."""
    text = RULES_DOC.read_text(encoding="utf-8")
    start = text.index("## The evaluation context")
    match = re.compile(r"```json\n(.*?)\n```", re.S).search(text, start)
    assert match is not None
    context: dict[str, Any] = json.loads(match.group(1))
    return context


# ----------------------------------------------------- documented examples


def test_documented_context_and_domain_examples_evaluate_as_described() -> None:
    context = doc_context()
    assert context["now"] == "2026-03-01T14:02:00Z"
    # Win-back: the last order (27 Feb) is 2 days old, not more than 120.
    assert evaluate(doc_example("days_since"), context) is False
    assert evaluate({"days_since": [{"var": "customer.last_order_at"}]}, context) == 2
    # Customers for two years or more: first order Nov 2025.
    assert evaluate(doc_example("years_since"), context) is False
    # 1992-02-29 in New York: 1 March 09:02 local, not an anniversary in 2026 ...
    assert evaluate(doc_example("is_anniversary"), context) is False
    # ... but 28 February local (a common year) is.
    context_28 = {**context, "now": "2026-03-01T04:59:00Z"}
    assert evaluate(doc_example("is_anniversary"), context_28) is True
    # Kitchen or coffee: the order is an appliance.
    assert evaluate(doc_example("contains_any"), context) is False
    context["event"]["order"]["categories"] = ["appliance", "coffee"]
    assert evaluate(doc_example("contains_any"), context) is True


@pytest.mark.parametrize(
    ("ends", "expected"),
    [
        ("2026-03-01", True),  # ends today
        ("2026-03-15", True),  # in 14 days
        ("2026-03-16", False),  # in 15 days
        ("2026-02-28", False),  # already ended
    ],
)
def test_documented_warranty_example_with_a_warranty_date(ends: str, expected: bool) -> None:
    context = {"customer": {"attributes": {"warranty_ends": ends}},
               "now": "2026-03-01T14:02:00Z"}
    assert evaluate(doc_example("days_until"), context) is expected


@pytest.mark.parametrize("attributes", [{}, {"warranty_ends": None},
                                        {"warranty_ends": "not a date"}])
def test_documented_warranty_example_excludes_customers_without_a_warranty(
        attributes: dict[str, Any]) -> None:
    context = {"customer": {"attributes": attributes}, "now": "2026-03-01T14:02:00Z"}
    assert not evaluate(doc_example("days_until"), context)


# ------------------------------------------------------- domain operators


ANNIVERSARY = {"is_anniversary": [{"var": "customer.birthday"}, {"var": "customer.timezone"}]}


@pytest.mark.parametrize(
    ("birthday", "zone", "now", "expected"),
    [
        # Auckland (UTC+12 in June): the local day starts at 12:00 UTC the day before.
        ("1990-06-15", "Pacific/Auckland", "2026-06-14T11:59:59Z", False),
        ("1990-06-15", "Pacific/Auckland", "2026-06-14T12:00:00Z", True),
        ("1990-06-15", "Pacific/Auckland", "2026-06-15T11:59:59Z", True),
        ("1990-06-15", "Pacific/Auckland", "2026-06-15T12:00:00Z", False),
        # Los Angeles (UTC-7 in June): the local day starts at 07:00 UTC.
        ("1990-06-15", "America/Los_Angeles", "2026-06-15T06:59:59Z", False),
        ("1990-06-15", "America/Los_Angeles", "2026-06-15T07:00:00Z", True),
        ("1990-06-15", "America/Los_Angeles", "2026-06-16T06:59:59Z", True),
        ("1990-06-15", "America/Los_Angeles", "2026-06-16T07:00:00Z", False),
        # 29 February in a common year: 28 February, local midnight to midnight.
        ("1992-02-29", "Pacific/Auckland", "2027-02-27T10:59:59Z", False),
        ("1992-02-29", "Pacific/Auckland", "2027-02-27T11:00:00Z", True),  # NZDT +13
        ("1992-02-29", "America/Los_Angeles", "2027-03-01T07:59:59Z", True),  # PST -8
        ("1992-02-29", "America/Los_Angeles", "2027-03-01T08:00:00Z", False),
        # ... and on the 29th in a leap year, not the 28th.
        ("1992-02-29", "America/Los_Angeles", "2028-02-29T07:59:00Z", False),
        ("1992-02-29", "America/Los_Angeles", "2028-02-29T08:00:00Z", True),
        # A purchase counts on its local date: 15 June 23:30 in LA is 16 June in UTC.
        ("2025-06-15T23:30:00-07:00", "America/Los_Angeles", "2026-06-15T20:00:00Z", True),
        ("2025-06-15T23:30:00-07:00", "America/Los_Angeles", "2026-06-16T20:00:00Z", False),
        # A purchase at 29 Feb 09:00 Auckland (28 Feb UTC) is celebrated there on 28 Feb.
        ("1992-02-28T20:00:00Z", "Pacific/Auckland", "2027-02-28T00:00:00Z", True),
        # A year-end purchase across the date line.
        ("1990-12-31T23:30:00Z", "Pacific/Auckland", "2026-01-01T05:00:00Z", True),
    ],
)
def test_is_anniversary_at_local_midnight(
        birthday: str, zone: str, now: str, expected: bool) -> None:
    context = {"customer": {"birthday": birthday, "timezone": zone}, "now": now}
    assert evaluate(ANNIVERSARY, context) is expected


@pytest.mark.parametrize("zone", [None, "", "Mars/Olympus", "../../etc/passwd", "/etc/localtime",
                                  "Europe/Pariss", 5, ["UTC"], {"a": 1}, "\x00", "a" * 5000])
def test_is_anniversary_without_a_usable_zone_uses_utc(zone: Any) -> None:
    customer = {"birthday": "1990-06-15", "timezone": zone}
    assert evaluate(ANNIVERSARY, {"customer": customer, "now": "2026-06-15T00:00:00Z"}) is True
    assert evaluate(ANNIVERSARY, {"customer": customer, "now": "2026-06-14T23:59:59Z"}) is False
    customer_no_zone = {"birthday": "1990-06-15"}
    assert evaluate(ANNIVERSARY, {"customer": customer_no_zone,
                                  "now": "2026-06-15T12:00:00Z"}) is True


@pytest.mark.parametrize(
    ("value", "since", "until"),
    [
        ("2026-02-28", 1, -1),  # a date: calendar days against today's UTC date
        ("2026-02-28T15:00:00Z", 0, -1),  # 23 hours: floor
        ("2026-02-28T15:00:00", 0, -1),  # no offset: UTC
        ("2026-02-28T15:00:00+05:00", 1, -2),  # 10:00Z: 1 day 4 hours
        ("2026-03-02", -1, 1),  # future: negative
        ("2026-03-01T14:02:01Z", -1, 0),  # one second ahead: floor of a negative
        (None, None, None),
        ("yesterday", None, None),
        ("2024-02-30", None, None),
        ("", None, None),
        (["2026-02-28"], None, None),
        ({"date": "2026-02-28"}, None, None),
    ],
)
def test_day_counts_of_every_date_form(value: Any, since: Any, until: Any) -> None:
    context = {"customer": {"d": value}, "now": "2026-03-01T14:02:00Z"}
    assert evaluate({"days_since": [{"var": "customer.d"}]}, context) == since
    assert evaluate({"days_until": [{"var": "customer.d"}]}, context) == until


def test_unreadable_dates_make_a_rule_false_without_raising() -> None:
    audience = _predicate({">": [{"days_since": [{"var": "customer.last_order_at"}]}, 120]},
                          "$.audience")
    assert audience is not None
    for value in (None, "yesterday", "2024-02-30", 20240101, [], {}):
        context = {"customer": {"last_order_at": value}, "now": "2026-03-01T00:00:00Z"}
        assert audience(context) is False
    assert audience({"customer": {"last_order_at": "2025-01-01"},
                     "now": "2026-03-01T00:00:00Z"}) is True


@pytest.mark.parametrize("now", ["2026-03-01T14:02:00Z", "2026-03-01T14:02:00+00:00",
                                 "2026-03-01T14:02:00", "2026-03-01T19:02:00+05:00"])
def test_now_with_or_without_offset_is_the_same_instant(now: str) -> None:
    rule = {"days_since": [{"var": "customer.d"}]}
    assert evaluate(rule, {"customer": {"d": "2026-02-28T15:00:00Z"}, "now": now}) == 0
    assert evaluate(rule, {"customer": {"d": "2026-02-28"}, "now": now}) == 1


@pytest.mark.parametrize("operator", ["days_since", "days_until"])
@pytest.mark.parametrize("value", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:00-01:00"])
def test_day_counts_of_a_datetime_outside_the_calendar_in_utc_are_null(
        operator: str, value: str) -> None:
    rule = {operator: [{"var": "customer.d"}]}
    assert evaluate(rule, {"customer": {"d": value}, "now": "2026-03-01T00:00:00Z"}) is None


# ------------------------------------------------------------ compile errors


def compile_error(rule: Any) -> RuleError:
    with pytest.raises(RuleError) as caught:
        compile_rule(rule, path="$.audience")
    assert [str(e) for e in validate_rule(rule, path="$.audience")] == [str(caught.value)]
    return caught.value


@pytest.mark.parametrize(
    ("rule", "path", "message"),
    [
        ({"!!": [1, 2]}, "$.audience['!!']", "'!!' takes 1 argument(s), got 2"),
        ({"<": [1]}, "$.audience['<']", "'<' takes at least 2 argument(s), got 1"),
        ({"===": []}, "$.audience['===']", "'===' takes at least 2 argument(s), got 0"),
        ({"in": [1, 2, 3]}, "$.audience.in", "'in' takes 2 argument(s), got 3"),
        ({"substr": []}, "$.audience.substr", "'substr' takes 1 to 3 argument(s), got 0"),
        ({"substr": ["a", 1, 2, 3]}, "$.audience.substr", "1 to 3 argument(s), got 4"),
        ({"map": [[1], 1, 2]}, "$.audience.map", "'map' takes 2 argument(s), got 3"),
        ({"reduce": [[1]]}, "$.audience.reduce", "2 to 3 argument(s), got 1"),
        ({"all": [[1]]}, "$.audience.all", "'all' takes 2 argument(s), got 1"),
        ({"years_since": []}, "$.audience.years_since", "takes 1 argument(s), got 0"),
        ({"days_until": ["2026-01-01", "UTC"]}, "$.audience.days_until", "got 2"),
        ({"contains_any": [["a"]]}, "$.audience.contains_any", "takes 2 argument(s), got 1"),
        ({"contains_any": "a"}, "$.audience.contains_any", "takes an array of arguments"),
        ({"throw": []}, "$.audience.throw", "'throw' takes 1 argument(s), got 0"),
        ({"log": [1, 2]}, "$.audience.log", "'log' takes 1 argument(s), got 2"),
        ({"missing_some": [1, ["a"], 2]}, "$.audience.missing_some", "takes 2 argument(s)"),
        ({"or": {"var": "customer.a"}}, "$.audience.or", "takes an array of arguments"),
        ({"/": []}, "$.audience['/']", "at least 1 argument(s), got 0"),
    ],
)
def test_wrong_arity_of_each_fixed_arity_operator(rule: Any, path: str, message: str) -> None:
    error = compile_error(rule)
    assert error.path == path
    assert message in error.message


def test_an_unknown_operator_deep_inside_is_named_with_its_path() -> None:
    rule = {"and": [True, {"or": [{"!": [{"if": [
        {"var": "customer.a"},
        {"some": [{"var": "customer.orders"}, {"frobnicate": [1]}]},
    ]}]}]}]}
    error = compile_error(rule)
    assert error.path == "$.audience.and[1].or[0]['!'][0].if[1].some[1].frobnicate"
    assert error.message == "unknown operator 'frobnicate'"


@pytest.mark.parametrize(
    ("rule", "path", "message"),
    [
        ({"and": [{"==": [1, 1], "!=": [1, 2]}]}, "$.audience.and[0]",
         "an operation has exactly one key"),
        ({"==": [{"var": "customer.a", "default": 1}, 1]}, "$.audience['=='][0]",
         "an operation has exactly one key"),
        ({"!": {1: True}}, "$.audience['!']", "object key 1 is not a string"),
        ({"and": [{"": []}]}, "$.audience.and[0]['']", "unknown operator ''"),
        ({"and": [{"a\nb": 1}]}, "$.audience.and[0]['a\\nb']", "unknown operator"),
    ],
)
def test_malformed_operations_are_named_with_their_path(
        rule: Any, path: str, message: str) -> None:
    error = compile_error(rule)
    assert error.path == path
    assert message in error.message
    assert "\n" not in str(error)  # one line per problem


@pytest.mark.parametrize("depth", [65, 5000, 50_000])
@pytest.mark.parametrize("wrap", ["and", "!", "list"])
def test_deeply_nested_rules_are_one_clear_error(depth: int, wrap: str) -> None:
    rule: Any = True
    for _ in range(depth):
        rule = {"and": [rule]} if wrap == "and" else {"!": rule} if wrap == "!" else [rule]
    if wrap == "list":
        rule = {"==": [rule, 1]}
    error = compile_error(rule)
    assert "nested deeper than 64 levels" in error.message
    # The static analyses the engine runs on every rule do not recurse either.
    lint_rule(rule)
    event_data_reads(rule)
    reads_clock(rule)


def test_a_deep_rule_in_a_campaign_file_is_one_problem_of_that_file() -> None:
    campaign = {"id": "x", "name": "X", "trigger": {"event": "order.delivered"},
                "steps": [{"id": "s1", "after": "P2D", "channel": "sms",
                           "template": "checkin"}],
                "audience": "DEEP"}
    for depth in (100, 400, 5000):
        text = json.dumps(campaign).replace('"DEEP"', '{"!": ' * depth + "true" + "}" * depth)
        raw, problems = decode_json("campaigns/deep.json", text.encode())
        if raw is not None:
            _, problems = parse_campaign("campaigns/deep.json", raw)
        assert len(problems) == 1, problems
        assert problems[0].file == "campaigns/deep.json"
        assert "nested" in problems[0].message


@pytest.mark.parametrize("rule", [{"var": 10**400}, {"val": ["customer", 10**400]},
                                  {"var": 10**5000}, {"val": [10**5000]}])
def test_a_path_index_beyond_a_double_is_a_compile_error(rule: Any) -> None:
    errors = validate_rule(rule, path="$.audience")
    assert len(errors) == 1
    assert "integer too large" in errors[0].message


# --------------------------------------------------------------- JSON Logic


@pytest.mark.parametrize(
    ("rule", "data", "expected"),
    [
        ({"var": "customer.orders.1.total"}, {"customer": {"orders": [{"total": 1},
                                                                      {"total": 2.5}]}}, 2.5),
        ({"var": ["customer.orders.5.total", 7]}, {"customer": {"orders": []}}, 7),
        ({"var": ["customer.n", 9]}, {"customer": {"n": 0}}, 0),  # present 0: no default
        ({"var": ["customer.x.y", 5]}, {"customer": {"x": None}}, 5),
        ({"missing": ["customer.a", "customer.b"]}, {"customer": {"a": "", "b": 0}},
         ["customer.a"]),
        ({"missing_some": [1, ["customer.a", "customer.b"]]}, {"customer": {"b": 1}}, []),
        ({"if": [{"var": "customer.zero"}, "y", "n"]}, {"customer": {"zero": "0"}}, "y"),
        ({"!!": [{"var": "customer.attributes"}]}, {"customer": {"attributes": {}}}, True),
        ({"!!": [{"var": "customer.products"}]}, {"customer": {"products": []}}, False),
        ({"in": [1, "a1"]}, None, True),
        ({"all": [[], True]}, None, False),
        ({"some": [[], True]}, None, False),
        ({"none": [[], True]}, None, True),
        ({"reduce": [[], {"+": [{"var": "current"}, {"var": "accumulator"}]}, 0]}, None, 0),
        ({"map": [{"var": "customer.none"}, 1]}, {"customer": {}}, []),
        ({"cat": [1.0, " ", 0.1, " ", 1e21, " ", 1e-7]}, None, "1 0.1 1e+21 1e-7"),
        ({"cat": [{"+": [0.1, 0.2]}]}, None, "0.30000000000000004"),
        ({"max": []}, None, None),
        ({"min": []}, None, None),
        ({"+": ["1", "2"]}, None, 3),
        ({"%": [-7, 3]}, None, -1),
    ],
)
def test_reference_behaviour_segment_rules_rely_on(rule: Any, data: Any, expected: Any) -> None:
    assert evaluate(rule, data) == expected


@pytest.mark.parametrize("rule", [{"/": [{"var": "n"}, 0]}, {"%": [{"var": "n"}, 0]}])
def test_division_by_zero_is_an_evaluation_error(rule: Any) -> None:
    with pytest.raises(RuleEvaluationError):
        evaluate(rule, {"n": 1})


@pytest.mark.parametrize(
    ("value", "text"),
    [(2.0**60, "1152921504606847000"), (1.2345678901234568e20, "123456789012345680000"),
     (1.2345678901234567e19, "12345678901234567000")],
)
def test_cat_prints_large_floats_as_javascript(value: float, text: str) -> None:
    assert evaluate({"cat": [{"var": "n"}]}, {"n": value}) == text


def test_var_index_with_leading_zeros_is_not_an_index() -> None:
    data = {"customer": {"orders": [{"total": 1}, {"total": 2}]}}
    assert evaluate({"var": "customer.orders.01.total"}, data) is None


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        # docs/rules.md: a Decimal counts as the double it stands for in arithmetic
        # and in `in`; ordering and `===` against a float literal are exact (the doc
        # says to convert such data with float() first).
        ({"in": [{"var": "customer.total_spent"}, [19.99, 5]]}, True),
        ({"in": [{"var": "customer.total_spent"}, [19.98, 5]]}, False),
        ({"==": [{"+": [{"var": "customer.total_spent"}, 0.01]}, 20.0]}, True),
    ],
)
def test_decimal_numbers_in_arithmetic_and_membership(rule: Any, expected: bool) -> None:
    assert evaluate(rule, {"customer": {"total_spent": Decimal("19.99")}}) is expected


def test_repeated_multiplication_overflows_to_infinity_quickly() -> None:
    rule = {"reduce": [[0] * 64, {"*": [{"var": "accumulator"}, {"var": "accumulator"}]}, 3]}
    script = (
        "import json, sys\n"
        "from chalicelib.rules import compile_rule\n"
        "print(compile_rule(json.loads(sys.argv[1]))({}))\n"
    )
    try:
        done = subprocess.run([sys.executable, "-c", script, json.dumps(rule)], cwd=ROOT,
                              capture_output=True, text=True, timeout=15)
    except subprocess.TimeoutExpired:
        pytest.fail("evaluation still running after 15 s")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "inf"


# ------------------------------------------------------------------- safety


@pytest.mark.parametrize("path", ["__class__", "customer.__class__", "customer.__dict__",
                                  "__globals__", "__builtins__", "customer.get",
                                  "customer.keys", "customer.name.__len__", "customer.name.upper",
                                  "customer.n.real", "_E", "data", "customer.name.0"])
def test_paths_do_not_reach_python_attributes(path: str) -> None:
    data = {"customer": {"name": "Ann", "n": 3}, "now": "2026-03-01T00:00:00Z"}
    assert evaluate({"var": path}, data) is None
    assert evaluate({"val": path.split(".")}, data) is None
    assert evaluate({"exists": path.split(".")}, data) is False
    assert evaluate({"missing": [path]}, data) == [path]
    assert evaluate({"var": [{"cat": [path]}, "d"]}, data) == "d"


PAYLOADS = [
    "'", '"', "\\", "\n", "\r", "\u2028", "\u2029", "\x00", "\x85", "\ufeff",
    "')+__import__('builtins').exec('raise SystemExit(7)')+('",
    '"+__import__("builtins").exec("raise SystemExit(7)")+"',
    "\\'); raise SystemExit(7) #", "a\\\nraise SystemExit(7)", "\0_v1\0", "{0}%s}}{{",
]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_strings_in_rules_are_data_not_code(payload: str) -> None:
    customer = {"name": payload, payload: 42}
    data = {"customer": customer, "now": "2026-03-01T00:00:00Z"}
    assert evaluate({"==": [{"var": "customer.name"}, payload]}, data) is True
    assert evaluate({"===": [payload, {"var": "customer.name"}]}, data) is True
    assert evaluate({"cat": [payload, {"var": "customer.name"}]}, data) == payload * 2
    assert evaluate({"in": [{"var": "customer.name"}, [payload, "x"]]}, data) is True
    assert evaluate({"preserve": {payload: [payload]}}, data) == {payload: [payload]}
    assert evaluate({"val": ["customer", payload]}, data) == 42
    assert evaluate({"var": ["customer.nothing", payload]}, data) == payload
    if "." not in payload:
        assert evaluate({"var": f"customer.{payload}"}, data) == 42
    assert evaluate({"is_anniversary": ["2000-03-01", payload]}, data) is True  # UTC
    error = compile_error({"and": [{payload: [1]}]})
    assert error.message == f"unknown operator {payload!r}"
    assert "\n" not in str(error) and "\u2028" not in str(error)


def test_generated_source_holds_strings_only_as_literals() -> None:
    payload = "'); raise SystemExit(7); ('"
    rule = {"==": [{"var": f"customer.{payload}"}, payload]}
    source = rule_source(rule)
    compile(source, "<rule>", "exec")  # still valid Python
    # Every occurrence of the text is inside a repr()-escaped literal.
    assert payload not in source.replace(repr(payload), "").replace(repr((payload,)), "")
    assert evaluate(rule, {"customer": {payload: payload}}) is True


# --------------------------------------------------------------- evaluation


RULES = [
    {">": [{"days_since": [{"var": "customer.last_order_at"}]}, 120]},
    {"<=": [0, {"days_until": [{"var": "customer.attributes.warranty_ends"}]}, 14]},
    {">=": [{"years_since": [{"var": "customer.birthday"}]}, 18]},
    ANNIVERSARY,
    {"contains_any": [{"var": "event.order.categories"}, {"var": "customer.products"}]},
    {"and": [{">=": [{"var": "customer.order_count"}, 1]},
             {"in": [{"var": "customer.attributes.tier"}, ["gold", "platinum"]]}]},
    {"some": [{"var": "event.order.items"}, {"==": [{"var": "category"}, "appliance"]}]},
    {"<": [{"var": "customer.total_spent"}, {"var": "event.order.total"}]},
    {"max": {"var": "customer.products"}},
    {"var": "customer.orders.0.total"},
]
ODD_VALUES: list[Any] = [
    None, True, 0, -1, 1.5, 10**30, Decimal("1.5"), Decimal("NaN"), "", "abc", "5",
    "2024-02-29", "2024-02-29T12:00:00+14:00", "Pacific/Auckland", [], [1, "a"], [[1]], {},
    {"a": 1}, [None], float("inf"), "١٢", "0x1F",
]
ODD_CONTEXTS: list[Any] = [
    None, 5, "customer", [], {}, {"customer": None}, {"customer": [], "event": None},
    {"customer": "abc", "event": 5}, {"event": {"order": None}},
    {"customer": {"attributes": None}}, {"now": None}, {"customer": {}, "now": "bad"},
]


@pytest.mark.parametrize("rule", RULES, ids=range(len(RULES)))
def test_evaluation_fails_only_the_documented_way(rule: Any) -> None:
    compiled = compile_rule(rule)
    predicate = _predicate(rule, "$.audience")
    assert predicate is not None
    contexts = list(ODD_CONTEXTS)
    for value in ODD_VALUES:
        fields = ("last_order_at", "birthday", "timezone", "order_count", "total_spent",
                  "attributes", "products", "orders")
        contexts.append({"customer": dict.fromkeys(fields, value),
                         "event": {"order": {"categories": value, "items": value,
                                             "total": value}},
                         "now": "2026-03-01T14:02:00Z"})
    for context in contexts:
        with contextlib.suppress(RuleEvaluationError):
            compiled(context)
        assert predicate(context) in (True, False)


def test_math_inf_is_not_a_rule_constant() -> None:
    assert "not a JSON number" in compile_error({"==": [{"var": "customer.n"}, math.inf]}).message
