from __future__ import annotations

import copy
import datetime as dt
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from chalicelib.render import (
    SAMPLE_CONTEXT,
    Renderer,
    RenderError,
    TemplateError,
    TemplateNotFoundError,
    TemplateProblem,
    load_template_dir,
    sms_encoding_info,
    validate_templates,
)

NBSP = "\u00a0"


def ctx(**overrides: Any) -> dict[str, Any]:
    context = copy.deepcopy(SAMPLE_CONTEXT)
    for key, value in overrides.items():
        context[key] = value
    return context


def sms(source: str, context: dict[str, Any] | None = None, locale: str | None = None) -> str:
    return Renderer({"t.sms.j2": source}).render_sms("t", context or ctx(), locale).body


def failure(templates: dict[str, str], name: str, channel: str = "sms") -> RenderError:
    renderer = Renderer(templates)
    render = renderer.render_sms if channel == "sms" else renderer.render_email
    with pytest.raises(RenderError) as info:
        render(name, ctx())
    return info.value


# --- locale resolution ------------------------------------------------------

LOCALIZED = {
    "checkin.sms.j2": "base",
    "checkin.pt.sms.j2": "pt",
    "checkin.pt-BR.sms.j2": "pt-BR",
    "checkin.es.sms.j2": "es",
}


@pytest.mark.parametrize(
    ("locale", "expected"),
    [
        ("pt-BR", "checkin.pt-BR.sms.j2"),
        ("pt_br", "checkin.pt-BR.sms.j2"),
        ("PT-br", "checkin.pt-BR.sms.j2"),
        ("pt-PT", "checkin.pt.sms.j2"),
        ("pt", "checkin.pt.sms.j2"),
        ("es-MX", "checkin.es.sms.j2"),
        ("fr-FR", "checkin.sms.j2"),
        (None, "checkin.sms.j2"),
        ("not a locale", "checkin.sms.j2"),
    ],
)
def test_locale_fallback(locale: str | None, expected: str) -> None:
    rendered = Renderer(LOCALIZED).render_sms("checkin", ctx(), locale)
    assert rendered.template == expected
    assert rendered.body == LOCALIZED[expected]


def test_locale_defaults_to_the_customer_locale() -> None:
    context = ctx()
    context["customer"]["locale"] = "pt_BR"
    assert Renderer(LOCALIZED).render_sms("checkin", context).template == "checkin.pt-BR.sms.j2"
    assert Renderer(LOCALIZED).render_sms("checkin", context, "es").template == "checkin.es.sms.j2"


def test_file_locale_matching_ignores_case_and_separator() -> None:
    renderer = Renderer({"x.PT_br.sms.j2": "oi", "x.sms.j2": "hi"})
    assert renderer.resolve("x", "sms", "pt-BR") == "x.PT_br.sms.j2"


def test_default_locale_variants_are_the_last_resort() -> None:
    renderer = Renderer({"x.en.sms.j2": "hi", "x.es.sms.j2": "hola"})
    assert renderer.render_sms("x", ctx(), "fr").template == "x.en.sms.j2"
    assert renderer.has_template("x", "sms")
    assert not Renderer({"x.es.sms.j2": "hola"}).has_template("x", "sms")


def test_missing_template_and_partials() -> None:
    renderer = Renderer({"_layout.sms.j2": "x", "a.sms.j2": "a"})
    assert not renderer.has_template("_layout", "sms")
    assert not renderer.has_template("a", "email")
    with pytest.raises(TemplateNotFoundError) as info:
        renderer.render_email("a", ctx())
    assert isinstance(info.value, RenderError) and isinstance(info.value, TemplateError)
    assert info.value.template == "a.email.j2"
    with pytest.raises(ValueError, match="unknown channel"):
        renderer.has_template("a", "push")


# --- filters ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("locale", "currency", "expected"),
    [
        ("en-US", "USD", "$129.50"),
        ("es", "USD", "129,50 US$"),
        ("es-ES", "EUR", "129,50 €"),
        ("de-DE", "EUR", "129,50 €"),
        ("pt-BR", "BRL", "R$ 129,50"),
    ],
)
def test_money_in_sms_uses_plain_spaces(locale: str, currency: str, expected: str) -> None:
    templates = {f"m.{locale}.sms.j2": "{{ order.total|money(cur) }}"}
    rendered = Renderer(templates).render_sms("m", ctx(cur=currency), locale)
    assert rendered.body == expected
    assert rendered.encoding == "GSM-7"  # Babel's no-break space would force UCS-2


