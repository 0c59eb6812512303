"""A cancelled order is not a purchase, in `aftercare simulate` (the decision core the
pipeline shares): it neither counts toward an order-count audience nor re-arms an idle
(win-back) spell, whichever of its events arrives first (docs/events.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.e2e.test_simulate_semantics_audit import (
    UTC_ZONE,
    campaign,
    email,
    ev,
    marks_of,
    simulate,
    steps_of,
)


def _third_order() -> dict[str, Any]:
    return campaign("third", {"event": "order.placed"}, [email("offer", after="P1D",
                                                                at="10:00")],
                    audience={">=": [{"var": "customer.order_count"}, 3]},
                    reentry={"policy": "once"})


def _winback() -> dict[str, Any]:
    return campaign("wb", {"idle": "P120D"},
                    [{"id": "miss-you", "at": "10:30", "channel": "email",
                      "template": "win_back"}],
                    audience={">=": [{"var": "customer.order_count"}, 1]})


def _placed(eid: str, at: str, cid: str, order: str) -> dict[str, Any]:
    return ev(eid, "order.placed", at, cid, tz=UTC_ZONE, order=order)


def _cancelled(eid: str, at: str, cid: str, order: str) -> dict[str, Any]:
    return ev(eid, "order.cancelled", at, cid, tz=UTC_ZONE, order=order)


def test_a_cancelled_order_does_not_count_toward_the_third_order(tmp_path: Path) -> None:
    rows = simulate(tmp_path, [_third_order()], [
        # "late": o2 placed then cancelled; "early": its cancellation comes first (the
        # replay is in time order: stamped before the placement, by a skewed clock).
        _placed("l1", "2026-01-05T09:00:00Z", "late", "o1"),
        _placed("l2", "2026-01-20T09:00:00Z", "late", "o2"),
        _cancelled("l3", "2026-01-21T09:00:00Z", "late", "o2"),
        _placed("l4", "2026-02-01T09:00:00Z", "late", "o3"),   # 2 orders: not yet
        _placed("l5", "2026-03-01T09:00:00Z", "late", "o4"),   # the third
        _placed("e1", "2026-01-05T09:00:00Z", "early", "o1"),
        _cancelled("e3", "2026-01-20T08:00:00Z", "early", "o2"),
        _placed("e2", "2026-01-20T09:00:00Z", "early", "o2"),
        _placed("e4", "2026-02-01T09:00:00Z", "early", "o3"),
        _placed("e5", "2026-03-01T09:00:00Z", "early", "o4"),
    ])
    for cid in ("late", "early"):
        assert steps_of(rows, cid, "third") == [
            (cid, "third", "offer", "2026-03-02T10:00:00Z", "sent", "")], rows
        assert [(r[3], r[4]) for r in marks_of(rows, cid, "third")] == [
            ("2026-01-05T09:00:00Z", "skipped"), ("2026-01-20T09:00:00Z", "skipped"),
            ("2026-02-01T09:00:00Z", "skipped"), ("2026-03-01T09:00:00Z", "enrolled")], rows


def test_a_cancelled_order_does_not_re_arm_a_win_back(tmp_path: Path) -> None:
    rows = simulate(tmp_path, [_winback()], [
        # Last real order 5 Jan: idle 120 days later, 5 May 10:30 UTC. The 1 Mar order
        # is cancelled, so the spell is that of 5 Jan again (not 1 Mar + 120 = 29 Jun).
        _placed("l1", "2026-01-05T09:00:00Z", "late", "o1"),
        _placed("l2", "2026-03-01T09:00:00Z", "late", "o2"),
        _cancelled("l3", "2026-03-02T09:00:00Z", "late", "o2"),
        _placed("e1", "2026-01-05T09:00:00Z", "early", "o1"),
        _cancelled("e3", "2026-03-01T08:00:00Z", "early", "o2"),  # stamped first
        _placed("e2", "2026-03-01T09:00:00Z", "early", "o2"),
    ])
    assert steps_of(rows, "early", "wb") == [
        ("early", "wb", "miss-you", "2026-05-05T10:30:00Z", "sent", "")], rows
    assert [r[4:] for r in marks_of(rows, "early", "wb")] == [
        ("planned", "idle:2026-01-05T09:00:00Z")], rows
    sent = [r for r in steps_of(rows, "late", "wb") if r[4] == "sent"]
    assert sent == [("late", "wb", "miss-you", "2026-05-05T10:30:00Z", "sent", "")], rows
    # The 1 Mar spell planned while o2 counted is cancelled, never sent, and says why.
    assert ("late", "wb", "miss-you", "2026-06-29T10:30:00Z", "cancelled",
            "order cancelled") in rows


def test_a_cancellation_still_exits_the_order_s_enrollment(tmp_path: Path) -> None:
    checkin = campaign("chk", {"event": "order.placed"}, [email("mail", after="P3D")],
                       exit={"event": "order.cancelled"})
    rows = simulate(tmp_path, [checkin], [
        _placed("p1", "2026-01-05T09:00:00Z", "c", "o1"),
        _placed("p2", "2026-01-05T10:00:00Z", "c", "o2"),
        _cancelled("x1", "2026-01-06T09:00:00Z", "c", "o1"),
    ])
    steps = steps_of(rows, "c", "chk")
    assert ("c", "chk", "mail", "2026-01-08T09:00:00Z", "exited", "order.cancelled") in steps
    assert ("c", "chk", "mail", "2026-01-08T10:00:00Z", "sent", "") in steps
