from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from chalicelib.journeys.profile import (
    MAX_ORDERS_KEPT,
    apply_event,
    merge_consent,
    new_profile,
)

T1 = datetime(2026, 1, 1, tzinfo=UTC)
T2 = datetime(2026, 1, 2, tzinfo=UTC)


def ev(etype: str, order_id: str | None = None, **customer: object) -> dict:
    e: dict = {"id": "e", "type": etype, "customer": {"id": "c1", **customer}}
    if order_id:
        e["order"] = {"id": order_id, "total": 10.0, "items": [{"sku": "A"}]}
    return e


def test_order_counted_once_whichever_event_arrives_first() -> None:
    p = apply_event(new_profile("c1"), ev("order.delivered", "o1"), T2)
    p = apply_event(p, ev("order.placed", "o1"), T1)
    assert p["order_count"] == 1 and p["total_spent"] == 10.0
    assert p["first_order_at"] == "2026-01-01T00:00:00Z"
    assert p["last_delivery_at"] == "2026-01-02T00:00:00Z"


def test_a_return_before_its_order_is_kept_and_the_order_counted_once_later() -> None:
    p = apply_event(new_profile("c1"), ev("order.returned", "o1"), T1)
    assert p["order_count"] == 0 and "last_order_at" not in p
    assert p["orders"]["o1"] == {"returned": True,
                                 "events": {"order.returned": "2026-01-01T00:00:00Z"}}
    p = apply_event(p, ev("order.delivered", "o1"), T2)
    p = apply_event(p, ev("order.placed", "o1"), T1)
    assert p["order_count"] == 1 and p["total_spent"] == 10.0
    assert p["orders"]["o1"]["returned"] is True and p["orders"]["o1"]["at"] == \
        "2026-01-01T00:00:00Z"
    assert set(p["orders"]["o1"]["events"]) == {"order.returned", "order.delivered"}


def test_orders_kept_are_bounded_whatever_their_events() -> None:
    p = new_profile("c1")
    for i in range(MAX_ORDERS_KEPT + 30):
        kind = "order.returned" if i % 2 else "order.placed"
        p = apply_event(p, ev(kind, f"o{i}"), datetime(2026, 1, 1, tzinfo=UTC) +
                        timedelta(minutes=i))
    assert len(p["orders"]) == MAX_ORDERS_KEPT


def test_apply_event_does_not_mutate_input() -> None:
    p0 = new_profile("c1")
    apply_event(p0, ev("order.placed", "o1"), T1)
    assert p0["orders"] == {} and p0["order_count"] == 0


def test_later_true_never_lifts_an_opt_out() -> None:
    out = merge_consent(None, False, "2026-01-02T00:00:00Z")
    assert merge_consent(out, True, "2026-01-03T00:00:00Z") == out


def test_explicit_newer_opt_in_lifts_an_opt_out() -> None:
    out = merge_consent(None, False, "2026-01-02T00:00:00Z")
    back = merge_consent(out, {"granted": True, "explicit": True, "source": "keyword",
                               "at": "2026-01-03T00:00:00Z"}, "2026-01-03T00:00:00Z")
    assert back is not None and back["granted"] is True and back["source"] == "keyword"
    older = merge_consent(out, {"granted": True, "explicit": True,
                                "at": "2026-01-01T00:00:00Z"}, "2026-01-01T00:00:00Z")
    assert older == out


def _granted(records: list[tuple[object, str]]) -> bool:
    current = None
    for value, at in records:
        current = merge_consent(current, value, at)
    assert current is not None
    return bool(current["granted"])


def test_consent_is_the_same_whichever_order_the_evidence_arrives_in() -> None:
    """An opt-out outranks plain grants at any time, and an explicit opt-in only when
    it is newer than the opt-out: in either arrival order."""
    opt_out = (False, "2026-04-01T15:00:00Z")
    explicit_later = ({"granted": True, "explicit": True, "at": "2026-04-03T14:00:00Z"},
                      "2026-04-03T14:00:00Z")
    explicit_earlier = ({"granted": True, "explicit": True, "at": "2026-03-30T14:00:00Z"},
                        "2026-03-30T14:00:00Z")
    plain_later = (True, "2026-04-05T10:00:00Z")
    for evidence, granted in (([opt_out, explicit_later], True),
                              ([opt_out, explicit_earlier], False),
                              ([opt_out, plain_later], False),
                              ([opt_out, explicit_later, plain_later], True)):
        assert _granted(evidence) is granted, evidence
        assert _granted(list(reversed(evidence))) is granted, evidence


