"""Observer copies: staff ("mystery shoppers") see what customers get, sampled.

A campaign may name ``observers`` (docs/campaigns.md): phones and addresses of the
team, and ``per_day``, how many of each step's sends per UTC day they get a copy
of (1 by default: the step's first send of the day). After the sender has sent a
step and recorded its outcome, :func:`copy_to_observers` claims one of the day's
slots for that step with one conditional UpdateItem on a counter item of the
stats table (:func:`slot_key`, the day as its sort key), and,
if it got one, sends the same message again to every observer of the channel
whose address is not on the suppression list (an observer's STOP is honoured).

A copy is rendered for the same customer and order as the real message (it is
what the customer saw), with the links Aftercare makes (unsubscribe, survey) signed
by a key nobody holds, so a click on them opens nothing (404) and can never change
the customer's consent or answer. Other URLs a template prints from the customer's
or order's data go out as they are: templates should not print URLs that act for
the customer. Copies are never counted in stats and leave no
message record: an SMS copy asks Twilio for no status callback, an email copy is
tagged ``observer`` instead of ``message`` (the SES-events function drops its
events). A copy that fails is logged (campaign, step, channel, outcome; never an
address) and not retried: the customer's message is sent and recorded already.
A worker that found a day's slots taken remembers it until the day changes, so
steady sends cost no extra request once the day's copies are out.
"""

from __future__ import annotations

import logging
import secrets
from datetime import datetime
from typing import Any

from pynamodb.exceptions import UpdateError

from chalicelib import clock, settings
from chalicelib.channels.base import EmailMessage, SmsMessage
from chalicelib.config.compiled import CompiledCampaign
from chalicelib.journeys.engine import PlannedStep, StepDecision
from chalicelib.journeys.messages import RenderedMessage, render_message
from chalicelib.store import suppression
from chalicelib.store.models import StatsModel
from chalicelib.tracking import links
from chalicelib.tracking.ses_events import OBSERVER_TAG

log = logging.getLogger(__name__)

SUBJECT_PREFIX = "[Observer copy] "
# Links in copies are signed with this, which no route knows: they open nothing.
_INERT_KEY = secrets.token_bytes(32)


def slot_key(campaign_id: str, step_id: str) -> str:
    """The stats item of a step's copy slots (with the day as its sort key). Campaign
    ids start with a letter or digit: no campaign's counters have this key."""
    return f"_observe#{campaign_id}#{step_id}#copies"


def claim_slot(campaign_id: str, step_id: str, now: datetime, per_day: int,
               full: set[tuple[str, str, str]]) -> bool:
    """Take one of the day's ``per_day`` copy slots of a step; False when all are taken.
    ``full``: the (campaign, step, day) this worker found taken (kept by the caller)."""
    day = now.date().isoformat()
    if (campaign_id, step_id, day) in full:
        return False
    if len(full) > 10_000:
        full.clear()
    item = StatsModel(slot_key(campaign_id, step_id), day)
    try:
        item.update(actions=[StatsModel.copies.add(1)],
                    condition=StatsModel.copies.does_not_exist()
                    | (StatsModel.copies < per_day))
    except UpdateError as exc:
        if exc.cause_response_code == "ConditionalCheckFailedException":
            full.add((campaign_id, step_id, day))
            return False
        raise
    return True


def render_copy(step: PlannedStep, profile: dict[str, Any], campaign: CompiledCampaign,
                decision: StepDecision, renderer: Any, now: datetime) -> RenderedMessage:
    """The customer's message again, its links inert."""
    assert decision.channel is not None and decision.template is not None
    make_link = links.link_maker(settings.load().public_base_url, _INERT_KEY, now)
    return render_message(step, profile, campaign, decision.channel, decision.template,
                          renderer, make_link, settings.load().default_timezone)


def copy_to_observers(step: PlannedStep, profile: dict[str, Any], campaign: CompiledCampaign,
                      decision: StepDecision, renderer: Any, channels: Any) -> int:
    """Send the sampled copies of a step just sent; returns how many were accepted.
    Never raises: a copy must not disturb the customer's send."""
    channel = decision.channel
    addresses = campaign.observers.get(channel or "", ())
    if not addresses:
        return 0
    accepted = 0
    outcomes: list[str] = []
    try:
        now = clock.now()
        if not claim_slot(step.campaign_id, step.step_id, now, campaign.observers_per_day,
                          channels.observer_slots_taken):
            return 0
        copy = render_copy(step, profile, campaign, decision, renderer, now)
        for address in addresses:
            if suppression.lookup(suppression.address_key(channel or "", address)):
                outcomes.append("suppressed")  # the observer sent STOP, say
                continue
            if channel == "sms":
                result = channels.sms().send(SmsMessage(to=address, body=copy.body))
            else:
                result = channels.email().send(
                    EmailMessage(to=address, subject=SUBJECT_PREFIX + copy.subject,
                                 html=copy.html, text=copy.text),
                    {OBSERVER_TAG: "1", "campaign": step.campaign_id, "step": step.step_id})
            outcomes.append(result.outcome)
            accepted += result.accepted
    except Exception as exc:  # a copy never fails the real send
        log.warning("observer copy failed", extra={
            "campaign_id": step.campaign_id, "step_id": step.step_id, "channel": channel,
            "error": type(exc).__name__})
        return accepted
    log.info("observer copies", extra={"campaign_id": step.campaign_id,
                                       "step_id": step.step_id, "channel": channel,
                                       "outcomes": outcomes})
    return accepted
