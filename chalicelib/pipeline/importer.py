"""Bulk import of a shop's existing customers and orders (JSONL or CSV).

Each row becomes an event (``customer.imported`` / ``order.imported``) with an id
derived from the row, and goes through the same ingest as live events: profiles
and aggregates are folded the same way, date and idle campaigns are planned, and
a re-run (or a resumed run) changes nothing it already did. Historical orders use
their own type, so they never trigger "order placed" outreach.
"""

from __future__ import annotations

import contextlib
import csv
import difflib
import hashlib
import json
import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from chalicelib import clock
from chalicelib.events import text as event_text
from chalicelib.pipeline.batch import PermanentError
from chalicelib.pipeline.ingest import decode, ingest_events
from chalicelib.store.campaigns import LiveCache

CHECKPOINT_EVERY = 100
# Rows written together: their customers read in one request, their writes packed
# into transactions of up to 100 items (see ingest_events).
BATCH_ROWS = 100
_CUSTOMER_FIELDS = ("email", "phone", "name", "timezone", "locale", "birthday")
_TRUE = {"1", "true", "yes", "y", "t"}
_FALSE = {"0", "false", "no", "n", "f"}
# The columns (JSONL keys) each kind reads; others are reported, once each.
COLUMNS: dict[str, frozenset[str]] = {
    "customers": frozenset({"id", "customer_id", "updated_at", *_CUSTOMER_FIELDS,
                            "consent", "consent_sms", "consent_email", "attributes"}),
    "orders": frozenset({"order_id", "customer_id", "placed_at", "total", "currency",
                         "items", "sku", "category", "name"}),
}


MAX_HINTED = 20  # columns not read that get a did-you-mean (the CLI prints 20)


class HeaderError(ValueError):
    """A CSV header no row can be read by (a column twice): nothing is imported."""


def unknown_columns(kind: str, names: Iterable[str]) -> list[str]:
    """A warning for each name ``kind`` does not read (``attr_<name>`` is read)."""
    known = COLUMNS[kind]
    found: list[str] = []
    for name in names:
        if name in known or (kind == "customers" and name.startswith("attr_") and name[5:]):
            continue
        hint = ""
        if len(found) < MAX_HINTED:  # a header of 30,000 columns: no difflib for each
            close = difflib.get_close_matches(name.strip().lower(), sorted(known), n=1,
                                              cutoff=0.7)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
        found.append(f"column {name!r} is not read{hint}")
    return found


@dataclass(slots=True)
class ImportReport:
    rows: int = 0
    imported: int = 0
    duplicates: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)
    earlier_rejected: int = 0  # rows rejected by the runs this one resumed
    complete: bool = False
    # Why the checkpoint was not used ("" when there was none, or it was resumed).
    restarted: str = ""
    # Columns (JSONL keys) not read, each once: a misspelt "Total" imports 0.
    warnings: list[str] = field(default_factory=list)


NOT_UTF8 = "not UTF-8 text: save the file as UTF-8 (Excel: CSV UTF-8)"


def _undecodable(values: Iterable[Any]) -> bool:
    return any(isinstance(v, str) and event_text.UNDECODABLE.search(v) for v in values)


# csv's own words for what strict reading refuses, said as a person would.
_CSV_ERRORS = {
    "unexpected end of data": "a quote is not closed before the end of the file (every "
                              "line after it was read into this row's cell)",
    "',' expected after '\"'": "a character after a closing quote (write a quote inside "
                                "a quoted cell as two: \"\")",
}


class _Lines:
    """The lines of a file, counted as csv takes them: after a row csv cannot read,
    its own ``line_num`` lags (it does not count the lines of that row)."""

    def __init__(self, fh: Iterable[str]) -> None:
        self._lines = iter(fh)
        self.count = 0

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        line = next(self._lines)
        self.count += 1
        return line


