"""Second review of the static template pass (chalicelib/render/static.py): false
positives with realistic after-sales templates, and a few false negatives.

Each case was a defect found by this review, fixed since. For each false positive
the render accepts the template (against the sample
data validation uses, and for a real customer who reaches the branch), so only the
static pass refuses it; a refused template blocks the push of its campaign.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from chalicelib.config.loader import check_templates, sample_context
from chalicelib.config.model import Campaign
from chalicelib.events import parse_event
from chalicelib.render.renderer import Renderer

# ------------------------------------------------------------------ helpers


def campaign(template: str, channel: str = "sms", *, date: bool = False,
             survey: str | None = None, cid: str | None = None) -> Campaign:
    """An order.delivered campaign, or (``date``) a birthday campaign, of one step."""
    step: dict[str, Any] = {"id": "s1", "after": "P1D", "channel": channel,
                            "template": template}
    if survey:
        step["survey"] = survey
    return Campaign.model_validate({
        "id": cid or ("birthday" if date else "delivery-checkin"),
        "name": "Birthday" if date else "Delivery check-in",
        "trigger": {"date": "customer.birthday"} if date else {"event": "order.delivered"},
        "steps": [step]})


def errors(c: Campaign, templates: dict[str, str]) -> list[str]:
    """What validation of ``c`` (as `aftercare validate`/push runs it) refuses."""
    return [str(p) for p in check_templates(c, "campaigns/c.json", templates)
            if p.severity == "error"]


def render(c: Campaign, templates: dict[str, str], filename: str,
           *contexts: dict[str, Any]) -> None:
    """Render ``filename`` for ``c``'s sample data and ``contexts``: raises if refused."""
    renderer = Renderer(templates)
    for context in (sample_context(c, c.steps[0].survey), *contexts):
        if filename.endswith(".sms.j2"):
            renderer.render_sms_file(filename, context)
        else:
            renderer.render_email_file(filename, context)


def customer_with(c: Campaign, **changes: Any) -> dict[str, Any]:
    """A real customer's context: the sample one with ``changes`` (dotted keys)."""
    context = copy.deepcopy(sample_context(c, c.steps[0].survey))
    for dotted, value in changes.items():
        *owners, key = dotted.split("__")
        target = context
        for owner in owners:
            target = target[owner]
        target[key] = value
    return context


# Render errors raise RenderError, not AssertionError: a template the render
# refused fails these tests instead of passing them as the expected failure.
# ------------------------------------------------- false positives (static refuses)

LAYOUT = """{% block subject %}{% endblock %}
{% block html %}<p>Hi {{ customer.name|first_name('there') }},</p>
{% block body %}{% endblock %}
{% if order %}<h2>Your order</h2>{% block order_summary %}{% endblock %}{% endif %}
<p><a href="{{ links.unsubscribe }}">Unsubscribe</a></p>{% endblock %}
"""
CARE_TIP = """{% extends "_layout.email.j2" %}
{% block subject %}A care tip from Acme{% endblock %}
{% block body %}<p>Descale your kettle once a month.</p>{% endblock %}
{% block order_summary %}<p>{{ order.total|money(order.currency) }}</p>{% endblock %}
"""


def test_a_guard_in_the_layout_covers_the_childs_block() -> None:
    files = {"_layout.email.j2": LAYOUT, "care_tip.email.j2": CARE_TIP}
    birthday = campaign("care_tip", "email", date=True)
    render(birthday, files, "care_tip.email.j2")
    render(campaign("care_tip", "email"), files, "care_tip.email.j2")  # and with an order
    assert errors(campaign("care_tip", "email"), files) == []
    assert errors(birthday, files) == []


FLAG_GUARDS = {
    "is defined": "{% set has_order = order.id is defined %}",
    "length": "{% set has_order = order|length > 0 %}",
    "not empty": "{% set has_order = order != {} %}",
}


