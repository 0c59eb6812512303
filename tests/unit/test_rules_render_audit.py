"""Regression tests from an adversarial audit of rules, templates and campaign config.

Each test pins one defect that was found and fixed: odd customer data that made a
rule raise something other than ``RuleEvaluationError`` (failing the whole event),
inputs that made a regular expression take seconds, template format strings whose
size estimate missed their widths, and validation that passed what loading refused.
"""

from __future__ import annotations

import copy
import json
import math
import time
from datetime import timedelta
from typing import Any

import pytest

from chalicelib.config.durations import DurationError, parse_duration
from chalicelib.config.loader import parse_campaign
from chalicelib.render import SAMPLE_CONTEXT, Renderer, RenderError
from chalicelib.render.htmltext import html_to_text
from chalicelib.render.limits import check_printf
from chalicelib.render.sms import tidy_sms_body
from chalicelib.rules import RuleEvaluationError, compile_rule, validate_rule
from tests.conftest import ROOT

NOW = "2026-03-01T14:00:00Z"


def evaluate(rule: Any, **data: Any) -> Any:
    return compile_rule(rule)({"now": NOW, **data})


def render_sms(source: str) -> str:
    return Renderer({"t.sms.j2": source}).render_sms("t", copy.deepcopy(SAMPLE_CONTEXT)).body


def sms_failure(source: str) -> RenderError:
    with pytest.raises(RenderError) as info:
        render_sms(source)
    return info.value


# ------------------------------------------------------------------------ rules


def test_a_long_text_of_digits_compared_with_a_number_fails_fast() -> None:
    # The decimal pattern was ambiguous (digits before and after an optional point):
    # 20,000 digits and a letter took seconds per evaluation, 40,000 half a minute.
    code = "1" * 30_000 + "x"
    rule = {"==": [{"var": "customer.attributes.code"}, 5]}
    started = time.monotonic()
    with pytest.raises(RuleEvaluationError):
        evaluate(rule, customer={"attributes": {"code": code}})
    assert time.monotonic() - started < 1


@pytest.mark.parametrize(
    ("rule", "data", "expected"),
    [
        # An integer beyond a double's range met a float: OverflowError.
        ({"+": [{"var": "n"}, 0.5]}, {"n": 10**400}, math.inf),
        ({"-": [0.5, {"var": "n"}]}, {"n": 10**400}, -math.inf),
        ({"*": [{"var": "n"}, 1.5]}, {"n": 10**400}, math.inf),
        ({"/": [{"var": "n"}, 1]}, {"n": 10**400}, math.inf),
        # A numeric text with more digits than Python converts: ValueError.
        ({"<": [1, {"var": "s"}]}, {"s": "9" * 5000}, True),
        ({"+": [{"var": "s"}, 1]}, {"s": "9" * 5000}, math.inf),
        # substr of a huge or NaN position: OverflowError / ValueError.
        ({"substr": ["abc", {"var": "n"}]}, {"n": 10**400}, ""),
        ({"substr": ["abc", {"var": "n"}]}, {"n": float("nan")}, "abc"),
    ],
)
def test_arithmetic_on_huge_numbers_answers_as_javascript(
    rule: Any, data: dict[str, Any], expected: Any
) -> None:
    assert evaluate(rule, **data) == expected


def test_modulo_of_infinity_is_a_rule_error_not_a_crash() -> None:
    # math.fmod(inf, 2) raised ValueError out of the rule.
    with pytest.raises(RuleEvaluationError) as info:
        evaluate({"%": ["Infinity", 2]})
    assert info.value.type == "NaN"
    assert evaluate({"%": [5, "Infinity"]}) == 5  # as in JavaScript


