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
from chalicelib.store.models import CustomerModel, ScheduleModel, StatsModel
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
    assert main(["import", "customers", str(path)]) == 1  # rows 11 and 21: rejected
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


def _report_lines(path: Path) -> list[int]:
    text = path.with_name(path.name + ".rejected.txt").read_text()
    return [int(line.split(": line ")[1].split(":")[0]) for line in text.splitlines()]


def test_the_rejected_rows_report_lists_each_row_once_after_a_crash_between_checkpoints(
        stack: LocalStack, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from chalicelib.handlers import live
    from chalicelib.pipeline.importer import run_import

    clock.set_now(NOW)
    path = _customers(tmp_path)  # rows 11 and 21 are bad
    lines = path.read_text().splitlines()
    lines.insert(52, '{"id": "k-bad-2", "phone": "13"}')  # line 53, after the checkpoint
    path.write_text("\n".join(lines) + "\n")
    checkpoint = path.with_name(path.name + ".checkpoint")
    report_path = path.with_name(path.name + ".rejected.txt")

    def crash(n: int) -> None:
        if n == 55:
            raise KeyboardInterrupt  # killed after row 55; checkpoint at row 50

    with pytest.raises(KeyboardInterrupt):
        run_import("customers", path, live(), checkpoint=checkpoint, progress=crash,
                   rejected_log=report_path)
    assert _report_lines(path) == [11, 21, 53]  # as rejected, before the crash
    # Resumes after row 55, the last row done when it was stopped (rows 51-55 are
    # not read again), and still exits 1: the import rejected rows.
    assert main(["import", "customers", str(path)]) == 1
    out = capsys.readouterr()
    assert "0 rejected, 3 more by earlier runs" in out.out and "complete" in out.out
    assert _report_lines(path) == [11, 21, 53]
    # A new import of the whole file reports afresh, not on top of the last one.
    assert main(["import", "customers", str(path)]) == 1
    assert "3 rejected (see" in capsys.readouterr().out
    assert _report_lines(path) == [11, 21, 53]
    path.write_text("\n".join(line for line in lines if "bad" not in line
                              and "{not json" not in line) + "\n")
    assert main(["import", "customers", str(path)]) == 0
    assert not report_path.exists()  # nothing rejected: no stale report either
    capsys.readouterr()


def _stat_sum(campaign: str, counter: str) -> int:
    return sum(int(getattr(s, counter) or 0) for s in StatsModel.scan()
               if s.pk.startswith(f"{campaign}#"))


def _backfilled_customers(capsys: pytest.CaptureFixture[str]) -> int:
    out = capsys.readouterr().out
    return int(out.split("backfill: ")[1].split(" customers")[0])


def test_a_backfill_checkpoint_is_only_resumed_for_the_campaigns_it_was_made_for(
        stack: LocalStack, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clock.set_now(NOW)
    assert main(["import", "customers", str(_customers(tmp_path))]) == 1
    checkpoint = tmp_path / "backfill.json"
    templates = str(ROOT / "templates")
    assert main(["push", str(BIRTHDAY), "--templates", templates, "--no-backfill"]) == 0
    assert main(["backfill", "--checkpoint", str(checkpoint), "--limit", "17"]) == 0
    assert _backfilled_customers(capsys) == 17
    state = json.loads(checkpoint.read_text())
    assert state["campaigns"] == {"birthday": 1} and state["after"]
    # Same campaigns: resumed after the checkpoint.
    assert main(["backfill", "--checkpoint", str(checkpoint), "--limit", "5"]) == 0
    assert _backfilled_customers(capsys) == 5
    assert len(_birthday_steps()) == 22
    # A new version of the campaign since: from the first customer, counted once.
    assert main(["push", str(BIRTHDAY), "--templates", templates, "--no-backfill"]) == 0
    assert main(["backfill", "--checkpoint", str(checkpoint), "--limit", "59"]) == 0
    assert _backfilled_customers(capsys) == 59
    assert json.loads(checkpoint.read_text())["campaigns"] == {"birthday": 2}
    assert main(["backfill", "--checkpoint", str(checkpoint)]) == 0
    assert _backfilled_customers(capsys) == 1 and not checkpoint.exists()
    _assert_once_each(60)
    assert _stat_sum("birthday", "enrolled") == 60
    # A checkpoint that does not say which campaigns it was for: from the first customer.
    checkpoint.write_text(json.dumps({"after": state["after"]}))
    assert main(["backfill", "--checkpoint", str(checkpoint)]) == 0
    out = capsys.readouterr().out
    assert "backfill: 60 customers, 0 steps planned" in out
    _assert_once_each(60)
    assert _stat_sum("birthday", "enrolled") == 60


def test_a_campaign_pushed_while_a_backfill_is_unfinished_is_counted_once_per_customer(
        stack: LocalStack, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clock.set_now(NOW)
    assert main(["import", "customers", str(_customers(tmp_path))]) == 1
    checkpoint = str(tmp_path / "backfill.json")
    templates = str(ROOT / "templates")
    assert main(["push", str(BIRTHDAY), "--templates", templates, "--no-backfill"]) == 0
    assert main(["backfill", "--checkpoint", checkpoint, "--limit", "25"]) == 0
    assert main(["push", str(FIXTURES / "pipeline_audit" / "campaigns_second"),
                 "--templates", templates, "--checkpoint", checkpoint]) == 0
    assert "backfill: 60 customers, 95 steps planned" in capsys.readouterr().out
    for campaign in ("birthday", "birthday-second"):
        steps = [s for s in ScheduleModel.scan() if s.step["campaign_id"] == campaign]
        assert len({s.step["customer_id"] for s in steps}) == len(steps) == 60
        assert _stat_sum(campaign, "enrolled") == 60
