"""Audit of `aftercare simulate`'s decision semantics against docs/campaigns.md.

Every case builds a small campaign folder and event log, runs the real CLI
(`aftercare simulate --format json`, in-process through ``main``, and once as the
installed console script) and compares the step rows with timelines computed by
hand from the docs (campaigns.md, rules.md, events.md, DESIGN.md). Cases where
the code contradicted the docs were found this way and fixed; each stays as a
regression test.

Local times used below (checked against the tz database, not against the code):
New York DST 2026-03-08 (EST->EDT) and 2026-11-01 (EDT->EST); Berlin 2026-03-29 and
2026-10-25; Sydney 2026-04-05 (AEDT->AEST) and 2026-10-04 (AEST->AEDT);
Pacific/Kiritimati is UTC+14, Pacific/Pago_Pago UTC-11, both without DST.
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from chalicelib.cli.main import main
from chalicelib.journeys import keys
from tests.conftest import ROOT

TEMPLATES = ROOT / "templates"
PHONE = "+14155550123"
NY = "America/New_York"
UTC_ZONE = "Etc/UTC"

RowT = tuple[str, str, str, str, str, str]  # customer, campaign, step, at, outcome, reason


# --------------------------------------------------------------------------- helpers

def campaign(cid: str, trigger: dict[str, Any], steps: list[dict[str, Any]],
             **extra: Any) -> dict[str, Any]:
    return {"id": cid, "name": cid, "trigger": trigger, "steps": steps, **extra}


def sms(step_id: str = "checkin", **kw: Any) -> dict[str, Any]:
    return {"id": step_id, "channel": "sms", "template": "checkin", "survey": "csat", **kw}


def email(step_id: str = "mail", **kw: Any) -> dict[str, Any]:
    return {"id": step_id, "channel": "email", "template": "win_back", **kw}


def ev(eid: str, etype: str, at: str, cid: str, *, tz: str | None = NY,
       order: str | None = None, data: dict[str, Any] | None = None,
       **customer: Any) -> dict[str, Any]:
    """An envelope; ``customer`` overrides the defaults (a value of None drops the key)."""
    cust: dict[str, Any] = {"id": cid, "email": f"{cid}@example.com", "phone": PHONE,
                            "consent": {"sms": True, "email": True}}
    if tz is not None:
        cust["timezone"] = tz
    for k, v in customer.items():
        if v is None:
            cust.pop(k, None)
        else:
            cust[k] = v
    raw: dict[str, Any] = {"id": eid, "type": etype, "occurred_at": at, "customer": cust}
    if order is not None:
        raw["order"] = {"id": order, "total": 80.0,
                        "items": [{"sku": "KX-200", "name": "Kettle", "category": "appliance",
                                   "quantity": 1, "price": 80.0}]}
    if data is not None:
        raw["data"] = data
    return raw


def write_case(tmp: Path, campaigns: list[dict[str, Any]],
               events: Sequence[dict[str, Any] | str]) -> tuple[Path, Path]:
    cdir = tmp / "campaigns"
    cdir.mkdir(exist_ok=True)
    for c in campaigns:
        (cdir / f"{c['id']}.json").write_text(json.dumps(c))
    log = tmp / "events.jsonl"
    log.write_text("".join((e if isinstance(e, str) else json.dumps(e)) + "\n"
                           for e in events))
    return cdir, log


def run_cli(cdir: Path, log: Path, *extra: str, fmt: str = "json",
            workers: str = "1") -> str:
    """`aftercare simulate` in-process; its standard output."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["simulate", "--events", str(log), "--campaigns", str(cdir),
                     "--templates", str(TEMPLATES), "--format", fmt, "--workers", workers,
                     *extra])
    assert code == 0, err.getvalue()
    return out.getvalue()


def simulate_dicts(tmp: Path, campaigns: list[dict[str, Any]],
                   events: Sequence[dict[str, Any] | str], *extra: str) -> list[dict[str, str]]:
    """Every row with all eight columns."""
    cdir, log = write_case(tmp, campaigns, events)
    return [json.loads(line) for line in run_cli(cdir, log, *extra).splitlines()]


def simulate(tmp: Path, campaigns: list[dict[str, Any]], events: Sequence[dict[str, Any] | str],
             *extra: str) -> list[RowT]:
    """`aftercare simulate --format json` in-process; every row as a 6-tuple."""
    return [(r["customer"], r["campaign"], r["step"], r["at"], r["outcome"], r["reason"])
            for r in simulate_dicts(tmp, campaigns, events, *extra)]


def steps_of(rows: list[RowT], customer: str, camp: str | None = None) -> list[RowT]:
    """The step decisions (not enrollment rows) of one customer, in output order."""
    return [r for r in rows if r[0] == customer and r[2] != "-"
            and (camp is None or r[1] == camp)]


def marks_of(rows: list[RowT], customer: str, camp: str | None = None) -> list[RowT]:
    """The enrollment-level rows (step "-") of one customer."""
    return [r for r in rows if r[0] == customer and r[2] == "-"
            and (camp is None or r[1] == camp)]


