"""Review findings of session 15: what preview shows is what is sent.

- a sequence not made a list (``|map``, ``|select``, ``|reverse``, ``.keys()``,
  ``range()``) printed or made text is refused (it printed ``<generator object ...
  at 0x...>``, a different text at each render), and so refused by validation;
- ``preview --order`` checks and trims the order as an event's order is (the
  categories from its items, only the fields an enrollment keeps);
- the example Spanish templates read well without a name;
- a POSIX locale (``es.UTF-8``, ``es@euro``) picks the ``es`` templates, as Babel
  reads it as ``es`` for money and dates;
- a customer id that is not a string is refused (it picks the holdout and variant).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chalicelib.cli.main import main
from chalicelib.render import SAMPLE_CONTEXT, Renderer, RenderError
from chalicelib.render.naming import locale_chain
from tests.conftest import ROOT

ARGS = ["--campaigns", str(ROOT / "campaigns"), "--templates", str(ROOT / "templates")]
STOP = " Reply STOP to opt out."


@pytest.mark.parametrize(("expression", "name"), [
    ("order['items']|map(attribute='name')", "generator"),
    ("order['items']|selectattr('name')", "generator"),
    ("order['items']|reverse", "list_reverseiterator"),
    ("customer.keys()", "dict_keys"),
    ("customer.items()", "dict_items"),
    ("range(3)", "range"),
    ("[order['items']|map(attribute='name')]", "generator"),
    ("{'a': range(2)}", "range"),
])
def test_a_sequence_not_made_a_list_is_not_printed(expression: str, name: str) -> None:
    renderer = Renderer({"t.sms.j2": "{{ " + expression + " }}" + STOP})
    with pytest.raises(RenderError) as caught:
        renderer.render_sms("t", SAMPLE_CONTEXT)
    assert f"cannot print {name!r}: it is a sequence not made a list yet" in str(caught.value)
    assert "t.sms.j2:1" in str(caught.value)


@pytest.mark.parametrize(("template", "use"), [
    ("{{ order['items']|map(attribute='name')|upper }}", "give 'generator' to |upper"),
    ("{{ 'x' ~ (order['items']|map(attribute='name')) }}", "join 'generator' with '~'"),
    ("{{ '%s' % (order['items']|map(attribute='name')) }}", "give 'generator' to '%'"),
    ("{{ [customer.name.upper] }}", "print 'upper'"),  # a function inside a list
])
def test_nor_made_text_another_way(template: str, use: str) -> None:
    with pytest.raises(RenderError, match=f"cannot {use}"):
        Renderer({"t.sms.j2": template + STOP}).render_sms("t", SAMPLE_CONTEXT)


@pytest.mark.parametrize(("template", "body"), [
    ("{{ order['items']|map(attribute='name')|join(', ') }}", "Kettle"),
    ("{{ order['items']|map(attribute='name')|list }}", "['Kettle']"),
    ("{% for i in order['items']|reverse %}{{ i.name }}{% endfor %}", "Kettle"),
    ("{{ order['items']|map(attribute='name')|first }}", "Kettle"),
    ("{{ customer.keys()|list|length }}", str(len(SAMPLE_CONTEXT["customer"]))),
])
def test_the_sequence_listed_or_joined_is_printed(template: str, body: str) -> None:
    assert Renderer({"t.sms.j2": template + STOP}).render_sms(
        "t", SAMPLE_CONTEXT).body == body + STOP


def _campaign_folder(tmp_path: Path, template: str) -> tuple[Path, Path]:
    campaigns, templates = tmp_path / "campaigns", tmp_path / "templates"
    campaigns.mkdir()
    templates.mkdir()
    (templates / "items.sms.j2").write_text(template + STOP, encoding="utf-8")
    (campaigns / "c.json").write_text(json.dumps({
        "id": "items", "name": "Items", "status": "active",
        "trigger": {"event": "order.delivered"},
        "steps": [{"id": "s1", "after": "P1D", "channel": "sms", "template": "items"}],
    }), encoding="utf-8")
    return campaigns, templates


def test_validate_refuses_a_generator_printed(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    campaigns, templates = _campaign_folder(
        tmp_path, "Your items: {{ order['items']|map(attribute='name') }}.")
    assert main(["validate", str(campaigns), "--templates", str(templates)]) == 1
    err = capsys.readouterr().err
    assert "items.sms.j2: line 1: not allowed: cannot print 'generator'" in err
    assert "Traceback" not in err


def test_preview_order_is_the_order_a_message_gets(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    campaigns, templates = _campaign_folder(
        tmp_path, "{{ order.categories|join('+') }} {{ order.category }}"
                  "{% if order.secret is defined %} {{ order.secret }}{% endif %}")
    customer = tmp_path / "customer.json"
    customer.write_text('{"id": "c-1", "name": "Ann"}', encoding="utf-8")
    order = tmp_path / "order.json"
    order.write_text(json.dumps({
        "id": "o-1", "total": 10, "currency": "EUR", "secret": "not in the event",
        "items": [{"sku": "a", "name": "A", "category": "garden"},
                  {"sku": "b", "name": "B", "category": "tools"}]}), encoding="utf-8")
    assert main(["preview", str(campaigns / "c.json"), "--templates", str(templates),
                 "--customer", str(customer), "--order", str(order)]) == 0
    out = capsys.readouterr().out
    assert "garden+tools garden" + STOP in out
    assert "not in the event" not in out


@pytest.mark.parametrize(("order", "message"), [
    ({"id": "o-1", "total": "abc"}, "$.total: must be a finite number"),
    ({"total": 5}, "$.id:"),
    ({"id": "o-1", "items": [{"price": "x"}]}, "$.items[0].price: must be a finite number"),
    ({"id": "o-1", "items": "kettle"}, "$.items: must be a list"),
])
def test_preview_refuses_an_order_no_event_could_carry(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], order: dict[str, object],
        message: str) -> None:
    campaigns, templates = _campaign_folder(tmp_path, "{{ order.id }}")
    customer = tmp_path / "customer.json"
    customer.write_text('{"id": "c-1"}', encoding="utf-8")
    path = tmp_path / "order.json"
    path.write_text(json.dumps(order), encoding="utf-8")
    assert main(["preview", str(campaigns / "c.json"), "--templates", str(templates),
                 "--customer", str(customer), "--order", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"{path}: {message}" in err and "Traceback" not in err


@pytest.mark.parametrize(("campaign", "expected"), [
    ("birthday", "¡Feliz cumpleaños! Hoy"),
    ("delivery-checkin", "Hola, tu pedido"),
])
def test_spanish_examples_without_a_name(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], campaign: str,
        expected: str) -> None:
    customer = tmp_path / "customer.json"
    customer.write_text('{"id": "c-1", "locale": "es"}', encoding="utf-8")
    assert main(["preview", campaign, "--customer", str(customer), *ARGS]) == 0
    assert expected in capsys.readouterr().out


@pytest.mark.parametrize(("locale", "chain"), [
    ("es.UTF-8", ["es"]),
    ("pt_BR.utf8", ["pt-br", "pt"]),
    ("es@euro", ["es"]),
    ("es_ES.UTF-8@euro", ["es-es", "es"]),
    (" PT_br ", ["pt-br", "pt"]),
])
def test_a_posix_locale_picks_its_language(locale: str, chain: list[str]) -> None:
    assert locale_chain(locale) == chain
    renderer = Renderer({"c.sms.j2": "Hi" + STOP, "c.es.sms.j2": "Hola" + STOP,
                         "c.pt.sms.j2": "Oi" + STOP})
    assert renderer.render_sms("c", SAMPLE_CONTEXT, locale).template == (
        f"c.{chain[-1]}.sms.j2")


def test_preview_of_a_posix_locale_customer(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    customer = tmp_path / "customer.json"
    customer.write_text('{"id": "c-1", "name": "Lucía", "locale": "es.UTF-8"}',
                        encoding="utf-8")
    assert main(["preview", "birthday", "--customer", str(customer), *ARGS]) == 0
    captured = capsys.readouterr()
    assert "¡Feliz cumpleaños, Lucía!" in captured.out
    assert "[birthday.es.sms.j2:" in captured.out and "unknown locale" not in captured.err


@pytest.mark.parametrize("value", ['{"a": 1}', "7", '""', "[]"])
def test_preview_refuses_a_customer_id_that_is_not_text(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str) -> None:
    customer = tmp_path / "customer.json"
    customer.write_text('{"id": ' + value + "}", encoding="utf-8")
    assert main(["preview", "birthday", "--customer", str(customer), *ARGS]) == 1
    assert f"{customer}: $.id: must be a non-empty string" in capsys.readouterr().err


def test_preview_of_a_customer_id_left_null(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    customer = tmp_path / "customer.json"
    customer.write_text('{"id": null, "name": "Ann"}', encoding="utf-8")
    assert main(["preview", "birthday", "--customer", str(customer), *ARGS]) == 0
    assert "None" not in capsys.readouterr().out


@pytest.mark.parametrize("template", [
    "{{ customer.attributes.items()|urlencode }}",
    "{{ customer.attributes|items|urlencode }}",
    "{{ customer.attributes|urlencode }}",
])
def test_pairs_from_items_are_urlencoded(template: str) -> None:
    context = {**SAMPLE_CONTEXT, "customer": {**SAMPLE_CONTEXT["customer"],
                                              "attributes": {"vip": "yes", "tier": "gold"}}}
    assert Renderer({"t.sms.j2": template + STOP}).render_sms("t", context).body == (
        "vip=yes&tier=gold" + STOP)


def test_a_null_among_urlencoded_pairs_is_still_refused() -> None:
    with pytest.raises(RenderError, match="null"):
        Renderer({"t.sms.j2": "{{ {'a': none}.items()|urlencode }}" + STOP}).render_sms(
            "t", SAMPLE_CONTEXT)
