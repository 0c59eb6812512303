"""The survey link of a step without ``survey`` asks the campaign's survey kind
(session 15): an NPS campaign whose follow-up email carries ``links.survey`` (the
pattern docs/templates.md shows) had a CSAT link there, and its answer counted
among the NPS answers (a CSAT "1" made a promoter's NPS 50 instead of 0 with one
detractor, "survey: nps" still shown)."""

from __future__ import annotations

import json
import re
import shutil
from datetime import UTC, date, datetime
from pathlib import Path

from chalicelib import clock
from chalicelib.config.compiled import compile_campaign
from chalicelib.config.model import Campaign
from chalicelib.journeys.messages import link_survey_kind
from chalicelib.local.stack import LocalStack
from chalicelib.tracking.report import campaign_versions, read_campaign
from tests.conftest import ROOT, load_event

PHONE = "+14155550123"
INBOUND = "http://127.0.0.1:8000/webhooks/twilio/inbound"
TIP = """{% block subject %}A tip{% endblock %}
{% block html %}<p>Descale it once a month. <a href="{{ links.survey }}">Tell us how it
went</a>.</p><p><a href="{{ links.unsubscribe }}">Unsubscribe</a></p>{% endblock %}
"""
MIX = {"id": "mix", "name": "NPS by SMS, then a tip by email", "status": "active",
       "trigger": {"event": "order.delivered"},
       "steps": [{"id": "nps", "after": "P2D", "at": "10:00", "channel": "sms",
                  "template": "nps", "survey": "nps", "expire_after": "P2D"},
                 {"id": "tip", "after": "P7D", "at": "09:30", "channel": "email",
                  "template": "tip_survey", "expire_after": "P3D"}]}


def _kind(campaign: dict[str, object]) -> str:
    return link_survey_kind(compile_campaign(Campaign.model_validate(campaign)))


def test_the_link_kind_of_a_step_without_survey() -> None:
    assert _kind(MIX) == "nps"
    no_survey = json.loads(json.dumps(MIX))
    del no_survey["steps"][0]["survey"]
    assert _kind(no_survey) == "csat"
    mixed = json.loads(json.dumps(MIX))
    mixed["steps"][1]["survey"] = "ces"
    assert _kind(mixed) == "csat"  # several kinds: no score is shown anyway


def test_an_nps_campaigns_email_link_asks_nps_and_counts_as_nps(
        stack: LocalStack, tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    shutil.copytree(ROOT / "templates", templates)
    (templates / "tip_survey.email.j2").write_text(TIP)
    campaigns = tmp_path / "campaigns"
    campaigns.mkdir()
    (campaigns / "mix.json").write_text(json.dumps(MIX))
    stack.push_campaigns(campaigns, templates)
    clock.set_now(datetime(2026, 3, 1, 14, 3, tzinfo=UTC))
    stack.ingest([load_event("order_delivered")])
    stack.run_due(datetime(2026, 3, 3, 15, 0, tzinfo=UTC))
    assert len(stack.twilio.messages) == 1
    clock.set_now(datetime(2026, 3, 3, 16, 0, tzinfo=UTC))
    assert stack.twilio.simulate_inbound(PHONE, "10", "+15005550006", INBOUND).error is None
    stack.run_due(datetime(2026, 3, 8, 13, 30, tzinfo=UTC))
    (email,) = stack.sent_emails()
    match = re.search(r"http://127\.0\.0\.1:8000(/l/survey/[\w.-]+)", email["body"])
    assert match is not None
    page = stack.client.http.get(match.group(1))
    assert page.status_code == 200
    body = page.body.decode() if isinstance(page.body, bytes) else page.body
    assert "value=0>" in body and "value=10>" in body  # the NPS scale, 0-10
    answer = stack.client.http.post(
        match.group(1), headers={"Content-Type": "application/x-www-form-urlencoded"},
        body="score=1")
    assert answer.status_code == 200
    report = read_campaign("mix", campaign_versions("mix"), date(2026, 3, 1),
                           date(2026, 3, 31)).to_json()
    assert report["survey"] == "nps"
    (arm,) = report["arms"]
    assert arm["counts"]["survey_responses"] == 2
    assert (arm["counts"]["promoters"], arm["counts"]["detractors"]) == (1, 1)
    assert arm["survey_score"] == 0.0