def test_money_in_email_html_keeps_no_break_space() -> None:
    source = (
        "{% block subject %}s{% endblock %}"
        "{% block html %}{{ 129.5|money('EUR') }}{% endblock %}"
    )
    email = Renderer({"m.de.email.j2": source}).render_email("m", ctx(), "de-DE")
    assert email.html == f"129,50{NBSP}€"


def test_money_rejects_bad_input() -> None:
    assert "unknown currency" in failure({"a.sms.j2": "{{ 5|money('ZZZ') }}"}, "a").message
    assert "expects a number" in failure({"a.sms.j2": "{{ 'lots'|money }}"}, "a").message


def test_format_locale_follows_the_template_language() -> None:
    templates = {
        "m.sms.j2": "{{ 1234.5|money('EUR') }}",
        "m.pt.sms.j2": "{{ 1234.5|money('BRL') }}",
    }
    renderer = Renderer(templates)
    # an English fallback sent to a French customer reads as English
    assert renderer.render_sms("m", ctx(), "fr-FR").body == "€1,234.50"
    assert renderer.render_sms("m", ctx(), "en-GB").locale == "en_GB"
    # a Portuguese file sent to pt-BR formats the Brazilian way
    pt = renderer.render_sms("m", ctx(), "pt-BR")
    assert (pt.body, pt.locale) == ("R$ 1.234,50", "pt_BR")


@pytest.mark.parametrize(
    ("locale", "medium", "long"),
    [
        ("en-US", "Mar 1, 2026", "March 1, 2026"),
        ("es", "1 mar 2026", "1 de marzo de 2026"),
        ("de-DE", "01.03.2026", "1. März 2026"),
    ],
)
def test_date_filter(locale: str, medium: str, long: str) -> None:
    context = ctx(when=dt.date(2026, 3, 1))
    source = "{{ when|date }}|{{ '2026-03-01'|date('long') }}|{{ '2026-03-01T12:00:00Z'|date }}"
    body = Renderer({f"d.{locale}.sms.j2": source}).render_sms("d", context, locale).body
    assert body == f"{medium}|{long}|{medium}"


def test_dates_are_shown_in_the_recipient_timezone() -> None:
    source = (
        "{{ at|date }} / {{ at|datetime('short') }}"
        " / {{ at|datetime('HH:mm', tz='Europe/Berlin') }}"
    )
    body = sms(source, ctx(at="2026-03-01T02:30:00Z"))  # SAMPLE_CONTEXT is America/New_York
    assert body == "Feb 28, 2026 / 2/28/26, 9:30 PM / 03:30"
    utc = ctx(at=dt.datetime(2026, 3, 1, 2, 30))
    utc["customer"]["timezone"] = "Mars/Olympus_Mons"  # bad data falls back to UTC
    assert sms("{{ at|datetime('HH:mm') }}", utc) == "02:30"


def test_date_filters_reject_bad_values() -> None:
    assert "ISO 8601" in failure({"a.sms.j2": "{{ 'soon'|date }}"}, "a").message
    bad_tz = failure({"a.sms.j2": "x\n{{ '2026-03-01'|datetime(tz='Nowhere/City') }}"}, "a")
    assert (bad_tz.line, "unknown timezone" in bad_tz.message) == (2, True)


def test_first_name_and_default_filters() -> None:
    context = ctx()
    context["customer"]["name"] = "  Ana María Souza "
    assert sms("Hi {{ customer.name|first_name }}!", context) == "Hi Ana!"
    context["customer"]["name"] = None
    assert sms("Hi {{ customer.name|first_name('there') }}!", context) == "Hi there!"
    assert sms("{{ 'ana souza'|title }} {{ customer.nickname|default('friend') }}") == (
        "Ana Souza friend"
    )


def test_order_items_is_the_item_list_not_the_dict_method() -> None:
    body = sms("{% for item in order.items %}{{ item.quantity }}x {{ item.name }}{% endfor %}")
    assert body == "1x Kettle"


