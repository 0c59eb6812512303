"""`aftercare validate`: findings of a review (session 14).

A misspelt key that leaves a trigger without a kind (`{"evnt": ...}`) was reported as
"trigger needs one of ..." without naming the typo; a `var` whose path is a number
(null for everyone: the context is an object) was accepted; campaign files in a
folder inside the one given, or named `*.JSON`, were skipped without a word, and a
campaign saved as `schema.json` in a folder was skipped as the editors' schema; a
misspelt `survey` key also blamed the step's template for reading `survey`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from chalicelib.cli.main import main
from tests.unit.test_cli_adversarial import BASE, campaign, only, step, validate


@pytest.mark.parametrize(("trigger", "expected"), [
    ({"evnt": "order.delivered"}, "$.trigger.evnt: unknown field: did you mean 'event'?"),
    ({"dte": "customer.birthday", "leap_day": "mar1"},
     "$.trigger.dte: unknown field: did you mean 'date'?"),
    ({"idel": "P120D"}, "$.trigger.idel: unknown field: did you mean 'idle'?"),
])
def test_a_misspelt_trigger_kind_is_named(
        folders: tuple[Path, Path], capsys: pytest.CaptureFixture[str],
        trigger: dict[str, Any], expected: str) -> None:
    only(validate(folders, capsys, campaign(trigger=trigger)), f"a.json: {expected}")


def test_a_trigger_without_any_kind_like_key_keeps_the_general_message(
        folders: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    only(validate(folders, capsys, campaign(trigger={"when": "order.delivered"})),
         "a.json: $.trigger: trigger needs one of 'event', 'date' or 'idle'")


@pytest.mark.parametrize(("rule", "path", "shown"), [
    ({">": [{"var": 5}, 1]}, "$.audience['>'][0].var", "5"),
    ({">": [{"var": [5, 0]}, 1]}, "$.audience['>'][0].var[0]", "5"),
    ({"==": [{"val": [3]}, 1]}, "$.audience['=='][0].val[0]", "3"),
])
def test_a_number_as_a_top_level_path_is_refused(
        folders: tuple[Path, Path], capsys: pytest.CaptureFixture[str],
        rule: dict[str, Any], path: str, shown: str) -> None:
    only(validate(folders, capsys, campaign(audience=rule)),
         f"a.json: {path}: '", f"reads {shown}, but a rule sees only 'customer', 'event' "
         "and 'now'")


def test_a_number_reading_an_item_inside_map_is_fine(
        folders: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    rule = {"some": [{"map": [{"var": "customer.products"}, [{"var": ""}]]},
                     {"==": [{"var": 0}, "x"]}]}
    assert validate(folders, capsys, campaign(audience=rule)) == []


def test_files_a_folder_does_not_read_are_named(
        folders: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    campaigns, templates = folders
    (campaigns / "a.json").write_text(json.dumps(BASE))
    (campaigns / "old").mkdir()
    (campaigns / "old" / "broken.json").write_text("{bad")
    (campaigns / "notes").mkdir()  # no JSON in it: nothing to say
    (campaigns / "notes" / "readme.txt").write_text("x")
    (campaigns / "b.JSON").write_text(json.dumps({**BASE, "id": "b"}))
    code = main(["validate", str(campaigns), "--templates", str(templates)])
    captured = capsys.readouterr()
    assert code == 0 and captured.err == "", captured.err
    warning, ok = captured.out.splitlines()  # warnings go with the summary, to stdout
    assert warning.startswith(f"{campaigns}/old: $: warning: a folder inside the one "
                              "given: its campaign files are not read")
    assert ok == "ok: 2 campaign(s) valid"  # b.JSON was read


def test_a_campaign_named_schema_json_in_a_folder_is_read(
        folders: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    campaigns, templates = folders
    (campaigns / "schema.json").write_text(json.dumps({**BASE, "dealy": "P1D"}))
    assert main(["validate", str(campaigns), "--templates", str(templates)]) == 1
    only(capsys.readouterr().err.splitlines(), "schema.json: $.dealy: unknown field")


def test_the_editors_schema_beside_the_campaigns_is_skipped_quietly(
        folders: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    campaigns, templates = folders
    root = Path(__file__).resolve().parents[2]
    (campaigns / "schema.json").write_text((root / "campaigns" / "schema.json").read_text())
    (campaigns / "a.json").write_text(json.dumps(BASE))
    assert main(["validate", str(campaigns), "--templates", str(templates)]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and "ok: 1 campaign(s) valid" in captured.out


@pytest.mark.parametrize("key", ["survy", "surveys"])
def test_a_misspelt_survey_key_does_not_also_blame_the_template(
        folders: tuple[Path, Path], capsys: pytest.CaptureFixture[str], key: str) -> None:
    # nps.sms.j2 prints survey.question: checked as a survey step, it is fine.
    lines = validate(folders, capsys, campaign(steps=[step(template="nps", **{key: "nps"})]))
    only(lines, f"a.json: $.steps[0].{key}: unknown field: did you mean 'survey'?")


@pytest.mark.parametrize("name", ["checkin.e.sms.j2", "checkin.es.es.sms.j2",
                                  "checkin.SMS.j2", "care_tip.EMAIL.j2"])
def test_a_message_like_file_no_step_can_send_is_named(
        folders: tuple[Path, Path], capsys: pytest.CaptureFixture[str], name: str) -> None:
    campaigns, templates = folders
    (campaigns / "a.json").write_text(json.dumps(BASE))
    (templates / name).write_text("Hola {{ customer.nmae }}\n")
    (templates / "partials" / "x.sms.j2").parent.mkdir(exist_ok=True)
    (templates / "partials" / "x.sms.j2").write_text("a partial {{ x }}\n")  # not named
    assert main(["validate", str(campaigns), "--templates", str(templates)]) == 0
    captured = capsys.readouterr()
    warning, ok = captured.out.splitlines()
    assert warning.startswith(f"{templates}/{name}: $: warning: not a message template's "
                              "name"), warning
    assert ok == "ok: 1 campaign(s) valid" and captured.err == ""


@pytest.mark.parametrize(("rule", "expected"), [
    ({"days_since": [True]}, "$.days_since[0]: 'days_since' needs a date (YYYY-MM-DD or an "
                             "ISO 8601 datetime), got the constant true"),
    ({"var": False}, "$.var: 'var' path must be a string or an index, got false"),
    ({"map": [5, {"var": ""}]}, "$.map[0]: 'map' needs an array, got 5"),
    ({"cat": ["a"] * 5000}, "$.cat: 'cat' takes at most 999 argument(s), got 5000"),
])
def test_rule_messages_show_constants_as_json_and_name_the_operator(
        rule: dict[str, Any], expected: str) -> None:
    from chalicelib.rules import lint_rule, validate_rule

    assert [str(e) for e in [*validate_rule(rule), *lint_rule(rule)]] == [expected]


def test_a_long_cat_still_compiles_and_joins() -> None:
    from chalicelib.rules import compile_rule

    parts = [{"substr": [{"var": "x"}, i % 2, 1]} for i in range(999)]
    assert compile_rule({"cat": parts})({"x": "ab"}) == "ab" * 499 + "a"


@pytest.mark.parametrize("source", [
    "Hi {{ customer.name\n ~ customer.nickname }}\n",
    "{% if customer.name ==\n customer.nickname %}x{% endif %}ok\n",
    "Hi {{ '%s %s'|format(customer.name,\n   customer.nickname) }}\n",
])
def test_an_undefined_variable_in_an_expression_over_two_lines_is_one_line_at_its_own(
        folders: tuple[Path, Path], capsys: pytest.CaptureFixture[str], source: str) -> None:
    _, templates = folders
    lines = validate(folders, capsys, BASE, {"checkin.sms.j2": source})
    assert lines == [f"{templates}/checkin.sms.j2: line 2: undefined variable "
                     "'customer.nickname'"]


def test_a_huge_whole_number_is_shown_as_written(
        folders: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    only(validate(folders, capsys, '{"id": "x", "name": "X", "priority": 1e300, '
                  '"trigger": {"event": "order.delivered"}, "steps": [{"id": "s1", '
                  '"channel": "sms", "template": "checkin"}]}'),
         "a.json: $.priority: should be at most 1000; got 1e+300")


@pytest.mark.parametrize(("rule", "expected"), [
    ({"days_since": [["2026-01-01"]]},
     ["$.days_since[0]: 'days_since' needs a date (YYYY-MM-DD or an ISO 8601 datetime), "
      "got the constant [\"2026-01-01\"]"]),
    ({"missing": ["customer.email", "custmer.phone"]},
     ["$.missing[1]: 'missing' asks for 'custmer.phone', but a rule sees only 'customer', "
      "'event' and 'now' (did you mean 'customer'?): it is missing for everyone"]),
    ({"missing_some": [1, ["customer.email", "phone"]]},
     ["$.missing_some[1][1]: 'missing_some' asks for 'phone', but a rule sees only "
      "'customer', 'event' and 'now' (e.g. 'customer.phone'): it is missing for everyone"]),
    ({"missing": ["customer.email", "event.order.id"]}, []),
    ({"days_since": [[{"var": "customer.first_order_at"}]]}, []),  # computed: not judged
])
def test_constants_that_can_never_work_are_named(rule: dict[str, Any],
                                                 expected: list[str]) -> None:
    from chalicelib.rules import lint_rule

    assert [str(e) for e in lint_rule(rule)] == expected


@pytest.mark.parametrize(("content", "expected"), [
    (b'{"id": "x", "name": "A\\ud800", "trigger": {"event": "order.delivered"}}',
     "a.json: $.name: invalid JSON: text is not valid Unicode"),
    (b"\xef\xbb\xbf\xef\xbb\xbf{}",
     "a.json: line 1 column 1: invalid JSON: a second byte order mark (U+FEFF)"),
    (b'{"id": "w",\r"name": "W",\r"steps": [}',
     "a.json: line 3 column 11: invalid JSON: Expecting value"),
    (b'{"id": "w",\r\n"name": "W",\r\n"steps": [}',
     "a.json: line 3 column 11: invalid JSON: Expecting value"),
])
def test_json_problems_are_placed_where_an_editor_shows_them(
        folders: tuple[Path, Path], capsys: pytest.CaptureFixture[str], content: bytes,
        expected: str) -> None:
    only(validate(folders, capsys, content), expected)


@pytest.mark.parametrize("source", [
    "{{ customer.name ~\n ''.__class__ }}\n",
    "{% if customer.name ==\n  ''.__class__ %}x{% endif %}ok\n",
])
def test_a_refused_attribute_in_an_expression_over_two_lines_is_one_line_at_its_own(
        folders: tuple[Path, Path], capsys: pytest.CaptureFixture[str], source: str) -> None:
    _, templates = folders
    only(validate(folders, capsys, BASE, {"checkin.sms.j2": source}),
         f"{templates}/checkin.sms.j2: line 2: not allowed: access to attribute '__class__'")


@pytest.mark.parametrize(("source", "line", "name"), [
    # The key lacked on line 3 is also read, from another object, on line 2.
    ('{{ customer.email\n ~ order["items"][0].sku\n ~ customer.sku }}\n', 3, "customer.sku"),
    # ... or on the line the statement starts on.
    ("{{ order.total\n ~ customer.total }}\n", 2, "customer.total"),
])
def test_a_multi_line_expression_names_the_object_that_lacks_the_key(
        folders: tuple[Path, Path], capsys: pytest.CaptureFixture[str], source: str,
        line: int, name: str) -> None:
    _, templates = folders
    assert validate(folders, capsys, BASE, {"checkin.sms.j2": source}) == [
        f"{templates}/checkin.sms.j2: line {line}: undefined variable '{name}'"]


def test_an_inner_folder_given_too_is_not_warned_about(
        folders: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    campaigns, templates = folders
    (campaigns / "a.json").write_text(json.dumps(BASE))
    (campaigns / "archive").mkdir()
    (campaigns / "archive" / "b.json").write_text(json.dumps({**BASE, "id": "b"}))
    (campaigns / "schema.json").symlink_to(campaigns / "gone.json")  # dangling: skipped
    assert main(["validate", str(campaigns), str(campaigns / "archive"),
                 "--templates", str(templates)]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines() == ["ok: 2 campaign(s) valid"] and captured.err == ""


def test_a_long_integer_is_shown_as_written(
        folders: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    only(validate(folders, capsys, campaign(priority=123456789012345678)),
         "a.json: $.priority: should be at most 1000; got 123456789012345678")
