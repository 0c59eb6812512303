"""`aftercare simulate` split across processes prints exactly what one process does.

Every case compares ``simulate_file(..., workers=w)`` with the sequential
``simulate()`` on the same file: rows sorted by the CLI's key (a stable sort, so
this also holds the rows of equal keys to the same order), rows as multisets,
each customer's rows in order, bad lines, counters, pending steps and the table
the CLI prints. ``workers_used`` says which path ran: the happy cases must have
run in parallel, the guarded ones must have fallen back.
"""

from __future__ import annotations

import contextlib
import gc
import io
import json
import os
import random
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import chalicelib.journeys.parallel as parallel
from chalicelib.cli import output
from chalicelib.cli.main import main
from chalicelib.journeys.engine import CampaignSet, Row
from chalicelib.journeys.parallel import (
    SimulationResult,
    auto_workers,
    can_fork,
    simulate_file,
)
from chalicelib.journeys.simulate import Simulator, open_log, simulate
from chalicelib.local.generator import generate, write_jsonl
from tests.conftest import ROOT

WORKERS = (2, 3)
pytestmark = pytest.mark.skipif(not can_fork(), reason="no fork start method here")


@pytest.fixture(scope="module")
def campaigns(example_campaigns: CampaignSet) -> CampaignSet:
    return example_campaigns