# --- SMS encoding -----------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("", ("GSM-7", 0, 0)),
        ("a" * 160, ("GSM-7", 1, 160)),
        ("a" * 161, ("GSM-7", 2, 161)),
        ("a" * 306, ("GSM-7", 2, 306)),
        ("a" * 307, ("GSM-7", 3, 307)),
        ("€" * 80, ("GSM-7", 1, 160)),  # extension characters count two septets
        ("a" * 159 + "{", ("GSM-7", 2, 161)),
        ("^{}\\[~]|€", ("GSM-7", 1, 18)),
        ("@£$¥èéùìòÇØøÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ!¤¡ÄÖÑÜ§¿äöñüà\n", ("GSM-7", 1, 44)),
        ("ç", ("UCS-2", 1, 1)),  # only the capital Ç is in GSM 03.38
        ("a" * 68 + "🙂", ("UCS-2", 1, 70)),  # one emoji flips to UCS-2, 2 code units
        ("a" * 69 + "🙂", ("UCS-2", 2, 71)),
        ("a" * 134, ("GSM-7", 1, 134)),
        ("ü" * 70 + "€", ("GSM-7", 1, 72)),
        ("á" * 70, ("UCS-2", 1, 70)),
        ("á" * 71, ("UCS-2", 2, 71)),
        ("á" * 134, ("UCS-2", 2, 134)),
        ("á" * 135, ("UCS-2", 3, 135)),
    ],
)
def test_sms_encoding_info(body: str, expected: tuple[str, int, int]) -> None:
    assert sms_encoding_info(body) == expected


def test_escape_and_surrogate_pairs_are_not_split_across_segments() -> None:
    assert sms_encoding_info("a" * 152 + "€" + "a" * 152) == ("GSM-7", 3, 306)
    assert sms_encoding_info("a" * 66 + "🙂" + "a" * 66) == ("UCS-2", 3, 134)


def test_rendered_sms_is_tidied_and_measured() -> None:
    source = "Hi {{ customer.name }},  \r\n\n\n\n{% if true %}\nthanks 🙂\n{% endif %}\n\n"
    rendered = Renderer({"t.sms.j2": source}).render_sms("t", ctx())
    assert rendered.body == "Hi Ana Souza,\n\nthanks 🙂"
    assert (rendered.encoding, rendered.segments, rendered.characters) == ("UCS-2", 1, 24)


def test_sms_is_not_html_escaped() -> None:
    context = ctx()
    context["customer"]["name"] = "<b>Tom & Jerry</b>"
    assert sms("{{ customer.name }}", context) == "<b>Tom & Jerry</b>"


def test_sms_limits() -> None:
    assert "empty" in failure({"a.sms.j2": "{% if false %}x{% endif %}  "}, "a").message
    assert "limit 1600" in failure({"a.sms.j2": "{{ 'x' * 1601 }}"}, "a").message


# --- email ------------------------------------------------------------------

EMAIL = """{% block subject %}
  Your {{ order['items'][0].name }},
  {{ customer.name }}
{% endblock %}
{% block html %}<h1>Hi {{ customer.name|first_name }}</h1>
<p>How is it going?<br>Tell us: <a href="{{ links.survey }}?a=1&b=2">survey</a></p>
{% endblock %}
"""


def test_email_blocks_escaping_and_derived_text() -> None:
    context = ctx()
    context["customer"]["name"] = "<script>alert(1)</script> & Co"
    email = Renderer({"tip.email.j2": EMAIL}).render_email("tip", context)
    assert email.subject == "Your Kettle, <script>alert(1)</script> & Co"
    assert email.html.startswith("<h1>Hi &lt;script&gt;alert(1)&lt;/script&gt;</h1>")
    assert "<script>" not in email.html
    assert "a=1&b=2" in email.html  # template text itself is not escaped
    assert email.text == (
        "Hi <script>alert(1)</script>\n\nHow is it going?\n"
        "Tell us: survey (https://aftercare.example.com/s/Zx81kQ?a=1&b=2)"
    )
    assert (email.template, email.locale) == ("tip.email.j2", "en_US")


def test_email_text_block_is_used_unescaped() -> None:
    source = EMAIL + "{% block text %}Hi {{ customer.name }} & welcome{% endblock %}"
    context = ctx()
    context["customer"]["name"] = "O'Brien <Ltd>"
    assert Renderer({"t.email.j2": source}).render_email("t", context).text == (
        "Hi O'Brien <Ltd> & welcome"
    )


