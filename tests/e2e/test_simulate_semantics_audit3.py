"""Third audit of `aftercare simulate`'s decision semantics (the first two are
test_simulate_semantics_audit.py and test_simulate_semantics_audit2.py, whose cases
are not repeated here; their helpers are imported).

Every case builds a small campaign folder and event log, runs the real CLI
(`aftercare simulate --format json`, in-process through ``main``) and compares the
rows with timelines computed by hand from docs/campaigns.md, docs/rules.md and
DESIGN.md. Cases where the output contradicts the docs (or what a marketer would
reasonably expect) are kept as ``xfail(strict=True)`` with the sentence they
contradict.

Local times used below (tz database, checked with zoneinfo, not with the code):
New York is EST (UTC-5) until 2026-03-08 and EDT (UTC-4) from then to 2026-11-01;
Tokyo UTC+9 and Berlin CEST (UTC+2) in June; Kolkata UTC+5:30; Kathmandu UTC+5:45;
Chatham UTC+13:45 until 2026-04-05 03:45 local, then UTC+12:45; Lord Howe UTC+11
until 2026-04-05 02:00 local, then UTC+10:30; Santiago UTC-3 until 2026-04-05 00:00
local (clocks back to 23:00 on 4 Apr), UTC-4 until 2026-09-06 00:00 local (clocks
forward to 01:00), then UTC-3; Havana UTC-5 until 2026-03-08 00:00 local (forward to
01:00), then UTC-4; Kiritimati UTC+14 without DST.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from chalicelib.journeys import keys
from tests.e2e.test_simulate_semantics_audit import (
    TEMPLATES,
    UTC_ZONE,
    RowT,
    campaign,
    email,
    ev,
    main,
    marks_of,
    run_cli,
    simulate,
    simulate_dicts,
    steps_of,
    write_case,
)
from tests.e2e.test_simulate_semantics_audit2 import bday

NY = ZoneInfo("America/New_York")


def local(at: str, tz: ZoneInfo = NY) -> str:
    """A row's UTC time as local wall time, e.g. 'Mon 2026-04-06 08:00'."""
    return datetime.fromisoformat(at.replace("Z", "+00:00")).astimezone(tz).strftime(
        "%a %Y-%m-%d %H:%M")


def sent(rows: list[RowT], customer: str, camp: str | None = None) -> list[RowT]:
    return [r for r in steps_of(rows, customer, camp) if r[4] == "sent"]


# =========================================================== defects (strict xfail)

def test_goal_at_the_enrollments_own_instant_does_not_depend_on_line_order(
        tmp_path: Path) -> None:
    g = campaign("g", {"event": "order.delivered"}, [email(after="P1D", at="10:00")],
                 goal={"event": "order.placed", "within": "P7D"})
    delivered = ev("d1", "order.delivered", "2026-04-01T14:00:00Z", "c1", order="o1")
    placed = ev("p1", "order.placed", "2026-04-01T14:00:00Z", "c1", order="o2")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    placed_first = simulate(tmp_path / "a", [g], [placed, delivered])
    placed_last = simulate(tmp_path / "b", [g], [delivered, placed])
    # Actual: placed_last has ('c1', 'g', '-', '2026-04-01T14:00:00Z', 'converted',
    # 'order.placed'); placed_first has no conversion.
    assert placed_first == placed_last
    # Expected: not "after" the enrollment, like an exit at the same instant.
    assert not [r for r in placed_last if r[4] == "converted"]


