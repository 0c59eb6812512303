"""SES events from the configuration set's SNS topic (``aftercare-{stage}-ses-events``).

``infra/`` publishes the configuration set's events to the topic, which delivers
them (raw) to the queue of the same name; the ``ses_events`` function reads the
queue, so a failure is retried and an unreadable record ends in
``aftercare-{stage}-ses-events-dlq`` with its reason, as for the other queues (an
SNS-invoked function would drop an event after two retries). Each email
carries the tag ``message`` = its message id, which SES copies into every event
(``mail.tags``), so an event finds its message by key. What an event does:

==========================  ==========================================================
``eventType``               effect
==========================  ==========================================================
``Delivery``                status ``delivered`` (counted once, as for SMS)
``Bounce``, ``Permanent``   status ``undelivered`` (counted ``failed`` once), code
                            ``bounce:<subtype>``
``Bounce``, other types     kept in the history only (``bounced``): SES retried
``Reject``                  status ``failed`` (code ``reject``)
``Open``                    kept in the history (``opened``); the first bumps ``opened``
``Click``                   kept in the history (``clicked``); the first bumps
                            ``clicked`` (a click on the unsubscribe link is not one)
``Complaint``               kept in the history (``complained``), email consent
                            withdrawn (``source: email:complaint``) and the
                            complaining addresses put on the suppression list: a
                            spam report is an opt-out, and mail after one harms the
                            sender's reputation
anything else               ignored (``Send``, ``DeliveryDelay``, ``Subscription``...)
==========================  ==========================================================

Each report is folded like a Twilio status callback
(:func:`~chalicelib.tracking.status_updates.record_report`): idempotent on (SES
message id, status), so SNS delivering an event twice changes nothing, and the
consent change is an event whose id is derived from the SES message id. Logs
carry message ids and event types, never addresses.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from chalicelib import clock
from chalicelib.pipeline.batch import PermanentError
from chalicelib.tracking.delivery import StatusReport

log = logging.getLogger(__name__)
MESSAGE_TAG = "message"
OBSERVER_TAG = "observer"  # copies for staff (chalicelib.pipeline.observers)
UNSUBSCRIBE_PATH = "/l/unsubscribe/"


def report_for(event: dict[str, Any]) -> StatusReport | None:
    """The status report an SES event makes, or ``None`` for one that changes nothing."""
    kind = event.get("eventType") or event.get("notificationType")
    provider_id = str((event.get("mail") or {}).get("messageId") or "")
    if not provider_id:
        return None
    if kind == "Delivery":
        return StatusReport(provider_id, "delivered", source="ses")
    if kind == "Bounce":
        bounce = event.get("bounce") or {}
        code = f"bounce:{bounce.get('bounceSubType') or 'General'}"
        status = "undelivered" if bounce.get("bounceType") == "Permanent" else "bounced"
        return StatusReport(provider_id, status, code, source="ses")
    if kind == "Reject":
        return StatusReport(provider_id, "failed", "reject", source="ses")
    if kind == "Open":
        return StatusReport(provider_id, "opened", source="ses")
    if kind == "Click":
        link = str((event.get("click") or {}).get("link") or "")
        if UNSUBSCRIBE_PATH in link:
            return None  # an opt-out, recorded by its own route; not engagement
        return StatusReport(provider_id, "clicked", source="ses")
    if kind == "Complaint":
        feedback = (event.get("complaint") or {}).get("complaintFeedbackType")
        return StatusReport(provider_id, "complained", f"complaint:{feedback or 'unknown'}",
                            source="ses")
    return None


def _tag(event: dict[str, Any], name: str) -> str | None:
    """The first value of the SES tag ``name`` of the event's email (``mail.tags``)."""
    values = ((event.get("mail") or {}).get("tags") or {}).get(name)
    if isinstance(values, list) and values and isinstance(values[0], str) and values[0]:
        return values[0]
    return None


def tagged_message_id(event: dict[str, Any]) -> str | None:
    """The message id Aftercare tagged the email with (``mail.tags.message``)."""
    return _tag(event, MESSAGE_TAG)


def _event_of(message: str) -> dict[str, Any]:
    """The SES event in a queue record: the record itself (raw delivery), or the
    ``Message`` of an SNS notification envelope (the subscription without raw
    delivery)."""
    try:
        event = json.loads(message)
        if isinstance(event, dict) and event.get("Type") == "Notification" and \
                isinstance(event.get("Message"), str):
            event = json.loads(event["Message"])
    except (ValueError, RecursionError):
        raise PermanentError("SES event: invalid JSON", "invalid_json") from None
    if not isinstance(event, dict):
        raise PermanentError("SES event: not a JSON object", "invalid_event")
    return event


def record_ses_event(message: str) -> str:
    """Fold one SES event (a record of the ses-events queue); returns what happened.

    ``ignored`` (an event type that changes nothing), ``unknown`` (not an
    Aftercare email), ``observer`` (a copy for staff: dropped), or the report's
    result (``recorded``, ``duplicate``, ``mismatch``).

    Raises
    ------
    PermanentError
        When the record is not an SES event in JSON: it goes to the DLQ.
    """
    from chalicelib.tracking.status_updates import record_report

    event = _event_of(message)
    report = report_for(event)
    message_id = tagged_message_id(event)
    if report is None:
        return "ignored"
    if message_id is None and _tag(event, OBSERVER_TAG):
        return "observer"  # a copy for staff: never counted, never a customer's consent
    if message_id is None:
        log.warning("SES event without a message tag", extra={"provider_id": report.provider_id,
                                                                "status": report.status})
        return "unknown"
    recorded = record_report(report, message_id)
    if report.status == "complained":
        _suppress_complainers(event)
        if recorded.customer_id is not None:
            _withdraw_email_consent(recorded.customer_id, report.provider_id)
    log.info("SES event", extra={"message_id": message_id, "status": report.status,
                                 "result": recorded.result})
    return recorded.result


def _withdraw_email_consent(customer_id: str, provider_id: str) -> None:
    """Queue the complaint as an email opt-out of the message's customer (applied by
    ingest; the event id makes a redelivered complaint a no-op there)."""
    from chalicelib.api.consent import apply_consent, consent_event

    apply_consent([consent_event(f"ses-complaint:{provider_id}", customer_id, "email", False,
                                 "email:complaint")])


def complained_addresses(event: dict[str, Any]) -> list[str]:
    """The addresses a complaint names (``complaint.complainedRecipients``)."""
    recipients = (event.get("complaint") or {}).get("complainedRecipients")
    if not isinstance(recipients, list):
        return []
    return [str(r["emailAddress"]) for r in recipients
            if isinstance(r, dict) and isinstance(r.get("emailAddress"), str)
            and r["emailAddress"].strip()]


def _suppress_complainers(event: dict[str, Any]) -> None:
    """Put each complaining mailbox on the suppression list: the complaint is the
    address's, whichever customer id it is known by now or later."""
    from chalicelib.store import suppression

    complaint = event.get("complaint") or {}
    at = str(complaint.get("timestamp") or "") or clock.iso(clock.now())
    for address in complained_addresses(event):
        suppression.suppress("email", address, _iso_z(at), "email:complaint")


def _iso_z(value: str) -> str:
    """SES's timestamp (``2026-03-01T14:02:00.123Z``) in the stored format."""
    try:
        return clock.iso(clock.parse_iso(value.replace("Z", "+00:00")))
    except ValueError:
        return clock.iso(clock.now())