def test_email_with_layout_macros_and_super() -> None:
    templates = {
        "_layout.email.j2": (
            "{% macro button(url, label) %}<a href=\"{{ url }}\">{{ label }}</a>{% endmacro %}"
            "{% block subject %}Aftercare{% endblock %}"
            "{% block html %}<main>{% block body %}{% endblock %}</main>"
            "<footer>{{ button(links.unsubscribe, 'Unsubscribe') }}</footer>{% endblock %}"
        ),
        "care.email.j2": (
            "{% extends '_layout.email.j2' %}{% set tip = 'Descale monthly' %}"
            "{% block subject %}{{ super() }}: {{ tip }}{% endblock %}"
            "{% block body %}<p>{{ tip }} & rinse</p>{% endblock %}"
        ),
    }
    email = Renderer(templates).render_email("care", ctx())
    assert email.subject == "Aftercare: Descale monthly"
    assert email.html == (
        '<main><p>Descale monthly & rinse</p></main><footer>'
        '<a href="https://aftercare.example.com/u/Zx81kQ">Unsubscribe</a></footer>'
    )


def test_email_problems() -> None:
    no_subject = {"a.email.j2": "{% block html %}x{% endblock %}"}
    assert failure(no_subject, "a", "email").message == "missing {% block subject %}"
    blank = {"a.email.j2": "{% block subject %} \n {% endblock %}{% block html %}x{% endblock %}"}
    assert failure(blank, "a", "email").message == "subject is empty"
    huge = {"a.email.j2": "{% block subject %}s{% endblock %}{% block html %}"
            "{% for i in range(3000) %}{{ 'x' * 99 }}{% endfor %}{% endblock %}"}
    assert "256 KiB" in failure(huge, "a", "email").message


# --- sandbox ----------------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ joiner }}",
        "{{ namespace(a=1) }}",
        "{{ self._TemplateReference__context }}",
        "{{ lipsum.__globals__ }}",
        "{{ lipsum.__globals__['os'].popen('id').read() }}",
        "{{ '{0.__class__}'.format(1) }}",
        "{{ customer.__class__ }}",
        "{{ customer['__class__'] }}",
        "{{ request.application.__globals__ }}",
        "{{ config }}",
        "{% set x = customer.attributes.update({'tier': 'vip'}) %}x",
        "{% set x = order['items'].append(1) %}x",
        "{{ 'a' * 10000000 }}",
        "{{ 'x'.ljust(100000000) }}",
        "{{ 2 ** 100000000 }}",
        "{% for i in range(10000000) %}{% endfor %}",
        "{% include '/etc/passwd' %}",
        "{% extends '../../etc/passwd' %}",
        "{% import 'os' as os %}",
    ],
)
def test_template_injection_is_refused(source: str) -> None:
    error = failure({"evil.sms.j2": source}, "evil")
    assert error.template == "evil.sms.j2"
    assert any(
        word in error.message for word in ("not allowed", "undefined", "not found", "range")
    ), error.message


def test_security_violation_names_the_attribute() -> None:
    error = failure({"e.sms.j2": "ok\n{{ ''.__class__ }}"}, "e")
    assert (error.line, error.message) == (
        2,
        "not allowed: access to attribute '__class__' of 'str' object is unsafe.",
    )


# --- errors -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "line", "message"),
    [
        ("Hi\n{{ customer.nickname }}", 2, "undefined variable 'customer.nickname'"),
        ("Hi\n\n{{ coupon }}", 3, "undefined variable 'coupon'"),
        ("{{ customer['attributes']['size'] }}", 1,
         "undefined variable 'customer.attributes.size'"),
        ("{% for i in order['items'] %}\n{{ i.colour }}{% endfor %}", 2,
         "undefined variable 'i.colour'"),
        ("{% if customer.vip %}x{% endif %}", 1, "undefined variable 'customer.vip'"),
        ("{{ customer.nope|first_name }}", 1, "undefined variable 'customer.nope'"),
        ("{{ customer.nope|money }}", 1, "undefined variable 'customer.nope'"),
        ("{{ customer.nope|date }}", 1, "undefined variable 'customer.nope'"),
        ("a\nb\n{% if %}", 3, "syntax error: Expected an expression, got 'end of statement block'"),
        ("{% for x in y %}", 1, "syntax error: Unexpected end of template. Jinja was looking for "
         "the following tags: 'endfor' or 'else'. The innermost block that needs to be closed "
         "is 'for'."),
        ("x\n{{ 1 / 0 }}", 2, "ZeroDivisionError: division by zero"),
    ],
)
def test_render_errors_name_template_line_and_cause(source: str, line: int, message: str) -> None:
    error = failure({"t.sms.j2": source}, "t")
    assert (error.template, error.line, error.message) == ("t.sms.j2", line, message)
    assert str(error) == f"t.sms.j2:{line}: {message}"