def test_expiry_reason_shows_a_lateness_over_the_limit(tmp_path: Path) -> None:
    short = bday("short")
    short["steps"][0]["expire_after"] = "PT15M"
    longer = bday("longer")
    longer["steps"][0]["expire_after"] = "PT90M"
    rows = simulate(tmp_path, [short, longer], [
        # The birthday (10:00 EDT = 14:00Z) learnt at 10:30 EDT and at 11:50 EDT.
        ev("e1", "customer.updated", "2026-05-20T14:30:00Z", "c1", birthday="1990-05-20"),
        ev("e2", "customer.updated", "2026-05-20T15:50:00Z", "c2", birthday="1990-05-20"),
    ], "--to", "2026-06-01")
    expired = {(r[0], r[1]): r[5] for r in rows if r[4] == "expired"}
    # Actual: {('c1', 'short'): '0h late, expire_after 0h',
    #          ('c2', 'short'): '2h late, expire_after 0h',
    #          ('c2', 'longer'): '2h late, expire_after 2h'}; c1/longer is sent (30 min).
    assert set(expired) == {("c1", "short"), ("c2", "short"), ("c2", "longer")}
    for reason in expired.values():
        late, limit = reason.split(" late, expire_after ")
        assert late != limit, reason
        assert not limit.startswith("0"), reason


def test_birthday_changed_and_changed_back_is_greeted(tmp_path: Path) -> None:
    rows = simulate(tmp_path, [bday("bday")], [
        ev("e1", "customer.updated", "2026-04-01T14:00:00Z", "c1", birthday="1990-05-20"),
        ev("e2", "customer.updated", "2026-04-10T14:00:00Z", "c1", birthday="1990-05-21"),
        ev("e3", "customer.updated", "2026-04-20T14:00:00Z", "c1", birthday="1990-05-20"),
    ], "--to", "2026-06-01")
    assert ("c1", "bday", "-", "2026-04-20T14:00:00Z", "planned",
            "birthday:1990-05-20:2026") in rows
    # Actual: ('c1', 'bday', 'greeting', '2026-05-20T14:00:00Z', 'cancelled',
    # 'date changed') (from e2) and 21 May cancelled (from e3); nothing sent.
    # Expected: 10:00 EDT on 20 May, the birthday the profile holds on that day.
    assert sent(rows, "c1") == [("c1", "bday", "greeting", "2026-05-20T14:00:00Z", "sent", "")]


def test_eighteenth_birthday_is_greeted_east_of_utc(tmp_path: Path) -> None:
    c = bday("adult", audience={">=": [{"years_since": [{"var": "customer.birthday"}]}, 18]})
    rows = simulate(tmp_path, [c], [
        ev("e1", "customer.updated", "2026-03-01T14:00:00Z", "tokyo", tz="Asia/Tokyo",
           birthday="2008-06-10"),
        ev("e2", "customer.updated", "2026-03-01T14:00:00Z", "berlin", tz="Europe/Berlin",
           birthday="2008-06-10"),
    ], "--to", "2026-07-01")
    # 00:00 JST on 10 June is 15:00Z on 9 June (years_since then: 17); 00:00 CEST is
    # 22:00Z on 9 June. Expected: 10:00 JST = 01:00Z and 10:00 CEST = 08:00Z on 10 June.
    assert sent(rows, "tokyo") == [
        ("tokyo", "adult", "greeting", "2026-06-10T01:00:00Z", "sent", "")]
    assert sent(rows, "berlin") == [
        ("berlin", "adult", "greeting", "2026-06-10T08:00:00Z", "sent", "")]


def test_idle_audience_reads_120_on_the_idle_day_across_spring_dst(tmp_path: Path) -> None:
    wb = campaign("wb", {"idle": "P120D"},
                  [{"id": "miss-you", "at": "10:30", "channel": "email",
                    "template": "win_back"}],
                  audience={">=": [{"days_since": [{"var": "customer.last_order_at"}]}, 120]})
    rows = simulate(tmp_path, [wb], [
        # 09:00 EST on Mon 5 Jan; idle from 09:00 EDT on Tue 5 May (13:00Z).
        ev("e1", "order.placed", "2026-01-05T14:00:00Z", "ny", order="o1"),
    ])
    # Actual: no row at all. Expected: 10:30 EDT on 5 May = 14:30Z.
    assert sent(rows, "ny") == [("ny", "wb", "miss-you", "2026-05-05T14:30:00Z", "sent", "")]


