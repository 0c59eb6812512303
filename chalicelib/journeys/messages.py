"""What a template sees: the render context for one step, built purely."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from chalicelib.config.compiled import CompiledCampaign
from chalicelib.journeys.engine import PlannedStep, StepDecision
from chalicelib.journeys.profile import Profile
from chalicelib.journeys.timing import zone
from chalicelib.tracking.links import link_maker

if TYPE_CHECKING:
    from chalicelib.render import Renderer

SURVEY_QUESTIONS = {
    "csat": "How satisfied are you with your order? Reply 1 (not at all) to 5 (very).",
    "nps": "How likely are you to recommend us to a friend? Reply 0-10.",
    "ces": "How easy was it to get what you needed? Reply 1 (very hard) to 7 (very easy).",
}
_CUSTOMER_FIELDS = ("id", "name", "email", "phone", "locale", "timezone", "birthday",
                    "order_count", "total_spent", "currency", "first_order_at",
                    "last_order_at", "last_delivery_at")

LinkMaker = Callable[[str, dict[str, Any]], str]


def link_survey_kind(campaign: CompiledCampaign) -> str:
    """The kind of ``links.survey`` in a step without ``survey``: the one kind the
    campaign's steps ask, else CSAT. Answers count in the campaign's survey stats,
    so an NPS campaign's email link asks NPS too (a CSAT "1" among NPS answers made
    its NPS wrong)."""
    kinds = {s.survey for s in campaign.steps if s.survey}
    return kinds.pop() if len(kinds) == 1 else "csat"


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
            "survey": links("survey", {"m": step.id,
                                       "k": survey_kind or link_survey_kind(campaign)}),
        },
        "survey": (
            {"kind": survey_kind, "question": SURVEY_QUESTIONS[survey_kind]}
            if survey_kind else None
        ),
    }
    return context


def message_tags(step: PlannedStep) -> Mapping[str, str]:
    return {"campaign": step.campaign_id, "step": step.step_id, "message": step.id}


@dataclass(frozen=True, slots=True)
class RenderedMessage:
    """One step's message as it goes out: an SMS ``body``, or an email's parts and
    its unsubscribe link (for the List-Unsubscribe header)."""

    body: str = ""
    subject: str = ""
    html: str = ""
    text: str = ""
    unsubscribe: str = ""


def render_message(step: PlannedStep, profile: Profile, campaign: CompiledCampaign,
                   channel: str, template: str, renderer: Renderer, links: LinkMaker,
                   default_tz: str) -> RenderedMessage:
    """Render a step decided ``send`` on ``channel`` with ``template`` (the decision's:
    the customer's variant), in the customer's locale: what the sender sends and what
    ``aftercare simulate --render`` checks. Raises :class:`~chalicelib.render.TemplateError`
    when the template cannot render for this customer and order."""
    context = render_context(step, profile, campaign, links, default_tz)
    locale = profile.get("locale")
    if channel == "sms":
        return RenderedMessage(body=renderer.render_sms(template, context, locale).body)
    email = renderer.render_email(template, context, locale)
    return RenderedMessage(subject=email.subject, html=email.html, text=email.text,
                           unsubscribe=context["links"]["unsubscribe"])


def render_failure(error: Exception) -> str:
    """The reason a step that cannot render is recorded ``failed`` with: the error
    without the customer's values it may quote (it is stored and logged)."""
    return f"template error: {getattr(error, 'redacted', None) or error}"


# Links in a simulated message: signed as the sender signs them, with a key that
# opens nothing, so each message is as long as the real one (SMS segments, limits).
_SIMULATED_KEY = b"aftercare simulate: not a key"


def simulated_links(base_url: str, channel: str, sent_at: datetime) -> LinkMaker:
    """The links of a message ``aftercare simulate --render`` or ``preview`` renders:
    as the sender makes them (:func:`chalicelib.pipeline.send._render`), signed with a
    key that opens nothing, so each message is as long as the real one (SMS segments,
    limits). ``base_url`` is the links' base (the stage's ``PUBLIC_BASE_URL``)."""
    # The real unsubscribe link of an email names the address's suppression key,
    # "email:" and 64 hex digits (chalicelib.store.suppression.address_key): one as long.
    extra = {"r": f"{channel}:{'0' * 64}"} if channel == "email" else None
    return link_maker(base_url.rstrip("/"), _SIMULATED_KEY, sent_at, extra)


class RenderCheck:
    """``aftercare simulate --render``: render each step decided ``send`` as the sender
    would (:func:`render_message`: the decision's template and channel, the
    customer's locale, the same context and link lengths). Called with the step, its
    customer's profile, its campaign, the decision and the time it is sent; returns
    the reason the sender would record it ``failed`` with, or None when it renders.

    ``templates`` maps a campaign id to its template files (a bundle's, or a live
    campaign's); ``base_url`` is the links' base (the stage's ``PUBLIC_BASE_URL``)."""

    def __init__(self, templates: Mapping[str, Mapping[str, str]], default_tz: str,
                 base_url: str = "https://example.invalid") -> None:
        self._templates = templates
        self._renderers: dict[str, Renderer] = {}
        self.default_tz = default_tz
        self.base_url = base_url.rstrip("/")

    def __call__(self, step: PlannedStep, profile: Profile, campaign: CompiledCampaign,
                 decision: StepDecision, sent_at: datetime) -> str | None:
        from chalicelib.render import Renderer, TemplateError

        renderer = self._renderers.get(campaign.id)
        if renderer is None:
            renderer = Renderer(self._templates.get(campaign.id, {}))
            self._renderers[campaign.id] = renderer
        channel, template = decision.channel, decision.template
        if channel is None or template is None:
            return "campaign or template missing at render time"
        try:
            render_message(step, profile, campaign, channel, template, renderer,
                           simulated_links(self.base_url, channel, sent_at), self.default_tz)
        except TemplateError as exc:
            return render_failure(exc)
        return None
