"""A deterministic (seeded) generator of realistic order and delivery events.

Customers across timezones and locales place orders; orders are delivered a few
days later, some are returned, loyal customers come back, a few update their
profile. Used by the demo, the tests and the benchmarks.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ZONES = [
    ("America/New_York", "en-US", "+1212555"), ("America/Chicago", "en-US", "+1312555"),
    ("America/Los_Angeles", "en-US", "+1415555"), ("America/Mexico_City", "es-MX", "+52555512"),
    ("Europe/Madrid", "es-ES", "+3491555"), ("Europe/Berlin", "de-DE", "+4930555"),
    ("America/Sao_Paulo", "pt-BR", "+551195555"), ("Asia/Tokyo", "en-US", "+8135555"),
    ("Australia/Sydney", "en-US", "+6129555"), ("Pacific/Auckland", "en-US", "+6421555"),
]
FIRST = ["Ana", "Ben", "Chloe", "Diego", "Emma", "Felix", "Grace", "Hiro", "Ines", "Jonas",
         "Kai", "Lena", "Mateo", "Nora", "Omar", "Priya", "Quinn", "Rosa", "Sven", "Tara"]
PRODUCTS = [
    ("KX-200", "Kettle", "appliance", 129.50), ("BL-10", "Blender", "appliance", 89.00),
    ("GR-5", "Grill", "outdoor", 349.00), ("TN-2", "Tent", "outdoor", 219.99),
    ("MG-1", "Mug set", "kitchen", 24.00), ("KN-8", "Knife", "kitchen", 59.90),
    ("FL-3", "Filter pack", "consumable", 14.50),
]


@dataclass(frozen=True, slots=True)
class Customer:
    id: str
    name: str
    email: str
    phone: str
    timezone: str
    locale: str
    birthday: str
    consent_sms: bool
    consent_email: bool
    loyalty: float  # chance of a repeat order each month


def _iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def make_customers(n: int, rng: random.Random) -> list[Customer]:
    out = []
    for i in range(n):
        tz, locale, prefix = ZONES[i % len(ZONES)]
        year = rng.randint(1960, 2004)
        if i % 37 == 5:
            birthday = f"{rng.choice([1984, 1988, 1992, 1996, 2000])}-02-29"
        else:
            birthday = f"{year}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        name = FIRST[i % len(FIRST)]
        out.append(Customer(
            id=f"c-{i:05d}", name=f"{name} {chr(65 + (i * 7) % 26)}.",
            email=f"{name.lower()}.{i}@example.com", phone=f"{prefix}{i % 10000:04d}",
            timezone=tz, locale=locale, birthday=birthday,
            consent_sms=rng.random() < 0.85, consent_email=rng.random() < 0.95,
            loyalty=rng.choice([0.05, 0.15, 0.3, 0.6]),
        ))
    return out


def _customer_block(c: Customer, full: bool) -> dict[str, Any]:
    block: dict[str, Any] = {"id": c.id}
    if full:
        block.update(email=c.email, phone=c.phone, name=c.name, timezone=c.timezone,
                     locale=c.locale, birthday=c.birthday,
                     consent={"sms": c.consent_sms, "email": c.consent_email},
                     attributes={"tier": "gold" if c.loyalty >= 0.3 else "standard"})
    return block


def _order(rng: random.Random, oid: str) -> dict[str, Any]:
    items = []
    total = 0.0
    for sku, name, category, price in rng.sample(PRODUCTS, rng.choice([1, 1, 1, 2, 3])):
        qty = rng.choice([1, 1, 2])
        items.append({"sku": sku, "name": name, "category": category, "quantity": qty,
                      "price": price})
        total += price * qty
    total = round(total, 2)
    return {"id": oid, "total": total, "currency": "USD", "items": items}


def generate(customers: int = 300, start: datetime | None = None, days: int = 120,
             seed: int = 7) -> list[dict[str, Any]]:
    """Events for ``customers`` over ``days`` from ``start``, sorted by time."""
    rng = random.Random(seed)
    start = start or datetime(2026, 1, 5, tzinfo=UTC)
    end = start + timedelta(days=days)
    events: list[dict[str, Any]] = []
    counter = 0
    for c in make_customers(customers, rng):
        t = start + timedelta(minutes=rng.randint(0, days * 24 * 60 // 2))
        first = True
        while t < end:
            counter += 1
            oid = f"o-{counter:06d}"
            order = _order(rng, oid)
            events.append({"id": f"evt-{counter:06d}-p", "type": "order.placed",
                           "occurred_at": _iso(t), "customer": _customer_block(c, first),
                           "order": order, "data": {}})
            delivered = t + timedelta(days=rng.randint(2, 6), hours=rng.randint(0, 10))
            if delivered < end:
                events.append({"id": f"evt-{counter:06d}-d", "type": "order.delivered",
                               "occurred_at": _iso(delivered),
                               "customer": _customer_block(c, True), "order": order,
                               "data": {}})
                if rng.random() < 0.06:
                    returned = delivered + timedelta(days=rng.randint(1, 5))
                    events.append({"id": f"evt-{counter:06d}-r", "type": "order.returned",
                                   "occurred_at": _iso(returned),
                                   "customer": _customer_block(c, False),
                                   "order": {"id": oid}, "data": {}})
            first = False
            gap_days = rng.expovariate(c.loyalty / 30) if c.loyalty else days * 2
            t += timedelta(days=max(3.0, gap_days), minutes=rng.randint(0, 600))
    events.sort(key=lambda e: (e["occurred_at"], e["id"]))
    return events


def write_jsonl(events: list[dict[str, Any]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for e in events:
            fh.write(json.dumps(e, separators=(",", ":")) + "\n")