def test_date_audience_reads_the_profile_on_the_birthday(tmp_path: Path) -> None:
    gold = {"==": [{"var": "customer.attributes.tier"}, "gold"]}
    rows = simulate(tmp_path, [bday("bd", audience=gold)], [
        ev("e1", "customer.updated", "2026-04-01T14:00:00Z", "down", birthday="1990-05-20",
           attributes={"tier": "gold"}),
        ev("e2", "customer.updated", "2026-04-15T14:00:00Z", "down",
           attributes={"tier": "silver"}),
    ], "--to", "2026-06-01")
    # Actual: ('down', 'bd', 'greeting', '2026-05-20T14:00:00Z', 'sent', '').
    assert sent(rows, "down") == []


def test_idle_audience_reads_the_profile_on_the_idle_day(tmp_path: Path) -> None:
    gold = {"==": [{"var": "customer.attributes.tier"}, "gold"]}
    wb = campaign("wb", {"idle": "P30D"},
                  [{"id": "miss-you", "at": "10:30", "channel": "email",
                    "template": "win_back"}], audience=gold)
    rows = simulate(tmp_path, [wb], [
        # Both order at 10:00 EDT on 1 Apr: idle from 10:00 EDT on 1 May.
        ev("a1", "order.placed", "2026-04-01T14:00:00Z", "up", order="o1",
           attributes={"tier": "silver"}),
        ev("a2", "customer.updated", "2026-04-15T14:00:00Z", "up", attributes={"tier": "gold"}),
        ev("b1", "order.placed", "2026-04-01T14:00:00Z", "down", order="o1",
           attributes={"tier": "gold"}),
        ev("b2", "customer.updated", "2026-04-15T14:00:00Z", "down",
           attributes={"tier": "silver"}),
    ], "--to", "2026-06-01")
    # Actual: nothing for "up"; ('down', 'wb', 'miss-you', '2026-05-01T14:30:00Z', 'sent').
    # Expected: "up" (gold on 1 May) gets it at 10:30 EDT = 14:30Z; "down" does not.
    assert sent(rows, "up") == [("up", "wb", "miss-you", "2026-05-01T14:30:00Z", "sent", "")]
    assert sent(rows, "down") == []


def test_weekday_move_into_quiet_hours_does_not_skip_the_allowed_day(tmp_path: Path) -> None:
    c = campaign("mon", {"event": "order.delivered"},
                 [email("a", after="PT90M", weekdays=["mon"])])
    rows = simulate(tmp_path, [c], [
        # Sat 4 Apr 20:30 EDT + 90 min = Sat 22:00 EDT (quiet, not a Monday).
        ev("e1", "order.delivered", "2026-04-05T00:30:00Z", "c1", order="o1"),
    ])
    (row,) = steps_of(rows, "c1")
    # Actual: ('c1', 'mon', 'a', '2026-04-13T12:00:00Z', 'sent', ''), Mon 13 Apr 08:00.
    assert row[4] == "sent"
    when = local(row[3])
    assert when.startswith("Mon 2026-04-06"), when
    assert "08:00" <= when[-5:] < "21:00", when


def test_quiet_hours_deferral_is_not_lateness(tmp_path: Path) -> None:
    c = campaign("ck", {"event": "order.delivered"},
                 [email(after="P1D", at="10:00", expire_after="PT6H")])
    rows = simulate(tmp_path, [c], [
        ev("e1", "order.delivered", "2026-04-01T14:00:00Z", "c1", order="o1"),
        ev("e2", "customer.updated", "2026-04-01T20:00:00Z", "c1", tz="Asia/Tokyo"),
    ])
    # Actual: ('c1', 'ck', 'mail', '2026-04-02T23:00:00Z', 'expired',
    # '9h late, expire_after 6h'). Expected: sent (at 08:00 JST on 3 Apr = 23:00Z as
    # without expire_after, or at 10:00 JST should the plan follow the move).
    (row,) = steps_of(rows, "c1")
    assert row[4] == "sent", row


