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
