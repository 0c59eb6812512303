"""Audit of `aftercare simulate --render` (commit 7a0d3c5) against the sender.

The sender (chalicelib/pipeline/send.py ``_render``) renders each message it decides
to send; a template that cannot render for the customer records the step ``failed``
with ``template error: ...`` and the campaign goes on. `simulate --render` must say
the same, row for row (tests/e2e/oracle.py ``decide_both``), and the CLI must give
the same output however the run is split (``--workers``).

Cases not covered by test_differential_render.py: email blocks (an empty subject, a
layout's html block, a text block), locale fallback (a failing ``x.es`` file with a
working ``x.es-MX`` and ``x``), a failing A/B variant, survey links, date (birthday),
idle and cancellation campaigns printing fields that are null for some customers, a
template that fails only after a timezone move, the exact 1,600-character SMS and
256 KiB email limits with real-length links, the step budget's exact limit, and the
CLI (``--workers 1``/``2``, ``--from``/``--to``, ``--timezone``, a bad templates
folder, ``PUBLIC_BASE_URL``).

Defects are kept as ``xfail(strict=True)`` tests whose reason starts with DEFECT.
The render's wall-clock budget (2 s, chalicelib/render/limits.py) can legitimately
differ between the two sides (machine load); no test here depends on it.

Campaign ids all start with ``audit-``: the sender caches renderers by (campaign id,
version) for the process, and every test's fresh stack starts at version 1.
"""

from __future__ import annotations

import io
import json
import shutil
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from chalicelib import settings
from chalicelib.cli.main import main
from chalicelib.clock import parse_iso
from chalicelib.journeys.engine import CampaignSet
from chalicelib.journeys.messages import RenderCheck
from chalicelib.journeys.simulate import simulate
from chalicelib.local.generator import generate, write_jsonl
from chalicelib.local.stack import LocalStack
from chalicelib.render.renderer import MAX_EMAIL_BYTES, MAX_SMS_CHARS
from chalicelib.tracking.links import link_maker
from tests.conftest import ROOT
from tests.e2e.oracle import Rows, decide_both
from tests.e2e.test_differential_random import enrich

Event = dict[str, Any]
# Row columns: customer, campaign, step, at, outcome, reason, channel, template.
CUSTOMER, CAMPAIGN, STEP, AT, OUTCOME, REASON, CHANNEL, TEMPLATE = range(8)


# -- helpers -----------------------------------------------------------------------

def write_bundle(tmp: Path, campaigns: list[dict[str, Any]],
                 templates: dict[str, str]) -> tuple[Path, Path]:
    """A campaigns folder and a templates folder (the repository's templates plus
    ``templates``)."""
    template_dir = tmp / "templates"
    shutil.copytree(ROOT / "templates", template_dir)
    for name, source in templates.items():
        (template_dir / name).write_text(source, encoding="utf-8")
    campaign_dir = tmp / "campaigns"
    campaign_dir.mkdir()
    for c in campaigns:
        body = {"status": "active", "name": c["id"], **c}
        (campaign_dir / f"{c['id']}.json").write_text(json.dumps(body), encoding="utf-8")
    return campaign_dir, template_dir


def oracle(stack: LocalStack, tmp: Path, campaigns: list[dict[str, Any]],
           templates: dict[str, str], events: list[Event],
           end: datetime | None = None) -> tuple[Rows, Rows]:
    campaign_dir, template_dir = write_bundle(tmp, campaigns, templates)
    stack.push_campaigns(campaign_dir, template_dir)
    end = end or parse_iso(events[-1]["occurred_at"]) + timedelta(days=10)
    return decide_both(stack, events, end)


def diff(expected: Rows, actual: Rows) -> str:
    only_sim = Counter(expected) - Counter(actual)
    only_pipe = Counter(actual) - Counter(expected)
    return ("only in simulate:\n" + "\n".join(map(str, sorted(only_sim)))
            + "\nonly in the pipeline:\n" + "\n".join(map(str, sorted(only_pipe))))


def outcomes(rows: Rows, campaign: str, step: str | None = None) -> Counter[str]:
    return Counter(r[OUTCOME] for r in rows
                   if r[CAMPAIGN] == campaign and (step is None or r[STEP] == step))


