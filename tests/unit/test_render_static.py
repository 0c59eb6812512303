"""The static pass of template validation: what a branch the sample data does not
take would hide from the render (chalicelib/render/static.py)."""

from __future__ import annotations

import pytest

from chalicelib.render import SAMPLE_CONTEXT
from chalicelib.render.validate import validate_templates

# The sample order totals 129.50: nothing inside this branch is rendered.
UNTAKEN = "Hi {{{{ customer.name }}}}\n{{% if order.total > 100000 %}}{}{{% endif %}}\n"


def problems(source: str, **extra: str) -> list[str]:
    files = {"note.sms.j2": UNTAKEN.format(source), **extra}
    return [f"{p.template}:{p.line}: {p.message}"
            for p in validate_templates(files, sample_contexts=[SAMPLE_CONTEXT])
            if p.severity == "error"]


@pytest.mark.parametrize(("source", "expected"), [
    ("{{ customer.nmae }}", "note.sms.j2:2: undefined variable 'customer.nmae'"),
    ("{{ custmer.name }}", "note.sms.j2:2: undefined variable 'custmer'"),
    ("{{ order.items[0].nmae }}", "note.sms.j2:2: undefined variable 'order.items[0].nmae'"),
    ("{{ customer.name|shout }}", "note.sms.j2:2: unknown filter 'shout'"),
    ("{% if customer.name is shouting %}x{% endif %}", "note.sms.j2:2: unknown test 'shouting'"),
    ("{% filter shout %}x{% endfilter %}", "note.sms.j2:2: unknown filter 'shout'"),
    ("{% include 'partials/nope.j2' %}",
     "note.sms.j2:2: template 'partials/nope.j2' not found in the templates folder"),
    ("{% from 'partials/nope.j2' import x %}",
     "note.sms.j2:2: template 'partials/nope.j2' not found in the templates folder"),
    ("{{ customer.__class__ }}",
     "note.sms.j2:2: not allowed: access to attribute '__class__' (in customer.__class__)"),
    ("{{ ''.__class__.__mro__ }}", "note.sms.j2:2: not allowed: access to attribute '__class__'"),
    ("{{ customer['__class__'] }}",
     "note.sms.j2:2: not allowed: access to attribute '__class__' (in customer.__class__)"),
    ("{{ customer|attr('__class__') }}",
     "note.sms.j2:2: not allowed: access to attribute '__class__'"),
    ("{{ customer.name.upper.__globals__ }}",
     "note.sms.j2:2: not allowed: access to attribute '__globals__' "
     "(in customer.name.upper.__globals__)"),
    ("{{ cycler.__init__.__globals__ }}", "note.sms.j2:2: undefined variable 'cycler'"),
])
def test_a_problem_in_a_branch_not_taken_is_one_line(source: str, expected: str) -> None:
    assert problems(source) == [expected]


def test_a_problem_in_an_included_partial_names_the_partial() -> None:
    # Its variables come from the includer (a loop's item, a set): only they are
    # left to the render; a filter, a refused attribute or a missing file is not.
    found = problems("{% include 'partials/p.j2' %}",
                     **{"partials/p.j2": "{{ item.totl }}\n{% include 'partials/no.j2' %}\n"
                                         "{{ order.__class__ }}"})
    assert found == ["partials/p.j2:2: template 'partials/no.j2' not found in the templates "
                     "folder",
                     "partials/p.j2:3: not allowed: access to attribute '__class__' "
                     "(in order.__class__)"]


@pytest.mark.parametrize(("source", "expected"), [
    # A guard on a path the samples fill does not excuse a typo below it.
    ("{% if order %}{{ order.totl }}{% endif %}", "undefined variable 'order.totl'"),
    ("{{ customer.attributes and customer.attributes.pett }}",
     "undefined variable 'customer.attributes.pett'"),
])
def test_a_guard_does_not_hide_a_typo_under_data_the_samples_have(
        source: str, expected: str) -> None:
    assert problems(source) == [f"note.sms.j2:2: {expected}"]


@pytest.mark.parametrize("source", [
    "{% if customer.attributes.get('pet') %}{{ customer.attributes.pet }}{% endif %}",
    "{% if 'pet' in customer.attributes.keys() %}{{ customer.attributes.pet }}{% endif %}",
    "{% if customer.attributes.pet is string %}{{ customer.attributes.pet }}{% endif %}",
    "{% if order['items']|length > 1 %}{{ order['items'][1].name }}{% endif %}",
    "{{ customer.attributes._nickname|default('there') }}",
    "{% if survey %}{{ survey.question }}{% endif %}",
    "{{ customer.attributes.pet if customer.attributes.pet is defined }}",
    "{{ customer.attributes.pet|default('friend') }}",
    "{% if 'pet' in customer.attributes %}{{ customer.attributes.pet }}{% endif %}",
    "{% if customer.attributes.pet %}{{ customer.attributes.pet.name }}{% endif %}",
    "{{ survey and survey.question }}",
    "{% for item in order['items'] %}{{ item.colour }}{% endfor %}",
    "{% set x = customer %}{{ x.whatever }}",
    "{% macro m(c) %}{{ c.anything }}{% endmacro %}{{ m(customer) }}",
    "{{ customer.name.upper() }} {{ order['items']|length }} {{ customer.attributes.get('x') }}",
    "{{ loop_free|default('') }}",
    "{{ range(3)|list }}",
    "{% from 'partials/p.j2' import m as mm %}{{ mm(customer) }}",
    "{% import 'partials/p.j2' as p %}{{ p.m(customer) }}",
    "{% include ['partials/nope.j2', 'partials/p.j2'] %}",
    "{% include 'partials/nope.j2' ignore missing %}",
])
def test_what_a_render_would_accept_is_not_flagged(source: str) -> None:
    partial = "{% macro m(c) %}{{ c.name }}{% endmacro %}"
    assert problems(source, **{"partials/p.j2": partial}) == []


def test_a_problem_the_render_reports_is_reported_once() -> None:
    found = [f"{p.template}:{p.line}: {p.message}" for p in validate_templates(
        {"note.sms.j2": "Hi {{ customer.nmae }}"}, sample_contexts=[SAMPLE_CONTEXT])]
    assert found == ["note.sms.j2:1: undefined variable 'customer.nmae'"]


def test_an_email_block_that_is_never_sent_is_a_warning() -> None:
    files = {
        "a.email.j2": "{% block subject %}S{% endblock %}{% block html %}<p>H {% block inner %}"
                      "I{% endblock %}</p>{% endblock %}\n{% block txt %}T{% endblock %}",
        "_layout.email.j2": "{% block subject %}{% endblock %}{% block html %}<div>{% block body"
                            " %}{% endblock %}</div>{% block footer %}F{% endblock %}"
                            "{% endblock %}",
        "b.email.j2": "{% extends '_layout.email.j2' %}{% block subject %}S{% endblock %}"
                      "{% block body %}B{% endblock %}{% block footer %}G{% endblock %}"
                      "{% block bdy %}X{% endblock %}",
    }
    found = [(p.template, p.line, p.severity, p.message.split(" is ")[0])
             for p in validate_templates(files, sample_contexts=[SAMPLE_CONTEXT])]
    assert found == [("a.email.j2", 2, "warning", "{% block txt %}"),
                     ("b.email.j2", 1, "warning", "{% block bdy %}")]