def shipped(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((ROOT / "campaigns" / f"{name}.json").read_text())
    data.pop("$schema", None)
    return data


# ------------------------------------------------------------------- local time and DST

def test_ten_local_lands_on_both_dst_days_in_three_hemispheres(tmp_path: Path) -> None:
    # docs: "P2D at 10:00 is 10:00 two days later across a DST change".
    c = campaign("dst", {"event": "order.delivered"}, [sms(after="P2D", at="10:00")])
    events = [
        ev("e1", "order.delivered", "2026-03-06T15:00:00Z", "ny-spring", order="o1"),
        ev("e2", "order.delivered", "2026-10-30T14:00:00Z", "ny-fall", order="o2"),
        ev("e3", "order.delivered", "2026-03-27T09:00:00Z", "be-spring", tz="Europe/Berlin",
           order="o3"),
        ev("e4", "order.delivered", "2026-10-23T08:00:00Z", "be-fall", tz="Europe/Berlin",
           order="o4"),
        # Sydney: DST ends 2026-04-05, starts 2026-10-04.
        ev("e5", "order.delivered", "2026-04-02T23:00:00Z", "syd-april",
           tz="Australia/Sydney", order="o5"),
        ev("e6", "order.delivered", "2026-10-02T00:00:00Z", "syd-october",
           tz="Australia/Sydney", order="o6"),
        # One day of delay onto the change day itself (enrolled 10:00 EST Saturday).
        ev("e7", "order.delivered", "2026-03-07T15:00:00Z", "ny-p1d", order="o7"),
    ]
    c1 = campaign("dst1", {"event": "order.shipped"}, [sms(after="P1D", at="10:00")])
    events.append(ev("e8", "order.shipped", "2026-03-07T15:00:00Z", "ny-p1d", order="o7"))
    rows = simulate(tmp_path, [c, c1], events)
    expected = {
        "ny-spring": "2026-03-08T14:00:00Z",   # 10:00 EDT
        "ny-fall": "2026-11-01T15:00:00Z",     # 10:00 EST
        "be-spring": "2026-03-29T08:00:00Z",   # 10:00 CEST
        "be-fall": "2026-10-25T09:00:00Z",     # 10:00 CET
        "syd-april": "2026-04-05T00:00:00Z",   # 10:00 AEST
        "syd-october": "2026-10-03T23:00:00Z",  # 10:00 AEDT
    }
    for customer, at in expected.items():
        assert steps_of(rows, customer) == [(customer, "dst", "checkin", at, "sent", "")]
    assert steps_of(rows, "ny-p1d", "dst1") == [
        ("ny-p1d", "dst1", "checkin", "2026-03-08T14:00:00Z", "sent", "")]


def test_hours_of_delay_are_elapsed_time_across_dst(tmp_path: Path) -> None:
    c = campaign("hours", {"event": "order.delivered"}, [email(after="PT20H")])
    rows = simulate(tmp_path, [c], [
        # 15:00 EST Sat 7 Mar + 20 h elapsed = 16:00Z Sun 8 Mar (12:00 EDT).
        ev("e1", "order.delivered", "2026-03-07T20:00:00Z", "spring", order="o1"),
        # 15:00 EDT Sat 31 Oct + 20 h elapsed = 15:00Z Sun 1 Nov (10:00 EST).
        ev("e2", "order.delivered", "2026-10-31T19:00:00Z", "fall", order="o2"),
    ])
    assert steps_of(rows, "spring") == [
        ("spring", "hours", "mail", "2026-03-08T16:00:00Z", "sent", "")]
    assert steps_of(rows, "fall") == [
        ("fall", "hours", "mail", "2026-11-01T15:00:00Z", "sent", "")]


def test_at_inside_the_spring_forward_gap(tmp_path: Path) -> None:
    # 02:30 does not exist on 2026-03-08 in New York (nor on 2026-03-29 in Berlin);
    # it moves forward, is then in quiet hours, and waits until 08:00 that day.
    gap = campaign("gap", {"event": "order.delivered"}, [email(at="02:30")])
    gap1 = campaign("gap1", {"event": "order.shipped"}, [email(after="P1D", at="02:30")])
    rows = simulate(tmp_path, [gap, gap1], [
        ev("e1", "order.delivered", "2026-03-08T03:00:00Z", "ny", order="o1"),  # 22:00 EST
        ev("e2", "order.delivered", "2026-03-28T22:00:00Z", "be", tz="Europe/Berlin",
           order="o2"),  # 23:00 CET
        # P1D from 10:00 EST Sat is 10:00 EDT Sun, past 02:30: the next day (Mon 9).
        ev("e3", "order.shipped", "2026-03-07T15:00:00Z", "ny1", order="o3"),
    ])
    assert steps_of(rows, "ny") == [("ny", "gap", "mail", "2026-03-08T12:00:00Z", "sent", "")]
    assert steps_of(rows, "be") == [("be", "gap", "mail", "2026-03-29T06:00:00Z", "sent", "")]
    assert steps_of(rows, "ny1") == [
        ("ny1", "gap1", "mail", "2026-03-09T12:00:00Z", "sent", "")]


def test_whole_day_delay_from_a_wall_time_that_falls_in_the_gap(tmp_path: Path) -> None:
    c = campaign("gapday", {"event": "order.delivered"}, [email(after="P1D", at="03:00")])
    rows = simulate(tmp_path, [c], [
        ev("e1", "order.delivered", "2026-03-07T07:30:00Z", "c1", order="o1"),  # 02:30 EST
    ])
    # 03:00 EDT on 8 Mar is quiet: 08:00 EDT that day.
    assert steps_of(rows, "c1") == [("c1", "gapday", "mail", "2026-03-08T12:00:00Z", "sent", "")]


def test_a_deferred_send_is_reported_when_it_is_sent(tmp_path: Path) -> None:
    c = campaign("bday", {"date": "customer.birthday"},
                 [{"id": "greeting", "at": "10:00", "channel": "sms", "template": "birthday"}])
    rows = simulate(tmp_path, [c], [
        # The birthday is learnt at 22:30 EDT on the day, after its 10:00: decided at
        # once, in quiet hours, so held back to 08:00 EDT (12:00Z) and reported then.
        ev("e1", "customer.updated", "2026-04-02T02:30:00Z", "c1", birthday="1990-04-01"),
    ])
    assert steps_of(rows, "c1")[0] == (
        "c1", "bday", "greeting", "2026-04-02T12:00:00Z", "sent", "")


def test_a_timezone_move_plans_a_pending_event_step_again(tmp_path: Path) -> None:
    c = campaign("tzmove", {"event": "order.delivered"}, [sms(after="P2D", at="10:00")])
    rows = simulate(tmp_path, [c], [
        ev("e1", "order.delivered", "2026-04-01T14:00:00Z", "c1", order="o1"),
        # Moves to Tokyo before the step is due: enrolled at 23:00 JST on 1 April, two
        # days on is 3 April after 10:00, so 10:00 JST on 4 April (01:00Z), not held.
        ev("e2", "customer.updated", "2026-04-02T12:00:00Z", "c1", tz="Asia/Tokyo"),
    ])
    assert steps_of(rows, "c1") == [
        ("c1", "tzmove", "checkin", "2026-04-04T01:00:00Z", "sent", "")]


# ------------------------------------------------------------------------ quiet hours

def test_quiet_hours_move_to_eight_local(tmp_path: Path) -> None:
    c = campaign("now", {"event": "order.delivered"}, [email()])
    rows = simulate(tmp_path, [c], [
        ev("e1", "order.delivered", "2026-04-02T02:30:00Z", "late", order="o1"),  # 22:30 EDT
        ev("e2", "order.delivered", "2026-04-01T11:59:00Z", "early", order="o2"),  # 07:59
        ev("e3", "order.delivered", "2026-04-02T00:59:00Z", "edge", order="o3"),  # 20:59
        ev("e4", "order.delivered", "2026-04-02T01:00:00Z", "nine", order="o4"),  # 21:00
        # 01:30 EDT on the fall-back night: 08:00 is EST that morning.
        ev("e5", "order.delivered", "2026-11-01T05:30:00Z", "fallback", order="o5"),
    ])
    assert steps_of(rows, "late")[0][3:] == ("2026-04-02T12:00:00Z", "sent", "")
    assert steps_of(rows, "early")[0][3:] == ("2026-04-01T12:00:00Z", "sent", "")
    assert steps_of(rows, "edge")[0][3:] == ("2026-04-02T00:59:00Z", "sent", "")
    assert steps_of(rows, "nine")[0][3:] == ("2026-04-02T12:00:00Z", "sent", "")
    assert steps_of(rows, "fallback")[0][3:] == ("2026-11-01T13:00:00Z", "sent", "")


def test_far_zones_around_midnight_and_year_end(tmp_path: Path) -> None:
    now = campaign("now", {"event": "order.delivered"}, [email()])
    monday = campaign("monday", {"event": "order.shipped"},
                      [email(at="11:00", weekdays=["mon"])])
    bday = campaign("bday", {"date": "customer.birthday"},
                    [{"id": "greeting", "at": "10:00", "channel": "sms",
                      "template": "birthday"}])
    rows = simulate(tmp_path, [now, monday, bday], [
        # 23:00 LINT on 31 Dec -> 08:00 LINT on 1 Jan 2027 = 18:00Z on 31 Dec.
        ev("e1", "order.delivered", "2026-12-31T09:00:00Z", "kiri", tz="Pacific/Kiritimati",
           order="o1"),
        # 22:00 SST on 30 Dec -> 08:00 SST on 31 Dec = 19:00Z.
        ev("e2", "order.delivered", "2026-12-31T09:00:00Z", "pago", tz="Pacific/Pago_Pago",
           order="o2"),
        # 08:30 SST on 31 Dec: not quiet, sent at once.
        ev("e3", "order.delivered", "2026-12-31T19:30:00Z", "pago2", tz="Pacific/Pago_Pago",
           order="o3"),
        # Sunday 20:00Z is Monday 10:00 in Kiritimati: 11:00 LINT Monday = 21:00Z Sunday.
        ev("e4", "order.shipped", "2026-03-01T20:00:00Z", "kiri-mon", tz="Pacific/Kiritimati",
           order="o4"),
        # Birthday 1 Jan learnt at 02:00 LINT on 2 Jan 2026: this year's is over locally,
        # the next is 1 Jan 2027 10:00 LINT = 2026-12-31T20:00Z.
        ev("e5", "customer.updated", "2026-01-01T12:00:00Z", "kiri-bday",
           tz="Pacific/Kiritimati", birthday="1990-01-01"),
        # Same UTC instant is 01:00 SST on 1 Jan in Pago Pago: today counts, 10:00 SST.
        ev("e6", "customer.updated", "2026-01-01T12:00:00Z", "pago-bday",
           tz="Pacific/Pago_Pago", birthday="1990-01-01"),
    ], "--to", "2027-01-15")
    assert steps_of(rows, "kiri") == [("kiri", "now", "mail", "2026-12-31T18:00:00Z", "sent", "")]
    assert steps_of(rows, "pago") == [("pago", "now", "mail", "2026-12-31T19:00:00Z", "sent", "")]
    assert steps_of(rows, "pago2") == [
        ("pago2", "now", "mail", "2026-12-31T19:30:00Z", "sent", "")]
    assert steps_of(rows, "kiri-mon") == [
        ("kiri-mon", "monday", "mail", "2026-03-01T21:00:00Z", "sent", "")]
    assert steps_of(rows, "kiri-bday") == [
        ("kiri-bday", "bday", "greeting", "2026-12-31T20:00:00Z", "sent", "")]
    assert steps_of(rows, "pago-bday") == [
        ("pago-bday", "bday", "greeting", "2026-01-01T21:00:00Z", "sent", ""),
        ("pago-bday", "bday", "greeting", "2027-01-01T21:00:00Z", "sent", "")]


# --------------------------------------------------------------------------- weekdays

def test_weekdays_cross_a_week_and_a_dst_change(tmp_path: Path) -> None:
    nxt = campaign("mon-next", {"event": "order.delivered"},
                   [email(after="P1D", at="10:00", weekdays=["mon"])])
    same = campaign("mon-same", {"event": "order.placed"},
                    [email(at="10:00", weekdays=["mon"])])
    sun = campaign("sun-dst", {"event": "order.shipped"},
                   [email(at="10:00", weekdays=["sun"])])
    rows = simulate(tmp_path, [nxt, same, sun], [
        # Sat 14 Mar 11:00 EDT + P1D = Sun 10:00 -> Mon 16 Mar 10:00 EDT.
        ev("e1", "order.delivered", "2026-03-14T15:00:00Z", "a", order="o1"),
        # Mon 16 Mar 12:00 EDT: 10:00 passed -> Tue -> next Mon 23 Mar.
        ev("e2", "order.placed", "2026-03-16T16:00:00Z", "b", order="o2"),
        # Fri 6 Mar 12:00 EST -> Sat 10:00 -> Sun 8 Mar 10:00 EDT (the DST day).
        ev("e3", "order.shipped", "2026-03-06T17:00:00Z", "c", order="o3"),
    ])
    assert steps_of(rows, "a") == [("a", "mon-next", "mail", "2026-03-16T14:00:00Z", "sent", "")]
    assert steps_of(rows, "b") == [("b", "mon-same", "mail", "2026-03-23T14:00:00Z", "sent", "")]
    assert steps_of(rows, "c") == [("c", "sun-dst", "mail", "2026-03-08T14:00:00Z", "sent", "")]


# ------------------------------------------------------------------ yearly date triggers

def _bday(cid: str, leap_day: str | None = None, **extra: Any) -> dict[str, Any]:
    trigger: dict[str, Any] = {"date": "customer.birthday"}
    if leap_day:
        trigger["leap_day"] = leap_day
    return campaign(cid, trigger, [{"id": "greeting", "at": "10:00", "channel": "sms",
                                    "template": "birthday"}], **extra)


def test_29_february_birthday_under_each_leap_day_rule(tmp_path: Path) -> None:
    rows = simulate(tmp_path, [_bday("b-feb28", "feb28"), _bday("b-mar1", "mar1"),
                               _bday("b-default")], [
        ev("e1", "customer.updated", "2027-01-10T12:00:00Z", "leap", tz=UTC_ZONE,
           birthday="2000-02-29"),
        # docs: "a birthday in the current year counts".
        ev("e2", "customer.updated", "2027-01-10T12:00:00Z", "jan", tz=UTC_ZONE,
           birthday="1990-01-20"),
    ], "--to", "2028-03-15")
    assert steps_of(rows, "leap", "b-feb28") == [
        ("leap", "b-feb28", "greeting", "2027-02-28T10:00:00Z", "sent", ""),
        ("leap", "b-feb28", "greeting", "2028-02-29T10:00:00Z", "sent", "")]
    assert steps_of(rows, "leap", "b-default") == [
        ("leap", "b-default", "greeting", "2027-02-28T10:00:00Z", "sent", ""),
        ("leap", "b-default", "greeting", "2028-02-29T10:00:00Z", "sent", "")]
    assert steps_of(rows, "leap", "b-mar1") == [
        ("leap", "b-mar1", "greeting", "2027-03-01T10:00:00Z", "sent", ""),
        ("leap", "b-mar1", "greeting", "2028-02-29T10:00:00Z", "sent", "")]
    assert steps_of(rows, "jan", "b-feb28") == [
        ("jan", "b-feb28", "greeting", "2027-01-20T10:00:00Z", "sent", ""),
        ("jan", "b-feb28", "greeting", "2028-01-20T10:00:00Z", "sent", "")]


def test_birthday_known_before_its_send_time_is_sent(tmp_path: Path) -> None:
    rows = simulate(tmp_path, [shipped("birthday")], [
        # 08:00 EDT on the birthday: the 10:00 greeting is still ahead.
        ev("e1", "customer.updated", "2026-03-09T12:00:00Z", "c1", birthday="1990-03-09"),
    ], "--to", "2026-04-01")
    assert steps_of(rows, "c1") == [
        ("c1", "birthday", "greeting", "2026-03-09T14:00:00Z", "sent", "")]


def test_birthday_learnt_after_its_send_time_expires(tmp_path: Path) -> None:
    rows = simulate(tmp_path, [shipped("birthday")], [
        # 23:00 EDT on the birthday: 10:00 EDT (14:00Z) passed 13 h ago; expire PT12H.
        ev("e1", "customer.updated", "2026-03-10T03:00:00Z", "c1", birthday="1990-03-09"),
    ], "--to", "2026-04-01")
    # Decided when the event made it known (the row's time is the decision's).
    assert steps_of(rows, "c1") == [
        ("c1", "birthday", "greeting", "2026-03-10T03:00:00Z", "expired",
         "13h late, expire_after 12h")]


def test_purchase_is_not_its_own_anniversary(tmp_path: Path) -> None:
    ann = campaign("anniv", {"date": "customer.first_order_at"},
                   [{"id": "thanks", "at": "10:00", "channel": "email",
                     "template": "anniversary"}])
    rows = simulate(tmp_path, [ann], [
        # 11:00 EDT on 10 Mar 2026; the first anniversary is 10 Mar 2027 (still EST).
        ev("e1", "order.placed", "2026-03-10T15:00:00Z", "c1", order="o1"),
    ], "--to", "2027-04-01")
    assert steps_of(rows, "c1") == [
        ("c1", "anniv", "thanks", "2027-03-10T15:00:00Z", "sent", "")]


def test_purchase_anniversary_uses_the_local_purchase_date(tmp_path: Path) -> None:
    ann = campaign("anniv", {"date": "customer.first_order_at"},
                   [{"id": "thanks", "at": "10:00", "channel": "email",
                     "template": "anniversary"}])
    rows = simulate(tmp_path, [ann], [
        # 12:00Z on 30 Jun is 02:00 on 1 Jul in Kiritimati: anniversary 1 Jul 2027,
        # 10:00 LINT = 2027-06-30T20:00Z.
        ev("e1", "order.placed", "2026-06-30T12:00:00Z", "kiri", tz="Pacific/Kiritimati",
           order="o1"),
    ], "--to", "2027-08-01")
    assert steps_of(rows, "kiri") == [
        ("kiri", "anniv", "thanks", "2027-06-30T20:00:00Z", "sent", "")]


def test_date_campaign_exit_events_count_from_the_occurrence(tmp_path: Path) -> None:
    c = _bday("bday", exit={"event": "customer.complained"})
    rows = simulate(tmp_path, [c], [
        ev("e1", "customer.updated", "2026-04-01T14:00:00Z", "before", birthday="1990-05-20"),
        ev("e2", "customer.complained", "2026-05-10T14:00:00Z", "before"),
        ev("e3", "customer.updated", "2026-04-01T14:00:00Z", "during", birthday="1990-05-20"),
        # 05:00 EDT on the birthday: after the occurrence's local midnight.
        ev("e4", "customer.complained", "2026-05-20T09:00:00Z", "during"),
    ], "--to", "2026-06-01")
    assert steps_of(rows, "before") == [
        ("before", "bday", "greeting", "2026-05-20T14:00:00Z", "sent", "")]
    assert steps_of(rows, "during") == [
        ("during", "bday", "greeting", "2026-05-20T14:00:00Z", "exited", "customer.complained")]


# ------------------------------------------------------------------------ idle trigger

def _winback(**extra: Any) -> dict[str, Any]:
    return campaign("wb", {"idle": "P120D"},
                    [{"id": "miss-you", "at": "10:30", "channel": "email",
                      "template": "win_back"}],
                    goal={"event": "order.placed", "within": "P30D"}, **extra)


def test_idle_spell_sends_converts_and_replans(tmp_path: Path) -> None:
    rows = simulate(tmp_path, [_winback()], [
        # 5 Jan + 120 days = 5 May; 10:30 UTC.
        ev("e1", "order.placed", "2026-01-05T09:00:00Z", "idle", tz=UTC_ZONE, order="o1"),
        # Orders again after the win-back: converts, and a new spell: 20 May + 120 = 17 Sep.
        ev("e2", "order.placed", "2026-05-20T09:00:00Z", "idle", tz=UTC_ZONE, order="o2"),
        ev("e3", "order.placed", "2026-01-05T09:00:00Z", "again", tz=UTC_ZONE, order="o3"),
        # Orders before going idle: the spell is cancelled, re-planned 1 Mar + 120 = 29 Jun.
        ev("e4", "order.placed", "2026-03-01T09:00:00Z", "again", tz=UTC_ZONE, order="o4"),
    ])
    assert steps_of(rows, "idle") == [
        ("idle", "wb", "miss-you", "2026-05-05T10:30:00Z", "sent", ""),
        ("idle", "wb", "miss-you", "2026-09-17T10:30:00Z", "sent", "")]
    assert ("idle", "wb", "-", "2026-05-20T09:00:00Z", "converted", "order.placed") in rows
    assert steps_of(rows, "again") == [
        ("again", "wb", "miss-you", "2026-05-05T10:30:00Z", "cancelled", "ordered again"),
        ("again", "wb", "miss-you", "2026-06-29T10:30:00Z", "sent", "")]
    assert not [r for r in marks_of(rows, "again") if r[4] == "converted"]


def test_idle_days_are_calendar_days_across_dst(tmp_path: Path) -> None:
    rows = simulate(tmp_path, [_winback()], [
        ev("e1", "order.placed", "2026-01-05T15:00:00Z", "ny", order="o1"),  # 10:00 EST
    ])
    # 5 May 2026 10:30 EDT.
    assert steps_of(rows, "ny") == [("ny", "wb", "miss-you", "2026-05-05T14:30:00Z", "sent", "")]


# ------------------------------------------------------------------ holdout and goals

def _first(pred: Any) -> str:
    return next(f"h-{i}" for i in range(1000) if pred(f"h-{i}"))


def test_holdout_member_is_enrolled_logged_and_converts(tmp_path: Path) -> None:
    held = _first(lambda c: keys.in_holdout("ho", c, 50))
    treated = _first(lambda c: not keys.in_holdout("ho", c, 50))
    c = campaign("ho", {"event": "order.delivered"},
                 [email("first", after="P1D", at="10:00"),
                  sms("second", after="P3D", at="10:00")],
                 holdout_percent=50, goal={"event": "order.placed", "within": "P30D"})
    events = []
    for cid in (held, treated):
        events += [ev(f"{cid}-1", "order.delivered", "2026-04-01T14:00:00Z", cid, order="o1"),
                   ev(f"{cid}-2", "order.placed", "2026-04-10T14:00:00Z", cid, order="o2")]
    rows = simulate(tmp_path, [c], events)
    assert steps_of(rows, held) == [
        (held, "ho", "first", "2026-04-02T14:00:00Z", "held_out", "holdout group"),
        (held, "ho", "second", "2026-04-04T14:00:00Z", "held_out", "holdout group")]
    assert steps_of(rows, treated) == [
        (treated, "ho", "first", "2026-04-02T14:00:00Z", "sent", ""),
        (treated, "ho", "second", "2026-04-04T14:00:00Z", "sent", "")]
    assert marks_of(rows, held) == [
        (held, "ho", "-", "2026-04-01T14:00:00Z", "enrolled", "holdout group"),
        (held, "ho", "-", "2026-04-10T14:00:00Z", "converted", "order.placed")]
    assert marks_of(rows, treated) == [
        (treated, "ho", "-", "2026-04-01T14:00:00Z", "enrolled", ""),
        (treated, "ho", "-", "2026-04-10T14:00:00Z", "converted", "order.placed")]


def test_goal_counts_inside_the_window_only_once(tmp_path: Path) -> None:
    c = campaign("g", {"event": "order.delivered"}, [sms(after="P2D", at="10:00")],
                 goal={"event": "order.placed", "within": "P60D"})
    events = []
    for cid in ("in", "out"):
        events += [
            # The order's own placement precedes the enrollment: not a conversion.
            ev(f"{cid}-0", "order.placed", "2026-03-30T14:00:00Z", cid, order="o1"),
            ev(f"{cid}-1", "order.delivered", "2026-04-01T14:00:00Z", cid, order="o1"),
        ]
    events += [
        ev("in-2", "order.placed", "2026-05-20T14:00:00Z", "in", order="o2"),  # day 49
        ev("in-3", "order.placed", "2026-05-25T14:00:00Z", "in", order="o3"),  # again: once
        ev("out-2", "order.placed", "2026-06-10T14:00:00Z", "out", order="o2"),  # day 70
    ]
    rows = simulate(tmp_path, [c], events)
    conv = [r for r in rows if r[4] == "converted"]
    assert conv == [("in", "g", "-", "2026-05-20T14:00:00Z", "converted", "order.placed")]


# ---------------------------------------------------------------------------- exits

def test_exits_before_and_after_the_step(tmp_path: Path) -> None:
    c = campaign("ck", {"event": "order.delivered"}, [sms(after="P2D", at="10:00")],
                 exit={"event": "order.returned"})
    rows = simulate(tmp_path, [c], [
        ev("a1", "order.delivered", "2026-04-01T14:00:00Z", "before", order="o1"),
        ev("a2", "order.returned", "2026-04-02T14:00:00Z", "before", order="o1"),
        ev("b1", "order.delivered", "2026-04-01T14:00:00Z", "after", order="o1"),
        ev("b2", "order.returned", "2026-04-05T14:00:00Z", "after", order="o1"),
        ev("c1", "order.delivered", "2026-04-01T14:00:00Z", "two", order="o1"),
        ev("c2", "order.delivered", "2026-04-01T18:00:00Z", "two", order="o2"),
        ev("c3", "order.returned", "2026-04-02T14:00:00Z", "two", order="o1"),
    ])
    assert steps_of(rows, "before") == [
        ("before", "ck", "checkin", "2026-04-03T14:00:00Z", "exited", "order.returned")]
    assert steps_of(rows, "after") == [
        ("after", "ck", "checkin", "2026-04-03T14:00:00Z", "sent", "")]
    assert sorted(r[4] for r in steps_of(rows, "two")) == ["exited", "sent"]


def test_return_of_another_order_does_not_exit_window_enrollment(tmp_path: Path) -> None:
    rows = simulate(tmp_path, [shipped("nps-survey")], [
        ev("e1", "order.delivered", "2026-01-05T15:00:00Z", "c1", order="o1"),  # Mon 10:00
        ev("e2", "order.delivered", "2026-01-08T15:00:00Z", "c1", order="o2"),  # blocked
        ev("e3", "order.returned", "2026-01-12T15:00:00Z", "c1", order="o2"),
    ])
    assert ("c1", "nps-survey", "-", "2026-01-08T15:00:00Z", "skipped",
            "enrolled within the reentry window") in rows
    # P30D from Mon 5 Jan = Wed 4 Feb, 11:00 EST.
    assert steps_of(rows, "c1") == [
        ("c1", "nps-survey", "nps", "2026-02-04T16:00:00Z", "sent", "")]


def test_return_exits_only_its_orders_enrollment_with_reentry_always(tmp_path: Path) -> None:
    c = campaign("ck", {"event": "order.delivered"}, [sms(after="P2D", at="10:00")],
                 exit={"event": "order.returned"}, reentry={"policy": "always"})
    rows = simulate(tmp_path, [c], [
        ev("e1", "order.delivered", "2026-04-01T14:00:00Z", "c1", order="o1"),
        ev("e2", "order.delivered", "2026-04-01T15:00:00Z", "c1", order="o2"),
        ev("e3", "order.returned", "2026-04-02T12:00:00Z", "c1", order="o1"),
    ])
    # o1: 10:00 EDT + P2D -> 3 Apr 10:00; o2: 11:00 EDT + P2D, 10:00 passed -> 4 Apr.
    assert [r[3:] for r in steps_of(rows, "c1")] == [
        ("2026-04-03T14:00:00Z", "exited", "order.returned"),
        ("2026-04-04T14:00:00Z", "sent", "")]


def test_other_order_exit_events_exit_only_their_order(tmp_path: Path) -> None:
    c = campaign("ck", {"event": "order.delivered"}, [sms(after="P2D", at="10:00")],
                 exit={"events": ["order.returned", "order.cancelled"]})
    rows = simulate(tmp_path, [c], [
        ev("e1", "order.delivered", "2026-04-01T14:00:00Z", "c1", order="o1"),
        ev("e2", "order.placed", "2026-04-01T16:00:00Z", "c1", order="o2"),
        ev("e3", "order.cancelled", "2026-04-01T18:00:00Z", "c1", order="o2"),
    ])
    assert steps_of(rows, "c1") == [("c1", "ck", "checkin", "2026-04-03T14:00:00Z", "sent", "")]


def test_return_before_the_delivery_of_an_unseen_order_still_exits(tmp_path: Path) -> None:
    c = campaign("ck", {"event": "order.delivered"}, [sms(after="P2D", at="10:00")],
                 exit={"event": "order.returned"})
    rows = simulate(tmp_path, [c], [
        ev("k0", "order.placed", "2026-03-30T14:00:00Z", "known", order="o1"),
        ev("k1", "order.returned", "2026-04-01T12:00:00Z", "known", order="o1"),
        ev("k2", "order.delivered", "2026-04-01T14:00:00Z", "known", order="o1"),
        ev("u1", "order.returned", "2026-04-01T12:00:00Z", "unseen", order="o1"),
        ev("u2", "order.delivered", "2026-04-01T14:00:00Z", "unseen", order="o1"),
    ])
    known = [r[3:] for r in steps_of(rows, "known")]
    assert known == [("2026-04-03T14:00:00Z", "exited", "order.returned")]
    assert [r[3:] for r in steps_of(rows, "unseen")] == known


# ------------------------------------------------------------------------ re-entry

def test_each_reentry_policy(tmp_path: Path) -> None:
    def camp(cid: str, reentry: dict[str, Any] | None) -> dict[str, Any]:
        extra = {"reentry": reentry} if reentry else {}
        return campaign(cid, {"event": "order.delivered"},
                        [email(after="P1D", at="10:00")], **extra)

    campaigns = [camp("r-once", {"policy": "once"}), camp("r-order", None),
                 camp("r-window", {"policy": "once_per_window", "window": "P7D"}),
                 camp("r-always", {"policy": "always"})]
    rows = simulate(tmp_path, campaigns, [
        ev("e1", "order.delivered", "2026-04-01T14:00:00Z", "c", order="o1"),
        ev("e2", "order.delivered", "2026-04-02T14:00:00Z", "c", order="o1"),  # same order
        ev("e3", "order.delivered", "2026-04-05T14:00:00Z", "c", order="o2"),
        ev("e4", "order.delivered", "2026-04-12T14:00:00Z", "c", order="o3"),
    ])

    def sends(cid: str) -> list[str]:
        return [r[3][:10] for r in steps_of(rows, "c", cid) if r[4] == "sent"]

    def skips(cid: str) -> list[tuple[str, str]]:
        return [(r[3][:10], r[5]) for r in marks_of(rows, "c", cid) if r[4] == "skipped"]

    assert sends("r-once") == ["2026-04-02"]
    assert skips("r-once") == [(d, "already enrolled (reentry once)")
                               for d in ("2026-04-02", "2026-04-05", "2026-04-12")]
    assert sends("r-order") == ["2026-04-02", "2026-04-06", "2026-04-13"]
    assert skips("r-order") == [("2026-04-02", "already enrolled for this order")]
    assert sends("r-window") == ["2026-04-02", "2026-04-13"]
    assert skips("r-window") == [("2026-04-02", "enrolled within the reentry window"),
                                 ("2026-04-05", "enrolled within the reentry window")]
    assert sends("r-always") == ["2026-04-02", "2026-04-03", "2026-04-06", "2026-04-13"]
    assert skips("r-always") == []


# ------------------------------------------------------------------------ consent

def test_consent_is_a_record_checked_at_send_time(tmp_path: Path) -> None:
    c = campaign("ck", {"event": "order.delivered"}, [sms(after="P1D", at="10:00")])
    m = campaign("em", {"event": "order.shipped"}, [email(after="P1D", at="10:00")])
    explicit = {"granted": True, "explicit": True, "at": "2026-04-20T14:00:00Z"}
    rows = simulate(tmp_path, [c, m], [
        ev("s1", "order.delivered", "2026-04-01T14:00:00Z", "stop", order="o1"),
        ev("s2", "customer.updated", "2026-04-01T20:00:00Z", "stop",
           consent={"sms": False}),
        ev("s3", "order.delivered", "2026-04-10T14:00:00Z", "stop", order="o2"),  # plain true
        ev("s4", "customer.updated", "2026-04-20T14:00:00Z", "stop",
           consent={"sms": explicit}),
        ev("s5", "order.delivered", "2026-04-21T14:00:00Z", "stop", order="o3"),
        ev("n1", "order.delivered", "2026-04-01T14:00:00Z", "none", order="o1", consent=None),
        ev("p1", "order.delivered", "2026-04-01T14:00:00Z", "nophone", order="o1", phone=None),
        ev("m1", "order.shipped", "2026-04-01T14:00:00Z", "mail-none", order="o1",
           consent=None),
        ev("m2", "order.shipped", "2026-04-01T14:00:00Z", "mail-off", order="o1",
           consent={"email": False}),
    ])
    assert [r[3:] for r in steps_of(rows, "stop")] == [
        ("2026-04-02T14:00:00Z", "suppressed", "sms consent withdrawn"),
        ("2026-04-11T14:00:00Z", "suppressed", "sms consent withdrawn"),
        ("2026-04-22T14:00:00Z", "sent", "")]
    assert [r[4:] for r in steps_of(rows, "none")] == [("suppressed", "no sms consent on record")]
    assert [r[4:] for r in steps_of(rows, "nophone")] == [("suppressed", "no phone")]
    assert [r[4:] for r in steps_of(rows, "mail-none")] == [("sent", "")]
    assert [r[4:] for r in steps_of(rows, "mail-off")] == [
        ("suppressed", "email consent withdrawn")]


# --------------------------------------------------- --from/--to, duplicates, ordering

def test_from_to_window(tmp_path: Path) -> None:
    c = campaign("ck", {"event": "order.delivered"}, [sms(after="P2D", at="10:00")])
    rows = simulate(tmp_path, [c], [
        ev("e1", "order.delivered", "2026-03-31T23:00:00Z", "early", order="o1"),
        # Mar 31 20:00 EDT + P2D = Apr 2 20:00, 10:00 passed -> Apr 3 10:00 EDT.
        ev("e2", "order.delivered", "2026-04-01T00:00:00Z", "edge", order="o2"),
        ev("e3", "order.delivered", "2026-04-08T14:00:00Z", "late", order="o3"),  # due Apr 10
        ev("e4", "order.delivered", "2026-04-10T00:00:00Z", "after", order="o4"),
    ], "--from", "2026-04-01", "--to", "2026-04-10T00:00:00")
    assert {r[0] for r in rows} == {"edge", "late"}
    assert [r for r in rows if r[2] != "-"] == [
        ("edge", "ck", "checkin", "2026-04-03T14:00:00Z", "sent", "")]


def test_duplicates_and_out_of_order_lines(tmp_path: Path) -> None:
    c = campaign("ck", {"event": "order.delivered"}, [sms(after="P2D", at="10:00")],
                 audience={"==": [{"var": "customer.order_count"}, 1]},
                 exit={"event": "order.returned"})
    delivered = ev("d1", "order.delivered", "2026-04-01T14:00:00Z", "dup", order="o1")
    events: list[dict[str, Any] | str] = [
        delivered, delivered, json.dumps(delivered),
        # Lines in reverse time order: the return must still follow the delivery.
        ev("x3", "order.returned", "2026-04-02T14:00:00Z", "ooo", order="o1"),
        ev("x2", "order.delivered", "2026-04-01T14:00:00Z", "ooo", order="o1"),
        ev("x1", "order.placed", "2026-03-30T14:00:00Z", "ooo", order="o1"),
    ]
    rows = simulate(tmp_path, [c], events)
    assert steps_of(rows, "dup") == [("dup", "ck", "checkin", "2026-04-03T14:00:00Z", "sent", "")]
    assert marks_of(rows, "dup") == [
        ("dup", "ck", "-", "2026-04-01T14:00:00Z", "enrolled", "")]
    assert steps_of(rows, "ooo") == [
        ("ooo", "ck", "checkin", "2026-04-03T14:00:00Z", "exited", "order.returned")]
    # The table's summary counts the duplicates.
    cdir, log = write_case(tmp_path, [c], events)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["simulate", "--events", str(log), "--campaigns", str(cdir),
                     "--templates", str(TEMPLATES), "--workers", "1"]) == 0
    assert "4 events (2 duplicates, 0 bad)" in out.getvalue()