@pytest.mark.parametrize(
    ("rule", "data", "now"),
    [
        # A datetime whose UTC date is year 0 (OverflowError in astimezone).
        ({"years_since": [{"var": "d"}]}, {"d": "0001-01-01T00:00:00+01:00"}, NOW),
        ({"is_anniversary": [{"var": "d"}]}, {"d": "0001-01-01T00:00:00+01:00"}, NOW),
        ({"years_since": [{"var": "d"}]}, {"d": "9999-12-31T23:59:00-01:00"}, NOW),
        # Its UTC date is fine, its local date in Kiritimati (UTC+14) is year 10000.
        ({"is_anniversary": [{"var": "d"}, "Pacific/Kiritimati"]},
         {"d": "9999-12-31T20:00:00Z"}, "2026-12-31T12:00:00Z"),
    ],
)
def test_date_operators_on_dates_that_leave_the_calendar_are_null(
    rule: Any, data: dict[str, Any], now: str
) -> None:
    assert compile_rule(rule)({"now": now, **data}) is None


def test_a_now_outside_the_calendar_is_a_rule_error() -> None:
    rule = {"is_anniversary": [{"var": "d"}, "Pacific/Kiritimati"]}
    for now in ("0001-01-01T00:00:00+01:00", "9999-12-31T23:00:00Z"):
        with pytest.raises(RuleEvaluationError):
            compile_rule(rule)({"now": now, "d": "2000-01-01"})


@pytest.mark.parametrize(
    ("left", "right", "expected"),
    [
        ([True], [1], False),  # Python's 1 == True made these share an element
        ([0], [False], False),
        (["1"], [1], False),
        ([1], [1.0], True),
        ([1, True], [True], True),
        (["kitchen", "garden"], ["garden"], True),
        ([{"a": 1}], [{"a": 1}], True),
    ],
)
def test_contains_any_compares_elements_strictly_as_in_does(
    left: list[Any], right: list[Any], expected: bool
) -> None:
    rule = {"contains_any": [{"var": "left"}, {"var": "right"}]}
    assert evaluate(rule, left=left, right=right) is expected


def test_validation_reports_a_rule_too_long_to_compile() -> None:
    # Every node is fine, but Python cannot compile 10,000 nested conditionals:
    # validate_rule said nothing and loading the campaign then raised RuleError.
    rule = {"or": [{"var": "customer.attributes.tier"}] * 10_000}
    errors = validate_rule(rule, path="$.audience")
    assert [(e.path, e.message.split(":")[0]) for e in errors] == [
        ("$.audience", "rule too complex to compile")]


def test_aftercare_validate_lists_a_rule_too_long_to_compile() -> None:
    raw = json.loads((ROOT / "campaigns" / "delivery-checkin.json").read_text())
    raw["audience"] = {"or": [{"var": "customer.attributes.tier"}] * 10_000}
    campaign, problems = parse_campaign("big.json", raw)
    assert campaign is None
    assert [(p.path, p.message.startswith("rule too complex")) for p in problems] == [
        ("$.audience", True)]


def test_too_many_operands_says_at_most() -> None:
    # Was "'+' takes at least 0 argument(s), got 1000".
    (error,) = validate_rule({"+": [1] * 1000})
    assert error.message == "'+' takes at most 999 argument(s), got 1000"
    (error,) = validate_rule({"<": [1]})
    assert error.message == "'<' takes at least 2 argument(s), got 1"


# -------------------------------------------------------------------- durations


def test_a_duration_with_a_trailing_newline_is_refused_as_the_schema_does() -> None:
    # Python's `$` matched before a final newline; the schema's pattern does not.
    with pytest.raises(DurationError):
        parse_duration("P2D\n")
    raw = json.loads((ROOT / "campaigns" / "delivery-checkin.json").read_text())
    raw["steps"][0]["after"] = "P2D\n"
    campaign, problems = parse_campaign("nl.json", raw)
    assert campaign is None and [p.path for p in problems] == ["$.steps[0].after"]


def test_leading_zeros_do_not_make_a_duration_too_long() -> None:
    assert parse_duration("P00000000000001D") == timedelta(days=1)
    assert parse_duration("P" + "0" * 5000 + "2D") == timedelta(days=2)


# -------------------------------------------------------------------- templates


def test_sms_tidying_is_linear_in_a_run_of_spaces() -> None:
    # `[ \t]+\n` retried every start of a run: 100,000 spaces took about 8 seconds.
    started = time.monotonic()
    assert tidy_sms_body("a" + " " * 100_000 + "b \nc") == "a" + " " * 100_000 + "b\nc"
    assert render_sms("{{ ' ' * 99999 }}x") == "x"
    assert time.monotonic() - started < 1


