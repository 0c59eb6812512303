"""What a template sees: the render context for one step, built purely."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from chalicelib.config.compiled import CompiledCampaign
from chalicelib.journeys.engine import PlannedStep
from chalicelib.journeys.profile import Profile
from chalicelib.journeys.timing import zone

SURVEY_QUESTIONS = {
    "csat": "How satisfied are you with your order? Reply 1 (not at all) to 5 (very).",
    "nps": "How likely are you to recommend us to a friend? Reply 0-10.",
    "ces": "How easy was it to get what you needed? Reply 1 (very hard) to 7 (very easy).",
}
_CUSTOMER_FIELDS = ("id", "name", "email", "phone", "locale", "timezone", "birthday",
                    "order_count", "total_spent", "currency", "first_order_at",
                    "last_order_at", "last_delivery_at")

LinkMaker = Callable[[str, dict[str, Any]], str]


def render_context(step: PlannedStep, profile: Profile, campaign: CompiledCampaign,
                   links: LinkMaker, default_tz: str = "America/New_York") -> dict[str, Any]:
    """What a template sees. ``customer.timezone`` is the zone the step was timed in:
    the customer's, or ``default_tz`` when theirs is missing or unknown, so dates
    print in the zone the send was planned in."""
    customer = {k: profile.get(k) for k in _CUSTOMER_FIELDS}
    customer["timezone"] = zone(profile.get("timezone"), default_tz).key
    customer["attributes"] = dict(profile.get("attributes") or {})
    compiled_step = campaign.step(step.step_id)
    survey_kind = compiled_step.survey if compiled_step else None
    context: dict[str, Any] = {
        "customer": customer,
        "order": step.order or {},
        "campaign": {"id": campaign.id, "name": campaign.name},
        "step": {"id": step.step_id},
        "links": {
            "unsubscribe": links("unsubscribe", {"m": step.id}),
            "survey": links("survey", {"m": step.id, "k": survey_kind or "csat"}),
        },
        "survey": (
            {"kind": survey_kind, "question": SURVEY_QUESTIONS[survey_kind]}
            if survey_kind else None
        ),
    }
    return context


def message_tags(step: PlannedStep) -> Mapping[str, str]:
    return {"campaign": step.campaign_id, "step": step.step_id, "message": step.id}
