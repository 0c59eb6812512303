"""Benchmarks of the Lambda pipeline on the embedded local stack (in-process moto).

moto's Query walks every item of a table and its TransactWriteItems deep-copies
each table it touches (once per item written), so wall time in moto says little
about DynamoDB.  What DynamoDB bills, and what a key design decides, is counted
instead: requests, items read and write units, with the botocore meter in ``bench/_ddb_meter.py``
(hooks on every DynamoDB client, PynamoDB's included).  The one timing figure is
a ratio against a baseline run in the same process.

``run()`` returns:

- ``ingest.ddb_requests_per_event``: DynamoDB requests the ingest handler makes
  per event, with 5 active campaigns that all trigger on ``order.delivered``
  (two steps each), for N distinct events of N new customers, sent through the
  events queue and the real handler (``stack.ingest``).  The live-campaign cache
  is warm: the local stage sets ``CAMPAIGN_CACHE_SECONDS=0`` so that a push shows
  at once, which adds one Query (the active index) to every event and two to
  every send; Lambda runs with a TTL (60 s in ``.chalice/config.json``), so the
  bench makes the handlers' cache with 600 s and ingests one warm-up event
  before it counts.  Only DynamoDB requests are counted (not SQS), and only
  while the handler runs.
- ``ingest.write_units_per_event``: write capacity units per event: per item
  written, 1 per KB (item size from the request's DynamoDB JSON as the developer
  guide defines it), doubled inside TransactWriteItems.  Updates (the stats
  counters) are charged at the item's size after the update, read from moto's
  backend; the lower bound from the request alone (key + the names and values
  of the update expression) is ``ingest.write_units_per_event_request_only``.
  Base table only: writes to global secondary indexes come on top.
- ``tick.backlog_read_ratio``: items read by one tick (ScannedCount of its
  Queries plus items its GetItem/BatchGetItem calls return) with ``BACKLOG_LARGE``
  future steps in the schedule and ``DUE`` due now, over the same with
  ``BACKLOG_SMALL`` future steps and the same number due.  Schedule items are
  made from PlannedSteps by ``schedule_item``, as ingest makes them, and written
  with PynamoDB's BatchWrite (through botocore, like every call measured).
  1.0 means a tick's cost does not grow with the backlog.
- ``send.ddb_requests_per_send``: DynamoDB requests of the send handler per step
  actually sent (SMS accepted by the local Twilio server, email by SES), while
  the sends queue is pumped after a tick (the tick's requests are not counted),
  with the campaign cache warm as above.
- ``e2e.events_per_s``: events per second through the demo path: ``Replay`` of
  ``generate(customers=E2E_CUSTOMERS, days=60)`` with the example campaigns,
  ingest, ticks and sends included, with the local stack's own settings.
- ``e2e.baseline_events_per_s``: plain PutItem calls per second into a moto table
  with boto3 in the same process (the mean of a run before and one after the
  replay), and ``e2e.ratio_vs_put_baseline``: the first over the second, the
  figure to compare across machines.

Besides these, ``*.items_read_per_event``, per-operation request counts and the
workload sizes are reported.  Human-readable lines go to stderr.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# The meter must be installed before botocore sessions exist, and the local
# environment applied before chalicelib.store.models is imported.
from bench._ddb_meter import DdbMeter, attach_app_clients, item_size  # noqa: E402
from chalicelib.local.stack import LocalStack, apply_local_env  # noqa: E402

apply_local_env()

# Per-event figures do not depend on N, but moto's TransactWriteItems deep-copies every
# table it touches once per item written, so moto's time grows with N squared (200: ~60 s).
INGEST_EVENTS = 100
CAMPAIGNS = 5
BACKLOG_SMALL = 1_000
BACKLOG_LARGE = 100_000
DUE = 50
SEND_CUSTOMERS = 12  # x 5 campaigns = 60 first steps due at once
E2E_CUSTOMERS = 40
E2E_DAYS = 60
CACHE_SECONDS = "600"
START = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)  # a Monday, before US DST
REGION = "us-east-1"


def _say(message: str) -> None:
    print(f"pipeline: {message}", file=sys.stderr, flush=True)


def _iso(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


# -- set-up ----------------------------------------------------------------------------


@contextmanager
def _stack(warm_cache: bool) -> Iterator[LocalStack]:
    """A fresh local stack; with ``warm_cache`` the live campaigns are cached as in
    Lambda (the local default of 0 s reloads them on every invocation)."""
    from chalicelib import handlers

    with tempfile.TemporaryDirectory() as tmp, \
            LocalStack(outbox_dir=Path(tmp) / "out", project_root=ROOT) as stack:
        if warm_cache:
            # chalice.test.Client applies the stage's environment (".chalice/config.json":
            # 0 s for "local") inside every invocation, so the cache is made here, outside
            # one: handlers.live() keeps the first LiveCache for the container's life.
            os.environ["CAMPAIGN_CACHE_SECONDS"] = CACHE_SECONDS
            handlers.reset()
            handlers.live()
        attach_app_clients()
        try:
            yield stack
        finally:
            os.environ["CAMPAIGN_CACHE_SECONDS"] = "0"


def _bench_campaign(n: int) -> dict[str, Any]:
    sms = n % 2 == 1
    return {
        "id": f"bench-{n}",
        "name": f"Bench campaign {n}",
        "trigger": {"event": "order.delivered"},
        "steps": [
            {"id": "first", "after": "P1D", "at": "10:00", "channel": "sms" if sms else "email",
             "template": "checkin" if sms else "care_tip", "expire_after": "P2D"},
            {"id": "later", "after": "P14D", "at": "09:30", "channel": "email",
             "template": "care_tip", "expire_after": "P3D"},
        ],
        "exit": {"event": "order.returned"},
        "goal": {"event": "order.placed", "within": "P60D"},
    }


def _push_bench_campaigns(stack: LocalStack) -> list[str]:
    """Five campaigns on order.delivered, validated (templates too) and pushed."""
    with tempfile.TemporaryDirectory() as tmp:
        for n in range(1, CAMPAIGNS + 1):
            (Path(tmp) / f"bench-{n}.json").write_text(json.dumps(_bench_campaign(n)))
        return stack.push_campaigns(Path(tmp), ROOT / "templates")


def _delivered(i: int, at: datetime, prefix: str = "b") -> dict[str, Any]:
    return {
        "id": f"{prefix}-evt-{i:06d}", "type": "order.delivered", "occurred_at": _iso(at),
        "customer": {"id": f"{prefix}-c-{i:06d}", "email": f"{prefix}.{i}@example.com",
                     "phone": f"+1415555{i % 10000:04d}", "name": "Ana Souza",
                     "timezone": "America/New_York", "locale": "en-US",
                     "consent": {"sms": True, "email": True}, "attributes": {"tier": "gold"}},
        "order": {"id": f"{prefix}-o-{i:06d}", "total": 129.5, "currency": "USD",
                  "items": [{"sku": "KX-200", "name": "Kettle", "category": "appliance",
                             "quantity": 1, "price": 129.5}]},
        "data": {},
    }


def _moto_item_sizer() -> Any:
    """(table, key) -> bytes of the stored item, read from moto's backend (no request)."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.dynamodb.models import dynamodb_backends

    backend = dynamodb_backends[DEFAULT_ACCOUNT_ID][REGION]

    def size(table: str, key: Mapping[str, Any]) -> int | None:
        try:
            item = backend.get_item(table, dict(key))
        except Exception:  # an unknown table or key shape: keep the lower bound
            return None
        return item_size(item.to_json()["Attributes"]) if item is not None else None

    return size