def test_event_exactly_at_a_due_time_does_not_depend_on_line_order(tmp_path: Path) -> None:
    c = campaign("ck", {"event": "order.delivered"}, [sms(after="P2D", at="10:00")],
                 exit={"event": "order.returned"})
    base = [ev("e1", "order.delivered", "2026-04-01T14:00:00Z", "stop", order="o1"),
            ev("r1", "order.delivered", "2026-04-01T14:00:00Z", "ret", order="o1")]
    due = "2026-04-03T14:00:00Z"
    tail = [ev("e2", "customer.updated", due, "stop", consent={"sms": False}),
            ev("r2", "order.returned", due, "ret", order="o1")]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    one = simulate(tmp_path / "a", [c], base + tail)
    two = simulate(tmp_path / "b", [c], tail + base)
    assert one == two
    assert len(steps_of(one, "stop")) == 1 and len(steps_of(one, "ret")) == 1


def test_default_timezone_for_missing_or_unknown_zones(tmp_path: Path) -> None:
    c = campaign("ck", {"event": "order.delivered"}, [sms(after="P2D", at="10:00")])
    rows = simulate(tmp_path, [c], [
        ev("e1", "order.delivered", "2026-04-01T08:00:00Z", "nozone", tz=None, order="o1"),
        ev("e2", "order.delivered", "2026-04-01T08:00:00Z", "badzone", tz="Mars/Phobos",
           order="o2"),
    ], "--timezone", "Europe/Berlin")
    for cid in ("nozone", "badzone"):  # 10:00 CEST on 3 Apr
        assert [r[3:] for r in steps_of(rows, cid)] == [("2026-04-03T08:00:00Z", "sent", "")]


