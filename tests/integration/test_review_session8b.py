"""Session 8b review: the commits after b8d8ec3, through the real handlers on moto."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from chalicelib import clock, handlers
from chalicelib.local.stack import LocalStack
from chalicelib.pipeline.batch import BatchIncomplete
from chalicelib.store.models import MessageModel, ScheduleModel
from tests.conftest import FIXTURES, ROOT
from tests.integration.test_review_session8 import BIRTHDAY_DUE, _customer_update


def _retry_cancelled_then_planned_again(stack: LocalStack) -> tuple[str, datetime]:
    """A birthday greeting whose first attempt got a 429, cancelled by a change of
    date before its retry, then planned again by a change back: its message says
    ``cancelled``, its schedule item is pending with ``retries`` kept."""
    stack.push_campaigns(FIXTURES / "campaigns_birthday", ROOT / "templates")
    handlers.live().invalidate()
    clock.set_now(datetime(2026, 4, 1, 12, 0, tzinfo=UTC))
    stack.ingest([_customer_update("b-1-new", clock.now(), phone="+14155550131",
                                   birthday="1980-05-20", timezone="America/Chicago",
                                   consent={"sms": True})])
    stack.twilio.fail_next(429, 20429)
    results = stack.run_due(BIRTHDAY_DUE)
    retry_at = min(clock.parse_iso(d) for r in results for d in r["due"])
    (msg,) = list(MessageModel.scan())
    assert msg.status == "retry"
    clock.set_now(BIRTHDAY_DUE + timedelta(minutes=1))
    stack.ingest([_customer_update("b-1-typo", clock.now(), birthday="1980-05-21")])
    clock.set_now(BIRTHDAY_DUE + timedelta(minutes=2))
    stack.ingest([_customer_update("b-1-back", clock.now(), birthday="1980-05-20")])
    step = ScheduleModel.get(msg.message_id)
    assert step.status == "pending" and (step.retries or 0) > 0
    assert MessageModel.get(msg.message_id).status == "cancelled"
    return msg.message_id, retry_at




def _birthday_dir(tmp_path: Any, status: str) -> Any:
    import json

    d = tmp_path / f"bd-{status}"
    d.mkdir(exist_ok=True)
    definition = json.loads((FIXTURES / "campaigns_birthday" / "birthday.json").read_text())
    definition["status"] = status
    (d / "birthday.json").write_text(json.dumps(definition))
    return d


def _schedule() -> list[tuple[str, str | None, str | None, str]]:
    return sorted((s.status, s.outcome, s.reason, s.step["ref"]) for s in ScheduleModel.scan())


# -- 1. a step whose retry a change of date cancelled, planned again -----------------------


def test_a_second_change_of_date_cancels_the_step_planned_again_at_ingest(
        stack: LocalStack) -> None:
    sid, retry_at = _retry_cancelled_then_planned_again(stack)
    clock.set_now(BIRTHDAY_DUE + timedelta(minutes=3))
    stack.ingest([_customer_update("b-1-again", clock.now(), birthday="1980-05-22")])
    # As any other step planned for a date no longer the customer's: off the schedule.
    step = ScheduleModel.get(sid)
    assert (step.status, step.outcome, step.reason) == (
        "cancelled", "cancelled", "date changed"), (step.status, step.outcome)
    assert step.due_shard is None  # out of the due index: no tick claims it
    # Its due time passes: only the greeting of the new date is sent.
    stack.run_due(max(retry_at, clock.now()) + timedelta(minutes=1))
    stack.run_due(datetime(2026, 5, 23, tzinfo=UTC))
    assert len(stack.twilio.create_requests) == 2  # the 429 attempt, then 2026-05-22
    # A year on, only the new date is greeted (an old-date step left pending by the
    # change back is cancelled at its time, "date changed").
    stack.run_due(datetime(2027, 5, 21, tzinfo=UTC))
    stack.run_due(datetime(2027, 5, 23, tzinfo=UTC))
    assert len(stack.twilio.create_requests) == 3
    assert not [r for r in _schedule() if r[3] == "birthday:1980-05-20:2027"
                and r[1] not in (None, "cancelled")]


def test_a_first_change_of_date_settles_the_message_of_a_step_waiting_for_its_retry(
        stack: LocalStack) -> None:
    sid, _ = _retry_cancelled_then_planned_again(stack)
    msg = MessageModel.get(sid)
    assert [h["status"] for h in msg.history][:2] == ["sending", "retry"]
    assert msg.reason == "date changed"


# -- 3. a paused date campaign resumed: the sender's cache and paused_version ---------------


def _birthday_dir(tmp_path: Any, status: str) -> Any:
    import json

    d = tmp_path / f"bd-{status}"
    d.mkdir(exist_ok=True)
    definition = json.loads((FIXTURES / "campaigns_birthday" / "birthday.json").read_text())
    definition["status"] = status
    (d / "birthday.json").write_text(json.dumps(definition))
    return d


def test_a_date_campaign_resumed_just_after_the_senders_read_keeps_its_yearly_chain(
        stack: LocalStack, tmp_path: Any) -> None:
    from chalicelib.config.loader import load_bundles
    from chalicelib.render import load_template_dir
    from chalicelib.store.campaigns import load_live, push

    stack.push_campaigns(FIXTURES / "campaigns_birthday", ROOT / "templates")
    clock.set_now(datetime(2026, 4, 1, 12, 0, tzinfo=UTC))
    stack.ingest([_customer_update("b-1-new", clock.now(), phone="+14155550131",
                                   birthday="1980-05-20", timezone="America/Chicago",
                                   consent={"sms": True})])
    stack.push_campaigns(_birthday_dir(tmp_path, "paused"), ROOT / "templates")
    assert handlers.live().get().campaigns.get("birthday") is None  # the sender's read
    # The marketer resumes it from the CLI (another process: the sender's cache stays).
    (bundle,), _ = load_bundles([_birthday_dir(tmp_path, "active")],
                                load_template_dir(ROOT / "templates"))
    push(bundle.campaign, bundle.templates)
    live = load_live().campaigns.get("birthday")
    assert live is not None and live.version == 3
    # Well within a second of the read: the campaign is active, so the step is not
    # cancelled but retried (its claim lapses), and sent once the sender reads again.
    with pytest.raises(BatchIncomplete):
        stack.run_due(BIRTHDAY_DUE)
    assert stack.twilio.create_requests == []
    assert [r[:2] for r in _schedule()] == [("claimed", None)]
    handlers.live().invalidate()
    stack.run_due(BIRTHDAY_DUE + timedelta(minutes=6))  # after the claim's lease
    assert len(stack.twilio.create_requests) == 1


# -- 4. SES Open and Click -------------------------------------------------------------------


def test_an_unsubscribe_click_is_not_engagement_and_opens_count_once() -> None:
    from chalicelib.tracking.delivery import fold
    from chalicelib.tracking.ses_events import report_for

    def ses(kind: str, **more: Any) -> dict[str, Any]:
        return {"eventType": kind, "mail": {"messageId": "ses-1",
                                            "tags": {"message": ["m-1"]}}, **more}

    assert report_for(ses("Click", click={
        "link": "https://x.example/l/unsubscribe/abc.def"})) is None
    click = report_for(ses("Click", click={"link": "https://shop.example/care"}))
    assert click is not None and click.status == "clicked"
    opened = report_for(ses("Open", open={}))
    assert opened is not None and opened.status == "opened"
    first = fold([], "delivered", opened, "2026-03-02T10:00:00Z")
    assert first is not None and first.counter == "opened" and first.status == "delivered"
    assert fold(first.history, first.status, opened, "2026-03-02T11:00:00Z") is None
