"""JSON Logic segment rules, compiled once into Python functions.

Marketers write audience rules in JSON Logic (https://jsonlogic.com).  A rule is
compiled once, when a campaign is loaded, into a plain Python function of the
evaluation context; evaluating it walks no tree.  See ``docs/rules.md``.

Examples
--------
>>> rule = compile_rule({"and": [
...     {">=": [{"var": "customer.order_count"}, 2]},
...     {">": [{"days_since": [{"var": "customer.last_order_at"}]}, 120]},
... ]})
>>> rule({"customer": {"order_count": 3, "last_order_at": "2025-09-01"},
...       "now": "2026-03-01T10:00:00Z"})
True
"""

from __future__ import annotations

from typing import Any

from .codegen import Rule, build, collect_errors, generate
from .dates import anniversary_in_year
from .errors import RuleError, RuleEvaluationError
from .lint import absent_roots, lint_rule, unknown_fields
from .operators import OPERATORS
from .runtime import truthy

__all__ = [
    "OPERATORS",
    "Rule",
    "RuleError",
    "RuleEvaluationError",
    "absent_roots",
    "anniversary_in_year",
    "compile_rule",
    "lint_rule",
    "rule_source",
    "truthy",
    "unknown_fields",
    "validate_rule",
]


def compile_rule(rule: Any, *, path: str = "$") -> Rule:
    """Compile a JSON Logic rule into a function of the evaluation context.

    Parameters
    ----------
    rule:
        The rule, as parsed JSON.
    path:
        JSON path of the rule in its document, e.g. ``$.audience``; compile errors
        report the path of the offending node below it
        (``$.audience.and[1]['>=']``).

    Returns
    -------
    Rule
        ``f(data) -> result``.  ``data`` is usually ``{"customer": {...},
        "event": {...}, "now": "<ISO-8601 UTC>"}``; use :func:`truthy` on the
        result to decide membership.  It raises :class:`RuleEvaluationError`
        where JSON Logic fails (``throw``, arithmetic on non-numbers, ...).

    Raises
    ------
    RuleError
        Unknown operator, wrong number of arguments, malformed ``var`` path, a
        value that is not JSON.
    """
    function, _ = build(rule, path)
    return function


def validate_rule(rule: Any, *, path: str = "$") -> list[RuleError]:
    """All compile errors of ``rule`` (empty when it compiles).

    Examples
    --------
    >>> for error in validate_rule({"and": [{"foo": 1}, {">": [1]}]}):
    ...     print(error)
    $.and[0].foo: unknown operator 'foo'
    $.and[1]['>']: '>' takes at least 2 argument(s), got 1
    """
    return collect_errors(rule, path)


def rule_source(rule: Any, *, path: str = "$") -> str:
    """The Python source a rule compiles to, for debugging and docs."""
    source, _ = generate(rule, path)
    return source