def _header(reader: Any, kind: str | None, warnings: list[str] | None) -> list[str] | None:
    """The CSV header's column names (spaces around them dropped: "id, email"), or
    None for an empty file. Raises :class:`HeaderError` for a column named twice or a
    header csv cannot read."""
    try:
        names = next(reader)
    except StopIteration:
        return None
    except csv.Error as exc:  # a quote not closed, a header cell over csv's limit
        raise HeaderError(f"line 1: unreadable CSV header: {_CSV_ERRORS.get(str(exc), exc)} "
                          "(nothing imported)") from None
    names = [name.strip() for name in names]
    counts = Counter(name for name in names if name)
    twice = sorted(name for name, n in counts.items() if n > 1)
    if twice:
        raise HeaderError(f"line 1: column {twice[0]!r} more than once: which one "
                          "to read is unknown (nothing imported)")
    if kind is not None and warnings is not None:
        warnings.extend(unknown_columns(kind, [n for n in names if n]))
    return names


def read_rows(path: Path, kind: str | None = None, warnings: list[str] | None = None,
              ) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """(line number, row) pairs from JSONL or CSV; a row that cannot be decoded is
    its error text, so the caller reports it and goes on. UTF-8, with or without a
    byte order mark (Excel's "CSV UTF-8" writes one); a row with bytes that are not
    UTF-8 (a Latin-1 export) is reported, not a crash. With ``kind``, a column (or
    JSONL key) the kind does not read is added to ``warnings``, once. A CSV row
    csv cannot read (a cell over its limit, a quote not closed before the end of
    the file or a character after a closing quote) is reported as such; a CSV header
    with a column twice raises :class:`HeaderError` before any row."""
    is_csv = path.suffix.lower() == ".csv"
    # csv wants newline="" (it reads line breaks inside quoted cells itself); a JSONL
    # line ends at "\n" only (a carriage return inside one is JSON whitespace).
    with path.open(encoding="utf-8-sig", errors="surrogateescape",
                   newline="" if is_csv else "\n") as fh:
        if is_csv:
            yield from _csv_rows(fh, kind, warnings)
        else:
            yield from _jsonl_rows(fh, kind, warnings)


def _csv_rows(fh: Iterable[str], kind: str | None, warnings: list[str] | None,
              ) -> Iterator[tuple[int, dict[str, Any] | str]]:
    lines = _Lines(fh)
    reader = csv.reader(lines, strict=True)
    names = _header(reader, kind, warnings)
    if names is None:
        return
    failed_at = -1
    while True:
        start = lines.count + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:  # a cell over csv's field limit (131,072)...
            if lines.count == failed_at:
                return  # no progress: nothing more can be read
            failed_at = lines.count
            yield start, f"unreadable CSV row: {_CSV_ERRORS.get(str(exc), exc)}"
            continue
        if not cells:
            continue  # a blank line
        # Cells past the header's columns are dropped, missing ones absent.
        row = dict(zip(names, cells, strict=False))
        if _undecodable(row.values()) or _undecodable(row):
            yield lines.count, NOT_UTF8
            continue
        yield lines.count, {k: v for k, v in row.items() if k and v != ""}


def _jsonl_rows(fh: Iterable[str], kind: str | None, warnings: list[str] | None,
                ) -> Iterator[tuple[int, dict[str, Any] | str]]:
    seen: set[str] = set()
    for number, line in enumerate(fh, 1):
        if line[:1] == "\ufeff":  # files with a byte-order mark each, concatenated
            line = line[1:]
        if not line.strip():
            continue
        if not line.isascii() and event_text.UNDECODABLE.search(line):
            yield number, NOT_UTF8
            continue
        try:
            value = event_text.loads(line)
        except json.JSONDecodeError as exc:
            yield number, f"invalid JSON: {exc.msg}"
            continue
        except RecursionError:
            yield number, "invalid JSON: nested too deeply"
            continue
        except ValueError as exc:  # NaN, 1e999, too many digits, a lone surrogate
            yield number, f"invalid JSON: {exc}"
            continue
        if not isinstance(value, dict):
            yield number, "a row must be a JSON object"
            continue
        if kind is not None and warnings is not None and not value.keys() <= seen:
            new = [key for key in value if key not in seen]
            seen.update(new)
            warnings.extend(unknown_columns(kind, new))
        yield number, value