@pytest.fixture(scope="module")
def base_lines(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """A year of 400 customers: ~2,400 events, above parallel.MIN_LINES."""
    path = tmp_path_factory.mktemp("parallel") / "events.jsonl"
    write_jsonl(generate(customers=400, days=365, seed=3), path)
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    assert len(lines) > parallel.MIN_LINES
    return lines


@pytest.fixture(autouse=True)
def reaped(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Every child a run forks has been waited for when the run returns: no zombies."""
    pids: list[int] = []
    start_children = parallel._Run._start_children

    def recording(run: Any) -> None:
        start_children(run)
        pids.extend(proc.pid for proc in run.procs)

    monkeypatch.setattr(parallel._Run, "_start_children", recording)
    yield pids
    for pid in pids:
        with pytest.raises(ChildProcessError):  # a zombie would be reaped here instead
            os.waitpid(pid, os.WNOHANG)


def _write(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "events.jsonl"
    path.write_text("".join(lines), encoding="utf-8")
    return path


def _cli_key(r: Row) -> tuple[str, str, str, str]:
    return (r.at, r.customer, r.campaign, r.step)


def _by_customer(rows: list[Row]) -> dict[str, list[Row]]:
    grouped: dict[str, list[Row]] = defaultdict(list)
    for r in rows:
        grouped[r.customer].append(r)
    return dict(grouped)


def _table(sim: Simulator) -> str:
    out = io.StringIO()
    output.write_rows(sim, "table", out)
    return out.getvalue()


def _compare(path: Path, campaigns: CampaignSet, workers: int,
             **options: Any) -> tuple[SimulationResult, Simulator]:
    """Both runs, held to each other; returns them for the path checks."""
    with open_log(path) as fh:
        seq = simulate(fh, campaigns, **options)
    par = simulate_file(path, campaigns, workers=workers, **options)
    assert gc.isenabled()  # paused for the run only
    assert sorted(par.rows, key=_cli_key) == sorted(seq.rows, key=_cli_key)
    assert Counter(par.rows) == Counter(seq.rows)
    assert _by_customer(par.rows) == _by_customer(seq.rows)
    assert [(b.line, b.reason) for b in par.bad] == [(b.line, b.reason) for b in seq.bad]
    assert (par.events, par.duplicates) == (seq.events, seq.duplicates)
    assert [(s.id, s.due_at) for s in par.pending()] == [(s.id, s.due_at) for s in seq.pending()]
    assert _table(par) == _table(seq)
    return par, seq


def _parallel(par: SimulationResult, workers: int) -> None:
    assert (par.workers_used, par.fallback) == (workers, "")


def _partition(customer_id: str, workers: int) -> int:
    return hash(customer_id) % workers  # as the forked children compute it


def _customers(lines: list[str]) -> list[str]:
    return sorted({json.loads(line)["customer"]["id"] for line in lines})


def _apart(lines: list[str], workers: int) -> tuple[str, str]:
    """Two customers that live in different processes."""
    ids = _customers(lines)
    first = ids[0]
    other = next(c for c in ids if _partition(c, workers) != _partition(first, workers))
    return first, other


@pytest.mark.parametrize("workers", WORKERS)
@pytest.mark.parametrize("presorted", [True, False])
def test_sorted_log(tmp_path: Path, campaigns: CampaignSet, base_lines: list[str],
                    workers: int, presorted: bool, reaped: list[int]) -> None:
    par, seq = _compare(_write(tmp_path, base_lines), campaigns, workers, presorted=presorted)
    _parallel(par, workers)
    assert len(reaped) == workers - 1
    assert len(seq.rows) > 10_000 and seq.pending()
    assert par.profiles == {}  # documented: profiles stay in the processes


@pytest.mark.parametrize("workers", WORKERS)
def test_shuffled_log(tmp_path: Path, campaigns: CampaignSet, base_lines: list[str],
                      workers: int) -> None:
    lines = list(base_lines)
    random.Random(1).shuffle(lines)
    par, _ = _compare(_write(tmp_path, lines), campaigns, workers)
    _parallel(par, workers)


def test_unsorted_log_claimed_presorted_falls_back(tmp_path: Path, campaigns: CampaignSet,
                                                   base_lines: list[str]) -> None:
    # In file order a step is decided before the first later event of *anyone*;
    # per process that would be its own customer's next event: not the same.
    lines = list(base_lines)
    rng = random.Random(5)
    for i in range(0, len(lines) - 40, 7):
        j = i + rng.randint(1, 40)
        lines[i], lines[j] = lines[j], lines[i]
    par, _ = _compare(_write(tmp_path, lines), campaigns, 2, presorted=True)
    assert par.workers_used == 1 and "backwards" in par.fallback


def _bad_and_duplicate_lines(base_lines: list[str]) -> list[str]:
    """Bad lines anywhere; extra events right after the line they copy (time order kept)."""
    lines = list(base_lines)
    event = json.loads(lines[10])
    wrapped = {"detail-type": event["type"], "source": "shop", "detail": {
        **{k: v for k, v in event.items() if k != "type"}, "id": "evt-bridge-1"}}
    inserts = {
        3: '{"id": "broken", "type": \n',  # invalid JSON
        11: json.dumps(wrapped) + "\n",  # an EventBridge event: the customer in "detail"
        21: lines[20],  # an exact duplicate
        31: json.dumps({**json.loads(lines[30]), "type": "order.returned"}) + "\n",  # same id
        50: "\n",
        51: "   \n",
        120: json.dumps({**event, "id": "evt-no-customer", "customer": None}) + "\n",
        300: json.dumps({**event, "id": "evt-bad-time", "occurred_at": "yesterday"}) + "\n",
        400: json.dumps({**event, "id": "evt-bad-type", "type": "Order Placed"}) + "\n",
        500: json.dumps({**event, "id": "evt-empty-id",
                         "customer": {**event["customer"], "id": " "}}) + "\n",
        600: "[1, 2, 3]\n",
        2000: '{"customer": {"id": "c-00001"}, "oops"\n',
    }
    for at in sorted(inserts, reverse=True):
        lines.insert(at, inserts[at])
    return lines


@pytest.mark.parametrize("workers", WORKERS)
@pytest.mark.parametrize("presorted", [True, False])
def test_bad_lines_and_duplicates(tmp_path: Path, campaigns: CampaignSet,
                                  base_lines: list[str], workers: int, presorted: bool) -> None:
    path = _write(tmp_path, _bad_and_duplicate_lines(base_lines))
    par, seq = _compare(path, campaigns, workers, presorted=presorted)
    _parallel(par, workers)
    assert len(seq.bad) == 7 and seq.duplicates == 2
    assert {b.reason.split(":")[0] for b in seq.bad} >= {"invalid JSON", "$.customer",
                                                         "$.occurred_at", "$.type", "$"}


@pytest.mark.parametrize("workers", WORKERS)
def test_undecodable_deep_and_out_of_range_lines(tmp_path: Path, campaigns: CampaignSet,
                                                 base_lines: list[str], workers: int) -> None:
    """Lines no parser can take are bad lines with their number, in both paths."""
    raw = [line.encode("utf-8") for line in base_lines]
    event = json.loads(base_lines[7])
    raw.insert(5, b'{"id": "e-latin1", "customer": {"id": "Jos\xe9"}}\n')
    raw.insert(9, b"[" * 30_000 + b"]" * 30_000 + b"\n")  # under 64 KB: too deep
    raw.insert(13, b'{"n": ' + b"7" * 5000 + b"}\n")
    raw.insert(17, json.dumps({**event, "id": "e-far", "occurred_at": "9999-01-01T00:00:00Z"})
               .encode() + b"\n")
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(raw))
    par, seq = _compare(path, campaigns, workers, presorted=True)
    _parallel(par, workers)
    assert [(b.line, b.reason.split(":")[0]) for b in seq.bad] == [
        (6, "$"), (10, "invalid JSON"), (14, "invalid JSON"), (18, "$.occurred_at")]


WINDOWS = [
    (datetime(2026, 3, 1, tzinfo=UTC), None),
    (None, datetime(2026, 6, 15, 12, tzinfo=UTC)),
    (datetime(2026, 2, 10, tzinfo=UTC), datetime(2026, 9, 1, tzinfo=UTC)),
]


@pytest.mark.parametrize("workers", WORKERS)
@pytest.mark.parametrize("window", WINDOWS)
def test_from_to_window(tmp_path: Path, campaigns: CampaignSet, base_lines: list[str],
                        workers: int, window: tuple[datetime | None, datetime | None]) -> None:
    path = _write(tmp_path, _bad_and_duplicate_lines(base_lines))
    par, seq = _compare(path, campaigns, workers, start=window[0], end=window[1])
    _parallel(par, workers)
    assert seq.events < len(base_lines)


def _rewrite(lines: list[str], customer_id: str,
             change: Callable[[dict[str, Any]], dict[str, Any]]) -> list[str]:
    out = []
    for line in lines:
        event = json.loads(line)
        if event["customer"]["id"] == customer_id:
            line = json.dumps(change(event)) + "\n"
        out.append(line)
    return out


@pytest.mark.parametrize("workers", WORKERS)
def test_customer_id_after_a_nested_object(tmp_path: Path, campaigns: CampaignSet,
                                           base_lines: list[str], workers: int) -> None:
    real, decoy = _apart(base_lines, workers)

    def nested_first(event: dict[str, Any]) -> dict[str, Any]:
        customer = {k: v for k, v in event["customer"].items() if k != "id"}
        customer = {"attributes": {"id": decoy, "tier": "gold"}, **customer, "id": real}
        return {**event, "customer": customer}

    lines = _rewrite(base_lines, real, nested_first)
    assert '"customer": {"attributes": {"id"' in "".join(lines)
    par, _ = _compare(_write(tmp_path, lines), campaigns, workers)
    _parallel(par, workers)


@pytest.mark.parametrize("workers", WORKERS)
def test_customer_key_inside_data_before_the_customer(tmp_path: Path, campaigns: CampaignSet,
                                                      base_lines: list[str],
                                                      workers: int) -> None:
    real, decoy = _apart(base_lines, workers)

    def data_first(event: dict[str, Any]) -> dict[str, Any]:
        return {"data": {"customer": {"id": decoy}}, **{k: v for k, v in event.items()
                                                        if k != "data"}}

    lines = _rewrite(base_lines, real, data_first)
    assert '{"data": {"customer": {"id": "' + decoy in "".join(lines)
    par, _ = _compare(_write(tmp_path, lines), campaigns, workers)
    _parallel(par, workers)


def _share_event_id(lines: list[str], first: str, second: str) -> list[str]:
    """The second customer's first event takes the id of the first's first event."""
    events = [json.loads(line) for line in lines]
    shared = next(e["id"] for e in events if e["customer"]["id"] == first)
    for e in events:
        if e["customer"]["id"] == second:
            e["id"] = shared
            break
    return [json.dumps(e) + "\n" for e in events]


@pytest.mark.parametrize("workers", WORKERS)
def test_event_id_shared_across_processes_falls_back(tmp_path: Path, campaigns: CampaignSet,
                                                     base_lines: list[str],
                                                     workers: int) -> None:
    first, second = _apart(base_lines, workers)
    lines = _share_event_id(base_lines, first, second)
    par, seq = _compare(_write(tmp_path, lines), campaigns, workers)
    assert seq.duplicates == 1  # the sequential run drops the later one
    assert par.workers_used == 1 and "event id" in par.fallback


def test_event_id_shared_within_one_process_stays_parallel(
        tmp_path: Path, campaigns: CampaignSet, base_lines: list[str]) -> None:
    ids = _customers(base_lines)
    first = ids[0]
    second = next(c for c in ids[1:] if _partition(c, 2) == _partition(first, 2))
    lines = _share_event_id(base_lines, first, second)
    par, seq = _compare(_write(tmp_path, lines), campaigns, 2)
    assert seq.duplicates == 1
    _parallel(par, 2)


def test_misread_customer_id_falls_back(tmp_path: Path, campaigns: CampaignSet,
                                        base_lines: list[str]) -> None:
    # A repeated key: the regular expression reads the first, json.loads keeps the last.
    real, decoy = _apart(base_lines, 2)
    prefix = f'"customer":{{"id":"{real}"'
    twice = f'"customer":{{"id":"{decoy}","id":"{real}"'
    lines = [line.replace(prefix, twice) for line in base_lines]
    assert sum(twice in line for line in lines) > 0
    par, _ = _compare(_write(tmp_path, lines), campaigns, 2)
    assert par.workers_used == 1 and "partition mismatch" in par.fallback


@pytest.mark.parametrize("failure", ["exit", "raise"])
def test_a_failing_worker_falls_back(tmp_path: Path, campaigns: CampaignSet,
                                     base_lines: list[str], failure: str,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(sim: Simulator) -> tuple[Any, ...]:  # only children pack their results
        if failure == "exit":
            os._exit(3)
        raise RuntimeError("boom")

    monkeypatch.setattr(parallel, "_pack", broken)
    par, _ = _compare(_write(tmp_path, base_lines), campaigns, 3)
    assert par.workers_used == 1
    assert ("died" if failure == "exit" else "boom") in par.fallback


def test_an_interrupt_stops_the_children(tmp_path: Path, campaigns: CampaignSet,
                                         base_lines: list[str], reaped: list[int],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(run: Any, reports: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(parallel._Run, "_check", interrupted)
    with pytest.raises(KeyboardInterrupt):
        simulate_file(_write(tmp_path, base_lines), campaigns, workers=3)
    assert len(reaped) == 2  # and reaped (the fixture)


def test_small_log_and_one_worker_run_in_process(tmp_path: Path, campaigns: CampaignSet,
                                                 base_lines: list[str]) -> None:
    par, _ = _compare(_write(tmp_path, base_lines[:500]), campaigns, 2)
    assert par.workers_used == 1 and "fewer than" in par.fallback
    par, seq = _compare(_write(tmp_path, base_lines), campaigns, 1)
    assert (par.workers_used, par.fallback) == (1, "")
    assert par.profiles == seq.profiles


def test_workers_default_and_bounds(tmp_path: Path, campaigns: CampaignSet,
                                    base_lines: list[str]) -> None:
    assert 1 <= auto_workers() <= parallel.MAX_AUTO_WORKERS
    result = simulate_file(_write(tmp_path, base_lines), campaigns)
    assert result.workers_used == auto_workers() or result.fallback
    with pytest.raises(ValueError):
        simulate_file(tmp_path / "events.jsonl", campaigns, workers=0)


def _cli(args: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["simulate", *args, "--campaigns", str(ROOT / "campaigns"),
                     "--templates", str(ROOT / "templates")])
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("fmt", ["csv", "table"])
def test_cli_output_is_the_same_byte_for_byte(tmp_path: Path, base_lines: list[str],
                                              fmt: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    lines = list(base_lines)
    random.Random(2).shuffle(lines)
    path = _write(tmp_path, _bad_and_duplicate_lines(lines))
    used: list[int] = []
    real = parallel.simulate_file

    def spy(*args: Any, **kwargs: Any) -> SimulationResult:
        result = real(*args, **kwargs)
        used.append(result.workers_used)
        return result

    monkeypatch.setattr(parallel, "simulate_file", spy)
    one = _cli(["--events", str(path), "--workers", "1", "--format", fmt])
    two = _cli(["--events", str(path), "--workers", "2", "--format", fmt])
    assert used == [1, 2]
    assert one[0] == 0 and "line 4: invalid JSON" in one[2]
    assert two == one


def test_cli_rejects_zero_workers(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc, contextlib.redirect_stderr(io.StringIO()):
        _cli(["--events", str(tmp_path / "x.jsonl"), "--workers", "0"])
    assert exc.value.code == 2
