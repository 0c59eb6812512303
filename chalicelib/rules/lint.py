"""Rules that compile but cannot mean what their author meant.

:func:`validate_rule` checks a rule the JSON Logic way: a constant date that does
not parse is legal there (``days_since`` of it is null, by design, because data
can hold anything). Written *as a constant* in a campaign, though, it is a typo
that silently makes the rule false for everyone, so campaign validation also runs
:func:`lint_rule`.
"""

from __future__ import annotations

from typing import Any

from .dates import is_zone_name, parse_instant
from .errors import RuleError
from .model import child_index, child_key

_DATE_OPERATORS = frozenset({"days_since", "days_until", "years_since", "is_anniversary"})
_MAX_NODES = 100_000


def lint_rule(rule: Any, *, path: str = "$") -> list[RuleError]:
    """Constant arguments of the date operators that can never work.

    ``{"days_since": ["2026-02-30"]}`` (no such day), ``{"is_anniversary":
    [..., "Europe/Pariss"]}`` (no such zone). Returns them with their JSON paths;
    empty when there is nothing to say.
    """
    problems: list[RuleError] = []
    stack: list[tuple[Any, str]] = [(rule, path)]
    seen = 0
    while stack and seen < _MAX_NODES:
        node, where = stack.pop()
        seen += 1
        if isinstance(node, list):
            stack.extend((item, child_index(where, i)) for i, item in enumerate(node))
            continue
        if not isinstance(node, dict) or len(node) != 1:
            continue
        ((op, raw),) = node.items()
        if not isinstance(op, str) or op == "preserve":
            continue
        op_path = child_key(where, op)
        if op in _DATE_OPERATORS:
            problems.extend(_date_arguments(op, raw, op_path))
        stack.append((raw, op_path))
    return problems


def _date_arguments(op: str, raw: Any, path: str) -> list[RuleError]:
    args = raw if isinstance(raw, list) else [raw]
    found = []
    if args and _constant(args[0]) and args[0] is not None and parse_instant(args[0]) is None:
        found.append(RuleError(child_index(path, 0) if isinstance(raw, list) else path,
                               f"'{op}' needs a date (YYYY-MM-DD or an ISO 8601 datetime), "
                               f"got the constant {args[0]!r}"))
    if (op == "is_anniversary" and len(args) == 2 and _constant(args[1])
            and args[1] is not None and not is_zone_name(args[1])):
        found.append(RuleError(child_index(path, 1), "'is_anniversary' needs an IANA "
                               f"timezone such as 'Europe/Madrid', got {args[1]!r}"))
    return found


def _constant(value: Any) -> bool:
    return not isinstance(value, (dict, list))
