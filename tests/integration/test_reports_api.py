"""``GET /reports`` and ``GET /reports/{campaign_id}`` (docs/api.md, "Reports") through
``chalice.test.Client`` on the local stack, after real sends, callbacks and replies.
(API Gateway's IAM check is not visible here: tests/package and test_docs_truth check
the authorizer is on these routes.)"""

from __future__ import annotations

import json
from datetime import date, timedelta
from typing import Any

import pytest

from chalicelib import clock
from chalicelib.local.stack import LocalStack
from chalicelib.tracking.report import campaign_definitions, read_campaign
from tests.integration.test_audit_stats import (
    EMAIL_DUE,
    ENROLL_DAY,
    SMS_DUE,
    known,  # noqa: F401  (fixture)
    text_back,
)

RANGE = f"from={ENROLL_DAY}&to=2026-03-10"


@pytest.fixture
def reported(known: LocalStack) -> LocalStack:  # noqa: F811
    """c-42 got the check-in SMS (delivered, replied to, CSAT 4) and the tip email."""
    known.run_due(SMS_DUE)
    known.twilio.deliver_callbacks()
    clock.set_now(SMS_DUE + timedelta(hours=1))
    text_back(known, "4")
    text_back(known, "Loving it")
    known.run_due(EMAIL_DUE)
    return known


def _get(stack: LocalStack, path: str) -> Any:
    return stack.client.http.get(path)


def _json(reply: Any) -> Any:
    assert reply.status_code == 200, reply.body
    return json.loads(reply.body)


def test_the_reports_route_gives_what_the_cli_gives(reported: LocalStack) -> None:
    body = _json(_get(reported, f"/reports?{RANGE}"))
    assert (body["from"], body["to"]) == (ENROLL_DAY, "2026-03-10")
    definitions = campaign_definitions()
    start, end = date.fromisoformat(ENROLL_DAY), date(2026, 3, 10)
    assert body["reports"] == [read_campaign(c, definitions[c], start, end).to_json()
                               for c in sorted(definitions)]
    checkin = next(r for r in body["reports"] if r["campaign"] == "checkin")
    (arm,) = checkin["arms"]
    assert arm["counts"]["sent"] == arm["counts"]["delivered"] == 1
    assert arm["counts"]["replied"] == 1 and arm["rates"]["reply_rate"] == 1.0
    assert checkin["survey"] == "csat" and arm["survey_score"] == 4


def test_one_campaign_and_a_chosen_set(reported: LocalStack) -> None:
    one = _json(_get(reported, f"/reports/tip?{RANGE}"))
    assert one["campaign"] == "tip" and one["arms"][0]["counts"]["sent"] == 1
    chosen = _json(_get(reported, f"/reports?{RANGE}&campaign=tip&campaign=tip"))
    assert [r["campaign"] for r in chosen["reports"]] == ["tip"]
    assert chosen["reports"][0] == one


def test_the_default_range_is_the_30_days_up_to_today(reported: LocalStack) -> None:
    clock.set_now(EMAIL_DUE + timedelta(days=1))
    body = _json(_get(reported, "/reports"))
    assert body["to"] == "2026-03-09" and body["from"] == "2026-02-08"
    later = _json(_get(reported, "/reports?from=2026-03-09&to=2026-03-09"))
    assert all(r["arms"] == [] for r in later["reports"])  # nothing counted that day


def test_the_html_report(reported: LocalStack) -> None:
    reply = _get(reported, f"/reports/checkin?{RANGE}&format=html")
    assert reply.status_code == 200
    assert reply.headers["Content-Type"].startswith("text/html")
    page = reply.body.decode() if isinstance(reply.body, bytes) else reply.body
    assert page.startswith("<!doctype html>") and "checkin" in page and "<svg" in page
    assert reply.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize(("query", "status", "words"), [
    ("from=2026-3-1", 400, "from: not a day"),
    ("to=yesterday", 400, "to: not a day"),
    ("from=2026-03-10&to=2026-03-01", 400, "is after"),
    ("from=2025-01-01&to=2026-03-01", 400, "at most 400 days"),
    # Session 15: extreme years were a 500 (OverflowError), other ISO forms read.
    ("to=0001-01-05", 400, "to: year 1 is outside 1900-2199"),
    ("from=9999-12-01&to=9999-12-31", 400, "year 9999 is outside 1900-2199"),
    ("to=20260301", 400, "to: not a day"),
    ("to=2026-W10-1", 400, "to: not a day"),
    ("to=2026-02-30", 400, "to: not a day"),
    ("format=xml", 400, "format: one of json, html"),
    ("from=2026-03-01&from=2026-03-02", 400, "give it once"),
    ("campaign=nope", 404, "'nope'"),
])
def test_bad_queries_are_refused_with_the_parameter_named(
        reported: LocalStack, query: str, status: int, words: str) -> None:
    reply = _get(reported, f"/reports?{query}")
    assert reply.status_code == status
    assert words in json.loads(reply.body)["Message"]


def test_a_campaign_never_pushed_is_404(reported: LocalStack) -> None:
    reply = _get(reported, "/reports/never-pushed")
    assert reply.status_code == 404
    assert json.loads(reply.body)["Code"] == "NotFoundError"
