"""The oracle with templates that cannot render for every customer.

A template can pass `aftercare validate` (its sample customer has every field) and
still fail for a real customer whose field is null: here an SMS thanking a repeat
buyer prints ``customer.last_delivery_at | date``, and a first-time buyer has no
delivery yet. The sender records such a step ``failed`` with the template error and
goes on with the campaign's next step; `aftercare simulate --render` must say the
same, customer by customer, and the Spanish template (which tests the field) must
render for everyone, as the sender resolves the locale.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from chalicelib.cli.main import main
from chalicelib.clock import parse_iso
from chalicelib.local.generator import generate, write_jsonl
from chalicelib.local.stack import LocalStack
from tests.conftest import ROOT
from tests.e2e.oracle import decide_both

THANKS_AGAIN: dict[str, Any] = {
    "id": "thanks-again",
    "name": "Thanks for coming back",
    "status": "active",
    "trigger": {"event": "order.placed"},
    "steps": [
        {"id": "thanks", "after": "PT2H", "channel": "sms", "template": "thanks_again"},
        {"id": "tip", "after": "P3D", "channel": "email", "template": "care_tip"},
    ],
    "reentry": {"policy": "once_per_order"},
}
SMS_EN = ("Hi {{ customer.name | first_name }}, thanks for ordering again! Your last "
          "delivery arrived {{ customer.last_delivery_at | date }}. {{ links.unsubscribe }}")
SMS_ES = ("Hola {{ customer.name | first_name }}, ¡gracias por tu pedido!"
          "{% if customer.last_delivery_at %} Tu última entrega llegó el "
          "{{ customer.last_delivery_at | date }}.{% endif %} {{ links.unsubscribe }}")


def write_campaign(tmp: Path) -> tuple[Path, Path]:
    templates = tmp / "templates"
    shutil.copytree(ROOT / "templates", templates)
    (templates / "thanks_again.sms.j2").write_text(SMS_EN, encoding="utf-8")
    (templates / "thanks_again.es.sms.j2").write_text(SMS_ES, encoding="utf-8")
    campaigns = tmp / "campaigns"
    campaigns.mkdir()
    (campaigns / "thanks-again.json").write_text(json.dumps(THANKS_AGAIN), encoding="utf-8")
    return campaigns, templates


def test_render_failures_are_the_pipelines(stack: LocalStack, tmp_path: Path) -> None:
    campaigns, templates = write_campaign(tmp_path)
    stack.push_campaigns(campaigns, templates)
    events = generate(customers=30, days=90, seed=5)
    end = parse_iso(events[-1]["occurred_at"]) + timedelta(days=10)

    expected, actual = decide_both(stack, events, end)
    assert actual == expected

    thanks = [r for r in expected if r[2] == "thanks"]
    outcomes = Counter(r[4] for r in thanks)
    # Both kinds happen, or the equality proves little: first orders fail, repeat
    # orders after a delivery (and every Spanish customer's) are sent.
    assert outcomes["failed"] >= 5 and outcomes["sent"] >= 5, outcomes
    for row in thanks:
        if row[4] == "failed":
            assert row[5].startswith("template error: thanks_again.sms.j2:1:"), row
    # A failed step does not end the enrollment: its next step is still decided.
    failed_customers = {r[0] for r in thanks if r[4] == "failed"}
    tips = {r[0] for r in expected if r[2] == "tip"}
    assert failed_customers <= tips


def test_simulate_render_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The CLI: without --render the steps are `sent` (simulate decides only); with it,
    in one process or split across two, they are `failed` with the template error."""
    campaigns, templates = write_campaign(tmp_path)
    log = tmp_path / "events.jsonl"
    write_jsonl(generate(customers=600, days=120, seed=5), log)  # > 2,000 lines: splits
    assert sum(1 for _ in log.open()) > 2_000

    def run(*extra: str) -> list[dict[str, str]]:
        code = main(["simulate", "--events", str(log), "--campaigns", str(campaigns),
                     "--templates", str(templates), "--format", "json", *extra])
        assert code == 0
        rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        return [r for r in rows if r["step"] == "thanks"]

    plain, rendered, one = run(), run("--render"), run("--render", "--workers", "1")
    assert rendered == one
    assert len(plain) == len(rendered)
    failed = 0
    for before, after in zip(plain, rendered, strict=True):
        if after["outcome"] == "failed":  # only a send can fail to render
            failed += 1
            assert before["outcome"] == "sent", (before, after)
            assert after["reason"].startswith("template error: thanks_again.sms.j2:1:")
            after = {**after, "outcome": "sent", "reason": ""}
        assert after == before
    sent = sum(1 for r in rendered if r["outcome"] == "sent")
    assert failed >= 50 and sent >= 50, (failed, sent)
