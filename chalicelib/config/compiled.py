"""The runtime form of a campaign: parsed durations and compiled rules.

Built once per campaign version (at push, or when a Lambda refreshes its cache)
so that the decision core never parses or walks anything per event.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import time, timedelta
from typing import Any

from chalicelib.config.durations import Delay, parse_delay, parse_duration
from chalicelib.config.model import WEEKDAYS, Campaign, DateTrigger, EventTrigger, IdleTrigger
from chalicelib.rules import RuleEvaluationError, compile_rule, truthy

Predicate = Callable[[Mapping[str, Any]], bool]
log = logging.getLogger(__name__)


# The error types the rule runtime raises itself; any other was given to ``throw``,
# perhaps from the customer's data, and is not logged.
_RUNTIME_ERRORS = frozenset({"NaN", "Invalid Arguments", "Unknown Operator"})


def _error_kind(exc: RuleEvaluationError) -> str:
    return exc.type if exc.type in _RUNTIME_ERRORS else "a value thrown by `throw`"


def _predicate(rule: Any, path: str) -> Predicate | None:
    if rule is None:
        return None
    compiled = compile_rule(rule, path=path)

    def predicate(context: Mapping[str, Any]) -> bool:
        try:
            result = compiled(context)
            # Most rules end in a comparison: a bool needs no truthiness rules.
            return result if result is True or result is False else truthy(result)
        except RuleEvaluationError as exc:
            # Data the rule cannot handle (a text where a number belongs) means
            # "not matched" for this customer, never a failed event. No values
            # are logged: they may be personal data.
            log.warning("rule at %s failed to evaluate: %s", path, _error_kind(exc))
            return False
        except Exception as exc:  # a defect of the rule runtime on odd data
            # Still "not matched": one customer's data must not fail the event for
            # every campaign (the event would be retried, then dead-lettered).
            log.error("rule at %s raised %s (a bug: please report it)", path,
                      type(exc).__name__)
            return False

    return predicate


@dataclass(frozen=True, slots=True)
class CompiledStep:
    id: str
    index: int
    after: Delay
    at: time | None
    weekdays: frozenset[int] | None
    channel: str
    template: str
    condition: Predicate | None
    survey: str | None
    expire_after: timedelta | None


@dataclass(frozen=True, slots=True)
class CompiledVariant:
    id: str
    weight: int
    templates: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class CompiledCampaign:
    id: str
    name: str
    version: int
    active: bool
    trigger_kind: str  # "event" | "date" | "idle"
    trigger_event: str | None
    date_field: str | None
    leap_day: str
    idle_after: Delay | None
    audience: Predicate | None
    steps: tuple[CompiledStep, ...]
    # In the campaign's order (the first that applies is the reason: the same in
    # every process, which a set's order, seeded by hash randomisation, is not).
    exit_events: tuple[str, ...]
    exit_rule: Predicate | None
    goal_event: str | None
    goal_within: timedelta | None
    holdout_percent: float
    variants: tuple[CompiledVariant, ...]
    reentry_policy: str
    reentry_window: timedelta | None
    priority: int
    definition: Mapping[str, Any]
    # Staff who get copies of sampled sends: channel -> addresses, and how many of
    # each step's sends per UTC day are copied (chalicelib.pipeline.observers).
    observers: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    observers_per_day: int = 1
    # Derived once here, not per enrollment: (variant id, weight) for keys.pick_variant.
    variant_weights: tuple[tuple[str, int], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "variant_weights",
                           tuple((v.id, v.weight) for v in self.variants))

    def step(self, step_id: str) -> CompiledStep | None:
        for step in self.steps:
            if step.id == step_id:
                return step
        return None

    def template_for(self, step: CompiledStep, variant: str | None) -> str:
        for v in self.variants:
            if v.id == variant:
                return v.templates.get(step.id, step.template)
        return step.template


def _step(step: Any, index: int) -> CompiledStep:
    return CompiledStep(
        id=step.id,
        index=index,
        after=parse_delay(step.after),
        at=time.fromisoformat(step.at) if step.at else None,
        weekdays=frozenset(WEEKDAYS.index(d) for d in step.weekdays) if step.weekdays else None,
        channel=step.channel,
        template=step.template,
        condition=_predicate(step.condition, f"$.steps[{index}].condition"),
        survey=step.survey,
        expire_after=parse_duration(step.expire_after) if step.expire_after else None,
    )


def compile_campaign(campaign: Campaign, version: int = 1) -> CompiledCampaign:
    trigger = campaign.trigger
    exit_ = campaign.exit
    reentry = campaign.reentry
    return CompiledCampaign(
        id=campaign.id,
        name=campaign.name,
        version=version,
        active=campaign.status == "active",
        trigger_kind=(
            "event"
            if isinstance(trigger, EventTrigger)
            else "date"
            if isinstance(trigger, DateTrigger)
            else "idle"
        ),
        trigger_event=trigger.event if isinstance(trigger, EventTrigger) else None,
        date_field=trigger.date.split(".", 1)[1] if isinstance(trigger, DateTrigger) else None,
        leap_day=trigger.leap_day if isinstance(trigger, DateTrigger) else "feb28",
        idle_after=parse_delay(trigger.idle) if isinstance(trigger, IdleTrigger) else None,
        audience=_predicate(campaign.audience, "$.audience"),
        steps=tuple(_step(s, i) for i, s in enumerate(campaign.steps)),
        exit_events=tuple(dict.fromkeys(exit_.all_events)) if exit_ else (),
        exit_rule=_predicate(exit_.rule, "$.exit.rule") if exit_ else None,
        goal_event=campaign.goal.event if campaign.goal else None,
        goal_within=parse_duration(campaign.goal.within) if campaign.goal else None,
        holdout_percent=float(campaign.holdout_percent),
        variants=tuple(
            CompiledVariant(v.id, v.weight, dict(v.templates)) for v in campaign.variants
        ),
        reentry_policy=reentry.policy if reentry else "once_per_order",
        reentry_window=parse_duration(reentry.window) if reentry and reentry.window else None,
        priority=campaign.priority,
        definition=campaign.model_dump(mode="json", by_alias=True, exclude_none=True),
        observers={channel: tuple(addresses) for channel, addresses in (
            ("sms", campaign.observers.sms), ("email", campaign.observers.email))
            if addresses} if campaign.observers else {},
        observers_per_day=campaign.observers.per_day if campaign.observers else 1,
    )
