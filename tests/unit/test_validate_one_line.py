"""`aftercare validate`: one line per problem (session 11).

Each test held a defect: a template including itself was reported twice (the cycle,
and the render's nesting error at the same include), and a cycle through two files
once per file.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit import test_cli_adversarial as adversarial
from tests.unit.test_cli_adversarial import campaign, step, validate

folders = adversarial.folders  # the fixture: a campaigns folder, a copy of templates/


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
