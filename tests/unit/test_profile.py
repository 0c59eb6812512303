from __future__ import annotations

from datetime import UTC, datetime

from chalicelib.journeys.profile import apply_event, merge_consent, new_profile

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


def test_stale_contact_update_does_not_overwrite_newer() -> None:
    p = apply_event(new_profile("c1"), ev("customer.updated", email="new@x.com"), T2)
    p = apply_event(p, ev("customer.updated", email="old@x.com"), T1)
    assert p["email"] == "new@x.com"
