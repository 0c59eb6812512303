"""Audit of `aftercare import` and the backfill (issue 4): interruptions, resumes and
inputs the other tests do not cover. Expectations come from the issue, README.md,
docs/ and DESIGN.md."""

from __future__ import annotations

import json
import logging
import math
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from bench._ddb_meter import DdbMeter, attach_app_clients
from chalicelib import clock, handlers
from chalicelib.cli.main import main
from chalicelib.local.stack import LocalStack
from chalicelib.store import tx
from chalicelib.store.models import CustomerModel, EventModel, ScheduleModel
from tests.conftest import FIXTURES, ROOT, load_event

BIRTHDAY = FIXTURES / "campaigns_birthday"
TEMPLATES = ROOT / "templates"
NOW = datetime(2026, 4, 1, 12, 0, tzinfo=UTC)


def pending(campaign: str) -> list[ScheduleModel]:
    return [s for s in ScheduleModel.scan()
            if s.step["campaign_id"] == campaign and s.status == "pending"]


def by_customer(campaign: str) -> dict[str, list[ScheduleModel]]:
    out: dict[str, list[ScheduleModel]] = {}
    for s in pending(campaign):
        out.setdefault(s.step["customer_id"], []).append(s)
    return out


def once_each(campaign: str, ids: list[str]) -> None:
    got = by_customer(campaign)
    assert sorted(got) == sorted(ids)
    assert all(len(v) == 1 for v in got.values()), {k: len(v) for k, v in got.items()}


def due(s: ScheduleModel) -> datetime:
    return datetime.fromtimestamp(s.due_at, UTC)


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def customer_rows(n: int, prefix: str = "a") -> list[Any]:
    return [{"id": f"{prefix}-{i:03d}", "phone": f"+1415555{i:04d}",
             "timezone": "America/Chicago", "birthday": f"19{70 + i % 30}-{1 + i % 12:02d}-20",
             "consent_sms": True} for i in range(n)]


def ids(n: int, prefix: str = "a") -> list[str]:
    return [f"{prefix}-{i:03d}" for i in range(n)]


def throttle() -> ClientError:
    return ClientError({"Error": {"Code": "ProvisionedThroughputExceededException",
                                  "Message": "Rate exceeded"}}, "TransactWriteItems")


def fail_commit_at(monkeypatch: pytest.MonkeyPatch, module: Any, k: int,
                   *, after_write: bool = False, name: str = "commit") -> list[int]:
    """Make the k-th call (1-based) of ``module``'s commit function ``name`` raise a
    throttling error once: before anything is written, or (``after_write``) once it
    was written, as when the response is lost."""
    real = getattr(module, name)
    calls: list[int] = []

    def flaky(t: tx.Transaction, *a: Any, **kw: Any) -> Any:
        calls.append(1)
        if len(calls) == k:
            if after_write:
                real(t, *a, **kw)
            raise throttle()
        return real(t, *a, **kw)

    monkeypatch.setattr(module, name, flaky)
    return calls


def fail_write_at(monkeypatch: pytest.MonkeyPatch, module: Any, k: int,
                  *, after_write: bool = False) -> list[int]:
    """:func:`fail_commit_at` for the transactions the import writes its batches of
    rows in (``commit_states``)."""
    return fail_commit_at(monkeypatch, module, k, after_write=after_write,
                          name="commit_states")


def push_cli(*paths: Path, backfill: bool = False, checkpoint: Path | None = None) -> None:
    argv = ["push", *map(str, paths), "--templates", str(TEMPLATES)]
    argv += ["--checkpoint", str(checkpoint)] if checkpoint else []
    argv += [] if backfill else ["--no-backfill"]
    assert main(argv) == 0
    handlers.live().invalidate()  # as a new process would see them


# -- interruptions of the import -----------------------------------------------------------


@pytest.mark.parametrize(("k", "after_write"), [
    (1, False), (3, False), (5, False), (6, True), (9, False), (10, True)])
