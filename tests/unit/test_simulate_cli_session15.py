"""Review findings of session 15 on ``aftercare simulate``'s command line.

- a log that cannot be read (permissions, a name too long) is one line, not a
  traceback; so is a campaigns or templates path with a name too long;
- a CSV cell a spreadsheet would run as a formula is written after a "'";
- the table lines up wide characters and escapes bidirectional and zero-width ones;
- ``--from``/``--to`` keep their fraction of a second, and take a space or ``t``;
- a BOM-opened line whose customer id is escaped no longer makes the parallel run
  fall back to one process.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from chalicelib.cli.main import main
from chalicelib.journeys import parallel
from chalicelib.journeys.parallel import can_fork, simulate_file
from tests.conftest import ROOT
from tests.unit.test_audit_simulate_cli import customer, event, order, run_simulate

CAMPAIGN: dict[str, Any] = {
    "id": "checkin", "name": "Check-in", "status": "active",
    "trigger": {"event": "order.delivered"},
    "steps": [{"id": "s1", "after": "P1D", "channel": "sms", "template": "checkin"}],
}


def _delivery(eid: str, cid: str, at: str = "2026-02-02T10:00:00Z") -> dict[str, Any]:
    # An address of its own: one made of an odd id ("x\u200bz@...") is refused.
    return event(eid, "order.delivered", at,
                 customer(cid, "America/New_York", email=f"{eid}@example.com"),
                 order(f"o-{eid}"))


def test_a_log_that_cannot_be_read_is_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "events.jsonl"
    log.write_text(json.dumps(_delivery("e1", "c-1")) + "\n")

    def refused(path: Path, *args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied", str(path))

    # Root reads any file: the refusal the open would meet, raised where it is read.
    monkeypatch.setattr(parallel, "simulate_file", refused)
    assert main(["simulate", "--events", str(log)]) == 1
    err = capsys.readouterr().err
    assert err == f"{log}: $: cannot read: Permission denied\n"


@pytest.mark.parametrize("option", ["--events", "--campaigns", "--templates"])
def test_a_name_too_long_is_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str) -> None:
    log = tmp_path / "events.jsonl"
    log.write_text(json.dumps(_delivery("e1", "c-1")) + "\n")
    long = tmp_path / ("a" * 300 + ".jsonl")
    args = {"--events": str(log), "--campaigns": str(ROOT / "campaigns"),
            "--templates": str(ROOT / "templates"), option: str(long)}
    assert main(["simulate", *(x for kv in args.items() for x in kv)]) == 1
    err = capsys.readouterr().err
    assert f"{long}: $: cannot read: File name too long" in err
    assert "Traceback" not in err


def test_validate_of_a_name_too_long(tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    long = tmp_path / ("b" * 300 + ".json")
    assert main(["validate", str(long), str(ROOT / "campaigns")]) == 1
    assert f"{long}: $: cannot read: File name too long" in capsys.readouterr().err


def test_csv_cells_a_spreadsheet_would_run_are_quoted(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ids = ['=HYPERLINK("http://x")', "+1-2", "-3+3", "@SUM(A1)", "\tx", "plain"]
    lines = [_delivery(f"e{i}", cid) for i, cid in enumerate(ids)]
    code, out, _ = run_simulate(tmp_path, [CAMPAIGN], lines, capsys=capsys)
    assert code == 0
    import csv
    import io

    rows = list(csv.reader(io.StringIO(out)))[1:]
    firsts = {r[0] for r in rows}
    assert firsts == {"'" + cid for cid in ids[:-1]} | {"plain"}
    # The step of enrollment rows, a lone "-", is no formula: written as it is.
    assert {r[2] for r in rows if r[4] == "enrolled"} == {"-"}
    # JSON lines keep the values as they are.
    code, out, _ = run_simulate(tmp_path, [CAMPAIGN], lines, fmt="json", capsys=capsys)
    assert {json.loads(line)["customer"] for line in out.splitlines()} == set(ids)


def test_table_lines_up_wide_characters_and_escapes_bidi(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ids = ["名前名前", "e\u0301x", "abc\u202edef", "x\u200bz", "c-1"]
    lines = [_delivery(f"e{i}", cid) for i, cid in enumerate(ids)]
    code, out, _ = run_simulate(tmp_path, [CAMPAIGN], lines, fmt="table", capsys=capsys)
    assert code == 0 and f"{len(ids)} events (0 duplicates, 0 bad)" in out
    assert "\u202e" not in out and "\u200b" not in out
    assert "abc\\u202edef" in out and "x\\u200bz" in out
    import unicodedata

    def column_of(line: str, text: str) -> int:  # display column where text starts
        head = line[:line.index(text)]
        return sum(0 if unicodedata.combining(c) else
                   2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in head)

    table = [line for line in out.splitlines() if "checkin" in line]
    assert len(table) == 2 * len(ids)  # enrolled and sent
    assert len({column_of(line, "checkin") for line in table}) == 1


@pytest.mark.parametrize(("window", "kept"), [
    (["--to", "2026-02-02T10:00:00.5Z"], 2),
    (["--from", "2026-02-02T10:00:00.5Z"], 0),
    (["--from", "2026-02-02T10:00:00.2Z", "--to", "2026-02-02T10:00:00.8Z"], 0),
    (["--from", "2026-02-02T09:59:59.8Z", "--to", "2026-02-02T10:00:00.2Z"], 2),
    (["--from", "2026-02-02 10:00"], 2),
    (["--to", "2026-02-02t10:00:00"], 0),
    (["--from", "2026-02-02", "--to", "2026-02-03"], 2),
])
def test_window_to_the_fraction_of_a_second(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], window: list[str],
        kept: int) -> None:
    lines = [_delivery("e1", "c-1"), _delivery("e2", "c-2")]
    code, out, err = run_simulate(tmp_path, [CAMPAIGN], lines, *window, fmt="table",
                                  capsys=capsys)
    assert code == 0, err
    assert out.splitlines()[-1].startswith(f"{kept} events")


@pytest.mark.skipif(not can_fork(), reason="no fork start method here")
def test_a_bom_line_with_an_escaped_id_keeps_the_parallel_run(tmp_path: Path) -> None:
    from bench.simulate_bench import _campaigns
    from chalicelib.local.generator import generate

    lines = [json.dumps(e) for e in generate(customers=400, days=365, seed=3)]
    assert len(lines) > parallel.MIN_LINES
    # The regular expression cannot read an escaped id; json.loads must, BOM or not.
    special = json.loads(lines[10])
    cid = special["customer"]["id"]
    lines[10] = "\ufeff" + json.dumps(special).replace(
        json.dumps(cid), json.dumps(cid).replace("-", "\\u002d"))
    assert "\\u002d" in lines[10]
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    campaigns = _campaigns()
    par = simulate_file(path, campaigns, workers=2)
    seq = simulate_file(path, campaigns, workers=1)
    assert (par.workers_used, par.fallback) == (2, "")
    assert sorted(par.rows) == sorted(seq.rows) and par.events == seq.events
    assert not par.bad