def _check_batches(results: list[dict[str, Any]], expected: int, what: str) -> None:
    processed = sum(r.get("processed", 0) for r in results)
    dead = sum(r.get("dead_lettered", 0) for r in results)
    if processed != expected or dead:
        raise RuntimeError(f"{what}: {processed} processed, {dead} dead-lettered, "
                           f"expected {expected}")


# -- ingest ----------------------------------------------------------------------------


def bench_ingest(events: int = INGEST_EVENTS) -> dict[str, float]:
    from chalicelib import clock

    with _stack(warm_cache=True) as stack:
        pushed = _push_bench_campaigns(stack)
        clock.set_now(START)
        _check_batches(stack.ingest([_delivered(0, START, "warm")]), 1, "warm-up")
        batch = [_delivered(i, START) for i in range(events)]
        started = time.perf_counter()
        with DdbMeter(item_sizer=_moto_item_sizer()) as meter, \
                DdbMeter() as request_only:
            results = stack.ingest(batch)
        elapsed = time.perf_counter() - started
    _check_batches(results, events, "ingest")
    snap = meter.snapshot()
    _say(f"ingest: {events} events, {len(pushed)} campaigns, {elapsed:.1f}s in moto; "
         f"requests {snap['requests']}; items written {snap['writes_by_table']}; "
         f"WCU {snap['write_units_by_table']}")
    return {
        "ingest.events": float(events),
        "ingest.campaigns": float(len(pushed)),
        **_per_unit(meter, "ingest", "event", events),
        "ingest.write_units_per_event_request_only": request_only.write_units / events,
        "ingest.items_written_per_event": meter.items_written / events,
    }


