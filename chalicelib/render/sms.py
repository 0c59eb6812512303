"""SMS encoding and segment arithmetic (GSM 03.38 / UCS-2).

A body made only of GSM 03.38 characters is sent as GSM-7: 160 septets in one
segment, 153 per segment once split (7 septets go to the concatenation
header). Characters from the extension table take two septets (escape + code).
Any other character switches the whole message to UCS-2: 70 UTF-16 code units
in one segment, 67 once split; characters outside the BMP (most emoji) take
two code units. Neither an escape sequence nor a surrogate pair is split
across segments, as handsets and Twilio's counter do.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final, Literal

SmsEncoding = Literal["GSM-7", "UCS-2"]

# GSM 03.38 default alphabet, in code order (0x1B, the escape, is left out).
GSM7_BASIC: Final = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# Extension table: each costs the escape septet plus its own.
GSM7_EXTENSION: Final = frozenset("\f^{}\\[~]|€")

GSM7_SINGLE: Final = 160
GSM7_MULTI: Final = 153
UCS2_SINGLE: Final = 70
UCS2_MULTI: Final = 67

# Characters that silently force UCS-2 although a GSM look-alike exists.
LOOKALIKES: Final = {
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201c": '"', "\u201d": '"',
    "\u201e": '"', "\u2013": "-", "\u2014": "-", "\u2026": "...", "\u00b4": "'",
}
# Invisible spaces (Babel puts U+00A0 / U+202F in prices and times) cost a
# whole encoding switch in an SMS, so bodies carry plain spaces instead.
_ODD_SPACES: Final = re.compile("[\u00a0\u2002-\u200a\u202f\u205f\u3000]")
_BLANK_LINES: Final = re.compile(r"\n{3,}")
# Babel groups thousands with U+2019 in de-CH and it-CH (CHF 1\u2019500.00): between
# digits it is a number's separator, sent as the apostrophe GSM-7 has.
_DIGIT_APOSTROPHE: Final = re.compile("(?<=[0-9])\u2019(?=[0-9])")


def _units(char: str, encoding: SmsEncoding) -> int:
    if encoding == "GSM-7":
        return 2 if char in GSM7_EXTENSION else 1
    return 2 if ord(char) > 0xFFFF else 1


def sms_encoding_info(body: str) -> tuple[SmsEncoding, int, int]:
    """Measure an SMS body the way carriers bill it.

    Parameters
    ----------
    body
        The message text, exactly as it will be sent.

    Returns
    -------
    tuple[str, int, int]
        ``(encoding, segments, characters)``: ``"GSM-7"`` or ``"UCS-2"``; the
        number of segments (0 for an empty body); and the length in encoding
        units, i.e. what the 160/70 limits count (septets for GSM-7, where an
        extension character counts 2; UTF-16 code units for UCS-2, where an
        emoji counts 2).

    Examples
    --------
    >>> sms_encoding_info("a" * 161)
    ('GSM-7', 2, 161)
    >>> sms_encoding_info("Thanks 🙂")
    ('UCS-2', 1, 9)
    """
    gsm = all(c in GSM7_BASIC or c in GSM7_EXTENSION for c in body)
    encoding: SmsEncoding = "GSM-7" if gsm else "UCS-2"
    single, multi = (GSM7_SINGLE, GSM7_MULTI) if gsm else (UCS2_SINGLE, UCS2_MULTI)
    sizes = [_units(c, encoding) for c in body]
    total = sum(sizes)
    if total == 0:
        return encoding, 0, 0
    if total <= single:
        return encoding, 1, total
    segments, used = 1, 0
    for size in sizes:
        if used + size > multi:  # never split an escape pair or a surrogate pair
            segments, used = segments + 1, 0
        used += size
    return encoding, segments, total


def non_gsm_characters(body: str) -> list[str]:
    """Return the distinct characters of ``body`` outside GSM 03.38, in order."""
    seen: dict[str, None] = {}
    for char in body:
        if char not in GSM7_BASIC and char not in GSM7_EXTENSION:
            seen.setdefault(char, None)
    return list(seen)


def tidy_sms_body(body: str) -> str:
    """Normalise a rendered SMS body.

    Composes accents (NFC: an ``e`` followed by a combining accent, as some
    editors and data sources write it, becomes ``é``, which GSM-7 has; the
    text looks the same), unifies line endings, turns no-break and other
    typographic spaces into plain spaces and a typographic apostrophe between
    digits (Swiss thousands: ``1\u2019500``) into ``'``, drops trailing spaces on each line,
    squeezes runs of blank lines to one and strips the ends.
    """
    body = unicodedata.normalize("NFC", body)
    body = body.replace("\r\n", "\n").replace("\r", "\n")
    body = _ODD_SPACES.sub(" ", body)
    body = _DIGIT_APOSTROPHE.sub("'", body)
    # Line by line: a regular expression for "spaces before a newline" retries
    # every start in a long run of spaces, quadratic time (seconds for 100k).
    body = "\n".join(line.rstrip(" \t") for line in body.split("\n"))
    body = _BLANK_LINES.sub("\n\n", body)
    return body.strip()
