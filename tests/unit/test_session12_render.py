"""Session 12 review findings on templates and `aftercare preview`: wordwrap's time,
Swiss money in an SMS, |datetime of a bare date, and preview's messages."""

from __future__ import annotations

import copy
import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from chalicelib.cli.main import main
from chalicelib.render import SAMPLE_CONTEXT, Renderer, RenderError, sms_encoding_info
from tests.conftest import ROOT


def sms(source: str, context: dict[str, Any] | None = None, locale: str | None = None,
        name: str = "m.sms.j2") -> str:
    renderer = Renderer({name: source})
    return renderer.render_sms("m", context or SAMPLE_CONTEXT, locale).body


def validate_one(tmp_path: Path, capsys: pytest.CaptureFixture[str], source: str,
                 trigger: dict[str, str] | None = None) -> tuple[Path, list[str]]:
    """`aftercare validate` of one campaign whose one SMS step uses template `m` with
    ``source`` (an event trigger unless given): (the template's path, stderr lines)."""
    campaigns, templates = tmp_path / "c", tmp_path / "t"
    campaigns.mkdir(exist_ok=True)
    templates.mkdir(exist_ok=True)
    (campaigns / "x.json").write_text(json.dumps(
        {"id": "x", "name": "X", "trigger": trigger or {"event": "order.delivered"},
         "steps": [{"id": "s1", "channel": "sms", "template": "m"}]}))
    template = templates / "m.sms.j2"
    template.write_text(source)
    assert main(["validate", str(campaigns), "--templates", str(templates)]) == 1
    return template, capsys.readouterr().err.splitlines()


@pytest.mark.parametrize("call", ["wordwrap(1, true, '')", "wordwrap(1)",
                                  "wordwrap(3, true, '-')"])
def test_wordwrap_of_a_huge_text_is_refused_at_once(call: str) -> None:
    """Before: one |wordwrap(1, true, '') of a 1,000,000-character word ran 15 s (textwrap
    is quadratic in it; an empty wrap string made the size estimate 0), far past the
    2-second limit, which the clock checks only between calls."""
    source = "{% set a = 'a' * 99999 %}{% set b = a ~ a ~ a ~ a ~ a ~ a ~ a ~ a ~ a ~ a %}"
    began = time.perf_counter()
    with pytest.raises(RenderError) as info:
        sms(source + "{{ b|" + call + "|length }}")
    assert time.perf_counter() - began < 2
    assert "wordwrap of a text of 999,990 characters is refused (at most 100,000)" in (
        info.value.message)


def test_wordwrap_of_ordinary_text_still_wraps() -> None:
    context = copy.deepcopy(SAMPLE_CONTEXT)
    context["note"] = "word " * 200
    body = sms("{{ note|wordwrap(40) }}", context)
    assert max(len(line) for line in body.split("\n")) <= 40


@pytest.mark.parametrize("locale", ["de-CH", "it-CH"])
def test_swiss_thousands_keep_an_sms_in_gsm7(locale: str) -> None:
    """Before: Babel's U+2019 between the digits of CHF 1\u2019500.00 made the whole SMS
    UCS-2 (two segments instead of one), and nothing said why."""
    body = sms("Ihr Einkauf: {{ 1500|money('CHF') }}. Danke!", locale=locale,
               name=f"m.{locale}.sms.j2")
    assert "1'500.00" in body and "\u2019" not in body
    assert sms_encoding_info(body)[0] == "GSM-7"


def test_a_curly_apostrophe_in_words_is_left_as_written() -> None:
    """Only a separator between digits is changed: a marketer's U+2019 in text is theirs
    (validation warns that it costs the Unicode encoding)."""
    assert sms("We\u2019re glad: 1\u2019000 thanks") == "We\u2019re glad: 1'000 thanks"


def test_the_email_keeps_the_locales_own_separator() -> None:
    renderer = Renderer({"m.de-CH.email.j2": (
        "{% block subject %}Danke{% endblock %}"
        "{% block html %}<p>{{ 1500|money('CHF') }}</p>{% endblock %}")})
    email = renderer.render_email("m", SAMPLE_CONTEXT, "de-CH")
    assert "1\u2019500.00" in email.html


@pytest.mark.parametrize(("zone", "expected"), [
    ("America/New_York", "Feb 29, 1992"), ("Pacific/Kiritimati", "Feb 29, 1992"),
    ("America/Los_Angeles", "Feb 29, 1992"), ("Asia/Tokyo", "Feb 29, 1992"),
])
def test_datetime_of_a_bare_date_is_that_day_everywhere(zone: str, expected: str) -> None:
    """Before: a bare date was midnight UTC, so |datetime showed Feb 28, 7:00 PM in New
    York while |date showed Feb 29."""
    context = copy.deepcopy(SAMPLE_CONTEXT)
    context["customer"]["timezone"] = zone
    context["born"] = "1992-02-29"
    body = sms("{{ born|date }} / {{ born|datetime }}", context)
    day, moment = body.split(" / ")
    assert day == expected
    assert moment.startswith(expected) and "12:00:00" in moment, moment


