"""The differential oracle, over campaign definitions the examples do not cover.

``test_differential.py`` holds `aftercare simulate` and the Lambda pipeline to the
same step decisions with the example campaigns. Here the same comparison runs over
hand-written campaign sets that reach the features the examples leave out: delays
of a day or more written in hours or minutes (``PT30H``, ``P1DT6H``, ``PT2880M``),
``at`` times, ``weekdays``, ``expire_after``, exits by order-scoped and global
events and by rule, goals, a 30% holdout, weighted variants, every re-entry policy,
priorities, date triggers (a leap-day birthday with ``mar1``, the first-order
anniversary), idle triggers, step conditions on event data and order fields, and
audiences with ``days_since`` / ``contains_any``.

The generated log is enriched, deterministically, with what the generator does not
make: event ``data`` (``gift``, ``source``), cancellations, a second delivery of some
orders, imported history (so that first-order anniversaries fall in the log),
birthdays moved to 29 February, tier changes and timezone moves.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from chalicelib.clock import parse_iso
from chalicelib.config.loader import load_bundles
from chalicelib.local.generator import generate
from chalicelib.local.stack import LocalStack
from chalicelib.render import load_template_dir
from tests.conftest import ROOT
from tests.e2e.oracle import Rows, decide_both

Event = dict[str, Any]

# -- the campaign sets -----------------------------------------------------------

EXIT_ORDER = {"events": ["order.returned", "order.cancelled"]}

# Event triggers: delays in hours and minutes past a day, conditions on event data
# and order fields, order-scoped and global exits, an exit rule, holdout, variants.
HOURS_AND_EXITS: list[dict[str, Any]] = [
    {
        "id": "gift-note", "name": "Gift follow-up in hours",
        "trigger": {"event": "order.delivered"},
        "steps": [
            {"id": "nudge", "after": "PT30H", "channel": "sms", "template": "checkin",
             "survey": "csat", "expire_after": "PT3H",
             "condition": {"==": [{"var": "event.data.gift"}, True]}},
            {"id": "followup", "after": "P1DT6H", "channel": "email", "template": "care_tip",
             "expire_after": "P1D",
             "condition": {">=": [{"var": "event.order.total"}, 100]}},
        ],
        "exit": EXIT_ORDER,
        "goal": {"event": "order.placed", "within": "P10D"},
        "holdout_percent": 30,
        "reentry": {"policy": "always"},
        "priority": 5,
    },
    {
        "id": "quick-thanks", "name": "Thanks in minutes, offer two days on",
        "trigger": {"event": "order.placed"},
        "steps": [
            {"id": "thanks", "after": "PT45M", "channel": "email", "template": "loyalty_offer",
             "expire_after": "PT30M"},
            {"id": "later", "after": "PT2880M", "weekdays": ["mon", "wed", "fri"],
             "channel": "email", "template": "loyalty_offer", "expire_after": "PT6H",
             "condition": {"in": [{"var": "event.data.source"}, ["web", "app"]]}},
        ],
        "exit": {"event": "order.cancelled",
                 "rule": {">=": [{"var": "customer.order_count"}, 4]}},
        "goal": {"event": "order.delivered", "within": "PT96H"},
        "variants": [
            {"id": "a", "weight": 70},
            {"id": "b", "weight": 30, "templates": {"thanks": "loyalty_offer_shipping",
                                                    "later": "loyalty_offer_shipping"}},
        ],
        "reentry": {"policy": "once_per_window", "window": "P21D"},
        "priority": 20,
    },
    {
        "id": "first-kitchen", "name": "Once ever, kitchen and consumables",
        "trigger": {"event": "order.delivered"},
        "audience": {"contains_any": [{"var": "event.order.categories"},
                                      ["kitchen", "consumable"]]},
        "steps": [
            {"id": "tip", "after": "P3D", "at": "09:15", "channel": "email",
             "template": "care_tip", "expire_after": "P1D"},
            {"id": "weekend", "after": "P14D", "at": "20:30", "weekdays": ["sat", "sun"],
             "channel": "email", "template": "care_tip_month", "expire_after": "PT12H"},
        ],
        "exit": {"event": "order.placed"},
        "reentry": {"policy": "once"},
        "priority": 1,
    },
    {
        "id": "cancel-sorry", "name": "After a cancellation, once per order",
        "trigger": {"event": "order.cancelled"},
        "audience": {"<=": [{"days_since": [{"var": "customer.first_order_at"}]}, 60]},
        "steps": [
            {"id": "sorry", "after": "PT2H", "channel": "email", "template": "loyalty_offer",
             "expire_after": "PT1H"},
            # Not checkin: a cancellation's order has no items to render.
            {"id": "check", "after": "P1DT6H", "at": "12:00", "channel": "sms",
             "template": "nps", "survey": "ces", "expire_after": "PT2H"},
        ],
        "exit": {"event": "order.placed"},
        "holdout_percent": 30,
        "reentry": {"policy": "once_per_order"},
    },
]

# Date and idle triggers.
DATES_AND_IDLE: list[dict[str, Any]] = [
    {
        "id": "bday-mar1", "name": "Birthday, 29 Feb on 1 March",
        "trigger": {"date": "customer.birthday", "leap_day": "mar1"},
        "audience": {">=": [{"years_since": [{"var": "customer.birthday"}]}, 25]},
        "steps": [
            {"id": "greet", "at": "09:00", "channel": "sms", "template": "birthday",
             "expire_after": "PT12H"},
            {"id": "treat", "after": "PT30H", "channel": "email", "template": "loyalty_offer",
             "expire_after": "P1D"},
        ],
        "exit": {"event": "order.returned"},
        "goal": {"event": "order.placed", "within": "P7D"},
        "holdout_percent": 30,
        "priority": 10,
    },
    {
        "id": "first-anniv", "name": "First order anniversary, A/B",
        "trigger": {"date": "customer.first_order_at"},
        "audience": {">=": [{"var": "customer.order_count"}, 1]},
        "steps": [
            {"id": "thanks", "at": "10:00", "channel": "email", "template": "anniversary",
             "expire_after": "P1D"},
            {"id": "offer", "after": "P1DT6H", "at": "11:00", "weekdays": ["tue", "thu"],
             "channel": "email", "template": "loyalty_offer", "expire_after": "PT8H"},
        ],
        "goal": {"event": "order.placed", "within": "P30D"},
        "variants": [
            {"id": "plain", "weight": 40},
            {"id": "shipping", "weight": 60, "templates": {"offer": "loyalty_offer_shipping"}},
        ],
        "priority": 30,
    },
    {
        "id": "idle-30", "name": "Thirty idle days",
        "trigger": {"idle": "P30D"},
        "audience": {">=": [{"days_since": [{"var": "customer.last_order_at"}]}, 30]},
        "steps": [
            {"id": "miss", "at": "10:30", "channel": "email", "template": "win_back",
             "expire_after": "P2D"},
            {"id": "again", "after": "P7D", "at": "18:00", "weekdays": ["tue", "thu"],
             "channel": "email", "template": "win_back", "expire_after": "P1D",
             "condition": {"==": [{"var": "customer.attributes.tier"}, "standard"]}},
        ],
        "exit": {"rule": {">": [{"var": "customer.order_count"}, 5]}},
        "goal": {"event": "order.placed", "within": "P14D"},
        "holdout_percent": 30,
    },
    {
        "id": "idle-hours", "name": "Idle ten and a half days",
        "trigger": {"idle": "P10DT12H"},
        "steps": [
            {"id": "ping", "channel": "sms", "template": "nps", "survey": "ces",
             "expire_after": "PT6H"},
            {"id": "mail", "after": "PT480H", "channel": "email", "template": "win_back",
             "expire_after": "PT1H"},
        ],
        "exit": {"events": ["order.delivered", "customer.updated"]},
        "priority": 100,
    },
]

# One trigger, many campaigns: every re-entry policy side by side, priorities,
# audiences on profile fields and event data, conditions on the order.
REENTRY: list[dict[str, Any]] = [
    {
        "id": "r-always", "name": "Always",
        "trigger": {"event": "order.delivered"},
        "audience": {"contains_any": [{"var": "customer.products"}, ["GR-5", "TN-2", "KX-200"]]},
        "steps": [
            {"id": "s1", "after": "PT90M", "channel": "email", "template": "care_tip",
             "expire_after": "PT1H"},
        ],
        "exit": EXIT_ORDER,
        "reentry": {"policy": "always"},
        "priority": 3,
    },
    {
        "id": "r-once", "name": "Once",
        "trigger": {"event": "order.delivered"},
        "steps": [
            {"id": "s1", "after": "P2D", "at": "10:00", "channel": "sms", "template": "nps",
             "survey": "nps", "expire_after": "P1D"},
        ],
        "exit": {"event": "order.returned"},
        "goal": {"event": "order.placed", "within": "P45D"},
        "holdout_percent": 30,
        "reentry": {"policy": "once"},
        "priority": 2,
    },
    {
        "id": "r-window", "name": "Once per 45 days",
        "trigger": {"event": "order.delivered"},
        "audience": {"in": [{"var": "event.data.source"}, ["web", "store"]]},
        "steps": [
            {"id": "s1", "after": "P1DT6H", "at": "19:30", "weekdays": ["mon", "tue", "wed"],
             "channel": "email", "template": "care_tip", "expire_after": "PT20H"},
            {"id": "s2", "after": "PT168H", "channel": "email", "template": "care_tip_month",
             "expire_after": "P2D",
             "condition": {"contains_any": [{"var": "event.order.categories"},
                                            ["appliance"]]}},
        ],
        "exit": {"rule": {"or": [{"==": [{"var": "customer.attributes.tier"}, "vip"]},
                                 {">=": [{"var": "customer.order_count"}, 4]}]}},
        "variants": [
            {"id": "x", "weight": 1},
            {"id": "y", "weight": 3, "templates": {"s1": "care_tip_month"}},
        ],
        "reentry": {"policy": "once_per_window", "window": "P45D"},
        "priority": 4,
    },
    {
        "id": "r-order", "name": "Once per order",
        "trigger": {"event": "order.delivered"},
        "audience": {"and": [
            {">=": [{"days_since": [{"var": "customer.first_order_at"}]}, 3]},
            {"!": [{"contains_any": [{"var": "event.order.categories"}, ["outdoor"]]}]},
        ]},
        "steps": [
            {"id": "s1", "after": "PT26H", "at": "08:30", "channel": "sms",
             "template": "checkin", "expire_after": "PT4H",
             "condition": {"or": [{"var": "event.data.gift"},
                                  {">": [{"var": "event.order.total"}, 60]}]}},
        ],
        "exit": EXIT_ORDER,
        "goal": {"event": "order.placed", "within": "PT240H"},
        "holdout_percent": 30,
        "reentry": {"policy": "once_per_order"},
        "priority": 1,
    },
]

# Timezone moves: steps pending across a customer's change of zone, whole days at a
# local time, elapsed hours through quiet hours, an `at` inside quiet hours.
ZONE_MOVES: list[dict[str, Any]] = [
    {
        "id": "z-checkin", "name": "Pending across zone moves",
        "trigger": {"event": "order.delivered"},
        "steps": [
            {"id": "a", "after": "P2D", "at": "10:00", "channel": "sms", "template": "checkin",
             "expire_after": "P2D"},
            {"id": "b", "after": "PT200H", "channel": "email", "template": "care_tip",
             "expire_after": "PT30M"},
            {"id": "c", "after": "P9D", "at": "21:30", "weekdays": ["fri", "sat"],
             "channel": "email", "template": "care_tip_month", "expire_after": "PT10H"},
        ],
        "exit": EXIT_ORDER,
        "goal": {"event": "order.placed", "within": "P20D"},
        "holdout_percent": 30,
        "reentry": {"policy": "always"},
        "priority": 7,
    },
    {
        "id": "z-placed", "name": "Weekend offer, a day and a minute on",
        "trigger": {"event": "order.placed"},
        "audience": {"<": [{"days_since": [{"var": "customer.last_delivery_at"}]}, 40]},
        "steps": [
            {"id": "m", "after": "PT1441M", "weekdays": ["sat", "sun"], "channel": "email",
             "template": "loyalty_offer", "expire_after": "PT2H"},
        ],
        "exit": {"event": "customer.updated"},
        "goal": {"event": "order.delivered", "within": "P5D"},
        "variants": [
            {"id": "one", "weight": 1},
            {"id": "two", "weight": 1, "templates": {"m": "loyalty_offer_shipping"}},
        ],
        "reentry": {"policy": "once_per_window", "window": "P7D"},
        "priority": 8,
    },
    {
        "id": "z-bday", "name": "Birthday, the next morning too",
        "trigger": {"date": "customer.birthday"},
        "steps": [
            {"id": "hi", "at": "08:00", "channel": "sms", "template": "birthday",
             "expire_after": "PT20H"},
            {"id": "next", "after": "PT36H", "channel": "email", "template": "loyalty_offer",
             "expire_after": "PT30M"},
        ],
        "exit": {"rule": {"==": [{"var": "customer.attributes.tier"}, "vip"]}},
        "priority": 9,
    },
]

SETS: dict[str, list[dict[str, Any]]] = {
    "hours-and-exits": HOURS_AND_EXITS,
    "dates-and-idle": DATES_AND_IDLE,
    "reentry": REENTRY,
    "zone-moves": ZONE_MOVES,
}
# Warnings a set is allowed (the rest of validation must be clean).
EXPECTED_WARNINGS = ("quiet hours",)


def write_set(campaigns: list[dict[str, Any]], folder: Path) -> Path:
    """The set as campaign files, checked with the real loader (no error, no warning)."""
    folder.mkdir(parents=True, exist_ok=True)
    for c in campaigns:
        (folder / f"{c['id']}.json").write_text(json.dumps(c, indent=1))
    bundles, problems = load_bundles([folder], load_template_dir(ROOT / "templates"))
    unexpected = [p for p in problems if p.severity == "error"
                  or not any(w in str(p) for w in EXPECTED_WARNINGS)]
    assert not unexpected, [str(p) for p in unexpected]
    assert sorted(b.campaign.id for b in bundles) == sorted(c["id"] for c in campaigns)
    return folder


# -- the log -------------------------------------------------------------------

ZONES = ["Asia/Kolkata", "America/Denver", "Europe/London", "Pacific/Auckland"]


def _iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def enrich(events: list[Event], seed: int) -> list[Event]:
    """Add what the generator does not make, deterministically from ``seed``."""
    rng = random.Random(seed * 7919 + 1)
    out: list[Event] = []
    extra = 0

    def new(etype: str, at: datetime, customer: dict[str, Any], **rest: Any) -> None:
        nonlocal extra
        extra += 1
        out.append({"id": f"evt-x{extra:05d}", "type": etype, "occurred_at": _iso(at),
                    "customer": customer, **rest})

    cancelled: set[str] = set()
    first_seen: dict[str, datetime] = {}
    for e in events:
        e = json.loads(json.dumps(e))
        cid = e["customer"]["id"]
        at = parse_iso(e["occurred_at"])
        first_seen.setdefault(cid, at)
        oid = (e.get("order") or {}).get("id")
        if e["type"] in ("order.placed", "order.delivered"):
            e["data"] = {"gift": rng.random() < 0.3,
                         "source": rng.choice(["web", "app", "store"]),
                         "note": "x" * rng.randint(0, 5)}
        if e["type"] == "order.placed" and rng.random() < 0.08:
            cancelled.add(oid)
            new("order.cancelled", at + timedelta(hours=rng.randint(1, 40)), {"id": cid},
                order={"id": oid}, data={"reason": "changed mind"})
        if oid in cancelled and e["type"] == "order.delivered" and rng.random() < 0.5:
            continue  # most cancelled orders are never delivered
        out.append(e)
        if e["type"] == "order.delivered" and rng.random() < 0.07:
            # Delivered again (a second parcel): the same order, a new event.
            new("order.delivered", at + timedelta(hours=rng.randint(20, 60)), {"id": cid},
                order=e["order"], data={"gift": False, "source": "store"})
    customers = sorted(first_seen)
    for i, cid in enumerate(customers):
        start = first_seen[cid]
        if i % 3 == 0:
            # Imported history: a first order about a year before the log.
            when = datetime(2025, 1, 6, tzinfo=UTC) + timedelta(
                days=rng.randint(0, 110), hours=rng.randint(0, 23))
            new("order.imported", when, {"id": cid},
                order={"id": f"hist-{cid}", "total": 42.0, "currency": "USD",
                       "items": [{"sku": "MG-1", "category": "kitchen", "quantity": 1,
                                  "price": 42.0}]}, data={})
        if i % 5 == 1:
            new("customer.updated", start + timedelta(hours=1),
                {"id": cid, "birthday": rng.choice(["1988-02-29", "1996-02-29", "1970-03-01"])})
        if i % 4 == 2:
            new("customer.updated", start + timedelta(days=rng.randint(5, 60)),
                {"id": cid, "attributes": {"tier": rng.choice(["vip", "standard"])}})
        if i % 6 == 3:
            new("customer.updated", start + timedelta(days=rng.randint(1, 40),
                                                      minutes=rng.randint(0, 1439)),
                {"id": cid, "timezone": ZONES[i % len(ZONES)]})
        if i % 3 == 2:
            # A birthday learnt on the day itself, often after its send time.
            when = start + timedelta(days=rng.randint(2, 50), hours=rng.randint(0, 23))
            new("customer.updated", when,
                {"id": cid, "birthday": f"1979-{when.month:02d}-{when.day:02d}"})
    out.sort(key=lambda e: (e["occurred_at"], e["id"]))
    return out


def make_log(seed: int, customers: int, days: int) -> list[Event]:
    return enrich(generate(customers=customers, days=days, seed=seed), seed)


# -- the comparison --------------------------------------------------------------

def run_both(stack: LocalStack, folder: Path, events: list[Event],
             end: datetime) -> tuple[Rows, Rows]:
    """Simulate and the pipeline on the same log: their step rows, sorted."""
    stack.push_campaigns(folder, ROOT / "templates")
    return decide_both(stack, events, end)


def _diff(expected: Rows, actual: Rows) -> str:
    missing = Counter(expected) - Counter(actual)
    extra = Counter(actual) - Counter(expected)
    return ("only in simulate:\n" + "\n".join(map(str, sorted(missing)))
            + "\nonly in the pipeline:\n" + "\n".join(map(str, sorted(extra))))


def _outcomes(rows: Rows, campaign: str | None = None) -> Counter[str]:
    return Counter(r[4] for r in rows if campaign is None or r[1] == campaign)


def _reasons(rows: Rows) -> Counter[str]:
    return Counter(f"{r[4]}: {r[5]}" for r in rows)


def check_hours_and_exits(rows: Rows) -> None:
    out = _outcomes(rows)
    assert out["sent"] > 20 and out["held_out"] > 0 and out["suppressed"] > 0
    reasons = _reasons(rows)
    assert reasons["skipped: step condition false"] > 0
    assert reasons["exited: order.cancelled"] > 0
    assert reasons["exited: exit rule"] > 0
    assert {"gift-note", "quick-thanks", "first-kitchen", "cancel-sorry"} <= {
        r[1] for r in rows if r[4] == "sent"}
    assert {r[7] for r in rows if r[1] == "quick-thanks" and r[4] == "sent"} == {
        "loyalty_offer", "loyalty_offer_shipping"}


def check_dates_and_idle(rows: Rows) -> None:
    out = _outcomes(rows)
    assert out["sent"] > 10 and out["held_out"] > 0
    assert {"bday-mar1", "first-anniv", "idle-30", "idle-hours"} <= {
        r[1] for r in rows if r[4] == "sent"}
    # The 29 February birthdays are greeted on 1 March 2026.
    assert any(r[1] == "bday-mar1" and r[3].startswith("2026-03-0") for r in rows)
    reasons = _reasons(rows)
    assert any(k.startswith("exited:") for k in reasons)


def check_reentry(rows: Rows) -> None:
    out = _outcomes(rows)
    assert out["sent"] > 20 and out["held_out"] > 0 and out["suppressed"] > 0
    sent = Counter(r[1] for r in rows if r[4] == "sent")
    assert {"r-always", "r-once", "r-window", "r-order"} <= set(sent)
    # once: at most one enrollment per customer.
    per_customer = Counter((r[0], r[1]) for r in rows if r[1] == "r-once")
    assert max(per_customer.values()) == 1
    assert any(v > 1 for (_, c), v in Counter((r[0], r[1]) for r in rows).items()
               if c == "r-always")
    reasons = _reasons(rows)
    assert reasons["skipped: step condition false"] > 0
    assert reasons["exited: exit rule"] > 0


def check_zone_moves(rows: Rows) -> None:
    out = _outcomes(rows)
    assert out["sent"] > 20 and out["held_out"] > 0
    assert {"z-checkin", "z-placed", "z-bday"} <= {r[1] for r in rows if r[4] == "sent"}
    reasons = _reasons(rows)
    assert reasons["exited: customer.updated"] > 0


CHECKS: dict[str, Callable[[Rows], None]] = {
    "hours-and-exits": check_hours_and_exits,
    "dates-and-idle": check_dates_and_idle,
    "reentry": check_reentry,
    "zone-moves": check_zone_moves,
}

# (customers, days) per set: the date and idle set makes the most ticks.
SIZES: dict[str, tuple[int, int]] = {"dates-and-idle": (24, 110)}
DEFAULT_SIZE = (30, 120)


@pytest.mark.parametrize("seed", [11, 29])
@pytest.mark.parametrize("name", list(SETS))
def test_random_sets_decide_the_same(stack: LocalStack, tmp_path: Path, name: str,
                                     seed: int) -> None:
    folder = write_set(SETS[name], tmp_path / name)
    events = make_log(seed, *SIZES.get(name, DEFAULT_SIZE))
    # Duplicates: both sides must shrug them off the same way.
    events += [events[5], events[17]]
    end = parse_iso(events[-3]["occurred_at"]) + timedelta(days=40)

    expected, actual = run_both(stack, folder, events, end)
    assert actual == expected, _diff(expected, actual)
    CHECKS[name](expected)
