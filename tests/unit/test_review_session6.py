"""Review of 04b5af7..HEAD: the static template pass (render/static.py), step and idle
delays as a Delay (calendar days, then elapsed time), exited_refs, and the rule
compiler's undo journal.

The static cases were defects found by this review, fixed since. The static pass
must not refuse a template the render accepts; the templates below render fine
against the sample data (as checked), and Jinja passes the including template's
variables (loop variables, sets, imports) to includes, layouts and `with context`
imports.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest

from chalicelib.config.compiled import CompiledStep, compile_campaign
from chalicelib.config.durations import parse_delay
from chalicelib.config.model import Campaign
from chalicelib.events import parse_event
from chalicelib.journeys import timing
from chalicelib.journeys.engine import MAX_REFS_KEPT, CampaignSet, process_event
from chalicelib.render import SAMPLE_CONTEXT
from chalicelib.render.renderer import Renderer
from chalicelib.render.validate import validate_templates
from chalicelib.rules.codegen import Compiler

# ------------------------------------------------------ static template pass


def errors(files: dict[str, str], contexts: list[dict[str, Any]] | None = None) -> list[str]:
    return [str(p) for p in validate_templates(files, sample_contexts=contexts or [SAMPLE_CONTEXT])
            if p.severity == "error"]


def no_survey() -> dict[str, Any]:
    """The sample data of a step without a survey (as loader.sample_context builds it)."""
    context = copy.deepcopy(SAMPLE_CONTEXT)
    context["survey"] = None
    return context


def date_campaign() -> dict[str, Any]:
    """The sample data of a date or idle campaign: no order."""
    context = no_survey()
    context["order"] = {}
    return context


CHAIN_CASES = {
    # The documented Jinja idiom: the included template sees the loop variable.
    "include in a loop": {
        "note.sms.j2": "Hi, your {% for item in order['items'] %}"
                       "{% include 'partials/item.j2' %}{% endfor %} arrived.",
        "partials/item.j2": "{{ item.name }}",
    },
    "include after a set": {
        "note.sms.j2": "{% set first = customer.name|first_name %}"
                       "{% include 'partials/greet.j2' %}, thanks.",
        "partials/greet.j2": "Hi {{ first }}",
    },
    "macro imported with context reads a set": {
        "note.sms.j2": "{% set brand = 'Acme' %}"
                       "{% from 'partials/m.j2' import sign with context %}Hi. {{ sign() }}",
        "partials/m.j2": "{% macro sign() %}The {{ brand }} team{% endmacro %}",
    },
    "layout reads the child's set": {
        "_layout.email.j2": "{% block subject %}{{ title }}{% endblock %}"
                            "{% block html %}<h1>{{ title }}</h1>{% block body %}{% endblock %}"
                            "{% endblock %}",
        "tip.email.j2": "{% extends '_layout.email.j2' %}{% set title = 'Care tip' %}"
                        "{% block body %}<p>Hi {{ customer.name }}</p>{% endblock %}",
    },
    "child reads the layout's import": {
        "_layout.email.j2": "{% import 'partials/ui.j2' as ui %}"
                            "{% block subject %}{% endblock %}"
                            "{% block html %}{% block body %}{% endblock %}{% endblock %}",
        "partials/ui.j2": "{% macro button(url) %}<a href='{{ url }}'>Go</a>{% endmacro %}",
        "tip.email.j2": "{% extends '_layout.email.j2' %}{% block subject %}Hi{% endblock %}"
                        "{% block body %}{{ ui.button(links.survey) }}{% endblock %}",
    },
}


@pytest.mark.parametrize("name", sorted(CHAIN_CASES))
def test_a_variable_from_the_including_or_extending_template_is_not_undefined(
        name: str) -> None:
    files = CHAIN_CASES[name]
    renderer = Renderer(files)
    for filename in files:  # the render accepts it: only the static pass objects
        if filename.endswith(".sms.j2") and "/" not in filename:
            renderer.render_sms_file(filename, SAMPLE_CONTEXT)
        elif filename.endswith(".email.j2") and not filename.startswith("_"):
            renderer.render_email_file(filename, SAMPLE_CONTEXT)
    assert errors(files) == []


GUARDED_BY_INCLUDER = {
    "survey partial in a step without a survey": (
        {"note.sms.j2": "Hi{% if survey %} {% include 'partials/survey.j2' %}{% endif %}",
         "partials/survey.j2": "{{ survey.question }}"},
        no_survey),
    "order partial in a date campaign": (
        {"note.sms.j2": "Hi{% if order %} {% include 'partials/order.j2' %}{% endif %}",
         "partials/order.j2": "Order {{ order.total|money(order.currency) }}"},
        date_campaign),
}


@pytest.mark.parametrize("name", sorted(GUARDED_BY_INCLUDER))
def test_a_partial_the_includer_guards_is_not_refused(name: str) -> None:
    files, context = GUARDED_BY_INCLUDER[name]
    Renderer(files).render_sms_file("note.sms.j2", context())
    assert errors(files, [context()]) == []


def test_an_index_guarded_by_length_is_not_undefined() -> None:
    files = {"note.sms.j2": "Your {{ order['items'][0].name }}"
                            "{% if order['items']|length > 1 %} and "
                            "{{ order['items'][1].name }}{% endif %} arrived."}
    assert Renderer(files).render_sms_file("note.sms.j2", SAMPLE_CONTEXT).body
    assert errors(files) == []


def test_an_underscore_data_key_is_not_a_refused_attribute() -> None:
    files = {"note.sms.j2": "Hi {{ customer.attributes._nickname|default('there') }}"}
    assert Renderer(files).render_sms_file("note.sms.j2", SAMPLE_CONTEXT).body == "Hi there"
    assert errors(files) == []


def test_a_typo_in_an_untaken_branch_is_still_found_through_a_loop_partial() -> None:
    # What the pass is for, in a file with an include: the message's own typo.
    files = {"note.sms.j2": "Hi{% if order.total > 100000 %} {{ customer.nmae }}{% endif %}"
                            "{% for item in order['items'] %} {{ item.name }}{% endfor %}"}
    assert errors(files) == ["note.sms.j2:1: error: undefined variable 'customer.nmae'"]


# ------------------------------------------------------ delays (Delay)


def _step(after: str, at: time | None, weekdays: frozenset[int] | None) -> CompiledStep:
    return CompiledStep(id="s", index=0, after=parse_delay(after), at=at, weekdays=weekdays,
                        channel="sms", template="t", condition=None, survey=None,
                        expire_after=None)


@pytest.mark.parametrize("after", ["PT0S", "P0D", "P1D", "P1DT0H", "P1W", "P2W3D",
                                   "PT24H", "P1DT6H"])
def test_the_memoised_plan_agrees_with_the_exact_one_around_dst(after: str) -> None:
    ny = timing.zone("America/New_York")
    for hours in range(0, 24 * 6, 5):  # around the 2026-03-08 and 11-01 changes
        for start in (datetime(2026, 3, 5, tzinfo=UTC), datetime(2026, 10, 29, tzinfo=UTC)):
            base = (start + timedelta(hours=hours, minutes=30)).astimezone(ny)
            for at in (time(2, 30), time(10, 0), time(21, 30)):
                for weekdays in (None, frozenset({0})):
                    s = _step(after, at, weekdays)
                    assert timing.plan_from_local(base, s, ny) == \
                        timing._plan_exact(base, s, ny), (after, base, at, weekdays)


def test_pt24h_is_elapsed_and_p1d_calendar_across_spring_forward() -> None:
    ny = timing.zone("America/New_York")
    base = datetime(2026, 3, 7, 10, 0, tzinfo=ny)
    assert timing.add_local(base, parse_delay("P1D"), ny).hour == 10
    assert timing.add_local(base, parse_delay("P1DT0H"), ny).hour == 10
    assert timing.add_local(base, parse_delay("PT24H"), ny).hour == 11


# ------------------------------------------------------ exited_refs


def test_exited_refs_stay_bounded_and_survive_reenrollment_through_json() -> None:
    campaign = Campaign.model_validate({
        "id": "checkin", "name": "Check-in", "trigger": {"event": "order.delivered"},
        "exit": {"event": "order.returned"},
        "steps": [{"id": "s1", "after": "P20D", "channel": "sms", "template": "checkin"}]})
    campaigns = CampaignSet([compile_campaign(campaign)])
    profile: dict[str, Any] | None = None
    clock = datetime(2026, 3, 1, tzinfo=UTC)

    def send(etype: str, order: str) -> int:
        nonlocal profile, clock
        clock += timedelta(minutes=1)
        raw = {"id": f"{etype}-{order}-{clock:%H%M%S}", "type": etype,
               "occurred_at": clock.isoformat().replace("+00:00", "Z"),
               "customer": {"id": "c1", "phone": "+14155550123",
                            "timezone": "America/New_York", "consent": {"sms": True}},
               "order": {"id": order, "total": 5.0, "items": [{"sku": "K"}]}}
        result = process_event(parse_event(raw), profile, campaigns)
        profile = json.loads(json.dumps(result.profile))  # as the pipeline stores it
        return sum(c.outcome == "exited" for c in result.cancelled)

    send("order.delivered", "A")
    send("order.delivered", "B")
    assert (send("order.returned", "A"), send("order.returned", "A")) == (1, 0)
    assert send("order.returned", "B") == 1
    send("order.delivered", "C")  # re-enrollment: A and B stay exited
    assert (send("order.returned", "A"), send("order.returned", "B")) == (0, 0)
    for i in range(MAX_REFS_KEPT + 10):
        send("order.delivered", f"X{i}")
        send("order.returned", f"X{i}")
    assert profile is not None
    record = profile["enrollments"]["checkin"]
    assert len(record["exited_refs"]) < MAX_REFS_KEPT
    assert set(record["exited_refs"]) <= set(record["refs"])


# ------------------------------------------------------ codegen undo journal


def test_the_journal_restores_a_key_overwritten_in_a_nested_branch() -> None:
    compiler = Compiler(fast=True, consts={})
    key = ("data", ("a",), False)
    compiler._remember(key, "_v1")
    with compiler.branch():
        compiler._remember(key, "_v2")
        compiler._remember(("data", ("b",), False), "_v3")
        with compiler.scope():
            compiler._remember(key, "_v4")
            assert compiler._avail[key] == "_v4"
        assert compiler._avail == {key: "_v2", ("data", ("b",), False): "_v3"}
    assert compiler._avail == {key: "_v1"}