def _bool(value: Any, column: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    # The value is not quoted: on a shifted CSV row it can be an email or a phone.
    raise PermanentError(f"{column}: not true/false (use yes/no, true/false or 1/0)")


def _object(row: dict[str, Any], column: str) -> dict[str, Any]:
    """A column holding an object: JSON in a JSONL row, JSON text in a CSV cell."""
    value = row.get(column)
    if value is None:
        return {}
    if isinstance(value, str):
        try:
            value = event_text.loads(value)
        except (ValueError, RecursionError):
            raise PermanentError(f"{column}: not a JSON object") from None
    if not isinstance(value, dict):
        raise PermanentError(f"{column}: must be a JSON object")
    return value


def _row_id(kind: str, key: str, row: dict[str, Any]) -> str:
    digest = hashlib.sha1(json.dumps(row, sort_keys=True, default=str).encode()).hexdigest()
    return f"import:{kind}:{key}:{digest[:12]}"


def customer_event(row: dict[str, Any], as_of: str | None = None) -> dict[str, Any]:
    """``as_of``: the time of a row without ``updated_at`` (when the export was made;
    default now). A profile keeps each field's latest value, so a live change made
    after the export outlives a later re-import of it."""
    cid = row.get("id") or row.get("customer_id")
    if not cid:
        raise PermanentError("id: required column is missing")
    at = str(row.get("updated_at") or as_of or clock.iso(clock.now()))
    customer: dict[str, Any] = {"id": str(cid)}
    customer.update({k: row[k] for k in _CUSTOMER_FIELDS if row.get(k) is not None})
    consent = dict(_object(row, "consent"))
    for channel in ("sms", "email"):
        if row.get(f"consent_{channel}") is not None:  # null: as an empty CSV cell
            consent[channel] = _bool(row[f"consent_{channel}"], f"consent_{channel}")
    customer["consent"] = {
        ch: {"granted": v, "at": at, "source": "import"} if isinstance(v, bool) else v
        for ch, v in consent.items()
    }
    attrs = dict(_object(row, "attributes"))
    attrs.update({k[5:]: v for k, v in row.items() if k.startswith("attr_")})
    if attrs:
        customer["attributes"] = attrs
    return {"id": _row_id("customer", str(cid), row), "type": "customer.imported",
            "occurred_at": at, "customer": customer}


def order_event(row: dict[str, Any], as_of: str | None = None) -> dict[str, Any]:
    for column in ("order_id", "customer_id", "placed_at"):
        if not row.get(column):
            raise PermanentError(f"{column}: required column is missing")
    raw_total = row.get("total")
    if raw_total is None:  # null: as an empty CSV cell
        raw_total = 0
    try:
        total = float(raw_total) if not isinstance(raw_total, bool) else math.nan
    except (TypeError, ValueError, OverflowError):
        total = math.nan
    if not math.isfinite(total):  # the value is not quoted (a shifted CSV row)
        raise PermanentError("total: not a finite number")
    items = row.get("items")
    if isinstance(items, str):
        try:
            items = event_text.loads(items)
        except (ValueError, RecursionError):
            raise PermanentError("items: not a JSON list") from None
    order: dict[str, Any] = {"id": str(row["order_id"]), "total": total,
                             "currency": row.get("currency", "USD")}
    if items is not None:
        order["items"] = items
    elif row.get("sku") or row.get("category"):
        order["items"] = [{"sku": row.get("sku"), "category": row.get("category"),
                           "name": row.get("name"), "quantity": 1, "price": total}]
    return {"id": f"import:order:{row['order_id']}", "type": "order.imported",
            "occurred_at": str(row["placed_at"]), "customer": {"id": str(row["customer_id"])},
            "order": order}


ROW_TO_EVENT: dict[str, Callable[[dict[str, Any], str | None], dict[str, Any]]] = {
    "customers": customer_event, "orders": order_event,
}


class RejectedLog:
    """The rejected-rows report, written as rows are rejected and kept in step with
    the checkpoint: a resumed run keeps what the runs before it reported up to the
    checkpoint, and drops what a run cut short reported after it (those rows are
    read again), so each rejected row is listed once."""

    def __init__(self, path: Path | None, source: Path, keep: int | None) -> None:
        self.path, self.source = path, source
        self.size = self.count = 0
        self._fh: BinaryIO | None = None
        if path is None:
            return
        if not keep:
            path.unlink(missing_ok=True)  # a fresh start: the old report is stale
            return
        if path.exists():
            with path.open("r+b") as fh:
                kept = fh.read(keep)
                fh.truncate(len(kept))
            self.size, self.count = len(kept), kept.count(b"\n")

    def add(self, number: int, reason: str) -> None:
        if self.path is None:
            return
        if self._fh is None:
            self._fh = self.path.open("ab")
        line = f"{self.source}: line {number}: {reason}\n".encode()
        self._fh.write(line)
        self.size += len(line)

    def flush(self) -> None:
        if self._fh is not None:
            self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def run_import(kind: str, path: Path, live: LiveCache, *, checkpoint: Path,
               limit: int | None = None,
               progress: Callable[[int], None] | None = None,
               rejected_log: Path | None = None,
               as_of: datetime | None = None) -> ImportReport:
    """Import rows after the checkpoint; stop after ``limit`` rows (an interruption).

    ``rejected_log``, when given, is the rejected-rows report of the whole import,
    across the runs that resume it (see :class:`RejectedLog`). ``as_of`` is when the
    file's data was true, the time of customer rows without ``updated_at``: by
    default the file's modification time (when the export was written), or now if
    that is later.
    """
    if as_of is None:
        written = datetime.fromtimestamp(path.stat().st_mtime, UTC)
        as_of = min(written, clock.now())
    as_of_text = clock.iso(as_of)
    to_event = ROW_TO_EVENT[kind]
    state = _load_checkpoint(checkpoint)
    report = ImportReport()
    fingerprint = _fingerprint(path)
    if state.get("line") and state.get("file", fingerprint) != fingerprint:
        # Another file (a new export under the same name, or this one edited): its
        # rows up to the checkpoint are not the ones imported. From the top; rows
        # imported before are duplicates, so nothing is applied twice.
        report.restarted = "the file changed since the checkpoint was written"
        state = {}
    done = int(state.get("line", 0))
    # A checkpoint written before the report was kept with it: keep the whole report.
    keep = int(state.get("rejected_bytes", _size(rejected_log))) if done else 0
    log = RejectedLog(rejected_log, path, keep)
    report.earlier_rejected = log.count
    rows = _Rows(live, report, log, done)
    saved = done
    try:
        for number, row in read_rows(path, kind, report.warnings):
            if number <= done:
                continue
            if limit is not None and report.rows >= limit:
                rows.drain()
                _save(checkpoint, rows.last, log, fingerprint)
                return report
            report.rows += 1
            try:
                if isinstance(row, str):
                    raise PermanentError(row)
                event = decode(to_event(row, as_of_text))
            except PermanentError as exc:
                rows.reject(number, exc.reason)
            else:
                rows.add(number, event)
            if rows.last - saved >= CHECKPOINT_EVERY:
                _save(checkpoint, rows.last, log, fingerprint)
                saved = rows.last
            if progress is not None:
                progress(report.rows)
        rows.drain()
    except BaseException as exc:
        # Stopped by an error (DynamoDB throttling, a lost connection) or Ctrl-C, which
        # first finishes the rows read: the rows up to ``rows.last`` are done, so a run
        # again resumes after them.
        if isinstance(exc, KeyboardInterrupt):
            with contextlib.suppress(BaseException):  # another Ctrl-C, an error: stop
                rows.drain()
        if rows.last > done:
            _save(checkpoint, rows.last, log, fingerprint)
        raise
    finally:
        log.close()
    checkpoint.unlink(missing_ok=True)
    report.complete = True
    return report


class _Rows:
    """Rows read and not yet written, written in batches (:func:`ingest_events`): the
    first waiting row of each customer, up to ``BATCH_ROWS`` (a row whose customer or
    event id is already in the batch, or behind an earlier row of its customer still
    waiting, waits for a later batch: each customer's rows are applied in the file's
    order, one per batch). A batch is written when ``BATCH_ROWS`` rows wait.

    ``last`` is the row a resumed run starts after: every row up to it is written or
    rejected. Rejections are reported (``report``, ``log``) once ``last`` passes
    them, so the rejected-rows report stays in step with the checkpoint."""

    def __init__(self, live: LiveCache, report: ImportReport, log: RejectedLog,
                 done: int) -> None:
        self.live, self.report, self.log = live, report, log
        self.waiting: list[tuple[int, dict[str, Any]]] = []
        self.rejected: list[tuple[int, str]] = []  # not reported yet, in row order
        self.last = done
        self.read = done  # the last row read

    def add(self, number: int, event: dict[str, Any]) -> None:
        self.waiting.append((number, event))
        self.read = number
        if len(self.waiting) >= BATCH_ROWS:
            self._write_batch()
        else:
            self._settle()

    def reject(self, number: int, reason: str) -> None:
        self.rejected.append((number, reason))
        self.read = number
        self._settle()

    def drain(self) -> None:
        while self.waiting:
            self._write_batch()
        self._settle()

    def _write_batch(self) -> None:
        batch: list[tuple[int, dict[str, Any]]] = []
        later: list[tuple[int, dict[str, Any]]] = []
        customers: set[str] = set()
        ids: set[str] = set()
        for number, event in self.waiting:
            customer_id, event_id = event["customer"]["id"], event["id"]
            if len(batch) < BATCH_ROWS and customer_id not in customers \
                    and event_id not in ids:
                batch.append((number, event))
            else:
                later.append((number, event))
            customers.add(customer_id)  # its later rows wait behind this one
            ids.add(event_id)
        outcomes = ingest_events([event for _, event in batch], self.live, history=True)
        for (number, _), outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, PermanentError):
                self.rejected.append((number, outcome.reason))
            else:
                self.report.imported += not outcome.duplicate
                self.report.duplicates += outcome.duplicate
        self.rejected.sort()
        self.waiting = later
        self._settle()

    def _settle(self) -> None:
        self.last = max(self.last, self.waiting[0][0] - 1 if self.waiting else self.read)
        done = 0
        for number, reason in self.rejected:
            if number > self.last:
                break
            self.report.rejected.append((number, reason))
            self.log.add(number, reason)
            done += 1
        del self.rejected[:done]


