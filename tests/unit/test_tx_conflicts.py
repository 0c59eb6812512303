"""A transaction DynamoDB cancels only for TransactionConflict (another transaction
held one of its items, as a hot stats counter) is sent again after a short pause;
any other cancellation is handled as before. moto never reports a conflict, so the
cancellation is given to ``commit_states`` as pynamodb reports it."""

from __future__ import annotations

from typing import Any

import pytest
from pynamodb.exceptions import CancellationReason, TransactWriteError

from chalicelib.store import tx


class _Cancelled(TransactWriteError):
    def __init__(self, codes: list[str | None]) -> None:
        super().__init__("Transaction cancelled")
        self._reasons = [None if c is None else CancellationReason(c) for c in codes]
        self.op_of_item = list(range(len(codes)))

    @property
    def cancellation_reasons(self) -> list[CancellationReason | None]:  # type: ignore[override]
        return self._reasons


def _ops(n: int) -> list[Any]:
    return [lambda tw: None for _ in range(n)]


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> tuple[list[list[str | None]], list[float]]:
    """Each write raises the next planned cancellation; then succeeds."""
    planned: list[list[str | None]] = []
    pauses: list[float] = []

    def write(ops: Any) -> list[int]:
        if planned:
            raise _Cancelled(planned.pop(0))
        return list(range(len(ops)))

    monkeypatch.setattr(tx, "_write", write)
    monkeypatch.setattr(tx, "pause", pauses.append)
    return planned, pauses


def test_a_conflict_is_sent_again_after_a_jittered_pause(writes: Any) -> None:
    planned, pauses = writes
    planned.extend([[None, "TransactionConflict"], ["TransactionConflict", None]])
    assert tx.commit_states(tx.Transaction(required=_ops(2))) == []
    assert len(pauses) == 2 and planned == []
    assert 0.025 <= pauses[0] <= 0.075 and 0.05 <= pauses[1] <= 0.15


def test_conflicts_past_the_pauses_raise(writes: Any) -> None:
    planned, pauses = writes
    planned.extend([["TransactionConflict"]] * (len(tx.CONFLICT_PAUSES) + 1))
    with pytest.raises(TransactWriteError):
        tx.commit(tx.Transaction(required=_ops(1)))
    assert len(pauses) == len(tx.CONFLICT_PAUSES)


def test_a_condition_failure_beside_a_conflict_is_not_retried_blindly(writes: Any) -> None:
    planned, pauses = writes
    planned.append(["ConditionalCheckFailed", "TransactionConflict"])
    with pytest.raises(TransactWriteError):
        tx.commit(tx.Transaction(required=_ops(2)))
    assert pauses == []
    planned.append(["ConditionalCheckFailed", None])
    with pytest.raises(tx.RequiredConditionFailed):
        tx.commit(tx.Transaction(required=_ops(2)))