def test_error_inside_a_layout_points_at_the_layout() -> None:
    templates = {
        "_base.sms.j2": "Hello\n{% block body %}{% endblock %}\n{{ order.missing }}",
        "x.sms.j2": "{% extends '_base.sms.j2' %}{% block body %}ok{% endblock %}",
    }
    error = failure(templates, "x")
    assert (error.template, error.line, error.message) == (
        "_base.sms.j2", 3, "undefined variable 'order.missing'",
    )


def test_renderer_copies_templates_and_is_thread_safe() -> None:
    source = "{{ order.total|money(order.currency) }}"
    templates = {f"m.{lang}sms.j2": source for lang in ("", "de.", "es.", "pt.")}
    renderer = Renderer(templates)
    templates["m.sms.j2"] = templates["m.de.sms.j2"] = "changed"
    locales = ["en-US", "de-DE", "es-ES", "pt-BR"] * 25
    with ThreadPoolExecutor(max_workers=8) as pool:
        bodies = list(pool.map(lambda loc: renderer.render_sms("m", ctx(), loc).body, locales))
    expected = {
        "en-US": "$129.50", "de-DE": "129,50 $", "es-ES": "129,50 US$", "pt-BR": "US$ 129,50"
    }
    assert bodies == [expected[loc] for loc in locales]


def test_load_template_dir(tmp_path: Path) -> None:
    (tmp_path / "partials").mkdir()
    (tmp_path / "checkin.sms.j2").write_text("Hi {% include 'partials/sig.j2' %}", "utf-8")
    (tmp_path / "partials" / "sig.j2").write_text("— the team", "utf-8")
    (tmp_path / ".draft.sms.j2").write_text("no", "utf-8")
    (tmp_path / "notes.md").write_text("no", "utf-8")
    templates = load_template_dir(tmp_path)
    assert sorted(templates) == ["checkin.sms.j2", "partials/sig.j2"]
    assert Renderer(templates).render_sms("checkin", ctx()).body == "Hi — the team"
    with pytest.raises(FileNotFoundError):
        load_template_dir(tmp_path / "missing")


# --- validation -------------------------------------------------------------

GOOD = {
    "checkin.sms.j2": "Hi {{ customer.name|first_name }}, rate us 1-5: {{ links.survey }}",
    "checkin.es.sms.j2": "Hola {{ customer.name|first_name }}: {{ links.survey }}",
    "care_tip.email.j2": EMAIL,
    "_layout.email.j2": "{% block html %}{% endblock %}",
}


def test_validate_accepts_good_templates() -> None:
    required = [("checkin", "sms"), ("care_tip", "email")]
    assert validate_templates(GOOD, sample_contexts=[SAMPLE_CONTEXT], required=required) == []


def test_validate_reports_every_problem() -> None:
    templates = {
        **GOOD,
        "checkin.pt.sms.j2": "Oi\n{{ customer.nickname }}",
        "broken.sms.j2": "x\n{% if %}",
        "evil.sms.j2": "{{ ''.__class__ }}",
        "long.sms.j2": "{{ 'x' * 500 }}",
        "quotes.sms.j2": "It\u2019s here \u2014 enjoy",
        "nosubject.email.j2": "{% block html %}x{% endblock %}",
        "via_layout.email.j2": "{% extends '_layout.email.j2' %}{% block html %}x{% endblock %}",
        "hi.xx.sms.j2": "hi",
        "footer.html.j2": "x",
        "hello.PT.sms.j2": "a",
        "hello.pt.sms.j2": "b",
    }
    problems = validate_templates(
        templates,
        sample_contexts=[SAMPLE_CONTEXT, SAMPLE_CONTEXT],
        required=[("checkin", "sms"), ("winback", "email"), ("x", "push")],
    )
    found = {(p.template, p.line, p.severity) for p in problems}
    by_file = {p.template: p.message for p in problems}
    assert ("checkin.pt.sms.j2", 2, "error") in found
    assert by_file["checkin.pt.sms.j2"] == "undefined variable 'customer.nickname'"
    assert ("broken.sms.j2", 2, "error") in found
    assert by_file["broken.sms.j2"].startswith("syntax error")
    assert by_file["evil.sms.j2"].startswith("not allowed")
    assert ("long.sms.j2", None, "warning") in found
    assert by_file["long.sms.j2"] == "SMS is 4 segments (500 GSM-7 units); keep it to 3 or fewer"
    assert ("quotes.sms.j2", None, "warning") in found and "U+2019" in by_file["quotes.sms.j2"]
    assert by_file["nosubject.email.j2"] == "missing {% block subject %}"
    assert by_file["via_layout.email.j2"] == "missing {% block subject %}"
    assert by_file["hi.xx.sms.j2"] == "unknown locale 'xx'"
    assert ("footer.html.j2", None, "warning") in found
    assert "same template and locale" in by_file["hello.pt.sms.j2"]
    assert by_file["winback.email.j2"] == "missing template: a campaign sends email 'winback'"
    assert by_file["x.push.j2"] == "unknown channel 'push'"
    assert len(problems) == len(set(problems)) == 12  # two identical contexts, no duplicates
    assert all(isinstance(p, TemplateProblem) for p in problems)
    assert str(problems[0]).count(":") >= 2


