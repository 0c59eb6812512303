"""``aftercare simulate`` across processes: the backtest split by customer.

Why a split by customer is exact
--------------------------------
In :mod:`chalicelib.journeys.simulate` a customer's profile changes only with that
customer's events, and each step is decided at its own due time from its own
customer's profile (:func:`decide_step` is pure, and step keys start with the
customer id). So a process that replays some customers' events, in the same
relative order and with the same final ``advance``, decides each of their steps
as the sequential run does, and each customer's rows come out in the same
relative order. ``aftercare simulate`` sorts rows stably by (at, customer,
campaign, step), so the processes' rows, simply concatenated (``rows`` is not in
the sequential run's order), print exactly as the sequential run's.

Three things do cross customers, and each has a guard: the dedupe of events by
id; the end of the run (the last event's time + ``DEFAULT_HORIZON``); and, with
``presorted``, the moment a step is decided: before the first later event *of any
customer* at or after its due time, which is its own customer's next such event
only when the file really is in time order.

Mechanism
---------
The parent reads the file once, as one string in text mode (as :func:`simulate`
reads it), and forks (``multiprocessing.get_context("fork")``: the text, the
campaigns and the ``hash()`` seed are inherited; nothing is pickled on the way
in). One string, not a list of lines: a child walking a list writes the
reference count of every line and so copies every page of the log, while the
pages of one string stay shared. The parent runs partition 0 and the children
the others, so every CPU works.

Every process walks all lines but slices and parses only its own. A line's owner
is ``hash(customer id) % workers``, the id read by a regular expression from the
line's one ``"customer"`` object (the first ``"id"`` before any nested object);
a line it cannot read (no match, ``"customer"`` more than once, an escaped id)
is parsed with ``json.loads`` by every process to find the owner (0 for lines
without one: bad lines). Each own line goes through :func:`parse_line` on its
own, so parse errors, envelope errors and the ``--from/--to`` window are the
sequential run's, and bad lines keep their line number in the file. Events are
kept in the order :func:`simulate` takes them (stably sorted by time unless
``presorted``) and, once the parent has sent the end, run through
:meth:`Simulator.replay` as :func:`simulate` runs them.

Two exchanges over a ``Pipe`` per child, pickled with protocol 5:

1. after loading, each process reports its checks, how many lines it owned, its
   last event (line number, time), a 64-bit ``hash()`` of each event id it
   loaded and, with ``presorted``, (line number, time) of each event. The parent
   runs the guards and sends back the end every process replays to: the given
   ``end``, or the time of the event :func:`simulate` would have fed last (the
   last line when ``presorted``, else the latest time) + ``DEFAULT_HORIZON``;
2. after replaying, each child sends its rows (six columns of strings, rebuilt
   as :class:`Row` by the parent), bad lines, counters and pending steps (field
   tuples, rebuilt only when :meth:`SimulationResult.pending` is called).

On the 239k-event bench log (two processes) the children's packing, the transfer,
unpickling and merging together cost about 0.7-1 s of a 12-13 s run; ``stats`` has
the parent's timings.

Guards
------
Never a wrong answer for speed: when any of these fails the parallel work is
dropped and :func:`simulate` runs on the file (read again) instead;
``workers_used`` is then 1 and ``fallback`` says why.

- a process loaded an event whose parsed ``customer.id`` hashes to another process
  (the regular expression read another id than ``json.loads``);
- the processes' owned line counts do not add up to the file's;
- two processes loaded the same event id (the sequential run drops the later one as
  a duplicate). Ids are compared by 64-bit hash: a collision costs a fallback,
  never a wrong answer;
- ``presorted`` but event times go backwards in file order;
- a child died, raised or sent something unreadable; the parent's own share
  raised (an error :func:`simulate` also meets is raised again by it).

The cyclic GC is paused for the run, as :func:`simulate` pauses it (children are
forked inside the pause). Children leave with ``os._exit`` and are always joined
(terminated first when the run is abandoned): no zombies, and no parent
``atexit`` handlers or buffers run twice.

Differences from a sequential result: ``profiles`` is empty after a parallel run
(each profile stays in the process that built it); ``rows`` is in partition
order (see above). The result is a finished run, not one to ``feed`` more events.
"""

from __future__ import annotations

