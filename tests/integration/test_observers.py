"""Observer copies (DESIGN.md: "mystery shoppers"; docs/campaigns.md "observers"):
sampled copies of real sends for staff, never counted, links inert.

Through the real handlers on moto, the local Twilio server and SES v2 into moto.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from chalicelib import aws, clock
from chalicelib.config.loader import load_bundles
from chalicelib.local.stack import LocalStack
from chalicelib.render import load_template_dir
from chalicelib.store.models import MessageModel
from tests.conftest import FIXTURES, ROOT, load_event
from tests.integration.test_audit_stats import ENROLL_DAY, put_ses, rows, ses_event

DELIVERED = datetime(2026, 3, 1, 14, 3, tzinfo=UTC)
SMS_DUE = datetime(2026, 3, 3, 15, 0, tzinfo=UTC)
EMAIL_DUE = datetime(2026, 3, 8, 13, 30, tzinfo=UTC)
STAFF_PHONE = "+14155550100"
STAFF_EMAIL = "qa@aftercare.example"


def _campaigns(folder: Path, **observers: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("checkin", "tip"):
        definition = json.loads((FIXTURES / "campaigns" / f"{name}.json").read_text())
        definition["observers"] = {"sms": [STAFF_PHONE], "email": [STAFF_EMAIL], **observers}
        (folder / f"{name}.json").write_text(json.dumps(definition))
    return folder


def _customer(n: int, when: datetime = DELIVERED) -> dict[str, Any]:
    ev = load_event("order_delivered")
    ev["id"] = f"evt-{n}-{when:%d}"
    ev["occurred_at"] = clock.iso(when)
    ev["customer"] = {**ev["customer"], "id": f"c-{n}", "phone": f"+1415555{n:04d}",
                      "email": f"c{n}@example.com", "name": f"Customer {n}"}
    ev["order"] = {**ev["order"], "id": f"o-{n}-{when:%d}"}
    return ev


@pytest.fixture
def observed(stack: LocalStack, tmp_path: Path) -> LocalStack:
    stack.push_campaigns(_campaigns(tmp_path / "c"), ROOT / "templates")
    clock.set_now(DELIVERED)
    return stack


def _sms_to(stack: LocalStack, phone: str) -> list[dict[str, Any]]:
    return [m for m in stack.twilio.messages if m["to"] == phone]


def _requests_to(stack: LocalStack, phone: str) -> list[dict[str, list[str]]]:
    return [r for r in stack.twilio.create_requests if r.get("To") == [phone]]


def test_the_first_send_of_each_step_per_day_is_copied_once(observed: LocalStack) -> None:
    observed.ingest([_customer(n) for n in (1, 2, 3)])
    observed.run_due(SMS_DUE)
    customers = [m for m in observed.twilio.messages if m["to"] != STAFF_PHONE]
    (copy,) = _sms_to(observed, STAFF_PHONE)
    assert len(customers) == 3
    assert copy["body"] in {m["body"] for m in customers}  # what a customer got
    # Copies are not messages of ours and count nowhere.
    assert len(list(MessageModel.scan())) == 3
    assert sum(r.get("sent", 0) for r in rows("checkin").values()) == 3
    # No status callback for a copy (Twilio would report on it to the customer's message).
    (request,) = _requests_to(observed, STAFF_PHONE)
    assert "StatusCallback" not in request
    # Two days later, another day: the first send of that day is copied again.
    clock.set_now(DELIVERED + timedelta(days=2))
    observed.ingest([_customer(4, DELIVERED + timedelta(days=2))])
    observed.run_due(SMS_DUE + timedelta(days=2))
    assert len(_sms_to(observed, STAFF_PHONE)) == 2


def test_per_day_copies_that_many(stack: LocalStack, tmp_path: Path) -> None:
    stack.push_campaigns(_campaigns(tmp_path / "c", per_day=2), ROOT / "templates")
    clock.set_now(DELIVERED)
    stack.ingest([_customer(n) for n in (1, 2, 3)])
    stack.run_due(SMS_DUE)
    assert len(_sms_to(stack, STAFF_PHONE)) == 2


def test_an_email_copy_is_marked_tagged_and_its_links_open_nothing(
        observed: LocalStack) -> None:
    sent: list[dict[str, Any]] = []

    def capture(params: dict[str, Any], **_: Any) -> None:
        sent.append(params)

    ses = aws.client("sesv2")
    ses.meta.events.register("before-parameter-build.sesv2.SendEmail", capture)
    try:
        observed.ingest([_customer(1)])
        observed.run_due(EMAIL_DUE)
    finally:
        ses.meta.events.unregister("before-parameter-build.sesv2.SendEmail", capture)
    real, copy = sorted(sent, key=lambda r: r["Destination"]["ToAddresses"] != ["c1@example.com"])
    assert copy["Destination"] == {"ToAddresses": [STAFF_EMAIL]}
    subject = copy["Content"]["Simple"]["Subject"]["Data"]
    assert subject == "[Observer copy] " + real["Content"]["Simple"]["Subject"]["Data"]
    tags = {t["Name"]: t["Value"] for t in copy["EmailTags"]}
    assert tags == {"observer": "1", "campaign": "tip", "step": "week-one"}  # no message
    assert "Headers" not in copy["Content"]["Simple"]  # no List-Unsubscribe for staff
    # The copy's unsubscribe link looks like the real one and opens nothing.
    html = copy["Content"]["Simple"]["Body"]["Html"]["Data"]
    (link,) = set(re.findall(r"http://127\.0\.0\.1:8000(/l/unsubscribe/[\w.-]+)", html))
    assert observed.client.http.get(link).status_code == 404
    assert observed.client.http.post(link, headers={
        "Content-Type": "application/x-www-form-urlencoded"},
        body="List-Unsubscribe=One-Click").status_code == 404
    observed.pump("events", "ingest")
    from chalicelib.pipeline.ingest import load_customer

    customer = load_customer("c-1")
    assert customer is not None
    assert customer.profile["consent"]["email"]["granted"] is True


def test_ses_events_of_a_copy_are_dropped(observed: LocalStack) -> None:
    observed.ingest([_customer(1)])
    observed.run_due(EMAIL_DUE)
    complaint = ses_event("complaint", "ses-copy-id", "unused")
    complaint["mail"]["tags"] = {"observer": ["1"], "campaign": ["tip"], "step": ["week-one"]}
    assert put_ses(observed, complaint) == ["observer"]
    observed.pump("events", "ingest")
    assert sum(r.get("failed", 0) for r in rows("tip").values()) == 0


def test_a_send_that_fails_gets_no_copy_and_the_next_one_does(observed: LocalStack) -> None:
    observed.ingest([_customer(1)])
    observed.twilio.fail_next(400, 21211)  # the customer's number is refused: permanent
    observed.run_due(SMS_DUE)
    assert _sms_to(observed, STAFF_PHONE) == []
    assert [m.status for m in MessageModel.scan()] == ["failed"]
    observed.ingest([_customer(2, DELIVERED - timedelta(hours=1))])  # due the same day
    observed.run_due(SMS_DUE + timedelta(minutes=1))
    assert len(_sms_to(observed, STAFF_PHONE)) == 1


def test_a_failed_copy_leaves_the_customer_s_send_as_it_was(
        observed: LocalStack, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib.pipeline import observers

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("renderer down")

    monkeypatch.setattr(observers, "render_copy", broken)
    caplog.set_level(logging.INFO, logger="chalicelib")
    observed.ingest([_customer(1)])
    observed.run_due(SMS_DUE)
    assert _sms_to(observed, STAFF_PHONE) == []
    (msg,) = MessageModel.scan()
    assert msg.status == "sent"
    ours = [r for r in caplog.records if r.name.startswith("chalicelib")]
    logged = json.dumps([{**r.__dict__, "msg": r.getMessage()} for r in ours], default=str)
    assert STAFF_PHONE not in logged and "observer copy failed" in logged


def test_an_observer_twilio_refuses_neither_stops_the_others_nor_touches_the_customer(
        stack: LocalStack, tmp_path: Path) -> None:
    refused = "+14155550101"
    stack.push_campaigns(_campaigns(tmp_path / "c", sms=[refused, STAFF_PHONE]),
                         ROOT / "templates")
    stack.twilio.unsubscribed.add(refused)  # 21610 for that copy: the observer sent STOP
    clock.set_now(DELIVERED)
    stack.ingest([_customer(1)])
    stack.run_due(SMS_DUE)
    assert [r["To"] for r in stack.twilio.create_requests] == [
        ["+14155550001"], [refused], [STAFF_PHONE]]
    assert len(_sms_to(stack, STAFF_PHONE)) == 1
    (msg,) = MessageModel.scan()
    assert msg.status == "sent" and msg.error_code is None
    stack.pump("events", "ingest")
    from chalicelib.pipeline.ingest import load_customer

    customer = load_customer("c-1")
    assert customer is not None  # the copy's 21610 is no opt-out of the customer
    assert customer.profile["consent"]["sms"]["granted"] is True


def test_held_out_and_unsent_steps_get_no_copy(stack: LocalStack, tmp_path: Path) -> None:
    folder = _campaigns(tmp_path / "c")
    definition = json.loads((folder / "checkin.json").read_text())
    definition["holdout_percent"] = 50
    (folder / "checkin.json").write_text(json.dumps(definition))
    stack.push_campaigns(folder, ROOT / "templates")
    clock.set_now(DELIVERED)
    from chalicelib.journeys import keys

    held = [n for n in range(1, 40) if keys.in_holdout("checkin", f"c-{n}", 50)][:3]
    stack.ingest([_customer(n) for n in held])
    stack.run_due(SMS_DUE)
    assert stack.twilio.messages == []
    assert rows("checkin")[("-", "holdout", ENROLL_DAY)]["enrolled"] == 3


@pytest.mark.parametrize(("observers", "words"), [
    ({}, "observers: give at least one address in 'sms' or 'email'"),
    ({"sms": ["4155550100"]}, "observers.sms[0]"),
    ({"email": ["not-an-address"]}, "observers.email[0]"),
    ({"email": ["qa@example.com"], "per_day": 0}, "observers.per_day"),
    ({"email": ["qa@example.com"], "cc": ["x@example.com"]}, "observers.cc"),
])
def test_bad_observers_are_refused_with_their_path(
        tmp_path: Path, observers: dict[str, Any], words: str) -> None:
    definition = json.loads((FIXTURES / "campaigns" / "checkin.json").read_text())
    definition["observers"] = observers
    (tmp_path / "checkin.json").write_text(json.dumps(definition))
    _bundles, problems = load_bundles([tmp_path], load_template_dir(ROOT / "templates"))
    lines = [str(p) for p in problems if p.severity == "error"]
    assert any(words in line for line in lines), lines


def test_an_observer_who_texted_stop_gets_no_copy(stack: LocalStack, tmp_path: Path) -> None:
    from chalicelib.store import suppression

    other = "+14155550101"
    stack.push_campaigns(_campaigns(tmp_path / "c", sms=[other, STAFF_PHONE]),
                         ROOT / "templates")
    suppression.suppress("sms", other, "2026-02-01T00:00:00Z", "sms:STOP")
    clock.set_now(DELIVERED)
    stack.ingest([_customer(1)])
    stack.run_due(SMS_DUE)
    assert _sms_to(stack, other) == [] and len(_sms_to(stack, STAFF_PHONE)) == 1


def test_copy_slots_are_counted_in_the_stats_table_outside_any_campaign(
        observed: LocalStack) -> None:
    from chalicelib.store.models import StatsModel

    observed.ingest([_customer(n) for n in (1, 2)])
    observed.run_due(SMS_DUE)
    (slot,) = [i for i in StatsModel.scan() if i.pk.startswith("_observe#")]
    assert (slot.pk, slot.day, slot.copies) == (
        "_observe#checkin#checkin#copies", "2026-03-03", 1)