def _per_unit(meter: DdbMeter, section: str, unit: str, count: int) -> dict[str, float]:
    """The meter's requests, write units and items read per event (or send), by op too."""
    out = {
        f"{section}.ddb_requests_per_{unit}": meter.total_requests / count,
        f"{section}.write_units_per_{unit}": meter.write_units / count,
        f"{section}.items_read_per_{unit}": meter.items_read / count,
    }
    for op, n in sorted(meter.requests.items()):
        out[f"{section}.requests.{op}_per_{unit}"] = n / count
    return out


# -- tick ------------------------------------------------------------------------------


def _planned(i: int, due: datetime, now: datetime, tag: str) -> Any:
    from chalicelib.journeys.engine import PlannedStep

    customer = f"{tag}-c-{i:06d}"
    campaign = f"bench-{i % CAMPAIGNS + 1}"
    ref = f"{tag}-o-{i:06d}"
    return PlannedStep(
        customer_id=customer,
        campaign_id=campaign, campaign_version=1, step_id="first", ref=ref,
        enrolled_at=_iso(now), due_at=due, holdout=False, variant=None,
        event_id=f"{tag}-evt-{i:06d}",
        order={"id": ref, "total": 129.5, "currency": "USD",
               "items": [{"sku": "KX-200", "name": "Kettle", "category": "appliance",
                          "quantity": 1, "price": 129.5}]},
    )


def _fill_schedule(count: int, now: datetime, tag: str, *, due_now: bool) -> float:
    """Write ``count`` pending steps (due in the next 90 days, or due now); seconds taken."""
    from chalicelib.pipeline.ingest import schedule_item
    from chalicelib.store.models import ScheduleModel

    started = time.perf_counter()
    span = 90 * 24 * 3600
    with ScheduleModel.batch_write() as batch:
        for i in range(count):
            if due_now:
                due = now - timedelta(seconds=60 + i)
            else:
                due = now + timedelta(seconds=3600 + (i * 7919) % span)
            batch.save(schedule_item(_planned(i, due, now, tag)))
            if count >= 20_000 and (i + 1) % 25_000 == 0:
                _say(f"tick: {i + 1} of {count} future steps written "
                     f"({time.perf_counter() - started:.0f}s)")
    return time.perf_counter() - started


def _drain_sends() -> int:
    """Delete what the tick enqueued (PurgeQueue is allowed once a minute)."""
    from chalicelib import aws, settings

    sqs = aws.client("sqs")
    url = aws.queue_url(settings.resource_name("sends"))
    drained = 0
    while got := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages"):
        sqs.delete_message_batch(QueueUrl=url, Entries=[
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)])
        drained += len(got)
    return drained


def _metered_tick(stack: LocalStack, now: datetime) -> tuple[DdbMeter, float, int]:
    started = time.perf_counter()
    with DdbMeter() as meter:
        report = stack.tick(now)
    elapsed = time.perf_counter() - started
    _drain_sends()  # the claimed steps are not sent here
    return meter, elapsed, int(report.get("claimed", 0))


def bench_tick(small: int = BACKLOG_SMALL, large: int = BACKLOG_LARGE,
               due: int = DUE) -> dict[str, float]:
    """One stack: the small backlog and ``due`` due steps, a tick; then grow the
    backlog to ``large`` and add ``due`` new due steps, a tick at the same time
    (the first tick's claims moved their steps past it)."""
    now = START + timedelta(days=1)
    with _stack(warm_cache=False) as stack:
        from chalicelib import clock

        clock.set_now(now)
        _fill_schedule(small, now, "s", due_now=False)
        _fill_schedule(due, now, "d1", due_now=True)
        small_meter, small_s, small_claimed = _metered_tick(stack, now)
        _say(f"tick: backlog {small}, {due} due: claimed {small_claimed}, read "
             f"{small_meter.items_read} items in {small_meter.total_requests} requests "
             f"{dict(small_meter.requests)}, {small_s:.2f}s in moto")
        fill_s = _fill_schedule(large - small, now, "l", due_now=False)
        _say(f"tick: {large - small} more future steps written in {fill_s:.0f}s")
        _fill_schedule(due, now, "d2", due_now=True)
        large_meter, large_s, large_claimed = _metered_tick(stack, now)
        _say(f"tick: backlog {large}, {due} due: claimed {large_claimed}, read "
             f"{large_meter.items_read} items in {large_meter.total_requests} requests, "
             f"{large_s:.2f}s in moto (moto walks the whole table on every Query)")
    if small_claimed != due or large_claimed != due:
        raise RuntimeError(f"tick claimed {small_claimed} and {large_claimed}, expected {due}")
    return {
        "tick.backlog_read_ratio": large_meter.items_read / max(1, small_meter.items_read),
        "tick.items_read_small_backlog": float(small_meter.items_read),
        "tick.items_read_large_backlog": float(large_meter.items_read),
        "tick.requests_large_backlog": float(large_meter.total_requests),
        "tick.backlog_small": float(small),
        "tick.backlog_large": float(large),
        "tick.due": float(due),
    }


