"""`aftercare validate`: one line per problem (session 11).

Each test held a defect (a review's findings): a template including itself was
reported twice (the cycle, and the render's nesting error at the same include), and a
cycle through two files once per file; a survey given as a list was a traceback; a
misspelt survey kind or trigger, or an event type the model refused, also blamed a
correct template; a misspelt required field was two lines; a template several
campaigns use was reported once per campaign when the hint named the campaign; a key
given twice hid the rest of the file; NaN was reported at `$`; an unknown filter hid
every other problem of its file, or was reported twice inside an `{% if %}`; a
problem in a branch the samples do not take was dropped when the render reported
another on the same line; pattern errors printed the regular expression.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.unit.test_cli_adversarial import campaign, step, validate


@pytest.mark.parametrize(("partials", "expected"), [
    ({"partials/self.j2": "x {% include 'partials/self.j2' %}\n"},
     ("partials/self.j2", 1, "partials/self.j2 -> partials/self.j2")),
    ({"partials/a.j2": "x {% include 'partials/b.j2' %}\n",
      "partials/b.j2": "\ny {% include 'partials/a.j2' %}\n"},
     ("partials/a.j2", 1, "partials/a.j2 -> partials/b.j2 -> partials/a.j2")),
    ({"partials/a.j2": "{% import 'partials/b.j2' as b %}x\n",
      "partials/b.j2": "{% extends 'partials/c.j2' %}\n",
      "partials/c.j2": "\n\n{% include 'partials/a.j2' %}\n"},
     ("partials/a.j2", 1,
      "partials/a.j2 -> partials/b.j2 -> partials/c.j2 -> partials/a.j2")),
])
def test_an_include_cycle_is_one_line(
        folders: tuple[Path, Path], capsys: pytest.CaptureFixture[str],
        partials: dict[str, str], expected: tuple[str, int, str]) -> None:
    message = {"cyc.sms.j2": "Hi {% include '" + next(iter(partials)) + "' %}\n", **partials}
    lines = validate(folders, capsys, campaign(steps=[step(template="cyc")]), message)
    file, line, cycle = expected
    assert lines == [f"{folders[1]}/{file}: line {line}: includes itself ({cycle}): a "
                     "template may not include, import or extend itself; use a macro"]


def test_a_macro_calling_itself_is_still_reported_beside_a_cycle(
        folders: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    lines = validate(folders, capsys, campaign(steps=[step(template="cyc")]), {
        "cyc.sms.j2": "Hi {% include 'partials/m.j2' %} {% include 'partials/self.j2' %}\n",
        "partials/m.j2": "{% macro m(n) %}{{ m(n) }}{% endmacro %}{{ m(1) }}\n",
        "partials/self.j2": "x {% include 'partials/self.j2' %}\n"})
    assert len(lines) == 2, lines
    assert lines[0].startswith(f"{folders[1]}/partials/m.j2: line 1: not allowed: calls and "
                               "includes nested deeper than 64 levels")
    assert lines[1].startswith(f"{folders[1]}/partials/self.j2: line 1: includes itself")


@pytest.mark.parametrize(("source", "message"), [
    ("{{ ''.__class__ }}",
     "not allowed: access to attribute '__class__' of 'str' object is unsafe."),
    ("{{ 'x'|attr('__globals__') }}",
     "undefined variable '__globals__' ('str object' has no attribute '__globals__')"),
])
def test_an_unsafe_constant_in_an_included_partial_is_reported_at_the_partial_only(
        folders: tuple[Path, Path], capsys: pytest.CaptureFixture[str],
        source: str, message: str) -> None:
    # Jinja folds constants while it compiles the partial, during its includer's
    # render: that was reported at the include line as well.
    lines = validate(folders, capsys, campaign(steps=[step(template="inc")]), {
        "inc.sms.j2": "Hi\n\n{% include 'partials/p.j2' %}\n",
        "partials/p.j2": "\n" + source + "\n"})
    assert lines == [f"{folders[1]}/partials/p.j2: line 2: {message}"]


@pytest.mark.parametrize("survey", [["csat"], {"kind": "csat"}, "promoter", 5])
def test_a_survey_kind_the_model_refuses_is_one_line(
        folders: tuple[Path, Path], capsys: pytest.CaptureFixture[str], survey: Any) -> None:
    # nps.sms.j2 prints survey.question: checked as a survey step, it is fine.
    lines = validate(folders, capsys, campaign(steps=[step(template="nps", survey=survey)]))
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{folders[0]}/a.json: $.steps[0].survey: "), lines


@pytest.mark.parametrize(("trigger", "path"), [
    ({"evnt": "order.delivered"}, "$.trigger.evnt"),
    ({}, "$.trigger"),
    ({"event": "Order.Delivered"}, "$.trigger.event"),
])
def test_a_trigger_the_model_refuses_blames_no_template(
        folders: tuple[Path, Path], capsys: pytest.CaptureFixture[str],
        trigger: dict[str, Any], path: str) -> None:
    # checkin.sms.j2 reads order.items: fine for an event trigger.
    lines = validate(folders, capsys, campaign(trigger=trigger))
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{folders[0]}/a.json: {path}: "), lines


def test_a_misspelt_required_field_is_one_line_naming_it(
        folders: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    bad = {k: v for k, v in step().items() if k != "channel"} | {"chanel": "sms"}
    lines = validate(folders, capsys, campaign(steps=[bad]))
    assert lines == [f"{folders[0]}/a.json: $.steps[0].chanel: unknown field: did you mean "
                     "'channel', a required field that is missing? (see campaigns/schema.json)"]


@pytest.mark.parametrize(("change", "expected"), [
    ({"steps": [step(at="25:00")]},
     "$.steps[0].at: should be a local time HH:MM, 00:00 to 23:59; got \"25:00\""),
    ({"trigger": {"event": "Order.Delivered"}},
     "$.trigger.event: should be an event type: lowercase dotted words such as "
     "'order.delivered'; got \"Order.Delivered\""),
    ({"id": "Bad Id"}, "$.id: should be 1 to 63 lowercase letters, digits, '-' or '_', "
                       "starting with a letter or digit; got \"Bad Id\""),
    ({"steps": [step(), None]}, "$.steps[1]: should be a JSON object, not null"),
])
def test_model_messages_say_what_is_expected(
        folders: tuple[Path, Path], capsys: pytest.CaptureFixture[str],
        change: dict[str, Any], expected: str) -> None:
    assert validate(folders, capsys, campaign(**change)) == [f"{folders[0]}/a.json: {expected}"]


def test_a_template_several_campaigns_use_is_reported_once(
        folders: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    campaigns, _ = folders
    for name in ("b", "c"):
        (campaigns / f"{name}.json").write_text(json.dumps(
            campaign(id=name, steps=[step(template="ask")])))
    lines = validate(folders, capsys, campaign(steps=[step(template="ask")]),
                     {"ask.sms.j2": "Hi {{ survey.question }}"})
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{folders[1]}/ask.sms.j2: line 1: undefined variable "
                               "'survey.question' (step 's1' of campaign 'x' has no"), lines


def test_a_key_given_twice_does_not_hide_the_rest_of_the_file(
        folders: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    text = json.dumps(campaign(holdout_percent=101, steps=[step(channel="fax")]))
    text = text.replace('"after": "P2D"', '"after": "P2D", "after": "P3D", "dealy": "P1D"')
    lines = validate(folders, capsys, text)
    where = f"{folders[0]}/a.json"
    assert lines[0] == f"{where}: $.steps[0].after: key 'after' appears more than once in " \
                       "this object"
    assert sorted(line.split(": ")[1] for line in lines[1:]) == [
        "$.holdout_percent", "$.steps[0].channel", "$.steps[0].dealy"], lines


@pytest.mark.parametrize(("number", "message"), [
    ("NaN", "NaN is not a JSON value (write a number, or null)"),
    ("-Infinity", "-Infinity is not a JSON value (write a number, or null)"),
    ("1e400", "1e400 is beyond the range of a double"),
])
def test_a_number_json_does_not_allow_is_named_where_it_is(
        folders: tuple[Path, Path], capsys: pytest.CaptureFixture[str],
        number: str, message: str) -> None:
    text = json.dumps(campaign(steps=[step(), step(id="s2")])).replace(
        '"id": "s2"', f'"id": "s2", "weight": {number}')
    assert validate(folders, capsys, text) == [
        f"{folders[0]}/a.json: $.steps[1].weight: invalid JSON: {message}"]


def test_a_variant_step_id_that_is_not_an_identifier_is_quoted_in_paths(
        folders: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    lines = validate(folders, capsys, campaign(
        steps=[step(id="week-one")],
        variants=[{"id": "a", "weight": 1}, {"id": "b", "weight": 1,
                                             "templates": {"week-one": "nope"}}]))
    assert lines == [f"{folders[0]}/a.json: $.variants[1].templates['week-one']: no sms "
                     f"template 'nope' (expected {folders[1]}/nope.sms.j2)"]


@pytest.mark.parametrize(("source", "expected"), [
    # an unknown filter inside a taken {% if %}: once, at its line
    ("Hi {{ customer.name }}\nThanks.\n{% if order.total %}{{ order.total|moneyy }}{% endif %}",
     ["line 3: unknown filter 'moneyy'"]),
    # unknown filters no longer hide the file's other problems
    ("Hi {{ customer.nickname }} {{ ''.__class__.__mro__ }}\n{{ customer.name|shout }}\n"
     "{{ customer.name is shouty }} {{ [1]|map('nope')|join }}",
     ["line 2: unknown filter 'shout'", "line 3: unknown test 'shouty'",
      "line 3: unknown filter 'nope'", "line 1: undefined variable 'customer.nickname'",
      "line 1: not allowed: access to attribute '__class__' of 'str' object is unsafe."]),
    # a branch the samples do not take, on a line the render reported a problem on
    ("Hi {{ customer.nickname }}{% if order.total > 1000 %} {{ ''.__class__ }} "
     "{{ order.vip_code }}{% endif %} Reply STOP to opt out.",
     ["line 1: undefined variable 'customer.nickname'",
      "line 1: not allowed: access to attribute '__class__'",
      "line 1: undefined variable 'order.vip_code'"]),
])
def test_every_problem_of_a_template_is_listed_once(
        folders: tuple[Path, Path], capsys: pytest.CaptureFixture[str],
        source: str, expected: list[str]) -> None:
    lines = validate(folders, capsys, campaign(steps=[step(template="t")]),
                     {"t.sms.j2": source})
    assert lines == [f"{folders[1]}/t.sms.j2: {line}" for line in expected]


@pytest.mark.parametrize(("source", "message"), [
    ('{{ customer.name|first_name("there", "x") }}',
     "|first_name takes at most 1 argument in parentheses, 2 given"),
    ("{{ customer.name|upper(1) }}", "|upper takes 0 arguments in parentheses, 1 given"),
    ("{{ [1]|join(1, 2, 3) }}", "|join takes at most 2 arguments in parentheses, 3 given"),
])
def test_a_filter_given_too_many_arguments_counts_them_as_written(
        folders: tuple[Path, Path], capsys: pytest.CaptureFixture[str],
        source: str, message: str) -> None:
    lines = validate(folders, capsys, campaign(steps=[step(template="t")]),
                     {"t.sms.j2": source})
    assert lines == [f"{folders[1]}/t.sms.j2: line 1: {message}"]


@pytest.mark.parametrize(("field", "path", "meant"), [
    ("condtion", "$.steps[0].condtion", "condition"),
    ("expire_afer", "$.steps[0].expire_afer", "expire_after"),
    ("dealy", "$.steps[0].dealy", "after"),  # what other tools call a delay
    ("priorty", "$.priorty", "priority"),
])
def test_a_misspelt_optional_field_names_the_field_meant(
        folders: tuple[Path, Path], capsys: pytest.CaptureFixture[str],
        field: str, path: str, meant: str) -> None:
    doc = campaign(steps=[step(**({field: "P1D"} if path.startswith("$.steps") else {}))])
    if not path.startswith("$.steps"):
        doc[field] = 1
    assert validate(folders, capsys, doc) == [
        f"{folders[0]}/a.json: {path}: unknown field: did you mean {meant!r}? (see "
        "campaigns/schema.json)"]


@pytest.mark.parametrize(("source", "expected"), [
    # the stand-in for an unknown filter or test makes nothing else on its line
    ("Hi {{ customer.birthday|defualt('there') }}", "unknown filter 'defualt'"),
    ("{% if customer.birthday is defnied %}{{ customer.birthday|date }}{% endif %}x",
     "unknown test 'defnied'"),
    ("{% for i in range(order.items|lenght) %}x{% endfor %}", "unknown filter 'lenght'"),
])
def test_a_line_with_an_unknown_name_reports_that_name_only(
        folders: tuple[Path, Path], capsys: pytest.CaptureFixture[str],
        source: str, expected: str) -> None:
    lines = validate(folders, capsys, campaign(steps=[step(template="t")]),
                     {"t.sms.j2": source})
    assert lines == [f"{folders[1]}/t.sms.j2: line 1: {expected}"]


def test_another_trigger_kinds_field_is_named_as_such(
        folders: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    lines = validate(folders, capsys, campaign(
        trigger={"event": "order.delivered", "leap_day": "feb28"}))
    assert lines == [f"{folders[0]}/a.json: $.trigger.leap_day: unknown field for this kind "
                     "of trigger (it belongs to another kind; see campaigns/schema.json)"]


@pytest.mark.parametrize(("source", "message"), [
    ("{{ 'x'|default('a', true, 3) }}", "|default takes at most 2 arguments in parentheses, "
                                        "3 given"),
    ("{{ 'x'|escape(1) }}", "|escape takes 0 arguments in parentheses, 1 given"),
])
def test_the_filter_named_in_an_arity_error_is_the_one_written(
        folders: tuple[Path, Path], capsys: pytest.CaptureFixture[str],
        source: str, message: str) -> None:
    lines = validate(folders, capsys, campaign(steps=[step(template="t")]),
                     {"t.sms.j2": source})
    assert lines == [f"{folders[1]}/t.sms.j2: line 1: {message}"]
