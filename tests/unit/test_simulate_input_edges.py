"""Event-log edges a review of `aftercare simulate` found (session 10).

Each test held a defect: simulate accepted an event the pipeline dead-letters (over
64 KB, an integer beyond a double), a carriage return inside a line split it, a BOM
opening a later line made it bad, reasons printed values (an email in a mis-mapped
field), a cancelled order's purchase event counted as a conversion, a pipe could not
be read, a line break in a customer id broke the table, the year check read the
local year, and a missing currency was reported as an internal class name.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from chalicelib.events import EventError, parse_event
from chalicelib.events import text as event_text
from chalicelib.events.envelope import MAX_EVENT_BYTES, parse_time
from chalicelib.journeys.engine import CampaignSet, process_event
from chalicelib.journeys.parallel import simulate_file
from chalicelib.journeys.simulate import parse_line
from chalicelib.pipeline.batch import PermanentError
from chalicelib.pipeline.ingest import decode
from chalicelib.render import Renderer, RenderError
from tests.conftest import ROOT
from tests.unit.test_audit_simulate_cli import (
    csv_rows,
    customer,
    event,
    order,
    run_simulate,
)

AFTERCARE = [sys.executable, "-m", "chalicelib.cli.main"]


def _examples() -> CampaignSet:
    from bench.simulate_bench import _campaigns

    return _campaigns()


def _delivery(eid: str, cid: str, at: str = "2026-06-01T14:00:00Z",
              **extra: Any) -> dict[str, Any]:
    return event(eid, "order.delivered", at, customer(cid, "America/New_York"),
                 order(f"o-{eid}", **extra))


def test_an_event_over_64_kb_is_a_bad_line_as_the_pipeline_dead_letters_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    big = json.dumps(_delivery("e1", "c1", pad="x" * 70_000))
    small = json.dumps(_delivery("e2", "c2"))
    with pytest.raises(PermanentError, match="larger than 65536 bytes"):
        decode(big)
    assert parse_line(big + "\n") == f"event larger than {MAX_EVENT_BYTES} bytes"
    # Non-ASCII text is counted in UTF-8 bytes, as the queue counts it: 30,000 "é"
    # are 60,000 bytes (under), 33,000 are 66,000 (over).
    assert isinstance(parse_line(json.dumps(_delivery("e3", "c3", pad="é" * 30_000),
                                            ensure_ascii=False) + "\n"), dict)
    over = json.dumps(_delivery("e4", "c4", pad="é" * 33_000), ensure_ascii=False)
    assert len(over) < MAX_EVENT_BYTES < len(over.encode())
    assert parse_line(over + "\n") == f"event larger than {MAX_EVENT_BYTES} bytes"
    with pytest.raises(PermanentError, match="larger than"):
        decode(over)
    code, out, err = run_simulate(tmp_path, None, [big, small], capsys=capsys)
    assert code == 0
    assert {r[0] for r in csv_rows(out)} == {"c2"}
    assert err.splitlines() == [f"{tmp_path / 'events.jsonl'}: line 1: event larger than "
                                f"{MAX_EVENT_BYTES} bytes"]


def test_a_carriage_return_inside_a_line_is_whitespace_and_line_numbers_hold(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = json.dumps(_delivery("e1", "c1")).replace(', "occurred_at"', ',\r"occurred_at"')
    assert "\r" in good
    code, out, err = run_simulate(tmp_path, None, [good, "{bad", json.dumps(
        _delivery("e2", "c2")) + "\r"], capsys=capsys)  # the last: a CRLF line
    assert code == 0
    assert {r[0] for r in csv_rows(out)} == {"c1", "c2"}
    assert err.splitlines() == [f"{tmp_path / 'events.jsonl'}: line 2: invalid JSON: "
                                "Expecting property name enclosed in double quotes"]


def test_parallel_run_reads_lines_as_the_sequential_one(tmp_path: Path) -> None:
    """Carriage returns, a BOM opening a later line and an over-size event, in a log
    long enough to be split across processes: the same rows and bad lines."""
    lines = []
    for i in range(2_500):
        text = json.dumps(_delivery(f"e{i}", f"c{i % 400}",
                                    at=f"2026-06-{1 + i % 28:02d}T14:00:00Z"))
        if i % 7 == 0:
            text = text.replace(', "occurred_at"', ',\r"occurred_at"')
        if i % 11 == 0:
            text = "\ufeff" + text
        if i == 1_000:
            text = json.dumps(_delivery(f"e{i}", "c1", pad="y" * MAX_EVENT_BYTES))
        lines.append(text)
    lines.sort(key=lambda t: json.loads(t.lstrip("\ufeff"))["occurred_at"])
    log = tmp_path / "events.jsonl"
    log.write_text("\n".join(lines) + "\n", encoding="utf-8")
    campaigns = _examples()
    one = simulate_file(log, campaigns, workers=1)
    two = simulate_file(log, campaigns, workers=2)
    assert two.workers_used == 2, two.fallback
    assert one.events == two.events == 2_499
    assert sorted(one.rows) == sorted(two.rows)
    assert [(b.line, b.reason) for b in one.bad] == [(b.line, b.reason) for b in two.bad]
    assert [b.reason for b in one.bad] == [f"event larger than {MAX_EVENT_BYTES} bytes"]


def test_a_bom_opening_a_later_line_is_skipped(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_simulate(
        tmp_path, None, ["\ufeff" + json.dumps(_delivery("e1", "c1")),
                         "\ufeff" + json.dumps(_delivery("e2", "c2"))], capsys=capsys)
    assert code == 0 and err == ""
    assert {r[0] for r in csv_rows(out)} == {"c1", "c2"}


@pytest.mark.parametrize("number", ["9" * 309, "-" + "9" * 309, "1" + "0" * 400])
def test_integers_beyond_a_double_are_refused(number: str) -> None:
    text = '{"id": "e1", "type": "order.placed", "occurred_at": "2026-06-01T00:00:00Z", ' \
           f'"customer": {{"id": "c1", "attributes": {{"n": {number}}}}}}}'
    with pytest.raises(ValueError, match="digits is beyond the range of a double"):
        event_text.loads(text)
    with pytest.raises(PermanentError, match="beyond the range of a double"):
        decode(text)
    reason = parse_line(text)
    assert isinstance(reason, str) and number.lstrip("-")[:20] not in reason


def test_integers_within_a_double_are_kept_exactly() -> None:
    assert event_text.loads("[" + "9" * 308 + ", -12, 0]") == [int("9" * 308), -12, 0]


def test_reasons_never_print_the_value() -> None:
    base = {"id": "e1", "occurred_at": "2026-06-01T00:00:00Z", "customer": {"id": "c1"}}
    with pytest.raises(EventError) as bad_type:
        parse_event({**base, "type": "ana.lopez@example.com"})
    with pytest.raises(EventError) as bad_channel:
        parse_event({**base, "type": "order.placed", "customer": {
            "id": "c1", "consent": {"ana@example.com": True}}})
    for exc in (bad_type.value, bad_channel.value):
        assert "ana" not in str(exc)
    assert str(bad_type.value).startswith("$.type: not an event type")
    assert str(bad_channel.value) == (
        "$.customer.consent: has a key that is not a channel (sms or email)")


def test_a_cancelled_orders_purchase_event_converts_nothing() -> None:
    """delivery-checkin's goal is order.placed within its window: order B, known to be
    cancelled, placed later converts nothing; order C, not cancelled, converts."""
    campaigns = _examples()
    profile = None
    rows = []
    for raw in [
        _delivery("e1", "c1"),
        event("e2", "order.cancelled", "2026-06-10T13:00:00Z", "c1", {"id": "B"}),
        event("e3", "order.placed", "2026-06-10T14:00:00Z", "c1", order("B")),
    ]:
        parsed = parse_event(raw)
        result = process_event(parsed, profile, campaigns, "America/New_York")
        profile = result.profile
        rows += result.rows
        assert not result.conversions
    assert not [r for r in rows if r.outcome == "converted"]
    result = process_event(parse_event(event("e4", "order.placed", "2026-06-11T14:00:00Z",
                                             "c1", order("C"))),
                           profile, campaigns, "America/New_York")
    assert {c.campaign_id for c in result.conversions} >= {"delivery-checkin"}


def test_a_late_triggers_goal_seen_before_ignores_a_cancelled_order() -> None:
    """The delivery logged late, after order B's placement and cancellation: B was
    not a purchase, so the late enrollment is not converted at once."""
    campaigns = _examples()
    profile = None
    converted = []
    for raw in [
        event("e2", "order.cancelled", "2026-06-02T13:00:00Z", "c1", {"id": "B"}),
        event("e3", "order.placed", "2026-06-02T14:00:00Z", customer("c1"), order("B")),
        _delivery("e1", "c1"),  # at 2026-06-01T14:00, logged late
    ]:
        result = process_event(parse_event(raw), profile, campaigns, "America/New_York")
        profile = result.profile
        converted += result.conversions
    assert converted == []


def test_a_pipe_can_be_the_event_log() -> None:
    lines = "".join(json.dumps(_delivery(f"e{i}", f"c{i}")) + "\n" for i in range(3))
    done = subprocess.run([*AFTERCARE, "simulate", "--events", "/dev/stdin",
                           "--campaigns", str(ROOT / "campaigns"), "--templates",
                           str(ROOT / "templates"), "--format", "json",
                           "--to", "2026-07-01"],
                          input=lines, capture_output=True, text=True, timeout=120,
                          cwd=ROOT)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert {r["customer"] for r in rows} == {"c0", "c1", "c2"}


def test_the_table_escapes_line_breaks_and_escapes_in_ids(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    odd = 'a\nb, "c"\x1b[31m'
    delivery = _delivery("e1", odd)
    delivery["customer"]["email"] = "odd@example.com"
    code, out, err = run_simulate(tmp_path, None, [delivery], fmt="table", capsys=capsys)
    assert err == ""
    assert code == 0
    lines = out.splitlines()
    body = lines[1:lines.index("")]
    assert body and all(line.startswith('a\\nb, "c"\\x1b[31m ') for line in body)
    assert "\x1b" not in out
    width = len(lines[0].split("campaign")[0])
    assert all(line[width:width + 1] != " " for line in body)  # columns line up


def test_the_year_is_checked_in_utc() -> None:
    assert parse_time("1899-12-31T23:30:00-01:00", "$.t").year == 1900
    for value, year in (("1900-01-01T00:30:00+01:00", 1899),
                        ("2199-12-31T23:30:00-01:00", 2200)):
        with pytest.raises(EventError, match=f"year {year} is outside 1900-2199"):
            parse_time(value, "$.t")
    with pytest.raises(EventError, match="is outside 1900-2199"):
        parse_time("0001-01-01T00:00:00+01:00", "$.t")


def test_a_missing_currency_is_named_as_an_undefined_variable() -> None:
    renderer = Renderer({"t.sms.j2": "Total {{ order.total|money(order.currency) }}"})
    with pytest.raises(RenderError, match=r"undefined variable 'order\.currency'"):
        renderer.render_sms("t", {"order": {"total": 3}})


def test_a_late_trigger_converts_on_an_order_not_cancelled() -> None:
    """The latest order.placed is a cancelled order's (B), an earlier one (A) is a
    purchase in the window: the late delivery converts as in time order, at A."""
    campaigns = _examples()
    delivery = _delivery("e0", "c1")  # 2026-06-01T14:00
    a = event("e1", "order.placed", "2026-06-02T14:00:00Z", customer("c1"), order("A"))
    b = event("e2", "order.placed", "2026-06-03T14:00:00Z", customer("c1"), order("B"))
    b_cancelled = event("e3", "order.cancelled", "2026-06-03T15:00:00Z", "c1", {"id": "B"})

    def conversions(raws: list[dict[str, Any]]) -> list[tuple[str, str]]:
        profile = None
        rows = []
        for raw in raws:
            result = process_event(parse_event(raw), profile, campaigns, "America/New_York")
            profile = result.profile
            rows += [(r.campaign, r.at) for r in result.rows if r.outcome == "converted"]
        return sorted(rows)

    in_order = conversions([delivery, a, b, b_cancelled])
    assert in_order == [("care-tips", "2026-06-02T14:00:00Z"),
                        ("delivery-checkin", "2026-06-02T14:00:00Z")]
    assert conversions([a, b, b_cancelled, delivery]) == in_order


def test_a_line_holding_only_a_bom_is_blank() -> None:
    assert parse_line("\ufeff\n") is None
    assert parse_line("\ufeff") is None
