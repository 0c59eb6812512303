from __future__ import annotations

import pytest

from chalicelib.events import EventError, parse_event
from tests.conftest import load_event


def test_parses_the_design_example() -> None:
    e = parse_event(load_event("order_delivered"))
    assert e["type"] == "order.delivered" and e["order"]["categories"] == ["appliance"]
    assert e["_at"].isoformat() == "2026-03-01T14:02:00+00:00"


def test_unwraps_eventbridge() -> None:
    e = parse_event(load_event("eventbridge_order_placed"))
    assert e["id"] == "evt-0000" and e["type"] == "order.placed"


@pytest.mark.parametrize(("patch", "path"), [
    ({"id": None}, "$.id"),
    ({"type": "Order Delivered"}, "$.type"),
    ({"occurred_at": "yesterday"}, "$.occurred_at"),
    ({"occurred_at": "2026-03-01T14:02:00"}, "$.occurred_at"),
    ({"customer": {"email": "x@y.z"}}, "$.customer.id"),
    ({"customer": {"id": "c", "consent": {"fax": True}}}, "$.customer.consent.fax"),
    ({"order": {"id": "o", "total": "12"}}, "$.order.total"),
    ({"order": {"id": "o", "items": [1]}}, "$.order.items[0]"),
])
def test_errors_name_the_path(patch: dict, path: str) -> None:
    event = {**load_event("order_delivered"), **patch}
    event = {k: v for k, v in event.items() if v is not None}
    with pytest.raises(EventError) as info:
        parse_event(event)
    assert info.value.path == path


def _with_customer(**customer: object) -> dict:
    event = load_event("order_delivered")
    event["customer"] = {**event["customer"], **customer}
    return event


def test_phone_normalized_to_e164_using_the_locale_country() -> None:
    e = parse_event(_with_customer(phone="(415) 555-0123", locale="en-US"))
    assert e["customer"]["phone"] == "+14155550123"
    e = parse_event(_with_customer(phone="+49 30 5550 1234"))
    assert e["customer"]["phone"] == "+493055501234"


@pytest.mark.parametrize("phone", ["12", "not a phone", "+1 555"])
def test_invalid_phone_is_refused_with_its_path(phone: str) -> None:
    with pytest.raises(EventError) as info:
        parse_event(_with_customer(phone=phone))
    assert info.value.path == "$.customer.phone"


@pytest.mark.parametrize("email", ["ana", "ana@", "ana@localhost", "a na@x.com",
                                   "a\x00b@x.com", "a\u200bb@x.com", "ana\n@x.com"])
def test_invalid_email_is_refused(email: str) -> None:
    with pytest.raises(EventError) as info:
        parse_event(_with_customer(email=email))
    assert info.value.path == "$.customer.email"


def test_email_domain_lowercased() -> None:
    assert parse_event(_with_customer(email="Ana@Example.COM"))["customer"]["email"] == \
        "Ana@example.com"


def test_invalid_timezone_is_stored_as_unknown() -> None:
    assert parse_event(_with_customer(timezone="Mars/Olympus"))["customer"]["timezone"] is None
    assert parse_event(_with_customer(timezone="Asia/Tokyo"))["customer"]["timezone"] == \
        "Asia/Tokyo"


def test_bad_birthday_is_refused() -> None:
    with pytest.raises(EventError) as info:
        parse_event(_with_customer(birthday="29/02/1992"))
    assert info.value.path == "$.customer.birthday"


@pytest.mark.parametrize(("when", "ok"), [
    ("1899-12-31T23:59:59Z", False), ("1900-01-01T00:00:00Z", True),
    ("2199-12-31T23:59:59Z", True), ("2200-01-01T00:00:00Z", False),
    ("9999-12-31T23:59:59Z", False), ("0001-01-01T00:00:00+01:00", False),
])
def test_occurred_at_must_be_within_the_supported_years(when: str, ok: bool) -> None:
    event = {**load_event("order_delivered"), "occurred_at": when}
    if ok:
        assert parse_event(event)["occurred_at"] == when
    else:
        with pytest.raises(EventError) as exc:
            parse_event(event)
        assert exc.value.path == "$.occurred_at" and "outside 1900-2199" in exc.value.message
