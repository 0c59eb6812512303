"""The status-callback URL Twilio is given with each SMS, and signs.

The sender builds it (:func:`status_callback_url`) and the webhook checks
signatures against it (:func:`signed_url`): one place for its form, so the two
cannot drift apart. It names the message (``?m=<message id>``), so a report finds
its message even when it outruns the API reply that tells the sender the
provider id.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlencode

from chalicelib import settings

STATUS_PATH = "/webhooks/twilio/status"
MESSAGE_PARAM = "m"
"""The status callback's query parameter naming the message (its id)."""


def signed_url(path: str, query: Mapping[str, list[str]] | None = None) -> str:
    """The URL Twilio was given, and signed: the configured public base + the route,
    then the query string, encoded as :func:`status_callback_url` encodes it."""
    url = settings.load().public_base_url + path
    pairs = [(name, value) for name, values in (query or {}).items() for value in values]
    return f"{url}?{urlencode(pairs)}" if pairs else url


def status_callback_url(message_id: str) -> str:
    """The ``StatusCallback`` for one message: the configured status route, ``?m=<id>``."""
    return signed_url(STATUS_PATH, {MESSAGE_PARAM: [message_id]})