def test_a_failed_write_mid_import_then_resume_plans_each_customer_once(
        stack: LocalStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], k: int, after_write: bool) -> None:
    """The k-th of the ten transactions 230 rows are written in fails (before or
    after it was written): the run stops, and a run again resumes after the last row
    up to which every row was written, and ends with each customer planned once."""
    from chalicelib.pipeline import ingest
    from chalicelib.store.models import StatsModel

    n = 230
    clock.set_now(NOW)
    stack.push_campaigns(BIRTHDAY, TEMPLATES)
    path = write_jsonl(tmp_path / "c.jsonl", customer_rows(n))
    calls = fail_write_at(monkeypatch, ingest, k, after_write=after_write)
    assert main(["import", "customers", str(path)]) == 1  # "import stopped: ..."
    assert "run the same command again to resume" in capsys.readouterr().err
    assert len(calls) == k
    written = sorted(by_customer("birthday"))
    assert written == sorted(ids(len(written)))  # rows are written in the file's order
    assert 0 < len(written) <= n if (k, after_write) != (1, False) else written == []
    saved = path.with_name(path.name + ".checkpoint")
    resume_after = json.loads(saved.read_text())["line"] if saved.exists() else 0
    assert resume_after <= len(written)  # every row up to the checkpoint was written
    assert len(written) - resume_after < 100  # ... and at most a batch is read again
    monkeypatch.undo()
    assert main(["import", "customers", str(path)]) == 0
    out = capsys.readouterr().out
    assert "complete" in out
    assert out.startswith(f"{n - resume_after} rows")
    assert f"{len(written) - resume_after} already imported" in out
    assert sum(int(s.enrolled or 0) for s in StatsModel.scan()) == n
    once_each("birthday", ids(n))
    assert main(["import", "customers", str(path)]) == 0
    assert f"{n} already imported" in capsys.readouterr().out
    once_each("birthday", ids(n))


