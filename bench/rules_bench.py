"""Benchmark of the rule compiler, against two Python JSON Logic libraries.

``run()`` returns:

- ``rules.evals_per_s``: evaluations per second of our compiled rules, on a set
  of realistic campaign audience rules (thresholds, ``in`` lists, tiers, consent,
  ``days_since``/``is_anniversary``/``years_since``/``contains_any``, and/or/if
  combinations) over 10,000 generated customer contexts (seeded).
- ``rules.portable_evals_per_s``: the same rules with the date operators replaced
  by plain ``var`` lookups of values precomputed into each context (and
  ``contains_any`` by ``or`` of ``in``), so that the peers can run them.
- ``rules.peer.<name>.evals_per_s``: json-logic-qubit and panzi-json-logic on
  exactly those portable rules and contexts.  Both install as the module
  ``json_logic``, so each lives in its own virtualenv under
  ``build/bench-peers/<name>/`` (created on demand) and runs
  ``bench/_peer_rules.py`` as a subprocess.  A peer that cannot be installed is
  reported missing (``rules.peers_missing``) and the ratio uses the other.
- ``rules.ratio_vs_best_peer``: portable evals/s over the best peer's.
- ``rules.peer.<name>.agreement``: share of rules for which the peer selects as
  many contexts as we do (informational: semantics differ at the edges).
- ``jsonlogic.compatible_passed``, ``jsonlogic.full_passed``: conformance.

Every side runs every rule on every context (the same contexts: each reads them
with ``json.loads`` from one workload file) in the same plain loop, context by
context (as the engine does: an event's context is built, then the audience
rules of the campaigns it triggers are evaluated on it), results discarded,
nothing cached; each figure is the best of several runs with the garbage
collector paused.  Evaluation contexts share ``now`` per tick (24 hourly ticks),
as a batch of events or a scheduler tick does.
"""

from __future__ import annotations

import gc
import json
import random
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from chalicelib.rules import compile_rule, truthy  # noqa: E402
from chalicelib.rules.conformance import run_suites  # noqa: E402
from chalicelib.rules.dates import days_since, is_anniversary, years_since  # noqa: E402

SUITES = ROOT.parent / "shared" / "jsonlogic" / "suites"
PEERS_DIR = ROOT / "build" / "bench-peers"
PEERS = ("json-logic-qubit", "panzi-json-logic")
PEER_SCRIPT = Path(__file__).resolve().parent / "_peer_rules.py"

CONTEXTS = 10_000
SEED = 20260301
OUR_REPEAT = 7
PEER_REPEAT = 3

TIERS = ["bronze", "silver", "gold", "platinum"]
LOCALES = ["en-US", "en-GB", "en-CA", "fr-FR", "de-DE", "es-ES", "ja-JP"]
ZONES = ["America/New_York", "America/Los_Angeles", "Europe/London", "Europe/Paris",
         "Asia/Tokyo", "Australia/Sydney", "UTC"]
CATEGORIES = ["appliance", "outdoor", "kitchen", "coffee", "garden", "tools", "toys"]


def _var(path: str) -> dict[str, Any]:
    return {"var": path}


C = "customer."
CONSENT_SMS = _var(C + "consent.sms")
CONSENT_EMAIL = _var(C + "consent.email")
ORDERS = _var(C + "order_count")
SPENT = _var(C + "total_spent")
TIER = _var(C + "attributes.tier")

