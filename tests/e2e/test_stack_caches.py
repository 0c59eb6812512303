"""A new local stack forgets what the last one cached per (campaign, version).

Each LocalStack numbers campaign versions from 1, so the sender's renderers and the
compiled latest versions, cached per (campaign id, version) for a warm Lambda, must
go with ``handlers.reset``: before, a second stack in the same process that pushed
a campaign id again with other templates sent with the first stack's templates
(a differential fuzz of 1,610 random cases found it: the pipeline said "failed: no
email template named 'loyalty_offer'" where simulate said "sent")."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from chalicelib.local.stack import LocalStack
from tests.conftest import ROOT
from tests.e2e.oracle import Rows, decide_both

END = datetime(2026, 3, 5, tzinfo=UTC)
CUSTOMER = {"id": "c1", "email": "c1@example.com", "timezone": "America/New_York",
            "consent": {"email": True}}
ORDER = {"id": "o1", "total": 50.0, "currency": "USD",
         "items": [{"sku": "MG-1", "name": "Mug", "category": "kitchen", "quantity": 1,
                    "price": 50.0}]}
EVENTS = [{"id": "e1", "type": "order.delivered", "occurred_at": "2026-03-02T15:00:00Z",
           "customer": CUSTOMER, "order": ORDER}]


def _run(tmp: Path, template: str) -> tuple[Rows, Rows]:
    campaign = {"id": "same-id", "name": "x", "trigger": {"event": "order.delivered"},
                "steps": [{"id": "s1", "after": "PT1H", "channel": "email",
                           "template": template}]}
    folder = tmp / template
    folder.mkdir()
    (folder / "same-id.json").write_text(json.dumps(campaign))
    with LocalStack(outbox_dir=tmp / f"out-{template}", project_root=ROOT) as stack:
        stack.push_campaigns(folder, ROOT / "templates")
        return decide_both(stack, EVENTS, END)


def test_a_campaign_id_pushed_again_in_a_new_stack_sends_its_new_templates(
        tmp_path: Path) -> None:
    first = _run(tmp_path, "care_tip")
    sim, pipe = _run(tmp_path, "loyalty_offer")
    assert first[0] == first[1]
    assert sim == pipe
    assert [(row[4], row[7]) for row in pipe] == [("sent", "loyalty_offer")]
