"""TwilioSmsChannel with the real twilio client against the local Twilio server.

Each outcome of ``base.py`` is produced by a real failure on a real socket:
HTTP errors from the local server, a refused port, a full accept queue (connect
timeout), a slow reply (read timeout) and a peer that resets the connection.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from urllib3.exceptions import MaxRetryError, NewConnectionError, ProtocolError

from chalicelib.channels.base import SendResult, SmsMessage
from chalicelib.channels.sms import TwilioSmsChannel, classify_exception, redact
from chalicelib.local.twilio_server import LocalTwilioServer

ACCOUNT = "AC" + "0123456789abcdef" * 2
TOKEN = "local-test-token"
SENDER = "+15005550006"
SERVICE = "MG" + "fedcba9876543210" * 2
CUSTOMER = "+14155550123"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def server() -> Iterator[LocalTwilioServer]:
    with LocalTwilioServer(ACCOUNT, TOKEN) as running:
        yield running


def _channel(base_url: str, *, service: str | None = None, timeout: float = 5) -> TwilioSmsChannel:
    sender = None if service else SENDER
    return TwilioSmsChannel(ACCOUNT, TOKEN, service, sender, base_url=base_url, timeout=timeout)


def _send(
    base_url: str, to: str = CUSTOMER, *, service: str | None = None, timeout: float = 5
) -> SendResult:
    channel = _channel(base_url, service=service, timeout=timeout)
    return channel.send(SmsMessage(to=to, body="Your kettle arrived. Reply 1-5."))


# -- accepted ----------------------------------------------------------------------


def test_accepted_send_lands_on_the_server(server: LocalTwilioServer) -> None:
    channel = _channel(server.base_url)
    message = SmsMessage(CUSTOMER, "How is the kettle?", status_callback="https://a.example/cb")

    result = channel.send(message)

    assert result.outcome == "accepted" and result.accepted
    assert result.status == "queued"
    [stored] = server.messages
    assert result.provider_id == stored["sid"]
    assert (stored["to"], stored["from"], stored["body"]) == (CUSTOMER, SENDER, message.body)
    [sent] = server.create_requests
    assert sent["StatusCallback"] == ["https://a.example/cb"]
    assert "MessagingServiceSid" not in sent
    assert result.extra == {"num_segments": "1"}


def test_messaging_service_send_is_accepted(server: LocalTwilioServer) -> None:
    result = _send(server.base_url, service=SERVICE)

    assert (result.outcome, result.status) == ("accepted", "accepted")
    [sent] = server.create_requests
    assert sent["MessagingServiceSid"] == [SERVICE] and "From" not in sent
    assert "StatusCallback" not in sent


def test_messaging_service_and_sender_are_both_sent(server: LocalTwilioServer) -> None:
    channel = TwilioSmsChannel(ACCOUNT, TOKEN, SERVICE, SENDER, base_url=server.base_url)

    assert channel.send(SmsMessage(CUSTOMER, "x")).accepted
    assert server.messages[0]["from"] == SENDER
    assert server.messages[0]["messaging_service_sid"] == SERVICE


def test_client_is_built_once_and_reused(server: LocalTwilioServer) -> None:
    channel = _channel(server.base_url)
    for _ in range(3):
        assert channel.send(SmsMessage(CUSTOMER, "x")).accepted

    assert channel._get_client() is channel._get_client()
    assert len(server.messages) == 3


def test_twilio_region_in_the_environment_does_not_redirect_the_client(
    server: LocalTwilioServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TWILIO_REGION", "ie1")
    monkeypatch.setenv("TWILIO_EDGE", "dublin")

    assert _send(server.base_url).accepted


def test_constructing_the_channel_does_not_import_twilio_rest() -> None:
    code = (
        "import sys\n"
        "from chalicelib.channels.sms import TwilioSmsChannel\n"
        "TwilioSmsChannel('AC1', 't', None, '+15005550006')\n"
        "assert 'twilio.rest' not in sys.modules and 'requests' not in sys.modules\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)


def test_channel_needs_a_sender() -> None:
    with pytest.raises(ValueError, match="messaging_service_sid or from_number"):
        TwilioSmsChannel(ACCOUNT, TOKEN, None, None)


# -- refused by Twilio: permanent / retryable ----------------------------------------


def test_invalid_to_is_permanent_21211_and_the_number_is_not_echoed(
    server: LocalTwilioServer,
) -> None:
    result = _send(server.base_url, to="+1415")

    assert (result.outcome, result.error_code) == ("permanent", "21211")
    assert result.extra == {"http_status": "400", "reason": "invalid_to"}
    assert result.error_message is not None and "Invalid 'To' Phone Number" in result.error_message
    assert "1415" not in result.error_message
    assert server.messages == []


def test_unsubscribed_recipient_is_permanent_21610(server: LocalTwilioServer) -> None:
    server.unsubscribed.add(CUSTOMER)

    result = _send(server.base_url)

    assert (result.outcome, result.error_code) == ("permanent", "21610")
    assert result.extra["reason"] == "unsubscribed"


@pytest.mark.parametrize(("code", "reason"), [(21614, "not_mobile"), (21408, "region_not_enabled")])
def test_other_twilio_400s_are_permanent(server: LocalTwilioServer, code: int, reason: str) -> None:
    server.fail_next(400, code)

    result = _send(server.base_url)

    assert (result.outcome, result.error_code, result.extra["reason"]) == (
        "permanent",
        str(code),
        reason,
    )


def test_bad_credentials_are_retryable(server: LocalTwilioServer) -> None:
    # Refused before anything was accepted, and not for this message: a token being
    # rotated must not fail every send meanwhile (see test_delivery_audit).
    channel = TwilioSmsChannel(ACCOUNT, "wrong", None, SENDER, base_url=server.base_url)

    result = channel.send(SmsMessage(CUSTOMER, "x"))

    assert (result.outcome, result.error_code) == ("retryable", "20003")
    assert result.extra["reason"] == "authentication_failed"
    assert server.messages == []


def test_rate_limited_is_retryable_and_nothing_was_accepted(server: LocalTwilioServer) -> None:
    server.fail_next(429)

    result = _send(server.base_url)

    assert (result.outcome, result.error_code) == ("retryable", "20429")
    assert result.extra == {"http_status": "429", "reason": "rate_limited"}
    assert server.messages == []


# -- ambiguous: the provider may have it ------------------------------------------------


@pytest.mark.parametrize("status", [500, 503])
def test_5xx_after_accept_is_ambiguous_and_the_message_exists(
    server: LocalTwilioServer, status: int
) -> None:
    server.fail_next(status, after_accept=True)

    result = _send(server.base_url)

    assert result.outcome == "ambiguous"
    assert result.extra["http_status"] == str(status)
    assert len(server.messages) == 1  # why it must never be resent


def test_5xx_before_accept_is_still_ambiguous(server: LocalTwilioServer) -> None:
    server.fail_next(503)

    assert _send(server.base_url).outcome == "ambiguous"


def test_read_timeout_is_ambiguous_and_the_message_exists(server: LocalTwilioServer) -> None:
    server.delay_next(3)

    started = time.monotonic()
    result = _send(server.base_url, timeout=0.3)

    assert (result.outcome, result.error_code) == ("ambiguous", "read_timeout")
    assert time.monotonic() - started < 2.5
    assert len(server.messages) == 1


def _one_shot_peer(behaviour: str) -> tuple[str, threading.Thread]:
    """A TCP peer that reads the request, then resets or closes without replying."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        conn.recv(65536)
        if behaviour == "reset":  # SO_LINGER 0: close sends RST
            conn.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
            )
        conn.close()
        listener.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return f"http://127.0.0.1:{port}", thread


