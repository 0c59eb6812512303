"""Customer retention and churn (docs/campaigns.md, "Retention and churn"): counted by
the real ingest function from real-shaped events (SQS batches through
``chalice.test.Client``) and by ``aftercare import``, read by ``aftercare retention``,
``aftercare report`` and ``GET /reports``."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from chalicelib import clock
from chalicelib.cli.main import main
from chalicelib.local.stack import LocalStack
from chalicelib.store.models import StatsModel
from chalicelib.tracking.retention import CUSTOMERS
from tests.conftest import load_event

NOW = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
MARCH = ["--from", "2026-03-01", "--to", "2026-03-31"]


def _order(cid: str, order: str, when: str, etype: str = "order.placed",
           eid: str | None = None) -> dict[str, Any]:
    ev = load_event("order_delivered")
    ev.update(id=eid or f"{etype}-{order}", type=etype, occurred_at=when)
    ev["customer"] = {**ev["customer"], "id": cid, "phone": None, "email": None}
    ev["order"] = {**ev["order"], "id": order}
    return ev


def _log() -> list[dict[str, Any]]:
    return [
        _order("c-1", "o-1", "2026-03-01T10:00:00Z"),
        _order("c-1", "o-1", "2026-03-03T10:00:00Z", "order.delivered"),  # the same order
        _order("c-1", "o-1b", "2026-03-01T18:00:00Z"),  # a second order that day
        _order("c-2", "o-2", "2026-03-01T11:00:00Z"),  # never comes back
        _order("c-1", "o-3", "2026-04-10T10:00:00Z"),  # back within 120 days
        _order("c-3", "o-4", "2025-12-01T10:00:00Z"),
        _order("c-3", "o-5", "2026-06-01T10:00:00Z"),  # back after 182 days
        _order("c-4", "o-6", "2026-03-20T10:00:00Z"),
        _order("c-4", "o-6", "2026-03-21T10:00:00Z", "order.cancelled"),
    ]


def _counters() -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for item in StatsModel.scan():
        if item.pk.startswith(CUSTOMERS + "#"):
            day = out.setdefault(str(item.day), {})
            for name in ("ordered", "customers_new", "returned", "reactivated"):
                if getattr(item, name):
                    day[name] = day.get(name, 0) + int(getattr(item, name))
    return dict(sorted(out.items()))


EXPECTED = {
    "2025-12-01": {"ordered": 1, "customers_new": 1},
    "2026-03-01": {"ordered": 2, "customers_new": 2, "returned": 1},
    "2026-03-20": {"ordered": 1, "customers_new": 1},
    "2026-04-10": {"ordered": 1},
    "2026-06-01": {"ordered": 1, "reactivated": 1},
}


@pytest.fixture
def counted(live_stack: LocalStack) -> LocalStack:
    clock.set_now(NOW)
    events = _log()
    live_stack.ingest(events[:4])
    live_stack.ingest([*events[4:], events[4]])  # one delivered twice: counted once
    return live_stack


def test_ingest_counts_customers_by_day(counted: LocalStack) -> None:
    assert _counters() == EXPECTED


def test_the_retention_command(counted: LocalStack, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["retention", *MARCH, "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["counts"] == {"ordered": 3, "customers_new": 3, "returned": 1,
                                "reactivated": 0}
    assert (report["retention_rate"], report["churn_rate"]) == (0.3333, 0.6667)
    assert report["final_from"] == "2026-07-30" and report["retention_days"] == 120
    assert main(["retention", *MARCH]) == 0
    text = capsys.readouterr().out
    assert "retention 33.3%" in text and "churn 66.7%" in text
    assert main(["retention", "--from", "2026-04-02", "--to", "2026-03-01"]) == 1


def test_the_report_table_and_page_start_with_the_customers(
        counted: LocalStack, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["report", *MARCH]) == 0
    out = capsys.readouterr().out
    assert out.startswith("customers  2026-03-01..2026-03-31")
    assert "ordered 3  new 3  returned 1" in out
    assert main(["report", *MARCH, "--format", "html"]) == 0
    assert "<h2>Customers" in capsys.readouterr().out
    assert main(["report", "delivery-checkin", *MARCH]) == 0  # one campaign: no customers
    assert "customers" not in capsys.readouterr().out


def test_the_reports_route_gives_the_retention(counted: LocalStack) -> None:
    reply = counted.client.http.get("/reports?from=2026-03-01&to=2026-03-31")
    assert reply.status_code == 200
    retention = json.loads(reply.body)["retention"]
    assert retention["counts"]["returned"] == 1 and retention["retention_rate"] == 0.3333


def test_an_import_of_the_orders_counts_as_ingest_does(
        live_stack: LocalStack, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clock.set_now(NOW)
    rows = [{"order_id": e["order"]["id"], "customer_id": e["customer"]["id"],
             "placed_at": e["occurred_at"], "total": 10}
            for e in _log() if e["type"] == "order.placed"]
    rows.sort(key=lambda r: r["placed_at"])  # an export in time order
    path = tmp_path / "orders.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["import", "orders", str(path)]) == 0
    assert main(["import", "orders", str(path)]) == 0  # again: nothing more
    expected = {day: dict(c) for day, c in EXPECTED.items()}
    expected["2026-03-20"] = {"ordered": 1, "customers_new": 1}  # its cancel is not in it
    assert _counters() == expected


def test_the_counted_day_lives_beside_the_profile_and_an_erasure_clears_it(
        counted: LocalStack) -> None:
    from chalicelib.pipeline.erasure import erase
    from chalicelib.store.models import CustomerModel

    item = CustomerModel.get("c-1")
    assert item.retention_day == "2026-04-10" and "retention_day" not in item.profile
    assert erase(["c-2"]).customers == 1
    assert CustomerModel.get("c-2").retention_day is None
    clock.set_now(datetime(2026, 7, 2, 12, 0, tzinfo=UTC))
    counted.ingest([_order("c-2", "o-9", "2026-07-02T11:00:00Z")])  # after the erasure
    assert _counters()["2026-07-02"] == {"ordered": 1, "customers_new": 1}  # a new profile


def test_the_demo_summary_lists_campaigns_only(counted: LocalStack) -> None:
    from chalicelib.local.demo import _enrollments

    campaigns = {campaign for campaign, _arm in _enrollments()}
    assert campaigns and not any(c.startswith("_") for c in campaigns)