import contextlib
import gc
import json
import multiprocessing
import operator
import os
import pickle
import re
import time
from array import array
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime, timedelta
from itertools import islice
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from chalicelib.events import unwrap
from chalicelib.journeys.engine import CampaignSet, PlannedStep, Row
from chalicelib.journeys.simulate import (
    DEFAULT_HORIZON,
    BadLine,
    SendCheck,
    Simulator,
    in_window,
    open_log,
    parse_line,
    simulate,
)

MAX_AUTO_WORKERS = 8
MIN_LINES = 2_000  # below this, forking costs more than it saves
PROTOCOL = 5

# The id of the line's "customer" object: the first "id" key before any nested
# object (or the object's end). Only a hint: the owner check after parsing holds
# every event to the partition of its parsed customer id.
_CUSTOMER_ID = re.compile(r'"customer"\s*:\s*\{[^{}]*?"id"\s*:\s*"([^"\\]*)"')
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_STEP_FIELDS = tuple(f.name for f in fields(PlannedStep))
_step_values = operator.attrgetter(*_STEP_FIELDS)


@dataclass(slots=True)
class SimulationResult(Simulator):
    """A finished backtest: what ``aftercare simulate`` prints.

    ``workers_used`` is the number of processes that ran it (1: the sequential
    :func:`simulate`), ``fallback`` why a parallel run was not used when one was
    asked for, and ``stats`` the parent's timings of a parallel run (seconds) and
    the bytes the children sent. After a parallel run ``profiles`` is empty.
    """

    workers_used: int = 1
    fallback: str = ""
    stats: dict[str, float] = field(default_factory=dict)
    _other_pending: list[tuple[Any, ...]] = field(default_factory=list)

    def pending(self) -> list[PlannedStep]:
        own = Simulator.pending(self)
        if not self._other_pending:
            return own
        steps = own + [PlannedStep(*values) for values in self._other_pending]
        return sorted(steps, key=lambda s: (s.due_at, s.id))


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def auto_workers() -> int:
    return max(1, min(usable_cpus(), MAX_AUTO_WORKERS))


def can_fork() -> bool:
    return "fork" in multiprocessing.get_all_start_methods()


def simulate_file(path: Path, campaigns: CampaignSet, *, start: datetime | None = None,
                  end: datetime | None = None, default_tz: str = "America/New_York",
                  presorted: bool = False, workers: int | None = None,
                  send_check: SendCheck | None = None) -> SimulationResult:
    """Backtest a JSONL log like :func:`simulate`, split across ``workers`` processes.

    ``workers`` None: one per usable CPU, at most 8. With one worker, a log of
    fewer than ``MIN_LINES`` lines, no ``fork`` start method, or when a guard
    fails (see the module docstring), this is :func:`simulate` on the file.
    """
    if workers is not None and workers < 1:
        raise ValueError("workers must be at least 1")
    n = auto_workers() if workers is None else workers
    options: dict[str, Any] = {"start": start, "end": end, "default_tz": default_tz,
                               "presorted": presorted, "send_check": send_check}
    if n == 1:
        return _sequential(path, campaigns, options, "")
    if not can_fork():
        return _sequential(path, campaigns, options, "no fork start method")
    began = time.perf_counter()
    with open_log(path) as fh:  # undecodable bytes become bad lines, as in simulate()
        text = fh.read()
    read = time.perf_counter() - began
    line_count = text.count("\n") + (1 if text and not text.endswith("\n") else 0)
    if line_count < MIN_LINES:
        return _sequential(path, campaigns, options, f"fewer than {MIN_LINES} lines")
    try:
        result = _Run(text, line_count, campaigns, n, options).run()
    except _Abandon as exc:
        reason = str(exc)
    except Exception as exc:  # a bug here must never cost the answer
        reason = f"parallel run failed: {exc!r}"
    else:
        result.stats["read_s"] = read
        return result
    del text
    return _sequential(path, campaigns, options, reason)


def _sequential(path: Path, campaigns: CampaignSet, options: dict[str, Any],
                fallback: str) -> SimulationResult:
    with open_log(path) as fh:
        sim = simulate(fh, campaigns, **options)
    result = SimulationResult(sim.campaigns, sim.default_tz, fallback=fallback)
    for f in fields(Simulator):  # the whole state, so pending() and profiles are the run's
        setattr(result, f.name, getattr(sim, f.name))
    return result


