"""The sender: decide again at send time, then send at most once.

Per send: one GetItem (the profile), one GetItem (the recipient's address on the
suppression list, :mod:`chalicelib.store.suppression`, for a step about to be
sent), one transaction that writes the message as
``sending`` (conditional on its deterministic id) and takes the step off the due
index, the provider call, and one transaction that records the outcome and bumps
stats. Only failures known to happen before the provider accepted are retried.

Twilio may post a status callback before its API reply reaches us; the callback
URL names the message (``?m=<id>``), so the report is recorded on the ``sending``
message at once. The outcome write is therefore conditional on the history
written at the claim: on the common path it holds (no extra request); when a
report landed first, the message is read again and the outcome appended after
the report, with a status that never regresses the report's
(:func:`~chalicelib.tracking.delivery.outcome_status`). Counters stay counted
once: the sender's (``sent``, ``failed``, ``ambiguous``) by the one outcome
transaction that commits, the report's (``delivered``, ``failed``) by the report.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pynamodb.expressions.update import Action
from pynamodb.transactions import TransactWrite

from chalicelib import aws, clock, settings
from chalicelib.channels.base import EmailMessage, SendResult, SmsMessage
from chalicelib.config.compiled import CompiledCampaign
from chalicelib.journeys.engine import PlannedStep, StepDecision, decide_step
from chalicelib.journeys.messages import (
    RenderedMessage,
    message_tags,
    render_failure,
    render_message,
)
from chalicelib.pipeline.batch import PermanentError
from chalicelib.pipeline.ingest import add_planned, live_profile, load_customer
from chalicelib.pipeline.observers import copy_to_observers
from chalicelib.pipeline.stats import StatKey, stat_ops
from chalicelib.store import suppression
from chalicelib.store.campaigns import LiveCache, LiveCampaigns, latest_version
from chalicelib.store.models import MessageModel, ScheduleModel
from chalicelib.store.tx import Op, RequiredConditionFailed, Transaction, commit
from chalicelib.tracking import links
from chalicelib.tracking.callbacks import status_callback_url
from chalicelib.tracking.delivery import is_report, outcome_status

log = logging.getLogger(__name__)
RETRY_BACKOFF = timedelta(minutes=5)
SENDING_TIMEOUT = timedelta(minutes=15)
MAX_SEND_ATTEMPTS = 5


@dataclass(frozen=True, slots=True)
class SendOutcome:
    schedule_id: str
    outcome: str
    reason: str
    provider_id: str | None = None
    due: tuple[str, ...] = ()


class Channels:
    """The providers, made on first use with credentials from Secrets Manager."""

    def __init__(self) -> None:
        self._sms: Any = None
        self._email: Any = None
        self._signing_key: bytes | None = None
        # (campaign, step, UTC day) whose observer copies this worker found all sent.
        self.observer_slots_taken: set[tuple[str, str, str]] = set()

    def sms(self) -> Any:
        if self._sms is None:
            from chalicelib.channels.sms import TwilioSmsChannel

            conf = settings.load()
            secret = aws.secret_json(conf.twilio_secret)
            self._sms = TwilioSmsChannel(
                account_sid=secret["account_sid"],
                auth_token=secret["auth_token"],
                messaging_service_sid=secret.get("messaging_service_sid"),
                from_number=secret.get("from_number"),
                base_url=conf.twilio_base_url,
            )
        return self._sms

    def email(self) -> Any:
        if self._email is None:
            from chalicelib.channels.email import SesEmailChannel

            conf = settings.load()
            self._email = SesEmailChannel(aws.client("sesv2"), conf.ses_from,
                                          conf.ses_configuration_set)
        return self._email

    def forget_sms(self) -> None:
        """Drop the SMS channel: the next send builds it again from the secret, read
        again once its cache (``aws.SECRET_MAX_AGE``, 5 min) has expired, by the time
        the first retry is due (``RETRY_BACKOFF``). After Twilio refused the
        credentials, a rotated auth token would otherwise never reach a warm Lambda."""
        self._sms = None

    def signing_key(self) -> bytes:
        if self._signing_key is None:
            self._signing_key = links.link_key()
        return self._signing_key


def _now_iso() -> str:
    return clock.iso(clock.now())


def _finish_schedule(schedule_id: str, token: str, status: str, outcome: str,
                     reason: str, expect: str = "claimed") -> Op:
    def op(tw: TransactWrite) -> None:
        tw.update(
            ScheduleModel(schedule_id),
            actions=[
                ScheduleModel.status.set(status),
                ScheduleModel.outcome.set(outcome),
                ScheduleModel.reason.set(reason),
                ScheduleModel.updated_at.set(_now_iso()),
                ScheduleModel.due_shard.remove(),
                ScheduleModel.pending_campaign.remove(),
            ],
            # The status check keeps a step cancelled at ingest (an exit) cancelled.
            condition=(ScheduleModel.claim_token == token) & (ScheduleModel.status == expect),
        )

    return op


def _requeue(step: PlannedStep, token: str, due: datetime, *, retry: bool = False) -> Op:
    """Back to pending, due at ``due``: a retry, or a deferral (which rewrites the step
    with how long deferrals have held it back: not lateness for expire_after)."""
    def op(tw: TransactWrite) -> None:
        tw.update(
            ScheduleModel(step.id),
            actions=[
                *([ScheduleModel.retries.add(1)] if retry else
                  [ScheduleModel.step.set(step.to_dict())]),
                ScheduleModel.status.set("pending"),
                ScheduleModel.due_at.set(int(due.timestamp())),
                ScheduleModel.due_shard.set(step.shard),
                ScheduleModel.pending_campaign.set(step.campaign_id),
                ScheduleModel.updated_at.set(_now_iso()),
            ],
            condition=(ScheduleModel.claim_token == token)
            & (ScheduleModel.status == ("sending" if retry else "claimed")),
        )

    return op


def _message(step: PlannedStep, decision: StepDecision, status: str,
             survey: str | None = None) -> MessageModel:
    now = _now_iso()
    texted = decision.channel == "sms" and status == "sending"
    texted_survey = texted and survey is not None
    return MessageModel(
        step.id, status=status, outcome=decision.outcome, reason=decision.reason or None,
        customer_id=step.customer_id, campaign_id=step.campaign_id, step_id=step.step_id,
        variant=step.variant, channel=decision.channel, template=decision.template,
        due_at=clock.iso(step.due_at), decided_at=now,
        history=[{"status": status, "at": now}],
        survey_kind=survey if texted_survey else None,
        survey_customer=step.customer_id if texted_survey else None,
        sms_customer=step.customer_id if texted else None,
    )


def _message_state(message_id: str) -> tuple[list[dict[str, Any]], str]:
    """The message's history and status as stored (none yet: empty, ``sending``)."""
    try:
        msg = MessageModel.get(message_id, consistent_read=True)
    except MessageModel.DoesNotExist:
        return [], "sending"
    return list(msg.history or []), msg.status