# name -> (rule with domain operators, portable rule for the peers)
RULES: dict[str, tuple[Any, Any]] = {
    "delivery-checkin": 2 * ({"and": [
        {">=": [ORDERS, 1]},
        {"in": [_var("event.order.category"), ["appliance", "outdoor"]]},
        CONSENT_SMS,
    ]},),
    "gold-loyalty": 2 * ({"and": [
        {"==": [TIER, "gold"]}, CONSENT_EMAIL, {">=": [SPENT, 500]},
    ]},),
    "win-back": (
        {"and": [{">": [{"days_since": [_var(C + "last_order_at")]}, 120]},
                 {">=": [ORDERS, 2]}, CONSENT_EMAIL]},
        {"and": [{">": [_var("derived.days_since_last_order"), 120]},
                 {">=": [ORDERS, 2]}, CONSENT_EMAIL]},
    ),
    "birthday": (
        {"and": [{"is_anniversary": [_var(C + "birthday"), _var(C + "timezone")]},
                 {"or": [CONSENT_SMS, CONSENT_EMAIL]}]},
        {"and": [_var("derived.birthday_today"), {"or": [CONSENT_SMS, CONSENT_EMAIL]}]},
    ),
    "vip": 2 * ({"or": [
        {">=": [SPENT, 2000]},
        {"and": [{"==": [TIER, "platinum"]}, {">=": [ORDERS, 5]}]},
    ]},),
    "english-newsletter": 2 * ({"and": [
        {"in": [_var(C + "locale"), ["en-US", "en-GB", "en-CA"]]},
        CONSENT_EMAIL,
        {"!!": [TIER]},
    ]},),
    "purchase-anniversary": (
        {"and": [{"is_anniversary": [_var(C + "first_order_at"), _var(C + "timezone")]},
                 {">=": [ORDERS, 1]}]},
        {"and": [_var("derived.first_order_anniversary"), {">=": [ORDERS, 1]}]},
    ),
    "big-appliance-order": 2 * ({"and": [
        {">": [_var("event.order.total"), 200]},
        {"some": [_var("event.order.items"), {"==": [_var("category"), "appliance"]}]},
    ]},),
    "tiered-offer": 2 * ({"if": [
        {">=": [ORDERS, 10]}, {"!=": [TIER, "gold"]},
        {">=": [SPENT, 500]}, {">=": [ORDERS, 3]},
        False,
    ]},),
    "coffee-cross-sell": (
        {"and": [{"contains_any": [_var(C + "categories"), ["kitchen", "appliance"]]},
                 {"!": {"in": ["coffee", _var(C + "categories")]}}, CONSENT_EMAIL]},
        {"and": [{"or": [{"in": ["kitchen", _var(C + "categories")]},
                         {"in": ["appliance", _var(C + "categories")]}]},
                 {"!": {"in": ["coffee", _var(C + "categories")]}}, CONSENT_EMAIL]},
    ),
    "nps-detractor": (
        {"and": [{"!==": [_var(C + "last_nps"), None]}, {"<=": [_var(C + "last_nps"), 6]},
                 {"<": [{"days_since": [_var(C + "last_survey_at")]}, 30]}]},
        {"and": [{"!==": [_var(C + "last_nps"), None]}, {"<=": [_var(C + "last_nps"), 6]},
                 {"<": [_var("derived.days_since_survey"), 30]}]},
    ),
    "loyal-mid-spender": (
        {"and": [{">=": [{"years_since": [_var(C + "first_order_at")]}, 2]},
                 {"<=": [100, SPENT, 1000]}]},
        {"and": [{">=": [_var("derived.tenure_years"), 2]}, {"<=": [100, SPENT, 1000]}]},
    ),
}


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def make_contexts(count: int = CONTEXTS, seed: int = SEED) -> list[dict[str, Any]]:
    """Customer contexts as the engine builds them, with precomputed fields."""
    rng = random.Random(seed)
    start = datetime(2026, 3, 1, tzinfo=UTC)
    ticks = [start + timedelta(hours=h) for h in range(24)]
    contexts = []
    for i in range(count):
        now = ticks[i % len(ticks)]
        orders = rng.choice([0, 1, 1, 2, 3, 4, 6, 10, 15])
        customer: dict[str, Any] = {
            "id": f"c-{i}",
            "order_count": orders,
            "total_spent": round(orders * rng.uniform(20, 400), 2),
            "locale": rng.choice(LOCALES),
            "timezone": rng.choice(ZONES),
            "consent": {"sms": rng.random() < 0.6, "email": rng.random() < 0.8},
            "attributes": {"tier": rng.choice(TIERS)} if rng.random() < 0.7 else {},
            "categories": rng.sample(CATEGORIES, rng.randint(0, 3)),
        }
        if rng.random() < 0.8:
            if rng.random() < 0.05:  # some birthdays today
                born = date(rng.randint(1950, 2005), now.month, now.day)
            else:
                born = date(rng.randint(1950, 2005), rng.randint(1, 12), rng.randint(1, 28))
            customer["birthday"] = born.isoformat()
        if orders:
            first = now - timedelta(days=rng.randint(30, 2000), minutes=rng.randint(0, 1440))
            if rng.random() < 0.05:
                first = first.replace(year=now.year - rng.randint(1, 4), month=now.month,
                                      day=now.day)
            customer["first_order_at"] = _iso(first)
            customer["last_order_at"] = _iso(now - timedelta(days=rng.randint(0, 400)))
        else:
            customer["last_order_at"] = None
        if rng.random() < 0.4:
            customer["last_nps"] = rng.randint(0, 10)
            customer["last_survey_at"] = _iso(now - timedelta(days=rng.randint(0, 90)))
        items: list[dict[str, Any]] = [
            {"sku": f"SKU-{rng.randint(1, 500)}", "category": rng.choice(CATEGORIES),
             "quantity": rng.randint(1, 3), "price": round(rng.uniform(5, 300), 2)}
            for _ in range(rng.randint(1, 4))
        ]
        order = {"id": f"o-{i}", "total": round(sum(x["price"] * x["quantity"] for x in items), 2),
                 "currency": "USD", "category": items[0]["category"], "items": items}
        ctx = {"customer": customer,
               "event": {"type": "order.delivered", "order": order},
               "now": _iso(now)}
        ctx["derived"] = {
            "days_since_last_order": days_since(customer["last_order_at"], ctx),
            "birthday_today": is_anniversary(customer.get("birthday"), customer["timezone"], ctx),
            "first_order_anniversary": is_anniversary(
                customer.get("first_order_at"), customer["timezone"], ctx),
            "tenure_years": years_since(customer.get("first_order_at"), ctx),
            "days_since_survey": days_since(customer.get("last_survey_at"), ctx),
        }
        contexts.append(ctx)
    return contexts


