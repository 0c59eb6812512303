"""The render context times a message in the zone its send was planned in."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from chalicelib.config.compiled import compile_campaign
from chalicelib.config.model import Campaign
from chalicelib.journeys.engine import PlannedStep
from chalicelib.journeys.messages import render_context
from chalicelib.render import Renderer

CAMPAIGN = compile_campaign(Campaign.model_validate({
    "id": "c", "name": "C", "trigger": {"event": "order.delivered"},
    "steps": [{"id": "s", "channel": "sms", "template": "t"}]}), 1)
STEP = PlannedStep("c1", "c", 1, "s", "event:e1", "2026-03-01T03:00:00Z",
                   datetime(2026, 3, 1, 15, tzinfo=UTC), False, None, "e1")


@pytest.mark.parametrize(("timezone", "resolved", "day"), [
    (None, "America/Chicago", "Feb 28, 2026"),  # unknown: the default zone, as timed
    ("Mars/Base", "America/Chicago", "Feb 28, 2026"),
    ("Asia/Tokyo", "Asia/Tokyo", "Mar 1, 2026"),
])
def test_dates_print_in_the_zone_the_send_was_timed_in(timezone: str | None, resolved: str,
                                                      day: str) -> None:
    profile = {"id": "c1", "timezone": timezone, "last_order_at": "2026-03-01T03:00:00Z"}
    context = render_context(STEP, profile, CAMPAIGN, lambda kind, _p: f"https://x/{kind}",
                             "America/Chicago")
    assert context["customer"]["timezone"] == resolved
    body = Renderer({"t.sms.j2": "{{ customer.last_order_at|date }}"}).render_sms(
        "t", context, "en-US").body
    assert body == day