def _size(path: Path | None) -> int:
    return path.stat().st_size if path is not None and path.exists() else 0


def _fingerprint(path: Path) -> str:
    """Which file a checkpoint is for: its size and a hash of its first MiB (a new
    export saved under the same name differs in one; a file only touched does not)."""
    with path.open("rb") as fh:
        head = fh.read(1 << 20)
    return f"{path.stat().st_size}:{hashlib.sha256(head).hexdigest()[:32]}"


def _load_checkpoint(checkpoint: Path) -> dict[str, Any]:
    if not checkpoint.exists():
        return {}
    try:
        state = json.loads(checkpoint.read_text())
    except ValueError:  # cut short while written, or edited: start from the top
        return {}
    if not isinstance(state, dict):
        return {}
    # Edited by hand into something else: from the top too (rows done are duplicates).
    for key in ("line", "rejected_bytes"):
        value = state.get(key, 0)
        if type(value) is not int or value < 0:
            return {}
    return state if isinstance(state.get("file", ""), str) else {}


def _save(checkpoint: Path, line: int, log: RejectedLog, fingerprint: str) -> None:
    log.flush()  # the report holds at least what the checkpoint says it does
    tmp = checkpoint.with_suffix(".tmp")
    tmp.write_text(json.dumps({"line": line, "rejected_bytes": log.size,
                               "file": fingerprint}))
    tmp.replace(checkpoint)
