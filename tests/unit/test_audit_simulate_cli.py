"""Audit of `aftercare simulate` and `aftercare preview` with hand-made inputs.

Each event log is written by hand following docs/events.md, and each expected
timeline is worked out from docs/campaigns.md (times in the comments). The defects
found (first written as strict xfails) are fixed; their tests hold the fixes.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from chalicelib.cli.main import main
from chalicelib.journeys import keys
from tests.conftest import ROOT

TEMPLATES = ROOT / "templates"
ORDER_ITEMS = [{"sku": "KX-200", "name": "Kettle", "category": "appliance", "quantity": 1,
                "price": 129.5}]


def campaign(cid: str, trigger: dict[str, Any], steps: list[dict[str, Any]],
             **extra: Any) -> dict[str, Any]:
    return {"id": cid, "name": cid, "trigger": trigger, "steps": steps, **extra}


def email(step_id: str = "mail", template: str = "care_tip", **extra: Any) -> dict[str, Any]:
    return {"id": step_id, "channel": "email", "template": template, **extra}


def customer(cid: str, tz: str | None = None, **extra: Any) -> dict[str, Any]:
    c: dict[str, Any] = {"id": cid, "email": f"{cid}@example.com", "phone": "+14155550123",
                         "consent": {"sms": True, "email": True}, **extra}
    if tz is not None:
        c["timezone"] = tz
    return c


def order(oid: str, **extra: Any) -> dict[str, Any]:
    return {"id": oid, "total": 129.5, "currency": "USD", "items": ORDER_ITEMS, **extra}


def event(eid: str, etype: str, at: str, cust: dict[str, Any] | str,
          the_order: dict[str, Any] | None = None) -> dict[str, Any]:
    e: dict[str, Any] = {"id": eid, "type": etype, "occurred_at": at,
                         "customer": cust if isinstance(cust, dict) else {"id": cust}}
    if the_order is not None:
        e["order"] = the_order
    return e


def run_simulate(tmp_path: Path, campaigns: list[dict[str, Any]] | None,
                 lines: list[Any], *extra: str, fmt: str = "csv",
                 capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    folder = tmp_path / "campaigns"
    folder.mkdir(exist_ok=True)
    for c in campaigns or []:
        (folder / f"{c['id']}.json").write_text(json.dumps(c))
    log = tmp_path / "events.jsonl"
    log.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n"
                           for x in lines))
    capsys.readouterr()
    code = main(["simulate", "--events", str(log), "--campaigns",
                 str(folder if campaigns is not None else ROOT / "campaigns"),
                 "--templates", str(TEMPLATES), "--format", fmt, *extra])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def csv_rows(out: str) -> list[tuple[str, ...]]:
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == ["customer", "campaign", "step", "at", "outcome", "reason", "channel",
                       "template"]
    return [tuple(r[:6]) for r in rows[1:]]


def of(rows: list[tuple[str, ...]], cust: str) -> list[tuple[str, ...]]:
    return [r for r in rows if r[0] == cust]


# ================================================================ timelines (pass)

def test_p1d_at_ten_is_ten_local_on_both_sides_of_both_dst_changes(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    c = campaign("k", {"event": "order.delivered"}, [email(after="P1D", at="10:00")])
    code, out, _ = run_simulate(tmp_path, [c], [
        # Sat 7 Mar 08:00 EST; P1D -> Sun 8 Mar 08:00 (EDT from 02:00): 10:00 EDT = 14:00Z.
        event("s", "order.delivered", "2026-03-07T13:00:00Z",
              customer("spring", "America/New_York"), order("o1")),
        # Sat 31 Oct 08:00 EDT; P1D -> Sun 1 Nov (EST from 02:00): 10:00 EST = 15:00Z.
        event("f", "order.delivered", "2026-10-31T12:00:00Z",
              customer("fall", "America/New_York"), order("o2")),
    ], capsys=capsys)
    rows = csv_rows(out)
    assert code == 0
    assert ("spring", "k", "mail", "2026-03-08T14:00:00Z", "sent", "") in rows
    assert ("fall", "k", "mail", "2026-11-01T15:00:00Z", "sent", "") in rows


def test_london_kiritimati_and_pago_pago_get_ten_local(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    c = campaign("k", {"event": "order.delivered"}, [email(after="P2D", at="10:00")])
    at = "2026-06-01T12:00:00Z"  # 13:00 BST 1 Jun; 02:00 +14 on 2 Jun; 01:00 -11 on 1 Jun
    code, out, _ = run_simulate(tmp_path, [c], [
        event("l", "order.delivered", at, customer("lon", "Europe/London"), order("o1")),
        event("k", "order.delivered", at, customer("kir", "Pacific/Kiritimati"), order("o2")),
        event("p", "order.delivered", at, customer("pago", "Pacific/Pago_Pago"), order("o3")),
    ], capsys=capsys)
    sent = {r[0]: r[3] for r in csv_rows(out) if r[4] == "sent"}
    assert code == 0
    assert sent == {
        "lon": "2026-06-04T09:00:00Z",   # 3 Jun 13:00 is past 10:00 -> 4 Jun 10:00 BST
        "kir": "2026-06-03T20:00:00Z",   # 4 Jun 02:00 -> 4 Jun 10:00 +14
        "pago": "2026-06-03T21:00:00Z",  # 3 Jun 01:00 -> 3 Jun 10:00 -11
    }


def test_weekday_restriction_moves_a_weekend_send_to_monday(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    c = campaign("w", {"event": "order.delivered"},
                 [email(after="P1D", at="10:00", weekdays=["mon", "tue"])])
    # Thu 4 Jun 12:00 EDT + P1D = Fri 12:00, past 10:00 -> Sat 10:00 -> Mon 8 Jun 10:00.
    code, out, _ = run_simulate(tmp_path, [c], [
        event("e1", "order.delivered", "2026-06-04T16:00:00Z",
              customer("a", "America/New_York"), order("o1"))], capsys=capsys)
    assert code == 0
    assert ("a", "w", "mail", "2026-06-08T14:00:00Z", "sent", "") in csv_rows(out)


def test_leap_day_birthday_in_non_leap_and_leap_years(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    step = email("g", "anniversary", at="10:00", expire_after="PT12H")
    feb = campaign("feb", {"date": "customer.birthday"}, [step])
    mar = campaign("mar", {"date": "customer.birthday", "leap_day": "mar1"}, [step])
    code, out, _ = run_simulate(tmp_path, [feb, mar], [
        event("e1", "customer.updated", "2026-01-10T12:00:00Z",
              customer("a", "Europe/London", birthday="1992-02-29")),
    ], "--to", "2029-03-05", capsys=capsys)
    sent = [(r[1], r[3]) for r in csv_rows(out) if r[4] == "sent"]
    assert code == 0
    assert sorted(sent) == [
        ("feb", "2026-02-28T10:00:00Z"), ("feb", "2027-02-28T10:00:00Z"),
        ("feb", "2028-02-29T10:00:00Z"), ("feb", "2029-02-28T10:00:00Z"),
        ("mar", "2026-03-01T10:00:00Z"), ("mar", "2027-03-01T10:00:00Z"),
        ("mar", "2028-02-29T10:00:00Z"), ("mar", "2029-03-01T10:00:00Z"),
    ]


def test_holdout_member_with_goal_and_reentry_window(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    held = next(f"h{i}" for i in range(1000) if keys.in_holdout("k", f"h{i}", 10))
    c = campaign("k", {"event": "order.delivered"}, [email(after="P2D", at="10:00")],
                 goal={"event": "order.placed", "within": "P10D"}, holdout_percent=10,
                 reentry={"policy": "once_per_window", "window": "P30D"})
    code, out, _ = run_simulate(tmp_path, [c], [
        event("e1", "order.delivered", "2026-06-01T01:00:00Z", customer(held, "Asia/Tokyo"),
              order("o1")),
        event("e2", "order.placed", "2026-06-02T01:00:00Z", held, order("o2")),
        event("e3", "order.delivered", "2026-07-01T00:59:59Z", held, order("o3")),
        event("e4", "order.delivered", "2026-07-01T01:00:00Z", held, order("o4")),
    ], capsys=capsys)
    assert code == 0
    assert of(csv_rows(out), held) == [
        (held, "k", "-", "2026-06-01T01:00:00Z", "enrolled", "holdout group"),
        (held, "k", "-", "2026-06-02T01:00:00Z", "converted", "order.placed"),
        (held, "k", "mail", "2026-06-03T01:00:00Z", "held_out", "holdout group"),
        (held, "k", "-", "2026-07-01T00:59:59Z", "skipped",
         "enrolled within the reentry window"),
        (held, "k", "-", "2026-07-01T01:00:00Z", "enrolled", "holdout group"),
        (held, "k", "mail", "2026-07-03T01:00:00Z", "held_out", "holdout group"),
    ]


def test_formats_quote_reasons_with_commas_and_an_empty_log_is_well_formed(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    b = campaign("bd", {"date": "customer.birthday"},
                 [email("g", "anniversary", at="10:00", expire_after="PT12H")])
    # Birthday learnt at 23:30 local on the day: 13h30m after 10:00.
    lines = [event("e1", "customer.updated", "2026-05-20T03:30:00Z",
                   customer("b", "America/New_York", birthday="1990-05-19"))]
    _, out, _ = run_simulate(tmp_path, [b], lines, "--to", "2026-06-01", capsys=capsys)
    assert ("b", "bd", "g", "2026-05-20T03:30:00Z", "expired",
            "13h30m late, expire_after 12h") in csv_rows(out)
    _, out, _ = run_simulate(tmp_path, [b], lines, "--to", "2026-06-01", fmt="json",
                             capsys=capsys)
    parsed = [json.loads(line) for line in out.splitlines()]
    assert {"customer": "b", "campaign": "bd", "step": "g", "at": "2026-05-20T03:30:00Z",
            "outcome": "expired", "reason": "13h30m late, expire_after 12h",
            "channel": "email", "template": ""} in parsed
    for fmt, expected in (("json", ""), ("csv", "customer,campaign,step,at,outcome,reason,"
                                                "channel,template\r\n")):
        code, out, err = run_simulate(tmp_path, [b], [], fmt=fmt, capsys=capsys)
        assert (code, out, err) == (0, expected, "")


def test_bad_line_in_the_middle_is_reported_and_the_rest_simulated(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    c = campaign("k", {"event": "order.delivered"}, [email(after="P2D", at="10:00")])
    code, out, err = run_simulate(tmp_path, [c], [
        event("e2", "order.delivered", "2026-06-10T14:00:00Z", "a", order("o2")),  # late first
        "{not json",
        event("e1", "order.delivered", "2026-06-01T14:00:00Z",
              customer("a", "America/New_York"), order("o1")),
        event("e1", "order.delivered", "2026-06-01T14:00:00Z", "a", order("o1")),  # duplicate
        event("e3", "Not A Type", "2026-06-11T14:00:00Z", "a"),
        event("e4", "loyalty.points_added", "2026-06-11T14:00:00Z", "a"),  # unknown: fine
    ], fmt="table", capsys=capsys)
    log = tmp_path / "events.jsonl"
    assert code == 0
    assert err.splitlines() == [
        f"{log}: line 2: invalid JSON: Expecting property name enclosed in double quotes",
        f"{log}: line 5: $.type: not an event type like 'order.delivered' "
        "(lowercase words joined by dots)",
    ]
    assert out.splitlines()[-1] == (
        "3 events (1 duplicates, 2 bad); enrolled=2, sent=2; 0 still pending")


def test_two_workers_match_one_on_a_hand_made_log(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from chalicelib.config.loader import load_bundles
    from chalicelib.journeys.engine import CampaignSet
    from chalicelib.journeys.parallel import simulate_file
    from chalicelib.render import load_template_dir

    k = campaign("k", {"event": "order.delivered"}, [email(after="P2D", at="10:00")],
                 exit={"event": "order.returned"})
    bd = campaign("bd", {"date": "customer.birthday"},
                  [email("g", "anniversary", at="10:00", expire_after="PT12H")])
    zones = ["America/New_York", "Pacific/Kiritimati", "Pacific/Pago_Pago", "Europe/London"]
    lines: list[Any] = []
    for i in range(24):
        cid = f"c{i}"
        lines.append(event(f"{cid}-0", "order.delivered", f"2026-03-0{1 + i % 9}T1{i % 10}:00:00Z",
                           customer(cid, zones[i % 4], birthday=f"1990-03-{10 + i:02d}"),
                           order(f"{cid}-o1")))
        lines.append(event(f"{cid}-1", "order.returned", f"2026-03-0{2 + i % 8}T09:00:00Z",
                           cid, {"id": f"{cid}-o1"}))
        lines.append(event(f"{cid}-2", "customer.updated", "2026-03-05T09:00:00Z",
                           {"id": cid, "timezone": zones[(i + 1) % 4]}))
    lines.reverse()  # out of time order
    lines += [""] * 2100  # blank lines count: over MIN_LINES, so two processes really run
    outputs = []
    for workers in ("1", "2"):
        code, out, err = run_simulate(tmp_path, [k, bd], lines, "--workers", workers,
                                      fmt="table", capsys=capsys)
        outputs.append((code, out, err))
    assert outputs[0] == outputs[1]
    bundles, _ = load_bundles([tmp_path / "campaigns"], load_template_dir(TEMPLATES),
                              str(TEMPLATES))
    result = simulate_file(tmp_path / "events.jsonl",
                           CampaignSet(b.compiled() for b in bundles), workers=2)
    assert result.workers_used == 2, result.fallback


# ================================================================ preview (pass)

@pytest.mark.parametrize(("locale", "currency", "total", "expected"), [
    ("de-DE", "EUR", 129.5, "129,50\xa0€ | 1. März 2026"),
    ("fr", "USD", 129.5, "129,50\xa0$US | 1 mars 2026"),
    ("ja", "JPY", 1500, "￥1,500 | 2026年3月1日"),
])
def test_preview_money_and_dates_in_a_localized_email(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], locale: str, currency: str,
        total: float, expected: str) -> None:
    templates = tmp_path / "t"
    shutil.copytree(TEMPLATES, templates)
    lang = locale.split("-")[0]
    (templates / f"care_tip.{lang}.email.j2").write_text(
        '{% block subject %}{{ order.id }}{% endblock %}\n'
        '{% block html %}<p>{{ order.total|money(order.currency) }} | '
        '{{ "2026-03-01T14:02:00Z"|date("long") }}</p>{% endblock %}\n')
    cust = tmp_path / "c.json"
    cust.write_text(json.dumps({"id": "c1", "name": "Ana", "timezone": "America/New_York",
                                "locale": locale}))
    the_order = tmp_path / "o.json"
    the_order.write_text(json.dumps({"id": "o-1", "total": total, "currency": currency,
                                     "items": ORDER_ITEMS}))
    code = main(["preview", "care-tips", "--customer", str(cust), "--order", str(the_order),
                 "--campaigns", str(ROOT / "campaigns"), "--templates", str(templates)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert f"<p>{expected}</p>" in out


# ================================================================ defects (fixed)

@pytest.mark.parametrize(("after", "expected"), [
    # Sat 7 Mar 12:00 EST (17:00Z) + 24 h elapsed = 17:00Z Sun 8 Mar (13:00 EDT).
    ("PT24H", "2026-03-08T17:00:00Z"),
    # + 30 h elapsed = 23:00Z Sun 8 Mar (19:00 EDT).
    ("PT30H", "2026-03-08T23:00:00Z"),
])
def test_a_delay_in_hours_of_a_day_or_more_is_elapsed_time(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], after: str,
        expected: str) -> None:
    c = campaign("h", {"event": "order.delivered"}, [email(after=after)])
    code, out, _ = run_simulate(tmp_path, [c], [
        event("e1", "order.delivered", "2026-03-07T17:00:00Z",
              customer("a", "America/New_York"), order("o1"))], capsys=capsys)
    assert code == 0
    assert ("a", "h", "mail", expected, "sent", "") in csv_rows(out)


def test_an_enrollment_exits_once_whatever_came_after_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    c = campaign("k", {"event": "order.delivered"}, [email(after="P7D", at="10:00")],
                 exit={"event": "order.returned"})
    code, out, _ = run_simulate(tmp_path, [c], [
        event("d1", "order.delivered", "2026-06-01T14:00:00Z",
              customer("a", "America/New_York"), order("o1")),
        event("r1", "order.returned", "2026-06-02T14:00:00Z", "a", {"id": "o1"}),
        event("d2", "order.delivered", "2026-06-03T14:00:00Z", "a", order("o2")),
        event("r2", "order.returned", "2026-06-05T14:00:00Z", "a", {"id": "o1"}),
    ], capsys=capsys)
    assert code == 0
    assert [r for r in csv_rows(out) if r[2] == "-"] == [
        ("a", "k", "-", "2026-06-01T14:00:00Z", "enrolled", ""),
        ("a", "k", "-", "2026-06-02T14:00:00Z", "exited", "order.returned"),
        ("a", "k", "-", "2026-06-03T14:00:00Z", "enrolled", ""),
    ]


@pytest.mark.parametrize("zone_value", [5, ["Europe/Paris"]])
def test_preview_with_a_timezone_that_is_not_a_string_does_not_crash(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], zone_value: Any) -> None:
    cust = tmp_path / "c.json"
    cust.write_text(json.dumps({"id": "c1", "name": "Ana", "timezone": zone_value}))
    code = main(["preview", str(ROOT / "campaigns" / "delivery-checkin.json"),
                 "--customer", str(cust), "--templates", str(TEMPLATES)])
    err = capsys.readouterr().err
    assert code in (0, 1)
    assert f"{cust}: $.timezone:" in err


def test_simulate_reports_every_bad_input_at_once(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "x.json").write_text(json.dumps({"id": "x"}))
    missing = tmp_path / "missing.jsonl"
    code = main(["simulate", "--events", str(missing), "--campaigns", str(broken),
                 "--templates", str(TEMPLATES), "--from", "2026-02-01", "--to", "2026-01-01"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert f"{broken / 'x.json'}: $.steps: required field is missing" in err
    assert f"{missing}: $: no such file" in err
    assert "--from must be before --to" in err



def test_a_birthday_at_the_end_of_the_calendar_is_not_a_traceback(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    b = campaign("bd", {"date": "customer.birthday"},
                 [email("g", "anniversary", at="10:00")])
    code, out, _ = run_simulate(tmp_path, [b], [
        event("e1", "customer.updated", "2026-06-01T14:00:00Z",
              customer("z", "America/New_York", birthday="9999-12-31")),
        event("e2", "order.delivered", "2026-06-01T14:00:00Z",
              customer("a", "America/New_York"), order("o1")),
    ], fmt="table", capsys=capsys)
    assert code == 0
    assert "events (0 duplicates" in out.splitlines()[-1]


def test_an_older_enrollment_exits_after_the_latest_has_exited(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    c = campaign("k", {"event": "order.delivered"}, [email(after="P7D", at="10:00")],
                 exit={"event": "order.returned"})
    code, out, _ = run_simulate(tmp_path, [c], [
        event("d1", "order.delivered", "2026-06-01T14:00:00Z",
              customer("a", "America/New_York"), order("o1")),
        event("d2", "order.delivered", "2026-06-02T14:00:00Z", "a", order("o2")),
        event("r2", "order.returned", "2026-06-03T14:00:00Z", "a", {"id": "o2"}),
        event("r1", "order.returned", "2026-06-04T14:00:00Z", "a", {"id": "o1"}),
        event("r1b", "order.returned", "2026-06-05T14:00:00Z", "a", {"id": "o1"}),
    ], capsys=capsys)
    assert code == 0
    assert [r for r in csv_rows(out) if r[2] == "-"] == [
        ("a", "k", "-", "2026-06-01T14:00:00Z", "enrolled", ""),
        ("a", "k", "-", "2026-06-02T14:00:00Z", "enrolled", ""),
        ("a", "k", "-", "2026-06-03T14:00:00Z", "exited", "order.returned"),
        ("a", "k", "-", "2026-06-04T14:00:00Z", "exited", "order.returned"),
    ]
    assert not [r for r in csv_rows(out) if r[2] != "-" and r[4] == "sent"]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_an_event_log_with_a_byte_order_mark_reads_its_first_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], workers: str) -> None:
    c = campaign("k", {"event": "order.delivered"}, [email(after="P1D", at="10:00")])
    first = event("d1", "order.delivered", "2026-06-01T14:00:00Z",
                  customer("a", "America/New_York"), order("o1"))
    padding = [""] * 2_100  # enough lines for the parallel run to fork
    code, out, err = run_simulate(tmp_path, [c], ["\ufeff" + json.dumps(first), *padding],
                                  "--workers", workers, capsys=capsys)
    assert code == 0 and "line 1" not in err
    assert ("a", "k", "mail", "2026-06-02T14:00:00Z", "sent", "") in csv_rows(out)