def test_consent_merge_matches_the_time_ordered_rules_for_every_arrival_order() -> None:
    """Against the rules applied in time order (opt-out withdraws; an explicit opt-in
    grants; a plain grant grants unless an opt-out is on record), for every arrival
    order of every 1-4 pieces of evidence from a pool with distinct times."""
    pool = [(kind, f"2026-04-0{day}T12:00:00Z") for day, kind in
            enumerate(["out", "plain", "explicit", "out", "explicit", "plain"], 1)]

    def value(kind: str, at: str) -> object:
        if kind == "explicit":
            return {"granted": True, "explicit": True, "at": at}
        return kind != "out"

    checked = 0
    for size in range(1, 5):
        for chosen in itertools.combinations(pool, size):
            state: bool | None = None
            for kind, _ in sorted(chosen, key=lambda item: item[1]):
                if kind == "out":
                    state = False
                elif kind == "explicit" or state is not False:
                    state = True
            for arrival in itertools.permutations(chosen):
                assert _granted([(value(k, at), at) for k, at in arrival]) is state, arrival
                checked += 1
    assert checked > 500


def test_stale_contact_update_does_not_overwrite_newer() -> None:
    p = apply_event(new_profile("c1"), ev("customer.updated", email="new@x.com"), T2)
    p = apply_event(p, ev("customer.updated", email="old@x.com"), T1)
    assert p["email"] == "new@x.com"


# ------------------------------------------------------------------ cancelled orders

def _order_ev(etype: str, order_id: str, total: float = 10.0, sku: str = "A") -> dict:
    return {"id": "e", "type": etype, "customer": {"id": "c1"},
            "order": {"id": order_id, "total": total, "currency": "USD",
                      "items": [{"sku": sku}]}}


def test_a_cancelled_order_of_an_unknown_order_is_kept_and_never_counted() -> None:
    p = apply_event(new_profile("c1"), ev("order.cancelled", "o1"), T2)
    assert p["order_count"] == 0 and p["total_spent"] == 0.0
    assert "last_order_at" not in p and "first_order_at" not in p
    assert p["orders"]["o1"] == {"cancelled": True,
                                 "events": {"order.cancelled": "2026-01-02T00:00:00Z"}}
    p = apply_event(p, ev("order.placed", "o1"), T1)
    p = apply_event(p, ev("order.delivered", "o1"), T2)
    assert p["order_count"] == 0 and p["total_spent"] == 0.0
    assert "last_order_at" not in p and "first_order_at" not in p
    assert p["orders"]["o1"]["at"] == "2026-01-01T00:00:00Z"  # kept, for pruning
    assert p["last_delivery_at"] == "2026-01-02T00:00:00Z"  # a delivery did happen
    assert p["products"] == ["A"]  # products list every order seen placed or delivered


def test_cancelling_a_counted_order_takes_it_out_of_the_aggregates() -> None:
    t0 = datetime(2025, 12, 1, tzinfo=UTC)
    p = apply_event(new_profile("c1"), _order_ev("order.placed", "o0", 5.0), t0)
    p = apply_event(p, _order_ev("order.placed", "o1", 10.0, "B"), T1)
    p = apply_event(p, _order_ev("order.delivered", "o1", 10.0, "B"), T2)
    assert p["order_count"] == 2 and p["total_spent"] == 15.0
    assert p["last_order_at"] == "2026-01-01T00:00:00Z"
    p = apply_event(p, _order_ev("order.cancelled", "o1"), T2 + timedelta(hours=1))
    assert p["order_count"] == 1 and p["total_spent"] == 5.0
    assert p["last_order_at"] == p["first_order_at"] == "2025-12-01T00:00:00Z"
    assert p["last_delivery_at"] == "2026-01-02T00:00:00Z"  # left alone
    assert p["products"] == ["A", "B"]  # left alone
    assert set(p["orders"]["o1"]["events"]) == {"order.delivered", "order.cancelled"}
    # A second cancellation (a replay under another id) changes nothing more.
    again = apply_event(p, _order_ev("order.cancelled", "o1"), T2 + timedelta(hours=2))
    assert again["order_count"] == 1 and again["total_spent"] == 5.0
    # Cancelling the first order moves first_order_at to the next counted one.
    p = apply_event(p, _order_ev("order.placed", "o2", 7.0), T2)
    p = apply_event(p, _order_ev("order.cancelled", "o0"), T2)
    assert p["order_count"] == 1 and p["total_spent"] == 7.0
    assert p["last_order_at"] == p["first_order_at"] == "2026-01-02T00:00:00Z"
    # The last counted order cancelled: no order times at all.
    p = apply_event(p, _order_ev("order.cancelled", "o2"), T2)
    assert p["order_count"] == 0 and p["total_spent"] == 0.0
    assert "last_order_at" not in p and "first_order_at" not in p