def time_ours(functions: list[Callable[[Any], Any]], contexts: list[Any],
              repeat: int = OUR_REPEAT) -> float:
    """Evaluations per second, best of ``repeat`` runs."""
    best = float("inf")
    gc.collect()
    gc.disable()
    try:
        for _ in range(repeat):
            start = time.perf_counter()
            for ctx in contexts:
                for function in functions:
                    function(ctx)
            best = min(best, time.perf_counter() - start)
    finally:
        gc.enable()
    return len(functions) * len(contexts) / best


def _peer_python(name: str) -> Path:
    """The Python of the peer's virtualenv, created and installed on demand."""
    venv = PEERS_DIR / name
    python = venv / "bin" / "python"
    marker = venv / ".installed"
    if not marker.exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True,
                       capture_output=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", name], check=True,
                       capture_output=True, timeout=600)
        marker.write_text(name)
    return python


def time_peer(name: str, workload: Path) -> dict[str, Any] | None:
    """The peer's figures, or None when it cannot be installed or run."""
    try:
        python = _peer_python(name)
        done = subprocess.run([str(python), str(PEER_SCRIPT), str(workload)], check=True,
                              capture_output=True, text=True, timeout=1800)
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        float(result["evals_per_s"])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError, KeyError) as exc:
        print(f"peer {name} missing: {exc}", file=sys.stderr)
        return None
    return result


def run() -> dict[str, float | int]:
    portable_rules = [portable for _, portable in RULES.values()]
    PEERS_DIR.mkdir(parents=True, exist_ok=True)
    workload = PEERS_DIR / "workload.json"
    workload.write_text(json.dumps(
        {"rules": portable_rules, "contexts": make_contexts(), "repeat": PEER_REPEAT}))
    # Every side evaluates the contexts as ``json.loads`` builds them from this one
    # file: the peers read it in their own processes, and so do we here.  The same
    # contexts as the generator builds them (its dicts interleaved in memory with its
    # other allocations) ran 15% slower with the same code on the same machine.
    contexts = json.loads(workload.read_text())["contexts"]
    domain = [compile_rule(rule, path=f"$.{name}") for name, (rule, _) in RULES.items()]
    portable = [compile_rule(rule) for rule in portable_rules]

    out: dict[str, float | int] = {
        "rules.count": len(RULES),
        "rules.contexts": len(contexts),
        "rules.evals_per_s": round(time_ours(domain, contexts)),
        "rules.portable_evals_per_s": round(time_ours(portable, contexts)),
    }
    ours_counts = [sum(truthy(f(ctx)) for ctx in contexts) for f in portable]

    best_peer = 0.0
    missing = 0
    for name in PEERS:
        figures = time_peer(name, workload)
        if figures is None:
            missing += 1
            continue
        rate = float(figures["evals_per_s"])
        out[f"rules.peer.{name}.evals_per_s"] = round(rate)
        agree = sum(a == b for a, b in zip(ours_counts, figures["truthy_counts"], strict=False))
        out[f"rules.peer.{name}.agreement"] = round(agree / len(ours_counts), 3)
        best_peer = max(best_peer, rate)
    out["rules.peers_missing"] = missing
    if best_peer:
        out["rules.ratio_vs_best_peer"] = round(out["rules.portable_evals_per_s"] / best_peer, 2)

    counts = run_suites(SUITES)
    out["jsonlogic.compatible_passed"] = counts["compatible_passed"]
    out["jsonlogic.full_passed"] = counts["full_passed"]
    return out


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
