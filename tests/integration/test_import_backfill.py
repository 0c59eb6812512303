"""Import of existing customers and backfill of date campaigns: exactly once,
even when interrupted and resumed."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from chalicelib import clock
from chalicelib.cli.main import main
from chalicelib.journeys import keys
from chalicelib.local.stack import LocalStack
from chalicelib.store.models import CustomerModel, ScheduleModel
from tests.conftest import FIXTURES, ROOT

BIRTHDAY = FIXTURES / "campaigns_birthday"
NOW = datetime(2026, 4, 1, 12, 0, tzinfo=UTC)


def _customers(tmp_path: Path, n: int = 60) -> Path:
    path = tmp_path / "customers.jsonl"
    rows = []
    for i in range(n):
        rows.append(json.dumps({
            "id": f"k-{i:03d}", "name": f"Kim {i}", "phone": f"+1415555{i:04d}",
            "timezone": "America/Chicago", "birthday": f"19{70 + i % 30}-{1 + i % 12:02d}-15",
            "consent": {"sms": True}, "updated_at": "2026-03-31T00:00:00Z"}))
    rows.insert(10, '{"id": "k-bad", "phone": "12"}')
    rows.insert(20, "{not json")
    path.write_text("\n".join(rows) + "\n")
    return path


def _birthday_steps() -> list[ScheduleModel]:
    return [s for s in ScheduleModel.scan() if s.step["campaign_id"] == "birthday"]


def _assert_once_each(n: int) -> None:
    steps = _birthday_steps()
    assert len(steps) == n
    assert len({s.step["customer_id"] for s in steps}) == n
    for s in steps:
        cid = s.step["customer_id"]
        assert s.schedule_id == keys.schedule_id(cid, "birthday", s.step["ref"], "greeting")


def test_import_plans_live_birthday_campaign_once_across_interruption(
        stack: LocalStack, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clock.set_now(NOW)
    stack.push_campaigns(BIRTHDAY, ROOT / "templates")
    path = _customers(tmp_path)
    assert main(["import", "customers", str(path), "--limit", "25"]) == 1  # two bad rows
    out = capsys.readouterr()
    assert "stopped, resume" in out.out
    assert "line 11: $.customer.phone" in out.err and "line 21: invalid JSON" in out.err
    assert main(["import", "customers", str(path)]) == 0
    out = capsys.readouterr()
    assert "37 imported" in out.out and "complete" in out.out
    _assert_once_each(60)
    # Running the whole file again changes nothing.
    assert main(["import", "customers", str(path)]) == 1
    assert "60 already imported" in capsys.readouterr().out
    _assert_once_each(60)
    profile = CustomerModel.get("k-007").profile
    assert profile["consent"]["sms"]["source"] == "import"


def test_backfill_after_push_plans_each_known_customer_once_when_resumed(
        stack: LocalStack, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clock.set_now(NOW)
    assert main(["import", "customers", str(_customers(tmp_path))]) == 1
    assert _birthday_steps() == []  # no birthday campaign yet
    checkpoint = tmp_path / "backfill.json"
    assert main(["push", str(BIRTHDAY), "--templates", str(ROOT / "templates"),
                 "--no-backfill"]) == 0
    assert main(["backfill", "--checkpoint", str(checkpoint), "--limit", "17"]) == 0
    assert "stopped" in capsys.readouterr().out and checkpoint.exists()
    assert len(_birthday_steps()) == 17
    assert main(["backfill", "--checkpoint", str(checkpoint)]) == 0
    assert "complete" in capsys.readouterr().out and not checkpoint.exists()
    _assert_once_each(60)
    assert main(["backfill", "--checkpoint", str(checkpoint)]) == 0  # a full re-run
    _assert_once_each(60)


def test_imported_orders_update_aggregates_without_triggering_outreach(
        live_stack: LocalStack, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clock.set_now(NOW)
    orders = tmp_path / "orders.csv"
    orders.write_text(
        "order_id,customer_id,placed_at,total,currency,sku,category\n"
        "o-1,c-1,2025-01-10T10:00:00Z,100.00,USD,KX-200,appliance\n"
        "o-2,c-1,2025-06-10T10:00:00Z,50.50,USD,MG-1,kitchen\n"
        "o-3,c-1,not-a-date,1,USD,,\n")
    assert main(["import", "orders", str(orders)]) == 1
    assert "line 4: $.occurred_at: not an ISO 8601 datetime" in capsys.readouterr().err
    profile = CustomerModel.get("c-1").profile
    assert (profile["order_count"], profile["total_spent"]) == (2, 150.5)
    assert profile["last_order_at"] == "2025-06-10T10:00:00Z"
    campaigns = {s.step["campaign_id"] for s in ScheduleModel.scan()}
    assert "loyalty-offer" not in campaigns and "delivery-checkin" not in campaigns
    assert "win-back" in campaigns  # idle since June: the win-back is planned