def test_order_aggregates_are_the_same_for_every_arrival_order_of_order_events() -> None:
    """Placed, delivered, cancelled and returned events of three orders (one placed and
    cancelled, one delivered and cancelled, one kept): every arrival order of them
    gives the same profile (orders, counts, totals, times, products)."""
    at = {n: datetime(2026, 3, n, 12, tzinfo=UTC) for n in range(1, 10)}
    events = [("order.placed", "o1", 1), ("order.cancelled", "o1", 2),
              ("order.placed", "o2", 3), ("order.delivered", "o2", 5),
              ("order.cancelled", "o2", 6),
              ("order.placed", "o3", 4), ("order.delivered", "o3", 7),
              ("order.returned", "o3", 8)]
    totals = {"o1": 10.25, "o2": 20.5, "o3": 30.1}
    skus = {"o1": "A", "o2": "B", "o3": "C"}
    base = apply_event(new_profile("c1"), _order_ev("order.placed", "o0", 3.3, "Z"),
                       datetime(2026, 2, 1, tzinfo=UTC))

    def fold(arrival: tuple[tuple[str, str, int], ...]) -> dict:
        p = base
        for etype, oid, day in arrival:
            p = apply_event(p, _order_ev(etype, oid, totals[oid], skus[oid]), at[day])
        p = dict(p)
        p["products"] = sorted(p["products"])  # the list keeps first-seen order
        p.pop("updated_at")
        return p

    expected = fold(tuple(sorted(events, key=lambda e: e[2])))
    assert expected["order_count"] == 2 and expected["total_spent"] == 33.4
    assert expected["first_order_at"] == "2026-02-01T00:00:00Z"
    assert expected["last_order_at"] == "2026-03-04T12:00:00Z"  # o3, not o1/o2
    assert expected["last_delivery_at"] == "2026-03-07T12:00:00Z"
    checked = 0
    for arrival in itertools.permutations(events):
        assert fold(arrival) == expected, arrival
        checked += 1
    assert checked == 40320


def test_cancelling_every_order_of_each_subset_in_every_order() -> None:
    """For two orders with any of placed/delivered/cancelled, in every arrival order,
    the aggregates are those of the orders not cancelled."""
    pool = [("order.placed", "o1", 1), ("order.delivered", "o1", 3),
            ("order.cancelled", "o1", 4), ("order.placed", "o2", 2),
            ("order.delivered", "o2", 5), ("order.cancelled", "o2", 6)]
    for size in range(1, len(pool) + 1):
        for chosen in itertools.combinations(pool, size):
            cancelled = {o for t, o, _ in chosen if t == "order.cancelled"}
            seen: dict[str, int] = {}
            for t, o, day in chosen:
                if t != "order.cancelled":
                    seen[o] = min(seen.get(o, day), day)
            counted = {o: d for o, d in seen.items() if o not in cancelled}
            for arrival in itertools.permutations(chosen):
                p = new_profile("c1")
                for t, o, day in arrival:
                    p = apply_event(p, ev(t, o), datetime(2026, 3, day, tzinfo=UTC))
                assert p["order_count"] == len(counted), arrival
                assert p["total_spent"] == 10.0 * len(counted), arrival
                last = max(counted.values(), default=None)
                assert p.get("last_order_at") == (
                    None if last is None else f"2026-03-0{last}T00:00:00Z"), arrival


def _orders(n: int, newest_first: bool = False) -> dict:
    times = [T1 + timedelta(hours=i) for i in range(n)]
    order = list(range(n))[::-1] if newest_first else range(n)
    p = new_profile("c1")
    for i in order:
        p = apply_event(p, ev("order.placed", f"o{i}"), times[i])
    return p


def test_an_order_pruned_from_the_profile_and_seen_again_counts_nothing() -> None:
    p = _orders(MAX_ORDERS_KEPT + 5)
    assert p["order_count"] == MAX_ORDERS_KEPT + 5 and len(p["orders"]) == MAX_ORDERS_KEPT
    assert len(p["pruned_orders"]) == 5 * 8
    for kind in ("order.placed", "order.delivered", "order.cancelled", "order.returned"):
        again = apply_event(p, ev(kind, "o0"), T1)  # the oldest, pruned
        assert (again["order_count"], again["total_spent"], again["orders"]) == (
            p["order_count"], p["total_spent"], p["orders"]), kind
    kept = apply_event(p, ev("order.cancelled", f"o{MAX_ORDERS_KEPT}"), T2)
    assert kept["order_count"] == p["order_count"] - 1  # a kept order still counts


def test_orders_imported_newest_first_all_count() -> None:
    """Older orders never seen before (an export sorted newest first) are new orders,
    not pruned ones: only the ids pruned are remembered."""
    p = _orders(MAX_ORDERS_KEPT + 40, newest_first=True)
    assert p["order_count"] == MAX_ORDERS_KEPT + 40
    assert p["total_spent"] == 10.0 * (MAX_ORDERS_KEPT + 40)


def test_the_pruned_ids_kept_are_bounded() -> None:
    from chalicelib.journeys import profile as mod

    p = new_profile("c1")
    p["pruned_orders"] = "A" * (mod.MAX_PRUNED_KEPT * 8)
    p = apply_event(p, ev("order.placed", "x"), T1)
    for i in range(MAX_ORDERS_KEPT + 1):
        p = apply_event(p, ev("order.placed", f"o{i}"), T2 + timedelta(minutes=i))
    assert len(p["pruned_orders"]) == mod.MAX_PRUNED_KEPT * 8
    assert p["pruned_orders"].endswith(mod._order_token("o0"))  # the oldest went first
    assert mod._pruned(p, "x") and not mod._pruned(p, "never")
