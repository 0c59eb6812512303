"""``aftercare report``: the campaigns' figures, read from the stats the pipeline
counted, through the real handlers (moto, the local Twilio server, signed
callbacks and survey answers)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from chalicelib import clock
from chalicelib.cli.main import main
from chalicelib.local.stack import LocalStack
from chalicelib.tracking.report import lift as lift_stats
from chalicelib.tracking.report import summarize, survey_score
from tests.conftest import ROOT
from tests.integration.test_audit_stats import (
    DELIVERED,
    SMS_DUE,
    customer,
    event,
    lift_campaign,
    phone_of,
    sms_messages,
    status_callback,
    text_back,
    variant,
    write_campaigns,
)


def _report(capsys: pytest.CaptureFixture[str], *args: str) -> list[dict[str, Any]]:
    capsys.readouterr()
    assert main(["report", "--from", "2026-03-01", "--to", "2026-03-31", "--format", "json",
                 *args]) == 0
    reports: list[dict[str, Any]] = json.loads(capsys.readouterr().out)
    return reports


@pytest.fixture
def lift(stack: LocalStack, tmp_path: Any) -> LocalStack:
    """The stats audit's campaign: SMS CSAT check-in, 50% holdout, variants a/b, goal
    order.placed within 30 days."""
    stack.push_campaigns(write_campaigns(tmp_path / "lift", lift_campaign()), ROOT / "templates")
    clock.set_now(DELIVERED)
    return stack


def test_the_report_counts_the_pipeline_did_with_rates_survey_score_and_lift(
        lift: LocalStack, capsys: pytest.CaptureFixture[str]) -> None:
    treated = [customer(holdout=False, skip=i) for i in range(3)]
    held = [customer(holdout=True, skip=i) for i in range(2)]
    for cid in treated + held:
        lift.ingest([event("order.delivered", cid, DELIVERED)])
    lift.run_due(SMS_DUE)
    sent = [m for m in sms_messages("lift") if m.status == "sent"]
    assert len(sent) == 3
    clock.set_now(SMS_DUE + timedelta(minutes=5))
    status_callback(lift, sent[0], "delivered")
    status_callback(lift, sent[1], "delivered")
    status_callback(lift, sent[2], "undelivered")
    text_back(lift, "5", sender=phone_of(sent[0].customer_id))
    clock.set_now(DELIVERED + timedelta(days=10))
    lift.ingest([event("order.placed", treated[0], DELIVERED + timedelta(days=9),
                       order="again-1"),
                 event("order.placed", held[0], DELIVERED + timedelta(days=9),
                       order="again-2")])
    (report,) = _report(capsys, "lift")
    assert (report["campaign"], report["survey"]) == ("lift", "csat")
    by_arm: dict[str, dict[str, int]] = {}
    for arm in report["arms"]:
        counts = by_arm.setdefault(arm["arm"], {})
        for name, value in arm["counts"].items():
            counts[name] = counts.get(name, 0) + value
        assert arm["variant"] in ("a", "b")
    assert by_arm["treatment"] == {"enrolled": 3, "sent": 3, "delivered": 2, "failed": 1,
                                   "converted": 1, "survey_responses": 1,
                                   "survey_score_sum": 5}
    assert by_arm["holdout"] == {"enrolled": 2, "held_out": 2, "converted": 1}
    assert report["lift"]["treatment_rate"] == round(1 / 3, 4)
    assert report["lift"]["holdout_rate"] == 0.5
    assert report["lift"]["difference"] == round(1 / 3 - 0.5, 4)
    scored = [a for a in report["arms"] if a["survey_score"] is not None]
    assert [a["survey_score"] for a in scored] == [5.0]
    assert scored[0]["variant"] == variant(sent[0].customer_id)


def test_the_table_and_the_errors(lift: LocalStack, capsys: pytest.CaptureFixture[str]) -> None:
    lift.ingest([event("order.delivered", customer(holdout=False), DELIVERED)])
    capsys.readouterr()
    assert main(["report", "lift", "--from", "2026-03-01", "--to", "2026-03-02"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("lift  2026-03-01..2026-03-02  survey: csat\n")
    assert "enrolled" in out and "treatment" in out
    assert main(["report", "nope"]) == 1
    assert "nope: no campaign with this id was pushed" in capsys.readouterr().err
    assert main(["report", "--from", "2026-03-05", "--to", "2026-03-01"]) == 1
    assert "after --to" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["report", "--from", "yesterday"])
    assert "is not a day" in capsys.readouterr().err
    for argument, words in (("0001-01-05", "year 1 is outside 1900-2199"),
                            ("20260301", "is not a day"), ("2026-W10-1", "is not a day")):
        for command in ("report", "retention"):
            with pytest.raises(SystemExit):
                main([command, "--to", argument])
            assert words in capsys.readouterr().err


def test_nps_score_and_lift_statistics() -> None:
    assert survey_score("nps", {"survey_responses": 10, "promoters": 6, "detractors": 1}) == 50.0
    assert survey_score("csat", {"survey_responses": 4, "survey_score_sum": 17}) == 4.25
    assert survey_score("mixed", {"survey_responses": 4, "survey_score_sum": 17}) is None
    assert survey_score("nps", {}) is None
    # 120/1000 vs 100/1000: +2 pp (+20%), p about 0.16 (two-sided two-proportion z-test)
    got = lift_stats({"enrolled": 1000, "converted": 120}, {"enrolled": 1000, "converted": 100})
    assert got["difference"] == 0.02 and got["relative"] == 0.2
    assert got["p_value"] is not None and abs(got["p_value"] - 0.1531) < 0.002
    assert lift_stats({"enrolled": 5}, {})["p_value"] is None
    from datetime import date

    report = summarize("c", None, date(2026, 3, 1), date(2026, 3, 2),
                       {(None, "treatment"): {"enrolled": 2, "sent": 0},
                        (None, "holdout"): {}})
    assert report.lift is None and [a.arm for a in report.arms] == ["treatment"]
    assert report.arms[0].rates["delivery_rate"] is None


def test_the_html_report_is_one_page_with_charts(
        lift: LocalStack, capsys: pytest.CaptureFixture[str]) -> None:
    for i in range(2):
        lift.ingest([event("order.delivered", customer(holdout=False, skip=i), DELIVERED)])
    lift.ingest([event("order.delivered", customer(holdout=True), DELIVERED)])
    lift.run_due(SMS_DUE)
    capsys.readouterr()
    assert main(["report", "lift", "--from", "2026-03-01", "--to", "2026-03-10",
                 "--format", "html"]) == 0
    page = capsys.readouterr().out
    assert page.startswith("<!doctype html>") and page.endswith("</html>\n")
    assert "<script" not in page and "http" not in page.replace("http-equiv", "")
    assert page.count("<svg") == 3  # conversion by arm, messages, per day
    assert "<td>treatment</td>" in page and "<td>holdout</td>" in page
    assert ">2026-03-01<" in page and ">2026-03-10<" in page


def test_the_html_report_escapes_what_it_shows() -> None:
    from datetime import date

    from chalicelib.tracking.report_html import format_html

    report = summarize("<img src=x onerror=alert(1)>", None, date(2026, 3, 1),
                       date(2026, 3, 2), {("<b>", "treatment"): {"enrolled": 1}})
    page = format_html([report], "now")
    assert "<img" not in page and "<b>" not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page


def test_open_and_click_rates_are_for_campaigns_that_send_email() -> None:
    from datetime import date

    counts = {(None, "treatment"): {"enrolled": 2, "sent": 2, "delivered": 2}}
    sms = summarize("c", None, date(2026, 3, 1), date(2026, 3, 2), counts, email=False)
    assert (sms.arms[0].rates["open_rate"], sms.arms[0].rates["click_rate"]) == (None, None)
    mail = summarize("c", None, date(2026, 3, 1), date(2026, 3, 2), counts, email=True)
    assert (mail.arms[0].rates["open_rate"], mail.arms[0].rates["click_rate"]) == (0.0, 0.0)