def locales(events: list[Event]) -> dict[str, str]:
    found: dict[str, str] = {}
    for e in events:
        if e["customer"].get("locale"):
            found[e["customer"]["id"]] = e["customer"]["locale"]
    return found


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[dict[str, str]], str]:
    code = main(["simulate", "--format", "json", *args])
    captured = capsys.readouterr()
    rows = [json.loads(line) for line in captured.out.splitlines() if line.strip()]
    return code, rows, captured.err


def link_lengths(base: str) -> tuple[int, int, int]:
    """How long the sender's links are: an SMS's survey and unsubscribe links, and an
    email's unsubscribe link (which also names the 64-hex-digit suppression key).
    A link's length does not depend on the key or (from 2001 to 2286) the time."""
    at = datetime(2026, 3, 1, tzinfo=UTC)
    sms = link_maker(base, b"k" * 32, at)
    email = link_maker(base, b"k" * 32, at, {"r": "email:" + "0" * 64})
    step_id = "0" * 32  # schedule ids are 32 hex digits (journeys.keys.schedule_id)
    return (len(sms("survey", {"m": step_id, "k": "csat"})),
            len(sms("unsubscribe", {"m": step_id})),
            len(email("unsubscribe", {"m": step_id})))


# -- 1. what a message holds: blocks, locales, variants, surveys, triggers ----------

FEATURES: list[dict[str, Any]] = [
    {   # Three email steps, each failing in another block for some customers.
        "id": "audit-mail", "trigger": {"event": "order.placed"},
        "steps": [
            {"id": "subj", "after": "PT3H", "channel": "email", "template": "au_subj"},
            {"id": "body", "after": "P1D", "channel": "email", "template": "au_html"},
            {"id": "txt", "after": "P2D", "channel": "email", "template": "au_text"},
        ],
        "reentry": {"policy": "once_per_order"},
    },
    {   # Locale fallback and an A/B variant whose template fails.
        "id": "audit-loc", "trigger": {"event": "order.placed"},
        "steps": [{"id": "hi", "after": "PT2H", "channel": "sms", "template": "au_loc"}],
        "variants": [{"id": "a", "weight": 1},
                     {"id": "b", "weight": 1, "templates": {"hi": "au_locb"}}],
        "reentry": {"policy": "once_per_order"},
    },
    {   # Date trigger: a birthday SMS printing a delivery some customers lack yet.
        "id": "audit-bday", "trigger": {"date": "customer.birthday"},
        "steps": [
            {"id": "greet", "at": "09:00", "channel": "sms", "template": "au_bday"},
            {"id": "mail", "after": "P1D", "channel": "email", "template": "au_spent"},
        ],
    },
    {   # Idle trigger with a survey and its link.
        "id": "audit-idle", "trigger": {"idle": "P20D"},
        "steps": [
            {"id": "miss", "at": "10:30", "channel": "sms", "template": "au_idle",
             "survey": "nps"},
            {"id": "again", "after": "P3D", "channel": "email", "template": "au_spent"},
        ],
    },
    {   # Fails only for customers who moved to Denver (enrich's timezone moves; no
        # generated customer starts there).
        "id": "audit-tz", "trigger": {"event": "order.delivered"},
        "steps": [
            {"id": "a", "after": "P2D", "at": "10:00", "channel": "sms",
             "template": "au_tz", "survey": "csat"},
            {"id": "b", "after": "P5D", "channel": "sms", "template": "au_tz"},
        ],
        "reentry": {"policy": "always"},
    },
]
FEATURE_TEMPLATES = {
    "_au_layout.email.j2": (
        "{% block subject %}{% endblock %}{% block html %}<div>{% block content %}"
        "{% endblock %}</div><p>Delivered {{ customer.last_delivery_at|date }}</p>"
        "<a href='{{ links.unsubscribe }}'>Unsubscribe</a>{% endblock %}"),
    # The subject is blank (only spaces) for a first order: "subject is empty".
    "au_subj.email.j2": (
        "{% block subject %}{% if customer.order_count > 1 %}Thanks again{% endif %}"
        "   {% endblock %}{% block html %}<p>Hi</p><a href='{{ links.unsubscribe }}'>u</a>"
        "{% endblock %}"),
    # The layout's html block fails before the first delivery.
    "au_html.email.j2": (
        "{% extends '_au_layout.email.j2' %}{% block subject %}Order {{ order.id }}"
        "{% endblock %}{% block content %}Hi {{ customer.name|first_name }}{% endblock %}"),
    # Only the text block fails.
    "au_text.email.j2": (
        "{% block subject %}Hi{% endblock %}{% block html %}<p>ok</p>"
        "<a href='{{ links.unsubscribe }}'>u</a>{% endblock %}"
        "{% block text %}Since {{ customer.last_delivery_at|datetime('short') }}"
        "{% endblock %}"),
    "au_loc.sms.j2": "Hi {{ customer.name|first_name }} {{ links.unsubscribe }}",
    "au_loc.es.sms.j2": ("Hola, tu última entrega: {{ customer.last_delivery_at|date }} "
                         "{{ links.unsubscribe }}"),
    "au_loc.es-MX.sms.j2": "Hola {{ customer.name|first_name }} {{ links.unsubscribe }}",
    "au_locb.sms.j2": ("B: last delivery {{ customer.last_delivery_at|date }} "
                       "{{ links.unsubscribe }}"),
    "au_bday.sms.j2": ("Happy birthday {{ customer.name|first_name }}! Last delivery "
                       "{{ customer.last_delivery_at|date }}. {{ links.unsubscribe }}"),
    "au_spent.email.j2": (
        "{% block subject %}Hi {{ customer.name|first_name('x') }}{% endblock %}"
        "{% block html %}<p>You spent {{ customer.total_spent|money(customer.currency) }}"
        "</p><a href='{{ links.unsubscribe }}'>u</a>{% endblock %}"),
    "au_idle.sms.j2": ("{{ survey.question }} {{ links.survey }} Last delivery "
                       "{{ customer.last_delivery_at|date('long') }}"),
    "au_tz.sms.j2": (
        "{% if customer.timezone == 'America/Denver' %}"
        "{{ customer.last_order_at|datetime('full', tz=customer.attributes.tier) }}"
        "{% endif %}{{ survey.question if survey else 'Hi' }} {{ links.survey }}"),
}