@pytest.mark.parametrize("behaviour", ["reset", "close"])
def test_connection_lost_after_sending_is_ambiguous(behaviour: str) -> None:
    base_url, thread = _one_shot_peer(behaviour)

    result = _send(base_url)

    thread.join(timeout=5)
    assert (result.outcome, result.error_code) == ("ambiguous", "transport_error")


# -- retryable: the request never left ------------------------------------------------


def test_stopped_server_refuses_and_is_retryable(server: LocalTwilioServer) -> None:
    server.stop()

    result = _send(server.base_url)

    assert (result.outcome, result.error_code) == ("retryable", "connection_refused")


def test_connect_timeout_is_retryable() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)  # accept queue of ~1 that nobody drains: further SYNs are dropped
    port = listener.getsockname()[1]
    fillers = [socket.socket() for _ in range(4)]
    for filler in fillers:
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
    time.sleep(0.05)
    try:
        result = _send(f"http://127.0.0.1:{port}", timeout=0.3)
    finally:
        for sock in [*fillers, listener]:
            sock.close()

    if result.error_code != "connect_timeout":
        pytest.skip(f"this kernel did not drop the SYN (got {result.error_code})")
    assert result.outcome == "retryable"


# -- classification of exception chains, as requests/urllib3 build them ----------------


