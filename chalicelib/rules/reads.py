"""What a JSON Logic rule may read, found from its text before it runs.

Conservative static analyses (a path inside ``map`` and the like, which reads the
item, counts as if it read the context) used by the decision core: which keys of
the triggering event's ``data`` a step condition reads (kept with the step), and
whether an audience reads ``now`` (then a date or idle audience is asked on the
occurrence's own clock).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any


def _path_reads_data(parts: Sequence[str], keys: set[str]) -> bool:
    """Note the top-level key of ``event.data`` a constant path reads in ``keys``;
    True when it reads the whole context, event or data."""
    if not parts:
        return True
    if parts[0] != "event":
        return False
    if len(parts) == 1:
        return True
    if parts[1] != "data":
        return False
    if len(parts) == 2:
        return True
    keys.add(parts[2])
    return False


def event_data_reads(rule: Any) -> tuple[bool, frozenset[str]]:
    """Which top-level keys of the triggering event's ``data`` a rule can read:
    ``(False, keys)``, or ``(True, ...)`` when it may read all of it (``var`` of the
    whole event, of ``event.data`` or of the whole context, a path computed when the
    rule runs). Conservative: a path inside ``map`` and the like, which reads the
    item, is counted as if it read the context."""
    keys: set[str] = set()
    for op, raw in operations(rule):
        if _reads_all_data(op, raw, keys):
            return True, frozenset()
    return False, frozenset(keys)


def operations(rule: Any) -> Iterator[tuple[str, Any]]:
    """Every operation of a JSON Logic rule as (operator, arguments), nested ones
    included (a default, a computed path), but not the data of ``preserve``."""
    stack: list[Any] = [rule]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
            continue
        if not isinstance(node, dict) or len(node) != 1:
            continue
        ((op, raw),) = node.items()
        if op == "preserve":
            continue
        yield op, raw
        stack.append(raw)


def _reads_all_data(op: str, raw: Any, keys: set[str]) -> bool:
    """For one operation that reads the context by path (``var``, ``val``, ``exists``,
    ``missing``, ``missing_some``): note the data keys it reads; True when it may
    read all of the data."""
    if op == "var":
        spec = (raw[0] if raw else None) if isinstance(raw, list) else raw
        if isinstance(spec, float) and spec.is_integer():
            spec = int(spec)
        if isinstance(spec, (dict, list)):
            return True
        return _path_reads_data([] if spec is None or spec == "" else (
            spec.split(".") if isinstance(spec, str) else [str(spec)]), keys)
    if op in ("val", "exists"):
        if isinstance(raw, dict):
            return True
        parts = list(raw) if isinstance(raw, list) else ([] if raw is None else [raw])
        if op == "val" and parts and isinstance(parts[0], list):
            parts.pop(0)  # a scope jump: read as if from the context
        return any(isinstance(p, (dict, list)) for p in parts) or _path_reads_data(
            [p if isinstance(p, str) else str(p) for p in parts], keys)
    if op in ("missing", "missing_some"):
        names = raw[1] if op == "missing_some" and isinstance(raw, list) \
            and len(raw) == 2 else raw
        flat = names if isinstance(names, list) else [names]
        for name in (n for item in flat for n in (item if isinstance(item, list) else [item])):
            if isinstance(name, dict) or (
                    isinstance(name, str) and _path_reads_data(name.split("."), keys)):
                return True
    return False


CLOCK_OPERATORS = frozenset({"days_since", "days_until", "years_since", "is_anniversary"})


def reads_clock(rule: Any) -> bool:
    """Whether a rule may read ``now``: a date operator, a path to ``now`` or to the
    whole context, or a path computed when the rule runs. Conservative (a path
    inside ``map`` and the like, which reads the item, counts as the context's)."""
    for op, raw in operations(rule):
        if op in CLOCK_OPERATORS:
            return True
        if op == "var":
            spec = (raw[0] if raw else None) if isinstance(raw, list) else raw
            if spec is None or spec == "" or isinstance(spec, (dict, list)) or (
                    isinstance(spec, str) and spec.split(".", 1)[0] == "now"):
                return True
        elif op in ("val", "exists"):
            parts = list(raw) if isinstance(raw, list) else [raw]
            if op == "val" and parts and isinstance(parts[0], list):
                parts.pop(0)  # a scope jump: read as if from the context
            if not parts or parts[0] is None or parts[0] == "now" or any(
                    isinstance(p, (dict, list)) for p in parts):
                return True
    return False
