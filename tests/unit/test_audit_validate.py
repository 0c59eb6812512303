"""Audit of `aftercare validate [PATHS]`, run as a user runs it (a subprocess).

Requirement (the issue): schema, rules and templates are checked; bad input exits
with code 1 and one clear `file: json.path: message` line per problem, never a
traceback. Each case copies a real example campaign and the real templates into a
temporary folder and breaks one thing. The defects this audit found (first strict
xfails) are fixed; their tests hold the fixes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT

AFTERCARE = ROOT / ".venv" / "bin" / "aftercare"
EXAMPLE = "delivery-checkin.json"  # an SMS step "checkin" with a CSAT survey


def run(cwd: Path, *args: str, timeout: float = 60) -> tuple[int, list[str], str]:
    """`aftercare validate ARGS` in ``cwd``: (exit code, error lines, all output)."""
    proc = subprocess.run([str(AFTERCARE), "validate", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, check=False)
    return proc.returncode, [x for x in proc.stderr.splitlines() if x], proc.stdout + proc.stderr


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project folder with ``campaigns/`` (one valid example) and ``templates/``."""
    (tmp_path / "campaigns").mkdir()
    shutil.copy(ROOT / "campaigns" / EXAMPLE, tmp_path / "campaigns" / EXAMPLE)
    shutil.copytree(ROOT / "templates", tmp_path / "templates")
    return tmp_path


def example() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((ROOT / "campaigns" / EXAMPLE).read_text())
    return data


def write_campaign(project: Path, data: Any, name: str = EXAMPLE) -> None:
    (project / "campaigns" / name).write_text(json.dumps(data))


def one_problem(project: Path, *fragments: str) -> str:
    """Validate the folder: exit 1, no traceback, exactly one error line holding
    every fragment."""
    code, lines, everything = run(project, "campaigns")
    assert "Traceback" not in everything, everything
    assert code == 1, everything
    assert len(lines) == 1, lines
    for fragment in fragments:
        assert fragment in lines[0], lines
    return lines[0]


# ------------------------------------------------------------------- sanity


def test_a_copied_example_folder_is_valid(project: Path) -> None:
    code, lines, everything = run(project, "campaigns")
    assert (code, lines) == (0, []), everything
    assert "ok: 1 campaign(s) valid" in everything


# ------------------------------------------- unknown fields at every level

@pytest.mark.parametrize(("change", "path"), [
    (lambda d: d["trigger"].update(dealy="P1D"), "$.trigger.dealy"),
    (lambda d: d["goal"].update(witihn="P1D"), "$.goal.witihn"),
    (lambda d: d["exit"].update(evnets=["order.cancelled"]), "$.exit.evnets"),
    (lambda d: d.update(reentry={"policy": "once", "windw": "P1D"}), "$.reentry.windw"),
    (lambda d: d.update(variants=[{"id": "a", "weight": 1, "wieght": 2}]),
     "$.variants[0].wieght"),
])
def test_an_unknown_field_is_refused_at_every_nesting_level(
        project: Path, change: Any, path: str) -> None:
    data = example()
    change(data)
    write_campaign(project, data)
    one_problem(project, f"campaigns/{EXAMPLE}: {path}: unknown field")


# ------------------------------------------------- locale variants are checked

@pytest.mark.parametrize(("source", "expected"), [
    ("Hola {{ customer.name ", "templates/checkin.es.sms.j2: line 1: syntax error"),
    ("Hola\n{{ customer.nombre }}",
     "templates/checkin.es.sms.j2: line 2: undefined variable 'customer.nombre'"),
    ("Hola {{ ''.__class__.__mro__ }}",
     "templates/checkin.es.sms.j2: line 1: not allowed: access to attribute '__class__'"),
])
def test_a_broken_locale_variant_is_reported_not_only_the_fallback(
        project: Path, source: str, expected: str) -> None:
    (project / "templates" / "checkin.es.sms.j2").write_text(source)
    one_problem(project, expected)


