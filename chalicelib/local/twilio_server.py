"""A local server that speaks the Twilio Messages API (2010-04-01).

The real ``twilio`` client can be pointed at it (``client.api.base_url =
server.base_url``) so adapters, the demo and end-to-end tests exercise the same
HTTP path as production without network access. It follows the field names of
the ``api.v2010.account.message`` schema in Twilio's published OpenAPI spec and
Twilio's error body shape (``code``, ``message``, ``more_info``, ``status``).

Beyond the API it offers what tests need:

- failure injection (:meth:`LocalTwilioServer.fail_next`,
  :meth:`LocalTwilioServer.delay_next`), including the *ambiguous* case where a
  message is accepted and the reply is still a 5xx;
- status callbacks signed like Twilio's (``X-Twilio-Signature``), delivered
  synchronously by :meth:`LocalTwilioServer.deliver_callbacks`, or posted before
  the create request is answered (:meth:`LocalTwilioServer.report_before_reply`),
  as when Twilio's callback outruns its API reply;
- signed inbound SMS webhooks (:meth:`LocalTwilioServer.simulate_inbound`).

Only the standard library is used, plus ``twilio.request_validator`` to sign.

Examples
--------
>>> with LocalTwilioServer("AC" + "0" * 32, "token") as server:  # doctest: +SKIP
...     client.api.base_url = server.base_url
...     client.messages.create(to="+14155550123", from_="+15005550006", body="Hi")
...     server.messages[0]["status"]
'queued'
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import re
import secrets
import threading
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

from twilio.request_validator import RequestValidator

__all__ = [
    "CallbackPoster",
    "CallbackRecord",
    "LocalTwilioServer",
    "post_form",
    "segment_count",
]

logger = logging.getLogger(__name__)

API_VERSION = "2010-04-01"
DEFAULT_SERVICE_FROM = "+15005550006"

CallbackPoster = Callable[[str, dict[str, str], dict[str, str]], None]
"""Delivers one webhook: ``(url, form params, headers)``; raises on failure."""

_MESSAGES_PATH = re.compile(r"^/2010-04-01/Accounts/(?P<account>[^/]+)/Messages\.json$")
_MESSAGE_PATH = re.compile(
    r"^/2010-04-01/Accounts/(?P<account>[^/]+)/Messages/(?P<sid>[^/]+)\.json$"
)
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_SERVICE_SID = re.compile(r"^MG[0-9a-fA-F]{32}$")
_DEFAULT_FAULT_CODES = {401: 20003, 404: 20404, 429: 20429, 500: 20500, 503: 20503}
_MAX_BODY_CHARS = 1600

_GSM7_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXTENDED = set("^{}\\[~]|€\f")


def segment_count(body: str) -> int:
    """Return how many SMS segments Twilio bills for ``body``.

    GSM-7 text fits 160 units in one segment and 153 per segment when split
    (extension characters such as ``€`` take two units); anything else is
    UCS-2 with 70 and 67 UTF-16 units. An empty body (media only) counts one.
    """
    if all(ch in _GSM7_BASIC or ch in _GSM7_EXTENDED for ch in body):
        units = sum(2 if ch in _GSM7_EXTENDED else 1 for ch in body)
        single, multi = 160, 153
    else:
        units = len(body.encode("utf-16-le")) // 2
        single, multi = 70, 67
    if units <= single:
        return 1
    return -(-units // multi)


@dataclass(frozen=True, slots=True)
class CallbackRecord:
    """One webhook the server delivered (or tried to): for test assertions."""

    url: str
    params: dict[str, str]
    headers: dict[str, str]
    error: str | None = None


class _ApiError(Exception):
    """A Twilio-shaped error reply."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def body(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "message": self.message,
            "more_info": f"https://www.twilio.com/docs/errors/{self.code}",
            "status": self.status,
        }


@dataclass(frozen=True, slots=True)
class _Fault:
    status: int | None = None
    code: int | None = None
    after_accept: bool = False
    delay: float = 0.0

    def error(self) -> _ApiError:
        status = self.status or 500
        code = self.code or _DEFAULT_FAULT_CODES.get(status, status)
        return _ApiError(status, code, f"Injected failure (HTTP {status})")


@dataclass(frozen=True, slots=True)
class _Request:
    method: str
    path: str
    authorization: str
    form: dict[str, list[str]]