def feature_log(customers: int, days: int, seed: int) -> list[Event]:
    """enrich's log, and every fourth customer moving to Denver four days in."""
    events = enrich(generate(customers=customers, days=days, seed=seed), seed)
    first: dict[str, datetime] = {}
    for e in events:
        first.setdefault(e["customer"]["id"], parse_iso(e["occurred_at"]))
    moves = {cid: (at + timedelta(days=4)).strftime("%Y-%m-%dT%H:%M:%SZ")
             for n, (cid, at) in enumerate(sorted(first.items())) if n % 4 == 1}
    for e in events:  # the generator repeats the zone in later events: not after a move
        if e["occurred_at"] >= moves.get(e["customer"]["id"], "9"):
            e["customer"].pop("timezone", None)
    for cid, when in moves.items():
        events.append({"id": f"evt-denver-{cid}", "type": "customer.updated",
                       "occurred_at": when,
                       "customer": {"id": cid, "timezone": "America/Denver"}})
    events.sort(key=lambda e: (e["occurred_at"], e["id"]))
    return events


def moves_to_denver(events: list[Event]) -> dict[str, str]:
    """Each customer's first move to Denver."""
    moves: dict[str, str] = {}
    for e in events:
        if e["customer"].get("timezone") == "America/Denver":
            moves.setdefault(e["customer"]["id"], e["occurred_at"])
    return moves