def _put_message(msg: MessageModel) -> Op:
    """The message of an attempt: the step's first, or one after an attempt to be
    retried (``retry``), or after one whose retry a change of date cancelled and a
    change back planned again (``cancelled``, see ingest's ``_cancel_retrying``)."""
    def op(tw: TransactWrite) -> None:
        tw.save(msg, condition=MessageModel.message_id.does_not_exist()
                | MessageModel.status.is_in("retry", "cancelled"))

    return op


def _arm(step: PlannedStep) -> str:
    return "holdout" if step.holdout else "treatment"


def _bump(step: PlannedStep, counter: str, day: str | None = None) -> tuple[StatKey, str]:
    """A counter of ``step`` on ``day`` (default today, UTC): a decision counts on the
    day it was made; a send's outcome on the day it was sent (its claim), where its
    provider's reports count its delivery (``decided_at``), even when the provider
    answers after midnight."""
    return (step.campaign_id, step.variant, _arm(step),
            day or clock.now().date().isoformat()), counter


def _stat(step: PlannedStep, counter: str, day: str | None = None) -> list[Op]:
    return stat_ops([_bump(step, counter, day)])


def _sent_on(history: list[Any]) -> str | None:
    """The day (UTC) of the sender's claim of the current attempt: its last
    ``sending`` entry, written with the message's ``decided_at``."""
    for entry in reversed(history):
        if isinstance(entry, dict) and not is_report(entry) and entry.get("status") == "sending":
            return str(entry.get("at", ""))[:10] or None
    return None