def test_an_idle_spell_has_an_enrollment_row(tmp_path: Path) -> None:
    wb = campaign("wb", {"idle": "P30D"},
                  [{"id": "miss-you", "at": "10:30", "channel": "email",
                    "template": "win_back"}], goal={"event": "order.placed", "within": "P30D"})
    rows = simulate(tmp_path, [wb], [
        ev("e1", "order.placed", "2026-04-01T14:00:00Z", "c1", order="o1"),
    ], "--to", "2026-06-01")
    assert sent(rows, "c1") == [("c1", "wb", "miss-you", "2026-05-01T14:30:00Z", "sent", "")]
    # Actual: marks_of(...) == []. Expected: a row at the order's time.
    assert [r[3] for r in marks_of(rows, "c1")] == ["2026-04-01T14:00:00Z"]


def test_date_and_idle_audience_false_leave_a_skipped_row(tmp_path: Path) -> None:
    gold = {"==": [{"var": "customer.attributes.tier"}, "gold"]}
    wb = campaign("wb", {"idle": "P30D"},
                  [{"id": "miss-you", "at": "10:30", "channel": "email",
                    "template": "win_back"}], audience=gold)
    rows = simulate(tmp_path, [wb, bday("bd", audience=gold)], [
        ev("e1", "order.placed", "2026-04-01T14:00:00Z", "silver", order="o1",
           birthday="1990-05-20", attributes={"tier": "silver"}),
    ], "--to", "2026-06-01")
    # Actual: rows == [] (no row of any kind for either campaign).
    assert {(r[1], r[4]) for r in marks_of(rows, "silver")} == {
        ("wb", "skipped"), ("bd", "skipped")}


# ================================================= behaviour that matches the docs

def test_at_weekdays_and_quiet_hours_in_fractional_and_far_zones(tmp_path: Path) -> None:
    c = campaign("k", {"event": "order.delivered"}, [
        email("monday", after="P1D", at="10:00", weekdays=["mon"]),
        email("soon", after="PT30M"),
        email("evening", at="20:45"),
    ])
    cases = {  # customer: (zone, event time)
        "kolkata": ("Asia/Kolkata", "2026-04-03T15:00:00Z"),      # Fri 20:30 IST
        "kolkata-late": ("Asia/Kolkata", "2026-04-03T15:31:00Z"),  # Fri 21:01 IST
        "kathmandu": ("Asia/Kathmandu", "2026-04-03T15:00:00Z"),  # Fri 20:45 +0545
        "chatham": ("Pacific/Chatham", "2026-04-03T07:00:00Z"),   # Fri 20:45 +1345
        "lord-howe": ("Australia/Lord_Howe", "2026-04-04T09:00:00Z"),  # Sat 20:00 +11
        "santiago": ("America/Santiago", "2026-04-04T23:00:00Z"),  # Sat 20:00 -03
        "havana": ("America/Havana", "2026-03-07T23:00:00Z"),     # Sat 18:00 CST
        "kiritimati": ("Pacific/Kiritimati", "2026-04-05T06:00:00Z"),  # Sun 20:00 +14
    }
    rows = simulate(tmp_path, [c], [
        ev(f"e-{cid}", "order.delivered", at, cid, tz=tz, order="o1")
        for cid, (tz, at) in cases.items()])

    def got(cid: str) -> dict[str, str]:
        return {r[2]: r[3] for r in steps_of(rows, cid) if r[4] == "sent"}

    # "soon" is 30 min later: quiet from 21:00, so 08:00 local the next morning.
    # "evening" is 20:45 that day, or the next day once passed (21:01 in Kolkata).
    # "monday": P1D, then 10:00 (the next day when passed), then the next Monday,
    # 10:00 in the offset of that Monday (Chatham, Lord Howe and Santiago have left DST).
    assert got("kolkata") == {"soon": "2026-04-04T02:30:00Z",       # Sat 08:00 IST
                              "evening": "2026-04-03T15:15:00Z",    # Fri 20:45 IST
                              "monday": "2026-04-06T04:30:00Z"}     # Mon 10:00 IST
    assert got("kolkata-late") == {"soon": "2026-04-04T02:30:00Z",
                                   "evening": "2026-04-04T15:15:00Z",  # Sat 20:45 IST
                                   "monday": "2026-04-06T04:30:00Z"}
    assert got("kathmandu") == {"soon": "2026-04-04T02:15:00Z",     # Sat 08:00 +0545
                                "evening": "2026-04-03T15:00:00Z",
                                "monday": "2026-04-06T04:15:00Z"}
    assert got("chatham") == {"soon": "2026-04-03T18:15:00Z",       # Sat 08:00 +1345
                              "evening": "2026-04-03T07:00:00Z",
                              "monday": "2026-04-05T21:15:00Z"}     # Mon 10:00 +1245
    assert got("lord-howe") == {"soon": "2026-04-04T09:30:00Z",     # Sat 20:30 +11
                                "evening": "2026-04-04T09:45:00Z",
                                "monday": "2026-04-05T23:30:00Z"}   # Mon 10:00 +1030
    assert got("santiago") == {"soon": "2026-04-04T23:30:00Z",
                               "evening": "2026-04-04T23:45:00Z",
                               "monday": "2026-04-06T14:00:00Z"}    # Mon 10:00 -04
    assert got("havana") == {"soon": "2026-03-07T23:30:00Z",
                             "evening": "2026-03-08T01:45:00Z",     # Sat 20:45 CST
                             "monday": "2026-03-09T14:00:00Z"}      # Mon 10:00 CDT
    # Sun 20:00 + P1D = Mon 20:00, past 10:00: Tue 10:00, so the next Monday (13 Apr).
    assert got("kiritimati") == {"soon": "2026-04-05T06:30:00Z",
                                 "evening": "2026-04-05T06:45:00Z",
                                 "monday": "2026-04-12T20:00:00Z"}  # Mon 13 Apr 10:00


