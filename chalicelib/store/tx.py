"""One TransactWriteItems with "required" and "optional" operations.

A required operation that fails its condition aborts the write (the caller decides
what that means: a duplicate event, a lost race). An optional one that fails (a
schedule item that already exists, a step already sent) is dropped and the rest
is written again, so deterministic keys make repeats harmless without extra reads.
An optional operation may have a fallback, written instead when it fails (a
schedule item that exists is updated, if its state allows, rather than created),
or only when the failed item, as DynamoDB returns it (``return_values="ALL_OLD"``),
says so (``fallback_if``: a step waiting for its retry is cancelled with its message),
and some operations may depend on which optional ones were written as given (a
stats bump that counts only the schedule items created): ``derived``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pynamodb.connection import Connection
from pynamodb.exceptions import TransactWriteError
from pynamodb.transactions import TransactWrite

from chalicelib.store.models import REGION

Op = Callable[[TransactWrite], None]
MAX_ITEMS = 100
# Pauses (seconds, jittered 0.5-1.5x) before a transaction cancelled only by
# TransactionConflict is sent again: DynamoDB cancels it when another transaction
# holds one of its items at that moment (a stats counter many events bump).
CONFLICT_PAUSES: tuple[float, ...] = (0.05, 0.1, 0.2, 0.4)
pause: Callable[[float], None] = time.sleep  # replaced in tests
_conn: Connection | None = None


def connection() -> Connection:
    global _conn
    if _conn is None:
        from chalicelib.store.models import HOST

        _conn = Connection(region=REGION, host=HOST)
    return _conn


class RequiredConditionFailed(Exception):
    """A required operation's condition failed; ``index`` says which (the first, when
    several did: ``indices`` has them all)."""

    def __init__(self, index: int, code: str | None,
                 indices: tuple[int, ...] | None = None) -> None:
        super().__init__(f"required operation {index} failed: {code}")
        self.index = index
        self.code = code
        self.indices = indices if indices is not None else (index,)


@dataclass
class Transaction:
    required: list[Op] = field(default_factory=list)
    optional: list[Op] = field(default_factory=list)
    # Index in ``optional`` -> the operation written instead when that one fails its
    # condition (dropped in turn when it fails too).
    fallback: dict[int, Op] = field(default_factory=dict)
    # Index in ``optional`` -> whether its fallback applies, given the item whose
    # condition failed as DynamoDB returned it (DynamoDB JSON; None when the operation
    # did not ask for it with ``return_values="ALL_OLD"``). Without an entry, it does.
    fallback_if: dict[int, Callable[[dict[str, Any] | None], bool]] = field(
        default_factory=dict)
    # Items fallbacks may write beyond one per operation (a fallback of two items):
    # counted against ``MAX_ITEMS`` with ``len``.
    extra_items: int = 0
    # Operations written with the others (never conditional), made from a flag per
    # optional operation: whether it is written as given (not its fallback, not
    # dropped). Called again after each failed attempt.
    derived: Callable[[Sequence[bool]], list[Op]] | None = None

    def __len__(self) -> int:
        extra = len(self.derived([True] * len(self.optional))) if self.derived else 0
        return len(self.required) + len(self.optional) + extra + self.extra_items


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


def commit(tx: Transaction, attempts: int = 5) -> int:
    """Write ``tx``; return how many optional operations were dropped.

    Raises
    ------
    RequiredConditionFailed
        When a required operation's condition fails.
    """
    return commit_states(tx, attempts).count(2)


def commit_states(tx: Transaction, attempts: int = 5) -> list[int]:
    """Write ``tx``; return, per optional operation, how it was written: 0 as given,
    1 its fallback, 2 dropped. Raises as :func:`commit`."""
    if len(tx) > MAX_ITEMS:
        raise ValueError(f"transaction of {len(tx)} operations exceeds {MAX_ITEMS}")
    # Per optional operation: 0 written as given, 1 its fallback, 2 dropped.
    state = [0] * len(tx.optional)
    required = len(tx.required)
    conflicts = 0
    for _ in range(attempts + len(CONFLICT_PAUSES)):
        chosen = [j for j, s in enumerate(state) if s < 2]
        ops = [*tx.required, *(tx.optional[j] if state[j] == 0 else tx.fallback[j]
                               for j in chosen)]
        if tx.derived is not None:
            ops.extend(tx.derived([s == 0 for s in state]))
        if not ops:
            return state
        try:
            _write(ops)
            return state
        except TransactWriteError as exc:
            reasons = exc.cancellation_reasons or []
            op_of_item: list[int] = getattr(exc, "op_of_item", [])
            failed = {op_of_item[i]: r for i, r in enumerate(reasons)
                      if r is not None and i < len(op_of_item)}
            if failed and all(r.code == "TransactionConflict" for r in failed.values()) \
                    and conflicts < len(CONFLICT_PAUSES):
                # Another transaction held one of the items (a hot stats counter):
                # nothing was written, so the same write is safe to send again.
                pause(CONFLICT_PAUSES[conflicts] * (0.5 + random.random()))
                conflicts += 1
                continue
            if not failed or any(r.code != "ConditionalCheckFailed" for r in failed.values()):
                raise
            hard = sorted(i for i in failed if i < required or i >= required + len(chosen))
            if hard:  # a required operation's condition, or a derived one
                raise RequiredConditionFailed(hard[0], failed[hard[0]].code,
                                              tuple(hard)) from exc
            for i, reason in failed.items():
                j = chosen[i - required]
                wanted = tx.fallback_if.get(j)
                state[j] = 1 if state[j] == 0 and j in tx.fallback and (
                    wanted is None or wanted(reason.raw_item)) else 2
    raise RuntimeError("transaction kept failing its optional conditions")
