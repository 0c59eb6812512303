"""Fold an event into a customer profile (a plain dict), purely.

Events arrive late, twice and out of order; every rule here is order-independent
where it can be: times keep their maximum (or minimum for "first"), orders are
counted once by order id whichever of placed/delivered comes first, a cancelled
order is never counted whichever of its events comes first (docs/events.md), and
consent follows the rules in DESIGN.md (a later ``consent: true`` never lifts an
opt-out).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from chalicelib.clock import iso

MAX_ORDERS_KEPT = 200
MAX_PRODUCTS_KEPT = 100
# A customer item holds the profile (compact JSON) beside a few short attributes;
# DynamoDB refuses an item over 400 KB (409,600 bytes), names included.
MAX_PROFILE_BYTES = 380_000
Profile = dict[str, Any]
_CONTACT = ("email", "phone", "name", "timezone", "locale", "birthday")
# Every key a profile can have (rules read it as `customer`); a test replays a log
# and checks no profile holds another.
PROFILE_FIELDS = frozenset({
    "id", "attributes", "consent", "order_count", "total_spent", "orders", "products",
    "last_events", "enrollments", *_CONTACT, "currency", "first_order_at",
    "last_order_at", "last_delivery_at", "created_at", "updated_at", "pruned_orders",
})


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
    opt-out is on record. The result does not depend on the order the evidence
    arrives in (late evidence of an older opt-out does not undo a newer explicit
    opt-in; a newer plain grant does not hide an explicit one from a later check).
    """
    # Decided on (granted, at, explicit) first; the record dict is built only when
    # it wins (most events repeat consent the profile already holds).
    if isinstance(value, bool):
        granted, when, explicit = value, at, False
    elif isinstance(value, dict) and isinstance(value.get("granted"), bool):
        granted = value["granted"]
        when = str(value.get("at") or at)
        explicit = value.get("explicit") is True  # only the JSON true, never "false"
    else:
        return current
    if current is not None:
        if not granted:
            # An opt-out outranks every grant but an explicit opt-in newer than it
            # (late evidence of an older opt-out does not undo a START that followed).
            if current["granted"]:
                keep = bool(current.get("explicit")) and current["at"] > when
            else:
                keep = when < current["at"]
        elif not current["granted"]:
            keep = not (explicit and when > current["at"])
        elif explicit != bool(current.get("explicit")):
            # Of two grants an explicit one is kept, whatever their times: it is what
            # an opt-out older than it must not undo, in any order of arrival.
            keep = not explicit
        else:
            keep = current["at"] >= when
        if keep:
            return current
    source = "event" if isinstance(value, bool) else str(value.get("source") or "event")
    return {"granted": granted, "at": when, "source": source, "explicit": explicit}


def _same(a: Any, b: Any) -> bool:
    """Writing ``b`` over ``a`` changes nothing (the same object, or equal strings)."""
    return a is b or (type(a) is str and type(b) is str and a == b)


def _apply_customer(profile: Profile, customer: Mapping[str, Any], at: str) -> None:
    # The nested dicts are shared with the input profile and copied only when an
    # event changes them (copy-on-write); the result is the same as copying always.
    fresher = at >= profile.get("updated_at", "")
    for key in _CONTACT:
        value = customer.get(key)
        if value is not None and (fresher or key not in profile):
            profile[key] = value
    attrs = customer.get("attributes")
    if attrs:
        current = profile.get("attributes")
        merged = current if current else {}
        for key, value in attrs.items():
            if (fresher or key not in merged) and not (key in merged
                                                       and _same(merged[key], value)):
                if merged is current:
                    merged = dict(current)
                merged[key] = value
        if merged is not current:
            profile["attributes"] = merged
    consent = customer.get("consent")
    if consent:
        current = profile.get("consent")
        records = current if current else {}
        for channel, value in consent.items():
            before = records.get(channel)
            merged_record = merge_consent(before, value, at)
            if merged_record is not None and merged_record is not before:
                if records is current:
                    records = dict(current)
                records[channel] = merged_record
        if records is not current:
            profile["consent"] = records


