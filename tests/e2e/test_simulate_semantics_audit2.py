"""Second audit of `aftercare simulate`'s decision semantics (see the first one in
test_simulate_semantics_audit.py, whose cases are not repeated here).

Every case builds a small campaign folder and event log, runs the real CLI
(`aftercare simulate --format json`, in-process through ``main``) and compares the
rows with timelines computed by hand from docs/campaigns.md, docs/rules.md,
docs/events.md and DESIGN.md. Cases where the code contradicts the docs are kept as
``xfail(strict=True)`` with the sentence they contradict.

Local times used below (tz database): New York is EDT (UTC-4) from 2026-03-08 to
2026-11-01 and from 2027-03-14, EST (UTC-5) otherwise; Tokyo is UTC+9 without DST.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from chalicelib.journeys import keys
from tests.e2e.test_simulate_semantics_audit import (
    TEMPLATES,
    UTC_ZONE,
    campaign,
    email,
    ev,
    marks_of,
    run_cli,
    simulate,
    simulate_dicts,
    sms,
    steps_of,
    write_case,
)

# --------------------------------------------------------------------------- helpers
# The first audit's helpers (imported above), and one more.

def bday(cid: str, **extra: Any) -> dict[str, Any]:
    return campaign(cid, {"date": "customer.birthday"},
                    [{"id": "greeting", "at": "10:00", "channel": "sms",
                      "template": "birthday"}], **extra)


def test_step_condition_reads_the_triggering_orders_categories(tmp_path: Path) -> None:
    rule = {"contains_any": [{"var": "event.order.categories"}, ["appliance"]]}
    c = campaign("cat", {"event": "order.delivered"}, [
        email("by-list", after="P1D", at="10:00", condition=rule),
        email("by-first", after="P1D", at="11:00",
              condition={"==": [{"var": "event.order.category"}, "appliance"]}),
    ], audience=rule)
    rows = simulate(tmp_path, [c], [
        ev("e1", "order.delivered", "2026-04-01T14:00:00Z", "c1", order="o1"),  # 10:00 EDT
    ])
    assert marks_of(rows, "c1") == [("c1", "cat", "-", "2026-04-01T14:00:00Z", "enrolled", "")]
    assert steps_of(rows, "c1") == [
        ("c1", "cat", "by-list", "2026-04-02T14:00:00Z", "sent", ""),
        ("c1", "cat", "by-first", "2026-04-02T15:00:00Z", "sent", "")]


def test_step_condition_reads_the_triggering_event_id_and_type(tmp_path: Path) -> None:
    c = campaign("gift", {"event": "order.delivered"}, [
        email("by-type", after="P1D", at="10:00",
              condition={"and": [{"==": [{"var": "event.type"}, "order.delivered"]},
                                 {"==": [{"var": "event.id"}, "e1"]}]}),
    ])
    rows = simulate(tmp_path, [c], [
        ev("e1", "order.delivered", "2026-04-01T14:00:00Z", "c1", order="o1"),
    ])
    assert steps_of(rows, "c1") == [
        ("c1", "gift", "by-type", "2026-04-02T14:00:00Z", "sent", "")]


def test_step_condition_reads_the_triggering_event_data(tmp_path: Path) -> None:
    c = campaign("gift", {"event": "order.delivered"}, [
        email("by-data", after="P1D", at="11:00",
              condition={"==": [{"var": "event.data.gift"}, True]}),
    ], audience={"==": [{"var": "event.data.gift"}, True]})
    rows = simulate(tmp_path, [c], [
        ev("e1", "order.delivered", "2026-04-01T14:00:00Z", "c1", order="o1",
           data={"gift": True}),
    ])
    assert marks_of(rows, "c1") == [("c1", "gift", "-", "2026-04-01T14:00:00Z", "enrolled", "")]
    assert steps_of(rows, "c1") == [
        ("c1", "gift", "by-data", "2026-04-02T15:00:00Z", "sent", "")]


def test_the_trigger_event_does_not_exit_its_own_enrollment(tmp_path: Path) -> None:
    c = campaign("nudge", {"event": "order.placed"}, [email(after="P3D", at="10:00")],
                 exit={"event": "order.placed"})
    rows = simulate(tmp_path, [c], [
        ev("a1", "order.placed", "2026-04-01T14:00:00Z", "one", order="o1"),
        ev("b1", "order.placed", "2026-04-01T14:00:00Z", "two", order="o1"),
        ev("b2", "order.placed", "2026-04-02T14:00:00Z", "two", order="o2"),
    ])
    assert steps_of(rows, "one") == [
        ("one", "nudge", "mail", "2026-04-04T14:00:00Z", "sent", "")]
    # o2's placement follows o1's enrollment and exits it (cancelled at ingest, the
    # row at its planned time); o2's own enrollment is sent 3 days after it.
    assert steps_of(rows, "two") == [
        ("two", "nudge", "mail", "2026-04-04T14:00:00Z", "exited", "order.placed"),
        ("two", "nudge", "mail", "2026-04-05T14:00:00Z", "sent", "")]


def test_idle_audience_is_evaluated_when_the_customer_becomes_idle(tmp_path: Path) -> None:
    wb = campaign("wb", {"idle": "P120D"},
                  [{"id": "miss-you", "at": "10:30", "channel": "email",
                    "template": "win_back"}],
                  audience={">=": [{"days_since": [{"var": "customer.last_order_at"}]}, 120]})
    rows = simulate(tmp_path, [wb], [
        ev("e1", "order.placed", "2026-01-05T09:00:00Z", "c1", tz=UTC_ZONE, order="o1"),
    ])
    # 5 Jan + 120 days = 5 May; 10:30 UTC. days_since then is 120.
    assert steps_of(rows, "c1") == [("c1", "wb", "miss-you", "2026-05-05T10:30:00Z", "sent", "")]


def test_date_audience_is_evaluated_at_the_occurrence(tmp_path: Path) -> None:
    c = bday("adult", audience={">=": [{"years_since": [{"var": "customer.birthday"}]}, 18]})
    rows = simulate(tmp_path, [c], [
        ev("e1", "customer.updated", "2026-03-01T14:00:00Z", "teen", birthday="2008-06-10"),
        ev("e2", "customer.updated", "2026-03-01T14:00:00Z", "adult", birthday="1990-06-10"),
    ], "--to", "2026-07-01")
    assert steps_of(rows, "adult") == [
        ("adult", "adult", "greeting", "2026-06-10T14:00:00Z", "sent", "")]
    assert steps_of(rows, "teen") == [
        ("teen", "adult", "greeting", "2026-06-10T14:00:00Z", "sent", "")]


def test_next_years_birthday_is_planned_after_this_years_exit(tmp_path: Path) -> None:
    c = bday("bday", exit={"event": "customer.complained"})
    rows = simulate(tmp_path, [c], [
        ev("e1", "customer.updated", "2026-04-01T14:00:00Z", "c1", birthday="1990-05-20"),
        # 05:00 EDT on the birthday: after the occurrence's local midnight.
        ev("e2", "customer.complained", "2026-05-20T09:00:00Z", "c1"),
    ], "--to", "2027-06-01")
    assert steps_of(rows, "c1") == [
        ("c1", "bday", "greeting", "2026-05-20T14:00:00Z", "exited", "customer.complained"),
        ("c1", "bday", "greeting", "2027-05-20T14:00:00Z", "sent", "")]


def test_goal_counts_after_every_yearly_occurrence(tmp_path: Path) -> None:
    c = bday("bday", goal={"event": "order.placed", "within": "P30D"})
    rows = simulate(tmp_path, [c], [
        ev("e1", "customer.updated", "2026-04-01T14:00:00Z", "c1", birthday="1990-05-20"),
        ev("e2", "order.placed", "2026-05-25T14:00:00Z", "c1", order="o1"),
        ev("e3", "order.placed", "2027-05-25T14:00:00Z", "c1", order="o2"),
    ], "--to", "2027-07-01")
    assert [r for r in marks_of(rows, "c1") if r[4] == "converted"] == [
        ("c1", "bday", "-", "2026-05-25T14:00:00Z", "converted", "order.placed"),
        ("c1", "bday", "-", "2027-05-25T14:00:00Z", "converted", "order.placed")]
    assert [r[3:5] for r in steps_of(rows, "c1")] == [
        ("2026-05-20T14:00:00Z", "sent"), ("2027-05-20T14:00:00Z", "sent")]


def test_birthday_follows_a_timezone_move_before_the_occurrence(tmp_path: Path) -> None:
    rows = simulate(tmp_path, [bday("bday")], [
        ev("e1", "customer.updated", "2026-04-01T14:00:00Z", "c1", birthday="1990-05-20"),
        ev("e2", "customer.updated", "2026-05-01T14:00:00Z", "c1", tz="Asia/Tokyo"),
    ], "--to", "2026-06-01")
    # 10:00 JST on 20 May = 01:00Z.
    assert steps_of(rows, "c1") == [
        ("c1", "bday", "greeting", "2026-05-20T01:00:00Z", "sent", "")]


# ===================================================== behaviour that matches the docs

def _ab_campaign() -> dict[str, Any]:
    return campaign(
        "ab", {"event": "order.placed"},
        [{"id": "offer", "after": "P1D", "at": "10:00", "channel": "email",
          "template": "loyalty_offer"},
         {"id": "follow", "after": "P2D", "at": "10:00", "channel": "email",
          "template": "loyalty_offer"}],
        reentry={"policy": "always"}, holdout_percent=10,
        goal={"event": "order.placed", "within": "P30D"},
        variants=[{"id": "control", "weight": 70},
                  {"id": "shipping", "weight": 30,
                   "templates": {"offer": "loyalty_offer_shipping"}}])


def _ab_events(n: int, prefix: str = "v") -> list[dict[str, Any]]:
    events = []
    for i in range(n):
        cid = f"{prefix}-{i}"
        events += [ev(f"{cid}-1", "order.placed", "2026-04-01T14:00:00Z", cid, order="o1"),
                   ev(f"{cid}-2", "order.placed", "2026-04-20T14:00:00Z", cid, order="o2")]
    return events


def test_variants_holdout_weights_and_stability(tmp_path: Path) -> None:
    n = 600
    rows = simulate_dicts(tmp_path, [_ab_campaign()], _ab_events(n))
    by_customer: dict[str, list[dict[str, str]]] = {}
    for r in rows:
        by_customer.setdefault(r["customer"], []).append(r)
    arms: Counter[str] = Counter()
    for cid, rs in by_customer.items():
        steps = [r for r in rs if r["step"] != "-"]
        # Two enrollments (reentry always), two steps each: 1 and 2 days after each
        # order, 10:00 EDT.
        assert [(r["step"], r["at"]) for r in steps] == [
            ("offer", "2026-04-02T14:00:00Z"), ("follow", "2026-04-03T14:00:00Z"),
            ("offer", "2026-04-21T14:00:00Z"), ("follow", "2026-04-22T14:00:00Z")]
        outcomes = {r["outcome"] for r in steps}
        assert len(outcomes) == 1, (cid, outcomes)  # holdout is per (campaign, customer)
        assert all(r["channel"] == "email" for r in steps)
        if outcomes == {"held_out"}:
            arms["held_out"] += 1
            assert all(r["template"] == "" and r["reason"] == "holdout group" for r in steps)
            enrolled = [r for r in rs if r["outcome"] == "enrolled"]
            assert [r["reason"] for r in enrolled] == ["holdout group", "holdout group"]
            continue
        assert outcomes == {"sent"}
        offers = {r["template"] for r in steps if r["step"] == "offer"}
        follows = {r["template"] for r in steps if r["step"] == "follow"}
        assert len(offers) == 1  # the same variant in both enrollments
        assert follows == {"loyalty_offer"}  # a step the variant does not swap
        arm = "shipping" if offers == {"loyalty_offer_shipping"} else "control"
        assert offers <= {"loyalty_offer", "loyalty_offer_shipping"}
        # The same assignment preview and the pipeline use.
        assert keys.pick_variant("ab", cid, (("control", 70), ("shipping", 30))) == arm
        arms[arm] += 1
    assert len(by_customer) == n
    # Holdout 10% (sd ~1.2%), and 70/30 among the treated (sd ~2%).
    assert 0.06 < arms["held_out"] / n < 0.14, arms
    treated = arms["control"] + arms["shipping"]
    assert 0.24 < arms["shipping"] / treated < 0.36, arms
    # Goals in both arms: the second order converts the first enrollment of everyone.
    conv = [r for r in rows if r["outcome"] == "converted"]
    assert len(conv) == n and {r["at"] for r in conv} == {"2026-04-20T14:00:00Z"}


def test_goal_window_edges_and_goal_equal_to_trigger(tmp_path: Path) -> None:
    g = campaign("g", {"event": "order.delivered"}, [email(after="P1D", at="10:00")],
                 goal={"event": "order.placed", "within": "P7D"})
    loy = campaign("loy", {"event": "order.placed"}, [email(after="P1D", at="10:00")],
                   goal={"event": "order.placed", "within": "P30D"},
                   reentry={"policy": "always"})
    rows = simulate(tmp_path, [g, loy], [
        ev("a1", "order.delivered", "2026-04-01T14:00:00Z", "at-end", order="o0"),
        ev("a2", "order.placed", "2026-04-08T14:00:00Z", "at-end", order="o2"),  # +7 d
        ev("b1", "order.delivered", "2026-04-01T14:00:00Z", "past", order="o0"),
        ev("b2", "order.placed", "2026-04-08T14:00:01Z", "past", order="o2"),  # +7 d 1 s
    ])
    conv = [r for r in rows if r[4] == "converted" and r[1] == "g"]
    assert conv == [("at-end", "g", "-", "2026-04-08T14:00:00Z", "converted", "order.placed")]
    # Trigger = goal: an order never converts the enrollment it makes; the next order
    # within 30 days converts the previous one, and one 61 days later does not.
    rows = simulate(tmp_path, [loy], [
        ev("c1", "order.placed", "2026-04-01T14:00:00Z", "c", order="o1"),
        ev("c2", "order.placed", "2026-04-10T14:00:00Z", "c", order="o2"),
        ev("c3", "order.placed", "2026-06-10T14:00:00Z", "c", order="o3"),
    ])
    assert marks_of(rows, "c") == [
        ("c", "loy", "-", "2026-04-01T14:00:00Z", "enrolled", ""),
        ("c", "loy", "-", "2026-04-10T14:00:00Z", "converted", "order.placed"),
        ("c", "loy", "-", "2026-04-10T14:00:00Z", "enrolled", ""),
        ("c", "loy", "-", "2026-06-10T14:00:00Z", "enrolled", "")]


def test_exited_enrollment_still_converts_and_exit_rule_counts_from_send_time(
        tmp_path: Path) -> None:
    g = campaign("g", {"event": "order.delivered"}, [email(after="P2D", at="10:00")],
                 exit={"event": "order.returned"},
                 goal={"event": "order.placed", "within": "P30D"})
    xr = campaign("xr", {"event": "order.shipped"}, [email(after="P2D", at="10:00")],
                  exit={"rule": {">=": [{"days_since": [{"var": "customer.last_delivery_at"}]},
                                        2]}})
    rows = simulate(tmp_path, [g, xr], [
        ev("e1", "order.delivered", "2026-04-01T14:00:00Z", "c1", order="o1"),
        ev("e2", "order.returned", "2026-04-02T14:00:00Z", "c1", order="o1"),
        ev("e3", "order.placed", "2026-04-10T14:00:00Z", "c1", order="o2"),
        ev("f1", "order.shipped", "2026-04-01T14:00:00Z", "c2", order="o1"),
        ev("f2", "order.delivered", "2026-04-01T14:00:00Z", "c2", order="o1"),
    ])
    # Intent-to-treat: an enrollment that exited still counts its goal.
    assert marks_of(rows, "c1", "g") == [
        ("c1", "g", "-", "2026-04-01T14:00:00Z", "enrolled", ""),
        ("c1", "g", "-", "2026-04-02T14:00:00Z", "exited", "order.returned"),
        ("c1", "g", "-", "2026-04-10T14:00:00Z", "converted", "order.placed")]
    assert steps_of(rows, "c1", "g") == [
        ("c1", "g", "mail", "2026-04-03T14:00:00Z", "exited", "order.returned")]
    # The exit rule is checked at send time with now = the send time (2 days later).
    assert steps_of(rows, "c2", "xr") == [
        ("c2", "xr", "mail", "2026-04-03T14:00:00Z", "exited", "exit rule")]


def test_once_per_window_boundary(tmp_path: Path) -> None:
    w = campaign("w", {"event": "order.delivered"}, [email(after="P1D", at="10:00")],
                 reentry={"policy": "once_per_window", "window": "P7D"})
    rows = simulate(tmp_path, [w], [
        ev("a1", "order.delivered", "2026-04-01T14:00:00Z", "end", order="o1"),
        ev("a2", "order.delivered", "2026-04-08T14:00:00Z", "end", order="o2"),
        ev("b1", "order.delivered", "2026-04-01T14:00:00Z", "inside", order="o1"),
        ev("b2", "order.delivered", "2026-04-08T13:59:59Z", "inside", order="o2"),
        # The window counts from the last enrollment, not from the skipped attempt.
        ev("b3", "order.delivered", "2026-04-08T14:00:00Z", "inside", order="o3"),
    ])
    assert [r[3:5] for r in marks_of(rows, "end")] == [
        ("2026-04-01T14:00:00Z", "enrolled"), ("2026-04-08T14:00:00Z", "enrolled")]
    assert [r[3:] for r in marks_of(rows, "inside")] == [
        ("2026-04-01T14:00:00Z", "enrolled", ""),
        ("2026-04-08T13:59:59Z", "skipped", "enrolled within the reentry window"),
        ("2026-04-08T14:00:00Z", "enrolled", "")]


def test_step_condition_reads_customer_and_now_at_send_time(tmp_path: Path) -> None:
    first = campaign("first", {"event": "order.delivered"},
                     [email(after="P2D", at="10:00",
                            condition={"==": [{"var": "customer.order_count"}, 1]})])
    recent = {"<": [{"days_since": [{"var": "customer.last_delivery_at"}]}, 2]}
    fresh = campaign("fresh", {"event": "order.shipped"},
                     [email("day1", after="P1D", at="10:00", condition=recent),
                      email("day2", after="P2D", at="10:00", condition=recent)])
    rows = simulate(tmp_path, [first, fresh], [
        ev("a1", "order.delivered", "2026-04-01T14:00:00Z", "again", order="o1"),
        ev("a2", "order.placed", "2026-04-02T14:00:00Z", "again", order="o2"),
        ev("b1", "order.delivered", "2026-04-01T14:00:00Z", "once", order="o1"),
        ev("c0", "order.delivered", "2026-04-01T14:00:00Z", "ship", order="o1"),
        ev("c1", "order.shipped", "2026-04-01T14:00:00Z", "ship", order="o1"),
    ])
    # The profile at send time has two orders: the condition is false then.
    assert steps_of(rows, "again", "first") == [
        ("again", "first", "mail", "2026-04-03T14:00:00Z", "skipped", "step condition false")]
    assert steps_of(rows, "once", "first") == [
        ("once", "first", "mail", "2026-04-03T14:00:00Z", "sent", "")]
    # now = the send time: 1 whole day after the delivery, then 2.
    assert steps_of(rows, "ship", "fresh") == [
        ("ship", "fresh", "day1", "2026-04-02T14:00:00Z", "sent", ""),
        ("ship", "fresh", "day2", "2026-04-03T14:00:00Z", "skipped", "step condition false")]


def test_audience_is_anniversary_in_the_customers_zone(tmp_path: Path) -> None:
    c = campaign("bd-order", {"event": "order.delivered"}, [email(after="PT1H")],
                 audience={"is_anniversary": [{"var": "customer.birthday"},
                                              {"var": "customer.timezone"}]})
    rows = simulate(tmp_path, [c], [
        # 22:00 EDT on 19 May: not yet the birthday in New York (20 May in UTC).
        ev("e1", "order.delivered", "2026-05-20T02:00:00Z", "eve", order="o1",
           birthday="1990-05-20"),
        # 01:00 EDT on 20 May; +1 h is 02:00, quiet until 08:00 EDT.
        ev("e2", "order.delivered", "2026-05-20T05:00:00Z", "day", order="o1",
           birthday="1990-05-20"),
        # A 29 Feb birthday on 28 Feb 2026 (10:00 EST).
        ev("e3", "order.delivered", "2026-02-28T15:00:00Z", "leap", order="o1",
           birthday="2000-02-29"),
        # The date itself is not its own anniversary.
        ev("e4", "order.delivered", "2026-05-20T15:00:00Z", "self", order="o1",
           birthday="2026-05-20"),
        # Tokyo: 20 May 01:00 JST is 19 May 16:00Z.
        ev("e5", "order.delivered", "2026-05-19T16:00:00Z", "tokyo", tz="Asia/Tokyo",
           order="o1", birthday="1990-05-20"),
    ])
    assert [r[4:] for r in marks_of(rows, "eve")] == [("skipped", "audience rule false")]
    assert [r[4:] for r in marks_of(rows, "self")] == [("skipped", "audience rule false")]
    assert steps_of(rows, "day") == [("day", "bd-order", "mail", "2026-05-20T12:00:00Z",
                                      "sent", "")]
    assert steps_of(rows, "leap") == [("leap", "bd-order", "mail", "2026-02-28T16:00:00Z",
                                       "sent", "")]
    # 02:00 JST is quiet: 08:00 JST = 23:00Z.
    assert steps_of(rows, "tokyo") == [("tokyo", "bd-order", "mail", "2026-05-19T23:00:00Z",
                                        "sent", "")]


def test_sms_consent_granted_between_planning_and_sending(tmp_path: Path) -> None:
    c = campaign("ck", {"event": "order.delivered"}, [sms(after="P1D", at="10:00")])
    rows = simulate(tmp_path, [c], [
        ev("e1", "order.delivered", "2026-04-01T14:00:00Z", "c1", order="o1", consent=None),
        ev("e2", "customer.updated", "2026-04-01T20:00:00Z", "c1", consent={"sms": True}),
        ev("f1", "order.delivered", "2026-04-01T14:00:00Z", "c2", order="o1", consent=None),
        ev("f2", "customer.updated", "2026-04-02T14:00:01Z", "c2", consent={"sms": True}),
    ])
    assert steps_of(rows, "c1") == [("c1", "ck", "checkin", "2026-04-02T14:00:00Z", "sent", "")]
    # Granted one second after the send time: too late for this step.
    assert steps_of(rows, "c2") == [("c2", "ck", "checkin", "2026-04-02T14:00:00Z",
                                     "suppressed", "no sms consent on record")]


def test_default_timezone_for_dates_and_quiet_hours(tmp_path: Path) -> None:
    now = campaign("now", {"event": "order.delivered"}, [email()])
    rows = simulate(tmp_path, [bday("bday"), now], [
        ev("e1", "customer.updated", "2026-04-01T14:00:00Z", "c1", tz=None,
           birthday="1990-05-20"),
        # 22:00 JST: quiet until 08:00 JST on 2 Apr = 23:00Z on 1 Apr.
        ev("e2", "order.delivered", "2026-04-01T13:00:00Z", "c2", tz=None, order="o1"),
    ], "--to", "2026-06-01", "--timezone", "Asia/Tokyo")
    assert steps_of(rows, "c1") == [
        ("c1", "bday", "greeting", "2026-05-20T01:00:00Z", "sent", "")]  # 10:00 JST
    assert steps_of(rows, "c2") == [("c2", "now", "mail", "2026-04-01T23:00:00Z", "sent", "")]


def test_from_to_boundaries_and_steps_pending_at_to(tmp_path: Path) -> None:
    c = campaign("ck", {"event": "order.delivered"},
                 [email("a", after="PT1H"), email("b", after="P1D", at="11:00")])
    events = [
        ev("e1", "order.delivered", "2026-04-01T14:00:00Z", "at-from", order="o1"),
        ev("e2", "order.delivered", "2026-04-01T13:59:59Z", "before", order="o2"),
        ev("e3", "order.delivered", "2026-04-02T14:00:00Z", "at-to", order="o3"),
    ]
    window = ("--from", "2026-04-01T14:00:00Z", "--to", "2026-04-02T14:00:00Z")
    rows = simulate(tmp_path, [c], events, *window)
    # --from is inclusive and --to exclusive for events.
    assert {r[0] for r in rows} == {"at-from"}
    # Step b is due at 11:00 EDT on 2 Apr (15:00Z), after --to: not decided, pending.
    assert steps_of(rows, "at-from") == [
        ("at-from", "ck", "a", "2026-04-01T15:00:00Z", "sent", "")]
    cdir, log = write_case(tmp_path, [c], events)
    table = run_cli(cdir, log, *window, fmt="table")
    assert "1 events (0 duplicates, 0 bad)" in table
    assert "1 still pending" in table


def test_birthday_changed_after_or_before_this_years_greeting(tmp_path: Path) -> None:
    rows = simulate(tmp_path, [bday("bday")], [
        ev("a1", "customer.updated", "2026-04-01T14:00:00Z", "later", birthday="1990-05-20"),
        # After this year's greeting: the new date is still ahead this year.
        ev("a2", "customer.updated", "2026-07-01T14:00:00Z", "later", birthday="1990-09-10"),
        ev("b1", "customer.updated", "2026-04-01T14:00:00Z", "earlier", birthday="1990-05-20"),
        # Before it, to a date already past this year: next year's.
        ev("b2", "customer.updated", "2026-04-15T14:00:00Z", "earlier", birthday="1990-03-10"),
    ], "--to", "2027-07-01")
    assert steps_of(rows, "later") == [
        ("later", "bday", "greeting", "2026-05-20T14:00:00Z", "sent", ""),
        ("later", "bday", "greeting", "2026-09-10T14:00:00Z", "sent", ""),
        # The old date's next occurrence, planned when this year's was decided.
        ("later", "bday", "greeting", "2027-05-20T14:00:00Z", "cancelled", "date changed")]
    assert steps_of(rows, "earlier") == [
        ("earlier", "bday", "greeting", "2026-05-20T14:00:00Z", "cancelled", "date changed"),
        ("earlier", "bday", "greeting", "2027-03-10T15:00:00Z", "sent", "")]  # EST
    assert ("earlier", "bday", "-", "2026-04-15T14:00:00Z", "planned",
            "birthday:1990-03-10:2027") in rows


def test_exit_after_the_last_step_changes_no_decision(tmp_path: Path) -> None:
    c = campaign("ck", {"event": "order.delivered"}, [sms(after="P1D", at="10:00")],
                 exit={"events": ["order.returned", "customer.complained"]})
    rows = simulate(tmp_path, [c], [
        ev("e1", "order.delivered", "2026-04-01T14:00:00Z", "c1", order="o1"),
        ev("e2", "order.returned", "2026-04-05T14:00:00Z", "c1", order="o1"),
        ev("e3", "customer.complained", "2026-04-06T14:00:00Z", "c1"),
    ])
    assert steps_of(rows, "c1") == [("c1", "ck", "checkin", "2026-04-02T14:00:00Z", "sent", "")]
    assert len([r for r in marks_of(rows, "c1") if r[4] == "exited"]) <= 1


def test_channel_and_template_columns_by_outcome(tmp_path: Path) -> None:
    c = campaign("ck", {"event": "order.delivered"},
                 [sms(after="P1D", at="10:00"), email("tip", after="P3D", at="10:00")],
                 exit={"event": "order.returned"})
    rows = simulate_dicts(tmp_path, [c], [
        ev("e1", "order.delivered", "2026-04-01T14:00:00Z", "c1", order="o1",
           consent={"sms": False, "email": True}),
        ev("e2", "order.returned", "2026-04-03T14:00:00Z", "c1", order="o1"),
    ])
    got = [(r["step"], r["outcome"], r["channel"], r["template"]) for r in rows]
    # docs: channel is the step's, template only on sent rows, both empty on
    # enrollment rows and on steps cancelled at ingest.
    assert got == [("-", "enrolled", "", ""),
                   ("checkin", "suppressed", "sms", ""),
                   ("-", "exited", "", ""),
                   ("tip", "exited", "", "")]


def test_priority_does_not_change_decisions_or_row_order(tmp_path: Path) -> None:
    hi = campaign("z-first", {"event": "order.delivered"}, [email(after="P1D", at="10:00")],
                  priority=1)
    lo = campaign("a-last", {"event": "order.delivered"}, [email(after="P1D", at="10:00")],
                  priority=900)
    rows = simulate(tmp_path, [hi, lo], [
        ev("e1", "order.delivered", "2026-04-01T14:00:00Z", "c1", order="o1"),
    ])
    # Both enroll and send; rows are sorted by time, customer, campaign, step.
    assert rows == [
        ("c1", "a-last", "-", "2026-04-01T14:00:00Z", "enrolled", ""),
        ("c1", "z-first", "-", "2026-04-01T14:00:00Z", "enrolled", ""),
        ("c1", "a-last", "mail", "2026-04-02T14:00:00Z", "sent", ""),
        ("c1", "z-first", "mail", "2026-04-02T14:00:00Z", "sent", "")]


def test_same_event_id_with_different_content_is_processed_once(tmp_path: Path) -> None:
    c = campaign("ck", {"event": "order.delivered"}, [email(after="P1D", at="10:00")])
    rows = simulate(tmp_path, [c], [
        ev("x", "order.delivered", "2026-04-05T14:00:00Z", "c1", order="o2"),
        ev("x", "order.delivered", "2026-04-01T14:00:00Z", "c1", order="o1"),
    ])
    # Counted once; the log is replayed in time order, so the earlier one is kept.
    assert rows == [("c1", "ck", "-", "2026-04-01T14:00:00Z", "enrolled", ""),
                    ("c1", "ck", "mail", "2026-04-02T14:00:00Z", "sent", "")]


# ---------------------------------------------------------------- --workers 2 vs 1

def _crafted_events() -> list[dict[str, Any]]:
    """The edge cases above in one log (customers named apart from the padding)."""
    return [
        ev("k1", "order.placed", "2026-04-01T14:00:00Z", "k-nudge", order="o1"),
        ev("k2", "customer.updated", "2026-04-01T14:00:00Z", "k-bday", birthday="1990-05-20"),
        ev("k3", "customer.complained", "2026-05-20T09:00:00Z", "k-bday"),
        ev("k4", "customer.updated", "2026-04-01T14:00:00Z", "k-move", birthday="1990-05-20"),
        ev("k5", "customer.updated", "2026-05-01T14:00:00Z", "k-move", tz="Asia/Tokyo"),
        ev("k6", "order.delivered", "2026-04-01T14:00:00Z", "k-ret", order="o1"),
        ev("k7", "order.returned", "2026-04-02T14:00:00Z", "k-ret", order="o1"),
        ev("k8", "order.placed", "2026-01-05T09:00:00Z", "k-idle", tz=None, order="o1"),
        ev("k9", "order.delivered", "2026-04-01T14:00:00Z", "k-stop", order="o1"),
        ev("k10", "customer.updated", "2026-04-02T12:00:00Z", "k-stop",
           consent={"sms": False}),
        # The same id twice for one customer, with different content.
        ev("k11", "order.delivered", "2026-04-05T14:00:00Z", "k-dup", order="o2"),
        ev("k11", "order.delivered", "2026-04-01T14:00:00Z", "k-dup", order="o1"),
        "not json",
    ]


def _workers_campaigns() -> list[dict[str, Any]]:
    return [
        _ab_campaign(),
        campaign("nudge", {"event": "order.placed"}, [email(after="P3D", at="10:00")],
                 exit={"event": "order.placed"}),
        bday("bday", exit={"event": "customer.complained"},
             goal={"event": "order.placed", "within": "P30D"}),
        campaign("ck", {"event": "order.delivered"}, [sms(after="P2D", at="10:00")],
                 exit={"event": "order.returned"}, holdout_percent=10),
        campaign("wb", {"idle": "P120D"},
                 [{"id": "miss-you", "at": "10:30", "channel": "email",
                   "template": "win_back"}], goal={"event": "order.placed", "within": "P30D"}),
    ]


def test_two_workers_print_the_same_bytes_as_one(tmp_path: Path) -> None:
    from chalicelib.cli.main import _load
    from chalicelib.journeys.engine import CampaignSet
    from chalicelib.journeys.parallel import simulate_file

    events: list[dict[str, Any] | str] = [*_crafted_events(), *_ab_events(1100, "pad")]
    assert len(events) > 2000
    cdir, log = write_case(tmp_path, _workers_campaigns(), events)
    for fmt in ("json", "csv", "table"):
        one = run_cli(cdir, log, fmt=fmt, workers="1")
        two = run_cli(cdir, log, fmt=fmt, workers="2")
        assert one == two, fmt
    assert len(one.splitlines()) > 5000
    bundles, problems = _load([cdir], TEMPLATES)
    assert not [p for p in problems if p.severity == "error"]
    result = simulate_file(log, CampaignSet(b.compiled() for b in bundles), workers=2)
    assert (result.workers_used, result.fallback) == (2, "")
    # An event id shared by two customers: the guard falls back, the bytes agree.
    shared = [*events, ev("pad-0-1", "order.placed", "2026-04-03T14:00:00Z", "k-other",
                          order="o9")]
    (tmp_path / "shared").mkdir()
    cdir2, log2 = write_case(tmp_path / "shared", _workers_campaigns(), shared)
    assert run_cli(cdir2, log2, workers="1") == run_cli(cdir2, log2, workers="2")