@dataclass(frozen=True, slots=True)
class _Reply:
    status: int
    body: dict[str, Any]
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _CreateParams:
    to: str
    sender: str | None
    service_sid: str | None
    body: str
    media: tuple[str, ...]
    status_callback: str | None


@dataclass(slots=True)
class _Lifecycle:
    """The statuses still to come for one accepted message."""

    sid: str
    callback_url: str | None
    statuses: list[str]


class LocalTwilioServer:
    """A local, in-memory Twilio Messages API on ``127.0.0.1``.

    Parameters
    ----------
    account_sid, auth_token
        The credentials the server accepts (HTTP Basic) and signs webhooks with.
    outbox
        If set, every accepted message is appended to this file as one JSON line.
    port
        Port to bind; 0 (default) picks a free ephemeral port.
    unsubscribed
        Numbers that get error 21610 (the recipient replied STOP to Twilio).
    undeliverable
        Numbers accepted but reported ``undelivered`` with ErrorCode 30003.
    callback_poster
        Delivers webhooks in-process instead of over HTTP (e.g. into the
        Chalice test client).
    service_from
        The sender a Messaging Service picks when no ``From`` is given.
    """

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        *,
        outbox: Path | None = None,
        port: int = 0,
        unsubscribed: Iterable[str] = (),
        undeliverable: Iterable[str] = (),
        callback_poster: CallbackPoster | None = None,
        service_from: str = DEFAULT_SERVICE_FROM,
    ) -> None:
        self.account_sid = account_sid
        self.outbox = outbox
        self.unsubscribed: set[str] = set(unsubscribed)
        self.undeliverable: set[str] = set(undeliverable)
        self.callback_poster: CallbackPoster = callback_poster or post_form
        self.service_from = service_from
        self._auth_token = auth_token
        self._validator = RequestValidator(auth_token)
        self._port = port
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._messages: dict[str, dict[str, Any]] = {}
        self._create_requests: list[dict[str, list[str]]] = []
        self._faults: list[_Fault] = []
        self._early: list[int] = []
        self._lifecycles: list[_Lifecycle] = []
        self._callbacks: list[CallbackRecord] = []
        self._httpd: _HttpServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> LocalTwilioServer:
        """Bind and serve in a daemon thread; returns ``self``."""
        if self._httpd is not None:
            raise RuntimeError("LocalTwilioServer already started")
        self._stopping.clear()
        httpd = _HttpServer(("127.0.0.1", self._port), _Handler)
        httpd.twilio = self
        self._port = httpd.server_address[1]
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"local-twilio-{self._port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket; the port then refuses connections."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> LocalTwilioServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port (still known after :meth:`stop`)."""
        if self._port == 0:
            raise RuntimeError("LocalTwilioServer not started")
        return self._port

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``, for ``client.api.base_url``."""
        return f"http://127.0.0.1:{self.port}"

    # -- inspection ----------------------------------------------------------

    @property
    def messages(self) -> list[dict[str, Any]]:
        """Snapshot of every accepted message resource, oldest first."""
        with self._lock:
            return [json.loads(json.dumps(m)) for m in self._messages.values()]

    @property
    def create_requests(self) -> list[dict[str, list[str]]]:
        """The form parameters of every authenticated create request."""
        with self._lock:
            return [{k: list(v) for k, v in r.items()} for r in self._create_requests]

    @property
    def callbacks(self) -> list[CallbackRecord]:
        """Every webhook delivered so far (status callbacks and inbound)."""
        with self._lock:
            return list(self._callbacks)

    def get_message(self, sid: str) -> dict[str, Any] | None:
        """Return a copy of one stored message, or ``None``."""
        with self._lock:
            found = self._messages.get(sid)
            return None if found is None else json.loads(json.dumps(found))

    def clear(self) -> None:
        """Forget messages, requests, faults, pending and delivered callbacks."""
        with self._lock:
            self._messages.clear()
            self._create_requests.clear()
            self._faults.clear()
            self._early.clear()
            self._lifecycles.clear()
            self._callbacks.clear()

    # -- failure injection ---------------------------------------------------

    def fail_next(
        self,
        status: int,
        code: int | None = None,
        *,
        after_accept: bool = False,
        count: int = 1,
    ) -> None:
        """Make the next ``count`` create requests fail with HTTP ``status``.

        With ``after_accept`` the message is validated, stored and its
        callbacks queued before the error is returned: Twilio has it, the
        caller cannot know (the *ambiguous* case). ``code`` defaults to
        Twilio's code for the status (20429, 20500, 20503...).
        """
        if status < 400:
            raise ValueError(f"fail_next needs an error status, got {status}")
        fault = _Fault(status=status, code=code, after_accept=after_accept)
        with self._lock:
            self._faults.extend([fault] * count)

    def delay_next(self, seconds: float, *, count: int = 1) -> None:
        """Accept the next ``count`` create requests but reply after ``seconds``.

        A client whose read timeout is shorter sees a timeout while the
        message is stored: the ambiguous case seen from the client side.
        """
        with self._lock:
            self._faults.extend([_Fault(delay=seconds)] * count)

    def report_before_reply(self, statuses: int = 3, *, count: int = 1) -> None:
        """Post the first ``statuses`` status callbacks of each of the next ``count``
        accepted messages (``queued``, ``sent``, then the final status) *before*
        answering the create request. Combines with :meth:`fail_next` (with
        ``after_accept``) and :meth:`delay_next`: reported, then a 5xx or a timeout.

        Twilio does not wait for its API reply to reach the client before calling
        the status callback; this lets a test see a report arrive while the
        sender has not yet recorded the message's SID. The posts run in the
        server's request thread while the client waits; the remaining statuses
        are left for :meth:`deliver_callbacks`.
        """
        if statuses < 1:
            raise ValueError("report_before_reply needs at least one status")
        with self._lock:
            self._early.extend([statuses] * count)

    # -- callbacks -----------------------------------------------------------

    def deliver_callbacks(self) -> int:
        """Advance every accepted message to its final status, posting callbacks.

        Messages go ``queued`` -> ``sent`` -> ``delivered``, or ``undelivered``
        with ErrorCode 30003 for numbers in :attr:`undeliverable`. Posts happen
        synchronously, in order, outside the server lock. Returns how many
        callbacks were posted (failures are recorded in :attr:`callbacks`).
        """
        with self._lock:
            lifecycles, self._lifecycles = self._lifecycles, []
            pending = [p for life in lifecycles for p in self._advance(life)]
        for url, params in pending:
            self._post_signed(url, params)
        return len(pending)

    def simulate_inbound(
        self,
        from_: str,
        body: str,
        to: str,
        url: str,
        *,
        media_urls: Iterable[str] = (),
    ) -> CallbackRecord:
        """Post a signed inbound-SMS webhook (as for STOP/START/HELP) to ``url``."""
        sid = _new_sid("SM" if not media_urls else "MM")
        media = list(media_urls)
        params = {
            "ToCountry": "US",
            "SmsMessageSid": sid,
            "NumMedia": str(len(media)),
            "SmsSid": sid,
            "SmsStatus": "received",
            "Body": body,
            "To": to,
            "NumSegments": str(segment_count(body)),
            "MessageSid": sid,
            "AccountSid": self.account_sid,
            "From": from_,
            "ApiVersion": API_VERSION,
        }
        params.update({f"MediaUrl{i}": u for i, u in enumerate(media)})
        return self._post_signed(url, params)

    def sign(self, url: str, params: Mapping[str, str]) -> str:
        """Return the ``X-Twilio-Signature`` Twilio would send for this webhook."""
        return str(self._validator.compute_signature(url, dict(params)))

    def _report_now(self, sid: str, statuses: int) -> None:
        """Post the first ``statuses`` pending callbacks of message ``sid`` now."""
        with self._lock:
            life = next((x for x in self._lifecycles if x.sid == sid), None)
            if life is None:
                return
            now, life.statuses = life.statuses[:statuses], life.statuses[statuses:]
            pending = self._advance(_Lifecycle(sid, life.callback_url, now))
        for url, params in pending:
            self._post_signed(url, params)

    def _advance(self, life: _Lifecycle) -> list[tuple[str, dict[str, str]]]:
        """Apply each remaining status to the stored message (lock held)."""
        message = self._messages.get(life.sid)
        if message is None:  # cleared meanwhile
            return []
        posts: list[tuple[str, dict[str, str]]] = []
        for status in life.statuses:
            _apply_status(message, status, self.service_from)
            if life.callback_url:
                posts.append((life.callback_url, _status_params(message)))
        return posts

    def _post_signed(self, url: str, params: dict[str, str]) -> CallbackRecord:
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "User-Agent": "TwilioProxy/1.1",
            "I-Twilio-Idempotency-Token": secrets.token_hex(16),
            "X-Twilio-Signature": self.sign(url, params),
        }
        record = CallbackRecord(url=url, params=params, headers=headers)
        try:
            self.callback_poster(url, dict(params), dict(headers))
        except Exception as exc:
            logger.warning("webhook post failed: %s", type(exc).__name__)
            record = replace(record, error=f"{type(exc).__name__}: {exc}")
        with self._lock:
            self._callbacks.append(record)
        return record

    # -- request handling (called from handler threads) ----------------------

    def _handle(self, request: _Request) -> _Reply:
        """Route one HTTP request to a Twilio-shaped reply."""
        try:
            self._authenticate(request.authorization)
            return self._route(request)
        except _ApiError as err:
            return _error_reply(err)

    def _authenticate(self, authorization: str) -> None:
        expected = f"{self.account_sid}:{self._auth_token}"
        if not hmac.compare_digest(_basic_credentials(authorization), expected):
            raise _ApiError(401, 20003, "Authenticate")

    def _route(self, request: _Request) -> _Reply:
        if m := _MESSAGES_PATH.match(request.path):
            self._check_account(m["account"])
            if request.method == "POST":
                return self._create(m["account"], request.form)
            if request.method == "GET":
                return self._list(m["account"])
            raise _ApiError(405, 20004, "Method not allowed")
        if m := _MESSAGE_PATH.match(request.path):
            self._check_account(m["account"])
            if request.method == "GET":
                return self._fetch(m["sid"], request.path)
            raise _ApiError(405, 20004, "Method not allowed")
        raise _not_found(request.path)

    def _check_account(self, account: str) -> None:
        if account != self.account_sid:
            raise _ApiError(401, 20003, "Authenticate")

    def _create(self, account: str, form: dict[str, list[str]]) -> _Reply:
        with self._lock:
            self._create_requests.append(form)
            fault = self._faults.pop(0) if self._faults else _Fault()
        if fault.status and not fault.after_accept:
            return _error_reply(fault.error())
        params = _validate_create(form, self.unsubscribed)
        message = self._accept(account, params)
        with self._lock:
            early = self._early.pop(0) if self._early else 0
        if early:
            self._report_now(message["sid"], early)
        if fault.status:
            return _error_reply(fault.error())
        return _Reply(201, message, delay=fault.delay)

    def _accept(self, account: str, params: _CreateParams) -> dict[str, Any]:
        message = _message_resource(account, _new_sid("SM"), params)
        final = "undelivered" if params.to in self.undeliverable else "delivered"
        life = _Lifecycle(message["sid"], params.status_callback, ["queued", "sent", final])
        with self._lock:
            self._messages[message["sid"]] = message
            self._lifecycles.append(life)
            if self.outbox is not None:
                with self.outbox.open("a", encoding="utf-8") as out:
                    out.write(json.dumps(message, ensure_ascii=False) + "\n")
            return dict(message)

    def _fetch(self, sid: str, path: str) -> _Reply:
        message = self.get_message(sid)
        if message is None:
            raise _not_found(path)
        return _Reply(200, message)

    def _list(self, account: str) -> _Reply:
        uri = f"/{API_VERSION}/Accounts/{account}/Messages.json"
        found = list(reversed(self.messages))  # Twilio lists newest first
        return _Reply(
            200,
            {
                "messages": found,
                "start": 0,
                "end": max(len(found) - 1, 0),
                "page": 0,
                "page_size": max(len(found), 50),
                "uri": uri,
                "first_page_uri": f"{uri}?PageSize=50&Page=0",
                "next_page_uri": None,
                "previous_page_uri": None,
            },
        )