def test_validate_uses_each_sample_context() -> None:
    templates = {"review.sms.j2": "Your {{ order['items'][0].name }}"}
    no_order = {k: v for k, v in SAMPLE_CONTEXT.items() if k != "order"}
    problems = validate_templates(templates, sample_contexts=[SAMPLE_CONTEXT, no_order])
    assert problems == [TemplateProblem("review.sms.j2", 1, "undefined variable 'order'")]
    # without samples, only what needs no data is checked
    assert validate_templates(templates, sample_contexts=[]) == []


# --- hostile templates (QA regressions) -------------------------------------


def test_an_unreadable_template_is_reported_not_raised(tmp_path: Path) -> None:
    (tmp_path / "bad.sms.j2").write_bytes(b"Hi \xff")
    (tmp_path / "ok.sms.j2").write_text("Hi")
    templates = load_template_dir(tmp_path)  # does not raise
    assert templates["ok.sms.j2"] == "Hi"
    problems = validate_templates(templates, sample_contexts=[SAMPLE_CONTEXT])
    assert problems == [TemplateProblem("bad.sms.j2", None,
                                        "not UTF-8 text: byte 0xff at line 1 column 4")]
    with pytest.raises(RenderError, match="not UTF-8"):
        Renderer(templates).render_sms("bad", ctx())


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ self }}", "cannot print 'TemplateReference'"),
        ("{{ customer.name.upper }}", "cannot print 'upper'"),
        ("{% macro m() %}x{% endmacro %}{{ m }}", "cannot print 'Macro'"),
        ("{% for i in [1] %}{{ loop }}{% endfor %}", "cannot print 'LoopContext'"),
        ("{{ range }}", "cannot print"),
    ],
)
def test_functions_and_template_objects_cannot_be_printed(source: str, expected: str) -> None:
    error = failure({"t.sms.j2": source}, "t")
    assert error.message.startswith("not allowed: ") and expected in error.message


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}x",
         "too much work"),
        ("{% for i in range(1000) %}{% include 'inner.j2' %}{% endfor %}x", "too much work"),
        ("{% macro m(n) %}{% if n %}{{ m(n-1) }}{{ m(n-1) }}{% endif %}{% endmacro %}{{ m(30) }}",
         "too much work"),
        ("{{ '%.999999999f'|format(1.5) }}", "format precision 999999999 is too large"),
        ("{{ '%*d'|format(1000000000, 1) }}", "computed width"),
        ("{{ '{:{w}}'.format('x', w=1000000000) }}", "computed width"),
        ("{{ ('\t' * 99999).expandtabs(99999) }}", "expandtabs would build"),
        ("{% set b = 'x' * 99999 %}{{ b|replace('x', b) }}", "replace would build"),
        ("{% set b = 'x' * 99999 %}{{ ('\n' * 99999)|indent(b) }}", "indent would build"),
        ("{% set b = 'x' * 99999 %}{{ b|wordwrap(1, wrapstring=b) }}", "wordwrap would build"),
        ("{% set b = 'x' * 99999 %}{{ '{0}{0}{0}{0}{0}{0}{0}{0}{0}{0}{0}'.format(b) }}",
         "this format would build"),
        ("{% set b = 'x' * 99999 %}{% set l = [b,b,b,b,b,b,b,b,b,b,b] %}{{ l }}",
         "printed value would be too large"),
        ("{% set b = 'x' * 99999 %}{% set l = [b,b,b,b,b,b,b,b,b,b,b] %}{{ l ~ '' }}",
         "'~' would build"),
        ("{% set s %}{% for i in range(100000) %}{{ 'x' * 99999 }}{% endfor %}{% endset %}{{ s }}",
         "a block would render over"),
        ("{{ range(10)|batch(1000000000, 'x')|list }}", "batch size"),
        ("{{ range(10)|slice(1000000000)|list }}", "slice size"),
        ("{{ range(10)|list|tojson(99999) }}", "tojson indent"),
        ("{{ ((10 ** 1000) * (10 ** 1000) * (10 ** 1000) * (10 ** 1000)) }}",
         "number would be too large"),
        ("{{ 'x'.translate({120: 'y'}) }}", "attribute 'translate'"),
    ],
)
def test_runaway_templates_stop_fast(source: str, expected: str) -> None:
    import time

    started = time.monotonic()
    error = failure({"t.sms.j2": source, "inner.j2": "{% for j in range(1000) %}{% endfor %}"},
                    "t")
    assert time.monotonic() - started < 5
    assert expected in error.message, error.message