def test_refused_connection_chain_is_retryable() -> None:
    refused = NewConnectionError(None, "Failed to establish a new connection")  # type: ignore[arg-type]
    refused.__cause__ = ConnectionRefusedError(111, "Connection refused")
    exc = requests.ConnectionError(MaxRetryError(None, "/x", reason=refused))  # type: ignore[arg-type]

    assert classify_exception(exc).error_code == "connection_refused"
    assert classify_exception(exc).outcome == "retryable"


def test_dns_failure_chain_is_retryable() -> None:
    failed = NewConnectionError(None, "Name or service not known")  # type: ignore[arg-type]
    exc = requests.ConnectionError(MaxRetryError(None, "/x", reason=failed))  # type: ignore[arg-type]

    assert (classify_exception(exc).outcome, classify_exception(exc).error_code) == (
        "retryable",
        "connect_failed",
    )


def test_reset_chain_is_ambiguous_even_after_an_earlier_refusal() -> None:
    reset = ProtocolError("Connection aborted.", ConnectionResetError(104, "reset"))
    exc = requests.ConnectionError(reset)
    exc.__context__ = ConnectionRefusedError(111, "stale, unrelated")

    assert classify_exception(exc).outcome == "ambiguous"


def test_unexpected_error_is_ambiguous() -> None:
    result = classify_exception(ValueError("Expecting value: line 1 column 1"))

    assert (result.outcome, result.error_code) == ("ambiguous", "unexpected_error")


def test_redact_masks_numbers_but_keeps_ids_and_dates() -> None:
    text = "To +1 (415) 555-0123 and 4155550123 via /2010-04-01/Accounts/AC123456789/x port 8080"

    assert redact(text) == (
        "To [redacted] and [redacted] via /2010-04-01/Accounts/AC123456789/x port 8080"
    )
    assert redact("body was secret words", ["secret words"]) == "body was [redacted]"


# -- PII --------------------------------------------------------------------------------


def test_no_phone_number_or_body_is_logged(
    server: LocalTwilioServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    body = "Private note for Ana about her order"
    server.fail_next(429)
    server.fail_next(500, after_accept=True)
    channel = _channel(server.base_url)

    outcomes = [channel.send(SmsMessage(CUSTOMER, body)).outcome for _ in range(3)]
    outcomes.append(channel.send(SmsMessage("+1415", body)).outcome)

    assert outcomes == ["retryable", "ambiguous", "accepted", "permanent"]
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "sms send" in logged
    for secret in (CUSTOMER, CUSTOMER.lstrip("+"), "+1415", body):
        assert secret not in logged