class _Abandon(Exception):
    """A guard failed: the parallel run is dropped for the sequential one."""


def _owner_of_unreadable(line: str, workers: int) -> int:
    """The owner of a line the regular expression could not read: parse it."""
    if line[:1] == "\ufeff":  # skipped by parse_line too
        line = line[1:]
    try:
        raw = unwrap(json.loads(line))
    except (ValueError, RecursionError):
        return 0
    customer = raw.get("customer") if isinstance(raw, dict) else None
    customer_id = customer.get("id") if isinstance(customer, dict) else None
    return hash(customer_id) % workers if isinstance(customer_id, str) else 0


@dataclass(slots=True)
class _Partition:
    """One process's share: its lines, events and the facts the parent checks."""

    index: int
    workers: int
    sim: Simulator
    presorted: bool
    owned: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)
    misplaced: str = ""
    last: tuple[int, datetime] | None = None
    ids: array[int] = field(default_factory=lambda: array("q"))
    numbers: array[int] = field(default_factory=lambda: array("q"))
    times: array[int] = field(default_factory=lambda: array("q"))

    def own_events(self, text: str, start: datetime | None,
                   end: datetime | None) -> list[tuple[int, dict[str, Any]]]:
        """(line number, event) for this partition's lines, in file order; its bad
        lines go to ``sim.bad`` with their number in the file.

        Lines as a text-mode file yields them: up to and including each "\\n".
        """
        index, workers, bad = self.index, self.workers, self.sim.bad
        origins = self.sim.origins
        search, find, count = _CUSTOMER_ID.search, text.find, text.count
        own: list[tuple[int, dict[str, Any]]] = []
        size = len(text)
        pos = number = 0
        while pos < size:
            number += 1
            stop = find("\n", pos) + 1 or size
            match = search(text, pos, stop)
            if match is not None and count('"customer"', pos, stop) == 1:
                owner = hash(match.group(1)) % workers
            else:
                owner = _owner_of_unreadable(text[pos:stop], workers)
            if owner == index:
                self.owned += 1
                parsed = parse_line(text[pos:stop])
                if isinstance(parsed, dict):
                    if in_window(parsed["_at"], start, end):
                        own.append((number, parsed))
                        origins[id(parsed)] = (number, stop - pos)
                elif parsed is not None:
                    bad.append(BadLine(number, parsed))
            pos = stop
        return own

    def load(self, text: str, start: datetime | None, end: datetime | None) -> None:
        """Parse this partition's events into ``events``, in the order simulate feeds
        them, recording the facts the parent checks."""
        events = self.own_events(text, start, end)
        if not self.presorted:  # stable, as simulate's sort: same relative order
            events.sort(key=lambda pair: pair[1]["_at"])
        index, workers, own = self.index, self.workers, self.events
        ids, numbers, times = self.ids, self.numbers, self.times
        for number, event in events:
            customer_id = event["customer"]["id"]
            if hash(customer_id) % workers != index:
                self.misplaced = f"line {number}: customer {customer_id!r} read as another"
                return
            ids.append(hash(event["id"]))
            own.append(event)
            at: datetime = event["_at"]
            self.last = (number, at)
            if self.presorted:
                numbers.append(number)
                times.append((at - _EPOCH) // _MICROSECOND)

    def replay(self, until: datetime | None) -> None:
        """Run the loaded events to ``until``, as :func:`simulate` runs them: when the
        parent's guards hold they are in time order (``presorted`` was checked)."""
        events, self.events = self.events, []
        self.sim.replay(events, until)

    def report(self) -> tuple[Any, ...]:
        return ("fed", self.misplaced, self.owned, self.last, self.ids.tobytes(),
                self.numbers.tobytes(), self.times.tobytes())


def _pack(sim: Simulator) -> tuple[Any, ...]:
    """A child's result, cheap to pickle: rows as columns, steps as tuples."""
    rows = sim.rows
    columns = [list(map(operator.itemgetter(i), rows)) for i in range(len(Row._fields))]
    bad = [(b.line, b.reason) for b in sim.bad]
    pending = [_step_values(s) for s in sim.pending()]
    return ("done", columns, bad, sim.duplicates, sim.events, pending)


def _send(conn: Connection, message: object) -> int:
    blob = pickle.dumps(message, protocol=PROTOCOL)
    conn.send_bytes(blob)
    return len(blob)


def _receive(conn: Connection, tag: str) -> tuple[Any, ...]:
    try:
        message = pickle.loads(conn.recv_bytes())
    except (EOFError, OSError) as exc:
        raise _Abandon(f"a worker died ({exc!r})") from None
    if not isinstance(message, tuple) or not message:
        raise _Abandon("a worker sent something unreadable")
    if message[0] == "error":
        raise _Abandon(f"a worker failed: {message[1]}")
    if message[0] != tag:
        raise _Abandon(f"a worker sent {message[0]!r}, expected {tag!r}")
    return message


def _child(conn: Connection, others: list[Connection], part: _Partition, text: str,
           start: datetime | None, end: datetime | None) -> None:
    """A child's whole life; it leaves by os._exit (no parent atexit, no flushes)."""
    code = 0
    try:
        for other in others:  # the parent's ends: EOF reaches us if the parent dies
            other.close()
        began = time.perf_counter()
        part.load(text, start, end)
        loaded = time.perf_counter()
        _send(conn, part.report())
        until = pickle.loads(conn.recv_bytes())
        if until != "stop":
            resumed = time.perf_counter()
            part.replay(until)
            replayed = time.perf_counter()
            blob = pickle.dumps(_pack(part.sim), protocol=PROTOCOL)
            packed = time.perf_counter()
            conn.send_bytes(blob)
            _send(conn, ("stats", loaded - began, replayed - resumed, packed - replayed,
                         len(blob)))
    except BaseException as exc:  # reported; the parent falls back to simulate()
        code = 1
        with contextlib.suppress(BaseException):  # else the parent sees EOF
            _send(conn, ("error", repr(exc)))
    finally:
        conn.close()
        os._exit(code)


def _misplaced(report: tuple[Any, ...]) -> tuple[Any, ...]:
    """The first guard, on each process's report as it arrives."""
    if report[1]:
        raise _Abandon(f"customer partition mismatch at {report[1]}")
    return report


def _in_file_order(parts: list[tuple[bytes, bytes]], line_count: int) -> bool:
    """Whether event times never go backwards in file order, over all partitions."""
    slots: list[int | None] = [None] * (line_count + 1)
    for number_bytes, time_bytes in parts:
        numbers, times = array("q"), array("q")
        numbers.frombytes(number_bytes)
        times.frombytes(time_bytes)
        for number, at in zip(numbers, times, strict=True):
            slots[number] = at
    ordered = [at for at in slots if at is not None]
    return all(map(operator.le, ordered, islice(ordered, 1, None)))


class _Run:
    """The parent's side of one parallel run."""

    def __init__(self, text: str, line_count: int, campaigns: CampaignSet, workers: int,
                 options: dict[str, Any]) -> None:
        self.text = text
        self.line_count = line_count
        self.workers = workers
        self.start: datetime | None = options["start"]
        self.end: datetime | None = options["end"]
        self.presorted: bool = options["presorted"]
        self.result = SimulationResult(campaigns, options["default_tz"],
                                       send_check=options["send_check"],
                                       workers_used=workers)
        self.stats = self.result.stats
        self.conns: list[Connection] = []
        self.procs: list[BaseProcess] = []
        self.abandoned = False

    def _mark(self, key: str, since: float) -> float:
        now = time.perf_counter()
        self.stats[key] = self.stats.get(key, 0.0) + now - since
        return now

    def run(self) -> SimulationResult:
        """The whole run with the cyclic GC paused, as :func:`simulate` pauses it (the
        children inherit the pause: they are forked inside it)."""
        paused = gc.isenabled()
        gc.disable()
        try:
            return self._run()
        finally:
            if paused:
                gc.enable()

    def _run(self) -> SimulationResult:
        t = time.perf_counter()
        try:
            self._start_children()
            own = _Partition(0, self.workers, self.result, self.presorted)
            t = self._mark("fork_s", t)
            own.load(self.text, self.start, self.end)
            t = self._mark("load_s", t)
            reports = [_misplaced(own.report())]  # fail fast: before waiting for children
            reports += [_misplaced(_receive(c, "fed")) for c in self.conns]
            t = self._mark("wait_fed_s", t)
            until = self._check(reports)
            for conn in self.conns:
                _send(conn, until)
            t = self._mark("check_s", t)
            own.replay(until)
            self._mark("replay_s", t)
            done = [self._receive_done(c) for c in self.conns]  # times itself
            t = time.perf_counter()
            self._merge(done)
            t = self._mark("merge_s", t)
        except BaseException:
            self.abandoned = True
            for conn in self.conns:  # children waiting for the end: stop them
                with contextlib.suppress(OSError):
                    _send(conn, "stop")
            raise
        finally:
            self._reap()
        self.result.profiles = {}  # partition 0's only: not the run's (module docstring)
        self._mark("finish_s", t)
        return self.result

    def _start_children(self) -> None:
        context = multiprocessing.get_context("fork")
        for index in range(1, self.workers):
            parent_end, child_end = context.Pipe()
            sim = Simulator(self.result.campaigns, self.result.default_tz,
                            send_check=self.result.send_check)
            part = _Partition(index, self.workers, sim, self.presorted)
            proc = context.Process(
                target=_child, daemon=True, name=f"aftercare-simulate-{index}",
                args=(child_end, [*self.conns, parent_end], part, self.text, self.start,
                      self.end))
            proc.start()
            child_end.close()
            self.conns.append(parent_end)
            self.procs.append(proc)

    def _check(self, reports: list[tuple[Any, ...]]) -> datetime | None:
        """The guards on what the processes loaded; the global end when they hold."""
        if sum(r[2] for r in reports) != self.line_count:
            raise _Abandon("processes disagree on which lines are whose")
        seen: set[int] = set()
        for report in reports:
            ids = array("q")
            ids.frombytes(report[4])
            if not seen.isdisjoint(ids):
                raise _Abandon("an event id is shared by customers in different processes")
            seen.update(ids)
        if self.presorted and not _in_file_order([(r[5], r[6]) for r in reports],
                                                 self.line_count):
            raise _Abandon("presorted, but event times go backwards in the file")
        if self.end is not None:
            return self.end
        lasts = [r[3] for r in reports if r[3] is not None]
        if not lasts:
            return None
        # The last event simulate() feeds: the last line when presorted, else the
        # latest time (ties: the later line, as its stable sort leaves them).
        key = (lambda last: last[0]) if self.presorted else (lambda last: (last[1], last[0]))
        at: datetime = max(lasts, key=key)[1]
        return at + DEFAULT_HORIZON

    def _receive_done(self, conn: Connection) -> tuple[Any, ...]:
        began = time.perf_counter()
        try:
            blob = conn.recv_bytes()
        except (EOFError, OSError) as exc:
            raise _Abandon(f"a worker died ({exc!r})") from None
        received = time.perf_counter()
        self.stats["wait_done_s"] = self.stats.get("wait_done_s", 0.0) + received - began
        message = pickle.loads(blob)
        self.stats["unpickle_s"] = self.stats.get("unpickle_s", 0.0) + \
            time.perf_counter() - received
        if not isinstance(message, tuple) or message[:1] != ("done",):
            raise _Abandon(f"a worker failed: {message!r:.200}")
        _, load_s, replay_s, pack_s, size = _receive(conn, "stats")
        for key, value in (("child_load_s", load_s), ("child_replay_s", replay_s),
                           ("child_pack_s", pack_s)):
            self.stats[key] = max(self.stats.get(key, 0.0), value)
        self.stats["transfer_bytes"] = self.stats.get("transfer_bytes", 0) + size
        return message

    def _merge(self, done: list[tuple[Any, ...]]) -> None:
        result = self.result
        for _, columns, bad, duplicates, events, pending in done:
            result.rows.extend(map(Row._make, zip(*columns, strict=True)))
            result.bad.extend(BadLine(number, reason) for number, reason in bad)
            result.duplicates += duplicates
            result.events += events
            result._other_pending.extend(pending)
        result.bad.sort(key=operator.attrgetter("line"))

    def _reap(self) -> None:
        """Close the pipes and wait for every child: no zombies, whatever happened.

        After a finished run the children are exiting already; after an abandoned
        one they may be mid-work with nothing left to give: terminated at once.
        """
        for conn in self.conns:
            conn.close()
        for proc in self.procs:
            if not self.abandoned:
                proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()
            proc.join()