@pytest.mark.parametrize(
    "source",
    [
        "{{ '%s' % customer.name }} {{ '%05.2f' % 3.14159 }} {{ '{:>8}'.format(customer.name) }}",
        "{{ customer.name|center(20) }}|{{ customer.name|indent(2) }}",
        "{{ order['items']|map(attribute='name')|join(', ') }} {{ order.items|length }}",
        "{% for i in range(50000) %}{% endfor %}{{ range(1000)|list|sum }}",
        "{{ customer.get('name') }} {{ customer.keys()|list|length }} {{ 2 ** 10 }}",
        "{% macro g(n) %}Hi {{ n }}{% endmacro %}{{ g(customer.name) }}",
    ],
)
def test_ordinary_templates_are_not_limited(source: str) -> None:
    assert sms(source)


def test_a_missing_key_is_undefined_not_a_dict_method() -> None:
    context = ctx(order={"id": "o-1"})  # `order["items"]` must not be dict.items
    with pytest.raises(RenderError) as info:
        Renderer({"t.sms.j2": "Hi {{ order['items'][0].name }}"}).render_sms("t", context)
    assert info.value.message == "undefined variable 'order.items'"


def test_an_undefined_message_picks_the_expression_that_failed() -> None:
    context = ctx(order={"id": "o-1", "items": "x"})  # a text where a list belongs
    with pytest.raises(RenderError) as info:
        Renderer({"t.sms.j2": "{{ customer.name }} {{ order['items'][0].name }}"}).render_sms(
            "t", context)
    assert info.value.message == "undefined variable 'order.items[0].name'"
    with pytest.raises(RenderError) as info:
        Renderer({"t.sms.j2": "{{ order['items'][5] }}"}).render_sms("t", ctx())
    assert info.value.message == "undefined variable 'order.items[5]'"


def test_undefined_problems_lists_them_all() -> None:
    renderer = Renderer({"t.email.j2": "{% block subject %}{{ customer.a }}{% endblock %}"
                                       "{% block html %}\n{{ customer.b }}{% endblock %}"})
    found = renderer.undefined_problems("t.email.j2", ctx())
    assert [(e.line, e.message) for e in found] == [
        (1, "undefined variable 'customer.a'"), (2, "undefined variable 'customer.b'")]
    # and rendering for real is still strict
    with pytest.raises(RenderError, match=r"customer\.a"):
        renderer.render_email("t", ctx())


@pytest.mark.parametrize("locale", [5, {"a": 1}, ["es"], ""])
def test_a_locale_that_is_not_text_falls_back(locale: Any) -> None:
    context = ctx()
    context["customer"]["locale"] = locale
    assert Renderer(LOCALIZED).render_sms("checkin", context).template == "checkin.sms.j2"
    assert Renderer(LOCALIZED).render_sms("checkin", ctx(), locale).template == "checkin.sms.j2"


def test_an_email_with_an_empty_html_part_is_refused() -> None:
    source = "{% block subject %}Hi{% endblock %}{% block html %}  {% endblock %}"
    error = failure({"t.email.j2": source}, "t", "email")
    assert error.message == "the html block is empty"
