"""Run the shared JSON Logic conformance suites against the compiler.

The suites (json-logic/compat-tables, folder ``suites/``) are JSON arrays of
section headings (strings) and cases ``{"rule", "data", "result" | "error"}``;
``index.json`` lists the files.  A case passes when the result is JSON-equal to
the expected one (``1 == 1.0``, ``true != 1``) or, for an ``error`` case, when
compiling or evaluating fails with the expected error type.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import compile_rule
from .errors import RuleError, RuleEvaluationError

COMPATIBLE = "compatible.json"


@dataclass(frozen=True)
class CaseResult:
    suite: str
    index: int
    case: dict[str, Any]
    passed: bool
    outcome: str  # the result or error, for failure messages


def json_equal(got: Any, expected: Any) -> bool:
    """Equality of JSON values: numbers by value, but booleans are not numbers."""
    if isinstance(got, bool) or isinstance(expected, bool):
        return got is expected
    if isinstance(got, (int, float)) and isinstance(expected, (int, float)):
        if isinstance(got, int) and isinstance(expected, int):
            return got == expected
        return math.isclose(got, expected, rel_tol=1e-12, abs_tol=1e-12)
    if isinstance(got, list) and isinstance(expected, list):
        return len(got) == len(expected) and all(
            json_equal(a, b) for a, b in zip(got, expected, strict=True)
        )
    if isinstance(got, dict) and isinstance(expected, dict):
        return got.keys() == expected.keys() and all(
            json_equal(got[k], expected[k]) for k in got
        )
    return type(got) is type(expected) and got == expected


def run_case(case: dict[str, Any]) -> tuple[bool, str]:
    """(passed, outcome) of one suite case."""
    expected_error = case.get("error")
    try:
        result = compile_rule(case["rule"])(case.get("data"))
    except (RuleError, RuleEvaluationError) as exc:
        outcome = f"{type(exc).__name__}[{exc.type}]: {exc}"
        if isinstance(expected_error, dict):
            return exc.type == expected_error.get("type"), outcome
        return False, outcome
    outcome = json.dumps(result, default=repr)
    if expected_error is not None:
        return False, outcome
    return json_equal(result, case.get("result")), outcome


def iter_suite(suites_dir: Path, name: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """Cases of one suite file with their positions."""
    entries = json.loads((suites_dir / name).read_text(encoding="utf-8"))
    for index, entry in enumerate(entries):
        if isinstance(entry, dict):
            yield index, entry


def suite_names(suites_dir: Path) -> list[str]:
    names: list[str] = json.loads((suites_dir / "index.json").read_text(encoding="utf-8"))
    return names


def iter_results(suites_dir: str | Path) -> Iterator[CaseResult]:
    """Every case of every suite in ``index.json``, run."""
    root = Path(suites_dir)
    for name in suite_names(root):
        for index, case in iter_suite(root, name):
            passed, outcome = run_case(case)
            yield CaseResult(name, index, case, passed, outcome)


def run_suites(suites_dir: str | Path) -> dict[str, int]:
    """Pass counts: the classic suite and all suites of ``index.json``.

    Returns
    -------
    dict
        ``compatible_passed``, ``compatible_total``, ``full_passed``,
        ``full_total``.
    """
    counts = dict.fromkeys(
        ("compatible_passed", "compatible_total", "full_passed", "full_total"), 0
    )
    for result in iter_results(suites_dir):
        counts["full_total"] += 1
        counts["full_passed"] += result.passed
        if result.suite == COMPATIBLE:
            counts["compatible_total"] += 1
            counts["compatible_passed"] += result.passed
    return counts
