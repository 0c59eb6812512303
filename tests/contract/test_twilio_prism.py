"""TwilioSmsChannel and LocalTwilioServer checked against Twilio's OpenAPI spec by Prism.

``prism mock`` checks what the adapter sends; ``prism proxy`` in front of the
local server checks both the adapter's requests and the local server's replies.
Raw invalid requests and a deliberately wrong upstream show that both checks
reject what the spec does not allow (see conftest.py for Prism's error shape).
"""

from __future__ import annotations

import base64
import json
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import pytest
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from chalicelib.channels.base import SmsMessage
from chalicelib.channels.sms import TwilioSmsChannel

if TYPE_CHECKING:  # fixtures' types; conftest is not imported at run time
    from conftest import Credentials, Prism, PrismProxy

pytestmark = pytest.mark.contract

SENDER = "+15005550006"
SERVICE = "MG" + "fedcba9876543210" * 2
CUSTOMER = "+14155550123"
SPEC_EXAMPLE_SID = "SM" + "a" * 32  # the sid in the spec's example reply


def _post(
    base_url: str, path: str, form: dict[str, str], auth: Credentials | None
) -> tuple[int, dict[str, str], dict[str, Any]]:
    """POST a form and return (status, headers, JSON body), errors included."""
    data = urllib.parse.urlencode(form).encode()
    request = urllib.request.Request(base_url + path, data=data, method="POST")
    request.add_header("Content-Type", "application/x-www-form-urlencoded")
    if auth:
        token = base64.b64encode(f"{auth.account_sid}:{auth.auth_token}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), json.loads(err.read())


def _problem(status: int, headers: dict[str, str], body: dict[str, Any], kind: str) -> None:
    """Assert a Prism problem+json reply of type ``#kind``."""
    assert status == {"UNPROCESSABLE_ENTITY": 422, "UNAUTHORIZED": 401, "VIOLATIONS": 500}[kind]
    content_type = {k.lower(): v for k, v in headers.items()}["content-type"]
    assert content_type.startswith("application/problem+json")
    assert body["type"] == f"https://stoplight.io/prism/errors#{kind}"


def _violations(body: dict[str, Any]) -> set[tuple[str, str]]:
    return {(".".join(v["location"]), v["code"]) for v in body["validation"]}


def _channel(base_url: str, creds: Credentials, service: str | None = None) -> TwilioSmsChannel:
    sender = None if service else SENDER
    return TwilioSmsChannel(
        creds.account_sid, creds.auth_token, service, sender, base_url=base_url, timeout=10
    )


# -- prism mock: the adapter's requests ---------------------------------------------


def test_adapter_send_with_from_is_valid_for_the_spec(
    prism_mock: Prism, credentials: Credentials
) -> None:
    message = SmsMessage(CUSTOMER, "Your kettle arrived!", status_callback="https://a.example/cb")

    result = _channel(prism_mock.url, credentials).send(message)

    assert result.outcome == "accepted", result
    assert (result.provider_id, result.status) == (SPEC_EXAMPLE_SID, "queued")


def test_adapter_send_with_messaging_service_is_valid_for_the_spec(
    prism_mock: Prism, credentials: Credentials
) -> None:
    channel = _channel(prism_mock.url, credentials, service=SERVICE)

    result = channel.send(SmsMessage(CUSTOMER, "Hi"))

    assert result.outcome == "accepted", result


def test_prism_rejects_a_request_without_to(prism_mock: Prism, credentials: Credentials) -> None:
    form = {"From": SENDER, "Body": "x"}

    status, headers, body = _post(prism_mock.url, credentials.messages_path, form, credentials)

    _problem(status, headers, body, "UNPROCESSABLE_ENTITY")
    assert _violations(body) == {("body", "required")}
    assert "'To'" in body["validation"][0]["message"]


def test_prism_rejects_wrong_field_types(prism_mock: Prism, credentials: Credentials) -> None:
    form = {"To": CUSTOMER, "From": SENDER, "Body": "x", "ProvideFeedback": "maybe", "Attempt": "x"}

    status, headers, body = _post(prism_mock.url, credentials.messages_path, form, credentials)

    _problem(status, headers, body, "UNPROCESSABLE_ENTITY")
    assert _violations(body) == {("body.ProvideFeedback", "type"), ("body.Attempt", "type")}


def test_prism_rejects_a_malformed_account_sid(prism_mock: Prism, credentials: Credentials) -> None:
    path = "/2010-04-01/Accounts/AC123/Messages.json"

    status, headers, body = _post(prism_mock.url, path, {"To": CUSTOMER, "Body": "x"}, credentials)

    _problem(status, headers, body, "UNPROCESSABLE_ENTITY")
    assert ("path.accountsid", "pattern") in _violations(body)


def test_prism_requires_basic_auth(prism_mock: Prism, credentials: Credentials) -> None:
    form = {"To": CUSTOMER, "From": SENDER, "Body": "x"}

    status, headers, body = _post(prism_mock.url, credentials.messages_path, form, None)

    _problem(status, headers, body, "UNAUTHORIZED")


def test_adapter_misconfiguration_is_caught_by_the_contract(
    prism_mock: Prism, credentials: Credentials
) -> None:
    channel = _channel(prism_mock.url, credentials, service="MG123")

    result = channel.send(SmsMessage(CUSTOMER, "x"))

    assert (result.outcome, result.error_code) == ("permanent", "422")


# -- prism proxy: the adapter's requests and the local server's replies ---------------


@pytest.mark.parametrize("service", [None, SERVICE], ids=["from", "messaging-service"])
def test_local_server_replies_pass_response_validation(
    prism_proxy: PrismProxy, credentials: Credentials, service: str | None
) -> None:
    before = len(prism_proxy.upstream.messages)
    channel = _channel(prism_proxy.url, credentials, service)

    result = channel.send(SmsMessage(CUSTOMER, "Hi €"))

    # A reply the spec does not allow would have become Prism's 500 #VIOLATIONS.
    assert result.outcome == "accepted", result
    assert len(prism_proxy.upstream.messages) == before + 1
    assert prism_proxy.upstream.messages[-1]["sid"] == result.provider_id


def test_raw_reply_through_proxy_has_no_violations(
    prism_proxy: PrismProxy, credentials: Credentials
) -> None:
    form = {"To": CUSTOMER, "From": SENDER, "Body": "x"}

    status, headers, body = _post(prism_proxy.url, credentials.messages_path, form, credentials)

    assert status == 201, body
    assert "sl-violations" not in {k.lower() for k in headers}


def test_fetched_message_after_delivery_matches_the_spec(
    prism_proxy: PrismProxy, credentials: Credentials
) -> None:
    upstream = prism_proxy.upstream
    upstream.undeliverable.add("+14155550199")
    client = Client(
        credentials.account_sid, credentials.auth_token, http_client=TwilioHttpClient(timeout=10)
    )
    client.api.base_url = prism_proxy.url
    created = client.messages.create(to="+14155550199", messaging_service_sid=SERVICE, body="x")
    upstream.deliver_callbacks()

    fetched = client.messages(created.sid).fetch()  # a violation would raise (500)

    assert (fetched.status, fetched.error_code, fetched.from_) == (
        "undelivered",
        30003,
        upstream.service_from,
    )


def test_proxy_rejects_invalid_requests_before_the_upstream(
    prism_proxy: PrismProxy, credentials: Credentials
) -> None:
    before = len(prism_proxy.upstream.create_requests)
    form = {"From": SENDER, "Body": "x"}

    status, headers, body = _post(prism_proxy.url, credentials.messages_path, form, credentials)

    _problem(status, headers, body, "UNPROCESSABLE_ENTITY")
    assert len(prism_proxy.upstream.create_requests) == before


def test_twilio_errors_pass_through_the_proxy(
    prism_proxy: PrismProxy, credentials: Credentials
) -> None:
    result = _channel(prism_proxy.url, credentials).send(SmsMessage("+1415", "x"))

    assert (result.outcome, result.error_code) == ("permanent", "21211")


class _WrongUpstream(BaseHTTPRequestHandler):
    """Answers every POST with a 201 the spec does not allow."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.dumps({"sid": "XX1", "status": "bogus", "num_segments": 1}).encode()
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def wrong_upstream() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _WrongUpstream)
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_proxy_rejects_replies_the_spec_does_not_allow(
    start_prism_proxy: Callable[[str], Prism], wrong_upstream: str, credentials: Credentials
) -> None:
    prism = start_prism_proxy(wrong_upstream)
    form = {"To": CUSTOMER, "From": SENDER, "Body": "x"}

    status, headers, body = _post(prism.url, credentials.messages_path, form, credentials)

    _problem(status, headers, body, "VIOLATIONS")
    assert {
        ("response.body.sid", "pattern"),
        ("response.body.status", "enum"),
        ("response.body.num_segments", "type"),
    } <= _violations(body)
    assert _channel(prism.url, credentials).send(SmsMessage(CUSTOMER, "x")).outcome == "ambiguous"
