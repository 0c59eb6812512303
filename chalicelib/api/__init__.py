"""The HTTP API: signed events in, provider webhooks, reports; framework-free handlers.

``app.py`` turns Chalice's request into :class:`HttpRequest`, calls
:func:`dispatch` with a handler from here, and returns the :class:`HttpResponse`.
Errors are :class:`~chalicelib.api.errors.ApiError` subclasses, mapped to status
codes in one place (:func:`~chalicelib.api.errors.error_response`).
"""

from __future__ import annotations

from chalicelib.api.consent import twilio_inbound, unsubscribe, unsubscribe_page
from chalicelib.api.errors import ApiError, error_response
from chalicelib.api.events import post_events
from chalicelib.api.http import Handler, HttpRequest, HttpResponse, dispatch
from chalicelib.api.reports import campaign_report, list_reports
from chalicelib.api.survey import survey_answer, survey_page
from chalicelib.api.webhooks import twilio_status

__all__ = [
    "ApiError",
    "Handler",
    "HttpRequest",
    "HttpResponse",
    "campaign_report",
    "dispatch",
    "error_response",
    "list_reports",
    "post_events",
    "survey_answer",
    "survey_page",
    "twilio_inbound",
    "twilio_status",
    "unsubscribe",
    "unsubscribe_page",
]
