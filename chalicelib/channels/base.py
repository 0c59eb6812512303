"""Channel-neutral send results and errors.

Every channel adapter returns a :class:`SendResult` whose ``outcome`` tells the
sender what the provider call means for at-most-once delivery:

- ``accepted``: the provider took the message; ``provider_id`` is set.
- ``retryable``: the failure is known to have happened *before* the provider
  accepted anything (HTTP 429, connection refused): safe to try again later.
- ``permanent``: the provider refused the message for good (invalid number,
  unsubscribed recipient, validation error): record it, never retry.
- ``ambiguous``: the call started and its fate is unknown (timeout, reset, 5xx):
  record it and never resend, since the recipient may already have it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Outcome = Literal["accepted", "retryable", "permanent", "ambiguous"]


@dataclass(frozen=True, slots=True)
class SendResult:
    outcome: Outcome
    provider_id: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    status: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def accepted(self) -> bool:
        return self.outcome == "accepted"


@dataclass(frozen=True, slots=True)
class SmsMessage:
    to: str
    body: str
    status_callback: str | None = None


@dataclass(frozen=True, slots=True)
class EmailMessage:
    to: str
    subject: str
    html: str
    text: str
    headers: dict[str, str] = field(default_factory=dict)