def order_scoped(event_type: str) -> bool:
    """Whether an event of this type is about one existing order (``order.delivered``,
    ``order.returned``, ``order.cancelled``...): as an exit it ends only the enrollment
    made for that order. ``order.placed`` starts an order, so it is not."""
    return event_type.startswith("order.") and event_type != "order.placed"


def _prune(profile: Profile, orders: dict[str, Any]) -> None:
    """Keep the newest ``MAX_ORDERS_KEPT`` orders: by the order's time, or for one seen
    only by its return or cancellation, by the time of that event. The ids of those
    dropped are remembered (hashed, :func:`_pruned`), so that an event of one seen
    again (a re-import or a replay after its event marker expired) counts nothing."""
    dropped = []
    while len(orders) > MAX_ORDERS_KEPT:
        oldest = min(orders, key=lambda k: orders[k].get("at")
                     or min((orders[k].get("events") or {}).values(), default=""))
        del orders[oldest]
        dropped.append(_order_token(oldest))
    if dropped:
        kept = (profile.get("pruned_orders") or "") + "".join(dropped)
        profile["pruned_orders"] = kept[-MAX_PRUNED_KEPT * _TOKEN:]


# Pruned order ids: 8 characters each (48 bits of an unkeyed hash, base64url), one
# string, the oldest dropped first past MAX_PRUNED_KEPT (16,000 characters: every
# event of such a customer rewrites them, at 1 write unit per KB).
MAX_PRUNED_KEPT = 2_000
_TOKEN = 8


def _order_token(order_id: str) -> str:
    digest = hashlib.blake2b(order_id.encode("utf-8", "surrogatepass"), digest_size=6,
                             person=b"aftercare-order").digest()
    return base64.urlsafe_b64encode(digest).decode("ascii")


def _pruned(profile: Profile, order_id: str) -> bool:
    """Whether ``order_id`` is among the orders pruned from the profile."""
    tokens = profile.get("pruned_orders")
    if not tokens:
        return False
    token = _order_token(order_id)
    at = tokens.find(token)
    while at != -1:
        if at % _TOKEN == 0:
            return True
        at = tokens.find(token, at + 1)
    return False


def _counted(order: Mapping[str, Any]) -> bool:
    """Whether an order record is a purchase: seen placed or delivered, not cancelled
    (``cancelled`` is only ever written as true)."""
    return "at" in order and "cancelled" not in order


def _recompute_order_times(profile: Profile, orders: Mapping[str, Any], gone: str) -> None:
    """``last_order_at``/``first_order_at`` after the counted order placed at ``gone``
    stopped counting: from the orders still counted among those kept (the newest
    ``MAX_ORDERS_KEPT``). With none left, a customer with no order counted has neither;
    one whose other orders were all pruned keeps the times as they were."""
    last, first = profile.get("last_order_at"), profile.get("first_order_at")
    if gone != last and gone != first:
        return  # another order holds both
    times = [o["at"] for o in orders.values() if _counted(o)]
    if times:
        if gone == last:
            profile["last_order_at"] = max(times)
        if gone == first:
            profile["first_order_at"] = min(times)
    elif not profile.get("order_count"):
        profile.pop("last_order_at", None)
        profile.pop("first_order_at", None)


def _uncount(profile: Profile, orders: Mapping[str, Any], order: Mapping[str, Any]) -> None:
    """Take a counted order, now cancelled, out of the aggregates. Its products stay
    listed, and ``last_delivery_at`` (a delivery did happen) is left as it is."""
    profile["order_count"] = max(0, int(profile.get("order_count", 0)) - 1)
    profile["total_spent"] = round(
        float(profile.get("total_spent", 0)) - float(order.get("total") or 0), 2)
    _recompute_order_times(profile, orders, order["at"])


def _add_products(profile: Profile, items: Any) -> None:
    products = list(profile.get("products") or [])
    profile["products"] = products
    for item in items:
        sku = item.get("sku") if isinstance(item, dict) else None
        if isinstance(sku, str) and sku not in products:
            products.append(sku)
    del products[:-MAX_PRODUCTS_KEPT]


