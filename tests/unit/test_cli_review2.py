"""Second review of `aftercare validate` / `preview`, templates and rules.

Each test pins a defect found in that review (see the test names): it failed
before the fix.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest

from chalicelib.cli.main import main
from chalicelib.render import SAMPLE_CONTEXT, Renderer, RenderError, validate_templates
from chalicelib.render.sms import sms_encoding_info
from chalicelib.rules import compile_rule, lint_rule
from tests.conftest import ROOT

HERE = Path(__file__).resolve().parents[1] / "fixtures" / "review2"
STEP = {"id": "s1", "after": "P2D", "channel": "sms", "template": "checkin"}
BASE: dict[str, Any] = {"id": "x", "name": "X", "trigger": {"event": "order.delivered"},
                        "steps": [STEP]}


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    assert "Traceback" not in out.err + out.out
    return code, out.out, out.err


def validate(capsys: pytest.CaptureFixture[str], folders: tuple[Path, Path],
             files: dict[str, Any], templates: dict[str, str] | None = None,
             ) -> tuple[int, list[str], list[str]]:
    """Write campaign files and templates, validate the folder: (code, errors, stdout)."""
    campaigns, template_dir = folders
    for name, content in files.items():
        (campaigns / name).write_text(content if isinstance(content, str)
                                      else json.dumps(content))
    for name, source in (templates or {}).items():
        (template_dir / name).write_text(source)
    code, out, err = run(capsys, "validate", str(campaigns), "--templates", str(template_dir))
    return code, err.splitlines(), out.splitlines()


def sms(source: str, context: dict[str, Any] | None = None, locale: str | None = None,
        name: str = "m.sms.j2") -> str:
    return Renderer({name: source}).render_sms(name.split(".")[0],
                                               context or SAMPLE_CONTEXT, locale).body


def failure(source: str, context: dict[str, Any]) -> RenderError:
    with pytest.raises(RenderError) as info:
        Renderer({"m.sms.j2": source}).render_sms("m", context)
    return info.value


def lacking(**fields: Any) -> dict[str, Any]:
    """The sample context with customer fields set (None: a field the customer lacks)."""
    context = copy.deepcopy(SAMPLE_CONTEXT)
    context["customer"].update(fields)
    return context


# ------------------------------------------------ a folder of broken campaigns


def test_a_broken_folder_lists_every_problem_once_in_a_stable_order(
        capsys: pytest.CaptureFixture[str]) -> None:
    """Before: a file the model refused hid its rule, step-id and template problems;
    a template two campaigns use was reported twice; a campaign with a duplicate id had
    its missing templates hidden."""
    folder, templates = HERE / "broken", HERE / "templates"
    code, out, err = run(capsys, "validate", str(folder), "--templates", str(templates))
    a, d, e = (f"{folder}/{n}.json" for n in ("a-many", "d-uses-ssti-too", "e-same-id-as-d"))
    assert code == 1
    assert err.splitlines() == [
        f"{a}: $.steps[0].dealy: unknown field: did you mean 'after'? (see campaigns/schema.json)",
        f"{a}: $.steps[1].after: invalid ISO 8601 duration '-P1D' (durations cannot be "
        "negative)",
        f"{a}: $.holdout_percent: should be at most 50; got 70",
        f"{a}: $.steps[1].id: duplicate step id 's1' (also $.steps[0].id)",
        f"{a}: $.audience.and[0].frob: unknown operator 'frob'",
        f"{a}: $.audience.and[1]['>'][0].var: 'var' reads 'custmer.order_count', but a rule "
        "sees only 'customer', 'event' and 'now' (did you mean 'customer'?)",
        f"{a}: $.steps[1].template: no sms template 'nope' (expected {templates}/nope.sms.j2)",
        f"{templates}/no_html.email.j2: $: missing {{% block html %}}",
        f"{templates}/order_total.sms.j2: line 1: undefined variable 'order.total' (campaign "
        "'templates' has a date or idle trigger: there is no order)",
        f"{templates}/order_total.sms.j2: line 1: undefined variable 'order.currency' "
        "(campaign 'templates' has a date or idle trigger: there is no order)",
        f"{templates}/ssti.sms.j2: line 1: not allowed: access to attribute '__class__' of "
        "'str' object is unsafe.",
        f"{templates}/ssti.sms.j2: line 2: undefined variable 'cycler'",
        f"{templates}/ssti.sms.j2: line 3: undefined variable 'customer.nickname'",
        f"{e}: $.id: campaign id 'ssti-again' is also used by {d}",
        f"{e}: $.steps[0].template: no email template 'checkin' (expected "
        f"{templates}/checkin.email.j2)",
    ]
    assert out.splitlines() == [
        f"{templates}/unused.sms.j2: line 1: warning: syntax error: unexpected end of "
        "template, expected 'end of print statement'. (no campaign validated here uses "
        "'unused' yet)"]
    # the same run twice gives the same lines
    assert run(capsys, "validate", str(folder), "--templates", str(templates))[2] == err


def test_a_template_used_by_several_campaigns_is_reported_once(
        capsys: pytest.CaptureFixture[str], folders: tuple[Path, Path]) -> None:
    files = {f"{n}.json": {**BASE, "id": n, "steps": [{**STEP, "template": "adv"}]}
             for n in ("a", "b", "c")}
    code, err, _ = validate(capsys, folders, files, {"adv.sms.j2": "Hi {{ customer.nick }}"})
    assert code == 1
    assert err == [f"{folders[1]}/adv.sms.j2: line 1: undefined variable 'customer.nick'"]


def test_a_refused_campaign_still_reports_its_missing_templates_and_rules(
        capsys: pytest.CaptureFixture[str], folders: tuple[Path, Path]) -> None:
    data = {**BASE, "name": "", "audience": {"days_since": []},
            "steps": [{**STEP, "channel": "email"}],
            "variants": [{"id": "v", "weight": 1, "templates": {"s1": "nope"}}]}
    code, err, _ = validate(capsys, folders, {"a.json": data})
    a = f"{folders[0]}/a.json"
    assert code == 1
    assert err == [
        f"{a}: $.name: should not be empty",
        f"{a}: $.audience.days_since: 'days_since' takes 1 argument(s), got 0",
        f"{a}: $.steps[0].template: no email template 'checkin' (expected "
        f"{folders[1]}/checkin.email.j2)",
        f"{a}: $.variants[0].templates.s1: no email template 'nope' (expected "
        f"{folders[1]}/nope.email.j2)",
    ]


def test_broken_copies_of_one_campaign_each_get_only_their_own_problem(
        capsys: pytest.CaptureFixture[str], folders: tuple[Path, Path]) -> None:
    """A folder of broken variants of one campaign (same id): one line per file, as the
    ids of refused campaigns are not compared."""
    files = {"a.json": {**BASE, "priority": -1}, "b.json": {**BASE, "dealy": 1},
             "c.json": {**BASE, "audience": {"frob": 1}}}
    code, err, _ = validate(capsys, folders, files)
    assert code == 1
    assert [line.split(": ", 1)[1] for line in err] == [
        "$.priority: should be at least 0; got -1",
        "$.dealy: unknown field (check the spelling; see campaigns/schema.json)",
        "$.audience.frob: unknown operator 'frob'"]


def test_the_python_name_of_schema_is_not_a_field(
        capsys: pytest.CaptureFixture[str], folders: tuple[Path, Path]) -> None:
    """Before: `"schema_": "..."` was accepted silently (pydantic's populate_by_name)."""
    code, err, _ = validate(capsys, folders, {"a.json": {**BASE, "schema_": "./schema.json"}})
    assert (code, err) == (1, [f"{folders[0]}/a.json: $.schema_: unknown field: did you "
                                "mean '$schema'? (see campaigns/schema.json)"])
    code, err, _ = validate(capsys, folders, {"a.json": {**BASE, "$schema": 5}})
    assert err == [f"{folders[0]}/a.json: $['$schema']: should be a string, not a number"]
    code, err, _ = validate(capsys, folders, {"a.json": {"$schema": "./schema.json", **BASE}})
    assert (code, err) == (0, [])


def test_a_shell_glob_that_includes_schema_json_validates(
        capsys: pytest.CaptureFixture[str]) -> None:
    """`aftercare validate campaigns/*.json`: schema.json used to fail as a campaign."""
    files = sorted(str(p) for p in (ROOT / "campaigns").glob("*.json"))
    code, out, err = run(capsys, "validate", *files, "--templates", str(ROOT / "templates"))
    assert (code, err) == (0, "")
    assert f"{ROOT}/campaigns/schema.json: $: warning: a JSON Schema, not a campaign: " \
           "skipped" in out and "ok: 7 campaign(s) valid" in out


def test_a_missing_path_does_not_hide_the_problems_of_the_others(
        capsys: pytest.CaptureFixture[str], folders: tuple[Path, Path]) -> None:
    (folders[0] / "a.json").write_text(json.dumps({**BASE, "dealy": 1}))
    code, _, err = run(capsys, "validate", "/nonexistent/x.json", str(folders[0]),
                       "--templates", str(folders[1]))
    assert code == 1
    assert err.splitlines() == [
        "/nonexistent/x.json: $: no such file or folder",
        f"{folders[0]}/a.json: $.dealy: unknown field (check the spelling; see "
        "campaigns/schema.json)"]


@pytest.mark.parametrize("key", ["a\nb", "a\u2028b", "x\x85y"])
def test_a_problem_is_one_line_whatever_the_key(
        capsys: pytest.CaptureFixture[str], folders: tuple[Path, Path], key: str) -> None:
    data = {**BASE, key: 1, "audience": {"and": [{key: 1}]}}
    code, err, _ = validate(capsys, folders, {"a.json": data})
    assert code == 1 and len(err) == 2, err
    assert all(len(line.splitlines()) == 1 for line in err)


# ----------------------------------------------------------------------- rules


@pytest.mark.parametrize(("rule", "expected"), [
    ({"var": "custmer.tier"}, ["$.var: 'var' reads 'custmer.tier', but a rule sees only "
                               "'customer', 'event' and 'now' (did you mean 'customer'?)"]),
    ({">": [{"var": ["order_count", 0]}, 1]},
     ["$['>'][0].var[0]: 'var' reads 'order_count', but a rule sees only 'customer', 'event' "
      "and 'now' (e.g. 'customer.order_count')"]),
    ({"val": ["tier"]}, ["$.val[0]: 'val' reads 'tier', but a rule sees only 'customer', "
                         "'event' and 'now' (e.g. 'customer.tier')"]),
    ({"some": [{"var": "evnt.order.items"}, {"==": [{"var": "category"}, "x"]}]},
     ["$.some[0].var: 'var' reads 'evnt.order.items', but a rule sees only 'customer', "
      "'event' and 'now' (did you mean 'event'?)"]),
])
def test_a_var_outside_the_context_is_a_typo(rule: Any, expected: list[str]) -> None:
    assert [str(e) for e in lint_rule(rule)] == expected


@pytest.mark.parametrize("rule", [
    {"var": "customer.order_count"}, {"var": ""}, {"var": "now"}, {"var": ["event.x", 1]},
    {"map": [{"var": "customer.products"}, {"var": ""}]},
    {"filter": [{"var": "event.order.items"}, {"==": [{"var": "category"}, "x"]}]},
    {"reduce": [{"var": "customer.products"}, {"+": [{"var": "accumulator"}, 1]},
                {"var": "customer.order_count"}]},
    {"try": [{"throw": "x"}, {"var": "type"}]}, {"val": [[1], "index"]},
    {"val": ["customer", "tier"]}, {"preserve": {"var": "anything"}},
])
def test_context_paths_and_item_scopes_are_not_flagged(rule: Any) -> None:
    assert lint_rule(rule) == []


def test_a_var_typo_is_reported_with_the_compile_errors(
        capsys: pytest.CaptureFixture[str], folders: tuple[Path, Path]) -> None:
    rule = {"and": [{">": [{"var": "custmer.order_count"}, 1]}, {">=": [1]}, {"var": ["a", 1, 2]}]}
    code, err, _ = validate(capsys, folders, {"a.json": {**BASE, "audience": rule}})
    a = f"{folders[0]}/a.json"
    assert code == 1
    assert err == [
        f"{a}: $.audience.and[1]['>=']: '>=' takes at least 2 argument(s), got 1",
        f"{a}: $.audience.and[2].var: 'var' takes a path and an optional default",
        f"{a}: $.audience.and[0]['>'][0].var: 'var' reads 'custmer.order_count', but a rule "
        "sees only 'customer', 'event' and 'now' (did you mean 'customer'?)",
    ]


CUSTOMER = {"id": "c-42", "order_count": 3, "total_spent": 412.5, "currency": "USD",
            "timezone": "America/New_York", "locale": "en-US", "birthday": "1992-02-29",
            "first_order_at": "2025-11-02T15:04:00Z", "last_order_at": "2026-02-27T10:00:00Z",
            "attributes": {"tier": "gold", "warranty_ends": "2026-03-10"}}


@pytest.mark.parametrize(("rule", "now", "expected"), [
    # the examples of docs/rules.md, on the documented context
    ({">": [{"days_since": [{"var": "customer.last_order_at"}]}, 120]},
     "2026-03-01T14:02:00Z", False),
    ({">": [{"days_since": [{"var": "customer.last_order_at"}]}, 120]},
     "2026-07-01T14:02:00Z", True),
    ({"<=": [0, {"??": [{"days_until": [{"var": "customer.attributes.warranty_ends"}]}, -1]},
             14]}, "2026-03-01T14:02:00Z", True),
    ({">=": [{"years_since": [{"var": "customer.first_order_at"}]}, 2]},
     "2027-11-02T15:04:00Z", True),
    ({">=": [{"years_since": [{"var": "customer.first_order_at"}]}, 2]},
     "2027-11-01T23:59:00Z", False),
    # 29 February in a common year is celebrated on the 28th, in the customer's zone:
    # 28 Feb 2027 22:00 in New York is 1 March 03:00 UTC
    ({"is_anniversary": [{"var": "customer.birthday"}, {"var": "customer.timezone"}]},
     "2027-03-01T03:00:00Z", True),
    ({"is_anniversary": [{"var": "customer.birthday"}, "UTC"]}, "2027-03-01T03:00:00Z", False),
    ({"is_anniversary": [{"var": "customer.birthday"}, "Asia/Tokyo"]},
     "2027-02-27T15:00:00Z", True),
    # the date itself is not an anniversary; an unknown zone is UTC
    ({"is_anniversary": ["2026-03-01", "UTC"]}, "2026-03-01T12:00:00Z", False),
    ({"is_anniversary": ["2025-03-01", {"var": "customer.attributes.tier"}]},
     "2026-03-01T00:30:00Z", True),
    # a purchase counts on its local date: 3 Nov 02:00 UTC is 2 Nov in Los Angeles
    ({"is_anniversary": ["2025-11-03T02:00:00Z", "America/Los_Angeles"]},
     "2026-11-02T20:00:00Z", True),
    ({"contains_any": [["appliance"], ["kitchen", "coffee"]]}, "2026-03-01T00:00:00Z", False),
    ({"contains_any": ["coffee", ["kitchen", "coffee"]]}, "2026-03-01T00:00:00Z", True),
])
def test_documented_domain_operators(rule: Any, now: str, expected: bool) -> None:
    assert compile_rule(rule)({"customer": CUSTOMER, "now": now}) is expected


# ------------------------------------------------------------------- templates


@pytest.mark.parametrize(("locale", "expected"), [
    # the table of docs/templates.md (value 2026-03-01T14:02:00Z, customer in New York)
    ("es", "129,50 US$|129,50 €|1.500 JPY|1 mar 2026|1 de marzo de 2026|1/3/26, 9:02"),
    ("es-MX", "USD 129.50|EUR 129.50|JPY 1,500|1 mar 2026|1 de marzo de 2026|"
              "01/03/26, 9:02 a.m."),
    ("de-DE", "129,50 $|129,50 €|1.500 ¥|01.03.2026|1. März 2026|01.03.26, 09:02"),
    ("ja", "$129.50|€129.50|￥1,500|2026/03/01|2026年3月1日|2026/03/01 9:02"),
    ("pt-BR", "US$ 129,50|€ 129,50|JP¥ 1.500|1 de mar. de 2026|1 de março de 2026|"
              "01/03/2026 09:02"),
    ("en-GB", "US$129.50|€129.50|JP¥1,500|1 Mar 2026|1 March 2026|01/03/2026, 09:02"),
])
def test_money_and_dates_per_locale(locale: str, expected: str) -> None:
    """Before: es-MX gave `USD129.50` (Babel leaves out CLDR's currency spacing)."""
    source = ("{{ 129.5|money('USD') }}|{{ 129.5|money('EUR') }}|{{ 1500|money('JPY') }}|"
              "{{ when|date }}|{{ when|date('long') }}|{{ when|datetime('short') }}")
    context = {**SAMPLE_CONTEXT, "when": "2026-03-01T14:02:00Z"}
    assert sms(source, context, locale, name=f"m.{locale}.sms.j2") == expected


def test_the_docs_locale_table_matches_the_filters() -> None:
    text = (ROOT / "docs" / "templates.md").read_text()
    rows = re.findall(r"^\| `([a-z]{2}(?:-[A-Z]{2})?)`(?: / `[^`]+`)? \| (.+) \|$", text, re.M)
    assert len(rows) == 4
    source = ("{{ 129.5|money('USD') }}|{{ 129.5|money('EUR') }}|{{ 1500|money('JPY') }}|"
              "{{ when|date }}|{{ when|date('long') }}|{{ when|datetime('short') }}")
    context = {**SAMPLE_CONTEXT, "when": "2026-03-01T14:02:00Z"}
    for locale, cells in rows:
        documented = [cell.strip().strip("`") for cell in cells.split("|")]
        body = sms(source, context, locale, name=f"m.{locale}.sms.j2")  # plain spaces
        assert body.split("|") == documented, locale


def test_a_currency_code_symbol_is_spaced_from_the_number() -> None:
    assert sms("{{ 5|money('CHF') }} {{ -5|money('CHF') }}", locale="en-GB",
               name="m.en-GB.sms.j2") == "CHF 5.00 -CHF 5.00"
    assert sms("{{ 5|money('CHF') }}", locale="de-DE", name="m.de.sms.j2") == "5,00 CHF"
    assert sms("{{ 5|money('USD') }}") == "$5.00"


@pytest.mark.parametrize("amount", ["'NaN'", "'Infinity'", "'-inf'", "'1e400'", "'sNaN'"])
def test_money_refuses_what_is_not_an_amount(amount: str) -> None:
    """Before: `$NaN.00`, `$∞`, or a bare `InvalidOperation`."""
    error = failure("{{ " + amount + "|money }}", SAMPLE_CONTEXT)
    assert "money expects a finite amount" in error.message


def test_date_of_a_time_without_offset_is_utc_and_a_basic_date_is_a_day() -> None:
    """Before: a naive datetime was not moved to the customer's zone by |date (but was by
    |datetime), and `20260301` was midnight UTC, shown as 28 February in New York."""
    context = {**SAMPLE_CONTEXT, "a": "2026-03-01T03:00:00", "b": "20260301"}
    assert sms("{{ a|date }} / {{ a|datetime('short') }} / {{ b|date }}", context) == (
        "Feb 28, 2026 / 2/28/26, 10:00 PM / Mar 1, 2026")


@pytest.mark.parametrize(("source", "expected"), [
    ("x\n{{ '2026-03-01'|date('d MMM, h a') }}",
     "|date: cannot format with pattern 'd MMM, h a': it asks for a time of day: use "
     "|datetime"),
    ("x\n{{ '2026-03-01'|date(5) }}", "|date: the format must be 'short', 'medium', 'long', "
                                       "'full' or a pattern such as 'd MMM y', got 5"),
    ("x\n{{ '2026-03-01'|datetime(tz='') }}",
     "|datetime: unknown timezone '' (use an IANA name such as 'Europe/Berlin')"),
    ("x\n{{ '0001-01-01T00:00:00+14:00'|date }}",
     "|date: the date is out of range in this timezone"),
    ("x\n{{ customer|money }}", "|money expects a number, got {'id': 'c-42', 'name': 'Ana "
                                "Souza', 'email': 'ana@example..."),
])
def test_filter_errors_say_what_is_wrong(source: str, expected: str) -> None:
    """Before: `AttributeError: 'datetime.date' object has no attribute 'hour'` and the like."""
    error = failure(source, SAMPLE_CONTEXT)
    assert (error.line, error.message) == (2, expected)


@pytest.mark.parametrize(("source", "line", "expected"), [
    ("Hi {{ customer.name }}", 1,
     "'customer.name' is null (empty for this customer) and cannot be printed: give a "
     "fallback with customer.name|default(\"...\") or test it with {% if customer.name %}"),
    ("x\n{{ 'Hi ' ~ customer.name }}", 2,
     "'customer.name' is null (empty for this customer) and cannot be joined with '~': give "
     "a fallback with customer.name|default(\"...\") or test it with {% if customer.name %}"),
    ("{{ customer.name|upper }}", 1,
     "'customer.name' is null (empty for this customer) and cannot be given to |upper: give "
     "a fallback with customer.name|default(\"...\") or test it with {% if customer.name %}"),
    ("{{ customer.get('name') }}", 1,
     "a value is null (empty for this customer) and cannot be printed: give a fallback with "
     "|default(\"...\") or test it with {% if %}"),
    ("x\ny {{ customer.birthday|date('long') }}", 2,
     "|date: expected a date, a datetime or an ISO 8601 string, got null (empty) "
     "('customer.birthday' is empty for this customer: test it with "
     "{% if customer.birthday %})"),
])
def test_a_value_the_customer_lacks_is_an_error_not_the_text_none(
        source: str, line: int, expected: str) -> None:
    """Before: `Hi None` was sent (render_context gives lacking profile fields as null)."""
    error = failure(source, lacking(name=None, birthday=None))
    assert (error.line, error.message) == (line, expected)


def test_default_replaces_null_and_null_can_be_tested() -> None:
    """Before: `{{ customer.email|default('x') }}` printed `None`."""
    context = lacking(name=None, email=None)
    assert sms("{{ customer.email|default('no email') }}|{{ customer.name|d('you') }}|"
               "{{ customer.name|first_name('there') }}|"
               "{% if customer.email %}e{% else %}-{% endif %}|"
               "{{ customer.attributes.tier|default('member', true) }}", context) == (
        "no email|you|there|-|gold")


def test_a_printed_list_with_an_undefined_value_is_an_error() -> None:
    """Before: `{{ order['items']|map(attribute='nmae')|list }}` printed `[Undefined]`."""
    source = "x\n{{ order['items']|map(attribute='nmae')|list }}"
    problems = validate_templates({"a.sms.j2": source}, sample_contexts=[SAMPLE_CONTEXT])
    assert [(p.line, p.message.split(" (")[0]) for p in problems] == [
        (2, "undefined variable 'nmae'")]
    assert "__class__" in failure("{{ order['items']|groupby('__class__') }}",
                                  SAMPLE_CONTEXT).message


def test_combining_accents_are_composed_before_they_cost_ucs2() -> None:
    body = sms("Cafe\u0301 {{ customer.name }}")
    assert body == "Caf\u00e9 Ana Souza"
    assert sms_encoding_info(body) == ("GSM-7", 1, 14)


def test_template_problems_say_why_a_variable_is_missing_for_this_campaign(
        capsys: pytest.CaptureFixture[str], folders: tuple[Path, Path]) -> None:
    data = {**BASE, "trigger": {"date": "customer.birthday"},
            "steps": [{**STEP, "template": "q"}, {**STEP, "id": "s2", "template": "o"}]}
    templates = {"q.sms.j2": "Q: {{ survey.question }}", "o.sms.j2": "{{ order.id }}"}
    code, err, _ = validate(capsys, folders, {"a.json": data}, templates)
    assert code == 1
    assert err == [
        f"{folders[1]}/o.sms.j2: line 1: undefined variable 'order.id' (campaign 'x' has a "
        "date or idle trigger: there is no order)",
        f"{folders[1]}/q.sms.j2: line 1: undefined variable 'survey.question' (step 's1' of "
        "campaign 'x' has no 'survey': test it with {% if survey %})",
    ]


def test_templates_no_campaign_uses_are_checked_as_warnings(
        capsys: pytest.CaptureFixture[str], folders: tuple[Path, Path]) -> None:
    code, err, out = validate(capsys, folders, {"a.json": BASE},
                              {"spare.email.j2": "{% block subject %}x{% endblock %}"})
    assert (code, err) == (0, [])
    assert out == [f"{folders[1]}/spare.email.j2: $: warning: missing {{% block html %}} "
                   "(no campaign validated here uses 'spare' yet)", "ok: 1 campaign(s) valid"]


# --------------------------------------------------------------------- preview


def test_preview_shows_every_step_and_both_email_parts(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], folders: tuple[Path, Path]) -> None:
    """Before: preview stopped at the first step that failed, and never showed the HTML."""
    campaigns, templates = folders
    (templates / "hello.sms.j2").write_text("Hi {{ customer.name }}")
    data = {**BASE, "steps": [{**STEP, "template": "hello"},
                              {**STEP, "id": "s2", "channel": "email",
                               "template": "loyalty_offer"}]}
    (campaigns / "a.json").write_text(json.dumps(data))
    customer = tmp_path / "cust.json"
    customer.write_text(json.dumps({"id": "c-1", "timezone": "Mars/Base"}))
    code, out, err = run(capsys, "preview", str(campaigns / "a.json"), "--customer",
                         str(customer), "--templates", str(templates))
    assert code == 1
    assert err.splitlines() == [
        f"{customer}: $.timezone: warning: unknown timezone 'Mars/Base'; dates and times are "
        "shown in the default timezone (DEFAULT_TIMEZONE), as they would be sent",
        f"{templates}/hello.sms.j2: line 1: 'customer.name' is null (empty for this customer) "
        "and cannot be printed: give a fallback with customer.name|default(\"...\") or test "
        "it with {% if customer.name %}",
    ]
    assert "--- step s2: email" in out and "Subject: Friend, 10% off your next order" in out
    assert "[HTML part]\n<p>Hi there,</p>" in out
    assert "Hi there,\n\nThree orders in" in out  # the text part


