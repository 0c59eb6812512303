"""Simulate's output: a table for people, JSON or CSV for tools."""

from __future__ import annotations

import csv
import functools
import json
import re
import unicodedata
from collections import Counter
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from chalicelib.journeys.simulate import Simulator

COLUMNS = ("customer", "campaign", "step", "at", "outcome", "reason", "channel", "template")


# Characters that would break a table's lines or columns (a line break or a terminal
# escape in a customer id), or turn its text around or hide part of it (the
# bidirectional controls, zero-width characters): shown escaped, as Python writes
# them ("\\n", "\\u202e").
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e"
                      "\u2060-\u2069\ufeff]")
# A CSV cell a spreadsheet would run as a formula (OWASP's list), such as a customer
# id "=HYPERLINK(...)": written after a "'". A lone "-" (the step of enrollment rows)
# is no formula.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: object) -> str:
    text = str(value)
    if text.isprintable():
        return text
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


def _width(text: str) -> int:
    """Columns ``text`` takes in a terminal: two for a wide (CJK) character, none for
    a combining one."""
    if text.isascii():
        return len(text)
    return _wide_width(text)


@functools.lru_cache(maxsize=65536)  # a customer's id is on each of their rows
def _wide_width(text: str) -> int:
    return sum(0 if unicodedata.combining(c) else
               2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _csv_cell(value: str) -> str:
    return "'" + value if value.startswith(_FORMULA_START) and value != "-" else value


def write_rows(sim: Simulator, fmt: str, out: IO[str]) -> None:
    rows = sorted(sim.rows, key=lambda r: (r.at, r.customer, r.campaign, r.step))
    if fmt == "json":
        for r in rows:
            out.write(json.dumps(dict(zip(COLUMNS, r.as_tuple(), strict=True))) + "\n")
        return
    if fmt == "csv":
        writer = csv.writer(out)
        writer.writerow(COLUMNS)
        writer.writerows([_csv_cell(v) for v in r.as_tuple()] for r in rows)
        return
    cells = [[_cell(v) for v in r.as_tuple()] for r in rows]
    widths = [max([len(c)] + [_width(line[i]) for line in cells]) for i, c in
              enumerate(COLUMNS)]
    out.write("  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths, strict=True)) + "\n")
    for line in cells:
        out.write("  ".join(v + " " * (w - _width(v)) for v, w in zip(line, widths, strict=True))
                  .rstrip() + "\n")
    counts = Counter(r.outcome for r in rows)
    summary = ", ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "no outcomes"
    out.write(f"\n{sim.events} events ({sim.duplicates} duplicates, {len(sim.bad)} bad); "
              f"{summary}; {len(sim.pending())} still pending\n")
