"""Shared fixtures. The local environment is applied before anything imports
chalicelib.store.models, whose PynamoDB Meta reads region and stage at import."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
sys.path.insert(0, str(ROOT))

from chalicelib.local.stack import LocalStack, apply_local_env  # noqa: E402

apply_local_env()


@pytest.fixture(scope="module")
def example_campaigns() -> Any:
    """The example campaigns in campaigns/, compiled as a CampaignSet (they validate)."""
    from chalicelib.config.loader import load_bundles
    from chalicelib.journeys.engine import CampaignSet
    from chalicelib.render import load_template_dir

    bundles, problems = load_bundles([ROOT / "campaigns"], load_template_dir(ROOT / "templates"))
    assert not [p for p in problems if p.severity == "error"]
    return CampaignSet(b.compiled() for b in bundles)


def load_event(name: str) -> dict[str, Any]:
    """A sample event from tests/fixtures/events/<name>.json."""
    data: dict[str, Any] = json.loads((FIXTURES / "events" / f"{name}.json").read_text())
    return data


def delivered(eid: str = "evt-0001", cid: str = "c-42", **changes: Any) -> dict[str, Any]:
    """The fixture delivery event with another id / customer id (and ``changes``)."""
    event = load_event("order_delivered")
    event["id"] = eid
    event["customer"] = {**event["customer"], "id": cid}
    event.update(changes)
    return event


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[LocalStack]:
    with LocalStack(outbox_dir=tmp_path / "out", project_root=ROOT) as s:
        yield s


@pytest.fixture
def live_stack(stack: LocalStack) -> LocalStack:
    """The local stack with the example campaigns pushed."""
    stack.push_campaigns()
    return stack


@pytest.fixture
def slice_stack(stack: LocalStack) -> LocalStack:
    """The local stack with two fixed campaigns: an SMS check-in (P2D at 10:00)
    and an email tip (P7D at 09:30), no holdout, both exiting on a return."""
    stack.push_campaigns(FIXTURES / "campaigns", ROOT / "templates")
    return stack


# Figures a test reports (such as the JSON Logic conformance counts), printed in
# pytest's summary so that `make test` shows them without `-s`.
SUMMARY_LINES: list[str] = []


def report(line: str) -> None:
    SUMMARY_LINES.append(line)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for line in SUMMARY_LINES:
        terminalreporter.write_line(line)