STAT_FOR = {"held_out": "held_out", "expired": "expired", "exited": "exited",
            "skipped": "skipped", "suppressed": "suppressed", "cancelled": "cancelled",
            "failed": "failed"}


def _record_no_send(step: PlannedStep, token: str, decision: StepDecision) -> None:
    tx = Transaction(required=[
        _finish_schedule(step.id, token, "done", decision.outcome, decision.reason),
        _put_message(_message(step, decision, decision.outcome)),
    ])
    # The counter with the follow-ups' ``enrolled`` (one update per stats item).
    add_planned(tx, decision.follow_ups, [_bump(step, STAT_FOR[decision.outcome])],
                continuing=step.ref)
    commit(tx)


def _deliver(step: PlannedStep, decision: StepDecision, rendered: RenderedMessage,
             channels: Channels) -> SendResult:
    tags = dict(message_tags(step))
    if decision.channel == "sms":
        callback = status_callback_url(step.id)
        result: SendResult = channels.sms().send(
            SmsMessage(to=str(decision.to), body=rendered.body, status_callback=callback))
        if result.extra.get("reason") == "authentication_failed":
            channels.forget_sms()
        return result
    headers = {"List-Unsubscribe": f"<{rendered.unsubscribe}>",
               "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}
    email = EmailMessage(to=str(decision.to), subject=rendered.subject, html=rendered.html,
                         text=rendered.text, headers=headers)
    result = channels.email().send(email, tags)
    return result


def _render(step: PlannedStep, profile: dict[str, Any], decision: StepDecision,
            campaigns: LiveCampaigns, channels: Channels, recipient_key: str,
            ) -> RenderedMessage:
    from chalicelib.render import TemplateError

    campaign = campaigns.campaigns.get(step.campaign_id)
    if campaign is None or decision.template is None or decision.channel is None:
        raise PermanentError("campaign or template missing at render time", "template")
    # An email's unsubscribe link also names the recipient's suppression key (a keyed
    # hash): a click after the message is gone (an erasure) still suppresses the
    # mailbox. Not in SMS, where every character of a link counts.
    extra = {"r": recipient_key} if decision.channel == "email" else {}
    make_link = links.link_maker(settings.load().public_base_url, channels.signing_key(),
                                 clock.now(), extra)
    renderer = renderer_for(step.campaign_id, campaign.version,
                            campaigns.templates.get(step.campaign_id, {}))
    try:
        return render_message(step, profile, campaign, decision.channel, decision.template,
                              renderer, make_link, settings.load().default_timezone)
    except TemplateError as exc:
        raise PermanentError(render_failure(exc), "template") from None


_renderers: dict[tuple[str, int], Any] = {}


def renderer_for(campaign_id: str, version: int, templates: dict[str, str] | Any) -> Any:
    from chalicelib.render import Renderer

    key = (campaign_id, version)
    if key not in _renderers:
        _renderers[key] = Renderer(templates)
    return _renderers[key]


def clear_renderers() -> None:
    """Forget the renderers built per (campaign, version): a new local stack numbers
    versions from 1 again, with other templates."""
    _renderers.clear()


SENDER_STATUS = {"accepted": "sent", "permanent": "failed", "ambiguous": "ambiguous",
                 "retryable": "retry"}
MAX_OUTCOME_TRIES = 5  # writes of the outcome, each after a report changed the message


def _sender_status(result: SendResult, attempt: int) -> str:
    status = SENDER_STATUS[result.outcome]
    return "failed" if status == "retry" and attempt >= MAX_SEND_ATTEMPTS else status


def _outcome_update(step: PlannedStep, token: str, result: SendResult, attempt: int,
                    history: list[dict[str, Any]], current: str = "sending") -> Transaction:
    """The outcome write over a message whose status is ``current`` and history
    ``history`` (as claimed, or as a provider report left it), conditional on that
    history: a report landing meanwhile makes it fail rather than be overwritten."""
    now = _now_iso()
    status = _sender_status(result, attempt)
    shown = outcome_status(current, status)
    actions: list[Action] = [
        MessageModel.status.set(shown),
        MessageModel.history.set([*history, {"status": status, "at": now,
                                             "code": result.error_code}]),
    ]
    if result.provider_id:
        actions.append(MessageModel.provider_id.set(result.provider_id))
    if result.error_code and shown == status:  # a report's error code stays
        actions.append(MessageModel.error_code.set(result.error_code))
    unchanged = MessageModel.history == history

    def update_message(tw: TransactWrite) -> None:
        tw.update(MessageModel(step.id), actions=actions, condition=unchanged)

    required: list[Op] = [update_message]
    if status == "retry":
        required.append(_requeue(step, token, clock.now() + RETRY_BACKOFF * attempt, retry=True))
    else:
        counter = {"sent": "sent", "failed": "failed", "ambiguous": "ambiguous"}[status]
        required.append(_finish_schedule(step.id, token, "done", status,
                                         result.error_code or "", expect="sending"))
        required.extend(_stat(step, counter, _sent_on(history)))
    return Transaction(required=required)


def record_outcome(step: PlannedStep, token: str, result: SendResult, attempt: int,
                   history: list[dict[str, Any]]) -> None:
    """The provider has answered: this write must land, once.

    A report that landed on the message first fails the history condition: read
    the message again and append after it. Retry other conflicts (another sender
    bumping the same stats item), then fall back to writing the message and
    schedule alone and the stats on their own, so the outcome is never lost.
    """
    now_history, now_status = history, "sending"  # the message as last read

    def write(pick: Callable[[Transaction], list[Op]]) -> None:
        """Commit ``pick`` of the outcome write, re-reading after each report."""
        nonlocal now_history, now_status
        for _ in range(MAX_OUTCOME_TRIES):
            ops = pick(_outcome_update(step, token, result, attempt, now_history, now_status))
            try:
                commit(Transaction(required=ops))
                return
            except RequiredConditionFailed as exc:
                if exc.index != 0:  # the schedule's condition: settled elsewhere
                    raise
                now_history, now_status = _message_state(step.id)
        raise RuntimeError(f"message {step.id} kept changing while recording its outcome")

    for n in range(4):
        try:
            write(lambda tx: tx.required)
            return
        except RequiredConditionFailed:
            raise
        except Exception:
            log.warning("outcome write failed (attempt %d), retrying", n + 1)
            time.sleep(0.05 * 2 ** n)
    try:
        write(lambda tx: tx.required[:1])  # the message alone, still after any report
    except Exception:
        log.exception("outcome write failed alone")
    for op in _outcome_update(step, token, result, attempt, history).required[1:]:
        try:
            commit(Transaction(required=[op]))
        except Exception:
            log.exception("outcome write failed alone")


def _check_step_types(step: PlannedStep) -> None:
    """TypeError for a step whose fields the tick could not have written: such a
    request can never succeed (to the DLQ with the reason, not retried)."""
    for name in ("customer_id", "campaign_id", "step_id", "ref", "enrolled_at", "event_id"):
        if not isinstance(getattr(step, name), str):
            raise TypeError(f"step.{name} must be a string")
    if step.variant is not None and not isinstance(step.variant, str):
        raise TypeError("step.variant must be a string or null")
    for name in ("order", "data"):
        if getattr(step, name) is not None and not isinstance(getattr(step, name), dict):
            raise TypeError(f"step.{name} must be an object or null")


STALE_RECHECK_SECONDS = 1.0


class StaleCampaigns(Exception):
    """The live campaigns read are older than a step's version (the active index has
    not caught up with a push yet): the send request is retried later."""


def _newer_live(step: PlannedStep, live: LiveCache, cached: CompiledCampaign | None,
                ) -> tuple[LiveCampaigns, CompiledCampaign | None]:
    """The live campaigns again, for a step this instance's cache cannot decide: one
    planned from a newer version than it holds (another instance planned it after a
    push), or of a campaign it does not hold (paused, or pushed since it was loaded).
    Deciding from the cache would cancel the step for good, as paused or removed. A
    campaign missing from a cache read less than ``STALE_RECHECK_SECONDS`` ago is
    not read again (one read a second at most, however many of its steps come due);
    :func:`_not_live` then tells paused from resumed."""
    campaigns = live.get(0.0 if cached is not None else STALE_RECHECK_SECONDS)
    campaign = campaigns.campaigns.get(step.campaign_id)
    if campaign is not None and campaign.version < step.campaign_version:
        raise StaleCampaigns(
            f"live campaign {step.campaign_id!r} is version {campaign.version}, the step "
            f"was planned from version {step.campaign_version}: retried later")
    return campaigns, campaign


def _not_live(step: PlannedStep) -> CompiledCampaign | None:
    """For a step of a campaign the live campaigns do not hold: its current version
    when the campaign is paused (its yearly chain goes on, see ``decide_step``), or
    None (archived, draft, never pushed). A campaign whose latest version is active
    was pushed (resumed) after the live campaigns were read, or the active index has
    not caught up: the step is retried later, not cancelled."""
    latest = latest_version(step.campaign_id)
    if latest is None:
        return None
    status, current = latest
    if status == "active":
        raise StaleCampaigns(f"campaign {step.campaign_id!r} is active but not in the live "
                             "campaigns read: retried later")
    return current if status == "paused" else None


def send_one(body: str, live: LiveCache, channels: Channels) -> SendOutcome:
    """Handle one message from the sends queue."""
    try:
        msg = json.loads(body)
        step = PlannedStep.from_dict(msg["step"])
        _check_step_types(step)
        token = str(msg["claim_token"])
        attempt = int(msg.get("attempt", 1))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise PermanentError(f"malformed send request: {exc}", "invalid_send") from None
    except RecursionError:
        raise PermanentError("malformed send request: nested too deeply",
                             "invalid_send") from None
    conf = settings.load()
    now = clock.now()
    profile = live_profile(load_customer(step.customer_id))
    campaigns = live.get()  # once: the decision and the render see the same version
    campaign = campaigns.campaigns.get(step.campaign_id)
    paused = None
    if campaign is None or campaign.version < step.campaign_version:
        campaigns, campaign = _newer_live(step, live, campaign)
        if campaign is None:
            paused = _not_live(step)
    decision = decide_step(step, profile, campaign, now, conf.default_timezone,
                           paused=paused)
    try:
        if decision.outcome == "deferred":
            assert decision.defer_until is not None
            step.held_back(now, decision.defer_until)
            commit(Transaction(required=[_requeue(step, token, decision.defer_until)]))
            return SendOutcome(step.id, "deferred", decision.reason,
                               due=(clock.iso(decision.defer_until),))
        follow_due = tuple(clock.iso(f.due_at) for f in decision.follow_ups)
        if decision.outcome != "send":
            _record_no_send(step, token, decision)
            return SendOutcome(step.id, decision.outcome, decision.reason, due=follow_due)
        assert profile is not None and decision.channel is not None
        recipient_key = suppression.address_key(decision.channel, str(decision.to))
        listed = suppression.blocks(suppression.lookup(recipient_key),
                                    (profile.get("consent") or {}).get(decision.channel))
        if listed is not None:  # an opt-out of the address, perhaps under another id
            blocked = StepDecision("suppressed", listed, channel=decision.channel,
                                   template=decision.template, follow_ups=decision.follow_ups)
            _record_no_send(step, token, blocked)
            return SendOutcome(step.id, "suppressed", listed, due=follow_due)
        try:
            rendered = _render(step, profile, decision, campaigns, channels, recipient_key)
        except PermanentError as exc:  # a template that cannot render for this customer
            failed = StepDecision("failed", exc.reason, channel=decision.channel,
                                  template=decision.template, follow_ups=decision.follow_ups)
            _record_no_send(step, token, failed)
            return SendOutcome(step.id, "failed", exc.reason, due=follow_due)
        # Credentials are loaded before the claim: a missing secret must leave the
        # step claimed (retried after the lease), never marked as sending.
        channels.sms() if decision.channel == "sms" else channels.email()
        compiled = campaign.step(step.step_id) if campaign is not None else None
        message = _message(step, decision, "sending", compiled.survey if compiled else None)
        message.recipient_key = recipient_key
        if attempt > 1:  # a retry: keep the earlier attempts' history (one extra read)
            message.history = [*_message_state(step.id)[0], *(message.history or [])]
        claim = Transaction(required=[
            _put_message(message),
            _mark_sending(step.id, token),
        ])
        add_planned(claim, decision.follow_ups, continuing=step.ref)
        commit(claim)
    except RequiredConditionFailed:
        _repair_carrier_opt_out(step)
        return SendOutcome(step.id, "duplicate", "claimed or sent by another worker")
    result = _deliver(step, decision, rendered, channels)
    record_outcome(step, token, result, attempt, list(message.history or []))
    if result.accepted and campaign is not None and campaign.observers:
        renderer = renderer_for(step.campaign_id, campaign.version,
                                campaigns.templates.get(step.campaign_id, {}))
        copy_to_observers(step, profile, campaign, decision, renderer, channels)
    if decision.channel == "sms" and result.error_code == UNSUBSCRIBED_CODE:
        _record_carrier_opt_out(step, recipient_key, message.decided_at)
    if result.outcome == "retryable" and attempt < MAX_SEND_ATTEMPTS:
        follow_due += (clock.iso(clock.now() + RETRY_BACKOFF * attempt),)
    return SendOutcome(step.id, result.outcome, result.error_code or "", result.provider_id,
                       due=follow_due)


UNSUBSCRIBED_CODE = "21610"  # Twilio: the recipient has replied STOP to this sender


def _repair_carrier_opt_out(step: PlannedStep) -> None:
    """A send request delivered again for a message Twilio refused with 21610: its
    opt-out is written again (both writes are idempotent), in case the first delivery
    stopped after recording the outcome and before the opt-out. One read, on this
    rare path only."""
    try:
        msg = MessageModel.get(step.id, consistent_read=True)
    except MessageModel.DoesNotExist:
        return
    if msg.channel == "sms" and msg.error_code == UNSUBSCRIBED_CODE and msg.recipient_key:
        _record_carrier_opt_out(step, msg.recipient_key, msg.decided_at)


def _record_carrier_opt_out(step: PlannedStep, recipient_key: str, at: str) -> None:
    """Twilio refused the SMS because the recipient opted out (21610): record it as an
    SMS opt-out, as an inbound STOP would be, so the customer's later steps are
    suppressed at decision time instead of each failing at Twilio. The STOP reached
    Twilio but not us (sent before Aftercare had the number, or its webhook was
    lost); a later START lifts it, as it lifts Twilio's block. The event id is the
    step's, so a redelivered send changes nothing more. The number goes on the
    suppression list too: the STOP was the phone's, whatever customer id it has."""
    from chalicelib.api.consent import apply_consent, consent_event

    apply_consent([consent_event(f"twilio-21610:{step.id}", step.customer_id, "sms", False,
                                 "sms:twilio-21610", at)])
    # At the send's time, the same on a repair: a START after it is not undone.
    suppression.suppress_key(recipient_key, at, "sms:twilio-21610")


STUCK_REASON = "no provider answer recorded: the worker stopped mid-send"
STUCK_REPORTED_REASON = "the worker stopped mid-send; the provider reported the message"


def _sender_last(history: list[Any] | None) -> str:
    """The sender's latest entry in a history (reports skipped): ``sending`` until
    the outcome of the current attempt is recorded."""
    mine = [e for e in history or [] if isinstance(e, dict) and not is_report(e)]
    return str(mine[-1].get("status", "sending")) if mine else "sending"


def record_stuck(item: ScheduleModel, now: datetime) -> str:
    """Settle a step left ``sending`` past its timeout; returns what it became.

    If its message has no outcome from the sender, the worker died before the
    provider's answer was recorded: ``ambiguous``, never resent; or ``sent`` when
    the provider has reported the message (its callback names the message), so
    it was accepted. If the message has an outcome (the fallback wrote it but not
    the step), the step is finished to match, or put back in the schedule for a
    recorded retry.
    """
    step = PlannedStep.from_dict(item.step)
    try:
        message = MessageModel.get(step.id, consistent_read=True)
    except MessageModel.DoesNotExist:
        message = None
    unchanged = (ScheduleModel.status == "sending") & (ScheduleModel.due_at == item.due_at)
    history = list(message.history or []) if message is not None else []
    status = _sender_last(history)

    def settle(tw: TransactWrite, outcome: str, reason: str) -> None:
        tw.update(item, actions=[
            ScheduleModel.status.set("done"), ScheduleModel.outcome.set(outcome),
            ScheduleModel.reason.set(reason), ScheduleModel.due_shard.remove(),
            ScheduleModel.updated_at.set(clock.iso(now)),
        ], condition=unchanged)

    if status == "retry":
        def back(tw: TransactWrite) -> None:
            tw.update(item, actions=[
                ScheduleModel.status.set("pending"), ScheduleModel.due_at.set(int(now.timestamp())),
                ScheduleModel.pending_campaign.set(step.campaign_id),
                ScheduleModel.updated_at.set(clock.iso(now)),
            ], condition=unchanged)

        commit(Transaction(required=[back]))
        return "requeued"
    if status != "sending":
        commit(Transaction(required=[lambda tw: settle(tw, status, "outcome recorded late")]))
        return status
    if message is not None and any(is_report(e) for e in history):
        return _settle_reported(step, message, history, now, settle)

    def mark_message(tw: TransactWrite) -> None:
        tw.update(MessageModel(step.id), actions=[
            MessageModel.status.set("ambiguous"), MessageModel.reason.set(STUCK_REASON),
        ], condition=MessageModel.status == "sending")

    commit(Transaction(required=[lambda tw: settle(tw, "ambiguous", STUCK_REASON),
                                 mark_message,
                                 *_stat(step, "ambiguous", _decided_day(message))]))
    return "ambiguous"


def _decided_day(message: MessageModel | None) -> str | None:
    return message.decided_at[:10] if message is not None else None


def _settle_reported(step: PlannedStep, message: MessageModel, history: list[Any],
                     now: datetime, settle: Callable[[TransactWrite, str, str], None]) -> str:
    """The worker died after the provider took the message (it reported it): ``sent``."""
    entry = {"status": "sent", "at": clock.iso(now), "code": None}

    def mark_message(tw: TransactWrite) -> None:
        tw.update(MessageModel(step.id), actions=[
            MessageModel.status.set(outcome_status(message.status, "sent")),
            MessageModel.history.set([*history, entry]),
            MessageModel.reason.set(STUCK_REPORTED_REASON),
        ], condition=MessageModel.history == history)  # a report meanwhile: next tick

    commit(Transaction(required=[lambda tw: settle(tw, "sent", STUCK_REPORTED_REASON),
                                 mark_message, *_stat(step, "sent", message.decided_at[:10])]))
    return "sent"


def _mark_sending(schedule_id: str, token: str) -> Op:
    """Claimed -> sending. The step stays on the due index, due when a worker that
    died mid-send should long have finished: the tick then records it ambiguous."""
    stuck_at = int((clock.now() + SENDING_TIMEOUT).timestamp())

    def op(tw: TransactWrite) -> None:
        tw.update(
            ScheduleModel(schedule_id),
            actions=[
                ScheduleModel.status.set("sending"),
                ScheduleModel.due_at.set(stuck_at),
                ScheduleModel.updated_at.set(_now_iso()),
                ScheduleModel.pending_campaign.remove(),
            ],
            condition=(ScheduleModel.claim_token == token)
            & (ScheduleModel.status == "claimed"),
        )

    return op
