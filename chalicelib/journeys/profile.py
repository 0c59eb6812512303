"""Fold an event into a customer profile (a plain dict), purely.

Events arrive late, twice and out of order; every rule here is order-independent
where it can be: times keep their maximum (or minimum for "first"), orders are
counted once by order id whichever of placed/delivered comes first, and consent
follows the rules in DESIGN.md (a later ``consent: true`` never lifts an opt-out).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from chalicelib.clock import iso

MAX_ORDERS_KEPT = 200
MAX_PRODUCTS_KEPT = 100
Profile = dict[str, Any]
_CONTACT = ("email", "phone", "name", "timezone", "locale", "birthday")


def new_profile(customer_id: str) -> Profile:
    return {
        "id": customer_id,
        "attributes": {},
        "consent": {},
        "order_count": 0,
        "total_spent": 0.0,
        "orders": {},
        "products": [],
        "last_events": {},
        "enrollments": {},
    }


def _later(a: str | None, b: str | None) -> str | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


def merge_consent(current: dict[str, Any] | None, value: Any, at: str) -> dict[str, Any] | None:
    """The consent record after seeing ``value`` (bool or object) as evidence at ``at``.

    An opt-out is only lifted by a newer *explicit* opt-in (``{"granted": true,
    "explicit": true}``, or an inbound START); plain ``true`` grants only where no
    opt-out is on record.
    """
    if isinstance(value, bool):
        record = {"granted": value, "at": at, "source": "event", "explicit": False}
    elif isinstance(value, dict) and isinstance(value.get("granted"), bool):
        record = {
            "granted": value["granted"],
            "at": str(value.get("at") or at),
            "source": str(value.get("source") or "event"),
            "explicit": bool(value.get("explicit", False)),
        }
    else:
        return current
    if current is None:
        return record
    if not record["granted"]:
        return record if record["at"] >= current["at"] or current["granted"] else current
    if not current["granted"]:
        explicit_and_newer = record["explicit"] and record["at"] > current["at"]
        return record if explicit_and_newer else current
    return current if current["at"] >= record["at"] else record


def _apply_customer(profile: Profile, customer: dict[str, Any], at: str) -> None:
    fresher = at >= profile.get("updated_at", "")
    for key in _CONTACT:
        value = customer.get(key)
        if value is not None and (fresher or key not in profile):
            profile[key] = value
    attrs = customer.get("attributes")
    if attrs:
        merged = dict(profile.get("attributes") or {})
        for key, value in attrs.items():
            if fresher or key not in merged:
                merged[key] = value
        profile["attributes"] = merged
    consent = customer.get("consent")
    if consent:
        records = dict(profile.get("consent") or {})
        for channel, value in consent.items():
            merged_record = merge_consent(records.get(channel), value, at)
            if merged_record is not None:
                records[channel] = merged_record
        profile["consent"] = records


def _apply_order(profile: Profile, event_type: str, order: dict[str, Any], at: str) -> None:
    orders: dict[str, Any] = dict(profile.get("orders") or {})
    profile["orders"] = orders
    order_id = order["id"]
    known = orders.get(order_id)
    if event_type == "order.returned":
        if known is not None and not known.get("returned"):
            orders[order_id] = {**known, "returned": True}
        return
    if known is None:
        total = float(order.get("total") or 0)
        orders[order_id] = {"total": total, "at": at}
        profile["order_count"] = int(profile.get("order_count", 0)) + 1
        profile["total_spent"] = round(float(profile.get("total_spent", 0)) + total, 2)
        if order.get("currency"):
            profile["currency"] = order["currency"]
        if len(orders) > MAX_ORDERS_KEPT:
            oldest = min(orders, key=lambda k: orders[k]["at"])
            del orders[oldest]
        products = list(profile.get("products") or [])
        profile["products"] = products
        for item in order.get("items") or ():
            sku = item.get("sku") if isinstance(item, dict) else None
            if isinstance(sku, str) and sku not in products:
                products.append(sku)
        del products[:-MAX_PRODUCTS_KEPT]
    elif at < known["at"]:
        orders[order_id] = {**known, "at": at}  # placed arrived after delivered
    placed_at = orders[order_id]["at"]
    profile["last_order_at"] = _later(profile.get("last_order_at"), placed_at)
    first = profile.get("first_order_at")
    profile["first_order_at"] = placed_at if first is None else min(first, placed_at)
    if event_type == "order.delivered":
        profile["last_delivery_at"] = _later(profile.get("last_delivery_at"), at)


def apply_event(profile: Profile, event: dict[str, Any], at: datetime) -> Profile:
    """Return a new profile with ``event`` folded in (the input is not modified)."""
    out = dict(profile)
    stamp = iso(at)
    _apply_customer(out, event["customer"], stamp)
    order = event.get("order")
    if order is not None:
        _apply_order(out, event["type"], order, stamp)
    last = dict(out.get("last_events") or {})
    last[event["type"]] = _later(last.get(event["type"]), stamp)
    out["last_events"] = last
    out["updated_at"] = _later(out.get("updated_at"), stamp)
    out.setdefault("created_at", stamp)
    return out
