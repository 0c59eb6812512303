"""The suppression list (opt-outs by address, across customer ids) and erasure,
end to end: the handlers behind ``chalice.test.Client``, moto, the real twilio
client against the local Twilio server, real webhook signatures, the CLI."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import pytest

from chalicelib import aws, clock, settings
from chalicelib.cli.main import main
from chalicelib.local.stack import LocalStack
from chalicelib.store import suppression
from chalicelib.store.models import (
    CustomerModel,
    EventModel,
    MessageModel,
    ScheduleModel,
    SuppressionModel,
)
from tests.conftest import FIXTURES, load_event

PHONE = "+14155550123"
EMAIL = "ana@example.com"
INBOUND = "http://127.0.0.1:8000/webhooks/twilio/inbound"
DELIVERED = datetime(2026, 3, 1, 14, 3, tzinfo=UTC)


@pytest.fixture
def known(slice_stack: LocalStack) -> LocalStack:
    """c-42 enrolled by a delivery: an SMS check-in (P2D at 10:00) and an email tip
    (P7D at 09:30)."""
    clock.set_now(DELIVERED)
    slice_stack.ingest([load_event("order_delivered")])
    return slice_stack


def _delivery(customer_id: str, day: int, **customer: Any) -> dict[str, Any]:
    """A delivery for ``customer_id`` on March ``day`` with c-42's contact unless
    overridden."""
    event = load_event("order_delivered")
    event["id"] = f"evt-{customer_id}-{day}"
    event["occurred_at"] = f"2026-03-{day:02d}T14:02:00Z"
    event["customer"] = {**event["customer"], "id": customer_id, **customer}
    event["order"] = {**event["order"], "id": f"o-{customer_id}-{day}"}
    return event


def _text(stack: LocalStack, body: str, sid: str) -> None:
    params = {"MessageSid": sid, "From": PHONE, "To": "+15005550006", "Body": body,
              "AccountSid": stack.twilio.account_sid}
    headers = {"Content-Type": "application/x-www-form-urlencoded",
               "X-Twilio-Signature": stack.twilio.sign(INBOUND, params)}
    reply = stack.client.http.post("/webhooks/twilio/inbound", headers=headers,
                                   body=urlencode(params))
    assert reply.status_code == 200
    stack.pump("events", "ingest")


def _messages(customer_id: str) -> list[MessageModel]:
    return sorted((m for m in MessageModel.scan() if m.customer_id == customer_id),
                  key=lambda m: m.message_id)


def _outcomes(customer_id: str, channel: str) -> list[tuple[str, str | None]]:
    return [(m.outcome, m.reason) for m in _messages(customer_id) if m.channel == channel]


def _entries() -> list[SuppressionModel]:
    return list(SuppressionModel.scan())


# -- the list -------------------------------------------------------------------------


def test_a_stop_suppresses_the_number_under_another_customer_id(known: LocalStack) -> None:
    clock.set_now(datetime(2026, 3, 1, 15, 0, tzinfo=UTC))
    _text(known, "STOP", "SM" + "1" * 32)
    # The same phone arrives later under another id (a guest checkout), with a plain
    # "sms": true from the shop: that is not the number's own opt-in.
    clock.set_now(datetime(2026, 3, 4, 14, 3, tzinfo=UTC))
    known.ingest([_delivery("c-77", 4)])
    known.run_due(datetime(2026, 3, 7, 15, 0, tzinfo=UTC))
    assert known.twilio.messages == []
    (outcome,) = _outcomes("c-77", "sms")
    assert outcome == ("suppressed", "address on the suppression list (sms:STOP, 2026-03-01)")
    # The list holds a keyed hash, never the number.
    (entry,) = _entries()
    assert entry.channel == "sms" and entry.source == "sms:STOP"
    assert PHONE not in json.dumps(entry.attribute_values, default=sorted)
    assert PHONE.lstrip("+") not in entry.address_key


def test_a_start_from_the_number_lifts_it(known: LocalStack) -> None:
    clock.set_now(datetime(2026, 3, 1, 15, 0, tzinfo=UTC))
    _text(known, "STOP", "SM" + "1" * 32)
    clock.set_now(datetime(2026, 3, 1, 16, 0, tzinfo=UTC))
    _text(known, "START", "SM" + "2" * 32)
    (entry,) = _entries()
    assert (entry.at, entry.lifted_at) == ("2026-03-01T15:00:00Z", "2026-03-01T16:00:00Z")
    clock.set_now(datetime(2026, 3, 4, 14, 3, tzinfo=UTC))
    known.ingest([_delivery("c-77", 4)])
    known.run_due(datetime(2026, 3, 6, 15, 0, tzinfo=UTC))
    assert [m["to"] for m in known.twilio.messages] == [PHONE]
    assert [m.status for m in _messages("c-77") if m.channel == "sms"] == ["sent"]


def test_an_explicit_opt_in_newer_than_the_entry_lets_that_customer_through(
        known: LocalStack) -> None:
    clock.set_now(datetime(2026, 3, 1, 15, 0, tzinfo=UTC))
    _text(known, "STOP", "SM" + "1" * 32)
    known.run_due(datetime(2026, 3, 3, 15, 0, tzinfo=UTC))
    assert _outcomes("c-42", "sms") == [("suppressed", "sms consent withdrawn")]
    clock.set_now(datetime(2026, 3, 4, 14, 3, tzinfo=UTC))
    optin = {"granted": True, "explicit": True, "at": "2026-03-04T14:00:00Z",
             "source": "checkout"}
    known.ingest([_delivery("c-77", 4, consent={"sms": optin, "email": True})])
    known.run_due(datetime(2026, 3, 7, 15, 0, tzinfo=UTC))
    assert [m.status for m in _messages("c-77") if m.channel == "sms"] == ["sent"]


def test_an_unsubscribe_click_suppresses_the_mailbox_it_was_sent_to(known: LocalStack) -> None:
    known.run_due(datetime(2026, 3, 8, 13, 30, tzinfo=UTC))
    (email,) = known.sent_emails()
    link = re.search(r"http://127\.0\.0\.1:8000(/l/unsubscribe/[\w.-]+)", email["body"])
    assert link is not None
    clock.set_now(datetime(2026, 3, 9, 9, 0, tzinfo=UTC))
    reply = known.client.http.post(
        link.group(1), headers={"Content-Type": "application/x-www-form-urlencoded"},
        body="List-Unsubscribe=One-Click")
    assert reply.status_code == 200
    known.pump("events", "ingest")
    # c-77 gives the same mailbox in other case: one mailbox, for an opt-out.
    clock.set_now(datetime(2026, 3, 10, 14, 3, tzinfo=UTC))
    known.ingest([_delivery("c-77", 10, email="Ana@Example.com")])
    known.run_due(datetime(2026, 3, 18, 13, 30, tzinfo=UTC))
    assert _outcomes("c-77", "email") == [
        ("suppressed", "address on the suppression list (email:unsubscribe-link, 2026-03-09)")]
    assert len(known.sent_emails()) == 1


def test_an_ses_complaint_suppresses_the_complaining_mailbox(known: LocalStack) -> None:
    known.run_due(datetime(2026, 3, 8, 13, 30, tzinfo=UTC))
    (msg,) = [m for m in _messages("c-42") if m.channel == "email"]
    text = (FIXTURES / "ses_events" / "complaint.json").read_text()
    text = text.replace("MESSAGE_ID", str(msg.provider_id)).replace("TAGGED_ID", msg.message_id)
    sqs = aws.client("sqs")
    sqs.send_message(QueueUrl=aws.queue_url(settings.resource_name("ses-events")),
                     MessageBody=text)
    (summary,) = known.pump("ses-events", "ses_events")
    assert summary["processed"] == 1
    (entry,) = _entries()
    assert (entry.channel, entry.source, entry.at) == (
        "email", "email:complaint", "2026-03-09T10:00:00Z")
    assert entry.address_key == suppression.address_key("email", EMAIL)


def test_a_21610_refusal_suppresses_the_number(known: LocalStack) -> None:
    known.twilio.unsubscribed.add(PHONE)
    known.run_due(datetime(2026, 3, 3, 15, 0, tzinfo=UTC))
    (entry,) = _entries()
    assert (entry.channel, entry.source) == ("sms", "sms:twilio-21610")
    assert entry.address_key == suppression.address_key("sms", PHONE)
    (msg,) = [m for m in _messages("c-42") if m.channel == "sms"]
    assert msg.recipient_key == entry.address_key


def test_sending_without_the_suppression_key_leaves_the_step_for_a_retry(
        known: LocalStack) -> None:
    # No key, no check: nothing may go out unchecked (the step stays claimed and is
    # retried after the lease, as with missing Twilio credentials).
    sm = aws.client("secretsmanager")
    sm.put_secret_value(SecretId=settings.load().suppression_secret, SecretString="{}")
    aws.reset()
    with pytest.raises(Exception, match="failed transiently"):
        known.run_due(datetime(2026, 3, 3, 15, 0, tzinfo=UTC))
    assert known.twilio.messages == [] and _messages("c-42") == []


# -- erasure --------------------------------------------------------------------------


def _erase(*args: str) -> int:
    return main(["erase", *args])


def test_erase_deletes_the_customer_and_keeps_its_opt_out_as_a_hash(
        known: LocalStack, capsys: pytest.CaptureFixture[str]) -> None:
    known.ingest([_delivery("c-77", 1, phone="+14155550999", email="bo@example.com")])
    clock.set_now(datetime(2026, 3, 1, 15, 0, tzinfo=UTC))
    _text(known, "STOP", "SM" + "1" * 32)
    known.run_due(datetime(2026, 3, 3, 15, 0, tzinfo=UTC))  # one SMS each: suppressed, sent
    assert [m.channel for m in _messages("c-42")] == ["sms"]
    entries_before = _entries()
    clock.set_now(datetime(2026, 3, 5, 12, 0, tzinfo=UTC))
    assert _erase("c-42", "--dry-run") == 0
    assert "would erase 1 customers" in capsys.readouterr().out
    assert CustomerModel.get("c-42").erased_at is None  # a dry run changes nothing

    assert _erase("c-42") == 0
    out = capsys.readouterr().out
    assert re.search(r"erased 1 customers .* at 2026-03-05T12:00:00Z: 2 schedule items, "
                     r"1 messages, 1 opt-outs kept", out), out
    tomb = CustomerModel.get("c-42")
    assert (tomb.profile, tomb.phone, tomb.email, tomb.erased_at) == (
        {}, None, None, "2026-03-05T12:00:00Z")
    assert _messages("c-42") == []
    steps = [json.loads(i.step) if isinstance(i.step, str) else i.step
             for i in ScheduleModel.scan()]
    assert {s["customer_id"] for s in steps} == {"c-77"}  # c-77 is untouched
    assert len(_messages("c-77")) == 1
    assert len(_entries()) == len(entries_before) == 1  # the STOP, as a hash
    assert list(CustomerModel.by_phone.query(PHONE)) == []  # no number left in the index


def test_after_erasure_old_events_stay_out_and_new_ones_start_afresh(
        known: LocalStack) -> None:
    clock.set_now(datetime(2026, 3, 1, 15, 0, tzinfo=UTC))
    _text(known, "STOP", "SM" + "1" * 32)
    clock.set_now(datetime(2026, 3, 5, 12, 0, tzinfo=UTC))
    assert _erase("c-42") == 0
    # A late event from before the erasure (or one replayed from the DLQ): dropped.
    late = _delivery("c-42", 2)
    known.ingest([late])
    tomb = CustomerModel.get("c-42")
    assert tomb.profile == {} and tomb.erased_at == "2026-03-05T12:00:00Z"
    assert EventModel.get(late["id"]).type == "order.delivered"  # processed: once
    # A new order after it: a new profile; the erased STOP still holds for the number.
    clock.set_now(datetime(2026, 3, 6, 14, 3, tzinfo=UTC))
    known.ingest([_delivery("c-42", 6)])
    fresh = CustomerModel.get("c-42")
    assert fresh.erased_at is None and fresh.profile["order_count"] == 1
    assert fresh.phone == PHONE
    known.run_due(datetime(2026, 3, 9, 15, 0, tzinfo=UTC))
    assert known.twilio.messages == []
    assert [o for o, _ in _outcomes("c-42", "sms")] == ["suppressed"]


def test_a_send_queued_before_the_erasure_sends_nothing(known: LocalStack) -> None:
    known.tick(datetime(2026, 3, 3, 15, 0, tzinfo=UTC))  # the check-in is claimed, queued
    assert _erase("c-42") == 0
    known.pump("sends", "send")
    assert known.twilio.messages == [] and _messages("c-42") == []
    assert [i for i in ScheduleModel.scan()] == []


def test_erase_refuses_a_bad_id_file(tmp_path: Any, capsys: pytest.CaptureFixture[str],
                                     known: LocalStack) -> None:
    ids = tmp_path / "ids.txt"
    ids.write_text("c-42\nc 7 # two words\n")
    assert _erase("--file", str(ids)) == 1
    err = capsys.readouterr().err
    assert f"{ids}: line 2: one customer id per line" in err
    assert CustomerModel.get("c-42").erased_at is None
    assert _erase() == 1


def test_the_list_keeps_each_address_s_latest_word_in_any_order_of_arrival(
        known: LocalStack) -> None:
    key = suppression.address_key("sms", PHONE)
    assert suppression.suppress_key(key, "2026-03-01T10:00:00Z", "sms:STOP")
    assert suppression.lift("sms", PHONE, "2026-03-01T12:00:00Z")
    # A STOP from before the START, arriving late, does not undo it; a newer one does.
    assert not suppression.suppress_key(key, "2026-03-01T11:00:00Z", "sms:twilio-21610")
    assert suppression.lookup(key) is None
    assert not suppression.lift("sms", PHONE, "2026-03-01T09:00:00Z")
    assert suppression.suppress_key(key, "2026-03-01T13:00:00Z", "sms:STOP")
    entry = suppression.lookup(key)
    assert entry is not None and entry.at == "2026-03-01T13:00:00Z"
    assert not suppression.lift("email", EMAIL, "2026-03-01T14:00:00Z")  # no entry


def test_erase_finds_items_in_every_scan_segment(stack: LocalStack) -> None:
    # Items spread over the table's segments: each parallel segment is scanned,
    # and only the erased customers' items (in step JSON or attribute) go.
    clock.set_now(datetime(2026, 3, 5, 12, 0, tzinfo=UTC))
    for n in range(60):
        cid = f"c-{n % 6}"
        step = {"id": f"s-{n}", "customer_id": cid}
        ScheduleModel(f"s-{n}", due_at=0, status="done", step=step,
                      updated_at="2026-03-01T00:00:00Z").save()
        MessageModel(f"m-{n}", status="sent", outcome="send", customer_id=cid,
                     campaign_id="x", step_id="y", due_at="2026-03-01T00:00:00Z",
                     decided_at="2026-03-01T00:00:00Z").save()
    from chalicelib.pipeline.erasure import erase

    report = erase(["c-1", "c-4"], segments=7)
    assert (report.schedule_items, report.messages, report.unknown) == (20, 20, 2)
    left = {i.step["customer_id"] for i in ScheduleModel.scan()}
    assert left == {"c-0", "c-2", "c-3", "c-5"}
    assert {m.customer_id for m in MessageModel.scan()} == left
    with pytest.raises(SystemExit) as refused:  # argparse's usage error
        _erase("c-0", "--segments", "0")
    assert refused.value.code == 2


# -- opt-outs recorded before the list ---------------------------------------------------


def _consent_update(customer_id: str, n: int, source: str, **contact: str) -> dict[str, Any]:
    """A consent record as the consent routes (or a shop) wrote it before the list."""
    channel = "sms" if "phone" in contact else "email"
    return {"id": f"evt-consent-{n}", "type": "customer.updated",
            "occurred_at": "2026-03-01T15:00:00Z",
            "customer": {"id": customer_id, **contact, "consent": {channel: {
                "granted": False, "at": "2026-03-01T15:00:00Z", "source": source,
                "explicit": True}}}}


def test_suppression_backfill_lists_the_address_opt_outs_recorded_before_the_list(
        known: LocalStack, capsys: pytest.CaptureFixture[str]) -> None:
    clock.set_now(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))
    known.ingest([
        _consent_update("c-42", 1, "sms:STOP", phone=PHONE),
        _consent_update("c-7", 2, "email:unsubscribe-link", email="bo@example.com"),
        _consent_update("c-8", 3, "preference-centre", email="cy@example.com"),
        _consent_update("c-9", 4, "email:complaint", email="di@example.com"),
    ])
    assert _erase("c-9") == 0  # erased: its erasure listed it already
    SuppressionModel(suppression.address_key("email", "di@example.com")).delete()
    capsys.readouterr()
    assert main(["suppression-backfill", "--dry-run"]) == 0
    assert "2 opt-outs made from an address would be listed" in capsys.readouterr().out
    assert _entries() == []
    assert main(["suppression-backfill", "--segments", "3"]) == 0
    assert "2 opt-outs made from an address: 2 listed" in capsys.readouterr().out
    keys = {e.address_key: (e.at, e.source) for e in _entries()}
    assert keys == {
        suppression.address_key("sms", PHONE): ("2026-03-01T15:00:00Z", "sms:STOP"),
        suppression.address_key("email", "bo@example.com"): (
            "2026-03-01T15:00:00Z", "email:unsubscribe-link")}
    # A START after the STOP lifted the number: a second run does not undo it.
    assert suppression.lift("sms", PHONE, "2026-03-02T10:00:00Z")
    assert main(["suppression-backfill"]) == 0
    assert "1 listed, 1 had a newer word" in capsys.readouterr().out
    assert suppression.lookup(suppression.address_key("sms", PHONE)) is None
