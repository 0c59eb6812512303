"""Signed, expiring tokens for survey, unsubscribe and click links.

``payload.signature`` in URL-safe base64; HMAC-SHA256 with the signing secret,
compared in constant time. A link cannot be forged or edited (another message id,
another score) without the key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

MIN_KEY_CHARS = 16
LINK_TTL = timedelta(days=60)  # how long a message's links work after it is sent


def link_key() -> bytes:
    """The key links are signed with, from the stage's signing secret (cached).

    A key shorter than ``MIN_KEY_CHARS`` (unset, or emptied by mistake) is refused
    with a 503: with it anyone could mint survey and unsubscribe links.
    """
    from chalicelib import aws, settings
    from chalicelib.api.errors import ServiceUnavailableError

    key = str(aws.secret_json(settings.load().signing_secret).get("link_key") or "")
    if len(key) < MIN_KEY_CHARS:
        raise ServiceUnavailableError(
            f"signed links are not configured: the signing secret's link_key needs at "
            f"least {MIN_KEY_CHARS} characters")
    return key.encode()


class BadToken(ValueError):
    pass


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(payload: dict[str, Any], key: bytes) -> str:
    body = _b64(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())
    mac = hmac.new(key, body.encode("ascii"), hashlib.sha256).digest()[:16]
    return f"{body}.{_b64(mac)}"


def link_maker(base: str, key: bytes, sent_at: datetime,
               unsubscribe_extra: dict[str, Any] | None = None,
               ) -> Callable[[str, dict[str, Any]], str]:
    """The links of a message sent at ``sent_at``: ``make(kind, payload)`` is
    ``{base}/l/{kind}/{token}``, the token signed with ``key``, expiring ``LINK_TTL``
    later. ``"t"`` keeps each link to its own route (a survey link cannot
    unsubscribe); ``unsubscribe_extra`` goes into the unsubscribe link only."""
    exp = int((sent_at + LINK_TTL).timestamp())
    extra = unsubscribe_extra or {}

    def make(kind: str, payload: dict[str, Any]) -> str:
        more = extra if kind == "unsubscribe" else {}
        return f"{base}/l/{kind}/{sign({**payload, **more, 't': kind, 'exp': exp}, key)}"

    return make


def verify(token: str, key: bytes, now_epoch: int | None = None) -> dict[str, Any]:
    try:
        body, mac = token.split(".", 1)
        expected = hmac.new(key, body.encode("ascii"), hashlib.sha256).digest()[:16]
        # The text compared, not its decoding: base64 decodes other strings (padding
        # added, a last character's unused bits changed) to the same bytes, and an
        # altered token is refused whatever it decodes to.
        if not hmac.compare_digest(_b64(expected).encode("ascii"), mac.encode("ascii")):
            raise BadToken("bad signature")
        payload = json.loads(_unb64(body))
    except BadToken:
        raise
    except (ValueError, UnicodeError):  # not two parts, not base64, not JSON
        raise BadToken("malformed token") from None
    if not isinstance(payload, dict):
        raise BadToken("malformed token")
    exp = payload.get("exp")
    if now_epoch is not None and isinstance(exp, int) and now_epoch > exp:
        raise BadToken("expired")
    return payload
