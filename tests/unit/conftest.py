"""Fixtures shared by the unit tests of the CLI."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import ROOT


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    """(empty campaigns folder, templates folder: a copy of the real one)."""
    campaigns = tmp_path / "c"
    campaigns.mkdir()
    templates = tmp_path / "t"
    shutil.copytree(ROOT / "templates", templates)
    return campaigns, templates
