"""Small value types shared by the code generator and the operator emitters."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

# What the code generator knows statically about the value of an expression.
BOOL = "bool"
NUM = "num"
STR = "str"
LIST = "list"
DICT = "dict"
NULL = "null"
ANY = "any"

# Kinds whose Python truth equals their JSON Logic truth (only objects differ:
# ``{}`` is falsy in Python and truthy in JSON Logic).
PLAIN_TRUTH = frozenset({BOOL, NUM, STR, LIST, NULL})
# Kinds that are never null, lists or objects: safe operands for Python's < etc.
SCALAR = frozenset({BOOL, NUM, STR})

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# Characters JSON leaves as they are but that end a line for str.splitlines.
_LINE_BREAKING = re.compile("[\x7f-\x9f\u2028\u2029]")


def kind_of(value: Any) -> str:
    """Kind of a JSON literal."""
    if value is None:
        return NULL
    if isinstance(value, bool):
        return BOOL
    if isinstance(value, (int, float)):
        return NUM
    if isinstance(value, str):
        return STR
    if isinstance(value, list):
        return LIST
    return DICT


@dataclass(frozen=True)
class Expr:
    """A Python expression computing one JSON Logic node.

    ``code`` is always safe to embed anywhere (parenthesised when compound) and
    evaluates its sub-expressions exactly once, left to right.
    """

    code: str
    kind: str = ANY
    const: bool = False
    value: Any = None
    # ``code`` is a bare name or literal: may be repeated without re-evaluation.
    simple: bool = False
    # Name that ``code`` assigns its value to (``(_v1 := ...)``), if any.
    name: str | None = None


def literal(value: Any) -> Expr:
    """A JSON literal; lists and objects are rebuilt on each evaluation."""
    simple = not isinstance(value, (list, dict))
    return Expr(repr(value), kind_of(value), const=True, value=value, simple=simple)


@dataclass
class Frame:
    """A data context that ``var``/``val`` read from.

    The root frame is the evaluated data; ``map``/``filter``/... push one per
    iteration (the item, and the index as scope metadata), ``reduce`` a virtual
    ``{"current", "accumulator"}`` object, a ``try`` handler the error.
    """

    ctx: str
    fields: dict[str, str] = field(default_factory=dict)
    index: str | None = None
    index_used: bool = False


def child_key(path: str, key: str) -> str:
    """``$.a`` + ``b`` → ``$.a.b``; keys that are not identifiers are quoted."""
    if _IDENTIFIER.match(key):
        return f"{path}.{key}"
    return f"{path}['{quote_key(key)}']"


def quote_key(key: str) -> str:
    """``key`` escaped to sit between single quotes on one line (control characters
    as JSON writes them, so that a problem is always one line)."""
    escaped = json.dumps(key, ensure_ascii=False)[1:-1].replace('\\"', '"')
    escaped = _LINE_BREAKING.sub(lambda m: f"\\u{ord(m.group()):04x}", escaped)
    return escaped.replace("'", "\\'")


def child_index(path: str, index: int) -> str:
    return f"{path}[{index}]"


def json_shown(value: Any, limit: int = 60) -> str:
    """A rule's constant as a message shows it: as written in JSON (``true``,
    ``null``, ``[1, 2]``), a string quoted as Python does (``'x'``, as messages quote
    names), cut to about ``limit`` characters.

    >>> json_shown(True), json_shown("x"), json_shown([1, None])
    ('true', "'x'", '[1, null]')
    """
    if isinstance(value, str):
        text = repr(value)
    else:
        try:
            text = json.dumps(value, ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError, RecursionError):
            try:
                text = repr(value)
            except (ValueError, RecursionError):  # 5,000 digits, a list 5,000 deep
                text = f"{type(value).__name__} too large to show"
    return text if len(text) <= limit else text[:limit - 3] + "..."