@pytest.mark.parametrize("flag", sorted(FLAG_GUARDS))
def test_a_guard_kept_in_a_set_flag(flag: str) -> None:
    files = {"thanks.sms.j2": FLAG_GUARDS[flag] + "\n"
             "Hi {{ customer.name|first_name('there') }}, thanks for being with us!\n"
             "{% if has_order %}Your order of {{ order.total|money(order.currency) }}"
             " is on its way.{% endif %}\n"}
    for c in (campaign("thanks", date=True), campaign("thanks")):
        render(c, files, "thanks.sms.j2")
        assert errors(c, files) == []


def test_a_branch_on_the_campaign_id_of_another_campaign() -> None:
    files = {"hello.sms.j2": "Hi {{ customer.name|first_name('there') }}!\n"
             "{% if campaign.id == 'delivery-checkin' %}How is your "
             "{{ order['items'][0].name }}? Reply 1-5.\n"
             "{% else %}We have new arrivals for you.\n{% endif %}"}
    for c in (campaign("hello"), campaign("hello", date=True)):
        render(c, files, "hello.sms.j2")
        assert errors(c, files) == []


IN_LIST_GUARDS = {
    "|list": "{% if 'pet_name' in customer.attributes|list %}",
    ".keys()|list": "{% if 'pet_name' in customer.attributes.keys()|list %}",
}


@pytest.mark.parametrize("guard", sorted(IN_LIST_GUARDS))
def test_a_key_test_through_list(guard: str) -> None:
    files = {"tip.sms.j2": "Hi {{ customer.name|first_name('there') }}!\n"
             + IN_LIST_GUARDS[guard] + "How is {{ customer.attributes.pet_name }} doing?\n"
             "{% endif %}Reply STOP to opt out."}
    c = campaign("tip")
    render(c, files, "tip.sms.j2",
           customer_with(c, customer__attributes={"tier": "gold", "pet_name": "Rex"}))
    assert errors(c, files) == []


UNDERSCORE_KEYS = {
    "loop variable": ("{% for item in order['items'] %}{{ item.name }}"
                      "{% if item._gift is defined %} (gift){% endif %} {% endfor %}"),
    "set alias": ("{% set attrs = customer.attributes %}"
                  "Hi {{ attrs._nickname|default('there') }}!"),
}


@pytest.mark.parametrize("case", sorted(UNDERSCORE_KEYS))
def test_an_underscore_data_key_read_through_a_local(case: str) -> None:
    files = {"gift.sms.j2": UNDERSCORE_KEYS[case] + "\nThanks for your order!"}
    c = campaign("gift")
    real = customer_with(c, customer__attributes={"tier": "gold", "_nickname": "Annie"})
    real["order"]["items"][0]["_gift"] = True
    render(c, files, "gift.sms.j2", real)
    assert errors(c, files) == []


def real_order() -> dict[str, Any]:
    """The order of a real order.delivered event, as a step keeps it (engine snapshot)."""
    event = parse_event({
        "id": "e1", "type": "order.delivered", "occurred_at": "2026-03-01T14:02:00Z",
        "customer": {"id": "c1", "phone": "+14155550123", "consent": {"sms": True}},
        "order": {"id": "o-9", "total": 129.5, "currency": "USD",
                  "items": [{"sku": "KX-200", "name": "Kettle", "category": "appliance"}]}})
    keep = ("id", "total", "currency", "items", "category", "categories")
    return {k: v for k, v in event["order"].items() if k in keep}


def test_the_derived_order_category_is_not_undefined() -> None:
    files = {"upsell.sms.j2": "Hi {{ customer.name|first_name('there') }}!\n"
             "{% if order.total > 1000 %}Big {{ order.category }} fan? Our care kit is "
             "20% off.\n{% endif %}Reply STOP to opt out."}
    c = campaign("upsell")
    order = real_order()
    assert order["category"] == "appliance"
    render(c, files, "upsell.sms.j2", customer_with(c, order={**order, "total": 2000}))
    assert errors(c, files) == []


# ------------------------------------------------- false negatives (static passes)

