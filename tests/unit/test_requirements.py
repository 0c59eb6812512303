"""requirements.txt (what Chalice ships) and pyproject's runtime dependencies agree."""

from __future__ import annotations

import tomllib

from tests.conftest import ROOT


def _pins(lines: list[str]) -> dict[str, str]:
    pins = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"not pinned: {line}"
            pins[name.lower()] = version
    return pins


def test_requirements_match_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = _pins(project["dependencies"])
    shipped = _pins((ROOT / "requirements.txt").read_text().splitlines())
    declared.pop("chalice")  # the framework is the Lambda's own runtime shim
    assert shipped == declared