def test_a_printf_width_after_a_key_with_parentheses_is_checked() -> None:
    # The key pattern stopped at the first `)`, so this field's width went unchecked
    # (999999999 built a gigabyte before the size check).
    error = sms_failure("{{ '%(a(b))200000s' % {'a(b)': 'x'} }}")
    assert error.message == "not allowed: format width 200000 is too large (at most 100,000)"
    error = sms_failure("{{ '%(a(b))200000s'|format(**{'a(b)': 'x'}) }}")
    assert "format width 200000 is too large" in error.message


@pytest.mark.parametrize(
    "source",
    [
        "{% set f = '%(a)99999s' * 20 %}{{ f % {'a': 1} }}",
        "{% set f = '%.99999f' * 20 %}{{ f|format(*((1,) * 20)) }}",
        "{% set f = '{0:>99999}' * 20 %}{{ f.format(1) }}",
    ],
)
def test_format_estimates_count_widths_and_precisions(source: str) -> None:
    # Each field was estimated at the size of the arguments, not its width: 9,000
    # `{0:>99999}` fields built 900 million characters before the size check.
    error = sms_failure(source)
    assert error.message.startswith("not allowed: this format would build a value too large")


def test_printf_check_is_linear_for_unclosed_keys() -> None:
    started = time.monotonic()
    check_printf("%(" * 200_000, 1)  # Python refuses it itself: incomplete format key
    error = sms_failure("{% set f = '%(' * 50000 %}{{ (f ~ f)|format(a=1) }}")
    assert "incomplete format key" in error.message
    assert time.monotonic() - started < 1


def test_an_unknown_marked_section_does_not_crash_the_text_part() -> None:
    # HTMLParser raised AssertionError, which escaped render_email (not a RenderError).
    assert html_to_text("<p>Hi</p><![foo[x]]><p>there</p>") == "Hi\n\nthere"
    templates = {"t.email.j2": "{% block subject %}S{% endblock %}"
                               "{% block html %}<p>Hi</p><![ x{% endblock %}"}
    email = Renderer(templates).render_email("t", copy.deepcopy(SAMPLE_CONTEXT))
    assert email.text.startswith("Hi")


def test_nested_links_in_the_html_part_are_linear() -> None:
    # Each closing tag joined every nested label: 16,000 nested links took 4.6 s.
    html = '<a href="x">y' * 16_000 + "</a>" * 16_000
    started = time.monotonic()
    text = html_to_text(html)
    assert time.monotonic() - started < 1
    assert text.startswith("y (x)y (x)")


def test_money_formats_every_amount_under_ten_to_the_thirty() -> None:
    # Babel rounds in a 28-digit decimal context: 10^26 and up failed with a bare
    # "InvalidOperation", and 10^30 itself passed the "under 10^30" check.
    context = copy.deepcopy(SAMPLE_CONTEXT)
    context["order"]["total"] = "9.99e29"
    body = Renderer({"t.sms.j2": "{{ order.total|money('USD') }}"}).render_sms("t", context).body
    assert body == "$999,000,000,000,000,000,000,000,000,000.00"
    context["order"]["total"] = "1e30"
    with pytest.raises(RenderError) as info:
        Renderer({"t.sms.j2": "{{ order.total|money('USD') }}"}).render_sms("t", context)
    assert "finite amount under 10^30" in info.value.message


# ------------------------------------------------------------------ campaign model


def test_a_local_time_with_another_scripts_digit_is_refused() -> None:
    # pydantic's \d took "1\u0660:00" (an Arabic-Indic zero), which the schema refuses
    # and time.fromisoformat cannot read: validate crashed compiling the campaign.
    raw = json.loads((ROOT / "campaigns" / "delivery-checkin.json").read_text())
    raw["steps"][0]["at"] = "1\u0660:00"
    campaign, problems = parse_campaign("at.json", raw)
    assert campaign is None and [p.path for p in problems] == ["$.steps[0].at"]