def test_variant_weights_are_deterministic_and_proportional() -> None:
    variants = (("a", 90), ("b", 10))
    picks = Counter(keys.pick_variant("ab", f"c-{i}", variants) for i in range(4000))
    assert 0.87 < picks["a"] / 4000 < 0.93
    assert all(keys.pick_variant("ab", f"c-{i}", variants) ==
               keys.pick_variant("ab", f"c-{i}", variants) for i in range(50))


def test_installed_console_script_gives_the_same_rows(tmp_path: Path) -> None:
    c = campaign("dst", {"event": "order.delivered"}, [sms(after="P2D", at="10:00")])
    events: list[dict[str, Any] | str] = [
        ev("e1", "order.delivered", "2026-03-06T15:00:00Z", "ny", order="o1"),
        ev("e2", "order.delivered", "2026-04-02T23:00:00Z", "syd", tz="Australia/Sydney",
           order="o2")]
    in_process = simulate(tmp_path, [c], events)
    cdir, log = write_case(tmp_path, [c], events)
    exe = Path(sys.executable).with_name("aftercare")
    proc = subprocess.run([str(exe), "simulate", "--events", str(log), "--campaigns",
                           str(cdir), "--templates", str(TEMPLATES), "--format", "json"],
                          capture_output=True, text=True, timeout=60, check=True)
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [tuple(r.values())[:6] for r in rows] == [tuple(r) for r in in_process]
    # What is sent: the step's channel and template (empty on enrollment rows).
    assert {(r["step"], r["outcome"], r["channel"], r["template"]) for r in rows} == {
        ("-", "enrolled", "", ""), ("checkin", "sent", "sms", c["steps"][0]["template"])}
    assert ("ny", "dst", "checkin", "2026-03-08T14:00:00Z", "sent", "") in in_process
    assert ("syd", "dst", "checkin", "2026-04-05T00:00:00Z", "sent", "") in in_process


