"""Audit of the delivery and tracking side: sending, webhooks, links.

Each test holds one defect found by the audit, through the real parts: the
handlers behind ``chalice.test.Client``, moto, the real twilio client against the
local Twilio server, and real signatures.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from chalicelib import aws, clock, settings
from chalicelib.local.stack import TWILIO_AUTH_TOKEN, LocalStack
from chalicelib.store.models import MessageModel
from tests.conftest import load_event

DELIVERED = datetime(2026, 3, 1, 14, 3, tzinfo=UTC)
SMS_DUE = datetime(2026, 3, 3, 15, 0, tzinfo=UTC)
PHONE = "+14155550123"
FORM = "application/x-www-form-urlencoded"


@pytest.fixture
def enrolled(slice_stack: LocalStack) -> LocalStack:
    """The sliced stack with c-42 enrolled by a delivery: an SMS check-in due at
    SMS_DUE, an email tip a week after the delivery."""
    clock.set_now(DELIVERED)
    slice_stack.ingest([load_event("order_delivered")])
    return slice_stack


def _sms_message() -> MessageModel:
    (msg,) = [m for m in MessageModel.scan() if m.channel == "sms"]
    return msg


def _set_twilio_token(token: str) -> None:
    """Ops set the Twilio secret's auth token; the secret cache then expires."""
    name = settings.load().twilio_secret
    sm = aws.client("secretsmanager")
    secret = json.loads(sm.get_secret_value(SecretId=name)["SecretString"])
    sm.put_secret_value(SecretId=name, SecretString=json.dumps({**secret, "auth_token": token}))
    aws.reset()  # the 5-minute secret cache has expired


# -- what counts as transient --------------------------------------------------------


def test_refused_credentials_are_retried_with_the_token_read_again(enrolled: LocalStack) -> None:
    # The auth token was rotated in Twilio before the secret was updated. Twilio
    # refuses the request (401, 20003) before accepting anything: the check-in is
    # retried, not failed for good, and the retry reads the fixed secret instead of
    # the warm Lambda's cached client.
    _set_twilio_token("revoked-token")
    results = enrolled.run_due(SMS_DUE)
    assert enrolled.twilio.messages == []
    msg = _sms_message()
    assert (msg.status, msg.error_code) == ("retry", "20003")
    retry_at = clock.parse_iso(results[0]["due"][0])

    _set_twilio_token(TWILIO_AUTH_TOKEN)
    enrolled.run_due(retry_at)
    assert len(enrolled.twilio.messages) == 1
    msg = _sms_message()
    assert msg.status == "sent" and msg.provider_id == enrolled.twilio.messages[0]["sid"]


def test_a_full_sender_queue_is_retried_not_failed(enrolled: LocalStack) -> None:
    # 21611: the sender's queue holds more than 10 hours of messages; Twilio took
    # nothing. Later the queue has drained and the same check-in goes out, once.
    enrolled.twilio.fail_next(400, 21611)
    results = enrolled.run_due(SMS_DUE)
    assert enrolled.twilio.messages == []
    assert (_sms_message().status, _sms_message().error_code) == ("retry", "21611")
    enrolled.run_due(clock.parse_iso(results[0]["due"][0]))
    assert len(enrolled.twilio.messages) == 1 and _sms_message().status == "sent"