# ----------------------------------------------------- files on the disk

def test_a_dangling_symlink_in_the_folder_is_one_line(project: Path) -> None:
    os.symlink(project / "nowhere.json", project / "campaigns" / "dangling.json")
    one_problem(project, "campaigns/dangling.json: $: cannot read file")


def test_a_symlink_loop_in_the_folder_is_a_problem_not_a_traceback(project: Path) -> None:
    folder = project / "campaigns"
    os.symlink("b.json", folder / "a.json")
    os.symlink("a.json", folder / "b.json")
    code, lines, everything = run(project, "campaigns")
    assert "Traceback" not in everything, everything
    assert code == 1
    assert any(line.startswith("campaigns/a.json: ") for line in lines), lines


def test_a_missing_templates_folder_does_not_hide_the_campaign_problems(
        project: Path) -> None:
    data = example()
    data["steps"][0]["dealy"] = "P1D"
    write_campaign(project, data)
    shutil.rmtree(project / "templates")
    code, lines, everything = run(project, "campaigns")
    assert code == 1 and "Traceback" not in everything
    assert any("templates" in line and "not found" in line for line in lines), lines
    assert f"campaigns/{EXAMPLE}: $.steps[0].dealy: unknown field: did you mean 'after'? " \
           "(see campaigns/schema.json)" in lines, lines


# ------------------------------------- template problems in a branch not taken

# The sample order totals 129.50, so `order.total > 1000` is false when validation
# renders the template; a customer with a bigger order takes that branch at send time.
BRANCH = "Hi {{ customer.name }}\n{% if order.total > 1000 %}VIP: SOURCE{% endif %}\n"


@pytest.mark.parametrize(("source", "expected"), [
    ("{{ ''.__class__.__mro__ }}", "__class__"),
    ("{{ cycler.__init__.__globals__ }}", "cycler"),
    ("{{ customer|attr('__class__') }}", "__class__"),
])
def test_template_injection_in_a_branch_not_taken_is_refused(
        project: Path, source: str, expected: str) -> None:
    (project / "templates" / "checkin.sms.j2").write_text(BRANCH.replace("SOURCE", source))
    one_problem(project, "templates/checkin.sms.j2: line 2: ", expected)


@pytest.mark.parametrize(("source", "expected"), [
    ("{{ customer.nmae }}", "undefined variable 'customer.nmae'"),
    ("{{ customer.name|nosuchfilter }}", "unknown filter 'nosuchfilter'"),
    ("{% include 'partials/nope.j2' %}", "'partials/nope.j2' not found"),
])
def test_a_missing_variable_filter_or_template_in_a_branch_not_taken_is_reported(
        project: Path, source: str, expected: str) -> None:
    (project / "templates" / "checkin.sms.j2").write_text(BRANCH.replace("SOURCE", source))
    one_problem(project, "templates/checkin.sms.j2: line 2: ", expected)


# ------------------------------------------------------------------- rules

def test_an_unknown_operator_deep_inside_a_step_condition_names_its_path(
        project: Path) -> None:
    data = example()
    data["steps"][0]["condition"] = {"and": [True, {"or": [False, {"!": [{"fooo": [1]}]}]}]}
    write_campaign(project, data)
    one_problem(project, f"campaigns/{EXAMPLE}: $.steps[0].condition.and[1].or[1]['!'][0].fooo: "
                         "unknown operator 'fooo'")


def test_a_huge_rule_is_refused_quickly(project: Path) -> None:
    data = example()
    data["audience"] = {"and": [{"var": f"customer.attributes.a{i}"} for i in range(20_000)]}
    write_campaign(project, data)
    code, lines, everything = run(project, "campaigns", timeout=10)
    assert code == 1 and "Traceback" not in everything
    assert len(lines) == 1 and f"campaigns/{EXAMPLE}: $.audience: " in lines[0], lines