# ------------------------------------------------------------------ more edge cases

def test_quiet_hours_move_off_an_allowed_weekday_to_the_next_one(tmp_path: Path) -> None:
    c = campaign("fri", {"event": "order.delivered"}, [email(at="22:00", weekdays=["fri"])])
    rows = simulate(tmp_path, [c], [
        # Thu 2 Apr 12:00 EDT -> at 22:00 that day (Thu, not allowed) -> moved to Friday
        # 3 Apr, where 22:00 is in quiet hours -> 08:00 Friday (not Fri 22:00 -> Sat
        # 08:00, not a Friday -> Fri 10 Apr: the step goes out on the allowed day).
        ev("e1", "order.delivered", "2026-04-02T16:00:00Z", "c1", order="o1"),
    ])
    assert steps_of(rows, "c1") == [("c1", "fri", "mail", "2026-04-03T12:00:00Z", "sent", "")]


def test_a_step_due_in_quiet_hours_on_its_only_allowed_day_waits_for_the_next_one(
        tmp_path: Path) -> None:
    c = campaign("fri", {"event": "order.delivered"}, [email(at="22:00", weekdays=["fri"])])
    rows = simulate(tmp_path, [c], [
        # Fri 3 Apr 12:00 EDT -> 22:00 that Friday (quiet) -> Sat 08:00, not a Friday
        # -> the next Friday at 08:00 (quiet hours only ever move a step later).
        ev("e1", "order.delivered", "2026-04-03T16:00:00Z", "c1", order="o1"),
    ])
    assert steps_of(rows, "c1") == [("c1", "fri", "mail", "2026-04-10T12:00:00Z", "sent", "")]