def test_birthdays_on_days_whose_midnight_moves(tmp_path: Path) -> None:
    c = campaign("b", {"date": "customer.birthday"},
                 [email("ten", at="10:00"), email("now"), email("next", after="P1D", at="09:00")])
    cases = {  # customer: (zone, birthday)
        "santiago-sep": ("America/Santiago", "1990-09-06"),  # 00:00 does not exist
        "santiago-apr4": ("America/Santiago", "1990-04-04"),  # 23:00-24:00 twice
        "santiago-apr5": ("America/Santiago", "1990-04-05"),
        "havana": ("America/Havana", "1990-03-08"),  # 00:00 does not exist
    }
    rows = simulate(tmp_path, [c], [
        ev(f"e-{cid}", "customer.updated", "2026-02-01T12:00:00Z", cid, tz=tz, birthday=bd)
        for cid, (tz, bd) in cases.items()], "--to", "2026-12-01")

    def got(cid: str) -> list[tuple[str, str]]:
        return [(r[2], local(r[3], ZoneInfo(cases[cid][0]))) for r in sent(rows, cid)]

    # "now" is due at the occurrence's start (local midnight, or 01:00 where midnight
    # is skipped): quiet, so 08:00 local; "ten" at 10:00; "next" at 09:00 the day after.
    assert got("santiago-sep") == [("now", "Sun 2026-09-06 08:00"),
                                   ("ten", "Sun 2026-09-06 10:00"),
                                   ("next", "Mon 2026-09-07 09:00")]
    assert got("santiago-apr4") == [("now", "Sat 2026-04-04 08:00"),
                                    ("ten", "Sat 2026-04-04 10:00"),
                                    ("next", "Sun 2026-04-05 09:00")]
    assert got("santiago-apr5") == [("now", "Sun 2026-04-05 08:00"),
                                    ("ten", "Sun 2026-04-05 10:00"),
                                    ("next", "Mon 2026-04-06 09:00")]
    assert got("havana") == [("now", "Sun 2026-03-08 08:00"),
                             ("ten", "Sun 2026-03-08 10:00"),
                             ("next", "Mon 2026-03-09 09:00")]
    assert [r[3] for r in sent(rows, "santiago-sep")] == [
        "2026-09-06T11:00:00Z", "2026-09-06T13:00:00Z", "2026-09-07T12:00:00Z"]