def test_preview_of_a_long_emoji_sms_counts_ucs2_segments(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], folders: tuple[Path, Path]) -> None:
    campaigns, templates = folders
    (templates / "long.sms.j2").write_text("\U0001f600" * 101)  # 202 UTF-16 units
    (campaigns / "a.json").write_text(json.dumps({**BASE, "steps": [{**STEP,
                                                                     "template": "long"}]}))
    customer = tmp_path / "cust.json"
    customer.write_text("{}")
    code, out, _ = run(capsys, "preview", str(campaigns / "a.json"), "--customer",
                       str(customer), "--templates", str(templates))
    assert code == 0
    assert ("[long.sms.j2: UCS-2, 202 units (101 chars), 4 segment(s) WARNING: more than 3 "
            "segments]") in out


def test_a_campaign_pointing_at_the_meta_schema_is_still_validated(
        capsys: pytest.CaptureFixture[str], folders: tuple[Path, Path]) -> None:
    data = {"$schema": "https://json-schema.org/draft/2020-12/schema", **BASE, "dealy": 1}
    code, err, _ = validate(capsys, folders, {"a.json": data})
    assert (code, err) == (1, [f"{folders[0]}/a.json: $.dealy: unknown field (check the "
                                "spelling; see campaigns/schema.json)"])


