"""Record provider status reports on the message they belong to.

The sender names the message in the callback URL (``?m=<message id>``), so a
report finds its message by key, even one still ``sending`` (Twilio can post a
status before its API reply reaches the sender, and the message, written before
the provider is called, is always there first). A message id that names a
message with another provider id is refused (``mismatch``). Callbacks without
``m`` (messages sent before the id was in the URL) are looked up by provider id:
one Query on the provider-id index (keys only; asked again a few times, with
pauses, while it finds nothing: see :data:`LOOKUP_PAUSES`).

Then: one consistent GetItem, and one TransactWriteItems that writes the new
history conditional on the history read (optimistic concurrency) together with
the stats counter. Two copies of one report racing each other: one commits, the
other's condition fails, it reads again, finds its status in the history and
changes nothing, so a counter is never bumped twice. The sender's outcome write
is conditional on the history in the same way
(:func:`chalicelib.pipeline.send.record_outcome`), so a report and the outcome,
in either order, both stay recorded.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pynamodb.expressions.condition import Condition
from pynamodb.expressions.update import Action
from pynamodb.transactions import TransactWrite

from chalicelib import clock
from chalicelib.pipeline.stats import stat_ops
from chalicelib.store.models import MessageModel
from chalicelib.store.tx import Op, RequiredConditionFailed, Transaction, commit
from chalicelib.tracking.delivery import Change, StatusReport, fold

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 5
SENT_ARM = "treatment"  # only treatment messages are ever sent


@dataclass(frozen=True, slots=True)
class Recorded:
    """``result``: ``recorded``, ``duplicate`` (seen before), ``unknown`` (no message)
    or ``mismatch`` (the named message was sent with another provider id)."""

    result: str
    message_id: str | None = None
    status: str | None = None
    counter: str | None = None
    customer_id: str | None = None  # the message's, when it was read


# A report can outrun the provider id it names: the sender records the id just after
# Twilio answers, and the provider-id index is eventually consistent (AWS: a GSI
# usually trails the table by a fraction of a second). So a report for an id not
# found yet is looked up again after these pauses (1.4 s in all) before it is dropped.
LOOKUP_PAUSES: tuple[float, ...] = (0.2, 0.4, 0.8)
pause: Callable[[float], None] = time.sleep  # replaced in tests


def find_message_id(provider_id: str) -> str | None:
    """The message sent with this provider id (GSI query, keys only)."""
    for hit in MessageModel.by_provider.query(provider_id, limit=1):
        return str(hit.message_id)
    return None


def find_message_id_patiently(provider_id: str) -> str | None:
    """:func:`find_message_id`, asked again after each of :data:`LOOKUP_PAUSES`."""
    message_id = find_message_id(provider_id)
    for seconds in LOOKUP_PAUSES:
        if message_id is not None:
            break
        pause(seconds)
        message_id = find_message_id(provider_id)
    return message_id


def _history_unchanged(history: Any) -> Condition:
    if history is None:
        return MessageModel.history.does_not_exist()
    return MessageModel.history == history


def _update_message(msg: MessageModel, change: Change, provider_id: str | None) -> Op:
    actions: list[Action] = [MessageModel.history.set(change.history),
                             MessageModel.status.set(change.status)]
    if provider_id and not msg.provider_id:
        # Reported before the sender stored it (or never stored: an ambiguous send).
        actions.append(MessageModel.provider_id.set(provider_id))
    if change.error_code:
        actions.append(MessageModel.error_code.set(change.error_code))
    condition = _history_unchanged(msg.history)

    def op(tw: TransactWrite) -> None:
        tw.update(MessageModel(msg.message_id), actions=actions, condition=condition)

    return op


def report_transaction(msg: MessageModel, change: Change,
                       provider_id: str | None = None) -> Transaction:
    """The conditional message update and, if any, the counter bump, as one write.

    ``provider_id`` is stored on the message if it has none yet.
    """
    ops = [_update_message(msg, change, provider_id)]
    if change.counter is not None:
        # Counted on the day the message was sent, beside its ``sent`` count.
        key = (msg.campaign_id, msg.variant, SENT_ARM, msg.decided_at[:10])
        ops.extend(stat_ops([(key, change.counter)],
                            [(key, change.uncounter)] if change.uncounter else []))
    return Transaction(required=ops)


def record_report(report: StatusReport, message_id: str | None = None) -> Recorded:
    """Fold one provider report into its message, exactly once.

    Parameters
    ----------
    report
        The provider's report.
    message_id
        The message named in the callback URL (``m``); ``None`` for a callback
        without it, looked up by provider id.

    Raises
    ------
    RuntimeError
        When the message kept changing under us for ``MAX_ATTEMPTS`` reads.
    """
    if message_id is None:
        message_id = find_message_id_patiently(report.provider_id)
        if message_id is None:
            log.warning("status report for an unknown message", extra={
                "provider_id": report.provider_id, "status": report.status})
            return Recorded("unknown")
    for _ in range(MAX_ATTEMPTS):
        try:
            msg = MessageModel.get(message_id, consistent_read=True)
        except MessageModel.DoesNotExist:
            log.warning("status report names a missing message", extra={
                "message_id": message_id, "provider_id": report.provider_id})
            return Recorded("unknown", message_id)
        if msg.provider_id and msg.provider_id != report.provider_id:
            log.warning("status report for another provider id than the message's", extra={
                "message_id": message_id, "provider_id": report.provider_id,
                "stored_provider_id": msg.provider_id})
            return Recorded("mismatch", message_id, msg.status)
        change = fold(msg.history, msg.status, report, clock.iso(clock.now()))
        if change is None:
            return Recorded("duplicate", message_id, msg.status, customer_id=msg.customer_id)
        try:
            commit(report_transaction(msg, change, report.provider_id))
        except RequiredConditionFailed as exc:
            if exc.index == 0:
                continue  # another report, or the sender's outcome, landed first: read again
            raise
        log.info("status recorded", extra={"message_id": message_id, "status": report.status,
                                           "error_code": report.error_code})
        return Recorded("recorded", message_id, change.status, change.counter,
                        msg.customer_id)
    raise RuntimeError(f"message {message_id} kept changing while recording a status")
