"""The local Twilio server, driven by the real twilio client and raw HTTP."""

from __future__ import annotations

import base64
import json
import re
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from chalicelib.local.twilio_server import LocalTwilioServer, segment_count

ACCOUNT = "AC" + "0123456789abcdef" * 2
TOKEN = "local-test-token"
SENDER = "+15005550006"
SERVICE = "MG" + "fedcba9876543210" * 2
CUSTOMER = "+14155550123"
SID_PATTERN = re.compile(r"^SM[0-9a-f]{32}$")


@pytest.fixture
def server() -> Iterator[LocalTwilioServer]:
    with LocalTwilioServer(ACCOUNT, TOKEN) as running:
        yield running


@pytest.fixture
def client(server: LocalTwilioServer) -> Client:
    twilio = Client(ACCOUNT, TOKEN, http_client=TwilioHttpClient(timeout=5))
    twilio.api.base_url = server.base_url
    return twilio


class _Receiver:
    """A webhook endpoint on 127.0.0.1 that records what it is posted."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, str], dict[str, str]]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers["Content-Length"])).decode()
                params = dict(urllib.parse.parse_qsl(raw, keep_blank_values=True))
                receiver.posts.append((self.path, params, dict(self.headers)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        ).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def receiver() -> Iterator[_Receiver]:
    running = _Receiver()
    yield running
    running.close()


def _raw(
    server: LocalTwilioServer,
    method: str,
    path: str,
    form: dict[str, str] | None = None,
    auth: tuple[str, str] | None = (ACCOUNT, TOKEN),
) -> tuple[int, dict[str, Any]]:
    data = urllib.parse.urlencode(form).encode() if form is not None else None
    request = urllib.request.Request(server.base_url + path, data=data, method=method)
    if auth:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


MESSAGES = f"/2010-04-01/Accounts/{ACCOUNT}/Messages.json"


# -- creating and fetching ---------------------------------------------------------


def test_create_with_from_returns_a_queued_message_resource(
    server: LocalTwilioServer, client: Client
) -> None:
    created = client.messages.create(to=CUSTOMER, from_=SENDER, body="Your kettle arrived!")

    assert SID_PATTERN.match(created.sid)
    assert created.status == "queued"
    [stored] = server.messages
    assert stored["sid"] == created.sid
    assert stored["account_sid"] == ACCOUNT
    assert (stored["to"], stored["from"], stored["body"]) == (
        CUSTOMER,
        SENDER,
        "Your kettle arrived!",
    )
    assert stored["messaging_service_sid"] is None
    assert stored["direction"] == "outbound-api"
    assert stored["api_version"] == "2010-04-01"
    assert (stored["num_segments"], stored["num_media"]) == ("1", "0")
    assert stored["price"] is None and stored["error_code"] is None
    assert stored["uri"] == f"/2010-04-01/Accounts/{ACCOUNT}/Messages/{created.sid}.json"
    assert parsedate_to_datetime(stored["date_created"]).tzinfo is not None


def test_create_with_messaging_service_is_accepted_without_a_sender(
    server: LocalTwilioServer, client: Client
) -> None:
    created = client.messages.create(to=CUSTOMER, messaging_service_sid=SERVICE, body="Hi")

    assert created.status == "accepted"
    assert created.from_ is None
    assert server.messages[0]["messaging_service_sid"] == SERVICE


def test_fetch_and_list_return_stored_messages(server: LocalTwilioServer, client: Client) -> None:
    created = client.messages.create(to=CUSTOMER, from_=SENDER, body="Hi")

    assert client.messages(created.sid).fetch().body == "Hi"
    assert [m.sid for m in client.messages.list()] == [created.sid]


def test_fetch_unknown_sid_is_a_twilio_404(client: Client) -> None:
    with pytest.raises(TwilioRestException) as caught:
        client.messages("SM" + "0" * 32).fetch()

    assert (caught.value.status, caught.value.code) == (404, 20404)


def test_outbox_gets_one_json_line_per_accepted_message(tmp_path: Path) -> None:
    outbox = tmp_path / "sms.jsonl"
    with LocalTwilioServer(ACCOUNT, TOKEN, outbox=outbox) as server:
        for body in ("one", "two"):
            assert (
                _raw(server, "POST", MESSAGES, {"To": CUSTOMER, "From": SENDER, "Body": body})[0]
                == 201
            )
        _raw(server, "POST", MESSAGES, {"To": "nope", "From": SENDER, "Body": "x"})

    lines = [json.loads(line) for line in outbox.read_text().splitlines()]
    assert [m["body"] for m in lines] == ["one", "two"]


def test_segments_follow_gsm7_and_ucs2_limits() -> None:
    assert segment_count("") == 1
    assert segment_count("a" * 160) == 1
    assert segment_count("a" * 161) == 2
    assert segment_count("€" * 80) == 1  # extension char: two units each
    assert segment_count("€" * 81) == 2
    assert segment_count("é" * 160) == 1  # é is in GSM-7
    assert segment_count("ł" * 70) == 1
    assert segment_count("ł" * 71) == 2


# -- errors --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("form", "code"),
    [
        ({"From": SENDER, "Body": "x"}, 21604),
        ({"To": CUSTOMER, "Body": "x"}, 21603),
        ({"To": CUSTOMER, "From": SENDER}, 21602),
        ({"To": CUSTOMER, "MessagingServiceSid": "MG123", "Body": "x"}, 21701),
        ({"To": "4155550123x", "From": SENDER, "Body": "x"}, 21211),
        ({"To": CUSTOMER, "From": SENDER, "Body": "x" * 1601}, 21617),
    ],
)
def test_invalid_create_requests_get_twilio_error_codes(
    server: LocalTwilioServer, form: dict[str, str], code: int
) -> None:
    status, body = _raw(server, "POST", MESSAGES, form)

    assert (status, body["code"], body["status"]) == (400, code, 400)
    assert body["more_info"] == f"https://www.twilio.com/docs/errors/{code}"
    assert server.messages == []


def test_invalid_to_message_matches_twilio(server: LocalTwilioServer) -> None:
    _, body = _raw(server, "POST", MESSAGES, {"To": "12", "From": SENDER, "Body": "x"})

    assert body["message"].startswith("Invalid 'To' Phone Number")


def test_unsubscribed_recipient_gets_21610(server: LocalTwilioServer) -> None:
    server.unsubscribed.add(CUSTOMER)

    status, body = _raw(server, "POST", MESSAGES, {"To": CUSTOMER, "From": SENDER, "Body": "x"})

    assert (status, body["code"]) == (400, 21610)
    assert body["message"] == "Attempt to send to unsubscribed recipient"


@pytest.mark.parametrize(
    "auth", [None, (ACCOUNT, "wrong-token"), ("AC" + "f" * 32, TOKEN)], ids=str
)
def test_bad_credentials_get_401_authenticate(
    server: LocalTwilioServer, auth: tuple[str, str] | None
) -> None:
    status, body = _raw(server, "POST", MESSAGES, {"To": CUSTOMER, "Body": "x"}, auth=auth)

    assert (status, body["code"], body["message"]) == (401, 20003, "Authenticate")


def test_account_in_path_must_match_credentials(server: LocalTwilioServer) -> None:
    other = "/2010-04-01/Accounts/AC" + "f" * 32 + "/Messages.json"

    status, body = _raw(server, "POST", other, {"To": CUSTOMER, "From": SENDER, "Body": "x"})

    assert (status, body["code"]) == (401, 20003)


def test_unknown_path_is_404_and_wrong_method_is_405(server: LocalTwilioServer) -> None:
    assert _raw(server, "GET", "/2010-04-01/Accounts/" + ACCOUNT + "/Calls.json")[0] == 404
    status, body = _raw(server, "DELETE", MESSAGES)
    assert (status, body["code"]) == (405, 20004)
    assert set(body) == {"code", "message", "more_info", "status"}


# -- failure injection ------------------------------------------------------------


def test_fail_next_429_rejects_before_accepting_then_recovers(
    server: LocalTwilioServer, client: Client
) -> None:
    server.fail_next(429, count=2)

    for _ in range(2):
        with pytest.raises(TwilioRestException) as caught:
            client.messages.create(to=CUSTOMER, from_=SENDER, body="x")
        assert (caught.value.status, caught.value.code) == (429, 20429)
    assert server.messages == []
    assert client.messages.create(to=CUSTOMER, from_=SENDER, body="x").status == "queued"


def test_fail_next_after_accept_stores_the_message_and_still_fails(
    server: LocalTwilioServer, client: Client
) -> None:
    server.fail_next(500, after_accept=True)

    with pytest.raises(TwilioRestException) as caught:
        client.messages.create(to=CUSTOMER, from_=SENDER, body="maybe")

    assert (caught.value.status, caught.value.code) == (500, 20500)
    assert [m["body"] for m in server.messages] == ["maybe"]


def test_fail_next_rejects_non_error_status(server: LocalTwilioServer) -> None:
    with pytest.raises(ValueError, match="error status"):
        server.fail_next(201)


def test_delay_next_times_the_client_out_but_keeps_the_message(server: LocalTwilioServer) -> None:
    impatient = Client(ACCOUNT, TOKEN, http_client=TwilioHttpClient(timeout=0.2))
    impatient.api.base_url = server.base_url
    server.delay_next(2)

    with pytest.raises(requests.ReadTimeout):
        impatient.messages.create(to=CUSTOMER, from_=SENDER, body="slow")

    assert [m["body"] for m in server.messages] == ["slow"]


def test_stop_is_prompt_even_with_a_delayed_reply_pending(server: LocalTwilioServer) -> None:
    impatient = Client(ACCOUNT, TOKEN, http_client=TwilioHttpClient(timeout=0.2))
    impatient.api.base_url = server.base_url
    server.delay_next(30)
    with pytest.raises(requests.ReadTimeout):
        impatient.messages.create(to=CUSTOMER, from_=SENDER, body="slow")

    server.stop()  # must not wait 30 s

    with pytest.raises(OSError):
        urllib.request.urlopen(server.base_url, timeout=1)


# -- status callbacks and inbound webhooks ---------------------------------------------


def test_status_callbacks_are_posted_in_order_with_valid_signatures(
    server: LocalTwilioServer, client: Client, receiver: _Receiver
) -> None:
    url = receiver.url + "/twilio/status"
    created = client.messages.create(to=CUSTOMER, from_=SENDER, body="x", status_callback=url)

    assert server.deliver_callbacks() == 3

    validator = RequestValidator(TOKEN)
    assert [p["MessageStatus"] for _, p, _ in receiver.posts] == ["queued", "sent", "delivered"]
    for path, params, headers in receiver.posts:
        assert path == "/twilio/status"
        assert params["MessageSid"] == params["SmsSid"] == created.sid
        assert params["AccountSid"] == ACCOUNT and params["ApiVersion"] == "2010-04-01"
        assert (params["From"], params["To"]) == (SENDER, CUSTOMER)
        assert "ErrorCode" not in params
        assert validator.validate(url, params, headers["X-Twilio-Signature"])
    assert server.deliver_callbacks() == 0  # each status is reported once
    assert client.messages(created.sid).fetch().status == "delivered"


def test_tampered_callback_fails_signature_validation(
    server: LocalTwilioServer, client: Client, receiver: _Receiver
) -> None:
    url = receiver.url + "/twilio/status"
    client.messages.create(to=CUSTOMER, from_=SENDER, body="x", status_callback=url)
    server.deliver_callbacks()
    _, params, headers = receiver.posts[-1]
    signature = headers["X-Twilio-Signature"]
    validator = RequestValidator(TOKEN)

    assert validator.validate(url, params, signature)
    assert not validator.validate(url, {**params, "MessageStatus": "failed"}, signature)
    assert not validator.validate(url + "?x=1", params, signature)
    assert not RequestValidator("other-token").validate(url, params, signature)


def test_undeliverable_number_ends_undelivered_with_30003(server: LocalTwilioServer) -> None:
    posted: list[tuple[str, dict[str, str], dict[str, str]]] = []
    server.callback_poster = lambda url, params, headers: posted.append((url, params, headers))
    server.undeliverable.add(CUSTOMER)
    _raw(
        server,
        "POST",
        MESSAGES,
        {
            "To": CUSTOMER,
            "MessagingServiceSid": SERVICE,
            "Body": "x",
            "StatusCallback": "https://app.example/cb",
        },
    )

    server.deliver_callbacks()

    assert [p["MessageStatus"] for _, p, _ in posted] == ["queued", "sent", "undelivered"]
    last = posted[-1][1]
    assert last["ErrorCode"] == "30003"
    assert last["MessagingServiceSid"] == SERVICE
    assert last["From"] == server.service_from
    assert server.messages[0]["error_code"] == 30003


def test_messages_without_callback_still_advance(server: LocalTwilioServer, client: Client) -> None:
    created = client.messages.create(to=CUSTOMER, from_=SENDER, body="x")

    assert server.deliver_callbacks() == 0
    assert server.get_message(created.sid)["status"] == "delivered"  # type: ignore[index]


def test_failed_webhook_post_is_recorded_not_raised(server: LocalTwilioServer) -> None:
    def refuse(url: str, params: dict[str, str], headers: dict[str, str]) -> None:
        raise ConnectionRefusedError("nobody listening")

    server.callback_poster = refuse
    _raw(
        server,
        "POST",
        MESSAGES,
        {"To": CUSTOMER, "From": SENDER, "Body": "x", "StatusCallback": "https://a.example/cb"},
    )

    assert server.deliver_callbacks() == 3
    assert all("ConnectionRefusedError" in (c.error or "") for c in server.callbacks)


def test_simulate_inbound_posts_a_signed_sms_webhook(
    server: LocalTwilioServer, receiver: _Receiver
) -> None:
    url = receiver.url + "/twilio/inbound"

    record = server.simulate_inbound(CUSTOMER, "STOP", SENDER, url)

    [(path, params, headers)] = receiver.posts
    assert path == "/twilio/inbound"
    assert record.error is None and record.params == params
    assert (params["From"], params["To"], params["Body"]) == (CUSTOMER, SENDER, "STOP")
    assert params["AccountSid"] == ACCOUNT and params["NumMedia"] == "0"
    assert SID_PATTERN.match(params["MessageSid"]) and params["SmsStatus"] == "received"
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert RequestValidator(TOKEN).validate(url, params, headers["X-Twilio-Signature"])
    assert not RequestValidator(TOKEN).validate(
        url, {**params, "Body": "START"}, headers["X-Twilio-Signature"]
    )


def test_simulate_inbound_uses_the_injected_poster(server: LocalTwilioServer) -> None:
    posted: list[tuple[str, dict[str, str], dict[str, str]]] = []
    server.callback_poster = lambda url, params, headers: posted.append((url, params, headers))

    server.simulate_inbound(CUSTOMER, "HELP", SENDER, "https://api.example/prod/twilio/inbound")

    [(url, params, headers)] = posted
    assert url == "https://api.example/prod/twilio/inbound"
    assert server.sign(url, params) == headers["X-Twilio-Signature"]


# -- lifecycle ---------------------------------------------------------------------------


def test_server_binds_loopback_on_an_ephemeral_port() -> None:
    first, second = LocalTwilioServer(ACCOUNT, TOKEN), LocalTwilioServer(ACCOUNT, TOKEN)
    with first, second:
        assert first.base_url.startswith("http://127.0.0.1:")
        assert first.port != second.port
        assert first._thread is not None and first._thread.daemon


def test_base_url_before_start_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="not started"):
        LocalTwilioServer(ACCOUNT, TOKEN).base_url  # noqa: B018
