"""Template file names: ``{name}[.{locale}].{channel}.j2`` and locale fallback."""

from __future__ import annotations

import re
from typing import Final, NamedTuple

CHANNELS: Final = ("sms", "email")
_FILE: Final = re.compile(
    r"^(?P<name>[A-Za-z0-9_-]+)"
    r"(?:\.(?P<locale>[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*))?"
    r"\.(?P<channel>sms|email)\.j2$"
)


class TemplateFile(NamedTuple):
    """What a message template's file name says about it."""

    name: str
    channel: str
    locale: str | None  # normalised key: lower case, ``-`` separated

    @property
    def is_partial(self) -> bool:
        """Files whose name starts with ``_`` are layouts or partials, never sent."""
        return self.name.startswith("_")


def locale_key(locale: str) -> str:
    """Normalise a locale for matching: ``pt_BR`` and ``PT-br`` both give ``pt-br``."""
    return locale.strip().replace("_", "-").lower()


def parse_filename(filename: str) -> TemplateFile | None:
    """Parse a message template file name; None for any other file (e.g. a partial in a folder)."""
    match = _FILE.match(filename)
    if match is None:
        return None
    locale = match["locale"]
    return TemplateFile(match["name"], match["channel"], locale_key(locale) if locale else None)


_POSIX_SUFFIX: Final = re.compile(r"[.@].*", re.DOTALL)


def locale_parts(locale: str) -> list[str]:
    """A locale's parts as written, without the encoding or modifier of a POSIX
    locale (which Babel reads too): ``es_MX.UTF-8@euro`` gives ``["es", "MX"]``."""
    base = _POSIX_SUFFIX.sub("", locale.strip())
    return [p for p in base.replace("_", "-").split("-") if p]


def locale_chain(locale: str) -> list[str]:
    """Locale keys from most to least specific: ``pt-BR`` gives ``["pt-br", "pt"]``,
    ``es.UTF-8`` gives ``["es"]``."""
    parts = [p.lower() for p in locale_parts(locale)]
    return ["-".join(parts[:i]) for i in range(len(parts), 0, -1)]


def check_channel(channel: str) -> None:
    """Raise ValueError for anything but ``sms`` or ``email``."""
    if channel not in CHANNELS:
        raise ValueError(f"unknown channel {channel!r}; expected one of {CHANNELS}")
