"""`aftercare run`: the local stack over real HTTP on 127.0.0.1, with the scheduler."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

from tests.conftest import ROOT, load_event


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _post(port: int, event: dict) -> dict:
    body = json.dumps(event).encode()
    ts = str(int(time.time()))
    sig = hmac.new(b"local-events-hmac-key", ts.encode() + b"." + body, hashlib.sha256)
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/events", data=body, method="POST",
        headers={"Content-Type": "application/json",
                 "X-Aftercare-Signature": f"t={ts},v1={sig.hexdigest()}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        result: dict = json.loads(resp.read())
        return result


def _inbound_sms(port: int, signed_base: str) -> int:
    """POST an inbound SMS (a "hi") signed by Twilio's validator for ``signed_base``."""
    from twilio.request_validator import RequestValidator

    from chalicelib.local.stack import TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN

    path = "/webhooks/twilio/inbound"
    form = {"MessageSid": "SM" + "7" * 32, "AccountSid": TWILIO_ACCOUNT_SID,
            "From": "+14155550123", "To": "+15005550006", "Body": "hi"}
    signature = RequestValidator(TWILIO_AUTH_TOKEN).compute_signature(signed_base + path,
                                                                      form)
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=urllib.parse.urlencode(form).encode(),
        method="POST", headers={"Content-Type": "application/x-www-form-urlencoded",
                                "X-Twilio-Signature": signature})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_run_serves_the_api_and_sends_on_its_own(tmp_path: Path) -> None:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "chalicelib.cli.main", "run", "--port", str(port),
         "--speed", "50000", "--tick-seconds", "0.5", "--duration", "25",
         "--out", str(tmp_path)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.3)
        event = load_event("order_delivered")
        event["occurred_at"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        assert _post(port, event) == {"accepted": ["evt-0001"], "rejected": []}
        outbox = tmp_path / "outbox.txt"
        while time.time() < deadline + 10 and "SMS to +14155550123" not in (
                outbox.read_text() if outbox.exists() else ""):
            time.sleep(0.5)
        assert "SMS to +14155550123" in outbox.read_text()
        # Twilio signs the URL it posts to: this server's, on its own port (make run
        # PORT=...), not the local stack's default 8000.
        assert _inbound_sms(port, f"http://127.0.0.1:{port}") == 200
        assert _inbound_sms(port, "http://127.0.0.1:8000") == 403
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
