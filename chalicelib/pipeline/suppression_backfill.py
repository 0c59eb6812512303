"""``aftercare suppression-backfill``: list the opt-outs recorded before the
suppression list existed.

The consent routes put an opt-out made from the address itself on the list as it
happens (an SMS STOP or other keyword, Twilio's 21610, an unsubscribe click, an SES
complaint); those recorded before the list existed are on their customers' consent
records only. This lists them, from each profile's withdrawn consents whose source
is the address's (``sms:...`` or ``email:...``, the sources those routes record),
with their own time and source. An opt-out from an order system or a preference
centre stays the customer's own (listing it would block other customers sharing
the address). Erased customers are skipped (their erasure listed theirs).

Run it once after upgrading. It is idempotent: the list keeps each address's latest
word, so an entry already newer, or lifted by a later START, stays as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chalicelib.store import suppression
from chalicelib.store.models import CustomerModel
from chalicelib.store.scan import SEGMENTS, parallel_scan


@dataclass(slots=True)
class BackfillReport:
    opt_outs: int = 0  # address-level opt-outs found on profiles
    listed: int = 0  # written to the list (the others had a newer word there already)


def from_address(source: str) -> bool:
    """Whether a consent record's source is the address's own opt-out."""
    return source.startswith(("sms:", "email:"))


def backfill_suppression(*, segments: int = SEGMENTS, dry_run: bool = False) -> BackfillReport:
    """List every live profile's address-level opt-outs (see the module docstring)."""
    def pick(customer: CustomerModel) -> list[tuple[str, str, str, str]] | None:
        if customer.erased_at is not None or not isinstance(customer.profile, dict):
            return None
        profile: dict[str, Any] = customer.profile
        found = [o for o in suppression.opt_outs(profile) if o[2] and from_address(o[3])]
        return found or None

    report = BackfillReport()
    for found in parallel_scan(CustomerModel, ["customer_id", "profile", "erased_at"], pick,
                               segments):
        for channel, address, at, source in found:
            report.opt_outs += 1
            if not dry_run:
                report.listed += suppression.suppress(channel, address, at, source)
    return report
