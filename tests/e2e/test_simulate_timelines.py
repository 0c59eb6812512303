"""`aftercare simulate` on the seeded sample log: timelines of specific customers."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from chalicelib.cli.main import main
from chalicelib.journeys import keys
from chalicelib.local.generator import generate, write_jsonl
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def rows(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, str]]:
    log = tmp_path_factory.mktemp("sim") / "events.jsonl"
    write_jsonl(generate(customers=300, days=120, seed=7), log)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(["simulate", "--events", str(log), "--to", "2026-05-05", "--format", "json",
                     "--campaigns", str(ROOT / "campaigns"),
                     "--templates", str(ROOT / "templates")])
    assert code == 0
    return [json.loads(line) for line in buf.getvalue().splitlines()]


def timeline(rows: list[dict[str, str]], customer: str) -> list[tuple[str, str, str, str]]:
    return [(r["campaign"], r["step"], r["at"], r["outcome"]) for r in rows
            if r["customer"] == customer and r["step"] != "-"]


def test_29_february_birthday_is_greeted_on_the_28th_at_ten_local(rows: list) -> None:
    # c-00005: born 1996-02-29, lives in Berlin (CET, UTC+1) -> 10:00 local = 09:00Z.
    assert ("birthday", "greeting", "2026-02-28T09:00:00Z", "sent") in timeline(rows, "c-00005")


def test_new_york_send_times_follow_the_dst_change(rows: list) -> None:
    # 10:00 in New York is 15:00Z before 2026-03-08 (EST) and 14:00Z after (EDT).
    assert ("delivery-checkin", "checkin", "2026-03-03T15:00:00Z", "sent") in timeline(
        rows, "c-00180")
    assert ("delivery-checkin", "checkin", "2026-03-10T14:00:00Z", "sent") in timeline(
        rows, "c-00260")
    ny = {f"c-{i:05d}" for i in range(0, 300, 10)}  # generator: every tenth is New York
    for r in rows:
        if r["customer"] in ny and r["campaign"] == "delivery-checkin" and r["step"] != "-":
            expected = "15" if r["at"] < "2026-03-08" else "14"
            assert r["at"][11:13] == expected, r


def test_far_timezone_customer_gets_local_times(rows: list) -> None:
    # c-00009 lives in Auckland (NZDT, UTC+13 until 2026-04-05).
    t = timeline(rows, "c-00009")
    assert ("delivery-checkin", "checkin", "2026-02-26T21:00:00Z", "sent") in t  # 10:00 local
    assert ("nps-survey", "nps", "2026-03-26T22:00:00Z", "sent") in t  # 11:00 local, Friday


def test_holdout_member_is_never_messaged(rows: list) -> None:
    assert keys.in_holdout("delivery-checkin", "c-00036", 10)
    t = timeline(rows, "c-00036")
    checkins = [x for x in t if x[0] == "delivery-checkin"]
    assert checkins and all(x[3] == "held_out" for x in checkins)


def test_return_exits_pending_steps(rows: list) -> None:
    t = timeline(rows, "c-00092")
    assert ("delivery-checkin", "checkin", "2026-01-15T18:00:00Z", "exited") in t
    assert ("nps-survey", "nps", "2026-02-12T19:00:00Z", "exited") in t
    # A later order enrolls again and is sent.
    assert ("delivery-checkin", "checkin", "2026-04-20T17:00:00Z", "sent") in t


def test_other_formats(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "e.jsonl"
    write_jsonl(generate(customers=5, days=20, seed=1), log)
    with log.open("a") as fh:
        fh.write("{broken\n")
    assert main(["simulate", "--events", str(log), "--format", "csv"]) == 0
    out = capsys.readouterr()
    assert out.out.splitlines()[0] == "customer,campaign,step,at,outcome,reason,channel,template"
    assert f"{log}: line " in out.err and "invalid JSON" in out.err
    assert main(["simulate", "--events", str(log)]) == 0
    assert "still pending" in capsys.readouterr().out
