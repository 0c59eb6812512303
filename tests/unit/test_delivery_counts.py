"""A message counts once between ``delivered`` and ``failed`` (session 15): SES may
report a Delivery and later a permanent Bounce of the same email, which counted it
in both (delivery and failure rates over 100% together)."""

from __future__ import annotations

import pytest

from chalicelib.tracking.delivery import StatusReport, fold

AT = "2026-03-01T00:00:00Z"


def _fold_all(statuses: list[str]) -> list[tuple[str | None, str | None, str]]:
    """(counter, uncounter, status) of each report folded in turn."""
    history: list[dict[str, object]] = []
    status = "sent"
    out = []
    for name in statuses:
        change = fold(history, status, StatusReport("P-1", name, source="ses"), AT)
        assert change is not None
        out.append((change.counter, change.uncounter, change.status))
        history, status = change.history, change.status
    return out


@pytest.mark.parametrize(("statuses", "expected"), [
    (["delivered", "undelivered"],
     [("delivered", None, "delivered"), ("failed", "delivered", "undelivered")]),
    (["undelivered", "delivered"],
     [("failed", None, "undelivered"), (None, None, "delivered")]),
    (["undelivered", "failed"], [("failed", None, "undelivered"), (None, None, "failed")]),
    (["delivered", "opened", "clicked"],
     [("delivered", None, "delivered"), ("opened", None, "delivered"),
      ("clicked", None, "delivered")]),
    (["delivered", "undelivered", "failed"],
     [("delivered", None, "delivered"), ("failed", "delivered", "undelivered"),
      (None, None, "failed")]),
])
def test_delivered_and_failed_count_a_message_once(
        statuses: list[str], expected: list[tuple[str | None, str | None, str]]) -> None:
    assert _fold_all(statuses) == expected
    net: dict[str, int] = {}
    for counter, uncounter, _ in _fold_all(statuses):
        if counter:
            net[counter] = net.get(counter, 0) + 1
        if uncounter:
            net[uncounter] = net.get(uncounter, 0) - 1
    assert net.get("delivered", 0) + net.get("failed", 0) == 1
