from __future__ import annotations

from datetime import UTC, datetime, time

from chalicelib.config.compiled import CompiledStep
from chalicelib.config.durations import Delay
from chalicelib.journeys.timing import in_quiet_hours, next_allowed, plan_send_time, zone

TWO_DAYS = Delay(days=2)


def step(after: Delay = TWO_DAYS, at: time | None = None,
         weekdays: frozenset[int] | None = None) -> CompiledStep:
    return CompiledStep(id="s", index=0, after=after, at=at, weekdays=weekdays, channel="sms",
                        template="t", condition=None, survey=None, expire_after=None)


NY = zone("America/New_York")


def test_local_send_time_on_the_delay_day() -> None:
    base = datetime(2026, 3, 1, 14, 2, tzinfo=UTC)  # 09:02 in New York
    due = plan_send_time(base, step(at=time(10, 0)), NY)
    assert due == datetime(2026, 3, 3, 15, 0, tzinfo=UTC)


def test_local_send_time_already_passed_moves_to_next_day() -> None:
    base = datetime(2026, 3, 1, 18, 0, tzinfo=UTC)  # 13:00 New York
    due = plan_send_time(base, step(at=time(10, 0)), NY)
    assert due.astimezone(NY).date().isoformat() == "2026-03-04"
    assert due.astimezone(NY).hour == 10


def test_send_time_keeps_local_wall_clock_across_dst() -> None:
    # 2026-03-08 is the US spring-forward day: 10:00 EDT is 14:00 UTC, not 15:00.
    base = datetime(2026, 3, 6, 15, 0, tzinfo=UTC)
    due = plan_send_time(base, step(at=time(10, 0)), NY)
    assert due == datetime(2026, 3, 8, 14, 0, tzinfo=UTC)


def test_time_in_spring_forward_gap_moves_forward() -> None:
    base = datetime(2026, 3, 7, 5, 0, tzinfo=UTC)  # midnight in New York
    due = plan_send_time(base, step(after=Delay(days=1), at=time(2, 30)), NY)
    local = due.astimezone(NY)
    assert local.date().isoformat() == "2026-03-08" and local.hour >= 8  # also quiet hours


def test_weekdays_move_to_the_next_allowed_day() -> None:
    base = datetime(2026, 3, 6, 15, 0, tzinfo=UTC)  # Friday
    due = plan_send_time(base, step(after=Delay(days=1), at=time(11, 0),
                                    weekdays=frozenset({0})), NY)  # Mondays only
    local = due.astimezone(NY)
    assert local.weekday() == 0 and local.hour == 11 and local.day == 9


def test_quiet_hours_move_to_eight_local() -> None:
    base = datetime(2026, 3, 10, 3, 0, tzinfo=UTC)  # 23:00 in New York
    due = plan_send_time(base, step(after=Delay(days=0)), NY)
    assert due.astimezone(NY).hour == 8
    assert in_quiet_hours(base.astimezone(NY))
    assert next_allowed(base, NY) == due


def test_far_timezone() -> None:
    tokyo = zone("Asia/Tokyo")
    base = datetime(2026, 3, 1, 0, 0, tzinfo=UTC)  # 09:00 Tokyo
    due = plan_send_time(base, step(at=time(10, 0)), tokyo)
    assert due == datetime(2026, 3, 3, 1, 0, tzinfo=UTC)


def test_unknown_timezone_falls_back_to_default() -> None:
    assert zone("Mars/Olympus", "Europe/Berlin").key == "Europe/Berlin"
    assert zone(None, "UTC").key == "UTC"