def test_a_throttled_import_says_how_to_resume_instead_of_a_traceback(
        stack: LocalStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from chalicelib.pipeline import ingest

    clock.set_now(NOW)
    path = write_jsonl(tmp_path / "c.jsonl", customer_rows(60))
    fail_write_at(monkeypatch, ingest, 2)
    code = main(["import", "customers", str(path)])  # raises today
    assert code != 0
    assert "resume" in capsys.readouterr().err


def test_orders_import_interrupted_at_several_points_counts_each_order_once(
        live_stack: LocalStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from chalicelib.pipeline import ingest

    clock.set_now(NOW)
    rows = [{"order_id": f"o-{c}-{j}", "customer_id": f"c-{c}",
             "placed_at": f"2025-{1 + j:02d}-1{c}T10:00:00Z", "total": 10.25 * (j + 1)}
            for c in range(3) for j in range(5)]
    path = write_jsonl(tmp_path / "orders.jsonl", rows)
    fail_write_at(monkeypatch, ingest, 3)
    assert main(["import", "orders", str(path)]) == 1  # "import stopped: ...; run again"
    monkeypatch.undo()
    assert main(["import", "orders", str(path), "--limit", "4"]) == 0
    assert main(["import", "orders", str(path)]) == 0
    assert main(["import", "orders", str(path)]) == 0
    capsys.readouterr()
    for c in range(3):
        p = CustomerModel.get(f"c-{c}").profile
        assert p["order_count"] == 5
        assert p["total_spent"] == round(sum(10.25 * (j + 1) for j in range(5)), 2)
        assert p["first_order_at"] == f"2025-01-1{c}T10:00:00Z"
        assert p["last_order_at"] == f"2025-05-1{c}T10:00:00Z"
    once_each("win-back", [f"c-{c}" for c in range(3)])
    once_each("purchase-anniversary", [f"c-{c}" for c in range(3)])


def _profile_core(p: dict[str, Any]) -> dict[str, Any]:
    keys = ("order_count", "total_spent", "first_order_at", "last_order_at", "birthday",
            "phone", "timezone", "consent", "products", "currency")
    return {k: p.get(k) for k in keys}


def test_orders_before_customers_and_the_reverse_end_in_the_same_state(
        live_stack: LocalStack, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clock.set_now(NOW)

    def customer(cid: str) -> dict[str, Any]:
        return {"id": cid, "phone": "+14155550142", "email": f"{cid}@example.com",
                "timezone": "Europe/Berlin", "birthday": "1988-07-04",
                "consent_sms": True, "consent_email": True}

    def orders(cid: str) -> list[Any]:
        return [{"order_id": f"{cid}-o{j}", "customer_id": cid,
                 "placed_at": f"2025-0{2 + j}-03T09:00:00Z", "total": 40 + j,
                 "sku": f"S-{j}", "category": "appliance"} for j in range(3)]

    write_jsonl(tmp_path / "o1.jsonl", orders("x1"))
    write_jsonl(tmp_path / "c1.jsonl", [customer("x1")])
    write_jsonl(tmp_path / "o2.jsonl", orders("x2"))
    write_jsonl(tmp_path / "c2.jsonl", [customer("x2")])
    assert main(["import", "orders", str(tmp_path / "o1.jsonl")]) == 0
    assert main(["import", "customers", str(tmp_path / "c1.jsonl")]) == 0
    assert main(["import", "customers", str(tmp_path / "c2.jsonl")]) == 0
    assert main(["import", "orders", str(tmp_path / "o2.jsonl")]) == 0
    capsys.readouterr()
    a, b = (_profile_core(CustomerModel.get(c).profile) for c in ("x1", "x2"))
    a["consent"] = {k: v["granted"] for k, v in a["consent"].items()}
    b["consent"] = {k: v["granted"] for k, v in b["consent"].items()}
    assert a == b
    assert a["order_count"] == 3 and a["timezone"] == "Europe/Berlin"
    once_each("birthday", ["x1", "x2"])
    # Once the steps already due are decided (history: the anniversary of February
    # and the idle day of 2025 expire), both customers have the same plan.
    live_stack.run_due(NOW)
    for campaign in ("birthday", "win-back", "purchase-anniversary"):
        plans = {cid: sorted((s.step["ref"], s.due_at) for s in steps)
                 for cid, steps in by_customer(campaign).items()}
        assert plans.get("x1") == plans.get("x2"), (campaign, plans)
    assert [s.step["ref"] for s in by_customer("purchase-anniversary")["x1"]] == \
        ["first_order_at:2025-02-03:2027"]


# -- what the import plans ----------------------------------------------------------------


def test_29_february_birthdays_are_planned_on_28_february_and_invalid_dates_rejected(
        stack: LocalStack, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clock.set_now(NOW)
    stack.push_campaigns(BIRTHDAY, TEMPLATES)
    path = write_jsonl(tmp_path / "c.jsonl", [
        {"id": "leap", "phone": "+14155550101", "birthday": "1992-02-29",
         "timezone": "America/New_York", "consent_sms": True},
        {"id": "bad-1", "birthday": "1993-02-29"},
        {"id": "bad-2", "birthday": "1990-13-01"},
        {"id": "bad-3", "birthday": "15/02/1990"},
        {"id": "bad-4", "birthday": 19900215},
    ])
    assert main(["import", "customers", str(path)]) == 1
    err = capsys.readouterr().err
    for line in (2, 3, 4, 5):
        assert f"line {line}: $.customer.birthday" in err, err
    (step,) = pending("birthday")
    assert due(step) == datetime(2027, 2, 28, 15, 0, tzinfo=UTC)  # 10:00 New York
    assert sorted(c.customer_id for c in CustomerModel.scan()) == ["leap"]


def test_a_customer_listed_twice_with_a_corrected_birthday_has_one_pending_step(
        stack: LocalStack, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clock.set_now(NOW)
    stack.push_campaigns(BIRTHDAY, TEMPLATES)
    path = write_jsonl(tmp_path / "c.jsonl", [
        {"id": "twice", "phone": "+14155550102", "birthday": "1980-05-01", "consent_sms": True},
        {"id": "twice", "phone": "+14155550102", "birthday": "1980-06-01", "consent_sms": True},
    ])
    assert main(["import", "customers", str(path)]) == 0
    assert main(["import", "customers", str(path)]) == 0
    capsys.readouterr()
    (step,) = pending("birthday")
    assert step.step["ref"] == "birthday:1980-06-01:2026"


def test_an_imported_customer_then_a_live_event_in_another_zone_keeps_one_birthday_step(
        stack: LocalStack, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clock.set_now(NOW)
    stack.push_campaigns(BIRTHDAY, TEMPLATES)
    path = write_jsonl(tmp_path / "c.jsonl", [
        {"id": "tz-1", "phone": "+14155550103", "birthday": "1980-05-01",
         "timezone": "America/Chicago", "consent_sms": True}])
    assert main(["import", "customers", str(path)]) == 0
    capsys.readouterr()
    (before,) = pending("birthday")
    assert due(before) == datetime(2026, 5, 1, 15, 0, tzinfo=UTC)  # 10:00 CDT
    event = load_event("customer_updated")
    event.update(id="evt-tz-1", occurred_at="2026-04-01T12:30:00Z")
    event["customer"] = {"id": "tz-1", "timezone": "Europe/Berlin"}
    clock.set_now(datetime(2026, 4, 1, 12, 30, tzinfo=UTC))
    stack.ingest([event])
    (after,) = pending("birthday")
    assert after.schedule_id == before.schedule_id
    assert due(after) == datetime(2026, 5, 1, 8, 0, tzinfo=UTC)  # 10:00 CEST
    # The same customer imported again (file unchanged): nothing moves back.
    assert main(["import", "customers", str(path)]) == 0
    capsys.readouterr()
    (again,) = pending("birthday")
    assert due(again) == due(after)


def test_an_import_never_lifts_a_recorded_stop(
        stack: LocalStack, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clock.set_now(NOW)
    event = load_event("customer_updated")
    event.update(id="evt-stop", occurred_at="2026-03-30T12:00:00Z")
    event["customer"] = {"id": "stop-1", "phone": "+14155550104",
                         "consent": {"sms": False}}
    stack.ingest([event])
    path = write_jsonl(tmp_path / "c.jsonl", [
        {"id": "stop-1", "phone": "+14155550104", "consent_sms": "yes"}])
    assert main(["import", "customers", str(path)]) == 0
    capsys.readouterr()
    assert CustomerModel.get("stop-1").profile["consent"]["sms"]["granted"] is False


def test_a_customer_imported_after_the_backfill_ran_is_planned_by_the_import(
        stack: LocalStack, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clock.set_now(NOW)
    first = write_jsonl(tmp_path / "first.jsonl", customer_rows(5, "f"))
    assert main(["import", "customers", str(first)]) == 0
    push_cli(BIRTHDAY, backfill=True, checkpoint=tmp_path / "bf.json")
    once_each("birthday", ids(5, "f"))
    later = write_jsonl(tmp_path / "later.jsonl", customer_rows(5, "l"))
    assert main(["import", "customers", str(later)]) == 0
    capsys.readouterr()
    once_each("birthday", ids(5, "f") + ids(5, "l"))


ANNIVERSARY = {"id": "anniv", "name": "Anniversary", "trigger": {"date": "customer.first_order_at"},
               "steps": [{"id": "thanks", "at": "10:00", "channel": "email",
                          "template": "anniversary"}]}


@pytest.mark.parametrize("kind", ["birthday-updated_at", "anniversary-placed_at"])
def test_importing_history_never_sends_a_greeting_for_a_date_already_past(
        stack: LocalStack, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        kind: str) -> None:
    clock.set_now(NOW)
    if kind.startswith("birthday"):
        stack.push_campaigns(BIRTHDAY, TEMPLATES)
        path = write_jsonl(tmp_path / "c.jsonl", [
            {"id": "h-1", "phone": "+14155550100", "birthday": "1990-02-10",
             "consent_sms": True, "updated_at": "2024-01-01T00:00:00Z"}])
        assert main(["import", "customers", str(path)]) == 0
    else:
        (tmp_path / "camp").mkdir()
        (tmp_path / "camp" / "anniv.json").write_text(json.dumps(ANNIVERSARY))
        stack.push_campaigns(tmp_path / "camp", TEMPLATES)
        path = write_jsonl(tmp_path / "c.jsonl", [{"id": "h-1", "email": "h1@example.com"}])
        assert main(["import", "customers", str(path)]) == 0
        path = write_jsonl(tmp_path / "o.jsonl", [
            {"order_id": "h-o1", "customer_id": "h-1", "placed_at": "2024-05-01T12:00:00Z",
             "total": 30}])
        assert main(["import", "orders", str(path)]) == 0
    capsys.readouterr()
    for _ in range(3):
        stack.run_due(NOW)
    sent = len(stack.twilio.messages) + len(stack.sent_emails())
    refs = sorted(s.step["ref"] for s in ScheduleModel.scan())
    # The next occurrence, planned as a backfill would plan it; nothing sent late.
    assert sent == 0, (sent, refs)
    assert all(due(s) > NOW for s in ScheduleModel.scan()), refs


def test_the_done_criterion_across_an_interrupted_import_and_an_interrupted_backfill(
        stack: LocalStack, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Import half the file, push with a backfill cut short, import the rest (the
    campaign is live now), resume the backfill, run everything again: each customer
    is enrolled once and counted once."""
    from chalicelib.store.models import StatsModel

    clock.set_now(NOW)
    path = write_jsonl(tmp_path / "c.jsonl", customer_rows(70, "d"))
    checkpoint = tmp_path / "bf.json"
    assert main(["import", "customers", str(path), "--limit", "33"]) == 0
    push_cli(BIRTHDAY)
    assert main(["backfill", "--checkpoint", str(checkpoint), "--limit", "30"]) == 0
    assert main(["import", "customers", str(path)]) == 0
    assert main(["backfill", "--checkpoint", str(checkpoint)]) == 0
    assert not checkpoint.exists()
    assert main(["import", "customers", str(path)]) == 0
    push_cli(BIRTHDAY, backfill=True, checkpoint=checkpoint)  # version 2, backfilled
    capsys.readouterr()
    once_each("birthday", ids(70, "d"))
    enrolled = sum(int(s.enrolled or 0) for s in StatsModel.scan()
                   if s.pk.startswith("birthday#"))
    assert enrolled == 70


def test_a_backfill_stopped_at_a_scan_page_boundary_resumes_without_gaps(
        stack: LocalStack, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clock.set_now(NOW)
    path = write_jsonl(tmp_path / "c.jsonl", customer_rows(130, "pg"))
    assert main(["import", "customers", str(path)]) == 0
    push_cli(BIRTHDAY)
    checkpoint = tmp_path / "bf.json"
    assert main(["backfill", "--checkpoint", str(checkpoint), "--limit", "100"]) == 0
    assert len(by_customer("birthday")) == 100
    assert main(["backfill", "--checkpoint", str(checkpoint), "--limit", "1"]) == 0
    assert main(["backfill", "--checkpoint", str(checkpoint)]) == 0
    out = capsys.readouterr().out
    assert "backfill: 29 customers, 29 steps planned" in out and "complete" in out
    once_each("birthday", ids(130, "pg"))


def test_an_idle_campaign_pushed_after_an_orders_import_is_backfilled_once(
        stack: LocalStack, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clock.set_now(NOW)
    rows = [{"order_id": f"i-{c}-{j}", "customer_id": f"i-{c:02d}",
             "placed_at": f"2026-0{1 + j}-0{1 + c % 9}T10:00:00Z", "total": 5}
            for c in range(30) for j in range(2)]
    path = write_jsonl(tmp_path / "o.jsonl", rows)
    assert main(["import", "orders", str(path)]) == 0
    camp = tmp_path / "camp"
    camp.mkdir()
    (camp / "win-back.json").write_text((ROOT / "campaigns" / "win-back.json").read_text())
    checkpoint = tmp_path / "bf.json"
    push_cli(camp)
    assert main(["backfill", "--checkpoint", str(checkpoint), "--limit", "26"]) == 0
    assert main(["backfill", "--checkpoint", str(checkpoint)]) == 0
    assert main(["backfill", "--checkpoint", str(checkpoint)]) == 0
    capsys.readouterr()
    got = by_customer("win-back")
    assert sorted(got) == [f"i-{c:02d}" for c in range(30)]
    for cid, (step,) in got.items():
        p = CustomerModel.get(cid).profile
        assert step.step["ref"] == f"idle:{p['last_order_at']}"
        assert p["last_order_at"].startswith("2026-02-")


def test_a_live_order_for_an_imported_order_is_counted_once(
        stack: LocalStack, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clock.set_now(NOW)
    path = write_jsonl(tmp_path / "o.jsonl", [
        {"order_id": "o-9", "customer_id": "c-42", "placed_at": "2026-02-27T10:00:00Z",
         "total": 129.5}])
    assert main(["import", "orders", str(path)]) == 0
    capsys.readouterr()
    placed = load_event("order_placed")
    delivered = load_event("order_delivered")
    stack.ingest([placed, delivered])
    p = CustomerModel.get("c-42").profile
    assert (p["order_count"], p["total_spent"]) == (1, 129.5)
    assert p["first_order_at"] == p["last_order_at"] == "2026-02-27T10:00:00Z"


def test_an_erased_customer_is_not_brought_back_by_running_the_import_again(
        stack: LocalStack, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clock.set_now(NOW)
    stack.push_campaigns(BIRTHDAY, TEMPLATES)
    path = write_jsonl(tmp_path / "c.jsonl", customer_rows(3, "er"))
    assert main(["import", "customers", str(path), "--limit", "2"]) == 0
    clock.set_now(datetime(2026, 4, 1, 13, 0, tzinfo=UTC))
    assert main(["erase", "er-000"]) == 0
    assert main(["import", "customers", str(path)]) == 0
    assert main(["import", "customers", str(path)]) == 0
    capsys.readouterr()
    erased = CustomerModel.get("er-000")
    assert erased.erased_at is not None and not erased.profile.get("phone")
    once_each("birthday", ["er-001", "er-002"])


# -- the backfill ---------------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 26, 40])
def test_a_throttled_backfill_resumes_from_its_checkpoint_and_plans_each_once(
        stack: LocalStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], k: int) -> None:
    from chalicelib.pipeline import backfill

    clock.set_now(NOW)
    path = write_jsonl(tmp_path / "c.jsonl", customer_rows(45))
    assert main(["import", "customers", str(path)]) == 0
    push_cli(BIRTHDAY)
    checkpoint = tmp_path / "bf.json"
    fail_commit_at(monkeypatch, backfill, k)
    assert main(["backfill", "--checkpoint", str(checkpoint)]) == 1  # one line, no traceback
    assert "backfill stopped:" in capsys.readouterr().err
    assert len(by_customer("birthday")) == k - 1
    assert checkpoint.exists() == (k > 25)
    monkeypatch.undo()
    assert main(["backfill", "--checkpoint", str(checkpoint)]) == 0
    out = capsys.readouterr().out
    resumed = int(out.split("backfill: ")[1].split(" customers")[0])
    assert resumed == (45 - 25 if k > 25 else 45)
    once_each("birthday", ids(45))
    assert main(["backfill", "--checkpoint", str(checkpoint)]) == 0
    assert "0 steps planned" in capsys.readouterr().out
    once_each("birthday", ids(45))


def _v2(tmp_path: Path, steps: list[dict[str, Any]]) -> Path:
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "birthday.json").write_text(json.dumps({
        "id": "birthday", "name": "Birthday greeting", "trigger": {"date": "customer.birthday"},
        "steps": steps}))
    return v2


GREETING = {"id": "greeting", "at": "10:00", "channel": "sms", "template": "birthday"}


@pytest.mark.parametrize("steps", [
    pytest.param([{**GREETING, "id": "wish"}], id="step-renamed"),
    pytest.param([GREETING, {**GREETING, "id": "again", "after": "P2D"}], id="step-added"),
])
def test_known_customers_keep_their_yearly_birthday_after_a_new_version_is_pushed(
        stack: LocalStack, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        steps: list[dict[str, Any]]) -> None:
    clock.set_now(NOW)
    rows = [{"id": "v-1", "phone": "+14155550131", "birthday": "1980-05-20",
             "timezone": "America/Chicago", "consent_sms": True}]
    assert main(["import", "customers", str(write_jsonl(tmp_path / "c.jsonl", rows))]) == 0
    push_cli(BIRTHDAY, backfill=True, checkpoint=tmp_path / "bf.json")
    once_each("birthday", ["v-1"])
    push_cli(_v2(tmp_path, steps), backfill=True, checkpoint=tmp_path / "bf.json")
    capsys.readouterr()
    for minute in range(3):  # this year's birthday is over; the tick runs each minute
        stack.run_due(datetime(2026, 5, 25, 20, minute, tzinfo=UTC))
    # This year's occurrence went on under version 2 (its new step was decided) and
    # next year's is planned, as it is for a customer who never saw version 1.
    this_year = {s.step["step_id"]: s.status for s in ScheduleModel.scan()
                 if s.step["ref"] == "birthday:1980-05-20:2026"}
    assert this_year[steps[-1]["id"]] == "done", this_year
    refs = {s.step["ref"] for s in pending("birthday")}
    assert refs == {"birthday:1980-05-20:2027"}, [
        (s.step["ref"], s.step["step_id"], s.status, s.outcome, s.reason)
        for s in ScheduleModel.scan()]


# -- input edge cases ---------------------------------------------------------------------


def test_csv_with_crlf_blank_lines_short_and_long_rows_imports_what_it_can(
        stack: LocalStack, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clock.set_now(NOW)
    path = tmp_path / "c.csv"
    path.write_bytes(
        b"id,phone,birthday,consent_sms\r\n"
        b"e-1,+14155550111,1980-01-02,yes\r\n"
        b"\r\n"
        b"e-2,+14155550112\r\n"
        b"e-3,+14155550113,1980-03-04,yes,extra,more\r\n"
        b",,,\r\n"
        b"e-4,\"+1 415 555 0114\",1980-05-06,no\r\n")
    assert main(["import", "customers", str(path)]) == 1
    out = capsys.readouterr()
    assert "line 6: id: required column is missing" in out.err
    assert "4 imported" in out.out
    p = {c.customer_id: c.profile for c in CustomerModel.scan()}
    assert sorted(p) == ["e-1", "e-2", "e-3", "e-4"]
    assert "birthday" not in p["e-2"]
    assert p["e-4"]["phone"] == "+14155550114"


def test_a_csv_with_only_a_header_or_nothing_completes_with_zero_rows(
        stack: LocalStack, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    header = tmp_path / "h.csv"
    header.write_text("id,phone,birthday\n")
    empty = tmp_path / "e.jsonl"
    empty.write_text("")
    assert main(["import", "customers", str(header)]) == 0
    assert main(["import", "customers", str(empty)]) == 0
    out = capsys.readouterr().out
    assert out.count("0 rows: 0 imported") == 2 and out.count("complete") == 2


def test_a_latin1_file_is_reported_not_a_traceback(
        stack: LocalStack, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clock.set_now(NOW)
    path = tmp_path / "c.csv"
    path.write_bytes("id,name\nl-1,Ana\nl-2,Jos\u00e9\nl-3,Ines\n".encode("latin-1"))
    code = main(["import", "customers", str(path)])
    out = capsys.readouterr()
    assert code == 1
    assert "line 3" in out.err


def test_a_jsonl_with_a_bad_line_in_the_middle_loads_the_rest_and_names_the_line(
        stack: LocalStack, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clock.set_now(NOW)
    rows: list[Any] = customer_rows(6, "j")
    rows[2] = '{"id": "j-002", "phone": '
    rows[4] = '["j-004"]'
    path = write_jsonl(tmp_path / "c.jsonl", rows)
    assert main(["import", "customers", str(path)]) == 1
    out = capsys.readouterr()
    assert "line 3: invalid JSON" in out.err
    assert "line 5: a row must be a JSON object" in out.err
    assert sorted(c.customer_id for c in CustomerModel.scan()) == \
        ["j-000", "j-001", "j-003", "j-005"]


@pytest.mark.parametrize("row", [
    {"id": "v-1", "consent": "yes"},
    {"id": "v-1", "consent": True},
    {"id": "v-1", "attributes": "gold"},
    {"id": "v-1", "attributes": ["gold"]},
])
def test_a_malformed_consent_or_attributes_value_is_rejected_not_a_crash(
        stack: LocalStack, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        row: dict[str, Any]) -> None:
    clock.set_now(NOW)
    path = write_jsonl(tmp_path / "c.jsonl", [row, {"id": "v-2"}])
    assert main(["import", "customers", str(path)]) == 1
    out = capsys.readouterr()
    assert "line 1:" in out.err
    assert [c.customer_id for c in CustomerModel.scan()] == ["v-2"]


def test_a_csv_attributes_column_of_json_is_rejected_or_read_not_a_crash(
        stack: LocalStack, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clock.set_now(NOW)
    path = tmp_path / "c.csv"
    path.write_text('id,attributes\nw-1,"{""tier"": ""gold""}"\nw-2,\n')
    code = main(["import", "customers", str(path)])
    capsys.readouterr()
    assert code in (0, 1)
    assert "w-2" in [c.customer_id for c in CustomerModel.scan()]


@pytest.mark.parametrize("total", ["NaN", "inf", "-Infinity"])
def test_a_non_finite_order_total_is_rejected_not_a_crash(
        stack: LocalStack, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        total: str) -> None:
    clock.set_now(NOW)
    path = tmp_path / "o.csv"
    path.write_text("order_id,customer_id,placed_at,total\n"
                    f"n-1,c-n,2025-01-10T10:00:00Z,{total}\n"
                    "n-2,c-n,2025-02-10T10:00:00Z,12.5\n")
    code = main(["import", "orders", str(path)])
    out = capsys.readouterr()
    p = CustomerModel.get("c-n").profile
    assert math.isfinite(p["total_spent"]), p["total_spent"]  # nan / inf today
    assert code == 1 and "line 2: total" in out.err
    assert (p["order_count"], p["total_spent"]) == (1, 12.5)


def test_rejected_rows_never_put_contact_details_in_logs_or_reports(
        stack: LocalStack, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    clock.set_now(NOW)
    path = write_jsonl(tmp_path / "c.jsonl", [
        {"id": "p-1", "phone": "+1415555012", "email": "zed.secret@example.com"},
        {"id": "p-2", "phone": "+14155550199", "email": "zed.secret@@example"},
        {"id": "p-3", "phone": "+14155550198", "name": "Zed Secretname", "birthday": "Zed"},
        {"id": "p-4", "phone": "+14155550197", "updated_at": "yesterday"},
    ])
    with caplog.at_level(logging.DEBUG):
        assert main(["import", "customers", str(path)]) == 1
    out = capsys.readouterr()
    report = (tmp_path / "c.jsonl.rejected.txt").read_text()
    assert [line.split(": ")[1] for line in report.splitlines()] == \
        ["line 1", "line 2", "line 3", "line 4"]
    assert "$.customer.phone" in report and "$.customer.email" in report
    assert "$.customer.birthday" in report and "$.occurred_at" in report
    for text in (out.out, out.err, caplog.text, report):
        for pii in ("4155550", "zed.secret", "Secretname"):
            assert pii not in text, (pii, text)


def test_a_shifted_csv_row_does_not_echo_an_email_into_the_report(
        stack: LocalStack, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clock.set_now(NOW)
    path = tmp_path / "c.csv"
    # An unquoted comma in the name shifts the email into the consent column.
    path.write_text("id,name,email,consent_email\ns-1,Souza, Ana,ana.souza@example.com,yes\n")
    assert main(["import", "customers", str(path)]) == 1
    err = capsys.readouterr().err
    report = (tmp_path / "c.csv.rejected.txt").read_text()
    assert "line 2:" in report
    assert "ana.souza" not in err and "ana.souza" not in report, report


# -- resume safety ---------------------------------------------------------------------


def test_a_checkpoint_left_by_another_file_does_not_skip_the_new_files_rows(
        stack: LocalStack, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clock.set_now(NOW)
    path = write_jsonl(tmp_path / "export.jsonl", customer_rows(10, "old"))
    assert main(["import", "customers", str(path), "--limit", "6"]) == 0
    # Next month: a new export, saved under the same name, imported from scratch.
    write_jsonl(path, customer_rows(10, "new"))
    assert main(["import", "customers", str(path)]) == 0
    capsys.readouterr()
    imported = {c.customer_id for c in CustomerModel.scan()}
    assert set(ids(10, "new")) <= imported


def test_reimporting_an_old_export_after_the_markers_expire_keeps_newer_live_data(
        stack: LocalStack, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clock.set_now(NOW)
    path = write_jsonl(tmp_path / "c.jsonl", [
        {"id": "r-1", "phone": "+14155550120", "consent_sms": True}])
    os.utime(path, (NOW.timestamp(), NOW.timestamp()))  # the export was written at NOW
    assert main(["import", "customers", str(path)]) == 0
    event = load_event("customer_updated")
    event.update(id="evt-phone", occurred_at="2026-04-02T12:00:00Z")
    event["customer"] = {"id": "r-1", "phone": "+14155550121"}
    clock.set_now(datetime(2026, 4, 2, 12, 0, tzinfo=UTC))
    stack.ingest([event])
    # 40 days later the same file is imported again; DynamoDB's TTL removed the markers.
    clock.set_now(datetime(2026, 5, 12, 12, 0, tzinfo=UTC))
    for marker in EventModel.scan():
        if marker.expires_at < clock.now():
            marker.delete()
    assert main(["import", "customers", str(path)]) == 0
    capsys.readouterr()
    assert CustomerModel.get("r-1").profile["phone"] == "+14155550121"


def test_reimporting_orders_after_the_markers_expire_counts_each_order_once(
        stack: LocalStack, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clock.set_now(NOW)
    rows = [{"order_id": f"big-{j:03d}", "customer_id": "b2b",
             "placed_at": f"2025-01-01T{j // 60:02d}:{j % 60:02d}:00Z", "total": 1}
            for j in range(205)]
    path = write_jsonl(tmp_path / "o.jsonl", rows)
    assert main(["import", "orders", str(path)]) == 0
    assert CustomerModel.get("b2b").profile["order_count"] == 205
    clock.set_now(datetime(2026, 5, 12, 12, 0, tzinfo=UTC))
    for marker in EventModel.scan():
        marker.delete()
    assert main(["import", "orders", str(path)]) == 0
    capsys.readouterr()
    assert CustomerModel.get("b2b").profile["order_count"] == 205


# -- batched writes -------------------------------------------------------------------


def test_the_import_batches_its_writes(stack: LocalStack, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    clock.set_now(NOW)
    path = write_jsonl(tmp_path / "c.jsonl", customer_rows(100, "w"))
    attach_app_clients()
    with DdbMeter() as meter:
        assert main(["import", "customers", str(path)]) == 0
    capsys.readouterr()
    print(dict(meter.requests))
    writes = sum(meter.requests[op] for op in ("PutItem", "UpdateItem", "BatchWriteItem",
                                               "TransactWriteItems"))
    assert writes < 100
