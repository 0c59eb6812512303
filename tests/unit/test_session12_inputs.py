"""Session 12 review findings on input handling: `generate` bounds, envelope type
messages, whole numbers written 10.0, and plain wording for schema problems."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from chalicelib.cli.main import main
from chalicelib.events.envelope import EventError, parse_event
from tests.conftest import ROOT

BASE_EVENT = {"id": "e-1", "type": "order.placed", "occurred_at": "2026-03-01T10:00:00Z"}
STEP = {"id": "s1", "after": "P2D", "channel": "sms", "template": "checkin"}
CAMPAIGN: dict[str, Any] = {"id": "x", "name": "X", "trigger": {"event": "order.delivered"},
                            "steps": [STEP]}


@pytest.mark.parametrize(("argv", "message"), [
    (["--days", "-3"], "argument --days: must be at least 1, got -3"),
    (["--days", "0"], "argument --days: must be at least 1, got 0"),
    (["--days", "3000000"], "argument --days: must be at most 36,500, got 3,000,000"),
    (["--customers", "-5"], "argument --customers: must be at least 1, got -5"),
    (["--customers", "many"], "argument --customers: not a whole number: 'many'"),
])
def test_generate_refuses_counts_it_cannot_use(
        argv: list[str], message: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Before: -3 days was a ValueError traceback, 3,000,000 an OverflowError, and
    0 customers wrote an empty log with exit code 0."""
    out = tmp_path / "events.jsonl"
    with pytest.raises(SystemExit) as exc:
        main(["generate", *argv, "--out", str(out)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == f"aftercare generate: error: {message}"
    assert "Traceback" not in err and not out.exists()


def test_generate_at_its_longest_stays_inside_the_years_an_event_may_carry(
        tmp_path: Path) -> None:
    """The longest log `generate` accepts is read back by `simulate` without a bad line
    (before: --days 100000 wrote events of 2200-2295, which the envelope refuses)."""
    out = tmp_path / "events.jsonl"
    assert main(["generate", "--customers", "1", "--days", "36500", "--out", str(out)]) == 0
    lines = out.read_text().splitlines()
    assert lines
    for line in lines:
        parse_event(json.loads(line))  # raises on a year past 2199


@pytest.mark.parametrize(("customer", "message"), [
    ("c-1", "$.customer: must be an object, got a string"),
    (["c-1"], "$.customer: must be an object, got an array"),
    (7, "$.customer: must be an object, got a number"),
    (None, "$.customer: required object is missing"),
    ({"id": ""}, "$.customer.id: must be a non-empty string, got an empty one"),
    ({"id": 3}, "$.customer.id: must be a non-empty string, got a number"),
    ({"id": True}, "$.customer.id: must be a non-empty string, got a boolean"),
])
def test_an_event_part_of_the_wrong_type_is_named_so(customer: Any, message: str) -> None:
    """Before: a customer given as a string read "required object is missing", and an
    empty id "must be a non-empty string, got str"."""
    event = {**BASE_EVENT, "customer": customer}
    with pytest.raises(EventError) as exc:
        parse_event(event)
    assert str(exc.value) == message


def test_an_order_of_the_wrong_type_is_named_so() -> None:
    with pytest.raises(EventError) as exc:
        parse_event({**BASE_EVENT, "customer": {"id": "c-1"}, "order": "o-1"})
    assert str(exc.value) == "$.order: must be an object, got a string"


def _validate(folders: tuple[Path, Path], data: dict[str, Any],
              capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    campaigns, templates = folders
    (campaigns / "a.json").write_text(json.dumps(data))
    code = main(["validate", str(campaigns), "--templates", str(templates)])
    err = capsys.readouterr().err.splitlines()
    return code, [line.split(": ", 1)[1] for line in err]


def test_a_whole_number_written_with_a_zero_fraction_is_accepted(
        folders: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    """campaigns/schema.json says "integer", which JSON Schema matches for 10.0: an editor
    accepted what validate refused."""
    data = {**CAMPAIGN, "priority": 10.0,
            "variants": [{"id": "a", "weight": 1.0}, {"id": "b", "weight": 3}]}
    assert _validate(folders, data, capsys) == (0, [])
    from chalicelib.config.loader import parse_campaign
    campaign, problems = parse_campaign("a.json", data)
    assert problems == [] and campaign is not None
    assert campaign.priority == 10 and type(campaign.priority) is int
    assert [v.weight for v in campaign.variants] == [1, 3]


@pytest.mark.parametrize(("changes", "expected"), [
    ({"priority": 10.5}, "$.priority: should be a whole number; got 10.5"),
    ({"priority": True}, "$.priority: should be a whole number, not a boolean; got true"),
    ({"priority": 5000}, "$.priority: should be at most 1000; got 5000"),
    ({"holdout_percent": 50.5}, "$.holdout_percent: should be at most 50; got 50.5"),
    ({"steps": []}, "$.steps: should have at least 1 item; it has 0"),
    ({"steps": {}}, "$.steps: should be an array, not an object"),
    ({"name": 5}, "$.name: should be a string, not a number"),
    ({"name": "x" * 300}, "$.name: should have at most 200 characters; it has 300"),
    ({"status": "live"},
     "$.status: should be 'active', 'paused', 'draft' or 'archived'; got \"live\""),
    ({"steps": [{**STEP, "weekdays": []}]},
     "$.steps[0].weekdays: should have at least 1 item; it has 0"),
    ({"steps": [{**STEP, "survey": True}]},
     "$.steps[0].survey: should be 'csat', 'nps' or 'ces'; got true"),
])
def test_schema_problems_read_as_plain_words(
        folders: tuple[Path, Path], capsys: pytest.CaptureFixture[str],
        changes: dict[str, Any], expected: str) -> None:
    """Before: pydantic's "Input should be a valid integer", "List should have at least
    1 item after validation, not 0"."""
    code, lines = _validate(folders, {**CAMPAIGN, **changes}, capsys)
    assert (code, lines) == (1, [expected])


def test_cross_field_problems_are_listed_beside_a_schema_problem(
        folders: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    """Before: a file with any schema problem (`priority: -1`) had its cross-field
    checks skipped: the variant naming an unknown step and `reentry` on a date trigger
    showed only once the priority was fixed."""
    data = {"id": "c", "name": "C", "priority": -1, "trigger": {"date": "customer.birthday"},
            "steps": [{"id": "s1", "at": "10:00", "channel": "sms", "template": "birthday"}],
            "variants": [{"id": "a", "weight": 1},
                         {"id": "b", "weight": 1, "templates": {"s2": "nps"}}],
            "reentry": {"policy": "once"}}
    assert _validate(folders, data, capsys) == (1, [
        "$.priority: should be at least 0; got -1",
        "$.variants[1].templates.s2: variant 'b' names unknown step 's2' (steps: s1)",
        "$.reentry: reentry applies to event triggers only"])


def test_a_cross_field_check_on_a_field_the_schema_refused_is_not_a_second_line(
        folders: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    data = {**CAMPAIGN, "priority": -1, "reentry": {"policy": "once", "window": "P1X"}}
    code, lines = _validate(folders, data, capsys)
    assert code == 1
    assert sorted(line.split(":", 1)[0] for line in lines) == ["$.priority", "$.reentry.window"]
    data = {**CAMPAIGN, "priority": -1, "reentry": {"policy": "once", "window": "P9D"}}
    assert _validate(folders, data, capsys) == (1, [
        "$.priority: should be at least 0; got -1",
        "$.reentry.window: 'window' applies only to policy 'once_per_window', not 'once'"])


def test_a_step_without_a_readable_id_does_not_make_variants_name_unknown_steps(
        folders: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    data = {**CAMPAIGN, "steps": [{**STEP, "id": 7}],
            "variants": [{"id": "a", "weight": 1, "templates": {"s1": "nps"}}]}
    assert _validate(folders, data, capsys) == (
        1, ["$.steps[0].id: should be a string, not a number"])


def test_a_campaign_file_over_1_mb_is_refused_before_it_is_parsed(
        folders: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    """Before: a 2.8 MB rule (an `or` of 50,000 comparisons) was "valid" after 12 s and
    870 MB, though push stores a campaign as one DynamoDB item of at most 400 KB."""
    rule = {"or": [{"==": [{"var": "customer.id"}, f"c-{i:06d}"]} for i in range(50_000)]}
    code, lines = _validate(folders, {**CAMPAIGN, "audience": rule}, capsys)
    assert (code, lines) == (1, [
        "$: the file is over 1 MB; a campaign is stored with its templates as one "
        "DynamoDB item, at most 400 KB: shorten its rules or templates, or split it"])


def test_a_campaign_whose_templates_make_the_item_too_big_is_refused(
        folders: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    templates = folders[1]
    (templates / "big.sms.j2").write_text("{# " + "x" * 420_000 + " #}Hello")
    code, lines = _validate(folders, {**CAMPAIGN, "steps": [{**STEP, "template": "big"}]},
                            capsys)
    assert code == 1
    assert lines == ["$: with its templates it takes 410 KB; a campaign is stored with its "
                     "templates as one DynamoDB item, at most 400 KB: shorten its rules or "
                     "templates, or split it"]


def test_the_examples_fit_one_item_with_room_to_spare() -> None:
    from chalicelib.config.loader import MAX_STORED_BYTES, load_bundles, stored_size
    from chalicelib.render import load_template_dir

    bundles, problems = load_bundles([ROOT / "campaigns"],
                                     load_template_dir(ROOT / "templates"))
    assert bundles and not [p for p in problems if p.severity == "error"]
    for bundle in bundles:
        assert 0 < stored_size(bundle.campaign, bundle.templates) < MAX_STORED_BYTES // 20


@pytest.mark.parametrize("content", ["", "\n  \n", "\ufeff"])
def test_an_empty_campaign_file_is_said_to_be_empty(
        content: str, folders: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    """Before: "line 1 column 1: invalid JSON: Expecting value"."""
    campaigns, templates = folders
    (campaigns / "a.json").write_text(content, encoding="utf-8")
    assert main(["validate", str(campaigns), "--templates", str(templates)]) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"{campaigns / 'a.json'}: $: the file is empty: it should hold one JSON object"]


def test_a_templates_path_that_is_a_file_is_named_so(
        folders: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    campaigns, templates = folders
    (campaigns / "a.json").write_text(json.dumps(CAMPAIGN))
    not_a_folder = templates / "checkin.sms.j2"
    assert main(["validate", str(campaigns), "--templates", str(not_a_folder)]) == 1
    assert capsys.readouterr().err.splitlines()[0] == (
        f"{not_a_folder}: $: is a file, not the templates folder")


def test_the_size_check_counts_what_push_stores(
        folders: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    """The templates attribute is JSON whose non-ASCII characters take 6 bytes each
    (\\uXXXX): 110,000 Cyrillic letters are 660 KB stored, though 220 KB as UTF-8."""
    templates = folders[1]
    (templates / "big.sms.j2").write_text("{# " + "\u0436" * 110_000 + " #}Hello",
                                          encoding="utf-8")
    code, lines = _validate(folders, {**CAMPAIGN, "steps": [{**STEP, "template": "big"}]},
                            capsys)
    assert code == 1 and len(lines) == 1
    assert lines[0].startswith("$: with its templates it takes 645 KB;")


def test_an_indented_file_under_1_mb_is_judged_by_what_is_stored(
        folders: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    """A 520 KB file written with indentation stores in far less: not refused for its
    bytes on disk."""
    campaigns, templates = folders
    rule = {"or": [{"==": [{"var": "customer.id"}, f"c-{i:05d}"]} for i in range(3000)]}
    text = json.dumps({**CAMPAIGN, "audience": rule}, indent=6)
    assert 400 * 1024 < len(text) < 1024 * 1024
    (campaigns / "a.json").write_text(text)
    assert main(["validate", str(campaigns), "--templates", str(templates)]) == 0
    capsys.readouterr()


@pytest.mark.parametrize("data", [
    {**CAMPAIGN, "steps": {"id": "s1"}, "variants": [{"id": "a", "weight": 1,
                                                      "templates": {"s1": "nps"}}]},
    {key: value for key, value in CAMPAIGN.items() if key != "steps"}
    | {"stpes": [STEP], "variants": [{"id": "a", "weight": 1, "templates": {"s1": "nps"}}]},
    {**CAMPAIGN, "steps": [{**STEP, "id": f"s{i}"} for i in range(21)],
     "variants": [{"id": "a", "weight": 1, "templates": {"s20": "nps"}}]},
    {**CAMPAIGN, "steps": [{**STEP, "id": "S 1"}],
     "variants": [{"id": "a", "weight": 1, "templates": {"s1": "nps"}}]},
])
def test_a_refused_steps_list_does_not_make_variants_name_unknown_steps(
        data: dict[str, Any], folders: tuple[Path, Path],
        capsys: pytest.CaptureFixture[str]) -> None:
    code, lines = _validate(folders, data, capsys)
    assert code == 1 and lines
    assert not any("names unknown step" in line for line in lines), lines


def test_a_misspelt_policy_is_one_line_not_also_a_window_line(
        folders: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    data = {**CAMPAIGN, "reentry": {"policy": "once_per_windw", "window": "P9D"}}
    code, lines = _validate(folders, data, capsys)
    assert code == 1
    assert [line.split(":", 1)[0] for line in lines] == ["$.reentry.policy"]


def test_a_long_value_is_quoted_whole_then_cut(
        folders: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    code, lines = _validate(folders, {**CAMPAIGN, "status": "x" * 100}, capsys)
    assert code == 1
    assert lines[0].endswith('; got "' + "x" * 57 + '..."')