def test_leap_day_purchase_anniversaries_by_local_date(tmp_path: Path) -> None:
    def anniversary(cid: str, leap_day: str | None = None) -> dict[str, Any]:
        trigger: dict[str, Any] = {"date": "customer.first_order_at"}
        if leap_day:
            trigger["leap_day"] = leap_day
        return campaign(cid, trigger, [email("thanks", at="10:00")])

    rows = simulate(tmp_path, [anniversary("feb28"), anniversary("mar1", "mar1")], [
        # 12:00Z on 28 Feb 2024 is 02:00 on 29 Feb in Kiritimati: a leap-day purchase.
        ev("e1", "order.placed", "2024-02-28T12:00:00Z", "kiri", tz="Pacific/Kiritimati",
           order="o1"),
        ev("e2", "order.placed", "2024-02-29T12:00:00Z", "utc", tz=UTC_ZONE, order="o1"),
        # 22:00 EST on 29 Feb is 03:00Z on 1 Mar.
        ev("e3", "order.placed", "2024-03-01T03:00:00Z", "ny", order="o1"),
    ], "--to", "2028-03-15")

    def days(cid: str, camp: str, tz: ZoneInfo) -> list[str]:
        return [local(r[3], tz)[4:] for r in sent(rows, cid, camp)]

    for cid, tz in (("kiri", ZoneInfo("Pacific/Kiritimati")), ("utc", ZoneInfo(UTC_ZONE)),
                    ("ny", NY)):
        # Not the purchase's own day; 28 Feb (or 1 Mar) in common years; 29 Feb in 2028.
        assert days(cid, "feb28", tz) == ["2025-02-28 10:00", "2026-02-28 10:00",
                                          "2027-02-28 10:00", "2028-02-29 10:00"], cid
        assert days(cid, "mar1", tz) == ["2025-03-01 10:00", "2026-03-01 10:00",
                                         "2027-03-01 10:00", "2028-02-29 10:00"], cid
    assert next(r[3] for r in sent(rows, "kiri", "feb28")) == "2025-02-27T20:00:00Z"


def test_idle_exits_by_order_event_and_by_other_event_count_from_the_idle_day(
        tmp_path: Path) -> None:
    wb = campaign("wb", {"idle": "P10D"},
                  [email("m1", at="10:30"), email("m2", after="P5D", at="10:30")],
                  exit={"events": ["order.returned", "customer.complained"]})
    rows = simulate(tmp_path, [wb], [
        # Idle from 14:00 UTC on 11 Apr: m1 at 10:30 has passed that day, so 12 Apr.
        ev("a1", "order.placed", "2026-04-01T14:00:00Z", "before", tz=UTC_ZONE, order="o1"),
        ev("a2", "order.returned", "2026-04-05T14:00:00Z", "before", tz=UTC_ZONE, order="o1"),
        ev("b1", "order.placed", "2026-04-01T14:00:00Z", "after", tz=UTC_ZONE, order="o1"),
        ev("b2", "order.returned", "2026-04-12T14:00:00Z", "after", tz=UTC_ZONE, order="o1"),
        ev("c1", "order.placed", "2026-04-01T14:00:00Z", "other", tz=UTC_ZONE, order="o1"),
        ev("c2", "customer.complained", "2026-04-12T14:00:00Z", "other", tz=UTC_ZONE),
    ], "--to", "2026-06-01")
    # An idle enrollment was not made for an order: any return after it exits it.
    assert [r[2:5] for r in steps_of(rows, "before")] == [
        ("m1", "2026-04-12T10:30:00Z", "sent"), ("m2", "2026-04-17T10:30:00Z", "sent")]
    for cid, reason in (("after", "order.returned"), ("other", "customer.complained")):
        assert steps_of(rows, cid) == [
            (cid, "wb", "m1", "2026-04-12T10:30:00Z", "sent", ""),
            (cid, "wb", "m2", "2026-04-17T10:30:00Z", "exited", reason)]
        assert [r for r in marks_of(rows, cid) if r[4] == "exited"] == [
            (cid, "wb", "-", "2026-04-12T14:00:00Z", "exited", reason)]


