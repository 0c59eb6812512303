"""Rules that compile but cannot mean what their author meant.

:func:`validate_rule` checks a rule the JSON Logic way: a constant date that does
not parse is legal there (``days_since`` of it is null, by design, because data
can hold anything). Written *as a constant* in a campaign, though, it is a typo
that silently makes the rule false for everyone, so campaign validation also runs
:func:`lint_rule`.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from typing import Any

from .dates import is_zone_name, parse_instant
from .errors import RuleError
from .model import child_index, child_key, json_shown

_DATE_OPERATORS = frozenset({"days_since", "days_until", "years_since", "is_anniversary"})
_MAX_NODES = 100_000


# What a campaign rule is evaluated on: ``{customer, event, now}``.
CONTEXT_ROOTS = ("customer", "event", "now")
# Operators whose arguments after the first are evaluated on each item (or on the
# error, for ``try``) rather than on the context: their ``var`` paths are not checked.
_SCOPED = frozenset({"map", "filter", "all", "some", "none", "reduce", "try"})


def lint_rule(rule: Any, *, path: str = "$") -> list[RuleError]:
    """Constant arguments that can never work, and paths outside the context.

    ``{"days_since": ["2026-02-30"]}`` (no such day), ``{"is_anniversary":
    [..., "Europe/Pariss"]}`` (no such zone), ``{"var": "custmer.tier"}`` (a rule
    sees only ``customer``, ``event`` and ``now``: the typo would make it null for
    everyone). Returns them with their JSON paths; empty when there is nothing to say.
    """
    problems: list[RuleError] = []
    for op, raw, op_path, top in _operations(rule, path):
        if op in _DATE_OPERATORS:
            problems.extend(_date_arguments(op, raw, op_path))
        if top and op in ("var", "val"):
            problems.extend(_context_path(op, raw, op_path))
        if top and op in ("missing", "missing_some"):
            problems.extend(_missing_paths(op, raw, op_path))
    return problems


def unknown_fields(rule: Any, fields: Mapping[str, frozenset[str]], *,
                   path: str = "$") -> list[RuleError]:
    """Constant ``var``/``val`` paths to a field their root object never has:
    ``{"var": "customer.order_cnt"}`` with ``fields={"customer": {...}}`` is null for
    everyone, a typo that silently empties the audience. Roots not in ``fields``
    (``event``, whose data is free) are not checked."""
    problems: list[RuleError] = []
    for op, raw, op_path, top in _operations(rule, path):
        if not top or op not in ("var", "val"):
            continue
        parts = _constant_path(op, raw)
        if len(parts) < 2 or parts[0] not in fields or parts[1] in fields[parts[0]]:
            continue
        root, field = parts[0], parts[1]
        close = difflib.get_close_matches(field, sorted(fields[root]), n=1, cutoff=0.6)
        hint = f"did you mean '{root}.{close[0]}'?" if close else (
            f"custom data goes under '{root}.attributes'" if root == "customer"
            else "see docs/rules.md")
        where = child_index(op_path, 1 if op == "val" else 0) if isinstance(raw, list) \
            else op_path
        problems.append(RuleError(where, f"'{op}' reads '{root}.{field}', a field no "
                                  f"{root} has: it is null for everyone ({hint})"))
    return problems


def absent_roots(rule: Any, absent: Mapping[str, str], *, path: str = "$",
                 ) -> list[RuleError]:
    """Constant ``var``/``val`` paths into a root object the campaign never has:
    ``{"var": "event.type"}`` in a date or idle campaign, whose rules see no event.
    ``absent`` maps such a root to why it is missing."""
    problems: list[RuleError] = []
    for op, raw, op_path, top in _operations(rule, path):
        if not top or op not in ("var", "val"):
            continue
        parts = _constant_path(op, raw)
        if not parts or parts[0] not in absent:
            continue
        where = child_index(op_path, 1 if op == "val" else 0) if isinstance(raw, list) \
            else op_path
        problems.append(RuleError(where, f"'{op}' reads '{'.'.join(parts)}', but "
                                  f"{absent[parts[0]]}: it is null for everyone"))
    return problems


def _constant_path(op: str, raw: Any) -> list[str]:
    """The keys of a constant ``var``/``val`` path, [] when computed or not a path."""
    first: Any = raw[0] if isinstance(raw, list) and raw else raw
    if op == "var":
        return first.split(".") if isinstance(first, str) and first else []
    parts = raw if isinstance(raw, list) else [raw]
    return parts if parts and all(isinstance(p, str) and p for p in parts) else []


def _operations(rule: Any, path: str) -> Iterator[tuple[str, Any, str, bool]]:
    """``(op, raw, path, top)`` of each operation in ``rule``; ``top`` is False inside
    the arguments of ``map``/``filter``/... that read the item, not the context."""
    stack: list[tuple[Any, str, bool]] = [(rule, path, True)]
    seen = 0
    while stack and seen < _MAX_NODES:
        node, where, top = stack.pop()
        seen += 1
        if isinstance(node, list):
            stack.extend((item, child_index(where, i), top) for i, item in enumerate(node))
            continue
        if not isinstance(node, dict) or len(node) != 1:
            continue
        ((op, raw),) = node.items()
        if not isinstance(op, str) or op == "preserve":
            continue
        op_path = child_key(where, op)
        yield op, raw, op_path, top
        if op in _SCOPED and isinstance(raw, list):
            own = (0, 2) if op == "reduce" else (0,)  # the rest read the item or error
            stack.extend((item, child_index(op_path, i), top and i in own)
                         for i, item in enumerate(raw))
        else:
            stack.append((raw, op_path, top))


def _context_path(op: str, raw: Any, path: str) -> list[RuleError]:
    """A constant ``var``/``val`` path whose first key is not in the context."""
    first: Any = raw[0] if isinstance(raw, list) and raw else raw
    where = child_index(path, 0) if isinstance(raw, list) else path
    if type(first) is int or type(first) is float:
        # An index: the context is an object, where it reads a key such as "5".
        return [RuleError(where, f"'{op}' reads {first!r}, but a rule sees only "
                          "'customer', 'event' and 'now' (a number reads an item of a "
                          "list, as in the rules of 'map', 'filter' and the like)")]
    if not isinstance(first, str) or not first:
        return []  # the whole context, a computed path, or a scope jump (``val``)
    root = first.split(".", 1)[0] if op == "var" else first
    if root in CONTEXT_ROOTS:
        return []
    close = difflib.get_close_matches(root, CONTEXT_ROOTS, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}?" if close else f"e.g. 'customer.{first}'"
    return [RuleError(where, f"'{op}' reads {first!r}, but a rule sees only 'customer', "
                      f"'event' and 'now' ({hint})")]


def _missing_paths(op: str, raw: Any, path: str) -> list[RuleError]:
    """The constant paths ``missing`` or ``missing_some`` asks for whose first key is
    not in the context: always missing (``{"missing": ["custmer.email"]}``)."""
    items: Any = [raw]
    base: str | None = None
    if op == "missing_some":
        if not (isinstance(raw, list) and len(raw) == 2 and isinstance(raw[1], list)):
            return []
        items, base = raw[1], child_index(path, 1)
    elif isinstance(raw, list):
        items, base = raw, path
        if raw and isinstance(raw[0], list):  # the keys given as one array
            items, base = raw[0], child_index(path, 0)
    problems = []
    for i, item in enumerate(items):
        root = item.split(".", 1)[0] if isinstance(item, str) else ""
        if not root or root in CONTEXT_ROOTS:
            continue
        close = difflib.get_close_matches(root, CONTEXT_ROOTS, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}?" if close else f"e.g. 'customer.{item}'"
        problems.append(RuleError(
            child_index(base, i) if base is not None else path,
            f"'{op}' asks for {item!r}, but a rule sees only 'customer', 'event' and "
            f"'now' ({hint}): it is missing for everyone"))
    return problems


def _date_arguments(op: str, raw: Any, path: str) -> list[RuleError]:
    args = raw if isinstance(raw, list) else [raw]
    found = []
    if args and _constant(args[0]) and args[0] is not None and parse_instant(args[0]) is None:
        found.append(RuleError(child_index(path, 0) if isinstance(raw, list) else path,
                               f"'{op}' needs a date (YYYY-MM-DD or an ISO 8601 datetime), "
                               f"got the constant {json_shown(args[0])}"))
    if (op == "is_anniversary" and len(args) == 2 and _constant(args[1])
            and args[1] is not None and not is_zone_name(args[1])):
        found.append(RuleError(child_index(path, 1), "'is_anniversary' needs an IANA "
                               f"timezone such as 'Europe/Madrid', got {json_shown(args[1])}"))
    return found


def _constant(value: Any) -> bool:
    """A value no evaluation changes: not an operation, nor an array holding one
    (at any depth: walked without recursion)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            return False
    return True