def test_message_features_agree(stack: LocalStack, tmp_path: Path) -> None:
    events = feature_log(16, 70, 3)
    expected, actual = oracle(stack, tmp_path, FEATURES, FEATURE_TEMPLATES, events)
    assert actual == expected, diff(expected, actual)

    # Each block fails for some customers and renders for others.
    failed = Counter((r[STEP], r[REASON].split(":")[0]) for r in expected
                     if r[CAMPAIGN] == "audit-mail" and r[OUTCOME] == "failed")
    assert failed[("subj", "template error")] > 0
    assert all(r[REASON] == "template error: au_subj.email.j2: subject is empty"
               for r in expected if r[STEP] == "subj" and r[OUTCOME] == "failed")
    for step, where in (("body", "_au_layout.email.j2:1:"), ("txt", "au_text.email.j2:1:")):
        rows = [r for r in expected if r[CAMPAIGN] == "audit-mail" and r[STEP] == step]
        assert {r[OUTCOME] for r in rows} >= {"sent", "failed"}, step
        assert all(r[REASON].startswith(f"template error: {where}")
                   for r in rows if r[OUTCOME] == "failed"), step

    # Locale fallback: es-ES resolves to the failing .es file, es-MX to its own.
    loc = locales(events)
    hi = [r for r in expected if r[CAMPAIGN] == "audit-loc"]
    variant_a_failed = {loc[r[CUSTOMER]] for r in hi
                        if r[OUTCOME] == "failed" and r[TEMPLATE] == "au_loc"}
    assert variant_a_failed == {"es-ES"}, variant_a_failed
    assert any(r[OUTCOME] == "sent" and loc[r[CUSTOMER]] == "es-MX" for r in hi)
    assert any(r[OUTCOME] == "failed" and r[TEMPLATE] == "au_locb" for r in hi)
    assert any(r[OUTCOME] == "sent" and r[TEMPLATE] == "au_locb" for r in hi)

    assert outcomes(expected, "audit-bday", "greet")["sent"] > 0
    assert outcomes(expected, "audit-idle", "miss")["sent"] > 0
    # The timezone branch fails only after a customer's move; every other
    # customer's messages are sent (or suppressed).
    moved = moves_to_denver(events)
    tz = [r for r in expected if r[CAMPAIGN] == "audit-tz"]
    failed_tz = [r for r in tz if r[OUTCOME] == "failed"]
    assert failed_tz
    for r in failed_tz:
        assert r[CUSTOMER] in moved and r[AT] >= moved[r[CUSTOMER]], r
        # The customer's value is not quoted in a recorded reason (it may be personal
        # data): its type is.
        assert "|datetime: unknown timezone a str value" in r[REASON], r
        assert not any(v in r[REASON] for v in ("'standard'", "'gold'", "'vip'")), r
    assert any(r[OUTCOME] == "sent" and r[CUSTOMER] not in moved for r in tz)


# -- 2. limits at their exact boundaries ---------------------------------------------

def _boundary_set() -> tuple[list[dict[str, Any]], dict[str, str]]:
    survey, sms_unsub, email_unsub = link_lengths(settings.load().public_base_url)
    # SMS: "<survey> <unsubscribe> " + pad: 1,599, 1,600 or 1,601 characters by the
    # customer number's remainder mod 3.
    sms_pad = MAX_SMS_CHARS - 1 - (survey + 1 + sms_unsub + 1)
    # Email: the whole output (subject "S" + html + text "t") is the html block's
    # "<a href='LINK'>u</a>" + pad, 1 + 262,143..262,145 + 1 bytes by remainder.
    head = len("<a href=''>u</a>")
    email_pad = MAX_EMAIL_BYTES - 3 - head - email_unsub
    k = "(customer.id[2:]|int) % 3"
    campaigns = [{
        "id": "audit-len", "trigger": {"event": "order.placed"},
        "steps": [
            {"id": "sms", "after": "PT2H", "channel": "sms", "template": "au_len",
             "survey": "csat"},
            {"id": "email", "after": "PT3H", "channel": "email", "template": "au_elen"},
        ],
        "reentry": {"policy": "once_per_order"},
    }, {
        # The step budget (250,000 loop iterations and calls): 249,229 + id % 40
        # iterations, found to render up to id 20 and fail from id 21.
        "id": "audit-steps", "trigger": {"event": "order.placed"},
        "steps": [{"id": "work", "after": "PT1H", "channel": "sms", "template": "au_steps"}],
        "reentry": {"policy": "once"},
    }]
    templates = {
        "au_len.sms.j2": (f"{{{{ links.survey }}}} {{{{ links.unsubscribe }}}} "
                          f"{{{{ 'x' * ({sms_pad} + {k}) }}}}"),
        "au_elen.email.j2": (
            "{% block subject %}S{% endblock %}{% block html %}"
            "<a href='{{ links.unsubscribe }}'>u</a>"
            f"{{% for i in range({email_pad // 10}) %}}xxxxxxxxxx{{% endfor %}}"
            f"{{{{ 'x' * ({email_pad % 10} + {k}) }}}}"
            "{% endblock %}{% block text %}t{% endblock %}"),
        "au_steps.sms.j2": (
            "{% set n = 249229 + (customer.id[2:]|int) % 40 %}"
            "{% for a in range(n // 1000) %}{% for b in range(1000) %}{% endfor %}"
            "{% endfor %}{% for c in range(n % 1000) %}{% endfor %}"
            "Done {{ links.unsubscribe }}"),
    }
    campaigns.append({
        # money and date filters on odd data: a lowercase, unknown or missing
        # currency, a missing or huge total, attributes that are not dates or numbers.
        "id": "audit-odd", "trigger": {"event": "order.placed"},
        "steps": [
            {"id": "sms", "after": "PT2H", "channel": "sms", "template": "au_odd"},
            {"id": "email", "after": "PT3H", "channel": "email", "template": "au_oddm"},
        ],
        "reentry": {"policy": "once_per_order"},
    })
    templates["au_odd.sms.j2"] = (
        "Total {{ order.total|money(order.currency) }}"
        "{% if customer.attributes.when is defined %} on "
        "{{ customer.attributes.when|date('long') }}{% endif %} {{ links.unsubscribe }}")
    templates["au_oddm.email.j2"] = (
        "{% block subject %}Hi {% if customer.attributes.when is defined %}"
        "{{ customer.attributes.when|datetime('short') }}{% endif %}{% endblock %}"
        "{% block html %}<p>{% if customer.attributes.amount is defined %}"
        "{{ customer.attributes.amount|money(customer.attributes.cur if "
        "customer.attributes.cur is defined else 'USD') }}{% endif %}</p>{% endblock %}")
    return campaigns, templates