def test_datetime_of_a_bare_date_in_a_named_timezone() -> None:
    context = {**SAMPLE_CONTEXT, "born": "1992-02-29"}
    assert sms("{{ born|datetime('yyyy-MM-dd HH:mm', tz='Asia/Kathmandu') }}",
               context) == "1992-02-29 00:00"


# ----------------------------------------------------------------- preview


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shutil.copytree(ROOT / "campaigns", tmp_path / "campaigns")
    shutil.copytree(ROOT / "templates", tmp_path / "templates")
    (tmp_path / "customer.json").write_text(json.dumps(
        {"id": "c-1", "name": "Ana", "locale": "en-US", "timezone": "America/New_York"}))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _preview(target: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["preview", target, "--customer", "customer.json"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(("target", "message"), [
    ("campaigns/nope.json", "campaigns/nope.json: $: no such campaign file"),
    ("nope.json", "nope.json: $: no such campaign file (nor campaigns/nope.json)"),
    ("nope", "nope: $: no campaign file 'nope' and no campaign with id 'nope' in campaigns"),
    ("campaigns/schema.json",
     "campaigns/schema.json: $: warning: a JSON Schema, not a campaign: skipped"),
])
def test_preview_says_what_it_could_not_find(
        workspace: Path, target: str, message: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Before: `campaigns/nope.json` was reported as `campaigns/campaigns/nope.json.json`,
    and `campaigns/schema.json` exited 1 printing nothing."""
    assert _preview(target, capsys) == (1, "", message + "\n")


def test_preview_finds_a_file_name_in_the_campaigns_folder(
        workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _preview("birthday.json", capsys)
    assert (code, err) == (0, "")
    assert "--- step" in out


def test_preview_names_units_when_they_are_not_characters(
        workspace: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Before: `€{}` was shown as "6 chars" (GSM-7 counts them double)."""
    (workspace / "templates" / "checkin.sms.j2").write_text("Price {}: 5€")
    code, out, _ = _preview("delivery-checkin", capsys)
    assert code == 0
    assert "[checkin.sms.j2: GSM-7, 15 units (12 chars), 1 segment(s)]" in out


# ----------------------------------------------- a dict method for a missing key


def _order_context(order: dict[str, Any]) -> dict[str, Any]:
    context = copy.deepcopy(SAMPLE_CONTEXT)
    context["order"] = order
    return context


@pytest.mark.parametrize("source", [
    "You bought:{% for item in order.items %} {{ item.name }}{% endfor %}",
    "{{ order.items }}", "{{ order.items|length }}", "{{ order.values|list }}",
])
def test_a_missing_key_named_like_a_dict_method_is_undefined(source: str) -> None:
    """Before: `order.items` on an order without items was Python's dict.items, so a
    loop over it failed with "TypeError: 'builtin_function_or_method' object is not
    iterable" (at send time for an event without items; at validation for a date or
    idle campaign, beside the undefined-variable line)."""
    with pytest.raises(RenderError) as info:
        sms(source, _order_context({"id": "o-1"}))
    assert info.value.message.startswith("undefined variable 'order.")
    assert "TypeError" not in info.value.message


def test_dict_methods_still_work_when_called() -> None:
    context = _order_context({"id": "o-1", "total": 5})
    context["customer"]["attributes"] = {"tier": "gold", "n": 2}
    source = ("{% for k, v in customer.attributes.items()|sort %}{{ k }}={{ v }};{% endfor %}"
              " {{ order.get('id') }} {{ order.keys()|sort|join(',') }}"
              " {{ order.values()|list|length }} {{ 'y' if order.items is defined else 'n' }}")
    assert sms(source, context) == "n=2;tier=gold; o-1 id,total 2 n"


def test_an_order_with_items_still_loops_over_them() -> None:
    assert sms("{% for item in order.items %}{{ item.name }}{% endfor %}") == "Kettle"


def test_a_dict_method_that_changes_data_is_still_refused() -> None:
    with pytest.raises(RenderError) as info:
        sms("{{ order.pop('id') }}", _order_context({"id": "o-1"}))
    assert "not allowed" in info.value.message


def test_validate_reports_order_items_in_an_idle_campaign_once(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    template, lines = validate_one(
        tmp_path, capsys, "You bought:{% for item in order.items %} {{ item.name }}"
                          "{% endfor %}\n", {"idle": "P30D"})
    assert lines == [f"{template}: line 1: undefined variable 'order.items' (campaign 'x' "
                     "has a date or idle trigger: there is no order)"]


# ------------------------------------------------- Python's type errors, in words


@pytest.mark.parametrize(("source", "message"), [
    ("{{ 1 + 'a' }}", "cannot use '+' on a number and text"),
    ("{{ 'a' + 1 }}", "cannot use '+' on text and a number (to join text, use '~': "
                      "{{ 'Order ' ~ order.id }})"),
    ("{{ 1 < 'a' }}", "cannot compare a number with text"),
    ("{% for x in 5 %}{% endfor %}", "cannot loop over a number"),
    ("{{ 5|length }}", "a number has no length"),
    ("{{ customer.name() }}", "text is not a function: remove the ()"),
    ("{{ [1] - [2] }}", "cannot use '-' on a list and a list"),
    ("{{ [1] + (2,) }}", "cannot use '+' on a list and a tuple"),
    ("{{ 'x' in 5 }}", "cannot look for a value in a number with 'in'"),
    ("{{ [1, 'a']|sort }}", "cannot compare text with a number"),
    ("{% set t %}<b>x</b>{% endset %}{{ t + 1 }}", "cannot use '+' on text and a number "
                                                  "(to join text, use '~': "
                                                  "{{ 'Order ' ~ order.id }})"),
])
def test_a_type_error_reads_as_the_template_writes_it(source: str, message: str) -> None:
    """Before: "TypeError: unsupported operand type(s) for +: 'int' and 'str'"."""
    with pytest.raises(RenderError) as info:
        sms(source)
    assert info.value.message == message
    assert info.value.redacted.endswith(f": {message}")  # no customer value in it


def test_validate_lists_a_type_error_after_an_undefined_variable(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Before: the render that lists undefined variables stopped at the type error of
    line 2 and dropped it: one run showed only line 1."""
    template, lines = validate_one(tmp_path, capsys, "{{ customer.nmae }}\n{{ 1 + 'a' }}\n")
    assert lines == [f"{template}: line 1: undefined variable 'customer.nmae'",
                     f"{template}: line 2: cannot use '+' on a number and text"]
    # What an undefined value let through as empty is not a second problem.
    for source in ("{% set n = customer.nmae %}\n{{ n|money }}\n",
                   "{{ order.curency }}\n{{ 5|money(order.curency ~ '') }}\n",
                   "{{ order.cnt }}\n{{ 10 / (order.cnt|int) }}\n",
                   "{{ customer.tz }}\n{{ order.placed_at|datetime(tz=customer.tz ~ '') }}\n"):
        _, lines = validate_one(tmp_path, capsys, source)
        assert all("undefined variable" in line for line in lines), lines
        assert not any("money" in line or "divi" in line or "timezone" in line
                       for line in lines), lines


@pytest.mark.parametrize(("source", "message"), [
    ("{{ customer['__class__'] }}",
     "not allowed: access to attribute '__class__' of 'dict' object is unsafe."),
    ("{{ ''.format.__self__ }}",
     "not allowed: access to attribute '__self__' of 'function' object is unsafe."),
])
def test_a_dunder_is_refused_as_such_whatever_its_form(
        source: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Before: `customer['__class__']` was two lines (an undefined variable and "not
    allowed"), and `''.format.__self__` an undefined variable ('function object' has no
    attribute '__self__'), though both try to reach Python's internals."""
    template, lines = validate_one(tmp_path, capsys, source + "\n")
    assert lines == [f"{template}: line 1: {message}"]


def test_a_data_key_with_one_underscore_is_still_just_undefined() -> None:
    with pytest.raises(RenderError) as info:
        sms("{{ customer['_nick'] }}")
    assert info.value.message == "undefined variable 'customer._nick'"


def test_validate_lists_every_undefined_value_a_formatting_filter_is_given(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Before: the listing render stopped at `|money` of an undefined amount ("money
    expects a number", the same mistake), so the currency beside it and every later
    line went unreported."""
    template, lines = validate_one(
        tmp_path, capsys, "{{ order.total|money(order.currency) }}\n"
                          "{{ order.placed_at|date }} {{ order.placed_at|datetime }}\n",
        {"idle": "P30D"})
    why = "(campaign 'x' has a date or idle trigger: there is no order)"
    assert lines == [
        f"{template}: line 1: undefined variable 'order.total' {why}",
        f"{template}: line 1: undefined variable 'order.currency' {why}",
        f"{template}: line 2: undefined variable 'order.placed_at' {why}"]


@pytest.mark.parametrize("source", ["{{ order.nope|money('USD') }}",
                                    "{{ 5|money(order.nope) }}", "{{ order.nope|date }}",
                                    "{{ order.nope|datetime }}"])
def test_a_formatting_filter_of_an_undefined_value_still_fails_a_send(source: str) -> None:
    with pytest.raises(RenderError) as info:
        sms(source)
    assert info.value.message.startswith("undefined variable 'order.nope'")


def test_an_email_with_both_required_blocks_empty_says_so_in_one_line() -> None:
    """Before: "subject is empty" only; the empty html block showed after a fix."""
    renderer = Renderer({"m.email.j2": "{% block subject %} {% endblock %}"
                                       "{% block html %}\n{% endblock %}"})
    with pytest.raises(RenderError) as info:
        renderer.render_email("m", SAMPLE_CONTEXT)
    assert info.value.message == "subject and html block are empty"
