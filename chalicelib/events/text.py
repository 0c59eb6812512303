"""Event text to JSON values, refusing what JSON, SQS and DynamoDB cannot hold.

Every door reads events through :func:`loads` (SQS and EventBridge records, ``POST
/events``, ``aftercare import`` JSONL and ``aftercare simulate`` logs), so they refuse
the same things:

- ``NaN``, ``Infinity`` and ``-Infinity``, which Python's ``json`` accepts but JSON
  does not, and numbers beyond a double's range (``1e999``, which it reads as
  infinity: a profile's ``total_spent`` would be NaN or infinite for good, or an
  integer of more than 309 digits, which DynamoDB and every JSON reader that uses
  doubles cannot hold);
- an unpaired UTF-16 surrogate, raw or escaped (``"\\ud800"``): valid JSON text that
  is not Unicode, which SQS and DynamoDB refuse (a record would be retried forever).

Both raise a ``ValueError`` subclass, so a caller's ``except ValueError`` already
turns them into its "invalid JSON" answer.
"""

from __future__ import annotations

import json
import re
from typing import Any

NOT_UNICODE = "text is not valid Unicode (an unpaired surrogate)"
# Bytes that were not UTF-8, as a file opened with errors="surrogateescape" gives
# them (simulate's logs, import files): such a line is reported, not a crash.
UNDECODABLE = re.compile("[\udc80-\udcff]")
# An escaped UTF-16 surrogate that is not half of a pair: a high one not followed by
# a low one, or a low one not after a high one. (A pair is how JSON escapes an emoji,
# and Python's json.dumps writes every non-BMP character so: those are fine.) A hit
# is only a hint, checked exactly on the decoded value (an escaped backslash before
# "ud800" matches too).
_LONE_SURROGATE_ESCAPE = re.compile(
    r"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})"
    r"|(?<!\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F][0-9a-fA-F]{2}")


class NotFiniteNumber(ValueError):
    """NaN, an infinity, or a number too large for a double."""


class NotUnicode(ValueError):
    """Text holding an unpaired surrogate."""

    def __init__(self) -> None:
        super().__init__(NOT_UNICODE)


def _no_constant(name: str) -> Any:
    raise NotFiniteNumber(f"{name} is not a JSON number")


def finite_float(text: str) -> float:
    """``parse_float`` for ``json.loads``: a number beyond a double's range is refused
    (:class:`NotFiniteNumber`) rather than read as infinity."""
    value = float(text)
    if value - value != 0.0:  # inf - inf is NaN
        raise NotFiniteNumber(f"{text[:40]} is beyond the range of a double")
    return value


# Integers of more digits than this may be beyond a double's range (1.8e308 has 309).
_MAX_SAFE_DIGITS = 308


def _int(text: str) -> int:
    value = int(text)
    if len(text) > _MAX_SAFE_DIGITS:  # rare: only long ones are checked
        try:
            float(value)
        except OverflowError:
            raise NotFiniteNumber(f"an integer of {len(text.lstrip('-'))} digits is beyond "
                                  "the range of a double") from None
    return value


_DECODER = json.JSONDecoder(parse_float=finite_float, parse_int=_int,
                            parse_constant=_no_constant)


def loads(text: str, *, check_unicode: bool = True) -> Any:
    """``json.loads`` for event text (see the module docstring).

    Raises ``json.JSONDecodeError``, ``RecursionError`` (nested too deeply),
    ``ValueError`` (an integer of more digits than Python converts),
    :class:`NotFiniteNumber` and, with ``check_unicode``, :class:`NotUnicode`.
    """
    value = _DECODER.decode(text)
    if check_unicode and (
            (not text.isascii() and not encodes(text))
            or ("\\u" in text and _LONE_SURROGATE_ESCAPE.search(text) and not encodes(
                json.dumps(value, ensure_ascii=False)))):
        raise NotUnicode()
    return value


def encodes(text: str) -> bool:
    """Whether ``text`` is valid Unicode (no unpaired surrogate)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def utf8_size(text: str | bytes) -> int:
    """The bytes of an event body as a queue counts them (UTF-8; a lone surrogate
    from undecodable input counted as its three bytes, not an error)."""
    if isinstance(text, bytes) or text.isascii():
        return len(text)
    return len(text.encode("utf-8", "surrogatepass"))


def decode_utf8(body: bytes) -> str:
    """A request or record body as text: UTF-8 (a leading byte-order mark is skipped);
    ``UnicodeDecodeError`` otherwise (``json.loads`` would guess UTF-16 or UTF-32)."""
    return body.decode("utf-8-sig")