def test_a_shared_partial_problem_is_reported_once(
        capsys: pytest.CaptureFixture[str], folders: tuple[Path, Path]) -> None:
    (folders[1] / "partials").mkdir()
    templates = {"partials/footer.j2": "x\n{{ customer.nick }}",
                 "used.sms.j2": "Hi {% include 'partials/footer.j2' %}",
                 "spare.sms.j2": "Yo {% include 'partials/footer.j2' %}"}
    code, err, out = validate(capsys, folders, {"a.json": {**BASE, "steps": [
        {**STEP, "template": "used"}]}}, templates)
    assert code == 1
    assert err == [f"{folders[1]}/partials/footer.j2: line 2: undefined variable "
                   "'customer.nick'"]
    assert not any("footer" in line for line in out), out


def test_too_many_steps_is_one_problem_not_one_per_step(
        capsys: pytest.CaptureFixture[str], folders: tuple[Path, Path]) -> None:
    steps = [{**STEP, "id": f"s{i}", "template": "nope", "condition": {"frob": 1}}
             for i in range(1000)]
    code, err, _ = validate(capsys, folders, {"a.json": {**BASE, "steps": steps}})
    assert code == 1
    assert err[0].endswith("$.steps: should have at most 20 items; it has 1000")
    assert len(err) == 41  # the first 20 steps: their rule and their template
