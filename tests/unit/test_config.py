"""Campaign validation: the model, the schema file, and `aftercare validate`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chalicelib.cli.main import main
from chalicelib.config.model import json_schema
from tests.conftest import FIXTURES, ROOT

BAD = FIXTURES / "bad_campaigns"


def test_examples_validate(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["validate", str(ROOT / "campaigns"), "--templates", str(ROOT / "templates")])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "ok:" in out.out


def test_checked_in_schema_is_current() -> None:
    on_disk = json.loads((ROOT / "campaigns" / "schema.json").read_text())
    assert on_disk == json_schema(), "run `make schema` to refresh campaigns/schema.json"


def test_every_example_references_the_schema() -> None:
    for path in (ROOT / "campaigns").glob("*.json"):
        if path.name != "schema.json":
            assert json.loads(path.read_text()).get("$schema") == "./schema.json", path


def _problems(name: str, capsys: pytest.CaptureFixture[str]) -> list[str]:
    code = main(["validate", str(BAD / name), "--templates", str(BAD / "templates")])
    err = capsys.readouterr().err
    assert code == 1
    assert "Traceback" not in err
    return [line for line in err.splitlines() if line]


@pytest.mark.parametrize(("name", "expected"), [
    ("typo.json", "typo.json: $.steps[0].dealy: unknown field"),
    ("negative.json", "negative.json: $.steps[0].after: invalid ISO 8601 duration '-P2D'"),
    ("channel.json", "channel.json: $.steps[0].channel: should be 'sms' or 'email'"),
    ("broken.json", "broken.json: line 3 column 3: invalid JSON"),
    ("rule.json", "rule.json: $.audience.and[1]"),
    ("missing_template.json", "nope"),
    ("undefined_var.json", "nickname"),
    ("ssti.json", "ssti.sms.j2"),
])
def test_bad_campaigns_are_refused_with_one_precise_line(
        name: str, expected: str, capsys: pytest.CaptureFixture[str]) -> None:
    lines = _problems(name, capsys)
    assert any(expected in line for line in lines), lines


@pytest.mark.parametrize(("name", "expected"), [
    ("dup_keys.json", "dup_keys.json: $.steps[0].after: key 'after' appears more than once"),
    ("dup_steps.json", "dup_steps.json: $.steps[1].id: duplicate step id 's1'"),
    ("holdout_string.json",
     "holdout_string.json: $.holdout_percent: should be a number, not a string"),
    ("window_policy.json", "window_policy.json: $.reentry.window: 'window' applies only to"),
    ("zero_goal.json", "zero_goal.json: $.goal.within: duration 'PT0S' must be longer than zero"),
    ("huge_delay.json", "huge_delay.json: $.steps[0].after: duration 'P99999999999D' is too long"),
    ("deep.json", "deep.json: $: invalid JSON: nested too deeply"),
    ("constant_rule.json", "constant_rule.json: $.audience: a rule must be a JSON Logic"),
    ("locale_only.json", "locale_only.json: $.steps[0].template: no default sms template 'promo'"),
    ("dos.json", "dos.sms.j2: line 1: not allowed: the template does too much work"),
    ("format_dos.json", "format_dos.sms.j2: line 1: not allowed: format width 1000000000"),
])
def test_more_bad_campaigns_are_refused_with_one_precise_line(
        name: str, expected: str, capsys: pytest.CaptureFixture[str]) -> None:
    lines = _problems(name, capsys)
    assert len(lines) == 1 and expected in lines[0], lines


def test_every_problem_of_a_template_is_listed(capsys: pytest.CaptureFixture[str]) -> None:
    lines = _problems("ssti.json", capsys)
    assert len(lines) == 2, lines
    assert "ssti.sms.j2: line 1: not allowed: access to attribute '__class__'" in lines[0]
    assert "ssti.sms.j2: line 1: undefined variable 'cycler'" in lines[1]


def test_undefined_variable_names_template_and_line(capsys: pytest.CaptureFixture[str]) -> None:
    lines = _problems("undefined_var.json", capsys)
    assert any("bad_var.sms.j2: line 2:" in line and "nickname" in line for line in lines), lines


def test_whole_folder_reports_every_file(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["validate", str(BAD), "--templates", str(BAD / "templates")])
    err = capsys.readouterr().err
    assert code == 1
    for name in ("typo.json", "negative.json", "channel.json", "broken.json", "rule.json",
                 "missing_template.json", "bad_var.sms.j2", "ssti.sms.j2"):
        assert name in err, name


def test_missing_folder_is_an_error_not_a_traceback(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["validate", str(tmp_path / "nope"), "--templates", str(ROOT / "templates")])
    assert code == 1
    assert "no such file" in capsys.readouterr().err


@pytest.mark.parametrize(("at", "warned"), [
    ("22:30", "waits until 08:00 the next day"), ("21:00", "waits until 08:00 the next day"),
    ("06:45", "waits until 08:00 that day"), ("08:00", None), ("20:59", None),
])
def test_a_step_timed_in_quiet_hours_is_a_warning_not_an_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], at: str, warned: str | None) -> None:
    campaign = {"id": "late", "name": "Late", "trigger": {"event": "order.delivered"},
                "steps": [{"id": "s1", "after": "P1D", "at": at, "channel": "sms",
                           "template": "checkin"}]}
    (tmp_path / "late.json").write_text(json.dumps(campaign))
    code = main(["validate", str(tmp_path), "--templates", str(ROOT / "templates")])
    out = capsys.readouterr().out.splitlines()
    assert code == 0 and out[-1] == "ok: 1 campaign(s) valid"
    warnings = [line for line in out if "warning:" in line]
    if warned is None:
        assert warnings == []
    else:
        assert len(warnings) == 1 and "$.steps[0].at: warning:" in warnings[0]
        assert "quiet hours (21:00-08:00 local)" in warnings[0] and warned in warnings[0]