UNTAKEN = ("Hi {{ customer.name|first_name('there') }}!\n"
           "{% if customer.order_count > 100000 %}{}{% endif %}")

MISSED = {
    "unknown filter through map": "{{ order['items']|map('shout')|join(', ') }}",
    "unknown test through select": "{{ customer.name.split()|select('shouting')|join }}",
    "unknown test through selectattr":
        "{{ order['items']|selectattr('category', 'eqalto', 'x')|list|length }}",
    "sandbox escape in a format string": "{{ '{0.__class__.__mro__}'.format(customer) }}",
}


@pytest.mark.parametrize("case", sorted(MISSED))
def test_a_problem_named_in_a_string_in_an_untaken_branch(case: str) -> None:
    files = {"note.sms.j2": UNTAKEN.replace("{}", MISSED[case])}
    c = campaign("note")
    render(c, files, "note.sms.j2")  # the sample customer does not reach it
    assert errors(c, files) != []


def test_order_items_of_an_empty_order_in_an_untaken_branch() -> None:
    files = {"vip.sms.j2": UNTAKEN.replace(
        "{}", "You bought {% for i in order.items %}{{ i.name }} {% endfor %}")}
    c = campaign("vip", date=True)
    render(c, files, "vip.sms.j2")
    assert errors(c, files) != []


# ------------------------------------------------- realistic templates that stay clean

CLEAN = {
    "checkin with items and previtem": (
        "Hi {{ customer.name|first_name('there') }}, how are your "
        "{% for item in order['items'] if item.category == 'appliance' %}"
        "{% if loop.previtem is defined %}, {% endif %}{{ item.name }}{% endfor %}?\n"
        "{{ survey.question if survey else 'Reply 1-5.' }}"),
    "care tips by category": (
        "{% set tips = {'appliance': 'Descale monthly.', 'coffee': 'Grind fresh.'} %}"
        "{% set first = order['items']|first %}"
        "Tip: {{ tips.get(first.category, 'Enjoy!') }} "
        "{{ order['items']|map(attribute='name')|join(', ') }}"),
    "loyalty with locale switch": (
        "{%- if customer.locale.startswith('es') -%}Hola{%- else -%}Hi{%- endif %} "
        "{{ customer.attributes.nickname|default(customer.name|first_name('there')) }}, "
        "{{ 'VIP' if customer.attributes.tier == 'gold' else 'member' }} points: "
        "{{ customer.attributes.points|default(0) }}{# TODO: tiers #}{% raw %} {{ }}"
        "{% endraw %}"),
    "survey kind per step": (
        "{% set ask = survey is not none %}{% if ask %}{{ survey.question }}"
        "{% if survey.kind == 'nps' %} 0-10{% endif %}{% else %}Thanks!{% endif %}"),
}


@pytest.mark.parametrize("case", sorted(CLEAN))
@pytest.mark.parametrize("survey", [None, "nps"])
def test_a_realistic_sms_is_clean(case: str, survey: str | None) -> None:
    files = {"msg.sms.j2": CLEAN[case]}
    c = campaign("msg", survey=survey)
    render(c, files, "msg.sms.j2")
    assert errors(c, files) == []


def test_an_email_with_self_subject_and_a_call_block_is_clean() -> None:
    files = {"winback.email.j2": (
        "{% macro box() %}<div class='box'>{{ caller() }}</div>{% endmacro %}"
        "{% block subject %}We miss you, {{ customer.name|first_name('friend') }}"
        "{% endblock %}\n"
        "{% block html %}<title>{{ self.subject() }}</title>"
        "{% call box() %}Last order: {{ customer.last_order_at|date('long') }}{% endcall %}"
        "{% if order %}<p>{{ order.total|money(order.currency) }}</p>{% endif %}"
        "<a href='{{ links.unsubscribe }}'>Unsubscribe</a>{% endblock %}")}
    c = campaign("winback", "email", date=True)
    render(c, files, "winback.email.j2")
    assert errors(c, files) == []
