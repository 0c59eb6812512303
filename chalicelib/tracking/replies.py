"""Free-text SMS replies, recorded on the message they answer.

An inbound SMS that is neither a keyword (STOP, START, HELP) nor a survey answer is
a reply to the latest SMS Aftercare sent to that phone (to any customer who has it)
within :data:`REPLY_WINDOW`, found through the sparse ``sms-by-customer`` index of
the messages table. A message that never reached the phone (failed, undelivered,
retried, cancelled) is passed over for the one before it.

The message keeps the latest reply's text (:data:`MAX_REPLY_CHARS` at most) and time
(``reply``, ``reply_at``) and the ``MessageSid`` of each reply recorded
(``reply_sids``, at most :data:`MAX_REPLIES`), so a webhook delivered twice is
recorded once. The first reply to a message bumps the ``replied`` counter (on the
day the message was sent, beside its ``sent``), in the same transaction as the
message update, so a message is counted once however often the customer answers.
Reply texts are personal data: they are never logged, and ``aftercare erase``
deletes them with the message.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from pynamodb.expressions.condition import Condition, size
from pynamodb.expressions.update import Action
from pynamodb.transactions import TransactWrite

from chalicelib import clock
from chalicelib.pipeline.stats import stat_ops
from chalicelib.store.models import CustomerModel, MessageModel
from chalicelib.store.tx import Op, RequiredConditionFailed, Transaction, commit

log = logging.getLogger(__name__)

REPLY_WINDOW = timedelta(days=7)
MAX_REPLY_CHARS = 1600  # Twilio's limit for one (concatenated) message body
MAX_REPLIES = 50  # MessageSids kept per message; replies past them are not recorded
CANDIDATES = 5  # newest SMS per customer looked at for one that reached the phone
RECEIVED = frozenset({"sent", "delivered", "ambiguous"})
"""Message statuses of an SMS that reached, or may have reached, the phone (one still
``sending`` is in flight: the reply answers an earlier one, and a retry of that send
writes its message anew)."""
MAX_ATTEMPTS = 5
SENT_ARM = "treatment"  # only treatment messages are ever sent


def customers_with_phone(phone: str) -> list[str]:
    return [str(c.customer_id) for c in CustomerModel.by_phone.query(phone)]


def replied_message(phone: str, now: datetime) -> MessageModel | None:
    """The SMS a reply from ``phone`` at ``now`` answers, or None."""
    since = clock.iso(now - REPLY_WINDOW)
    hits: list[tuple[str, str]] = []
    for customer_id in customers_with_phone(phone):
        hits.extend((str(h.decided_at), str(h.message_id)) for h in MessageModel.sms.query(
            customer_id, MessageModel.decided_at >= since, scan_index_forward=False,
            limit=CANDIDATES))
    for _decided_at, message_id in sorted(hits, reverse=True)[:CANDIDATES]:
        try:
            msg = MessageModel.get(message_id, consistent_read=True)
        except MessageModel.DoesNotExist:
            continue  # erased since the index was read
        if msg.status in RECEIVED and msg.sms_customer:
            return msg
    return None


def record_reply(message_id: str, body: str, sid: str, at: str) -> str:
    """Record the reply ``sid`` (text ``body``, received ``at``) on its message.

    Returns ``recorded`` (the first reply: ``replied`` counted), ``again`` (a later
    reply), ``duplicate`` (this ``sid`` was recorded before), ``full`` (the message
    has :data:`MAX_REPLIES` already) or ``unknown`` (no such message).
    """
    text = body[:MAX_REPLY_CHARS]
    for _ in range(MAX_ATTEMPTS):
        try:
            msg = MessageModel.get(message_id, consistent_read=True)
        except MessageModel.DoesNotExist:
            return "unknown"
        sids = set(msg.reply_sids or ())
        if sid in sids:
            return "duplicate"
        if len(sids) >= MAX_REPLIES:
            return "full"
        first = not sids
        actions: list[Action] = [MessageModel.reply_sids.add({sid}), MessageModel.reply.set(text),
                   MessageModel.reply_at.set(at)]
        # Conditional on the sids read: a reply recorded meanwhile makes us read again,
        # so the first reply, and only it, is counted.
        # (The set only grows, so its size tells whether it changed.)
        # And on the message still being there (an erasure may have deleted it since:
        # an update would create it again, holding the reply).
        condition = MessageModel.message_id.exists() & (
            MessageModel.reply_sids.does_not_exist() if first
            else size(MessageModel.reply_sids) == len(sids))

        def update(tw: TransactWrite, actions: list[Action] = actions,
                   condition: Condition = condition) -> None:
            tw.update(MessageModel(message_id), actions=actions, condition=condition)

        ops: list[Op] = [update]
        if first:
            key = (msg.campaign_id, msg.variant, SENT_ARM, msg.decided_at[:10])
            ops.extend(stat_ops([(key, "replied")]))
        try:
            commit(Transaction(required=ops))
        except RequiredConditionFailed as exc:
            if exc.index == 0:
                continue  # read again: a reply recorded meanwhile, or the message gone
            raise
        return "recorded" if first else "again"
    raise RuntimeError(f"message {message_id} kept changing while recording a reply")


def record_sms_reply(phone: str, body: str, sid: str) -> str:
    """A free-text SMS from ``phone``: recorded on the SMS it answers, if any.
    Returns :func:`record_reply`'s result, ``unmatched``, or ``error`` when it could
    not be recorded (DynamoDB refused: logged, never raised, since Twilio does not
    retry an inbound webhook and a 500 would lose the reply all the same)."""
    now = clock.now()
    msg = None
    try:
        msg = replied_message(phone, now)
        result = "unmatched" if msg is None else record_reply(msg.message_id, body, sid,
                                                             clock.iso(now))
    except Exception as exc:  # never the body or the phone in the log
        log.warning("sms reply not recorded", extra={
            "error": type(exc).__name__,
            "message_id": None if msg is None else msg.message_id})
        return "error"
    log.info("sms reply", extra={"result": result,
                                 "message_id": None if msg is None else msg.message_id})
    return result
