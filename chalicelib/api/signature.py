"""``X-Aftercare-Signature``: HMAC-SHA256 request signatures for ``POST /events``.

The header is ``t=<unix seconds>,v1=<hex HMAC-SHA256 of "{t}.{raw body}">``. The
timestamp is inside the signed text, so an old request cannot be re-dated, and a
request older (or newer) than :data:`TOLERANCE_SECONDS` is refused. Several
``v1=`` values may be sent (a sender rotating keys signs with both); one match is
enough. Comparisons are constant-time.

Examples
--------
>>> header = sign_header(b"key", 1_700_000_000, b'{"id": "evt-1"}')
>>> header.startswith("t=1700000000,v1=")
True
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime

from chalicelib.api.errors import UnauthorizedError

HEADER = "X-Aftercare-Signature"
SCHEME = "v1"
TOLERANCE_SECONDS = 300
_MAX_HEADER_CHARS = 1024


@dataclass(frozen=True, slots=True)
class SignatureHeader:
    timestamp: int
    signatures: tuple[str, ...]


def compute(key: bytes, timestamp: int, body: bytes) -> str:
    """Hex HMAC-SHA256 of ``"{timestamp}.{body}"``."""
    return hmac.new(key, f"{timestamp}.".encode("ascii") + body, hashlib.sha256).hexdigest()


def sign_header(key: bytes, timestamp: int, body: bytes) -> str:
    """The header value a sender computes (for clients, tests and the docs)."""
    return f"t={timestamp},{SCHEME}={compute(key, timestamp, body)}"


def parse_header(value: str | None) -> SignatureHeader:
    """Split the header into its timestamp and ``v1`` signatures.

    Raises
    ------
    UnauthorizedError
        When the header is missing or not of the form ``t=...,v1=...``.
    """
    if not value:
        raise UnauthorizedError(f"missing {HEADER} header")
    if len(value) > _MAX_HEADER_CHARS:
        raise UnauthorizedError(f"malformed {HEADER} header: too long")
    timestamp: int | None = None
    signatures: list[str] = []
    for part in value.split(","):
        name, _, item = part.strip().partition("=")
        if name == "t" and item.isascii() and item.isdigit():  # not "²": int() refuses it
            timestamp = int(item)
        elif name == SCHEME and item:
            signatures.append(item.strip().lower())
    if timestamp is None or not signatures:
        raise UnauthorizedError(
            f"malformed {HEADER} header: expected t=<unix seconds>,{SCHEME}=<hex hmac>")
    return SignatureHeader(timestamp, tuple(signatures))


def verify(body: bytes, header_value: str | None, key: bytes, now: datetime,
           tolerance: int = TOLERANCE_SECONDS) -> int:
    """Check the signature of ``body``, then its age; return the signed timestamp.

    The signature is checked before the age so that only a holder of the key
    learns that a timestamp was stale.

    Raises
    ------
    UnauthorizedError
        Missing or malformed header, no matching signature, or a timestamp more
        than ``tolerance`` seconds away from ``now``.
    """
    parsed = parse_header(header_value)
    expected = compute(key, parsed.timestamp, body).encode("ascii")
    # Evaluate every candidate: the time taken must not depend on which matched.
    matches = [hmac.compare_digest(expected, s.encode("utf-8")) for s in parsed.signatures]
    if not any(matches):
        raise UnauthorizedError(f"{HEADER} does not match the body")
    skew = abs(int(now.timestamp()) - parsed.timestamp)
    if skew > tolerance:
        raise UnauthorizedError(
            f"{HEADER} timestamp is {skew} s from the server clock "
            f"(more than {tolerance} s): sign each request when sending it")
    return parsed.timestamp
