"""``POST /webhooks/twilio/status``: Twilio's message status callbacks.

The sender gives Twilio ``StatusCallback = PUBLIC_BASE_URL + route + ?m=<message
id>`` (:mod:`chalicelib.tracking.callbacks`), so a report names its message even
when it outruns the API reply that tells the sender the provider id.

The signature (``X-Twilio-Signature``, HMAC-SHA1 with the account's auth token
over the full URL, query string included, and the sorted form fields) is checked
against the *configured* public URL, ``PUBLIC_BASE_URL`` + the route, followed by
the request's query string: API Gateway changes the host and adds the stage to
the path, so a URL rebuilt from the request's host or forwarded headers would not
match the one Twilio signed. The report is then folded into the message's history
(:mod:`chalicelib.tracking.status_updates`). Twilio is answered 200 even for a
message we do not know, as anything else makes it retry a report that can never
be placed; a bad signature gets 403.
"""

from __future__ import annotations

import logging
from urllib.parse import parse_qsl

from chalicelib import aws, settings
from chalicelib.api.errors import (
    BadRequestError,
    ForbiddenError,
    PayloadTooLargeError,
    ServiceUnavailableError,
    UnsupportedMediaTypeError,
)
from chalicelib.api.http import HttpRequest, HttpResponse
from chalicelib.tracking.callbacks import MESSAGE_PARAM, STATUS_PATH, signed_url
from chalicelib.tracking.delivery import StatusReport

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Twilio-Signature"
# Sent by Twilio when a Webhook Rule signs with a Webhook Setting's shared key:
# "key=<id>,algorithm=HMAC_SHA256".
SIGNATURE_SETTINGS_HEADER = "X-Twilio-Webhooks-Signature-Settings"
MEDIA_TYPE = "application/x-www-form-urlencoded"
MAX_BODY_BYTES = 64 * 1024
MIN_TOKEN_CHARS = 16  # Twilio's auth tokens are 32 hex digits; "" is the unset secret


class FormParams(dict[str, list[str]]):
    """Form fields with every value of a repeated field, as Twilio signs them.

    ``getlist`` is what ``twilio.request_validator`` asks a multi-valued dict for.
    """

    def getlist(self, name: str) -> list[str]:
        return self[name]

    def first(self, name: str) -> str | None:
        values = self.get(name)
        return values[0] if values else None


def parse_form(body: bytes) -> FormParams:
    """Decode an ``application/x-www-form-urlencoded`` body, keeping blank values."""
    form = FormParams()
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise BadRequestError("form body is not UTF-8") from None
    for name, value in pairs:
        form.setdefault(name, []).append(value)
    return form


def verify_twilio(request: HttpRequest, form: FormParams, path: str) -> None:
    """403 unless ``X-Twilio-Signature`` is Twilio's signature of this request: with
    the auth token (HMAC-SHA1), or, when a Twilio Webhook Rule signs the URL with a
    Webhook Setting's shared key (``X-Twilio-Webhooks-Signature-Settings`` names its
    algorithm), with that key (``webhook_shared_key`` in the Twilio secret).

    The URL checked is the configured one for ``path`` with the request's query
    string: never the host, port or scheme the request (or a proxy's
    ``X-Forwarded-*`` headers) claims.
    """
    from twilio.request_validator import RequestValidator, get_signature_algorithm

    signature = request.header(SIGNATURE_HEADER)
    if not signature:
        raise ForbiddenError(f"missing {SIGNATURE_HEADER} header")
    secret = aws.secret_json(settings.load().twilio_secret)
    signing = request.header(SIGNATURE_SETTINGS_HEADER)
    name = "webhook_shared_key" if signing else "auth_token"
    key = str(secret.get(name) or "")
    if len(key) < MIN_TOKEN_CHARS:
        # As infra creates the secret, before ops set it: anyone could sign with "".
        raise ServiceUnavailableError(
            f"Twilio webhooks are not configured: set {name} in the Twilio secret")
    url = signed_url(path, request.query)
    algorithm = get_signature_algorithm(signing) if signing else None
    if not RequestValidator(key).validate(url, form, signature, algorithm=algorithm):
        raise ForbiddenError(f"{SIGNATURE_HEADER} does not match this request")


def message_named(request: HttpRequest) -> str | None:
    """The message id in the callback URL's ``m``; ``None`` for a callback without it."""
    values = request.query.get(MESSAGE_PARAM)
    if not values:
        return None
    if len(values) != 1 or not values[0]:
        raise BadRequestError(f"status callback names {MESSAGE_PARAM!r} more than once or empty")
    return values[0]


def status_report(form: FormParams) -> StatusReport:
    """The report in a status callback's fields; 400 if it names no message or status."""
    sid, status = form.first("MessageSid"), form.first("MessageStatus")
    if not sid or not status:
        raise BadRequestError("status callback needs MessageSid and MessageStatus")
    return StatusReport(provider_id=sid, status=status.lower(),
                        error_code=form.first("ErrorCode") or None)


def twilio_status(request: HttpRequest) -> HttpResponse:
    """Verify and record one status callback."""
    from chalicelib.tracking.status_updates import record_report

    if request.media_type != MEDIA_TYPE:
        raise UnsupportedMediaTypeError(
            f"Unsupported media type: {request.media_type or 'none'}; send {MEDIA_TYPE}")
    if len(request.body) > MAX_BODY_BYTES:
        raise PayloadTooLargeError(f"form body larger than {MAX_BODY_BYTES} bytes")
    form = parse_form(request.body)
    verify_twilio(request, form, STATUS_PATH)
    recorded = record_report(status_report(form), message_named(request))
    return HttpResponse(200, {"result": recorded.result})