def test_three_weighted_variants_with_holdout_zero_and_fifty(tmp_path: Path) -> None:
    steps = [{"id": "offer", "after": "P1D", "at": "10:00", "channel": "email",
              "template": "loyalty_offer"},
             {"id": "tip", "after": "P2D", "at": "10:00", "channel": "email",
              "template": "loyalty_offer"}]
    variants = [{"id": "a", "weight": 1},
                {"id": "b", "weight": 1, "templates": {"offer": "loyalty_offer_shipping"}},
                {"id": "c", "weight": 2, "templates": {"offer": "care_tip", "tip": "care_tip"}}]
    none_held = campaign("v0", {"event": "order.placed"}, steps, variants=variants)
    half_held = campaign("v50", {"event": "order.placed"}, steps, variants=variants,
                         holdout_percent=50)
    n = 800
    events = [ev(f"e{i}", "order.placed", "2026-04-01T14:00:00Z", f"c-{i}", order="o1")
              for i in range(n)]
    rows = simulate_dicts(tmp_path, [none_held, half_held], events)
    weights = (("a", 1), ("b", 1), ("c", 2))
    expected_templates = {"a": ("loyalty_offer", "loyalty_offer"),
                          "b": ("loyalty_offer_shipping", "loyalty_offer"),
                          "c": ("care_tip", "care_tip")}
    arms: Counter[str] = Counter()
    held = 0
    for i in range(n):
        cid = f"c-{i}"
        mine = [r for r in rows if r["customer"] == cid and r["step"] != "-"]
        v0 = [(r["step"], r["outcome"], r["template"]) for r in mine if r["campaign"] == "v0"]
        arm = keys.pick_variant("v0", cid, weights)
        assert arm is not None
        arms[arm] += 1
        offer, tip = expected_templates[arm]
        # Holdout 0: everyone is treated, with their variant's templates.
        assert v0 == [("offer", "sent", offer), ("tip", "sent", tip)], cid
        v50 = {(r["outcome"], r["reason"]) for r in mine if r["campaign"] == "v50"}
        assert len(v50) == 1, (cid, v50)  # both steps in the same arm
        if v50 == {("held_out", "holdout group")}:
            held += 1
            assert keys.in_holdout("v50", cid, 50)
    # 1:1:2 (sd ~1.5% each) and 50% held out (sd ~1.8%).
    assert 0.20 < arms["a"] / n < 0.30 and 0.20 < arms["b"] / n < 0.30, arms
    assert 0.44 < arms["c"] / n < 0.56, arms
    assert 0.44 < held / n < 0.56, held


def test_holdout_over_fifty_percent_is_refused(tmp_path: Path) -> None:
    c = campaign("ho", {"event": "order.delivered"}, [email(after="P1D", at="10:00")],
                 holdout_percent=100)
    cdir, log = write_case(tmp_path, [c], [
        ev("e1", "order.delivered", "2026-04-01T14:00:00Z", "c1", order="o1")])
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["simulate", "--events", str(log), "--campaigns", str(cdir),
                     "--templates", str(TEMPLATES), "--format", "json", "--workers", "1"])
    assert code == 1 and out.getvalue() == ""
    assert "ho.json: $.holdout_percent:" in err.getvalue()