# -- pure helpers -------------------------------------------------------------


def _new_sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


def _now_rfc2822() -> str:
    return format_datetime(datetime.now(UTC))


def _first(form: Mapping[str, list[str]], name: str) -> str | None:
    values = form.get(name)
    return values[0] if values else None


def _basic_credentials(authorization: str) -> str:
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() != "basic":
        return ""
    try:
        return base64.b64decode(encoded, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return ""


def _not_found(path: str) -> _ApiError:
    return _ApiError(404, 20404, f"The requested resource {path} was not found")


def _error_reply(err: _ApiError) -> _Reply:
    headers = {"WWW-Authenticate": 'Basic realm="Twilio API"'} if err.status == 401 else {}
    return _Reply(err.status, err.body(), headers=headers)


def _validate_create(form: Mapping[str, list[str]], unsubscribed: set[str]) -> _CreateParams:
    """Check a create request the way Twilio does; raise :class:`_ApiError`."""
    to = _first(form, "To")
    sender = _first(form, "From")
    service = _first(form, "MessagingServiceSid")
    body = _first(form, "Body") or ""
    media = tuple(form.get("MediaUrl", []))
    if not to:
        raise _ApiError(400, 21604, "A 'To' phone number is required.")
    if not sender and not service:
        raise _ApiError(400, 21603, "A 'From' or 'MessagingServiceSid' parameter is required.")
    if service and not _SERVICE_SID.fullmatch(service):
        raise _ApiError(400, 21701, f"The Messaging Service Sid {service} is invalid.")
    if not body and not media:
        raise _ApiError(400, 21602, "Message body is required.")
    if len(body) > _MAX_BODY_CHARS:
        raise _ApiError(
            400, 21617, "The concatenated message body exceeds the 1600 character limit."
        )
    if not _E164.fullmatch(to):
        raise _ApiError(400, 21211, f"Invalid 'To' Phone Number: {to}")
    if to in unsubscribed:
        raise _ApiError(400, 21610, "Attempt to send to unsubscribed recipient")
    callback = _first(form, "StatusCallback")
    return _CreateParams(to, sender, service, body, media, callback or None)


def _message_resource(account: str, sid: str, params: _CreateParams) -> dict[str, Any]:
    """Build a message resource with the field names of ``api.v2010.account.message``."""
    uri = f"/{API_VERSION}/Accounts/{account}/Messages/{sid}.json"
    stamp = _now_rfc2822()
    return {
        "account_sid": account,
        "api_version": API_VERSION,
        "body": params.body,
        "date_created": stamp,
        "date_sent": None,
        "date_updated": stamp,
        "direction": "outbound-api",
        "error_code": None,
        "error_message": None,
        "from": params.sender,
        "messaging_service_sid": params.service_sid,
        "num_media": str(len(params.media)),
        "num_segments": str(segment_count(params.body)),
        "price": None,
        "price_unit": "USD",
        "sid": sid,
        "status": "accepted" if params.service_sid else "queued",
        "subresource_uris": {"media": uri.removesuffix(".json") + "/Media.json"},
        "to": params.to,
        "uri": uri,
    }


def _apply_status(message: dict[str, Any], status: str, service_from: str) -> None:
    stamp = _now_rfc2822()
    message["status"] = status
    message["date_updated"] = stamp
    message["from"] = message["from"] or service_from
    if status == "sent":
        message["date_sent"] = stamp
    if status == "undelivered":
        message["error_code"] = 30003
        message["error_message"] = "Unreachable destination handset"


def _status_params(message: Mapping[str, Any]) -> dict[str, str]:
    """The form fields of a Twilio message status callback."""
    params = {
        "AccountSid": message["account_sid"],
        "ApiVersion": API_VERSION,
        "From": message["from"],
        "MessageSid": message["sid"],
        "MessageStatus": message["status"],
        "SmsSid": message["sid"],
        "SmsStatus": message["status"],
        "To": message["to"],
    }
    if message["messaging_service_sid"]:
        params["MessagingServiceSid"] = message["messaging_service_sid"]
    if message["error_code"] is not None:
        params["ErrorCode"] = str(message["error_code"])
    return params


def post_form(url: str, params: dict[str, str], headers: dict[str, str]) -> None:
    """Default :data:`CallbackPoster`: a form POST over HTTP; raises on non-2xx."""
    data = urllib.parse.urlencode(params).encode("utf-8")
    request = urllib.request.Request(url, data=data, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()


# -- HTTP plumbing ---------------------------------------------------------------


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    twilio: LocalTwilioServer


class _Handler(BaseHTTPRequestHandler):
    server: _HttpServer
    server_version = "LocalTwilio/1.0"

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("local twilio: " + format, *args)

    def _dispatch(self) -> None:
        twilio = self.server.twilio
        reply = twilio._handle(self._read_request())
        if reply.delay and twilio._stopping.wait(reply.delay):  # stop() cuts it short
            return
        self._write(reply)

    def _read_request(self) -> _Request:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode("utf-8") if length else ""
        form = urllib.parse.parse_qs(raw, keep_blank_values=True)
        return _Request(
            method=self.command,
            path=urllib.parse.urlsplit(self.path).path,
            authorization=self.headers.get("Authorization", ""),
            form=form,
        )

    def _write(self, reply: _Reply) -> None:
        payload = json.dumps(reply.body, ensure_ascii=False).encode("utf-8")
        try:
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            logger.debug("local twilio: client went away before the reply")
