"""What a decoded JSON value is, in JSON's words, for messages that name a wrong type."""

from __future__ import annotations

from typing import Any


def json_kind(value: Any) -> str:
    """``null``, ``a boolean``, ``a number``, ``a string``, ``an array`` or ``an object``
    (a Python value JSON cannot hold: ``a <type name>``).

    >>> json_kind([1]), json_kind(True), json_kind(None)
    ('an array', 'a boolean', 'null')
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return f"a {type(value).__name__}"