def test_json_csv_and_table_print_the_same_rows(tmp_path: Path) -> None:
    c = campaign("ck", {"event": "order.delivered"},
                 [email(after="P1D", at="10:00"),
                  {"id": "s", "after": "P2D", "at": "10:00", "channel": "sms",
                   "template": "checkin"}],
                 exit={"event": "order.returned"})
    ids = ["a,b", 'q"uote', "ünï", "Z", "-lead"]
    events = [ev(f"e{i}", "order.delivered", "2026-04-01T14:00:00Z", cid, order="o1")
              for i, cid in enumerate(ids)]
    events.append(ev("r", "order.returned", "2026-04-02T16:00:00Z", "Z", order="o1"))
    cdir, log = write_case(tmp_path, [c], events)
    as_json = [tuple(json.loads(line).values()) for line in run_cli(cdir, log).splitlines()]
    as_csv = [tuple(r) for r in csv.reader(io.StringIO(run_cli(cdir, log, fmt="csv")))]
    assert as_csv[0] == ("customer", "campaign", "step", "at", "outcome", "reason",
                         "channel", "template")
    # CSV writes a cell a spreadsheet would run as a formula ("-lead") after a "'"
    # (docs/campaigns.md); a lone "-" (the step of enrollment rows) as it is.
    assert as_csv[1:] == [tuple("'" + v if v[:1] in ("=", "+", "-", "@") and v != "-" else v
                                for v in row) for row in as_json]
    assert ("'-lead", "ck", "-") in {r[:3] for r in as_csv}
    assert len(as_json) == 5 * 3 + 1
    table = run_cli(cdir, log, fmt="table").splitlines()
    body = table[1:len(as_json) + 1]
    assert [line.split()[:5] for line in body] == [list(r[:5]) for r in as_json]
    assert table[-1].startswith("6 events (0 duplicates, 0 bad); enrolled=5, exited=2, sent=9")


def test_idle_spell_rearms_on_each_new_order_only(tmp_path: Path) -> None:
    wb = campaign("wb", {"idle": "P30D"},
                  [{"id": "miss-you", "at": "10:30", "channel": "email",
                    "template": "win_back"}], goal={"event": "order.placed", "within": "P30D"})
    rows = simulate(tmp_path, [wb], [
        ev("a1", "order.placed", "2026-01-05T09:00:00Z", "c1", tz=UTC_ZONE, order="o1"),
        # The delivery and the return of o1 are not new orders: the spell stays.
        ev("a2", "order.delivered", "2026-01-09T09:00:00Z", "c1", tz=UTC_ZONE, order="o1"),
        ev("a3", "order.returned", "2026-01-20T09:00:00Z", "c1", tz=UTC_ZONE, order="o1"),
        # After the win-back: converts it, and a new spell (idle from 12 Mar).
        ev("a4", "order.placed", "2026-02-10T09:00:00Z", "c1", tz=UTC_ZONE, order="o2"),
        # Before that spell's day: re-planned from 20 Feb (idle from 22 Mar).
        ev("a5", "order.placed", "2026-02-20T09:00:00Z", "c1", tz=UTC_ZONE, order="o3"),
        # The delivery of an order never seen placed is a new order too (events.md).
        ev("a6", "order.delivered", "2026-03-01T09:00:00Z", "c1", tz=UTC_ZONE, order="o4"),
    ], "--to", "2026-06-01")
    # (Enrollment rows other than the conversion are left out: see
    # test_an_idle_spell_has_an_enrollment_row.)
    assert [r for r in rows if r[2] != "-" or r[4] == "converted"] == [
        ("c1", "wb", "miss-you", "2026-02-04T10:30:00Z", "sent", ""),
        ("c1", "wb", "-", "2026-02-10T09:00:00Z", "converted", "order.placed"),
        ("c1", "wb", "miss-you", "2026-03-12T10:30:00Z", "cancelled", "ordered again"),
        ("c1", "wb", "miss-you", "2026-03-22T10:30:00Z", "cancelled", "ordered again"),
        ("c1", "wb", "miss-you", "2026-03-31T10:30:00Z", "sent", "")]
