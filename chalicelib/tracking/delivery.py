"""Provider delivery statuses folded into a message's history (pure, no I/O).

A provider reports each status of a message at least once, in any order: Twilio
may post ``delivered`` before ``sent``, and may post either twice. Folding a
report is therefore idempotent on (provider message id, status): a report already
in the history changes nothing. The message's ``status`` only moves forward, to
the latest *meaningful* status (``sent``, then one of ``delivered``,
``undelivered``, ``failed``); the others (``queued``, ``accepted``, ``sending``...)
are kept in the history only. Each outcome class is counted once per message, and
``delivered`` and ``failed`` once between them: a failure after a delivery (SES
reports a bounce after the Delivery) moves the message's count from one to the other.

A report may also land while the sender is still waiting for Twilio's answer (the
callback outran the API reply): the sender's outcome is then folded in after it,
by :func:`outcome_status`, and never regresses the status the report set.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

RANK = {"sent": 1, "delivered": 2, "undelivered": 2, "failed": 2}
"""Meaningful statuses; a status replaces the current one if its rank is not lower."""

COUNTER = {"delivered": "delivered", "undelivered": "failed", "failed": "failed",
           "opened": "opened", "clicked": "clicked"}
"""The stats counter a status bumps, the first time its class is seen (so opens and
clicks count unique messages, not every open)."""


@dataclass(frozen=True, slots=True)
class StatusReport:
    """One provider report: ``MessageSid``, ``MessageStatus``, ``ErrorCode``."""

    provider_id: str
    status: str
    error_code: str | None = None
    source: str = "twilio"


@dataclass(frozen=True, slots=True)
class Change:
    """What a report changes: the new history and status, and a counter to bump."""

    history: list[dict[str, Any]]
    status: str
    counter: str | None
    error_code: str | None
    # A counter taken back as ``counter`` is bumped: ``delivered``, when a failure
    # (an email's late bounce) follows a delivery. A message counts once.
    uncounter: str | None = None


def outcome_status(current: str, outcome: str) -> str:
    """The message status once the sender's ``outcome`` is recorded over ``current``.

    ``current`` is ``sending`` unless a provider report landed first; a status of a
    higher rank stays (``delivered`` is not undone by the sender's ``sent``, and a
    report's ``sent`` is not replaced by an ``ambiguous`` read timeout). Rank-0
    outcomes (``ambiguous``, ``retry``) replace only rank-0 statuses (``sending``).
    """
    return current if RANK.get(current, 0) > RANK.get(outcome, 0) else outcome


def is_report(entry: Any) -> bool:
    """Whether a history entry was written by a provider report (not by the sender)."""
    return isinstance(entry, dict) and "provider_id" in entry


def seen(history: Sequence[Any], report: StatusReport) -> bool:
    """Whether ``report`` (same provider id and status) is already in ``history``."""
    return any(is_report(e) and e["provider_id"] == report.provider_id
               and e.get("status") == report.status for e in history)


def fold(history: Sequence[Any] | None, status: str, report: StatusReport,
         at: str) -> Change | None:
    """Fold ``report`` into a message; ``None`` when it was seen before.

    Parameters
    ----------
    history
        The message's status history (entries written by the sender and earlier
        reports).
    status
        The message's current status.
    report
        The provider's report.
    at
        When it arrived (ISO 8601), for the history entry.
    """
    past = list(history or [])
    if seen(past, report):
        return None
    entry = {"status": report.status, "at": at, "source": report.source,
             "provider_id": report.provider_id, "code": report.error_code}
    counter = COUNTER.get(report.status)
    counted = {COUNTER.get(e.get("status", "")) for e in past if is_report(e)}
    uncounter = None
    if counter in counted:
        counter = None  # e.g. "failed" after "undelivered": one failure, counted once
    elif counter == "failed" and "delivered" in counted:
        uncounter = "delivered"  # SES: a bounce after the Delivery: it failed after all
    elif counter == "delivered" and "failed" in counted:
        counter = None  # a failure stands: delivered and failed count a message once
    new_rank = RANK.get(report.status, 0)
    keep = RANK.get(status, 0) > new_rank or new_rank == 0
    return Change(history=[*past, entry], status=status if keep else report.status,
                  counter=counter, error_code=report.error_code, uncounter=uncounter)