def _apply_order(profile: Profile, event_type: str, order: Mapping[str, Any], at: str) -> None:
    orders: dict[str, Any] = profile.get("orders") or {}
    if not orders:
        orders = profile["orders"] = {}
    order_id = order["id"]
    known = orders.get(order_id)
    if order_scoped(event_type):
        # The order's own events (first time of each type), for order-scoped exits.
        # Copied on write, as below.
        seen = known.get("events") if known is not None else None
        if seen is None or event_type not in seen or at < seen[event_type]:
            record = {**known} if known is not None else {}
            record["events"] = {**(seen or {}), event_type: at}
            if event_type == "order.returned":
                record["returned"] = True
            elif event_type == "order.cancelled":
                record["cancelled"] = True
            orders = profile["orders"] = dict(orders)
            orders[order_id] = record
            _prune(profile, orders)
            if event_type == "order.cancelled" and known is not None and _counted(known):
                _uncount(profile, orders, known)
            known = record
    if event_type == "order.returned" or event_type == "order.cancelled":
        return  # a return or a cancellation is not a purchase: nothing below changes
    if known is not None and "at" in known and at >= known["at"]:
        record = known  # a repeat (delivered after placed): the orders are unchanged
    elif known is None or "at" not in known:  # new (or only its return/cancel was seen)
        orders = profile["orders"] = dict(orders)
        total = float(order.get("total") or 0)
        orders[order_id] = record = {**(known or {}), "total": total, "at": at}
        if "cancelled" not in record:
            profile["order_count"] = int(profile.get("order_count", 0)) + 1
            profile["total_spent"] = round(float(profile.get("total_spent", 0)) + total, 2)
        # Currency and products are those of every order seen placed or delivered,
        # cancelled or not (so they do not depend on the order events' arrival order).
        if order.get("currency"):
            profile["currency"] = order["currency"]
        _prune(profile, orders)
        _add_products(profile, order.get("items") or ())
    else:
        orders = profile["orders"] = dict(orders)
        orders[order_id] = record = {**known, "at": at}  # placed arrived after delivered
        if "cancelled" not in record:
            # The order's time moved back: the last order may now be another one (or
            # this one, earlier), as if the events had come in order.
            profile["last_order_at"] = max(o["at"] for o in orders.values() if _counted(o))
    if event_type == "order.delivered":
        profile["last_delivery_at"] = _later(profile.get("last_delivery_at"), at)
    if "cancelled" in record:
        return  # a cancelled order is not a purchase, whenever its cancellation came
    placed_at = record["at"]
    profile["last_order_at"] = _later(profile.get("last_order_at"), placed_at)
    first = profile.get("first_order_at")
    profile["first_order_at"] = placed_at if first is None else min(first, placed_at)


def apply_event(profile: Profile, event: Mapping[str, Any], at: datetime) -> Profile:
    """Return a new profile with ``event`` folded in (the input is not modified)."""
    out = dict(profile)
    stamp = iso(at)
    _apply_customer(out, event["customer"], stamp)
    order = event.get("order")
    # An order pruned from the profile is older than every order kept, and was counted
    # (or not) when it was seen: its events change nothing.
    if order is not None and (order["id"] in (out.get("orders") or {})
                              or not _pruned(out, order["id"])):
        _apply_order(out, event["type"], order, stamp)
    last = dict(out.get("last_events") or {})
    last[event["type"]] = _later(last.get(event["type"]), stamp)
    out["last_events"] = last
    out["updated_at"] = _later(out.get("updated_at"), stamp)
    out.setdefault("created_at", stamp)
    return out


def profile_size(profile: Profile) -> int:
    """The bytes of a profile as the customers table stores it (compact JSON)."""
    return len(json.dumps(profile, separators=(",", ":")).encode("utf-8"))


def profile_size_problem(profile: Profile, size: int | None = None) -> str | None:
    """Why a profile cannot be stored (over ``MAX_PROFILE_BYTES``), or None.
    ``size``: its :func:`profile_size`, when measured already."""
    if size is None:
        size = profile_size(profile)
    if size <= MAX_PROFILE_BYTES:
        return None
    return (f"$.customer: the customer's profile would be {size} bytes with this event, "
            f"over the {MAX_PROFILE_BYTES} a DynamoDB item holds: keep large data "
            f"(notes, documents) out of customer attributes")