# -- send ------------------------------------------------------------------------------


def _sent_so_far(stack: LocalStack) -> int:
    return len(stack.twilio.messages) + len(stack.sent_emails())


def bench_send(customers: int = SEND_CUSTOMERS) -> dict[str, float]:
    from chalicelib import clock

    with _stack(warm_cache=True) as stack:
        _push_bench_campaigns(stack)
        clock.set_now(START)
        results = stack.ingest([_delivered(i, START, "s") for i in range(customers)])
        _check_batches(results, customers, "send set-up")
        first_due = min(clock.parse_iso(d) for r in results for d in r["due"])
        claimed = int(stack.tick(first_due).get("claimed", 0))
        before = _sent_so_far(stack)
        with DdbMeter() as meter:
            stack.pump("sends", "send")
        sent = _sent_so_far(stack) - before
    _say(f"send: tick at {_iso(first_due)} claimed {claimed}; {sent} sent with "
         f"{meter.total_requests} DynamoDB requests {dict(meter.requests)}")
    if sent == 0 or sent != claimed:
        raise RuntimeError(f"{claimed} claimed but {sent} sent")
    return {"send.sends": float(sent), **_per_unit(meter, "send", "send", sent)}


# -- end to end ------------------------------------------------------------------------


def _put_baseline(count: int) -> float:
    """Plain PutItem calls per second into a moto table, through boto3."""
    import boto3

    client = boto3.client("dynamodb", region_name=REGION)
    table = "bench-put-baseline"
    if table not in client.list_tables()["TableNames"]:
        client.create_table(TableName=table, BillingMode="PAY_PER_REQUEST",
                            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])
    started = time.perf_counter()
    for i in range(count):
        client.put_item(TableName=table, Item={
            "pk": {"S": f"evt-{i:06d}-{started}"}, "type": {"S": "order.delivered"},
            "expires_at": {"N": str(1_800_000_000 + i)}})
    return count / (time.perf_counter() - started)


def bench_e2e(customers: int = E2E_CUSTOMERS, days: int = E2E_DAYS) -> dict[str, float]:
    from chalicelib.local.generator import generate
    from chalicelib.local.replay import Replay

    with _stack(warm_cache=False) as stack:
        stack.push_campaigns()
        events = generate(customers=customers, days=days)
        puts_before = _put_baseline(len(events))
        replay = Replay(stack)
        started = time.perf_counter()
        replay.run(events)
        elapsed = time.perf_counter() - started
        puts_after = _put_baseline(len(events))
        sent = _sent_so_far(stack)
    events_per_s = len(events) / elapsed
    puts_per_s = (puts_before + puts_after) / 2
    _say(f"e2e: {len(events)} events ({customers} customers, {days} days) in {elapsed:.1f}s, "
         f"{replay.invocations} invocations, {sent} messages sent; {events_per_s:.1f} events/s; "
         f"baseline {puts_before:.0f} and {puts_after:.0f} PutItem/s")
    return {
        "e2e.events": float(len(events)),
        "e2e.sent": float(sent),
        "e2e.events_per_s": events_per_s,
        "e2e.baseline_events_per_s": puts_per_s,
        "e2e.ratio_vs_put_baseline": events_per_s / puts_per_s,
    }


def run() -> dict[str, float]:
    started = time.perf_counter()
    figures: dict[str, float] = {}
    for name, section in (("ingest", bench_ingest), ("tick", bench_tick),
                          ("send", bench_send), ("e2e", bench_e2e)):
        t = time.perf_counter()
        figures.update(section())
        _say(f"{name} done in {time.perf_counter() - t:.0f}s")
    _say(f"all done in {time.perf_counter() - started:.0f}s")
    return {key: round(value, 4) for key, value in figures.items()}


if __name__ == "__main__":
    print(json.dumps(run()))
