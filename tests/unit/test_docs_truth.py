"""The README and docs/ held to the code: examples run, names and flags exist.

The mismatches this audit found (first strict xfails) are fixed in the docs; their
tests hold the fixes.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import re
import shutil
import subprocess
import time
from datetime import date
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
README = (ROOT / "README.md").read_text(encoding="utf-8")
API_MD = (DOCS / "api.md").read_text(encoding="utf-8")
CAMPAIGNS_MD = (DOCS / "campaigns.md").read_text(encoding="utf-8")
RULES_MD = (DOCS / "rules.md").read_text(encoding="utf-8")
TEMPLATES_MD = (DOCS / "templates.md").read_text(encoding="utf-8")


def _blocks(lang: str) -> list[tuple[str, int, str]]:
    """Fenced code blocks of one language in README.md and docs/*.md."""
    out = []
    for path in [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]:
        text = path.read_text(encoding="utf-8")
        for m in re.finditer(r"```(\w*)\n(.*?)```", text, re.S):
            if m.group(1) == lang:
                out.append((path.name, text[: m.start()].count("\n") + 1, m.group(2)))
    return out


JSON_BLOCKS = _blocks("json")


def _run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    from chalicelib.cli.main import main

    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


# --- JSON examples --------------------------------------------------------------------


@pytest.mark.parametrize("where,line,body", JSON_BLOCKS,
                         ids=[f"{w}:{n}" for w, n, _ in JSON_BLOCKS])
def test_every_json_block_in_the_docs_is_json(where: str, line: int, body: str) -> None:
    json.loads(body)


def test_campaigns_md_example_campaign_validates_with_the_repo_templates(tmp_path: Path) -> None:
    from chalicelib.config.loader import load_bundles
    from chalicelib.render import load_template_dir

    example = next(b for w, _, b in JSON_BLOCKS if w == "campaigns.md" and '"steps"' in b)
    (tmp_path / "delivery-checkin.json").write_text(example)
    bundles, problems = load_bundles([tmp_path], load_template_dir(ROOT / "templates"))
    assert [p for p in problems if p.severity == "error"] == []
    assert [b.campaign.id for b in bundles] == ["delivery-checkin"]


# Snippets of docs/campaigns.md, wrapped in campaigns/delivery-checkin.json.
def _step(**kw: Any) -> Any:
    return lambda c: c["steps"][0].update(kw)


def _set(**kw: Any) -> Any:
    return lambda c: c.update(kw)


VALID_SNIPPETS = {
    "after P2D": _step(after="P2D"), "after P3W": _step(after="P3W"),
    "after PT6H": _step(after="PT6H"), "after P1DT12H": _step(after="P1DT12H"),
    "after PT0S": _step(after="PT0S"), "after P3660D": _step(after="P3660D"),
    "weekdays": _step(weekdays=["mon", "tue"]), "survey ces": _step(survey="ces"),
    "reentry once_per_window": _set(reentry={"policy": "once_per_window", "window": "P90D"}),
    "reentry always": _set(reentry={"policy": "always"}),
    "holdout 50": _set(holdout_percent=50), "status paused": _set(status="paused"),
    "audience true": _set(audience=True),
    "variant swap": _set(variants=[{"id": "a", "weight": 50},
                                   {"id": "b", "weight": 50, "templates": {"checkin": "nps"}}]),
    "exit events+rule": _set(exit={"event": "order.returned", "events": ["order.cancelled"],
                                   "rule": {"==": [1, 1]}}),
}
REFUSED_SNIPPETS = {
    "dealy typo": (_step(dealy="P1D"), "$.steps[0].dealy", "unknown field"),
    'holdout "10"': (_set(holdout_percent="10"), "$.holdout_percent", "should be a number"),
    "holdout true": (_set(holdout_percent=True), "$.holdout_percent", "should be a number"),
    "holdout 51": (_set(holdout_percent=51), "$.holdout_percent", "50"),
    "months": (_step(after="P1M"), "$.steps[0].after", "months and years"),
    "fraction": (_step(after="P1.5D"), "$.steps[0].after", "P1DT12H"),
    "sign": (_step(after="-P1D"), "$.steps[0].after", "negative"),
    "too long": (_step(after="P3661D"), "$.steps[0].after", "3660 days"),
    "expire zero": (_step(expire_after="PT0S"), "$.steps[0].expire_after", "longer than zero"),
    "goal zero": (_set(goal={"event": "order.placed", "within": "P0D"}), "$.goal.within",
                  "longer than zero"),
    "window w/o once_per_window": (_set(reentry={"policy": "once", "window": "P9D"}),
                                   "$.reentry.window", "once_per_window"),
    "string rule": (_set(audience="customer.tier == 'gold'"), "$.audience", "constant"),
    "empty object rule": (_set(audience={}), "$.audience", "always true"),
    "bad date constant": (_set(audience={"days_since": ["2026-02-30"]}),
                          "$.audience.days_since[0]", "2026-02-30"),
    "unknown zone": (_set(audience={"is_anniversary": [{"var": "customer.birthday"}, "Mars/X"]}),
                     "$.audience.is_anniversary[1]", "IANA"),
    "step id twice": (lambda c: c["steps"].append(copy.deepcopy(c["steps"][0])),
                      "$.steps[1].id", "duplicate step id"),
}


def _campaign(mod: Any) -> dict[str, Any]:
    c: dict[str, Any] = json.loads((ROOT / "campaigns" / "delivery-checkin.json").read_text())
    mod(c)
    return c


@pytest.mark.parametrize("name", sorted(VALID_SNIPPETS))
def test_campaign_snippets_the_docs_allow_validate(name: str) -> None:
    from chalicelib.config.loader import parse_campaign

    campaign, problems = parse_campaign("x.json", _campaign(VALID_SNIPPETS[name]))
    assert campaign is not None, [str(p) for p in problems]


@pytest.mark.parametrize("name", sorted(REFUSED_SNIPPETS))
def test_campaign_snippets_the_docs_refuse_are_refused(name: str) -> None:
    from chalicelib.config.loader import parse_campaign

    mod, path, words = REFUSED_SNIPPETS[name]
    campaign, problems = parse_campaign("x.json", _campaign(mod))
    assert campaign is None
    assert any(p.path == path and words in p.message and p.severity == "error"
               for p in problems), [str(p) for p in problems]


def test_unknown_customer_field_is_a_warning_with_a_hint() -> None:
    from chalicelib.config.loader import parse_campaign

    campaign, problems = parse_campaign(
        "x.json", _campaign(_set(audience={"var": "customer.order_cnt"})))
    assert campaign is not None
    assert [p.severity for p in problems] == ["warning"]
    assert "did you mean 'customer.order_count'" in problems[0].message


def test_duplicate_key_and_bom() -> None:
    from chalicelib.config.loader import decode_json

    raw, problems = decode_json("f", b'\xef\xbb\xbf{"a": 1}')
    assert raw == {"a": 1} and problems == []
    _, problems = decode_json("f", b'{"a": 1, "a": 2}')
    assert "more than once" in problems[0].message


def test_example_campaigns_need_at_most_20_writes_per_event() -> None:
    from chalicelib.cli.main import _load
    from chalicelib.journeys.engine import CampaignSet

    bundles, _ = _load([ROOT / "campaigns"], ROOT / "templates")
    campaigns = CampaignSet(b.compiled() for b in bundles)
    assert max(campaigns.most_writes(t) for t in campaigns.event_types()) == 20


# --- CLI ------------------------------------------------------------------------------

DOCUMENTED_FLAGS = {
    "validate": ["paths", "--templates"],
    "preview": ["campaign", "--customer", "--locale", "--campaigns"],
    "simulate": ["--events", "--campaigns", "--from", "--to", "--format", "--timezone",
                 "--workers"],
    "schema": [],
    "generate": ["--out"],
    "push": ["paths"],
    "import": ["{customers,orders}", "file"],
    "backfill": ["--checkpoint"],
    "erase": ["CUSTOMER_ID", "--file", "--dry-run", "--segments"],
    "suppression-backfill": ["--dry-run", "--segments"],
    "run": ["--speed", "--port"],
    "demo": ["--out"],
}


@pytest.mark.parametrize("command", sorted(DOCUMENTED_FLAGS))
def test_cli_command_has_the_documented_flags(command: str) -> None:
    from chalicelib.cli.main import parser

    sub = next(a for a in parser()._actions if a.dest == "command")
    help_text = sub.choices[command].format_help()  # type: ignore[union-attr]
    for flag in DOCUMENTED_FLAGS[command]:
        assert flag in help_text


def test_cli_defaults_the_docs_state() -> None:
    from chalicelib.cli.main import parser

    p = parser()
    sim = p.parse_args(["simulate", "--events", "x"])
    assert (sim.format, sim.timezone, sim.workers) == ("table", "America/New_York", None)
    assert p.parse_args(["erase", "x"]).segments == 4
    assert p.parse_args(["suppression-backfill"]).segments == 4
    assert p.parse_args(["run"]).speed == 1440 and p.parse_args(["run"]).port == 8000
    assert p.parse_args(["validate"]).paths == [Path("campaigns")]
    with pytest.raises(SystemExit):
        p.parse_args(["erase", "--segments", "65", "x"])


def test_schema_command_equals_checked_in_schema(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run_cli(["schema"], capsys)
    assert code == 0
    assert json.loads(out) == json.loads((ROOT / "campaigns" / "schema.json").read_text())


def test_validate_examples(capsys: pytest.CaptureFixture[str],
                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    code, out, _ = _run_cli(["validate"], capsys)
    assert code == 0 and "ok: 7 campaign(s) valid" in out
    files = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "campaigns").glob("*.json"))
    code, out, _ = _run_cli(["validate", *files], capsys)  # `validate campaigns/*.json`
    assert code == 0 and "campaigns/schema.json: $: warning" in out
    code, _, err = _run_cli(["validate", "nope", "campaigns/birthday.json"], capsys)
    assert code == 1 and err.strip() == "nope: $: no such file or folder"


def test_rules_md_validate_output_example(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    expected = re.search(r"```\n(campaigns/win-back\.json: .*?)```", RULES_MD, re.S)
    assert expected is not None
    campaign = json.loads((ROOT / "campaigns" / "win-back.json").read_text())
    campaign["audience"] = {"and": [{">": [{"var": "custmer.order_count"}, 0]}, {">=": [1]}]}
    (tmp_path / "campaigns").mkdir()
    (tmp_path / "campaigns" / "win-back.json").write_text(json.dumps(campaign))
    monkeypatch.chdir(tmp_path)
    code, _, err = _run_cli(["validate", "campaigns/win-back.json",
                             "--templates", str(ROOT / "templates")], capsys)
    assert code == 1
    assert err.splitlines() == expected.group(1).splitlines()


def test_simulate_documented_behaviour(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    customer = {"id": "c-1", "name": "Ana", "phone": "+14155550123",
                "timezone": "America/New_York", "locale": "en-US", "consent": {"sms": True}}
    events = tmp_path / "events.jsonl"
    delivery = {"id": "e1", "type": "order.delivered", "occurred_at": "2026-03-02T15:00:00Z",
                "customer": customer, "order": {"id": "o-1"}}
    events.write_text("\n".join([json.dumps(delivery), json.dumps(delivery), "not json",
                                 json.dumps({**delivery, "id": "e2",
                                             "occurred_at": "1800-01-01T00:00:00Z"})]) + "\n")
    base = ["simulate", "--events", str(events), "--campaigns", str(ROOT / "campaigns"),
            "--templates", str(ROOT / "templates")]
    code, out, err = _run_cli([*base, "--format", "csv"], capsys)
    assert code == 0
    assert out.splitlines()[0] == "customer,campaign,step,at,outcome,reason,channel,template"
    # P2D at 10:00 local after a delivery at 10:00 New York time.
    assert "c-1,delivery-checkin,checkin,2026-03-04T15:00:00Z,sent,,sms,checkin" in out
    assert "c-1,win-back,-,2026-03-02T15:00:00Z,planned,idle:2026-03-02T15:00:00Z,," in out
    assert f"{events}: line 3: invalid JSON" in err
    assert f"{events}: line 4: $.occurred_at: year 1800 is outside 1900-2199" in err
    code, out, _ = _run_cli(base, capsys)
    assert "(1 duplicates, 2 bad)" in out
    code, _, err = _run_cli([*base, "--from", "2026-02-01", "--to", "2026-01-01"], capsys)
    assert code == 1 and "--from must be before --to" in err


def test_weekday_example_22h_saturday_goes_at_8_monday(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "wk.json").write_text(json.dumps({
        "id": "wk", "name": "wk", "trigger": {"event": "order.delivered"},
        "steps": [{"id": "s", "at": "22:00", "weekdays": ["mon"], "channel": "sms",
                   "template": "checkin"}]}))
    events = tmp_path / "e.jsonl"
    events.write_text(json.dumps({
        "id": "e1", "type": "order.delivered", "occurred_at": "2026-03-07T17:00:00Z",
        "customer": {"id": "c-1", "phone": "+14155550123", "timezone": "America/New_York",
                     "consent": {"sms": True}}, "order": {"id": "o-1"}}) + "\n")
    code, out, _ = _run_cli(["simulate", "--events", str(events), "--campaigns",
                             str(tmp_path / "c"), "--templates", str(ROOT / "templates"),
                             "--format", "csv"], capsys)
    # Saturday 7 March 2026 -> Monday 9 March, 08:00 EDT.
    assert code == 0
    assert "c-1,wk,s,2026-03-09T12:00:00Z,sent,,sms,checkin" in out


def test_preview_by_id_and_locale_checks(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    customer = tmp_path / "c.json"
    customer.write_text(json.dumps({"name": "Ana Souza", "locale": "en-US",
                                    "timezone": "America/New_York"}))
    code, out, _ = _run_cli(["preview", "delivery-checkin", "--customer", str(customer)], capsys)
    assert code == 0
    assert re.search(r"\[checkin\.sms\.j2: GSM-7, \d+ chars, 1 segment\(s\)\]", out)
    code, _, err = _run_cli(["preview", "delivery-checkin", "--customer", str(customer),
                             "--locale", "klingon"], capsys)
    assert code == 1 and "unknown locale" in err
    customer.write_text(json.dumps({"attributes": []}))
    code, _, err = _run_cli(["preview", "delivery-checkin", "--customer", str(customer)], capsys)
    assert code == 1 and "$.attributes" in err


def test_erase_argument_handling(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run_cli(["erase"], capsys)
    assert code == 1 and "no customer ids" in err
    ids = tmp_path / "ids.txt"
    ids.write_bytes(b"\xef\xbb\xbfc-1  # comment\n# only a comment\n\n" + b"x" * 513 + b"\n")
    code, _, err = _run_cli(["erase", "--file", str(ids)], capsys)
    assert code == 1 and f"{ids}: line 4:" in err and "line 1" not in err
    code, _, err = _run_cli(["import", "customers", str(tmp_path / "none.jsonl")], capsys)
    assert code == 1 and "no such file" in err


def test_generated_demo_log_matches_the_readme() -> None:
    from chalicelib.local.generator import generate

    events = generate(customers=120, days=120, seed=7)  # `aftercare demo` defaults
    assert 400 <= len(events) <= 460  # "~430 orders, deliveries and returns"
    assert {e["type"] for e in events} == {"order.placed", "order.delivered", "order.returned"}
    assert len({e["customer"]["id"] for e in events}) == 120
    zones = {e["customer"].get("timezone") for e in events} - {None}
    assert len(zones) == 10


# --- rules ----------------------------------------------------------------------------

RULES_CTX = json.loads(next(b for w, _, b in JSON_BLOCKS
                            if w == "rules.md" and b.startswith('{"customer"')))
NOW = "2026-03-01T14:02:00Z"
RULE_CASES = [
    # (rule, data, expected) from docs/rules.md
    ({">": [{"days_since": [{"var": "customer.last_order_at"}]}, 120]}, RULES_CTX, False),
    ({">": [{"days_since": [{"var": "customer.last_order_at"}]}, 120]},
     {"customer": {"last_order_at": "2025-09-01T00:00:00Z"}, "now": NOW}, True),
    ({"<=": [0, {"??": [{"days_until": [{"var": "customer.attributes.warranty_ends"}]}, -1]},
             14]}, RULES_CTX, False),
    ({"<=": [0, {"days_until": [{"var": "customer.attributes.warranty_ends"}]}, 14]},
     RULES_CTX, True),  # why the ?? matters
    ({"<=": [0, {"??": [{"days_until": [{"var": "customer.attributes.warranty_ends"}]}, -1]},
             14]}, {"customer": {"attributes": {"warranty_ends": "2026-03-11"}}, "now": NOW},
     True),
    ({">=": [{"years_since": [{"var": "customer.first_order_at"}]}, 2]}, RULES_CTX, False),
    ({"years_since": ["2024-02-29"]}, {"now": "2025-02-28T12:00:00Z"}, 1),
    ({"is_anniversary": [{"var": "customer.birthday"}, {"var": "customer.timezone"}]},
     {"customer": {"birthday": "1992-02-29", "timezone": "America/New_York"},
      "now": "2026-02-28T15:00:00Z"}, True),
    ({"is_anniversary": ["2026-02-28", "UTC"]}, {"now": "2026-02-28T15:00:00Z"}, False),
    ({"contains_any": [{"var": "event.order.categories"}, ["kitchen", "coffee"]]},
     RULES_CTX, False),
    ({"contains_any": ["kitchen", ["kitchen"]]}, {}, True),
    ({"contains_any": [None, ["a"]]}, {}, None),
    ({"contains_any": [[True], [1]]}, {}, False),
    ({"days_since": ["2026-03-01T00:00:00Z"]}, {"now": "2026-03-01T23:00:00Z"}, 0),
    ({"days_since": ["2026-03-05"]}, {"now": NOW}, -4),
    ({"days_since": ["not a date"]}, {"now": NOW}, None),
    ({"==": [None, "gold"]}, {}, False),
    ({"<": [None, "b"]}, {}, False),
    ({"===": [1, 1.0]}, {}, True),
    ({"!==": [True, 1]}, {}, True),
    ({"and": [1, "a"]}, {}, "a"),
    ({"or": [0, "b"]}, {}, "b"),
    ({"and": []}, {}, False),
    ({"max": {"var": "scores"}}, {"scores": [1, 5, 3]}, 5),
    ({"<=": [100, {"var": "x"}, 1000]}, {"x": 5000}, False),
    ({"try": [{"throw": "boom"}, {"var": "type"}]}, {}, "boom"),
    ({"map": [[1, 2], {"val": [[1], "index"]}]}, {}, [0, 1]),
]


@pytest.mark.parametrize("rule,data,expected", RULE_CASES,
                         ids=[json.dumps(r)[:60] for r, _, _ in RULE_CASES])
def test_rules_md_examples_give_the_documented_results(rule: Any, data: Any,
                                                       expected: Any) -> None:
    from chalicelib.rules import compile_rule

    assert compile_rule(rule)(data) == expected


@pytest.mark.parametrize("rule,data", [({"+": ["abc", 1]}, {}),
                                       ({">": [{"var": "tags"}, 3]}, {"tags": [1]}),
                                       ({"/": [1, 0]}, {}),
                                       ({"all": [{"var": "x"}, True]}, {"x": 5})])
def test_rules_md_evaluation_errors(rule: Any, data: Any) -> None:
    from chalicelib.rules import RuleEvaluationError, compile_rule

    with pytest.raises(RuleEvaluationError):
        compile_rule(rule)(data)


def test_rules_md_compile_error_paths() -> None:
    from chalicelib.rules import RuleError, compile_rule, validate_rule

    block = re.search(r"```\n(\$\.audience.*?)```", RULES_MD, re.S)
    assert block is not None
    rules = [({"and": [True, {">=": [1]}]}, "$.audience"),
             ({"or": [{"foo": [1]}]}, "$.audience"),
             ({"var": "customer..tier"}, "$.steps[0].condition")]
    got = [str(validate_rule(r, path=p)[0]) for r, p in rules]
    assert got == block.group(1).splitlines()
    with pytest.raises(RuleError) as exc:
        compile_rule({"==": [1, 1], "!=": [1, 2]})
    assert "preserve" in exc.value.message


def test_rules_md_api_table() -> None:
    from chalicelib import rules
    from chalicelib.journeys.profile import PROFILE_FIELDS

    assert issubclass(rules.RuleError, ValueError)
    assert [rules.truthy(v) for v in (False, None, 0, "", [], "0", {})] == [
        False, False, False, False, False, True, True]
    assert isinstance(rules.OPERATORS, frozenset)
    for op in ("days_since", "days_until", "years_since", "is_anniversary", "contains_any",
               "val", "exists", "??", "throw", "try", "preserve", "missing_some", "log"):
        assert op in rules.OPERATORS
    assert rules.anniversary_in_year(date(1992, 2, 29), 2026) == date(2026, 2, 28)
    assert "def " in rules.rule_source({"==": [1, 1]})
    assert rules.unknown_fields({"var": "customer.order_cnt"}, {"customer": PROFILE_FIELDS})
    assert rules.lint_rule({"var": "order_count"})


def test_jsonlogic_conformance_figures() -> None:
    suites = ROOT.parent / "shared" / "jsonlogic" / "suites"
    if not suites.is_dir():
        pytest.skip("shared suites not present")
    from chalicelib.rules.conformance import run_suites

    counts = run_suites(suites)
    assert (counts["compatible_passed"], counts["compatible_total"]) == (278, 278)
    assert (counts["full_passed"], counts["full_total"]) == (1138, 1138)
    assert "| 278 / 1138 |" in README


# --- events ---------------------------------------------------------------------------

EVENT_FIXTURES = sorted((ROOT / "tests" / "fixtures" / "events").glob("*.json"))


@pytest.mark.parametrize("path", EVENT_FIXTURES, ids=[p.name for p in EVENT_FIXTURES])
def test_event_fixtures_listed_in_events_md_parse(path: Path) -> None:
    from chalicelib.events import parse_event

    assert parse_event(json.loads(path.read_text()))["id"]


def test_events_md_lists_existing_fixtures() -> None:
    listed = re.findall(r"`(tests/fixtures/events/[\w.]+)`",
                        (DOCS / "events.md").read_text(encoding="utf-8"))
    assert len(listed) == 4 and all((ROOT / p).is_file() for p in listed)


def test_envelope_examples_in_api_md_and_readme_parse() -> None:
    from chalicelib.events import parse_event

    single = next(b for w, _, b in JSON_BLOCKS if w == "api.md" and '"occurred_at"' in b)
    assert parse_event(json.loads(single))["id"] == "evt-0001"
    curl_body = re.search(r"BODY='(\{.*?\})'", API_MD)
    assert curl_body is not None and parse_event(json.loads(curl_body.group(1)))
    readme = re.search(r"BODY='(.*?)'\$\(cat out/now.txt\)'(.*?)'\n", README)
    assert readme is not None
    assert parse_event(json.loads(readme.group(1) + NOW + readme.group(2)))["id"] == "evt-3"


def test_events_md_normalisation_rules() -> None:
    from chalicelib.events import EventError, parse_event

    base = {"id": "e", "type": "order.placed", "occurred_at": NOW}

    def customer(**kw: Any) -> dict[str, Any]:
        out: dict[str, Any] = parse_event({**base, "customer": {"id": "c", **kw}})["customer"]
        return out

    assert customer(phone="(415) 555-0123", locale="en-US")["phone"] == "+14155550123"
    assert customer(email="Ana@EXAMPLE.com")["email"] == "Ana@example.com"
    assert customer(timezone="Mars/Olympus")["timezone"] is None
    for bad in ({"phone": "+1 555 000"}, {"email": "nope"},
                {"consent": {"sms": {"granted": True, "at": "1800-01-01T00:00:00Z"}}}):
        with pytest.raises(EventError):
            parse_event({**base, "customer": {"id": "c", **bad}})
    for when, ok in (("2026-03-01T14:02:00", False), ("1899-12-31T23:59:59Z", False),
                     ("2199-12-31T00:00:00Z", True), ("2200-01-01T00:00:00Z", False)):
        if ok:
            parse_event({**base, "occurred_at": when, "customer": {"id": "c"}})
        else:
            with pytest.raises(EventError):
                parse_event({**base, "occurred_at": when, "customer": {"id": "c"}})
    order = parse_event({**base, "customer": {"id": "c"}, "order": {
        "id": "o", "items": [{"category": "a"}, {"category": "b"}]}})["order"]
    assert (order["categories"], order["category"]) == (["a", "b"], "a")
    with pytest.raises(EventError, match=r"\$\.customer: required object is missing"):
        parse_event(base)  # the 207 example's error text


def test_too_large_event_goes_to_the_dlq() -> None:
    from chalicelib.pipeline.batch import PermanentError
    from chalicelib.pipeline.ingest import decode

    with pytest.raises(PermanentError) as exc:
        decode(json.dumps({"id": "e", "pad": "x" * 70_000}))
    assert exc.value.kind == "too_large"


# --- templates ------------------------------------------------------------------------

JINJA = [b for w, _, b in _blocks("jinja") if w == "templates.md"]


def _context(**customer: Any) -> dict[str, Any]:
    from chalicelib.render import SAMPLE_CONTEXT

    ctx = copy.deepcopy(SAMPLE_CONTEXT)
    ctx["customer"].update(customer)
    return ctx


def test_templates_md_sms_example_renders() -> None:
    from chalicelib.render import Renderer

    sms = Renderer({"checkin.sms.j2": JINJA[0]}).render_sms("checkin", _context())
    assert sms.body == ("Hi Ana, your Kettle arrived.\n"
                        "How happy are you with it, 1-5? Reply with a number.")
    assert (sms.encoding, sms.segments) == ("GSM-7", 1)


def test_templates_md_email_example_renders() -> None:
    from chalicelib.render import Renderer

    mail = Renderer({"care_tip.email.j2": JINJA[1]}).render_email("care_tip", _context())
    assert mail.subject == "How is your Kettle, Ana?"
    assert '<a href="https://aftercare.example.com/s/Zx81kQ">Tell us how it went</a>' in mail.html
    assert mail.text.startswith("Hi Ana, descale it once a month.")


def test_templates_md_default_example_renders() -> None:
    from chalicelib.render import Renderer

    r = Renderer({"d.sms.j2": JINJA[2]})
    assert r.render_sms("d", _context(birthday=None)).body == "gold\n…"
    body = r.render_sms("d", _context(birthday="1992-02-29", attributes={})).body
    assert body == "member\nBorn 29 February"


FILTERS = ('{{ 129.5|money("USD") }}|{{ 129.5|money("EUR") }}|{{ 1500|money("JPY") }}|'
           '{{ value|date }}|{{ value|date("long") }}|{{ value|datetime("short") }}')
FILTER_ROWS = {  # docs/templates.md, Filters: both tables
    "en-US": ["$129.50", "€129.50", None, "Mar 1, 2026", "March 1, 2026", "3/1/26, 9:02 AM"],
    "de-DE": ["129,50 $", "129,50 €", None, "01.03.2026", "1. März 2026", "01.03.26, 09:02"],
    "es": ["129,50 US$", "129,50 €", "1.500 JPY", "1 mar 2026", "1 de marzo de 2026",
           "1/3/26, 9:02"],
    "es-ES": ["129,50 US$", "129,50 €", "1.500 JPY", "1 mar 2026", "1 de marzo de 2026",
              "1/3/26, 9:02"],
    "es-MX": ["USD 129.50", "EUR 129.50", "JPY 1,500", "1 mar 2026", "1 de marzo de 2026",
              "01/03/26, 9:02 a.m."],
    "ja": ["$129.50", "€129.50", "￥1,500", "2026/03/01", "2026年3月1日", "2026/03/01 9:02"],
    "ja-JP": ["$129.50", "€129.50", "￥1,500", "2026/03/01", "2026年3月1日", "2026/03/01 9:02"],
    "pt-BR": ["US$ 129,50", "€ 129,50", "JP¥ 1.500", "1 de mar. de 2026", "1 de março de 2026",
              "01/03/2026 09:02"],
}


@pytest.mark.parametrize("locale", sorted(FILTER_ROWS))
def test_templates_md_filter_tables(locale: str) -> None:
    from chalicelib.render import Renderer

    files = {f"f.{lang}.sms.j2": FILTERS for lang in ("de", "es", "ja", "pt")}
    files["f.sms.j2"] = FILTERS
    ctx = {"customer": {"locale": locale, "timezone": "America/New_York"},
           "value": "2026-03-01T14:02:00Z"}
    got = Renderer(files).render_sms("f", ctx).body.split("|")
    for value, expected in zip(got, FILTER_ROWS[locale], strict=True):
        if expected is not None:
            assert value == expected


def test_templates_md_locale_chain_and_partials() -> None:
    from chalicelib.render import Renderer
    from chalicelib.render.naming import parse_filename

    r = Renderer({"checkin.sms.j2": "a", "checkin.pt.sms.j2": "b",
                  "checkin.pt-BR.sms.j2": "c"})
    assert r.resolve("checkin", "sms", "pt_br") == "checkin.pt-BR.sms.j2"
    assert r.resolve("checkin", "sms", "pt-PT") == "checkin.pt.sms.j2"
    assert r.resolve("checkin", "sms", "fr") == "checkin.sms.j2"
    assert parse_filename("_layout.email.j2").is_partial  # type: ignore[union-attr]


def test_templates_md_variables_are_what_a_send_sees() -> None:
    from chalicelib.journeys.messages import _CUSTOMER_FIELDS

    row = re.search(r"\| `customer\.id`, (.*?) \|", TEMPLATES_MD)
    dates = re.search(r"\| `customer\.birthday`, (.*?) \|", TEMPLATES_MD)
    assert row is not None and dates is not None
    documented = {"id", "order_count", "total_spent", "currency", "birthday"}
    documented |= set(re.findall(r"`\.(\w+)`", row.group(1) + dates.group(1)))
    assert documented == set(_CUSTOMER_FIELDS)


def test_templates_md_null_and_sandbox_errors() -> None:
    from chalicelib.render import Renderer, RenderError

    for src, words in [("{{ customer.email }}", "'customer.email' is null"),
                       ("{{ customer.nickname }}", "undefined variable 'customer.nickname'"),
                       ("{{ x.__class__ }}", "unsafe"), ("{{ self }}", "cannot print"),
                       ('{{ "x" * 1000000 }}', "too large"),
                       ("{{ x|tojson(indent=17) }}", "at most 16"),
                       ('{{ value|date("d MMM, h a") }}', "use |datetime")]:
        with pytest.raises(RenderError, match=re.escape(words)):
            Renderer({"t.sms.j2": src}).render_sms(
                "t", {"customer": {"email": None}, "x": "ab", "value": NOW})


# --- API, names, files ----------------------------------------------------------------

ROUTES = {  # docs/api.md: path -> methods
    "/events": {"POST"},
    "/webhooks/twilio/status": {"POST"},
    "/webhooks/twilio/inbound": {"POST"},
    "/l/unsubscribe/{token}": {"GET", "POST"},
    "/l/survey/{token}": {"GET", "POST"},
    "/reports": {"GET"},
    "/reports/{campaign_id}": {"GET"},
}
IAM_ROUTES = {"/reports", "/reports/{campaign_id}"}  # docs/api.md: admin, IAM-signed


def test_api_md_routes_exist_with_the_authorizer_it_gives() -> None:
    from chalice import IAMAuthorizer

    import app

    routes = {path: set(methods) for path, methods in app.app.routes.items()}
    assert routes == ROUTES
    for path, methods in app.app.routes.items():
        for entry in methods.values():
            if path in IAM_ROUTES:
                assert isinstance(entry.authorizer, IAMAuthorizer)
            else:
                assert entry.authorizer is None  # public; the app checks signatures


def test_api_md_intro_counts_the_routes() -> None:
    import app

    intro = API_MD.split("Errors always")[0]  # the opening sentence and its table
    assert "Two routes" not in intro
    assert all(f"`{path}`" in intro or f" {path}`" in intro for path in app.app.routes)


def _post_events(monkeypatch: pytest.MonkeyPatch, body: bytes, *, sign: bool = True,
                 content_type: str = "application/json") -> Any:
    from chalicelib.api import events
    from chalicelib.api.http import HttpRequest, dispatch
    from chalicelib.api.signature import sign_header

    key = b"0123456789abcdef-test"
    queued: list[str] = []
    monkeypatch.setattr(events, "hmac_key", lambda: key)
    monkeypatch.setattr(events, "enqueue", queued.extend)
    headers = {"Content-Type": content_type}
    if sign:
        headers["X-Aftercare-Signature"] = sign_header(key, int(time.time()), body)
    return dispatch(events.post_events, HttpRequest.build("POST", "/events", headers, body))


def test_post_events_responses(monkeypatch: pytest.MonkeyPatch) -> None:
    event = {"id": "evt-0001", "type": "order.delivered", "occurred_at": NOW,
             "customer": {"id": "c-42"}}
    reply = _post_events(monkeypatch, json.dumps(event).encode())
    assert (reply.status, reply.body) == (202, {"accepted": ["evt-0001"], "rejected": []})
    batch = {"events": [event, {"id": "evt-x", "type": "order.placed", "occurred_at": NOW}]}
    reply = _post_events(monkeypatch, json.dumps(batch).encode())
    assert reply.status == 207
    assert reply.body["rejected"] == [{"index": 1, "id": "evt-x", "kind": "invalid_event",
                                       "error": "$.customer: required object is missing"}]
    reply = _post_events(monkeypatch, b'{"id": "a" "b"}')
    assert reply.status == 400 and reply.body["Message"].startswith("body is not valid JSON: ")
    reply = _post_events(monkeypatch, json.dumps({"events": [event] * 101}).encode())
    assert reply.status == 400
    reply = _post_events(monkeypatch, json.dumps(event).encode(), sign=False)
    assert reply.status == 401 and reply.body["Code"] == "UnauthorizedError"
    reply = _post_events(monkeypatch, b"x" * (256 * 1024 + 1), content_type="text/plain")
    assert reply.status == 413  # in the handler, size comes before the type


def test_chalice_answers_415_before_the_apps_413() -> None:
    from chalice.test import Client

    import app

    with Client(app.app) as client:
        reply = client.http.post("/events", headers={"Content-Type": "text/plain"},
                                 body=b"x" * (256 * 1024 + 1))
    assert reply.status_code == 415
    assert "Chalice's 415 before it" in API_MD


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")
@pytest.mark.parametrize("pipeline", [
    "openssl dgst -sha256 -hmac \"$KEY\" | sed 's/^.*= //'",  # README, post-event.sh
    "openssl dgst -sha256 -hmac \"$KEY\" -hex | sed 's/^.* //'",  # docs/api.md
])
def test_documented_openssl_signing_matches_the_server(pipeline: str) -> None:
    from chalicelib.api.signature import compute

    body = '{"id":"evt-1","type":"order.placed"}'
    script = f"printf '%s.%s' \"$T\" \"$BODY\" | {pipeline}"
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True,
                         env={"KEY": "local-events-hmac-key", "T": "1700000000", "BODY": body,
                              "PATH": "/usr/bin:/bin"}).stdout.strip()
    assert out == compute(b"local-events-hmac-key", 1_700_000_000, body.encode())
    py = hmac.new(b"local-events-hmac-key", b"1700000000." + body.encode(), hashlib.sha256)
    assert out == py.hexdigest()  # the Python snippet in docs/api.md


def test_inbound_keyword_examples() -> None:
    from chalicelib.api.consent import HELP, OPT_IN, OPT_OUT, reply_keyword

    assert {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT",
                       "REVOKE"} == OPT_OUT
    assert {"START", "YES", "UNSTOP"} == OPT_IN and {"HELP", "INFO"} == HELP
    assert reply_keyword("Stop, please") == ("STOP", False)
    assert reply_keyword("STOP\nthanks")[0] == "STOP"
    assert reply_keyword("Yes!") == ("YES", True)
    assert reply_keyword("Yes it arrived") == ("YES", False)
    assert reply_keyword("10!") == ("10", True)


def test_names_match_infra_config_and_settings() -> None:
    from chalicelib import settings

    infra = (ROOT / "infra" / "template.yaml").read_text()
    for what in ("customers", "campaigns", "schedule", "messages", "stats", "events",
                 "suppression", "events-dlq", "sends", "sends-dlq", "ses-events",
                 "ses-events-dlq", "alarms", "events-dlq-not-empty", "sends-dlq-not-empty",
                 "ses-events-dlq-not-empty", "sends-backlog"):
        assert f"aftercare-${{Stage}}-{what}\n" in infra, what
        assert settings.resource_name(what, "prod") == f"aftercare-prod-{what}"
    for secret in ("twilio", "signing", "suppression"):
        assert f"Name: !Sub aftercare/${{Stage}}/{secret}\n" in infra
    for field in ("account_sid", "auth_token", "messaging_service_sid", "events_hmac_key",
                  "GenerateStringKey: link_key", "GenerateStringKey: key",
                  "SuppressedReasons: [BOUNCE, COMPLAINT]", "MessageRetentionPeriod: 1209600"):
        assert field in infra
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    assert config["autogen_policy"] is False
    assert config["environment_variables"]["DEFAULT_TIMEZONE"] == "America/New_York"
    prod = config["stages"]["prod"]
    assert prod["environment_variables"]["PUBLIC_BASE_URL"] == "https://api.example.com/api"
    assert prod["lambda_functions"]["api_handler"]["iam_policy_file"] == "policy-api-prod.json"
    assert "URL=https://api.example.com/api" in API_MD


def test_iam_policies_as_the_readme_says() -> None:
    for path in sorted((ROOT / ".chalice").glob("policy-*.json")):
        actions = set()
        for statement in json.loads(path.read_text())["Statement"]:
            action = statement["Action"]
            listed = set(action if isinstance(action, list) else [action])
            if listed == {"dynamodb:Scan"} and "policy-api-" in path.name:
                # GET /reports lists the campaigns: that table alone.
                stage = path.stem.rsplit("-", 1)[1]
                assert statement["Resource"] == \
                    f"arn:aws:dynamodb:*:*:table/aftercare-{stage}-campaigns"
                continue
            actions |= listed
        assert not {"dynamodb:DeleteItem", "dynamodb:Scan"} & actions, path.name
        if "policy-api-" in path.name:
            assert not any(a.startswith("ses:") for a in actions)
            assert "sqs:ReceiveMessage" not in actions


README_PATHS = ["campaigns/schema.json", "scripts/post-event.sh", "docs/api.md",
                "docs/campaigns.md", "docs/rules.md", "docs/templates.md", "docs/events.md",
                "chalicelib/journeys/engine.py", "chalicelib/journeys/profile.py",
                "chalicelib/events/events.schema.json", "chalicelib/api/errors.py",
                "tests/integration/test_iam_coverage.py", "tests/unit/test_rules_fastpath.py",
                "tests/unit/test_jsonlogic_conformance.py", "bench/rules_bench.py",
                "infra/template.yaml", ".chalice/policy-dev.json", ".chalice/policy-api-dev.json",
                "chalicelib/config", "chalicelib/rules", "chalicelib/journeys",
                "chalicelib/render", "chalicelib/channels", "chalicelib/store",
                "chalicelib/pipeline", "chalicelib/events", "chalicelib/api",
                "chalicelib/tracking", "chalicelib/local", "tests/package"]


@pytest.mark.parametrize("path", README_PATHS)
def test_paths_the_docs_name_exist(path: str) -> None:
    assert (ROOT / path).exists()


def test_makefile_targets_the_readme_lists() -> None:
    makefile = (ROOT / "Makefile").read_text()
    for target in ("demo", "test", "run", "bench", "package", "package-smoke", "schema"):
        assert re.search(rf"^{re.escape(target)}:", makefile, re.M), target
    assert "aftercare schema > campaigns/schema.json" in makefile
    assert "--ignore-checks E2533" in makefile


def test_api_md_cites_only_files_that_exist() -> None:
    for name in re.findall(r"\(([A-Za-z_/.-]+\.md)\)", API_MD):
        assert (ROOT / name).is_file() or (ROOT / "docs" / name).is_file(), name
