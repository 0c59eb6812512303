"""Audit of the stats counters (campaign x variant x arm x day): each real-world
occurrence counted exactly once, on the right row, whatever SQS, Twilio or SES
deliver twice, out of order or at the same time.

Everything goes through the real handlers (``chalice.test.Client`` with real SQS and
scheduled-event shapes), moto, the real twilio client against the local Twilio
server (callbacks signed with twilio's ``RequestValidator``) and real-shaped SES
events on the ses-events queue. Expectations come from DESIGN.md, README.md and
docs/ (chiefly docs/api.md "Stats" and docs/campaigns.md "goal"), not from the code:
a defect is kept as a strict xfail whose reason starts with ``DEFECT:``; correct
behaviour stays a plain test.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from itertools import count
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from chalicelib import aws, clock, handlers, settings
from chalicelib.journeys import keys
from chalicelib.local.stack import LINK_KEY, TWILIO_AUTH_TOKEN, LocalStack
from chalicelib.pipeline.batch import BatchIncomplete
from chalicelib.store import tx
from chalicelib.store.models import COUNTERS, MessageModel, ScheduleModel, StatsModel
from chalicelib.tracking import links
from tests.conftest import FIXTURES, ROOT, load_event
from tests.integration.sqs_helpers import invoke, receive

DELIVERED = datetime(2026, 3, 1, 14, 3, tzinfo=UTC)
SMS_DUE = datetime(2026, 3, 3, 15, 0, tzinfo=UTC)  # P2D at 10:00 New York (EST)
EMAIL_DUE = datetime(2026, 3, 8, 13, 30, tzinfo=UTC)  # P7D at 09:30 New York (EDT)
ENROLL_DAY, SMS_DAY, EMAIL_DAY = "2026-03-01", "2026-03-03", "2026-03-08"
PHONE = "+14155550123"
EMAIL = "ana@example.com"
FORM = "application/x-www-form-urlencoded"
VARIANTS = [("a", 50), ("b", 50)]

_IDS = count(1)


# -- helpers ------------------------------------------------------------------------------


Row = tuple[str, str, str]  # variant ("-" for none), arm, day


def rows(campaign: str) -> dict[Row, dict[str, int]]:
    """Every non-zero counter of ``campaign`` by (variant, arm, day), shards summed."""
    out: dict[Row, Counter[str]] = {}
    for item in StatsModel.scan():
        camp, variant, arm, _shard = item.pk.split("#")
        if camp != campaign:
            continue
        totals = out.setdefault((variant, arm, item.day), Counter())
        for name in COUNTERS:
            totals[name] += int(getattr(item, name) or 0)
    return {k: {n: v for n, v in c.items() if v} for k, c in out.items() if +c}


def expect(*entries: tuple[Row, dict[str, int]]) -> dict[Row, dict[str, int]]:
    """Expected rows, entries of the same row added up."""
    out: dict[Row, Counter[str]] = {}
    for row, counts in entries:
        out.setdefault(row, Counter()).update(counts)
    return {k: dict(v) for k, v in out.items()}


def total(campaign: str, counter: str) -> int:
    return sum(r.get(counter, 0) for r in rows(campaign).values())


def phone_of(cid: str) -> str:
    return PHONE if cid == "c-42" else f"+1415556{int(cid.removeprefix('c-')):04d}"


def event(etype: str, cid: str, when: datetime, *, eid: str | None = None,
          order: str | None = None) -> dict[str, Any]:
    """A real-shaped event of ``etype`` for customer ``cid`` at ``when``."""
    ev = load_event("order_delivered")
    ev["type"] = etype
    ev["id"] = eid or f"evt-{next(_IDS)}"
    ev["occurred_at"] = clock.iso(when)
    ev["customer"] = {**ev["customer"], "id": cid, "phone": phone_of(cid),
                      "email": f"{cid}@example.com" if cid != "c-42" else EMAIL}
    ev["order"] = {**ev["order"], "id": order or f"o-{cid}"}
    return ev


def ingest_direct(stack: LocalStack, events: list[dict[str, Any]]) -> Any:
    """Hand events to the ingest function as one SQS batch (records never queued, so
    a nested invocation cannot pick up the outer one's records)."""
    records = [{"MessageId": f"m-{next(_IDS)}", "ReceiptHandle": f"rh-{next(_IDS)}",
                "Body": json.dumps(e)} for e in events]
    return invoke(stack, "ingest", "events", records).payload


def first_write_runs(monkeypatch: pytest.MonkeyPatch, during: Callable[[], None]) -> None:
    """Run ``during`` whole just before the next TransactWriteItems is sent: what
    the outer write read is then stale (two workers racing)."""
    real = tx._write
    state = {"done": False}

    def write(ops: Any) -> list[int]:
        if not state["done"]:
            state["done"] = True
            during()
        return real(ops)

    monkeypatch.setattr(tx, "_write", write)


def sms_messages(campaign: str | None = None) -> list[MessageModel]:
    return sorted((m for m in MessageModel.scan() if m.channel == "sms"
                   and (campaign is None or m.campaign_id == campaign)),
                  key=lambda m: m.decided_at)


def email_message() -> MessageModel:
    (msg,) = [m for m in MessageModel.scan() if m.channel == "email"]
    return msg


def write_campaigns(folder: Path, *definitions: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for d in definitions:
        (folder / f"{d['id']}.json").write_text(json.dumps(d))
    return folder


def lift_campaign(**changes: Any) -> dict[str, Any]:
    return {"id": "lift", "name": "Lift check-in", "trigger": {"event": "order.delivered"},
            "steps": [{"id": "checkin", "after": "P2D", "at": "10:00", "channel": "sms",
                       "template": "checkin", "survey": "csat", "expire_after": "P2D"}],
            "exit": {"event": "order.returned"},
            "goal": {"event": "order.placed", "within": "P30D"},
            "holdout_percent": 50,
            "variants": [{"id": v, "weight": w} for v, w in VARIANTS], **changes}


def customer(holdout: bool, skip: int = 0) -> str:
    """The ``skip``-th customer id whose holdout membership of ``lift`` is ``holdout``."""
    found = (c for c in (f"c-{i}" for i in range(1, 500))
             if keys.in_holdout("lift", c, 50) is holdout)
    for _ in range(skip):
        next(found)
    return next(found)


def variant(cid: str) -> str:
    return str(keys.pick_variant("lift", cid, VARIANTS))


@pytest.fixture
def lift(stack: LocalStack, tmp_path: Path) -> LocalStack:
    """One campaign: an SMS CSAT check-in (P2D at 10:00), 50% holdout, variants a/b,
    goal ``order.placed`` within P30D."""
    stack.push_campaigns(write_campaigns(tmp_path / "lift", lift_campaign()), ROOT / "templates")
    clock.set_now(DELIVERED)
    return stack


@pytest.fixture
def known(slice_stack: LocalStack) -> LocalStack:
    """c-42 enrolled by the fixture delivery in ``checkin`` (SMS, CSAT, SMS_DUE) and
    ``tip`` (email, EMAIL_DUE); no holdout, no variants."""
    clock.set_now(DELIVERED)
    slice_stack.ingest([load_event("order_delivered")])
    return slice_stack


# Twilio webhooks, signed as Twilio signs them ---------------------------------------------


def _signed_post(stack: LocalStack, path: str, params: dict[str, str], query: str = "") -> Any:
    from twilio.request_validator import RequestValidator

    target = path + (f"?{query}" if query else "")
    signature = RequestValidator(TWILIO_AUTH_TOKEN).compute_signature(
        settings.load().public_base_url + target, params)
    return stack.client.http.post(target, body=urlencode(params).encode(), headers={
        "Content-Type": FORM, "X-Twilio-Signature": signature})


def text_back(stack: LocalStack, body: str, sender: str = PHONE) -> bytes:
    sid = f"SM{next(_IDS):032x}"
    params = {"ToCountry": "US", "SmsMessageSid": sid, "MessageSid": sid, "NumMedia": "0",
              "SmsStatus": "received", "Body": body, "To": "+15005550006", "From": sender,
              "AccountSid": stack.twilio.account_sid, "ApiVersion": "2010-04-01"}
    reply = _signed_post(stack, "/webhooks/twilio/inbound", params)
    assert reply.status_code == 200, reply.body
    text: bytes = reply.body
    return text


def replay_callbacks(stack: LocalStack) -> list[str]:
    """Every status callback Twilio posted, posted again exactly as signed."""
    base = settings.load().public_base_url
    results = []
    for cb in stack.twilio.callbacks:
        r = stack.client.http.post(cb.url.removeprefix(base), headers=dict(cb.headers),
                                   body=urlencode(dict(cb.params)).encode())
        assert r.status_code == 200
        results.append(json.loads(r.body)["result"])
    return results


def status_callback(stack: LocalStack, msg: MessageModel, status: str) -> str:
    sid = str(msg.provider_id)
    params = {"AccountSid": stack.twilio.account_sid, "ApiVersion": "2010-04-01",
              "MessageSid": sid, "SmsSid": sid, "MessageStatus": status,
              "SmsStatus": status, "To": PHONE, "From": "+15005550006"}
    reply = _signed_post(stack, "/webhooks/twilio/status", params, f"m={msg.message_id}")
    assert reply.status_code == 200
    return str(json.loads(reply.body)["result"])


# SES events and survey links ---------------------------------------------------------------


def ses_event(name: str, provider_id: str, message_id: str, **changes: Any) -> dict[str, Any]:
    ev: dict[str, Any] = json.loads((FIXTURES / "ses_events" / f"{name}.json").read_text()
                                    .replace("MESSAGE_ID", provider_id)
                                    .replace("TAGGED_ID", message_id))
    ev.update(changes)
    return ev


def put_ses(stack: LocalStack, *bodies: dict[str, Any] | str) -> list[str]:
    """SES event records through the ses-events queue; the result of each."""
    sqs = aws.client("sqs")
    url = aws.queue_url(settings.resource_name("ses-events"))
    results: list[str] = []
    for body in bodies:  # one at a time: the results in order
        sqs.send_message(QueueUrl=url,
                         MessageBody=body if isinstance(body, str) else json.dumps(body))
        (summary,) = stack.pump("ses-events", "ses_events")
        assert summary["processed"] == 1 and summary["dead_lettered"] == 0, summary
        (result,) = summary["results"]
        results.append(str(result))
    return results


def sns_envelope(ev: dict[str, Any]) -> str:
    return json.dumps({"Type": "Notification", "MessageId": f"sns-{next(_IDS)}",
                       "TopicArn": "arn:aws:sns:us-east-1:123456789012:aftercare-local-ses-events",
                       "Message": json.dumps(ev), "Timestamp": "2026-03-08T13:30:03.000Z"})


def survey_token(msg: MessageModel, kind: str) -> str:
    """A survey link's token as the sender makes it (``m``, ``k``, ``t``, ``exp``), with
    an expiry after the real clock the route checks against."""
    exp = int(clock.real_now().timestamp()) + 86_400
    return links.sign({"m": msg.message_id, "k": kind, "t": "survey", "exp": exp},
                      LINK_KEY.encode())


def answer_link(stack: LocalStack, msg: MessageModel, kind: str, score: int) -> Any:
    return stack.client.http.post(f"/l/survey/{survey_token(msg, kind)}",
                                  headers={"Content-Type": FORM},
                                  body=f"score={score}".encode())


def survey_counts(msg: MessageModel) -> dict[str, int]:
    return rows(msg.campaign_id).get(
        (msg.variant or "-", "treatment", msg.decided_at[:10]), {})


# -- ingest: enrolled, per day, arm and variant --------------------------------------------------


def test_a_trigger_delivered_three_times_counts_enrolled_once_on_its_row(
        lift: LocalStack) -> None:
    t = customer(holdout=False)
    ev = event("order.delivered", t, DELIVERED)
    lift.ingest([ev, ev])  # twice in one batch
    clock.set_now(DELIVERED + timedelta(hours=5))
    lift.ingest([ev])  # and again, later
    assert rows("lift") == {(variant(t), "treatment", ENROLL_DAY): {"enrolled": 1}}
    assert len([s for s in ScheduleModel.scan()]) == 1


def test_a_trigger_raced_by_its_own_copy_enrolls_once(
        lift: LocalStack, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two ingest workers hold the same event: the copy commits first, whole; the
    other's transaction must then change nothing."""
    t = customer(holdout=False)
    ev = event("order.delivered", t, DELIVERED)
    inner: list[Any] = []
    first_write_runs(monkeypatch, lambda: inner.append(ingest_direct(lift, [ev])))
    outer = ingest_direct(lift, [ev])
    assert inner and outer["dead_lettered"] == 0
    assert rows("lift") == {(variant(t), "treatment", ENROLL_DAY): {"enrolled": 1}}


def test_a_late_trigger_counts_enrolled_on_the_day_it_happened(lift: LocalStack) -> None:
    t = customer(holdout=False)
    clock.set_now(DELIVERED + timedelta(days=1, hours=3))  # the event arrives a day late
    lift.ingest([event("order.delivered", t, DELIVERED)])
    assert rows("lift") == {(variant(t), "treatment", ENROLL_DAY): {"enrolled": 1}}


# -- the sender: arms, duplicates, no-send outcomes ----------------------------------------------


def test_holdout_and_treatment_count_on_their_own_arm_once_per_send_request(
        lift: LocalStack) -> None:
    """Each send request delivered twice by SQS: one `sent` (treatment, the send day),
    one `held_out` (holdout arm), one Twilio message, for the treated customer only."""
    t, h = customer(holdout=False), customer(holdout=True)
    lift.ingest([event("order.delivered", t, DELIVERED),
                 event("order.delivered", h, DELIVERED)])
    lift.tick(SMS_DUE)
    requests = receive("sends", visibility=300)
    assert len(requests) == 2
    invoke(lift, "send", "sends", requests)
    invoke(lift, "send", "sends", requests)  # SQS delivers both again
    lift.run_due(SMS_DUE + timedelta(hours=1))
    assert [m["to"] for m in lift.twilio.messages] == [phone_of(t)]
    expected = {
        (variant(t), "treatment", ENROLL_DAY): {"enrolled": 1},
        (variant(h), "holdout", ENROLL_DAY): {"enrolled": 1},
        (variant(t), "treatment", SMS_DAY): {"sent": 1},
        (variant(h), "holdout", SMS_DAY): {"held_out": 1},
    }
    assert rows("lift") == expected


def test_suppressed_and_expired_steps_count_once_on_the_day_decided(lift: LocalStack) -> None:
    stopped, late = customer(holdout=False), customer(holdout=False, skip=1)
    lift.ingest([event("order.delivered", stopped, DELIVERED),
                 event("order.delivered", late, DELIVERED)])
    clock.set_now(DELIVERED + timedelta(days=1))
    text_back(lift, "STOP", sender=phone_of(stopped))
    lift.pump("events", "ingest")
    lift.tick(SMS_DUE)  # both steps are due at 10:00 New York on the third day
    requests = receive("sends", visibility=300)
    by_customer = {json.loads(r["Body"])["step"]["customer_id"]: r for r in requests}
    invoke(lift, "send", "sends", [by_customer[stopped]])
    invoke(lift, "send", "sends", [by_customer[stopped]])  # delivered again
    # `late`'s request is lost with its Lambda; the step is claimed again after the
    # lease, days later, past its expire_after (P2D).
    lift.run_due(SMS_DUE + timedelta(days=3))
    lift.run_due(SMS_DUE + timedelta(days=3, hours=1))
    assert lift.twilio.create_requests == []
    assert rows("lift") == expect(
        ((variant(stopped), "treatment", ENROLL_DAY), {"enrolled": 1}),
        ((variant(late), "treatment", ENROLL_DAY), {"enrolled": 1}),
        ((variant(stopped), "treatment", SMS_DAY), {"suppressed": 1}),
        ((variant(late), "treatment", "2026-03-06"), {"expired": 1}),
    )
    assert total("lift", "suppressed") == 1 and total("lift", "expired") == 1
    assert total("lift", "enrolled") == 2 and total("lift", "sent") == 0


# -- conversions: intent-to-treat, in the window, once per enrollment ---------------------------


def test_conversions_count_in_both_arms_once_per_enrollment_on_the_enrollment_row(
        lift: LocalStack) -> None:
    t, h = customer(holdout=False), customer(holdout=True)
    lift.ingest([event("order.delivered", t, DELIVERED),
                 event("order.delivered", h, DELIVERED)])
    clock.set_now(DELIVERED + timedelta(days=9))
    orders = []
    for cid in (t, h):
        first = event("order.placed", cid, DELIVERED + timedelta(days=4), order=f"o2-{cid}")
        second = event("order.placed", cid, DELIVERED + timedelta(days=8), order=f"o3-{cid}")
        orders += [first, first, second, first]  # the first one delivered three times
    lift.ingest(orders)
    assert rows("lift") == {
        (variant(t), "treatment", ENROLL_DAY): {"enrolled": 1, "converted": 1},
        (variant(h), "holdout", ENROLL_DAY): {"enrolled": 1, "converted": 1},
    }


def test_goals_at_the_enrollment_instant_or_past_the_window_do_not_convert(
        lift: LocalStack) -> None:
    t, h = customer(holdout=False), customer(holdout=True)
    lift.ingest([event("order.delivered", t, DELIVERED),
                 event("order.delivered", h, DELIVERED)])
    clock.set_now(DELIVERED + timedelta(days=40))
    lift.ingest([
        event("order.placed", t, DELIVERED, order="o-same-instant"),
        event("order.placed", t, DELIVERED + timedelta(days=31), order="o-too-late"),
        event("order.placed", h, DELIVERED + timedelta(days=29), order="o-in-window"),
    ])
    assert total("lift", "converted") == 1
    assert rows("lift")[(variant(h), "holdout", ENROLL_DAY)] == {"enrolled": 1, "converted": 1}
    assert rows("lift")[(variant(t), "treatment", ENROLL_DAY)] == {"enrolled": 1}


def test_a_goal_event_arriving_after_the_window_closed_still_converts(lift: LocalStack) -> None:
    """Late, not out of the window: it happened on day 9 and arrives on day 45."""
    t = customer(holdout=False)
    lift.ingest([event("order.delivered", t, DELIVERED)])
    clock.set_now(DELIVERED + timedelta(days=45))
    lift.ingest([event("order.placed", t, DELIVERED + timedelta(days=9), order="o-late")])
    assert rows("lift")[(variant(t), "treatment", ENROLL_DAY)] == {"enrolled": 1,
                                                                   "converted": 1}


def test_a_goal_logged_before_its_late_trigger_still_converts(lift: LocalStack) -> None:
    t = customer(holdout=False)
    clock.set_now(DELIVERED + timedelta(days=6))
    # The order placed on day 5 arrives first; the day-0 delivery that enrolled the
    # customer arrives after it (a delivery system that was down).
    lift.ingest([event("order.placed", t, DELIVERED + timedelta(days=5), order="o-next")])
    lift.ingest([event("order.delivered", t, DELIVERED)])
    assert rows("lift")[(variant(t), "treatment", ENROLL_DAY)] == {"enrolled": 1,
                                                                   "converted": 1}


def test_two_goal_events_racing_convert_the_enrollment_once(
        lift: LocalStack, monkeypatch: pytest.MonkeyPatch) -> None:
    h = customer(holdout=True)
    lift.ingest([event("order.delivered", h, DELIVERED)])
    clock.set_now(DELIVERED + timedelta(days=7))
    a = event("order.placed", h, DELIVERED + timedelta(days=5), order="o-a")
    b = event("order.placed", h, DELIVERED + timedelta(days=6), order="o-b")
    inner: list[Any] = []
    first_write_runs(monkeypatch, lambda: inner.append(ingest_direct(lift, [b])))
    outer = ingest_direct(lift, [a])
    assert inner and outer["dead_lettered"] == 0
    assert rows("lift") == {(variant(h), "holdout", ENROLL_DAY): {"enrolled": 1,
                                                                  "converted": 1}}


# -- Twilio status callbacks ---------------------------------------------------------------------


def test_callbacks_before_the_reply_and_replayed_count_sent_and_delivered_once(
        known: LocalStack) -> None:
    """Twilio posts queued/sent/delivered before its API reply reaches the sender; then
    every callback is posted again, a day later."""
    known.twilio.report_before_reply()
    known.run_due(SMS_DUE)
    (msg,) = sms_messages()
    assert msg.status == "delivered"
    clock.set_now(SMS_DUE + timedelta(days=1))
    assert set(replay_callbacks(known)) == {"duplicate"}
    assert known.twilio.deliver_callbacks() == 0
    assert rows("checkin") == {("-", "treatment", ENROLL_DAY): {"enrolled": 1},
                               ("-", "treatment", SMS_DAY): {"sent": 1, "delivered": 1}}
    assert rows("tip") == {("-", "treatment", ENROLL_DAY): {"enrolled": 1}}


def test_a_delivered_report_two_days_late_counts_on_the_send_day(known: LocalStack) -> None:
    known.run_due(SMS_DUE)
    clock.set_now(SMS_DUE + timedelta(days=2))
    assert known.twilio.deliver_callbacks() == 3
    (msg,) = sms_messages()
    assert status_callback(known, msg, "delivered") == "duplicate"
    assert rows("checkin")[("-", "treatment", SMS_DAY)] == {"sent": 1, "delivered": 1}
    assert ("-", "treatment", "2026-03-05") not in rows("checkin")


def test_undelivered_and_failed_out_of_order_and_twice_count_one_failure(
        known: LocalStack) -> None:
    known.run_due(SMS_DUE)
    (msg,) = sms_messages()
    results = [status_callback(known, msg, s)
               for s in ("failed", "sent", "undelivered", "failed", "undelivered")]
    assert results == ["recorded", "recorded", "recorded", "duplicate", "duplicate"]
    assert rows("checkin")[("-", "treatment", SMS_DAY)] == {"sent": 1, "failed": 1}


def _evening(stack: LocalStack, tmp_path: Path) -> datetime:
    """A check-in at 18:59 New York two days after the delivery: 23:59Z, a minute
    before the UTC day ends. Returns its due time."""
    stack.push_campaigns(write_campaigns(tmp_path / "evening", {
        "id": "evening", "name": "Evening check-in", "trigger": {"event": "order.delivered"},
        "steps": [{"id": "checkin", "after": "P2D", "at": "18:59", "channel": "sms",
                   "template": "checkin", "expire_after": "P2D"}]}), ROOT / "templates")
    clock.set_now(DELIVERED)
    stack.ingest([load_event("order_delivered")])
    return datetime(2026, 3, 3, 23, 59, tzinfo=UTC)


def test_a_send_straddling_midnight_counts_sent_beside_its_delivered(
        stack: LocalStack, tmp_path: Path) -> None:
    due = _evening(stack, tmp_path)
    sms = handlers.channels().sms()
    real_send = sms.send

    def slow_send(message: Any) -> Any:  # Twilio answers 20 s later, past midnight
        result = real_send(message)
        clock.set_now(due + timedelta(seconds=80))
        return result

    sms.send = slow_send
    try:
        stack.run_due(due + timedelta(seconds=30))
    finally:
        del sms.send
    stack.twilio.deliver_callbacks()
    assert total("evening", "sent") == 1 and total("evening", "delivered") == 1
    assert rows("evening")[("-", "treatment", "2026-03-03")] == {"sent": 1, "delivered": 1}


def _die_after_twilio_reported(stack: LocalStack, monkeypatch: pytest.MonkeyPatch,
                               due: datetime) -> None:
    """Twilio accepts the message and reports it (queued, sent, delivered) before its
    reply; the worker then dies before recording the outcome."""
    from chalicelib.pipeline import send

    stack.twilio.report_before_reply()
    stack.tick(due)
    requests = receive("sends", visibility=300)

    def die(*_: Any, **__: Any) -> Any:
        raise RuntimeError("Lambda timed out")

    monkeypatch.setattr(send, "record_outcome", die)
    with pytest.raises(BatchIncomplete):
        invoke(stack, "send", "sends", requests)
    monkeypatch.undo()
    (msg,) = sms_messages()
    assert msg.status == "delivered"


def test_a_stuck_send_twilio_reported_is_counted_sent_once_not_ambiguous(
        known: LocalStack, monkeypatch: pytest.MonkeyPatch) -> None:
    _die_after_twilio_reported(known, monkeypatch, SMS_DUE)
    known.tick(SMS_DUE + timedelta(minutes=16))  # the sweep settles it
    known.tick(SMS_DUE + timedelta(minutes=40))
    assert set(replay_callbacks(known)) == {"duplicate"}
    assert len(known.twilio.create_requests) == 1
    assert rows("checkin") == {("-", "treatment", ENROLL_DAY): {"enrolled": 1},
                               ("-", "treatment", SMS_DAY): {"sent": 1, "delivered": 1}}


def test_a_stuck_send_swept_after_midnight_counts_sent_on_the_send_day(
        stack: LocalStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    due = _evening(stack, tmp_path)
    _die_after_twilio_reported(stack, monkeypatch, due + timedelta(seconds=30))
    stack.tick(due + timedelta(minutes=17))  # 00:16 the next day
    assert total("evening", "sent") == 1 and total("evening", "ambiguous") == 0
    assert rows("evening")[("-", "treatment", "2026-03-03")] == {"sent": 1, "delivered": 1}


# -- SES events ----------------------------------------------------------------------------------


def test_an_ses_delivery_twice_and_in_an_sns_envelope_counts_once_on_the_send_day(
        known: LocalStack) -> None:
    known.run_due(EMAIL_DUE)
    msg = email_message()
    clock.set_now(EMAIL_DUE + timedelta(days=1))  # SES events arrive the next day
    ev = ses_event("delivery", str(msg.provider_id), msg.message_id)
    assert put_ses(known, ev) == ["recorded"]
    assert put_ses(known, ev, sns_envelope(ev)) == ["duplicate", "duplicate"]
    assert rows("tip") == {("-", "treatment", ENROLL_DAY): {"enrolled": 1},
                           ("-", "treatment", EMAIL_DAY): {"sent": 1, "delivered": 1}}
    # The SMS campaign's check-in expired unsent; nothing of the email landed there.
    assert rows("checkin") == {("-", "treatment", ENROLL_DAY): {"enrolled": 1},
                               ("-", "treatment", EMAIL_DAY): {"expired": 1}}


def test_an_ses_delivery_that_outruns_the_senders_outcome_counts_once(
        known: LocalStack) -> None:
    email = handlers.channels().email()
    real_send = email.send

    def send_then_report(message: Any, tags: dict[str, str]) -> Any:
        result = real_send(message, tags)  # SES took it: its Delivery event comes first
        ev = ses_event("delivery", str(result.provider_id), tags["message"])
        assert put_ses(known, ev, ev) == ["recorded", "duplicate"]
        return result

    email.send = send_then_report
    try:
        known.run_due(EMAIL_DUE)
    finally:
        del email.send
    msg = email_message()
    assert msg.status == "delivered"
    assert rows("tip")[("-", "treatment", EMAIL_DAY)] == {"sent": 1, "delivered": 1}


def test_a_hard_bounce_then_a_reject_and_their_copies_count_one_failure(
        known: LocalStack) -> None:
    known.run_due(EMAIL_DUE)
    msg = email_message()
    bounce = ses_event("bounce_permanent", str(msg.provider_id), msg.message_id)
    reject = ses_event("delivery", str(msg.provider_id), msg.message_id, eventType="Reject",
                       reject={"reason": "Bad content"})
    reject.pop("delivery")
    assert put_ses(known, bounce, reject, bounce, reject) == [
        "recorded", "recorded", "duplicate", "duplicate"]
    assert rows("tip")[("-", "treatment", EMAIL_DAY)] == {"sent": 1, "failed": 1}


def _open_and_click(msg: MessageModel) -> list[dict[str, Any]]:
    base = ses_event("delivery", str(msg.provider_id), msg.message_id)
    base.pop("delivery")
    opened = {**base, "eventType": "Open",
              "open": {"timestamp": "2026-03-08T14:00:00.000Z", "userAgent": "Mozilla/5.0",
                       "ipAddress": "192.0.2.1"}}
    clicked = {**base, "eventType": "Click",
               "click": {"timestamp": "2026-03-08T14:00:09.000Z", "userAgent": "Mozilla/5.0",
                         "ipAddress": "192.0.2.1", "link": "https://example.com/care",
                         "linkTags": {}}}
    return [opened, clicked]


def test_ses_opens_and_clicks_change_no_status_and_no_delivery_counter(
        known: LocalStack) -> None:
    """docs/api.md: `Open` and `Click` are kept in the history once each (however often
    SNS delivers them, however often the mail is opened), change no status, and bump
    only `opened` and `clicked`; a click on the unsubscribe link is not counted."""
    known.run_due(EMAIL_DUE)
    msg = email_message()
    before = rows("tip")[("-", "treatment", EMAIL_DAY)]
    events = _open_and_click(msg)
    again = [{**e, "open": {**e["open"], "timestamp": "2026-03-09T08:00:00.000Z"}}
             if "open" in e else e for e in events]
    assert put_ses(known, *events, *again) == ["recorded", "recorded",
                                               "duplicate", "duplicate"]
    unsubscribe = {**events[1], "click": {**events[1]["click"],
                                           "link": "https://api.example.com/l/unsubscribe/x.y"}}
    assert put_ses(known, unsubscribe) == ["ignored"]
    after = MessageModel.get(msg.message_id, consistent_read=True)
    assert after.status == msg.status
    assert [h["status"] for h in after.history] == [
        *(h["status"] for h in msg.history), "opened", "clicked"]
    counts = rows("tip")[("-", "treatment", EMAIL_DAY)]
    assert counts == {**before, "opened": 1, "clicked": 1}


def test_ses_opens_and_clicks_count_once_per_message_as_design_says(
        known: LocalStack) -> None:
    known.run_due(EMAIL_DUE)
    msg = email_message()
    events = _open_and_click(msg)
    put_ses(known, *events, *events)
    counts = rows("tip")[("-", "treatment", EMAIL_DAY)]
    assert (counts.get("opened"), counts.get("clicked")) == (1, 1)


# -- surveys -------------------------------------------------------------------------------------


def test_a_csat_answered_by_sms_then_by_link_counts_once(known: LocalStack) -> None:
    known.run_due(SMS_DUE)
    (msg,) = sms_messages()
    clock.set_now(SMS_DUE + timedelta(hours=2))
    assert known.client.http.get(f"/l/survey/{survey_token(msg, 'csat')}").status_code == 200
    assert survey_counts(msg) == {"sent": 1}  # a GET (a link scanner) counts nothing
    assert b"Thank you" in text_back(known, "4")
    assert b"Thank you" not in text_back(known, "5")  # a second SMS answer
    reply = answer_link(known, msg, "csat", 2)
    assert reply.status_code == 200 and b"already" in reply.body
    after = MessageModel.get(msg.message_id, consistent_read=True)
    assert (after.survey_kind, after.survey_score) == ("csat", 4)
    assert survey_counts(msg) == {"sent": 1, "survey_responses": 1, "survey_score_sum": 4}


def _survey_stack(stack: LocalStack, tmp_path: Path) -> dict[str, MessageModel]:
    """c-42 got three survey SMS (CSAT, NPS, CES), one per campaign."""
    step = {"after": "P2D", "at": "10:00", "channel": "sms", "expire_after": "P2D"}
    folder = write_campaigns(tmp_path / "surveys", *(
        {"id": f"s-{kind}", "name": f"{kind} survey", "trigger": {"event": "order.delivered"},
         "steps": [{**step, "id": kind, "template": "nps" if kind == "nps" else "checkin",
                    "survey": kind}]}
        for kind in ("csat", "nps", "ces")))
    stack.push_campaigns(folder, ROOT / "templates")
    clock.set_now(DELIVERED)
    stack.ingest([load_event("order_delivered")])
    stack.run_due(SMS_DUE)
    assert len(stack.twilio.messages) == 3
    clock.set_now(SMS_DUE + timedelta(hours=1))
    return {m.campaign_id.removeprefix("s-"): m for m in sms_messages()}


@pytest.mark.parametrize(("kind", "scores", "expected"), [
    ("csat", (5, 1), {"survey_responses": 1, "survey_score_sum": 5}),
    ("nps", (3, 10), {"survey_responses": 1, "survey_score_sum": 3, "detractors": 1}),
    ("nps", (10, 0), {"survey_responses": 1, "survey_score_sum": 10, "promoters": 1}),
    ("nps", (8, 9), {"survey_responses": 1, "survey_score_sum": 8}),  # a passive
    ("nps", (0, 10), {"survey_responses": 1, "detractors": 1}),  # a zero adds nothing
    ("ces", (6, 2), {"survey_responses": 1, "survey_score_sum": 6}),
])
def test_a_survey_link_answered_twice_counts_the_first_answer_once(
        stack: LocalStack, tmp_path: Path, kind: str, scores: tuple[int, int],
        expected: dict[str, int]) -> None:
    messages = _survey_stack(stack, tmp_path)
    msg = messages[kind]
    for score in scores:
        assert answer_link(stack, msg, kind, score).status_code == 200
    assert survey_counts(msg) == {"sent": 1, **expected}
    for other, m in messages.items():  # the other campaigns' rows are untouched
        if other != kind:
            assert survey_counts(m) == {"sent": 1}


def test_a_link_answer_and_an_sms_answer_racing_count_once(
        known: LocalStack, monkeypatch: pytest.MonkeyPatch) -> None:
    known.run_due(SMS_DUE)
    (msg,) = sms_messages()
    clock.set_now(SMS_DUE + timedelta(hours=2))
    texted: list[bytes] = []
    first_write_runs(monkeypatch, lambda: texted.append(text_back(known, "2")))
    reply = answer_link(known, msg, "csat", 5)
    assert reply.status_code == 200 and b"Thank you" in texted[0]
    after = MessageModel.get(msg.message_id, consistent_read=True)
    assert after.survey_score == 2
    assert survey_counts(msg) == {"sent": 1, "survey_responses": 1, "survey_score_sum": 2}


# -- erased customers ----------------------------------------------------------------------------


def test_nothing_of_an_erased_customer_counts_after_the_erasure(lift: LocalStack) -> None:
    """Late events, Twilio callbacks, SMS and link survey answers of an erased customer
    are dropped; the counts made before the erasure stay (docs/api.md, erasure)."""
    from chalicelib.pipeline.erasure import erase

    t = customer(holdout=False)
    lift.ingest([event("order.delivered", t, DELIVERED)])
    lift.run_due(SMS_DUE)
    (msg,) = sms_messages()
    before = rows("lift")
    assert before == {(variant(t), "treatment", ENROLL_DAY): {"enrolled": 1},
                      (variant(t), "treatment", SMS_DAY): {"sent": 1}}
    clock.set_now(SMS_DUE + timedelta(hours=3))
    assert erase([t]).customers == 1
    clock.set_now(SMS_DUE + timedelta(hours=4))
    lift.ingest([  # both happened before the erasure, and arrive after it
        event("order.placed", t, DELIVERED + timedelta(days=1), order="o-goal"),
        event("order.delivered", t, DELIVERED + timedelta(days=2), order="o-other"),
    ])
    lift.twilio.deliver_callbacks()
    assert set(replay_callbacks(lift)) == {"unknown"}
    assert b"Thank you" not in text_back(lift, "5", sender=phone_of(t))
    assert answer_link(lift, msg, "csat", 5).status_code == 404
    lift.run_due(SMS_DUE + timedelta(days=3))
    assert rows("lift") == before
    assert len(lift.twilio.create_requests) == 1