ODD_WHEN: list[Any] = ["2026-02-30", "20260301", 1700000000, "2026-03-01T25:00",
                       "2026-03-01T10:00:00+14:00", "1900-01-01", "2199-12-31T23:59:59-12:00",
                       None, "", "  2026-01-01  ", "2026-W10-1", "0001-01-01"]
ODD_AMOUNT: list[Any] = [0, -5, 1e20, "12.5", "abc", None, 10**30, 1e-9, "1e3", " 7 ", True,
                         [1]]
ODD_CURRENCY: list[Any] = ["usd", "XYZ", None, "EUR", " eur ", "", "JPY", "BTC", "usd", "XAU",
                           "CHF", "KRW"]
ODD_ORDER_CURRENCY: list[Any] = [None, "usd", "XYZ", "EUR", "eur", "JPY"]


def odd_data(events: list[Event]) -> list[Event]:
    """Odd orders and attributes, by customer number."""
    for e in events:
        n = int(e["customer"]["id"][2:])
        if e["type"] == "order.placed":
            order = e["order"]
            order.pop("currency", None)
            if ODD_ORDER_CURRENCY[n % 6] is not None:
                order["currency"] = ODD_ORDER_CURRENCY[n % 6]
            if n % 5 == 0:
                order.pop("total", None)
            elif n % 5 == 1:
                order["total"] = 10**15
        if "name" in e["customer"]:
            attributes = {"when": ODD_WHEN[n % 12], "amount": ODD_AMOUNT[n % 12],
                          "cur": ODD_CURRENCY[(n // 2) % 12]}
            e["customer"]["attributes"] = {k: v for k, v in attributes.items()
                                           if v is not None or k != "when"}
    return events


def test_exact_limits_agree(stack: LocalStack, tmp_path: Path) -> None:
    """Links in simulate are as long as the sender's: a body one character over the
    limit fails on both sides and one at the limit is sent on both. The step budget
    stops at the same iteration, and filters fail on odd data alike."""
    campaigns, templates = _boundary_set()
    events = odd_data(generate(customers=30, days=40, seed=4))
    expected, actual = oracle(stack, tmp_path, campaigns, templates, events)
    assert actual == expected, diff(expected, actual)

    by_remainder: dict[tuple[str, int], set[str]] = {}
    for r in expected:
        if r[CAMPAIGN] == "audit-len" and r[OUTCOME] != "suppressed":
            key = (r[STEP], int(r[CUSTOMER][2:]) % 3)
            by_remainder.setdefault(key, set()).add(r[OUTCOME])
    for step in ("sms", "email"):
        assert by_remainder[(step, 0)] == {"sent"}, step
        assert by_remainder[(step, 1)] == {"sent"}, step  # exactly at the limit
        assert by_remainder[(step, 2)] == {"failed"}, step
    reasons = {r[REASON] for r in expected if r[CAMPAIGN] == "audit-len"
               and r[OUTCOME] == "failed"}
    assert reasons == {"template error: au_len.sms.j2: SMS body has 1601 characters "
                       "(limit 1600)",
                       "template error: au_elen.email.j2: output exceeds 256 KiB"}

    work = [r for r in expected if r[CAMPAIGN] == "audit-steps" and r[STEP] == "work"
            and r[OUTCOME] in ("sent", "failed")]
    assert work
    for r in work:
        assert r[OUTCOME] == ("sent" if int(r[CUSTOMER][2:]) % 40 <= 20 else "failed"), r
        if r[OUTCOME] == "failed":
            assert "the template does too much work" in r[REASON], r

    odd = outcomes(expected, "audit-odd")
    assert odd["sent"] > 0 and odd["failed"] > 0, odd
    odd_reasons = " ".join(r[REASON] for r in expected if r[CAMPAIGN] == "audit-odd")
    for part in ("|money expects a number", "unknown currency", "|datetime: expected a date",
                 "undefined variable 'order.total'"):
        assert part in odd_reasons, part


# -- 3. defects ----------------------------------------------------------------------

# A recursive macro, 54 to 75 levels deep by order number and step (the sample
# order, o-9, takes 54: it validates). Python's recursion limit (about 155 levels of
# six frames) used to decide where it failed, a level or two sooner the deeper the
# caller's stack; the render's own limit of 64 nested calls
# (chalicelib/render/limits.py MAX_CALL_DEPTH) now decides, the same everywhere.
# Three steps of one order are three consecutive levels.
RECURSIVE = ("{% macro down(n) %}{% if n > 0 %}{{ down(n - 1) }}{% else %}ok{% endif %}"
             "{% endmacro %}Hi {{ down(54 + (step.id[-1]|int) + ((order.id[2:]|int) + 11)"
             " % 20) }} {{ links.unsubscribe }}")
RECURSIVE_CAMPAIGN: dict[str, Any] = {
    "id": "audit-rec", "trigger": {"event": "order.placed"},
    "steps": [{"id": f"deep{n}", "after": f"PT{n + 2}H", "channel": "sms",
               "template": "au_rec"} for n in range(3)],
    "reentry": {"policy": "once_per_order"},
}


def straddles(outcome_counts: Counter[str]) -> None:
    """A precondition, not the defect: some messages render, some fail."""
    if not (outcome_counts["sent"] and outcome_counts["failed"]):
        pytest.fail(f"precondition: the levels do not straddle the limit: {outcome_counts}")


def test_recursion_depth_agrees(stack: LocalStack, tmp_path: Path) -> None:
    events = generate(customers=30, days=40, seed=4)
    expected, actual = oracle(stack, tmp_path, [RECURSIVE_CAMPAIGN],
                              {"au_rec.sms.j2": RECURSIVE}, events)
    straddles(outcomes(expected, "audit-rec"))
    assert actual == expected, diff(expected, actual)


def test_cli_recursion_same_across_workers(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    campaigns, templates = write_bundle(tmp_path, [RECURSIVE_CAMPAIGN],
                                        {"au_rec.sms.j2": RECURSIVE})
    log = tmp_path / "events.jsonl"
    write_jsonl(generate(customers=700, days=60, seed=3), log)
    if sum(1 for _ in log.open()) <= 2_000:
        pytest.fail("precondition: a log of 2,000 lines or fewer runs in one process")
    common = ("--events", str(log), "--campaigns", str(campaigns), "--templates",
              str(templates), "--render")
    code1, one, err1 = cli(capsys, *common, "--workers", "1")
    code2, two, err2 = cli(capsys, *common, "--workers", "2")
    if code1 or code2:
        pytest.fail(f"precondition: simulate failed: {err1} {err2}")
    straddles(Counter(r["outcome"] for r in one))
    assert one == two


def test_render_is_deterministic(tmp_path: Path) -> None:
    """A message is a function of its customer and order: Jinja's `random` filter is
    not in the sandbox, so validation refuses a template that uses it (it made
    --render differ run to run, and from the sender)."""
    from chalicelib.config.loader import load_bundles
    from chalicelib.render import load_template_dir

    source = ("Hi {{ customer.name|first_name }}"
              "{% if customer.last_delivery_at is none and [true, false]|random %}, since "
              "{{ customer.last_delivery_at|date }}{% endif %} {{ links.unsubscribe }}")
    campaign = {"id": "audit-rnd", "trigger": {"event": "order.placed"},
                "steps": [{"id": "s", "after": "PT2H", "channel": "sms",
                           "template": "au_rnd"}],
                "reentry": {"policy": "once_per_order"}}
    campaign_dir, template_dir = write_bundle(tmp_path, [campaign],
                                              {"au_rnd.sms.j2": source})
    bundles, problems = load_bundles([campaign_dir], load_template_dir(template_dir))
    errors = [str(p) for p in problems if p.severity == "error"]
    assert errors == ["templates/au_rnd.sms.j2: line 1: unknown filter 'random'"], errors
    assert bundles == []


# -- 4. the CLI ----------------------------------------------------------------------

def test_cli_rich_set_same_across_workers(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """Emails, locales, variants, date and idle campaigns: --render gives the same
    rows in one process and in two, and only turns `sent` rows into `failed` ones."""
    campaigns, templates = write_bundle(tmp_path, FEATURES, FEATURE_TEMPLATES)
    log = tmp_path / "events.jsonl"
    write_jsonl(generate(customers=700, days=60, seed=3), log)
    assert sum(1 for _ in log.open()) > 2_000
    common = ("--events", str(log), "--campaigns", str(campaigns), "--templates",
              str(templates))
    _, plain, _ = cli(capsys, *common, "--workers", "1")
    code1, one, _ = cli(capsys, *common, "--render", "--workers", "1")
    code2, two, _ = cli(capsys, *common, "--render", "--workers", "2")
    assert code1 == code2 == 0
    assert one == two
    assert len(plain) == len(one)
    changed: Counter[str] = Counter()
    for before, after in zip(plain, one, strict=True):
        if before != after:
            assert before["outcome"] == "sent" and after["outcome"] == "failed", after
            assert after["reason"].startswith("template error: "), after
            changed[after["campaign"]] += 1
            after = {**after, "outcome": "sent", "reason": ""}
        assert before == after
    assert {"audit-mail", "audit-loc"} <= set(changed), changed


def test_cli_render_with_window(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--from/--to with --render: the rows are those of the window's events, rendered
    from the profiles the window builds (as the API's simulate of that log does)."""
    campaigns, templates = write_bundle(tmp_path, FEATURES[:2], FEATURE_TEMPLATES)
    events = generate(customers=80, days=90, seed=6)
    log = tmp_path / "events.jsonl"
    write_jsonl(events, log)
    start, end = "2026-02-01", "2026-03-15T00:00:00Z"
    code, rows, err = cli(capsys, "--events", str(log), "--campaigns", str(campaigns),
                          "--templates", str(templates), "--render", "--from", start,
                          "--to", end)
    assert code == 0 and err == ""
    assert rows and all("2026-02-01" <= r["at"] <= "2026-03-15T00:00:00Z" for r in rows)
    assert Counter(r["outcome"] for r in rows)["failed"] > 0

    from chalicelib.config.loader import load_bundles
    from chalicelib.render import load_template_dir

    bundles, _ = load_bundles([campaigns], load_template_dir(templates))
    lo, hi = parse_iso(f"{start}T00:00:00Z"), parse_iso(end)
    window = [e for e in events if lo <= parse_iso(e["occurred_at"]) < hi]
    check = RenderCheck({b.campaign.id: b.templates for b in bundles}, "America/New_York",
                        settings.load().public_base_url)
    sim = simulate(io.StringIO("".join(json.dumps(e) + "\n" for e in window)),
                   CampaignSet(b.compiled() for b in bundles), end=hi, send_check=check)
    assert sorted(tuple(r.values()) for r in rows) == sorted(r.as_tuple() for r in sim.rows)


def test_cli_render_uses_timezone_option(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """A customer without a timezone is rendered in --timezone (customer.timezone), as
    the sender renders in the stage's DEFAULT_TIMEZONE."""
    campaign = {"id": "audit-zone", "trigger": {"event": "order.placed"},
                "steps": [{"id": "s", "after": "PT2H", "channel": "sms",
                           "template": "au_zone"}],
                "reentry": {"policy": "once_per_order"}}
    source = ("{% if customer.timezone == 'Asia/Tokyo' %}{{ customer.last_delivery_at|date }}"
              "{% endif %}Hi {{ links.unsubscribe }}")
    campaigns, templates = write_bundle(tmp_path, [campaign], {"au_zone.sms.j2": source})
    events = generate(customers=30, days=40, seed=2)
    zoneless = set()
    for e in events:
        if e["customer"].get("timezone") and e["customer"]["timezone"] != "Asia/Tokyo":
            del e["customer"]["timezone"]
            zoneless.add(e["customer"]["id"])
    log = tmp_path / "events.jsonl"
    write_jsonl(events, log)
    common = ("--events", str(log), "--campaigns", str(campaigns), "--templates",
              str(templates), "--render")
    _, new_york, _ = cli(capsys, *common)
    _, tokyo, _ = cli(capsys, *common, "--timezone", "Asia/Tokyo")
    assert not [r for r in new_york if r["customer"] in zoneless and r["outcome"] == "failed"]
    assert [r for r in tokyo if r["customer"] in zoneless and r["outcome"] == "failed"]


def test_cli_render_bad_templates_folder(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    campaigns, _ = write_bundle(tmp_path, FEATURES[:1], FEATURE_TEMPLATES)
    log = tmp_path / "events.jsonl"
    write_jsonl(generate(customers=5, days=20, seed=1), log)
    not_a_folder = tmp_path / "events.jsonl"
    for folder, problem in ((tmp_path / "missing", "templates folder not found"),
                            (not_a_folder, "is a file, not the templates folder")):
        code, rows, err = cli(capsys, "--events", str(log), "--campaigns", str(campaigns),
                              "--templates", str(folder), "--render")
        assert code == 1 and rows == []
        assert f"{folder}: $: {problem}" in err.splitlines()
        assert "Traceback" not in err


def test_cli_render_links_follow_public_base_url(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI signs links with PUBLIC_BASE_URL from the environment (the default
    https://example.invalid when unset): an SMS at the limit with one base is over it
    with a base one character longer. (docs/campaigns.md does not say so.)"""
    base = "https://aftercare.example.com"
    _, unsub, _ = link_lengths(base)
    pad = MAX_SMS_CHARS - unsub - 1
    campaign = {"id": "audit-base", "trigger": {"event": "order.placed"},
                "steps": [{"id": "s", "after": "PT2H", "channel": "sms",
                           "template": "au_base"}],
                "reentry": {"policy": "once_per_order"}}
    campaigns, templates = write_bundle(
        tmp_path, [campaign], {"au_base.sms.j2": f"{{{{ links.unsubscribe }}}} "
                                                 f"{{{{ 'x' * {pad} }}}}"})
    log = tmp_path / "events.jsonl"
    write_jsonl(generate(customers=10, days=20, seed=1), log)
    common = ("--events", str(log), "--campaigns", str(campaigns), "--templates",
              str(templates), "--render")
    monkeypatch.setenv("PUBLIC_BASE_URL", base)
    _, at_limit, _ = cli(capsys, *common)
    monkeypatch.setenv("PUBLIC_BASE_URL", base + "x")
    _, over, _ = cli(capsys, *common)
    sent = Counter(r["outcome"] for r in at_limit)
    assert sent["sent"] > 0 and sent["failed"] == 0, sent
    assert [r for r in over if r["outcome"] == "failed"]
    assert {r["reason"] for r in over if r["outcome"] == "failed"} == {
        "template error: au_base.sms.j2: SMS body has 1601 characters (limit 1600)"}
