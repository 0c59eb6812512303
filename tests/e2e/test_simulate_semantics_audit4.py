"""Fourth audit of `aftercare simulate`'s decisions (session 11; the shared core, so
the pipeline decides the same: see the differential tests).

Each test held a defect: a second event of the trigger's type for the same order (a
second parcel's delivery) exited the order's enrollment at ingest although the send-time
check does not count it; an exited birthday occurrence lost its goal conversion (the
record jumped to next year's occurrence at once); a yearly occurrence planned when
the previous one's last step was decided had no `planned` row; an `expire_after`
under a minute was printed as "0m".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.e2e.test_simulate_semantics_audit import (
    campaign,
    email,
    ev,
    marks_of,
    simulate,
    steps_of,
)


def test_a_second_delivery_of_the_same_order_does_not_exit_its_enrollment(
        tmp_path: Path) -> None:
    for reentry in ({"policy": "once_per_order"}, {"policy": "always"}):
        c = campaign("dd", {"event": "order.delivered"}, [email(after="P2D", at="10:00")],
                     exit={"event": "order.delivered"}, reentry=reentry)
        rows = simulate(tmp_path, [c], [
            ev("d1", "order.delivered", "2026-04-01T14:00:00Z", "cd", order="o1"),
            ev("d2", "order.delivered", "2026-04-02T14:00:00Z", "cd", order="o1"),
        ], "--to", "2026-05-01")
        assert not [r for r in marks_of(rows, "cd") if r[4] == "exited"], (reentry, rows)
        assert ("cd", "dd", "mail", "2026-04-03T14:00:00Z", "sent", "") in \
            steps_of(rows, "cd"), (reentry, rows)


def _birthday(cid: str, **extra: Any) -> dict[str, Any]:
    return campaign(cid, {"date": "customer.birthday"},
                    [{"id": "greeting", "at": "10:00", "channel": "sms",
                      "template": "birthday", **extra.pop("step", {})}], **extra)


def _updated(eid: str, at: str, cid: str, **customer: Any) -> dict[str, Any]:
    return ev(eid, "customer.updated", at, cid, **customer)


def test_an_exited_birthday_occurrence_still_converts_its_goal(tmp_path: Path) -> None:
    c = _birthday("bd", exit={"event": "customer.complained"},
                  goal={"event": "order.placed", "within": "P30D"})
    rows = simulate(tmp_path, [c], [
        _updated("a1", "2026-04-01T14:00:00Z", "bday", birthday="1990-05-20"),
        ev("a2", "customer.complained", "2026-05-20T09:00:00Z", "bday"),
        ev("a3", "order.placed", "2026-05-25T14:00:00Z", "bday", order="o1"),
        ev("a4", "order.placed", "2026-05-26T14:00:00Z", "bday", order="o2"),
    ], "--to", "2026-07-01")
    marks = [(r[3], r[4], r[5]) for r in marks_of(rows, "bday")]
    assert marks == [
        ("2026-04-01T14:00:00Z", "planned", "birthday:1990-05-20:2026"),
        ("2026-05-20T09:00:00Z", "exited", "customer.complained"),
        ("2026-05-20T09:00:00Z", "planned", "birthday:1990-05-20:2027"),
        ("2026-05-25T14:00:00Z", "converted", "order.placed"),  # once, not again 05-26
    ], rows


def test_each_yearly_occurrence_has_a_planned_row(tmp_path: Path) -> None:
    rows = simulate(tmp_path, [_birthday("bd")], [
        _updated("q1", "2026-04-01T14:00:00Z", "quiet", birthday="1990-05-20"),
    ], "--to", "2028-06-01")
    assert [(r[3], r[5]) for r in marks_of(rows, "quiet") if r[4] == "planned"] == [
        ("2026-04-01T14:00:00Z", "birthday:1990-05-20:2026"),
        ("2026-05-20T14:00:00Z", "birthday:1990-05-20:2027"),
        ("2027-05-20T14:00:00Z", "birthday:1990-05-20:2028"),
        ("2028-05-20T14:00:00Z", "birthday:1990-05-20:2029"),
    ], rows
    assert [r[4] for r in steps_of(rows, "quiet")] == ["sent"] * 3


def test_an_expire_after_under_a_minute_is_shown_in_seconds(tmp_path: Path) -> None:
    rows = simulate(tmp_path, [_birthday("b1", step={"expire_after": "PT30S"})], [
        _updated("x1", "2026-05-20T14:00:45Z", "x", birthday="1990-05-20"),
    ], "--to", "2026-06-01")
    [(_, _, _, _, outcome, reason)] = steps_of(rows, "x")
    assert (outcome, reason) == ("expired", "45s late, expire_after 30s")


def test_an_expire_after_with_seconds_over_a_minute_shows_them(tmp_path: Path) -> None:
    rows = simulate(tmp_path, [_birthday("b1", step={"expire_after": "PT90S"})], [
        _updated("x1", "2026-05-20T14:01:31Z", "x", birthday="1990-05-20"),
    ], "--to", "2026-06-01")
    [(_, _, _, _, outcome, reason)] = steps_of(rows, "x")
    assert (outcome, reason) == ("expired", "1m31s late, expire_after 1m30s")
