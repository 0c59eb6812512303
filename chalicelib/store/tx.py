"""One TransactWriteItems with "required" and "optional" operations.

A required operation that fails its condition aborts the write (the caller decides
what that means: a duplicate event, a lost race). An optional one that fails (a
schedule item that already exists, a step already sent) is dropped and the rest
is written again, so deterministic keys make repeats harmless without extra reads.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pynamodb.connection import Connection
from pynamodb.exceptions import TransactWriteError
from pynamodb.transactions import TransactWrite

from chalicelib.store.models import REGION

Op = Callable[[TransactWrite], None]
MAX_ITEMS = 100
_conn: Connection | None = None


def connection() -> Connection:
    global _conn
    if _conn is None:
        from chalicelib.store.models import HOST

        _conn = Connection(region=REGION, host=HOST)
    return _conn


class RequiredConditionFailed(Exception):
    """A required operation's condition failed; ``index`` says which."""

    def __init__(self, index: int, code: str | None) -> None:
        super().__init__(f"required operation {index} failed: {code}")
        self.index = index
        self.code = code


@dataclass
class Transaction:
    required: list[Op] = field(default_factory=list)
    optional: list[Op] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.required) + len(self.optional)


class _Tracked(TransactWrite):
    """Remembers which operation made each item: PynamoDB sends condition checks,
    deletes, puts and updates in that order, not in the order they were added,
    and cancellation reasons follow the order sent."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.current = -1
        self.made: dict[str, list[int]] = {"check": [], "delete": [], "put": [], "update": []}

    def condition_check(self, *args: Any, **kwargs: Any) -> None:
        self.made["check"].append(self.current)
        super().condition_check(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> None:
        self.made["delete"].append(self.current)
        super().delete(*args, **kwargs)

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.made["put"].append(self.current)
        super().save(*args, **kwargs)

    def update(self, *args: Any, **kwargs: Any) -> None:
        self.made["update"].append(self.current)
        super().update(*args, **kwargs)

    def op_of_item(self) -> list[int]:
        return [*self.made["check"], *self.made["delete"], *self.made["put"],
                *self.made["update"]]


def _write(ops: Sequence[Op]) -> list[int]:
    """Write ``ops`` in one transaction; on failure the exception carries the map
    from sent item index to op index as ``op_of_item``."""
    tw = _Tracked(connection=connection())
    for i, op in enumerate(ops):
        tw.current = i
        op(tw)
    try:
        tw._commit()
    except TransactWriteError as exc:
        exc.op_of_item = tw.op_of_item()  # type: ignore[attr-defined]
        raise
    return tw.op_of_item()


def commit(tx: Transaction, attempts: int = 4) -> int:
    """Write ``tx``; return how many optional operations were dropped.

    Raises
    ------
    RequiredConditionFailed
        When a required operation's condition fails.
    """
    if len(tx) > MAX_ITEMS:
        raise ValueError(f"transaction of {len(tx)} operations exceeds {MAX_ITEMS}")
    optional = list(tx.optional)
    dropped = 0
    for _ in range(attempts):
        ops = [*tx.required, *optional]
        if not ops:
            return dropped
        try:
            _write(ops)
            return dropped
        except TransactWriteError as exc:
            reasons = exc.cancellation_reasons or []
            op_of_item: list[int] = getattr(exc, "op_of_item", [])
            failed = {op_of_item[i]: r.code for i, r in enumerate(reasons)
                      if r is not None and i < len(op_of_item)}
            if not failed or any(code != "ConditionalCheckFailed" for code in failed.values()):
                raise
            for i, code in sorted(failed.items()):
                if i < len(tx.required):
                    raise RequiredConditionFailed(i, code) from exc
            optional = [op for j, op in enumerate(optional) if j + len(tx.required) not in failed]
            dropped += len(failed)
    raise RuntimeError("transaction kept failing its optional conditions")
