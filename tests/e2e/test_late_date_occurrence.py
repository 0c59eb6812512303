"""A yearly occurrence planned late: the date (a birthday) becomes known after the
occurrence started, by an event that (or after an event that) is one of the
campaign's exit or goal events (review, session 14).

Its steps' exit check at send time counted that exit event (it follows the
occurrence's start, local midnight of the date), while ingest did not: the steps were
exited one by one when due, with no ``exited`` row and the next year planned only
then, where a date known earlier was exited at once. Likewise a goal event between
the start and the event that made the date known did not convert it. Now both count
when the occurrence is planned, as they would have had the date been known, and the
answer no longer depends on when the date became known.
"""

from __future__ import annotations

import contextlib
import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chalicelib.cli.main import main
from chalicelib.config.compiled import compile_campaign
from chalicelib.config.model import Campaign
from chalicelib.events import parse_event
from chalicelib.journeys.engine import CampaignSet, process_event
from chalicelib.local.stack import LocalStack
from tests.conftest import ROOT
from tests.e2e.test_differential_random import run_both, write_set
from tests.integration.test_audit_stats import rows as stat_rows

END = datetime(2026, 6, 1, tzinfo=UTC)
# 2026-05-20 in New York starts at 04:00Z; the steps are due at 10:00 local (14:00Z).
BIRTHDAY_CUSTOMER = {"id": "g", "email": "g@example.com", "timezone": "America/New_York",
                     "consent": {"email": True}, "birthday": "1990-05-20"}
ORDER = {"id": "o1", "total": 100.0, "currency": "USD",
         "items": [{"sku": "KX-200", "name": "Kettle", "category": "appliance",
                    "quantity": 1, "price": 100.0}]}


def birthday_campaign(**extra: Any) -> dict[str, Any]:
    return {"id": "bday", "name": "Birthday offer", "trigger": {"date": "customer.birthday"},
            "steps": [{"id": "g1", "at": "10:00", "channel": "email", "template": "anniversary"},
                      {"id": "g2", "after": "P2D", "at": "10:00", "channel": "email",
                       "template": "anniversary"}],
            **extra}


def event(eid: str, etype: str, at: str, customer: dict[str, Any],
          **rest: Any) -> dict[str, Any]:
    return {"id": eid, "type": etype, "occurred_at": at, "customer": customer, **rest}


def simulate_rows(folder: Path, events: list[dict[str, Any]], tmp_path: Path
                  ) -> list[tuple[str, str, str, str]]:
    """``aftercare simulate --format json``: (step, at, outcome, reason) of every row."""
    log = tmp_path / "events.jsonl"
    log.write_text("".join(json.dumps(e) + "\n" for e in events))
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(["simulate", "--events", str(log), "--to", "2026-06-01", "--format",
                     "json", "--campaigns", str(folder), "--templates", str(ROOT / "templates")])
    assert code == 0
    return [(r["step"], r["at"], r["outcome"], r["reason"])
            for r in map(json.loads, buf.getvalue().splitlines())]


EXIT_LEARNT_WITH_THE_DATE = [
    event("p", "order.placed", "2026-05-20T15:00:00Z", BIRTHDAY_CUSTOMER, order=ORDER)]
EXIT_AFTER_THE_DATE_WAS_KNOWN = [
    event("u0", "customer.updated", "2026-05-01T15:00:00Z", BIRTHDAY_CUSTOMER),
    *EXIT_LEARNT_WITH_THE_DATE]


