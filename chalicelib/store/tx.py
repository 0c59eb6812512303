"""One TransactWriteItems with "required" and "optional" operations.

A required operation that fails its condition aborts the write (the caller decides
what that means: a duplicate event, a lost race). An optional one that fails (a
schedule item that already exists, a step already sent) is dropped and the rest
is written again, so deterministic keys make repeats harmless without extra reads.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

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


def _write(ops: Sequence[Op]) -> None:
    with TransactWrite(connection=connection()) as tw:
        for op in ops:
            op(tw)


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
            failed = {i: r.code for i, r in enumerate(reasons) if r is not None}
            if not failed or any(code != "ConditionalCheckFailed" for code in failed.values()):
                raise
            for i, code in sorted(failed.items()):
                if i < len(tx.required):
                    raise RequiredConditionFailed(i, code) from exc
            optional = [op for j, op in enumerate(optional) if j + len(tx.required) not in failed]
            dropped += len(failed)
    raise RuntimeError("transaction kept failing its optional conditions")
