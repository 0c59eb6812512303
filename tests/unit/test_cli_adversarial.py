"""Hostile and malformed input to `aftercare validate` and `aftercare preview`.

Every case must end with exit code 1 and one `file: json.path: message` line per
problem on stderr: never a traceback, never a silent "ok", never a hang.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from chalicelib.cli.main import main
from tests.conftest import ROOT

STEP = {"id": "s1", "after": "P2D", "channel": "sms", "template": "checkin"}
BASE: dict[str, Any] = {"id": "x", "name": "X", "trigger": {"event": "order.delivered"},
                        "steps": [STEP]}
CUSTOMER = {"id": "c-1", "name": "Ann Lee", "locale": "en-US", "timezone": "America/New_York"}


def campaign(**changes: Any) -> dict[str, Any]:
    data = json.loads(json.dumps(BASE))
    data.update(changes)
    return data


def step(**changes: Any) -> dict[str, Any]:
    return {**STEP, **changes}


def validate(folders: tuple[Path, Path], capsys: pytest.CaptureFixture[str],
             content: Any, templates: dict[str, str | bytes] | None = None) -> list[str]:
    """Write one campaign file (and templates), validate, return the error lines."""
    campaigns, template_dir = folders
    file = campaigns / "a.json"
    if isinstance(content, bytes):
        file.write_bytes(content)
    else:
        file.write_text(content if isinstance(content, str) else json.dumps(content))
    for name, source in (templates or {}).items():
        target = template_dir / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(source, bytes):
            target.write_bytes(source)
        else:
            target.write_text(source)
    started = time.monotonic()
    code = main(["validate", str(campaigns), "--templates", str(template_dir)])
    assert time.monotonic() - started < 10
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line]
    assert code == (1 if lines else 0), lines
    return lines


def only(lines: list[str], *expected: str) -> str:
    """The single problem line, checked to contain every expected fragment."""
    assert len(lines) == 1, lines
    for fragment in expected:
        assert fragment in lines[0], lines
    return lines[0]


# ------------------------------------------------------------- JSON documents


def test_a_byte_order_mark_is_accepted(folders: tuple[Path, Path],
                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert validate(folders, capsys, b"\xef\xbb\xbf" + json.dumps(BASE).encode()) == []


@pytest.mark.parametrize(("content", "expected"), [
    (b"", "a.json: $: the file is empty: it should hold one JSON object"),
    (b"[1, 2]", "a.json: $: a campaign must be a JSON object, not an array"),
    (b"null", "a.json: $: a campaign must be a JSON object, not null"),
    (json.dumps(BASE).replace("X", "Caf\u00e9").encode("latin-1"),
     "a.json: line 1 column 25: not UTF-8 text (byte 0xe9)"),
    (b'{"id": ' + b"[" * 5000 + b"]" * 5000 + b"}", "a.json: $: invalid JSON: nested too deeply"),
    (b'{"priority": ' + b"9" * 5000 + b"}",
     "a.json: $.priority: invalid JSON: a number has too many digits"),
    (b'{"holdout_percent": NaN}',
     "a.json: $.holdout_percent: invalid JSON: NaN is not a JSON value"),
    (b'{"holdout_percent": -Infinity}',
     "a.json: $.holdout_percent: invalid JSON: -Infinity is not a JSON"),
    (json.dumps(BASE).replace('"name"', '"id": "y", "name"').encode(),
     "a.json: $.id: key 'id' appears more than once in this object"),
    (json.dumps(campaign(steps=[step()])).replace('"after"', '"after": "P1D", "after"').encode(),
     "a.json: $.steps[0].after: key 'after' appears more than once"),
])
def test_malformed_documents_are_one_line_each(
        folders: tuple[Path, Path], capsys: pytest.CaptureFixture[str],
        content: bytes, expected: str) -> None:
    only(validate(folders, capsys, content), expected)


def test_a_file_named_twice_is_not_its_own_duplicate(
        capsys: pytest.CaptureFixture[str]) -> None:
    one = str(ROOT / "campaigns" / "birthday.json")
    code = main(["validate", str(ROOT / "campaigns"), one, one,
                 "--templates", str(ROOT / "templates")])
    out = capsys.readouterr()
    assert code == 0 and out.err == "" and "ok: 7 campaign(s) valid" in out.out


def test_two_files_with_one_campaign_id_are_refused(
        folders: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    (folders[0] / "b.json").write_text(json.dumps(BASE))
    only(validate(folders, capsys, BASE), "b.json: $.id: campaign id 'x' is also used by")


def test_a_folder_without_campaigns_is_an_error(
        folders: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    campaigns, templates = folders
    (campaigns / "notes.yaml").write_text("id: x\n")
    assert main(["validate", str(campaigns), "--templates", str(templates)]) == 1
    only(capsys.readouterr().err.splitlines(), "c: $: no campaign files (*.json) in this folder")


# ------------------------------------------------------------------ the model


@pytest.mark.parametrize(("changes", "expected"), [
    ({"holdout_percent": "10"}, "$.holdout_percent: should be a number, not a string; got \"10\""),
    ({"holdout_percent": True}, "$.holdout_percent: should be a number, not a boolean; got true"),
    ({"holdout_percent": 150}, "$.holdout_percent: should be at most 50; got 150"),
    ({"holdout_percent": -1}, "$.holdout_percent: should be at least 0; got -1"),
    ({"priority": 100.5}, "$.priority: should be a whole number; got 100.5"),
    ({"priority": "100"}, "$.priority: should be a whole number, not a string; got \"100\""),
    ({"steps": [step(), step()]}, "$.steps[1].id: duplicate step id 's1' (also $.steps[0].id)"),
    ({"variants": [{"id": "a", "weight": 1}, {"id": "a", "weight": 1}]},
     "$.variants[1].id: duplicate variant id 'a'"),
    ({"variants": [{"id": "a", "weight": 0}]}, "$.variants[0].weight: should be at least 1; got 0"),
    ({"variants": [{"id": "a", "weight": 1, "templates": {"nope": "checkin"}}]},
     "$.variants[0].templates.nope: variant 'a' names unknown step 'nope'"),
    ({"reentry": {"policy": "once_per_window"}}, "$.reentry: policy 'once_per_window' needs"),
    ({"reentry": {"policy": "once", "window": "P30D"}},
     "$.reentry.window: 'window' applies only to policy 'once_per_window', not 'once'"),
    ({"reentry": {"policy": "once_per_window", "window": "PT0S"}},
     "$.reentry.window: duration 'PT0S' must be longer than zero"),
    ({"goal": {"event": "order.placed", "within": "P0D"}}, "$.goal.within: duration 'P0D' must"),
    # (the birthday template: the check-in's, which reads the order, would also be
    # reported, as an idle campaign has no order)
    ({"trigger": {"idle": "PT0S"}, "steps": [step(template="birthday")]},
     "$.trigger.idle: duration 'PT0S' must be longer than zero"),
    ({"steps": [step(expire_after="PT0S")]}, "$.steps[0].expire_after: duration 'PT0S' must"),
    ({"trigger": {"date": "customer.birthday"}, "reentry": {"policy": "once"},
      "steps": [step(template="birthday")]}, "$.reentry: reentry applies to event triggers only"),
    ({"steps": [step(weekdays=["Funday"])]}, "$.steps[0].weekdays[0]: should be 'mon'"),
    ({"steps": [step(at="25:00")]},
     "$.steps[0].at: should be a local time HH:MM, 00:00 to 23:59; got \"25:00\""),
    ({"steps": [step(channel="fax")]},
     "$.steps[0].channel: should be 'sms' or 'email'; got \"fax\""),
])
def test_model_problems_point_at_the_field(
        folders: tuple[Path, Path], capsys: pytest.CaptureFixture[str],
        changes: dict[str, Any], expected: str) -> None:
    only(validate(folders, capsys, campaign(**changes)), f"a.json: {expected}")


@pytest.mark.parametrize(("after", "expected"), [
    ("P", "invalid ISO 8601 duration 'P'"),
    ("PT", "invalid ISO 8601 duration 'PT'"),
    ("P1DT", "invalid ISO 8601 duration 'P1DT'"),
    ("P1Y", "months and years have no fixed length"),
    ("P1M", "months and years have no fixed length"),
    ("-P1D", "durations cannot be negative"),
    ("P-1D", "durations cannot be negative"),
    ("PT-2H", "durations cannot be negative"),
    ("P1.5D", "whole numbers only"),
    ("P\u0661D", "invalid ISO 8601 duration"),  # an Arabic-Indic digit is not 0-9
    ("P3661D", "is too long (at most 3660 days)"),
    ("P99999999999D", "is too long (at most 3660 days)"),
    ("P300000000W", "is too long (at most 3660 days)"),
    ("P" + "9" * 5000 + "D", "is too long (at most 3660 days)"),
])
def test_bad_durations_are_refused(folders: tuple[Path, Path], capsys: pytest.CaptureFixture[str],
                                   after: str, expected: str) -> None:
    line = only(validate(folders, capsys, campaign(steps=[step(after=after)])),
                "a.json: $.steps[0].after: ", expected)
    assert len(line) < 400  # a 5000-digit value is not echoed in full


@pytest.mark.parametrize("after", ["PT0S", "P0D", "P1W2D", "PT25H", "P1DT12H", "P3660D"])
def test_good_durations_pass(folders: tuple[Path, Path], capsys: pytest.CaptureFixture[str],
                             after: str) -> None:
    assert validate(folders, capsys, campaign(steps=[step(after=after)])) == []


@pytest.mark.parametrize(("audience", "expected"), [
    ("customer.order_count > 1", "$.audience: a rule must be a JSON Logic operation"),
    ([1, 2], "$.audience: a rule must be a JSON Logic operation"),
    ({}, "$.audience: an empty object is not a rule"),
    ({"days_since": ["2026-02-30"]}, "$.audience.days_since[0]: 'days_since' needs a date"),
    ({"is_anniversary": [{"var": "customer.birthday"}, "Europe/Pariss"]},
     "$.audience.is_anniversary[1]: 'is_anniversary' needs an IANA timezone"),
    ({"var": ["a", "b", "c"]}, "$.audience.var: 'var' takes a path and an optional default"),
    ({"==": [1]}, "$.audience['==']: '==' takes at least 2 argument(s), got 1"),
    ({"in": 1}, "$.audience.in: 'in' takes an array of arguments"),
    ({"days_since": []}, "$.audience.days_since: 'days_since' takes 1 argument(s), got 0"),
    ({"days_since": [1, 2, 3]}, "$.audience.days_since: 'days_since' takes 1 argument(s), got 3"),
])
def test_bad_rules_are_refused(folders: tuple[Path, Path], capsys: pytest.CaptureFixture[str],
                               audience: Any, expected: str) -> None:
    only(validate(folders, capsys, campaign(audience=audience)), f"a.json: {expected}")


@pytest.mark.parametrize("audience", [True, False, {"if": []},
                                      {"days_since": [{"var": "customer.last_order_at"}]},
                                      {"is_anniversary": ["1992-02-29", "UTC"]}])
def test_good_rules_pass(folders: tuple[Path, Path], capsys: pytest.CaptureFixture[str],
                         audience: Any) -> None:
    assert validate(folders, capsys, campaign(audience=audience)) == []


# ------------------------------------------------------------------ templates


def test_a_template_with_only_locale_variants_is_refused(
        folders: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    only(validate(folders, capsys, campaign(steps=[step(template="promo")]),
                  {"promo.es.sms.j2": "Hola"}),
         "$.steps[0].template: no default sms template 'promo'", "found only promo.es.sms.j2")


def test_layouts_and_partials_are_validated_and_bundled(
        folders: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    from chalicelib.config.loader import load_bundles
    from chalicelib.render import load_template_dir

    layout = ("{% block subject %}Hi{% endblock %}{% block html %}<p>{% block body %}"
              "{% endblock %}</p>{% include 'partials/footer.j2' %}{% endblock %}")
    files = {"_layout.email.j2": layout, "partials/footer.j2": "<p>Bye</p>",
             "news.email.j2": "{% extends '_layout.email.j2' %}{% block body %}Hello "
                              "{{ customer.name }}{% endblock %}"}
    data = campaign(steps=[step(channel="email", template="news")])
    assert validate(folders, capsys, data, files) == []
    bundles, _ = load_bundles([folders[0]], load_template_dir(folders[1]))
    assert set(bundles[0].templates) == {"news.email.j2", "_layout.email.j2",
                                         "partials/footer.j2"}
    lines = validate(folders, capsys, data, {"partials/footer.j2": "line 1\n{{ customer.nick }}"})
    only(lines, "t/partials/footer.j2: line 2: undefined variable 'customer.nick'")


def test_a_template_that_is_not_utf8_is_reported(
        folders: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    only(validate(folders, capsys, campaign(steps=[step(template="adv")]),
                  {"adv.sms.j2": b"Hi \xff"}),
         "t/adv.sms.j2: $: not UTF-8 text: byte 0xff at line 1 column 4")


def test_every_undefined_variable_and_unsafe_attribute_is_listed(
        folders: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    source = ("Hi {{ customer.nickname }},\n"
              "{{ ''.__class__.__mro__ }} {{ cycler.__init__.__globals__ }}\n"
              "{% if customer.vip %}VIP{% endif %} {{ customer.attributes.x|default('-') }}\n"
              "{{ order['items'][0].nope }}\n")
    lines = validate(folders, capsys, campaign(steps=[step(template="adv")]),
                     {"adv.sms.j2": source})
    assert lines == [
        f"{folders[1]}/adv.sms.j2: line 1: undefined variable 'customer.nickname'",
        f"{folders[1]}/adv.sms.j2: line 2: not allowed: access to attribute '__class__' of "
        "'str' object is unsafe.",
        f"{folders[1]}/adv.sms.j2: line 2: undefined variable 'cycler'",
        f"{folders[1]}/adv.sms.j2: line 3: undefined variable 'customer.vip'",
        f"{folders[1]}/adv.sms.j2: line 4: undefined variable 'order.items[0].nope'",
    ]


def test_a_date_campaign_template_using_the_order_names_the_variable(
        folders: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    data = campaign(trigger={"date": "customer.birthday"}, steps=[step(template="adv")])
    only(validate(folders, capsys, data, {"adv.sms.j2": "Hi {{ order['items'][0].name }}"}),
         "t/adv.sms.j2: line 1: undefined variable 'order.items'")


@pytest.mark.parametrize(("source", "expected"), [
    ("{{ self }}", "cannot print 'TemplateReference'"),
    ("{{ ''.join }}", "cannot print 'join'"),
    ("{{ config }}{{ request }}", "undefined variable 'config'"),
    ("{{ lipsum.__globals__ }}", "undefined variable 'lipsum'"),
    ("{{ ''|attr('__class__')|attr('__mro__') }}", "access to attribute '__class__'"),
    ("{{ '{0.__class__}'.format(customer) }}", "access to attribute '__class__' of 'dict'"),
    ("{{ customer.name|nosuchfilter }}", "unknown filter 'nosuchfilter'"),
    ("{% include '/etc/passwd' %}", "template '/etc/passwd' not found in the templates folder"),
    ("{% import '../../etc/hosts' as h %}x", "template '../../etc/hosts' not found"),
    ("{% extends '../templates/checkin.sms.j2' %}", "not found in the templates folder"),
    ("{% for i in range(10**9) %}{% endfor %}x", "Range too big"),
    ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}x",
     "the template does too much work"),
    ("{% macro m(n) %}{% if n %}{{ m(n-1) }}{{ m(n-1) }}{% endif %}{% endmacro %}{{ m(40) }}x",
     "the template does too much work"),
    ("{{ '%1000000000s'|format('x') }}", "format width 1000000000 is too large"),
    ("{{ '{0:>1000000000}'.format('x') }}", "format width 1000000000 is too large"),
    ("{{ customer.name|indent(1000000000) }}", "indent width 1000000000 is too large"),
    ("{% set b = 'x' * 99999 %}{{ b.replace('x', b)|length }}", "replace would build a value"),
    ("{% set b = 'x' * 99999 %}{{ ([b] * 99999)|join|length }}", "would build a value too large"),
    ("{% macro m() %}{% for i in range(100000) %}{{ 'x' * 99999 }}{% endfor %}{% endmacro %}"
     "{{ m()|length }}", "a block would render over 1,000,000 characters"),
    ("{{ (10 ** 1000) ** 1000 }}", "the number would be too large"),
    ("{{ 'x'.encode() }}", "access to attribute 'encode' of 'str' object is unsafe"),
])
def test_template_injection_and_runaway_templates_are_refused(
        folders: tuple[Path, Path], capsys: pytest.CaptureFixture[str],
        source: str, expected: str) -> None:
    lines = validate(folders, capsys, campaign(steps=[step(template="adv")]),
                     {"adv.sms.j2": source})
    assert lines and all("t/adv.sms.j2: line 1: " in line for line in lines), lines
    assert expected in lines[0], lines


# -------------------------------------------------------------------- preview


def preview(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["preview", *args, "--campaigns", str(ROOT / "campaigns"),
                 "--templates", str(ROOT / "templates")])
    out = capsys.readouterr()
    assert "Traceback" not in out.err
    return code, out.out, out.err


def write(tmp_path: Path, name: str, content: Any) -> str:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content if isinstance(content, str) else json.dumps(content))
    return str(path)


@pytest.mark.parametrize(("content", "expected"), [
    (b"{oops", "cust.json: line 1 column 2: invalid JSON"),
    (b"[1]", "cust.json: $: the customer must be a JSON object"),
    (b'{"name": "\xff"}', "cust.json: line 1 column 11: not UTF-8 text"),
    (b"[" * 5000 + b"]" * 5000, "cust.json: $: invalid JSON: nested too deeply"),
    (b'{"id": "c", "attributes": [1]}', "cust.json: $.attributes: must be a JSON object"),
])
def test_preview_refuses_a_bad_customer_file(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes,
        expected: str) -> None:
    code, _, err = preview(capsys, "delivery-checkin", "--customer",
                           write(tmp_path, "cust.json", content))
    assert code == 1
    only(err.splitlines(), expected)


def test_preview_accepts_a_bom_and_shows_the_duration_as_written(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    customer = write(tmp_path, "cust.json", b"\xef\xbb\xbf" + json.dumps(CUSTOMER).encode())
    code, out, _ = preview(capsys, "delivery-checkin", "--customer", customer)
    assert code == 0
    assert "--- step checkin: sms after P2D at 10:00 (template checkin)" in out


@pytest.mark.parametrize("locale", ["xx-YY", "../../etc", ""])
def test_preview_refuses_an_unknown_locale(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           locale: str) -> None:
    code, out, err = preview(capsys, "delivery-checkin", "--customer",
                             write(tmp_path, "cust.json", CUSTOMER), "--locale", locale)
    assert code == 1 and out == ""
    only(err.splitlines(), f"--locale: $: unknown locale {locale!r}")


def test_preview_falls_back_for_a_bad_customer_locale(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for bad in (5, "zz-ZZ"):
        customer = write(tmp_path, "cust.json", {**CUSTOMER, "locale": bad})
        code, out, err = preview(capsys, "delivery-checkin", "--customer", customer)
        assert code == 0 and "[checkin.sms.j2: GSM-7" in out
        assert f"$.locale: warning: unknown locale {bad!r}" in err


def test_preview_locale_fallback_chain(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    customer = write(tmp_path, "cust.json", CUSTOMER)
    for locale, expected in (("es_MX", "[checkin.es.sms.j2: UCS-2"),
                             ("fr-FR", "[checkin.sms.j2: GSM-7")):
        code, out, _ = preview(capsys, "delivery-checkin", "--customer", customer,
                               "--locale", locale)
        assert code == 0 and expected in out


def test_preview_finds_a_campaign_by_id_and_refuses_a_folder(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    customer = write(tmp_path, "cust.json", CUSTOMER)
    folder = tmp_path / "c"
    folder.mkdir()
    (folder / "some-file.json").write_text(json.dumps(campaign(id="other-id")))
    code = main(["preview", "other-id", "--customer", customer, "--campaigns", str(folder),
                 "--templates", str(ROOT / "templates")])
    assert code == 0 and "--- step s1: sms after P2D" in capsys.readouterr().out
    code, _, err = preview(capsys, str(ROOT / "campaigns"), "--customer", customer)
    assert code == 1 and "is a folder" in err
    code, _, err = preview(capsys, "no-such-campaign", "--customer", customer)
    assert code == 1
    only(err.splitlines(), "no campaign with id 'no-such-campaign'")


def test_preview_shows_the_customers_variant(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from chalicelib.journeys import keys

    weights = (("ten-percent", 50), ("free-shipping", 50))
    for customer_id in ("c-1", "c-2", "c-3", "c-4"):
        variant = keys.pick_variant("loyalty-offer", customer_id, weights)
        customer = write(tmp_path, "cust.json", {**CUSTOMER, "id": customer_id})
        code, out, _ = preview(capsys, "loyalty-offer", "--customer", customer)
        template = "loyalty_offer_shipping" if variant == "free-shipping" else "loyalty_offer"
        assert code == 0
        assert f"is in variant {variant!r}" in out and f"(template {template})" in out


def test_preview_names_the_variable_a_customer_file_lacks(
        folders: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    campaigns, templates = folders
    (templates / "adv.sms.j2").write_text("Hi {{ customer.attributes.tier|default('x') }}\n"
                                          "{{ customer.nickname }}")
    (campaigns / "a.json").write_text(json.dumps(campaign(steps=[step(template="adv")])))
    customer = write(campaigns.parent, "cust.json", {"id": "c"})
    code = main(["preview", str(campaigns / "a.json"), "--customer", customer,
                 "--templates", str(templates)])
    err = capsys.readouterr().err
    assert code == 1
    only(err.splitlines(), "adv.sms.j2: line 2: undefined variable 'customer.nickname'")


# ------------------------------------------------------------------- simulate


def test_simulate_refuses_a_folder_without_campaigns(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    events = write(tmp_path, "events.jsonl", "")
    (tmp_path / "empty").mkdir()
    code = main(["simulate", "--events", events, "--campaigns", str(tmp_path / "empty"),
                 "--templates", str(ROOT / "templates")])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    only(err.splitlines(), "empty: $: no campaign files (*.json) in this folder")


def test_simulate_table_summary_without_outcomes() -> None:
    import io
    from types import SimpleNamespace

    from chalicelib.cli.output import write_rows

    out = io.StringIO()
    sim = SimpleNamespace(rows=[], events=0, duplicates=0, bad=[], pending=lambda: [])
    write_rows(sim, "table", out)  # type: ignore[arg-type]
    assert out.getvalue().splitlines()[-1] == (
        "0 events (0 duplicates, 0 bad); no outcomes; 0 still pending")


def _simulate(tmp_path: Path, log: bytes, *extra: str) -> tuple[int, str, str]:
    events = tmp_path / "events.jsonl"
    events.write_bytes(log)
    code = main(["simulate", "--events", str(events), "--campaigns", str(ROOT / "campaigns"),
                 "--templates", str(ROOT / "templates"), "--format", "csv", *extra])
    return code, str(events), ""


GOOD_EVENT = {"id": "e1", "type": "order.delivered", "occurred_at": "2026-03-02T15:00:00Z",
              "customer": {"id": "c-1", "timezone": "Europe/Madrid", "email": "a@example.com"},
              "order": {"id": "o-1", "total": 10}}


@pytest.mark.parametrize("workers", ["1", "2"])
def test_simulate_reports_each_bad_line_and_keeps_the_good_ones(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], workers: str) -> None:
    deep = "[" * 30_000 + "]" * 30_000  # under the 64 KB limit
    far = {**GOOD_EVENT, "id": "e9", "occurred_at": "9999-12-31T00:00:00Z"}
    lines = [
        json.dumps(GOOD_EVENT).encode(),
        b'{"id": "e2", "type": "order.placed", "customer": {"id": "\xff\xfe"}}',
        deep.encode(),
        b'{"n": ' + b"9" * 5000 + b"}",
        json.dumps(far).encode(),
        b"[1, 2]",
    ]
    code, events, _ = _simulate(tmp_path, b"\n".join(lines) + b"\n", "--workers", workers)
    captured = capsys.readouterr()
    assert code == 0 and "Traceback" not in captured.err
    problems = captured.err.splitlines()
    assert problems == [
        f"{events}: line 2: $: not UTF-8 text",
        f"{events}: line 3: invalid JSON: nested too deeply",
        f"{events}: line 4: invalid JSON: Exceeds the limit (4300 digits) for integer string "
        "conversion: value has 5000 digits; use sys.set_int_max_str_digits() to increase "
        "the limit",
        f"{events}: line 5: $.occurred_at: year 9999 is outside 1900-2199",
        f"{events}: line 6: $: an event must be a JSON object",
    ]
    assert "c-1,delivery-checkin,-,2026-03-02T15:00:00Z,enrolled" in captured.out


@pytest.mark.parametrize(("extra", "message"), [
    (["--from", "2026-03-01", "--to", "2026-03-01"], "--from/--to: $: --from must be before --to"),
    (["--from", "2026-04-01", "--to", "2026-03-01"], "--from/--to: $: --from must be before --to"),
])
def test_simulate_refuses_an_empty_window(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          extra: list[str], message: str) -> None:
    code, _, _ = _simulate(tmp_path, json.dumps(GOOD_EVENT).encode() + b"\n", *extra)
    err = capsys.readouterr().err
    assert code == 1
    only(err.splitlines(), message)


@pytest.mark.parametrize(("extra", "fragment"), [
    (["--timezone", "Mars/Base"], "not an IANA timezone: 'Mars/Base'"),
    (["--to", "9999-12-31"], "year 9999 is outside 1900-2199"),
    (["--from", "yesterday"], "not an ISO 8601 datetime"),
    (["--workers", "0"], "must be at least 1"),
])
def test_simulate_refuses_bad_options_without_a_traceback(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str],
        fragment: str) -> None:
    with pytest.raises(SystemExit) as exit_:
        _simulate(tmp_path, json.dumps(GOOD_EVENT).encode() + b"\n", *extra)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and fragment in err and "Traceback" not in err


def test_simulate_takes_a_time_without_offset_as_utc(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, _ = _simulate(tmp_path, json.dumps(GOOD_EVENT).encode() + b"\n",
                           "--from", "2026-03-02T14:00:00", "--to", "2026-03-02T16:00:00")
    out = capsys.readouterr().out
    assert code == 0
    assert "c-1,delivery-checkin,-,2026-03-02T15:00:00Z,enrolled" in out
