"""No Scan on a hot path: ingest, tick, send and the status webhook use only
GetItem, Query and writes (counted on the wire with a botocore hook)."""

from __future__ import annotations

from datetime import UTC, datetime

from bench._ddb_meter import DdbMeter, attach
from chalicelib import clock
from chalicelib.local.stack import LocalStack
from chalicelib.store import tx
from chalicelib.store.models import ALL_MODELS
from tests.conftest import load_event

ALLOWED = {"GetItem", "Query", "TransactWriteItems", "UpdateItem", "PutItem"}


def _attach_all() -> None:
    attach(tx.connection().client)
    for model in ALL_MODELS:
        attach(model._get_connection().connection.client)


def test_hot_paths_never_scan(slice_stack: LocalStack) -> None:
    _attach_all()
    clock.set_now(datetime(2026, 3, 1, 14, 3, tzinfo=UTC))
    warm = load_event("order_delivered")
    warm.update(id="evt-warm", customer={**warm["customer"], "id": "c-warm"})
    slice_stack.ingest([warm])  # the first invocation loads the live campaigns (one Query)
    with DdbMeter() as ingest:
        slice_stack.ingest([load_event("order_delivered")])
    with DdbMeter() as tick:
        slice_stack.tick(datetime(2026, 3, 3, 15, 0, tzinfo=UTC))
    with DdbMeter() as send:
        slice_stack.pump("sends", "send")
        slice_stack.twilio.deliver_callbacks()
    for name, meter in (("ingest", ingest), ("tick", tick), ("send", send)):
        assert meter.total_requests > 0, name
        assert set(meter.requests) <= ALLOWED, (name, meter.requests)
    assert ingest.requests == {"GetItem": 1, "TransactWriteItems": 1}
    assert tick.requests["Query"] == 16  # one per due shard, whatever the backlog
    assert send.requests["GetItem"] >= 1 and "Scan" not in send.requests
