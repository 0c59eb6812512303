"""SMS through Twilio's Messages API, classified for at-most-once delivery.

:class:`TwilioSmsChannel` sends one :class:`~chalicelib.channels.base.SmsMessage`
and never raises for a provider or network failure: it returns a
:class:`~chalicelib.channels.base.SendResult` whose ``outcome`` says whether the
message may be sent again (see ``base.py``):

==========================================  ============
what happened                               outcome
==========================================  ============
HTTP 2xx                                    accepted
HTTP 429 (Twilio 20429)                     retryable
HTTP 401 (20003), or 21611 (the sender's    retryable
queue is full): refused before accepting,
and not because of this message
other HTTP 4xx (21211, 21610, 21614, ...)   permanent
HTTP 5xx, or any other status               ambiguous
connection never made (refused, DNS,        retryable
connect timeout)
read timeout, reset, bad reply, anything    ambiguous
else once the request may have been sent
==========================================  ============

The ``twilio`` client is imported and built on first use (``twilio.rest`` costs
~100 ms to import) and reused. Its HTTP session has no automatic retries
(requests' default adapter, ``max_retries=0``), so a POST is never repeated
behind our back. Phone numbers and bodies are never logged, and digits that
look like a phone number are masked in error messages.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from chalicelib.channels.base import Outcome, SendResult, SmsMessage

if TYPE_CHECKING:
    from twilio.rest import Client

__all__ = [
    "RETRYABLE_CODES",
    "TWILIO_ERROR_REASONS",
    "TwilioSmsChannel",
    "classify_exception",
    "classify_http_error",
    "redact",
]

logger = logging.getLogger(__name__)

TWILIO_ERROR_REASONS: dict[int, str] = {
    20003: "authentication_failed",
    20429: "rate_limited",
    21211: "invalid_to",
    21408: "region_not_enabled",
    21610: "unsubscribed",
    21611: "queue_full",
    21612: "unroutable",
    21614: "not_mobile",
}
"""Twilio error codes the sender may act on (21610: the recipient sent STOP)."""

RETRYABLE_CODES = frozenset({20003, 20429, 21611})
"""4xx codes that say nothing about the message: Twilio refused it before accepting
anything, for a reason that passes (credentials being rotated, the sender's queue
over its 10 hours). Marking them permanent would fail every send meanwhile."""

# "+" then digits ("+1 415-555 0123", "+1415"), or a bare run of 7+ digits not
# inside a word (so SIDs, dates like 2010-04-01 and port numbers stay readable).
_PHONE_LIKE = re.compile(r"\+[\d ().-]*\d|(?<!\w)\d{7,}(?!\w)")


class TwilioSmsChannel:
    """Send SMS through Twilio.

    Parameters
    ----------
    account_sid, auth_token
        Twilio credentials (HTTP Basic).
    messaging_service_sid
        Send through this Messaging Service (preferred: sender pool, opt-out
        handling); at least one of it and ``from_number`` is required.
    from_number
        The sender number; with a Messaging Service it picks a pool member.
    base_url
        Another API host, e.g. :class:`~chalicelib.local.twilio_server.LocalTwilioServer`
        or Prism: ``http://127.0.0.1:PORT``.
    timeout
        Seconds for the connect and for each read, applied by the HTTP client.

    Examples
    --------
    >>> channel = TwilioSmsChannel("AC...", "token", "MG...", None)  # doctest: +SKIP
    >>> channel.send(SmsMessage(to="+14155550123", body="Hi")).outcome  # doctest: +SKIP
    'accepted'
    """

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        messaging_service_sid: str | None,
        from_number: str | None,
        base_url: str | None = None,
        timeout: float = 10,
    ) -> None:
        if not messaging_service_sid and not from_number:
            raise ValueError("TwilioSmsChannel needs messaging_service_sid or from_number")
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.account_sid = account_sid
        self.messaging_service_sid = messaging_service_sid
        self.from_number = from_number
        self.base_url = base_url
        self.timeout = timeout
        self._auth_token = auth_token
        self._client: Client | None = None
        self._client_lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"TwilioSmsChannel(account_sid={self.account_sid!r}, "
            f"messaging_service_sid={self.messaging_service_sid!r}, base_url={self.base_url!r})"
        )

    def send(self, msg: SmsMessage) -> SendResult:
        """Send one SMS and classify the outcome; never raises for provider errors.

        Errors building the client (a broken install) do raise: nothing was sent.
        """
        client = self._get_client()
        params = self._create_params(msg)
        try:
            message = client.messages.create(**params)
        except Exception as exc:  # every failure must be classified, never escape
            result = classify_exception(exc, sensitive=(msg.to,))
            logger.warning(
                "sms send %s: code=%s %s",
                result.outcome,
                result.error_code,
                result.extra.get("reason", ""),
            )
            return result
        logger.info("sms send accepted: sid=%s status=%s", message.sid, message.status)
        return SendResult(
            outcome="accepted",
            provider_id=message.sid,
            status=message.status,
            extra=_accepted_extra(message),
        )

    def _create_params(self, msg: SmsMessage) -> dict[str, Any]:
        params: dict[str, Any] = {"to": msg.to, "body": msg.body}
        if self.messaging_service_sid:
            params["messaging_service_sid"] = self.messaging_service_sid
        if self.from_number:
            params["from_"] = self.from_number
        if msg.status_callback:
            params["status_callback"] = msg.status_callback
        return params

    def _get_client(self) -> Client:
        with self._client_lock:
            if self._client is None:
                self._client = self._build_client()
            return self._client

    def _build_client(self) -> Client:
        from twilio.http.http_client import TwilioHttpClient
        from twilio.rest import Client

        client = Client(
            self.account_sid,
            self._auth_token,
            http_client=TwilioHttpClient(timeout=self.timeout),
        )
        if self.base_url:
            client.api.base_url = self.base_url
            # TWILIO_EDGE / TWILIO_REGION in the environment would rewrite the
            # host (get_hostname), turning 127.0.0.1 into nonsense.
            client.edge = None
            client.region = None
        return client


def classify_exception(exc: BaseException, *, sensitive: Iterable[str] = ()) -> SendResult:
    """Map an exception raised by ``messages.create`` to a :class:`SendResult`.

    ``sensitive`` strings (the recipient) are masked in the error message.
    """
    from twilio.base.exceptions import TwilioRestException, TwilioServiceException

    if isinstance(exc, TwilioRestException | TwilioServiceException):
        text = redact(_error_text(exc), sensitive)
        return classify_http_error(exc.status, exc.code, text)
    return _classify_transport(exc, redact(f"{type(exc).__name__}: {exc}", sensitive))


def classify_http_error(status: int, code: int | None, message: str) -> SendResult:
    """Classify a non-2xx reply by HTTP status (the Twilio code goes along)."""
    extra = {"http_status": str(status)}
    if code in TWILIO_ERROR_REASONS:
        extra["reason"] = TWILIO_ERROR_REASONS[code]
    outcome: Outcome
    if status == 429 or (400 <= status < 500 and code in RETRYABLE_CODES):
        outcome = "retryable"
    elif 400 <= status < 500:
        outcome = "permanent"
    else:  # 5xx, or a status no client should see: the provider may have it
        outcome = "ambiguous"
    return SendResult(
        outcome=outcome,
        error_code=str(code if code is not None else status),
        error_message=redact(message),
        extra=extra,
    )


def _classify_transport(exc: BaseException, message: str) -> SendResult:
    """Classify a failure without an HTTP reply."""
    import requests

    if isinstance(exc, requests.ConnectTimeout):
        return SendResult("retryable", error_code="connect_timeout", error_message=message)
    if isinstance(exc, requests.ConnectionError) and _never_connected(exc):
        code = "connection_refused" if _refused(exc) else "connect_failed"
        return SendResult("retryable", error_code=code, error_message=message)
    if isinstance(exc, requests.ReadTimeout):
        return SendResult("ambiguous", error_code="read_timeout", error_message=message)
    if isinstance(exc, requests.RequestException):
        return SendResult("ambiguous", error_code="transport_error", error_message=message)
    return SendResult("ambiguous", error_code="unexpected_error", error_message=message)


def _causes(exc: BaseException) -> list[BaseException]:
    """The exception, the exceptions it wraps (args, ``reason``) and its ``__cause__``."""
    found: list[BaseException] = []
    todo: list[object] = [exc]
    while todo:
        item = todo.pop()
        if not isinstance(item, BaseException) or any(item is f for f in found):
            continue
        found.append(item)
        # Not __context__: an unrelated earlier error must not make this one "safe".
        todo.extend([item.__cause__, getattr(item, "reason", None)])
        todo.extend(item.args)
    return found


def _never_connected(exc: BaseException) -> bool:
    """True when no TCP connection was made, so no request byte was sent."""
    from urllib3.exceptions import NewConnectionError

    return any(isinstance(e, NewConnectionError | ConnectionRefusedError) for e in _causes(exc))


def _refused(exc: BaseException) -> bool:
    return any(isinstance(e, ConnectionRefusedError) for e in _causes(exc))


def _error_text(exc: Any) -> str:
    text = getattr(exc, "msg", None) or getattr(exc, "detail", None) or getattr(exc, "title", "")
    return str(text)


def redact(text: str, sensitive: Iterable[str] = ()) -> str:
    """Mask ``sensitive`` strings, then anything that looks like a phone number.

    Twilio echoes the recipient in some errors (21211), which must not reach
    logs or the message record as free text.
    """
    for value in sensitive:
        if value:
            text = text.replace(value, "[redacted]")
    return _PHONE_LIKE.sub("[redacted]", text)


def _accepted_extra(message: Any) -> dict[str, str]:
    segments = getattr(message, "num_segments", None)
    return {"num_segments": str(segments)} if segments is not None else {}
