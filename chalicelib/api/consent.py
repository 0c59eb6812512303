"""Opt-outs and opt-ins from recipients: inbound SMS keywords and email unsubscribe.

Neither route writes the profile itself: each turns the request into a
``customer.updated`` event carrying a consent record (explicit, with its source and
time) and queues it for the ingest function, the one writer of profiles. The
event id is derived from the request, so a retried webhook is applied once. A STOP
withdraws SMS consent; only a START (an explicit opt-in newer than the STOP) can
restore it, as DESIGN.md's consent rules require. Opt-outs from the address itself
(STOP, an unsubscribe click) also put the address on the suppression list
(:mod:`chalicelib.store.suppression`), which a START from the phone lifts.
"""

from __future__ import annotations

import hashlib
import html
import json
import logging
import re
from datetime import timedelta
from typing import Any

from chalicelib import clock
from chalicelib.api.errors import (
    BadRequestError,
    NotFoundError,
    PayloadTooLargeError,
    UnsupportedMediaTypeError,
)
from chalicelib.api.events import enqueue
from chalicelib.api.http import HttpRequest, HttpResponse
from chalicelib.api.webhooks import MAX_BODY_BYTES, MEDIA_TYPE, parse_form, verify_twilio
from chalicelib.events.envelope import MAX_STR_CHARS
from chalicelib.store.models import MessageModel
from chalicelib.tracking.replies import customers_with_phone, record_sms_reply

log = logging.getLogger(__name__)

INBOUND_PATH = "/webhooks/twilio/inbound"
# Twilio's default opt-out, opt-in and help keywords (Advanced Opt-Out).
OPT_OUT = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT",
                     "REVOKE"})
OPT_IN = frozenset({"START", "YES", "UNSTOP"})
HELP = frozenset({"HELP", "INFO"})
HELP_TEXT = "Aftercare messages about your orders. Reply STOP to opt out, START to opt back in."
SURVEY_REPLY_WINDOW = timedelta(days=7)
_PUNCTUATION = ".,;:!?¡¿'\"()[]-*~"


def consent_event(event_id: str, customer_id: str, channel: str, granted: bool,
                  source: str, at: str | None = None) -> str:
    """A consent change as a ``customer.updated`` event, at ``at`` (default now).

    Its id holds the customer's id (one event per customer an address has), so with
    an id near the envelope's 512 characters it would be refused: such an id is cut
    and ends with a hash of the whole, the same each time (a redelivery is a no-op).
    """
    at = at or clock.iso(clock.now())
    if len(event_id) > MAX_STR_CHARS:
        digest = hashlib.sha256(event_id.encode("utf-8", "surrogatepass")).hexdigest()
        event_id = f"{event_id[:MAX_STR_CHARS - 41]}~{digest[:40]}"
    return json.dumps({
        "id": event_id, "type": "customer.updated", "occurred_at": at,
        "customer": {"id": customer_id, "consent": {channel: {
            "granted": granted, "at": at, "source": source, "explicit": True}}},
        "data": {"consent_change": source},
    })


def apply_consent(bodies: list[str]) -> None:
    """Queue consent changes for ingest; if the queue refuses them, apply them here.

    Twilio does not retry inbound webhooks and mail clients rarely retry a one-click
    unsubscribe, so a refused enqueue must not lose an opt-out. Applying in-process
    is the same ingest code (same event ids: a later redelivery is a no-op).
    """
    from chalicelib.api.errors import ServiceUnavailableError

    try:
        enqueue(bodies)
    except ServiceUnavailableError:
        from chalicelib.handlers import live
        from chalicelib.pipeline.ingest import decode, ingest_event

        log.warning("events queue refused %d consent change(s): applying inline", len(bodies))
        for body in bodies:
            ingest_event(decode(body), live())


def _twiml(message: str | None = None) -> HttpResponse:
    body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response>"
    if message:
        body += f"<Message>{html.escape(message)}</Message>"
    body += "</Response>"
    return HttpResponse(200, body, {"Content-Type": "text/xml"})


