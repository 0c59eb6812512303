"""Exceptions of the rule compiler.

Two kinds, raised at different times:

- :class:`RuleError` when a rule is *compiled*: unknown operator, wrong number of
  arguments, malformed ``var`` path, a value that is not JSON.  It carries the JSON
  path of the offending node so that a campaign push can point at it.
- :class:`RuleEvaluationError` when a compiled rule is *evaluated* and JSON Logic
  says the evaluation fails: ``throw``, arithmetic on something that is not a
  number (``NaN``), an iterator over something that is not an array.  Its ``type``
  is the JSON Logic error type (``"NaN"``, ``"Invalid Arguments"`` or whatever a
  ``throw`` threw).
"""

from __future__ import annotations

from typing import Any

__all__ = ["RuleError", "RuleEvaluationError"]

INVALID_ARGUMENTS = "Invalid Arguments"
UNKNOWN_OPERATOR = "Unknown Operator"


class RuleError(ValueError):
    """A rule that cannot be compiled.

    Parameters
    ----------
    path:
        JSON path of the problem, e.g. ``$.audience.and[1]['>=']``.
    message:
        What is wrong, for a human.
    error_type:
        JSON Logic error type, ``"Invalid Arguments"`` or ``"Unknown Operator"``.
    """

    def __init__(
        self, path: str, message: str, *, error_type: str = INVALID_ARGUMENTS
    ) -> None:
        super().__init__(path, message)
        self.path = path
        self.message = message
        self.type = error_type

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"

    def __repr__(self) -> str:
        return f"RuleError({self.path!r}, {self.message!r})"


class RuleEvaluationError(Exception):
    """Evaluation of a compiled rule failed the JSON Logic way.

    Parameters
    ----------
    error_type:
        The JSON Logic error type: ``"NaN"``, ``"Invalid Arguments"``, or the type
        given to ``throw``.
    message:
        Optional detail for logs.
    value:
        The error object a ``try`` handler sees; ``{"type": error_type}`` unless
        ``throw`` threw an object.
    """

    def __init__(
        self, error_type: str, message: str = "", *, value: Any = None
    ) -> None:
        self.type = error_type
        self.message = message or error_type
        self.value: Any = {"type": error_type} if value is None else value
        super().__init__(error_type, self.message)

    def __str__(self) -> str:
        if self.message == self.type:
            return self.type
        return f"{self.type}: {self.message}"