def test_an_exit_event_that_brings_the_date_ends_the_occurrence_at_once(
        stack: LocalStack, tmp_path: Path) -> None:
    folder = write_set([birthday_campaign(exit={"event": "order.placed"})],
                       tmp_path / "campaigns")
    # 11:00 local on the birthday, the customer orders: the greeting due at 10:00,
    # learnt an hour late, is not sent after the order that ends the campaign.
    assert simulate_rows(folder, EXIT_LEARNT_WITH_THE_DATE, tmp_path) == [
        ("-", "2026-05-20T15:00:00Z", "planned", "birthday:1990-05-20:2026"),
        ("-", "2026-05-20T15:00:00Z", "exited", "order.placed"),
        ("-", "2026-05-20T15:00:00Z", "planned", "birthday:1990-05-20:2027"),
    ]
    # Known before: the greeting went out at 10:00, and the same order ends the
    # occurrence at the event, the same way (exited row, next year planned at once).
    assert simulate_rows(folder, EXIT_AFTER_THE_DATE_WAS_KNOWN, tmp_path) == [
        ("-", "2026-05-01T15:00:00Z", "planned", "birthday:1990-05-20:2026"),
        ("g1", "2026-05-20T14:00:00Z", "sent", ""),
        ("-", "2026-05-20T15:00:00Z", "exited", "order.placed"),
        ("-", "2026-05-20T15:00:00Z", "planned", "birthday:1990-05-20:2027"),
        ("g2", "2026-05-22T14:00:00Z", "exited", "order.placed"),
    ]
    # The pipeline decides the same (no step planned for 2026), and counts the
    # occurrence enrolled once, on its day, as an occurrence exited later is (and
    # next year's, planned now, on its own day).
    simulated, piped = run_both(stack, folder, EXIT_LEARNT_WITH_THE_DATE, END)
    assert simulated == piped == []
    assert stat_rows("bday") == {("-", "treatment", "2026-05-20"): {"enrolled": 1},
                                 ("-", "treatment", "2027-05-20"): {"enrolled": 1}}


def test_a_goal_seen_before_the_date_was_known_converts_the_occurrence(
        stack: LocalStack, tmp_path: Path) -> None:
    folder = write_set([birthday_campaign(goal={"event": "order.placed", "within": "P7D"})],
                       tmp_path / "campaigns")
    anonymous = {k: v for k, v in BIRTHDAY_CUSTOMER.items() if k != "birthday"}
    events = [event("p", "order.placed", "2026-05-20T15:00:00Z", anonymous, order=ORDER),
              event("u", "customer.updated", "2026-05-20T16:00:00Z", BIRTHDAY_CUSTOMER)]
    rows = simulate_rows(folder, events, tmp_path)
    assert ("-", "2026-05-20T15:00:00Z", "converted", "order.placed") in rows
    # Not an exit: the greeting still goes, late (learnt after its 10:00).
    assert [r for r in rows if r[0] != "-"] == [
        ("g1", "2026-05-20T16:00:00Z", "sent", ""), ("g2", "2026-05-22T14:00:00Z", "sent", "")]
    simulated, piped = run_both(stack, folder, events, END)
    assert simulated == piped
    # Sends count on the day sent; next year's occurrence, planned by the decision
    # on the last step, on its own day.
    assert stat_rows("bday") == {
        ("-", "treatment", "2026-05-20"): {"enrolled": 1, "converted": 1, "sent": 1},
        ("-", "treatment", "2026-05-22"): {"sent": 1},
        ("-", "treatment", "2027-05-20"): {"enrolled": 1}}


def _compiled(definition: dict[str, Any]) -> CampaignSet:
    return CampaignSet([compile_campaign(Campaign.model_validate(definition))])


def test_the_exit_reason_is_the_first_listed_exit_event_that_applies() -> None:
    """Two exit events after the start: the reason is the first in the campaign's
    order (a set's order changes with the process's hash seed)."""
    customer = {**BIRTHDAY_CUSTOMER}
    del customer["birthday"]
    events = [parse_event(e) for e in (
        event("p", "order.placed", "2026-05-20T15:00:00Z", customer, order=ORDER),
        event("u", "customer.updated", "2026-05-20T15:30:00Z", customer),
        event("b", "customer.updated", "2026-05-20T16:00:00Z", {**BIRTHDAY_CUSTOMER}))]
    for listed in (["order.placed", "customer.updated"], ["customer.updated", "order.placed"]):
        campaigns = _compiled(birthday_campaign(exit={"events": listed}))
        profile = None
        for e in events:
            result = process_event(e, profile, campaigns)
            profile = result.profile
        assert [r.reason for r in result.rows if r.outcome == "exited"] == [listed[0]]
        assert not result.planned or result.planned[0].ref.endswith(":2027")
        assert [s.ref for s in result.ended] == ["birthday:1990-05-20:2026"]