def twilio_inbound(request: HttpRequest) -> HttpResponse:
    """An SMS from a recipient: STOP/START/HELP keywords change or explain consent, a
    number answers the latest survey SMS, any other text is recorded as a reply to the
    latest SMS (:mod:`chalicelib.tracking.replies`)."""
    if request.media_type != MEDIA_TYPE:
        raise UnsupportedMediaTypeError(f"send {MEDIA_TYPE}")
    if len(request.body) > MAX_BODY_BYTES:
        raise PayloadTooLargeError(f"form body larger than {MAX_BODY_BYTES} bytes")
    form = parse_form(request.body)
    verify_twilio(request, form, INBOUND_PATH)
    sender, sid = form.first("From"), form.first("MessageSid")
    if not sender or not sid:
        raise BadRequestError("From and MessageSid are required")
    body = form.first("Body") or ""
    keyword, alone = reply_keyword(body)
    # With Advanced Opt-Out, Twilio names the keyword's kind itself, custom and
    # other-language keywords included ("ARRET"), and has already replied.
    kind = (form.first("OptOutType") or "").upper()
    if kind == "HELP":
        return _twiml()
    if kind in ("STOP", "START"):
        granted = kind == "START"
        keyword = keyword if keyword.isascii() and keyword.isalnum() \
            and len(keyword) <= 20 else kind
    elif keyword in HELP:
        return _twiml(HELP_TEXT)
    elif (score := reply_score(body)) is not None and (
            survey := latest_survey(sender)) is not None:
        return _twiml(survey_reply(survey, score))
    elif keyword in OPT_OUT or (keyword in OPT_IN and alone):
        granted = keyword in OPT_IN
    else:
        if body.strip():
            record_sms_reply(sender, body, sid)
        return _twiml()
    # The number's own list entry first (customer ids that have it now or later): if
    # queueing the consent changes fails after it, the opt-out still holds.
    _list_address("sms", sender, granted, f"sms:{keyword}", sid)
    bodies = [consent_event(f"sms-{keyword.lower()}:{sid}:{cid}", cid, "sms", granted,
                            f"sms:{keyword}") for cid in customers_with_phone(sender)]
    if bodies:
        apply_consent(bodies)
    log.info("sms keyword", extra={"keyword": keyword, "customers": len(bodies)})
    return _twiml()


def _list_address(channel: str, address: str, granted: bool, source: str,
                  message_id: str | None = None) -> None:
    """An opt-out from the address itself goes on the suppression list; an explicit
    opt-in from it (START) lifts its entry. ``message_id`` (the inbound SMS) makes a
    webhook delivered again change nothing, even after a later START or STOP."""
    from chalicelib.store import suppression

    at = clock.iso(clock.now())
    if granted:
        suppression.lift(channel, address, at, message_id)
    else:
        suppression.suppress(channel, address, at, source, message_id)


def reply_keyword(body: str) -> tuple[str, bool]:
    """The first word of an SMS, upper case, without the punctuation around it, and
    whether it is the whole message.

    Words are split on any whitespace ("STOP\nthanks" starts with STOP). An opt-out
    needs only the first word: honouring "Stop texting me" errs on the safe side.
    An opt-in needs the keyword alone ("Yes!"), since "Yes, it arrived" answers a
    check-in and is no explicit opt-in: it must not lift a STOP.
    """
    words = body.split()
    first = words[0].strip(_PUNCTUATION).upper() if words else ""
    return first, len(words) == 1


# A survey answer is a number alone ("9", " 10! ", "(5)"): "1 0" or "3 of them
# broke" is not one, and "-1" is a negative number (out of range), not 1.
_SCORE = re.compile(r"[(\[\"'¡¿]*([-+]?)(\d{1,2})[)\]\"'.,;:!?*~]*")  # NPS: 0-10


def reply_score(body: str) -> int | None:
    """The number an SMS reply is, when it is only a number (ASCII digits)."""
    match = _SCORE.fullmatch(body.strip())
    if match is None or not match.group(2).isascii():
        return None
    value = int(match.group(2))
    return -value if match.group(1) == "-" else value


SURVEYS_LOOKED_AT = 3  # per customer: the latest, and those before it that failed


