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