def _run(campaigns: CampaignSet, events: list[dict[str, Any]]) -> list[Any]:
    """process_event over ``events`` in the given order: every result."""
    profile = None
    results = []
    for e in events:
        result = process_event(parse_event(e), profile, campaigns)
        profile = result.profile
        results.append(result)
    return results


def test_a_date_changed_and_changed_back_on_the_day_counts_its_goal_and_exit_once(
        stack: LocalStack, tmp_path: Path) -> None:
    """The occurrence planned again (its date came back) was counted when first
    planned: no second conversion, no second exit (review, session 14)."""
    events = [event("u0", "customer.updated", "2026-05-01T15:00:00Z", BIRTHDAY_CUSTOMER),
              event("p", "order.placed", "2026-05-20T15:00:00Z", BIRTHDAY_CUSTOMER,
                    order=ORDER),
              event("u1", "customer.updated", "2026-05-20T16:00:00Z",
                    {**BIRTHDAY_CUSTOMER, "birthday": "1990-07-01"}),
              event("u2", "customer.updated", "2026-05-20T17:00:00Z", BIRTHDAY_CUSTOMER)]
    goal = birthday_campaign(goal={"event": "order.placed", "within": "P7D"})
    results = _run(_compiled(goal), events)
    assert sum(len(r.conversions) for r in results) == 1
    exit_ = birthday_campaign(exit={"event": "order.placed"})
    results = _run(_compiled(exit_), events)
    assert [(e["id"], row.outcome) for e, r in zip(events, results, strict=True)
            for row in r.rows if row.outcome == "exited"] == [("p", "exited")]
    assert not any(r.ended for r in results)
    folder = write_set([goal], tmp_path / "campaigns")
    simulated, piped = run_both(stack, folder, events, END)
    assert simulated == piped
    assert stat_rows("bday")[("-", "treatment", "2026-05-20")]["converted"] == 1


def test_an_exit_processed_before_the_date_is_known_counts_whatever_its_time() -> None:
    """Had the date been known, the order (processed first, at 20:00) would have
    exited the occurrence at once; learnt later in the log at 16:00, the same."""
    customer = {k: v for k, v in BIRTHDAY_CUSTOMER.items() if k != "birthday"}
    results = _run(_compiled(birthday_campaign(exit={"event": "order.placed"})), [
        event("p", "order.placed", "2026-05-20T20:00:00Z", customer, order=ORDER),
        event("u", "customer.updated", "2026-05-20T16:00:00Z", BIRTHDAY_CUSTOMER)])
    assert [(row.outcome, row.reason) for row in results[1].rows] == [
        ("planned", "birthday:1990-05-20:2026"), ("exited", "order.placed"),
        ("planned", "birthday:1990-05-20:2027")]


def test_a_backfill_writes_an_occurrence_it_ends_at_once(
        stack: LocalStack, tmp_path: Path) -> None:
    """Ended at once, and next year's audience false: nothing planned, but the
    exited occurrence is recorded and counted (review, session 14)."""
    from chalicelib import clock
    from chalicelib.pipeline.backfill import FileCheckpoint, run_backfill
    from chalicelib.store.models import CustomerModel

    try:
        clock.set_now(datetime(2026, 5, 20, 13, 30, tzinfo=UTC))
        stack.ingest([event("p", "order.placed", "2026-05-20T13:00:00Z", BIRTHDAY_CUSTOMER,
                            order=ORDER)])
        under_37 = {"<": [{"years_since": [{"var": "customer.birthday"}]}, 37]}
        folder = write_set([birthday_campaign(exit={"event": "order.placed"},
                                              audience=under_37)], tmp_path / "campaigns")
        stack.push_campaigns(folder, ROOT / "templates")
        clock.set_now(datetime(2026, 5, 20, 16, 0, tzinfo=UTC))
        run_backfill(FileCheckpoint(tmp_path / "backfill.json"))
        record = CustomerModel.get("g").profile["enrollments"]["bday"]
        assert (record["ref"], record["exited"]) == ("birthday:1990-05-20:2026",
                                                     "2026-05-20T16:00:00Z")
        assert stat_rows("bday") == {("-", "treatment", "2026-05-20"): {"enrolled": 1}}
    finally:
        clock.set_now(None)
