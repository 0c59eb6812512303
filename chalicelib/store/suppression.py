"""The suppression list: addresses that opted out, kept as keyed hashes.

Consent is recorded per customer (a profile's ``consent``), but some opt-outs are
about an address, not a customer id: an SMS STOP (or Twilio's 21610, its echo)
is the phone number's, an unsubscribe click or an SES complaint the mailbox's.
The same phone under another customer id, or a customer created again after an
erasure, must not be messaged. Each such opt-out is therefore also written here,
keyed by ``HMAC-SHA256(key, channel ":" normalised address)``: no address in
clear, so an erasure keeps the entry and an erased STOP stays honoured
(DESIGN.md). The key is ``key`` in the stage's suppression secret; a keyed hash,
not a plain one, because phone numbers are few enough to hash them all.

The sender checks the list at send time, for a step about to be sent (one
GetItem); :func:`blocks` decides, purely. An entry is lifted by a START from the
phone (:func:`lift`: marked, not deleted); a customer's own explicit opt-in newer
than the entry (an opt-in at checkout after the STOP, say) lets that customer's
messages through.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

from pynamodb.exceptions import UpdateError

from chalicelib.journeys.engine import CONTACT_FIELD
from chalicelib.journeys.profile import merge_consent
from chalicelib.store.models import SuppressionModel

CHANNELS = ("sms", "email")
_CONDITION_FAILED = "ConditionalCheckFailedException"


@dataclass(frozen=True, slots=True)
class Entry:
    """One suppressed address: when it opted out, and how (``sms:STOP``...)."""

    address_key: str
    channel: str
    at: str
    source: str


def key() -> bytes:
    """The hashing key, from the stage's suppression secret (cached).

    Raises ``ValueError`` when the secret holds no key (nothing may be sent before
    the list can be checked).
    """
    from chalicelib import aws, settings

    secret = aws.secret_json(settings.load().suppression_secret)
    value = str(secret.get("key") or "")
    if len(value) < 16:
        raise ValueError("the suppression secret needs a 'key' of at least 16 characters")
    return value.encode()


def normalise(channel: str, address: str) -> str:
    """The form an address is hashed in: E.164 phones as they are (the envelope and
    Twilio both give E.164), emails trimmed and case-folded whole (mailboxes that
    differ only in the case of their local part are one, for an opt-out)."""
    if channel == "email":
        return address.strip().casefold()
    if channel == "sms":
        return address.strip()
    raise ValueError(f"unknown channel {channel!r}")


def address_key(channel: str, address: str, secret: bytes | None = None) -> str:
    """The list's key for an address: ``channel:hex(HMAC-SHA256)``."""
    text = f"{channel}:{normalise(channel, address)}".encode()
    digest = hmac.new(secret if secret is not None else key(), text, hashlib.sha256)
    return f"{channel}:{digest.hexdigest()}"


def blocks(entry: Entry | None, consent: dict[str, Any] | None) -> str | None:
    """Why a message to an address with ``entry`` must not go (None: it may).

    ``consent`` is the recipient customer's consent record for the channel. The entry
    is an opt-out of the address at its time, weighed against that record by the
    profile's own rule (:func:`~chalicelib.journeys.profile.merge_consent`): only an
    explicit opt-in newer than it outranks it.
    """
    if entry is None:
        return None
    merged = merge_consent(consent, {"granted": False, "at": entry.at, "source": entry.source},
                           entry.at)
    if merged is not None and merged["granted"]:
        return None
    return f"address on the suppression list ({entry.source}, {entry.at[:10]})"


def opt_outs(profile: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(channel, address, at, source) of each withdrawn consent of ``profile`` (or of an
    event's ``customer``) whose address it holds."""
    found = []
    consent = profile.get("consent") or {}
    for channel, contact in CONTACT_FIELD.items():
        record, address = consent.get(channel), profile.get(contact)
        if isinstance(record, dict) and record.get("granted") is False and address:
            found.append((channel, str(address), str(record.get("at") or ""),
                          str(record.get("source") or "opt-out")))
    return found


def lookup(address_key_: str) -> Entry | None:
    """The entry for a key, if the address is suppressed (one GetItem); None when it
    has none, or its opt-out was lifted."""
    try:
        item = SuppressionModel.get(address_key_, consistent_read=True)
    except SuppressionModel.DoesNotExist:
        return None
    if item.lifted_at is not None:
        return None
    return Entry(item.address_key, item.channel, item.at, item.source)


def suppress_key(address_key_: str, at: str, source: str,
                 message_id: str | None = None) -> bool:
    """Record an opt-out of the address with this key; False when a newer opt-out or
    a newer lift is on the list already (the list keeps each address's latest word),
    or when ``message_id`` (the inbound SMS that said STOP) was applied already."""
    channel = address_key_.split(":", 1)[0]
    if channel not in CHANNELS:
        raise ValueError(f"not a suppression key: {address_key_!r}")
    actions: list[Any] = [SuppressionModel.channel.set(channel), SuppressionModel.at.set(at),
                          SuppressionModel.source.set(source),
                          SuppressionModel.lifted_at.remove()]
    condition: Any = SuppressionModel.address_key.does_not_exist() | (
        (SuppressionModel.at <= at) & (SuppressionModel.lifted_at.does_not_exist()
                                       | (SuppressionModel.lifted_at <= at)))
    if message_id is not None:
        actions.append(SuppressionModel.message_ids.add({message_id}))
        condition = condition & ~SuppressionModel.message_ids.contains(message_id)
    try:
        SuppressionModel(address_key_).update(actions=actions, condition=condition)
    except UpdateError as exc:
        if exc.cause_response_code == _CONDITION_FAILED:
            return False
        raise
    return True


def suppress(channel: str, address: str, at: str, source: str,
             message_id: str | None = None) -> bool:
    """Record an opt-out of ``address`` on ``channel`` (see :func:`suppress_key`)."""
    return suppress_key(address_key(channel, address), at, source, message_id)


def lift(channel: str, address: str, at: str, message_id: str | None = None) -> bool:
    """An explicit opt-in from the address itself (an SMS START) at ``at``: the entry
    is marked lifted (kept, as a record, and so the functions never delete), unless it
    is newer, or ``message_id`` (the START's SMS) was applied already. A later opt-out
    replaces it. Returns whether one was lifted."""
    item = SuppressionModel(address_key(channel, address))
    actions: list[Any] = [SuppressionModel.lifted_at.set(at)]
    condition: Any = SuppressionModel.at <= at  # false for a missing item too
    if message_id is not None:
        actions.append(SuppressionModel.message_ids.add({message_id}))
        condition = condition & ~SuppressionModel.message_ids.contains(message_id)
    try:
        item.update(actions=actions, condition=condition)
    except UpdateError as exc:
        if exc.cause_response_code == _CONDITION_FAILED:
            return False  # no entry, or one newer than this opt-in
        raise
    return True