def latest_survey(phone: str) -> MessageModel | None:
    """The latest survey SMS sent to ``phone`` (to any customer with it) within
    SURVEY_REPLY_WINDOW that may have reached it, or None. One that failed (Twilio
    refused it) never asked anything: a number texted back answers the one before it
    (of the latest ``SURVEYS_LOOKED_AT`` of each customer). One reported
    ``undelivered`` is kept: a carrier's report can be wrong, and the reply says so."""
    since = clock.iso(clock.now() - SURVEY_REPLY_WINDOW)
    found = [item for cid in customers_with_phone(phone)
             for item in MessageModel.surveys.query(cid, MessageModel.decided_at >= since,
                                                    scan_index_forward=False,
                                                    limit=SURVEYS_LOOKED_AT)]
    for item in sorted(found, key=lambda m: str(m.decided_at), reverse=True):
        try:
            message = MessageModel.get(item.message_id)
        except MessageModel.DoesNotExist:
            continue  # erased since the index was read
        if message.status != "failed":
            return message
    return None


def survey_reply(survey: MessageModel, score: int) -> str | None:
    """A bare number texted back: the answer to ``survey`` (:func:`latest_survey`).
    Returns the reply to text back, if any."""
    from chalicelib.api.survey import SCALES, record_answer

    kind = str(survey.survey_kind)
    scale = SCALES[kind]
    if score not in scale:
        return f"Please reply with a number from {scale[0]} to {scale[-1]}."
    if record_answer(survey.message_id, kind, score):
        return "Thank you for your answer!"
    return None


def verified_link(request: HttpRequest, kind: str) -> dict[str, Any]:
    """The payload of a signed link made for route ``kind``; 404 otherwise."""
    from chalicelib.tracking.links import BadToken, link_key, verify

    token = request.params.get("token", "")
    key = link_key()
    try:
        payload = verify(token, key, int(clock.real_now().timestamp()))
    except BadToken as exc:
        raise NotFoundError(f"this link is not valid ({exc})") from None
    if not isinstance(payload.get("m"), str) or payload.get("t") != kind:
        raise NotFoundError("this link is not valid")
    return payload


def unsubscribe_page(request: HttpRequest) -> HttpResponse:
    """GET: a confirmation page. Link scanners follow GETs, so a GET changes nothing."""
    verified_link(request, "unsubscribe")
    page = ("<!doctype html><title>Unsubscribe</title><form method=post>"
            "<p>Stop receiving these messages?</p>"
            "<button name=List-Unsubscribe value=One-Click>Unsubscribe</button></form>")
    return HttpResponse(200, page, {"Content-Type": "text/html; charset=utf-8"})


def unsubscribe(request: HttpRequest) -> HttpResponse:
    """POST (RFC 8058 one-click, or the page's button): withdraw consent for the
    channel the link was sent by (email, or SMS when an SMS template carries it)."""
    payload = verified_link(request, "unsubscribe")
    message_id = payload["m"]
    page = "<!doctype html><title>Unsubscribed</title><p>You are unsubscribed.</p>"
    try:
        message = MessageModel.get(message_id)
    except MessageModel.DoesNotExist:
        recipient = payload.get("r")
        if not isinstance(recipient, str) or not recipient.startswith("email:"):
            raise NotFoundError("this link is not valid") from None
        # The message is gone (its customer was erased): the mailbox's own opt-out
        # still counts, by the key the signed link names.
        from chalicelib.store import suppression

        suppression.suppress_key(recipient, clock.iso(clock.now()), "email:unsubscribe-link")
        return HttpResponse(200, page, {"Content-Type": "text/html; charset=utf-8"})
    # One id per click (not per link): clicking an old link again after opting back
    # in must unsubscribe again, not be dropped as a duplicate event.
    click = int(clock.real_now().timestamp())
    channel = "sms" if message.channel == "sms" else "email"
    source = f"{channel}:unsubscribe-link"
    apply_consent([consent_event(f"unsubscribe:{message_id}:{click}", message.customer_id,
                                 channel, False, source)])
    _suppress_recipient(message, channel, source)
    return HttpResponse(200, page, {"Content-Type": "text/html; charset=utf-8"})


def _suppress_recipient(message: Any, channel: str, source: str) -> None:
    """Put the address the message went to on the suppression list: its recorded key,
    or (a message sent before keys were recorded) the customer's current address."""
    from chalicelib.store import suppression
    from chalicelib.store.models import CustomerModel

    at = clock.iso(clock.now())
    if message.recipient_key:
        suppression.suppress_key(message.recipient_key, at, source)
        return
    try:
        customer = CustomerModel.get(message.customer_id)
    except CustomerModel.DoesNotExist:
        return
    address = customer.phone if channel == "sms" else customer.email
    if address:
        suppression.suppress(channel, address, at, source)