def test_a_changed_birthday_cancels_the_old_occurrence(tmp_path: Path) -> None:
    rows = simulate(tmp_path, [_bday("bday")], [
        ev("e1", "customer.updated", "2026-04-01T14:00:00Z", "c1", birthday="1990-05-20"),
        ev("e2", "customer.updated", "2026-04-15T14:00:00Z", "c1", birthday="1990-06-10"),
    ], "--to", "2026-07-01")
    assert steps_of(rows, "c1") == [
        ("c1", "bday", "greeting", "2026-05-20T14:00:00Z", "cancelled", "date changed"),
        ("c1", "bday", "greeting", "2026-06-10T14:00:00Z", "sent", "")]


def test_late_evidence_of_an_older_opt_out_does_not_override_a_newer_opt_in(
        tmp_path: Path) -> None:
    c = campaign("ck", {"event": "order.delivered"}, [sms(after="P1D", at="10:00")])
    rows = simulate(tmp_path, [c], [
        ev("e1", "customer.updated", "2026-04-03T14:00:00Z", "c1",
           consent={"sms": {"granted": True, "explicit": True, "at": "2026-04-03T14:00:00Z"}}),
        ev("e2", "customer.updated", "2026-04-05T14:00:00Z", "c1",
           consent={"sms": {"granted": False, "at": "2026-04-01T15:00:00Z",
                            "source": "import"}}),
        ev("e3", "order.delivered", "2026-04-06T14:00:00Z", "c1", order="o1", consent=None),
    ])
    assert steps_of(rows, "c1") == [("c1", "ck", "checkin", "2026-04-07T14:00:00Z", "sent", "")]
