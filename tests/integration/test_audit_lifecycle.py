"""Audit of the campaign lifecycle: push (validation, versions, backfill), status
(draft, paused, archived), new versions of a campaign and the Lambdas' live cache.

Expectations come from DESIGN.md, README.md and docs/ (campaigns.md: "New versions
of a campaign", `status`; templates.md: templates are stored with the version),
not from the code. A case where the code disagrees with the docs is kept as a
strict xfail whose reason starts with DEFECT.

Everything goes through the real paths: ``aftercare push`` / ``import`` (the CLI's
``main``), the handlers on the local stack (moto, the local Twilio server), and the
sender's view of live campaigns through ``handlers.live()``.
"""

from __future__ import annotations

import json
import types
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from chalicelib import clock, handlers
from chalicelib.cli.main import main
from chalicelib.local.stack import LocalStack
from chalicelib.pipeline import send as send_module
from chalicelib.store.campaigns import load_live
from chalicelib.store.models import CampaignModel, MessageModel, ScheduleModel, StatsModel
from tests.conftest import delivered

DELIVERED = datetime(2026, 3, 1, 14, 3, tzinfo=UTC)  # the fixture delivery, 09:02 New York
DUE_1 = datetime(2026, 3, 3, 15, 0, tzinfo=UTC)  # P2D at 10:00 New York (EST)
DUE_2 = datetime(2026, 3, 5, 15, 0, tzinfo=UTC)  # P4D at 10:00 New York (EST)
IMPORTED = datetime(2026, 4, 1, 12, 0, tzinfo=UTC)

NOTE_V1 = 'Hi {{ customer.name|first_name("there") }}, note version one. Reply STOP to opt out.'
NOTE_V2 = 'Hi {{ customer.name|first_name("there") }}, note version two. Reply STOP to opt out.'
NOTE_EMAIL = (
    '{% block subject %}A note for {{ customer.name|first_name("you") }}{% endblock %}\n'
    '{% block html %}<p>Email note.</p><p><a href="{{ links.unsubscribe }}">Unsubscribe'
    '</a></p>{% endblock %}\n'
    '{% block text %}Email note.\nUnsubscribe: {{ links.unsubscribe }}{% endblock %}\n')
BDAY_V1 = (
    'Happy birthday {{ customer.name|first_name("friend") }}, wish one. Reply STOP to opt out.')
BDAY_V2 = (
    'Happy birthday {{ customer.name|first_name("friend") }}, wish two. Reply STOP to opt out.')


# -- helpers ---------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def fresh_renderers(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sender keeps renderers per (campaign, version) for the process: each test's
    stack starts at version 1 again, so it must not see another test's templates."""
    monkeypatch.setattr(send_module, "_renderers", {})


class Workspace:
    """A campaigns folder and a templates folder a marketer edits and pushes."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.campaigns = root / "campaigns"
        self.templates = root / "templates"
        self.campaigns.mkdir(parents=True)
        self.templates.mkdir()
        self.checkpoint = root / "backfill.json"

    def campaign(self, doc: dict[str, Any], name: str | None = None) -> Path:
        path = self.campaigns / f"{name or doc['id']}.json"
        path.write_text(json.dumps(doc, indent=1))
        return path

    def template(self, filename: str, source: str) -> None:
        (self.templates / filename).write_text(source)

    def push(self, *paths: Path, backfill: bool = True) -> int:
        args = ["push", *(str(p) for p in (paths or (self.campaigns,))),
                "--templates", str(self.templates), "--checkpoint", str(self.checkpoint)]
        return main(args if backfill else [*args, "--no-backfill"])


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return Workspace(tmp_path / "ws")


def note_campaign(cid: str = "note", *, status: str = "active",
                  steps: list[dict[str, Any]] | None = None, **more: Any) -> dict[str, Any]:
    """An event campaign: an SMS two days after delivery at 10:00 (local)."""
    return {"id": cid, "name": f"Campaign {cid}", "status": status,
            "trigger": {"event": "order.delivered"},
            "steps": steps or [{"id": "first", "after": "P2D", "at": "10:00",
                                "channel": "sms", "template": "note"}],
            **more}


def birthday_campaign(cid: str = "bday", *, status: str = "active",
                      template: str = "bday") -> dict[str, Any]:
    return {"id": cid, "name": "Birthday", "status": status,
            "trigger": {"date": "customer.birthday"},
            "steps": [{"id": "greeting", "at": "10:00", "channel": "sms",
                       "template": template}]}


def live_now() -> None:
    """What a Lambda container started after the push sees (no warm cache)."""
    handlers.live().invalidate()


def steps_of(campaign: str) -> list[ScheduleModel]:
    return [s for s in ScheduleModel.scan() if s.step["campaign_id"] == campaign]


def step_item(campaign: str, step_id: str, customer: str = "c-42") -> ScheduleModel:
    found = [s for s in steps_of(campaign)
             if s.step["step_id"] == step_id and s.step["customer_id"] == customer]
    assert len(found) == 1, found
    return found[0]


def stat_sum(campaign: str, counter: str) -> int:
    return sum(int(getattr(s, counter) or 0) for s in StatsModel.scan()
               if s.pk.startswith(f"{campaign}#"))


def sms_bodies(stack: LocalStack) -> list[str]:
    return [r["Body"][0] for r in stack.twilio.create_requests]


def sms_to(stack: LocalStack) -> list[str]:
    return [r["To"][0] for r in stack.twilio.create_requests]


def versions(campaign: str) -> list[int]:
    return sorted(int(m.version) for m in CampaignModel.query(campaign))


def live_ids() -> set[str]:
    return {c.id for c in load_live().campaigns.all}


def enrol(stack: LocalStack, cid: str = "c-42", eid: str | None = None,
          at: datetime = DELIVERED, birthday: str | None = None) -> None:
    """The fixture delivery for ``cid`` at ``at`` (without its birthday, unless given)."""
    clock.set_now(at)
    event = delivered(eid or f"evt-{cid}-{at:%m%d%H%M}", cid)
    event["occurred_at"] = at.strftime("%Y-%m-%dT%H:%M:%SZ")
    event["customer"].pop("birthday")
    if birthday is not None:
        event["customer"]["birthday"] = birthday
    if cid != "c-42":  # each customer their own phone and email
        n = sum(map(ord, cid)) % 10000
        event["customer"] = {**event["customer"], "phone": f"+1415555{n:04d}",
                             "email": f"{cid}@example.com"}
    stack.ingest([event])


def setup_note(stack: LocalStack, ws: Workspace, template: str = NOTE_V1,
               **campaign: Any) -> None:
    """Push the note campaign (v1) and enrol c-42 by the fixture delivery."""
    ws.template("note.sms.j2", template)
    ws.campaign(note_campaign(**campaign))
    assert ws.push() == 0
    live_now()
    enrol(stack)
    assert len(steps_of(campaign.get("cid", "note"))) >= 1


# -- 1. push validation: refused with the path, nothing of it live -----------------------


def test_an_unknown_field_is_refused_with_its_path_and_nothing_is_stored(
        stack: LocalStack, ws: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    ws.template("note.sms.j2", NOTE_V1)
    doc = note_campaign()
    doc["steps"][0]["dealy"] = "P1D"
    path = ws.campaign(doc)
    assert ws.push() == 1
    err = capsys.readouterr().err
    assert f"{path}: $.steps[0].dealy: unknown field" in err
    assert "nothing pushed" in err
    assert list(CampaignModel.scan()) == [] and live_ids() == set()
    live_now()
    enrol(stack)
    assert ScheduleModel.count() == 0


def test_a_template_with_an_undefined_variable_is_refused_at_push_with_file_and_line(
        stack: LocalStack, ws: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    ws.template("note.sms.j2", "Hi {{ customer.name }},\nyour {{ customer.nickname }}. "
                "Reply STOP to opt out.")
    ws.campaign(note_campaign())
    assert ws.push() == 1
    err = capsys.readouterr().err
    line = next(x for x in err.splitlines() if "nickname" in x)
    assert line.startswith(f"{ws.templates}/note.sms.j2: line 2:"), err
    assert list(CampaignModel.scan()) == [] and live_ids() == set()


def test_a_missing_template_is_refused_with_the_step_path(
        stack: LocalStack, ws: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    ws.template("note.sms.j2", NOTE_V1)
    doc = note_campaign(steps=[{"id": "first", "after": "P2D", "channel": "sms",
                                "template": "no_such"}])
    path = ws.campaign(doc)
    assert ws.push() == 1
    assert f"{path}: $.steps[0].template: no sms template 'no_such'" in capsys.readouterr().err
    assert list(CampaignModel.scan()) == []


def test_one_broken_file_of_several_pushes_none_of_them(
        stack: LocalStack, ws: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    ws.template("note.sms.j2", NOTE_V1)
    ws.template("bday.sms.j2", BDAY_V1)
    ws.campaign(note_campaign("good"))
    ws.campaign(birthday_campaign("also-good"))
    bad = note_campaign("bad")
    bad["holdout_percent"] = "10"  # a string: refused, types are not coerced
    bad_path = ws.campaign(bad)
    assert ws.push() == 1
    err = capsys.readouterr().err
    assert f"{bad_path}: $.holdout_percent:" in err
    assert list(CampaignModel.scan()) == [] and live_ids() == set()
    # Nothing of the good files went live either: no enrolment, no backfill.
    live_now()
    enrol(stack, birthday="1980-05-20")
    assert ScheduleModel.count() == 0


def test_an_invalid_new_version_leaves_the_live_version_and_its_templates(
        stack: LocalStack, ws: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    setup_note(stack, ws)
    ws.template("note.sms.j2", "Hi {{ customer.name ")  # a syntax error
    ws.campaign(note_campaign(steps=[{"id": "first", "after": "P1D", "at": "10:00",
                                      "channel": "sms", "template": "note"}]))
    assert ws.push() == 1
    assert f"{ws.templates}/note.sms.j2: line 1:" in capsys.readouterr().err
    assert versions("note") == [1]
    live_now()
    assert [c.version for c in load_live().campaigns.all] == [1]
    stack.run_due(DUE_1)
    assert len(sms_bodies(stack)) == 1 and "note version one" in sms_bodies(stack)[0]


# -- 2. status: draft, paused, archived ----------------------------------------------------


def test_a_draft_is_never_live_nor_backfilled(
        stack: LocalStack, ws: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    clock.set_now(IMPORTED)
    rows = ws.root / "customers.jsonl"
    rows.write_text(json.dumps({"id": "k-1", "phone": "+14155550101", "birthday": "1980-05-20",
                                "timezone": "America/New_York", "consent": {"sms": True},
                                "updated_at": "2026-03-31T00:00:00Z"}) + "\n")
    assert main(["import", "customers", str(rows)]) == 0
    ws.template("note.sms.j2", NOTE_V1)
    ws.template("bday.sms.j2", BDAY_V1)
    ws.campaign(note_campaign(status="draft"))
    ws.campaign(birthday_campaign(status="draft"))
    assert ws.push() == 0
    assert "backfill: 0 customers, 0 steps planned" in capsys.readouterr().out
    assert versions("note") == [1] and versions("bday") == [1]
    live_now()
    assert live_ids() == set()
    enrol(stack, at=IMPORTED)
    assert ScheduleModel.count() == 0
    stack.run_due(datetime(2026, 5, 21, tzinfo=UTC))
    assert stack.twilio.create_requests == []


@pytest.mark.parametrize("status", ["paused", "archived"])
def test_a_campaign_no_longer_active_cancels_its_pending_step_at_send_time(
        stack: LocalStack, ws: Workspace, status: str) -> None:
    setup_note(stack, ws)
    item = step_item("note", "first")
    assert item.status == "pending"
    ws.campaign(note_campaign(status=status))
    assert ws.push() == 0
    live_now()
    # Pausing leaves the step pending: it is cancelled when due, not before.
    assert ScheduleModel.get(item.schedule_id).status == "pending"
    stack.run_due(DUE_1)
    assert stack.twilio.create_requests == []
    after = ScheduleModel.get(item.schedule_id)
    assert (after.status, after.outcome) == ("done", "cancelled")
    assert after.due_shard is None and after.pending_campaign is None
    assert MessageModel.get(item.schedule_id).outcome == "cancelled"
    assert stat_sum("note", "cancelled") == 1 and stat_sum("note", "sent") == 0


@pytest.mark.parametrize("status", ["paused", "archived"])
def test_a_campaign_no_longer_active_enrols_nobody(
        stack: LocalStack, ws: Workspace, status: str) -> None:
    setup_note(stack, ws)
    ws.campaign(note_campaign(status=status))
    assert ws.push() == 0
    live_now()
    enrol(stack, "c-7", at=datetime(2026, 3, 2, 14, 0, tzinfo=UTC))
    assert {s.step["customer_id"] for s in steps_of("note")} == {"c-42"}
    assert stat_sum("note", "enrolled") == 1


def test_resuming_before_the_send_time_sends_the_pending_step_once(
        stack: LocalStack, ws: Workspace) -> None:
    setup_note(stack, ws)
    ws.campaign(note_campaign(status="paused"))
    assert ws.push() == 0
    live_now()
    clock.set_now(datetime(2026, 3, 2, 12, 0, tzinfo=UTC))
    ws.campaign(note_campaign(status="active"))
    assert ws.push() == 0
    live_now()
    assert versions("note") == [1, 2, 3]
    stack.run_due(DUE_1)
    stack.run_due(DUE_2)
    assert len(sms_bodies(stack)) == 1
    assert step_item("note", "first").outcome == "sent"
    assert stat_sum("note", "enrolled") == 1 and stat_sum("note", "sent") == 1


def test_resuming_after_the_send_time_does_not_send_the_cancelled_step(
        stack: LocalStack, ws: Workspace) -> None:
    setup_note(stack, ws)
    ws.campaign(note_campaign(status="paused"))
    assert ws.push() == 0
    live_now()
    stack.run_due(DUE_1)
    ws.campaign(note_campaign(status="active"))
    assert ws.push() == 0
    live_now()
    stack.run_due(DUE_2)
    stack.run_due(datetime(2026, 3, 10, 15, 0, tzinfo=UTC))
    assert stack.twilio.create_requests == []
    assert step_item("note", "first").outcome == "cancelled"
    # Active again, it enrols new deliveries.
    enrol(stack, "c-8", at=datetime(2026, 3, 10, 15, 0, tzinfo=UTC))
    stack.run_due(datetime(2026, 3, 13, 15, 0, tzinfo=UTC))  # P2D at 10:00 (EDT)
    assert len(stack.twilio.create_requests) == 1


def test_a_pause_reaches_a_step_already_claimed_by_the_tick(
        stack: LocalStack, ws: Workspace) -> None:
    setup_note(stack, ws)
    stack.tick(DUE_1)  # claimed and put on the sends queue
    item = step_item("note", "first")
    assert item.status == "claimed"
    ws.campaign(note_campaign(status="paused"))
    assert ws.push() == 0
    live_now()
    stack.pump("sends", "send")
    assert stack.twilio.create_requests == []
    assert ScheduleModel.get(item.schedule_id).outcome == "cancelled"


def test_an_exit_during_a_pause_still_ends_the_enrollment_after_resuming(
        stack: LocalStack, ws: Workspace) -> None:
    setup_note(stack, ws, exit={"event": "order.returned"})
    ws.campaign(note_campaign(status="paused", exit={"event": "order.returned"}))
    assert ws.push() == 0
    live_now()
    clock.set_now(datetime(2026, 3, 2, 12, 0, tzinfo=UTC))
    stack.ingest([{"id": "ret-1", "type": "order.returned",
                   "occurred_at": "2026-03-02T12:00:00Z", "customer": {"id": "c-42"},
                   "order": {"id": "o-9"}}])
    ws.campaign(note_campaign(status="active", exit={"event": "order.returned"}))
    assert ws.push() == 0
    live_now()
    stack.run_due(DUE_1)
    assert stack.twilio.create_requests == []
    assert step_item("note", "first").outcome == "exited"


# -- 3. new versions ---------------------------------------------------------------------


TWO_STEPS = [{"id": "first", "after": "P2D", "at": "10:00", "channel": "sms", "template": "note"},
             {"id": "second", "after": "P4D", "at": "10:00", "channel": "sms",
              "template": "note"}]


def test_a_step_the_new_version_removed_is_cancelled_with_the_documented_reason(
        stack: LocalStack, ws: Workspace) -> None:
    setup_note(stack, ws, steps=TWO_STEPS)
    ws.campaign(note_campaign(steps=TWO_STEPS[:1]))
    assert ws.push() == 0
    live_now()
    stack.run_due(DUE_1)
    stack.run_due(DUE_2)
    assert len(stack.twilio.create_requests) == 1
    second = step_item("note", "second")
    assert (second.outcome, second.reason) == ("cancelled", "step removed from campaign")
    assert step_item("note", "first").outcome == "sent"
    assert stat_sum("note", "enrolled") == 1


def test_a_planned_step_keeps_its_time_under_a_new_version(
        stack: LocalStack, ws: Workspace) -> None:
    setup_note(stack, ws)
    due = step_item("note", "first").due_at
    assert due == int(DUE_1.timestamp())
    ws.campaign(note_campaign(steps=[{"id": "first", "after": "P5D", "at": "16:00",
                                      "channel": "sms", "template": "note"}]))
    assert ws.push() == 0
    live_now()
    assert step_item("note", "first").due_at == due
    stack.run_due(DUE_1)
    assert len(stack.twilio.create_requests) == 1


def test_templates_are_those_of_the_version_live_at_send_time(
        stack: LocalStack, ws: Workspace) -> None:
    setup_note(stack, ws)  # c-42: due 3 March
    enrol(stack, "c-9", at=datetime(2026, 3, 3, 14, 0, tzinfo=UTC))  # due 5 March
    # Editing the file changes nothing until it is pushed (docs/templates.md).
    ws.template("note.sms.j2", NOTE_V2)
    stack.run_due(DUE_1)
    assert ["note version one" in b for b in sms_bodies(stack)] == [True]
    # Pushed (templates only: the campaign file is unchanged), the pending step of
    # the enrollment made under version 1 uses the new template.
    assert ws.push() == 0
    live_now()
    assert versions("note") == [1, 2]
    stack.run_due(DUE_2)
    bodies = sms_bodies(stack)
    assert len(bodies) == 2 and "note version two" in bodies[1], bodies
    assert stat_sum("note", "enrolled") == 2


def test_a_pending_step_uses_the_new_versions_channel(
        stack: LocalStack, ws: Workspace) -> None:
    ws.template("note.email.j2", NOTE_EMAIL)
    setup_note(stack, ws)
    ws.campaign(note_campaign(steps=[{"id": "first", "after": "P2D", "at": "10:00",
                                      "channel": "email", "template": "note"}]))
    assert ws.push() == 0
    live_now()
    stack.run_due(DUE_1)
    assert stack.twilio.create_requests == []
    emails = stack.sent_emails()
    assert [e["to"] for e in emails] == [["ana@example.com"]]
    assert MessageModel.get(step_item("note", "first").schedule_id).channel == "email"


def test_a_pending_step_is_decided_by_the_new_versions_condition(
        stack: LocalStack, ws: Workspace) -> None:
    setup_note(stack, ws)
    ws.campaign(note_campaign(steps=[{
        "id": "first", "after": "P2D", "at": "10:00", "channel": "sms", "template": "note",
        "condition": {"==": [{"var": "customer.attributes.tier"}, "silver"]}}]))
    assert ws.push() == 0
    live_now()
    stack.run_due(DUE_1)
    assert stack.twilio.create_requests == []
    item = step_item("note", "first")
    assert (item.outcome, item.reason) == ("skipped", "step condition false")


def test_an_exit_added_by_a_new_version_ends_enrollments_under_way(
        stack: LocalStack, ws: Workspace) -> None:
    setup_note(stack, ws)  # version 1 has no exit
    ws.campaign(note_campaign(exit={"event": "order.returned"}))
    assert ws.push() == 0
    live_now()
    clock.set_now(datetime(2026, 3, 2, 12, 0, tzinfo=UTC))
    stack.ingest([{"id": "ret-1", "type": "order.returned",
                   "occurred_at": "2026-03-02T12:00:00Z", "customer": {"id": "c-42"},
                   "order": {"id": "o-9"}}])
    stack.run_due(DUE_1)
    assert stack.twilio.create_requests == []
    assert step_item("note", "first").outcome == "exited"


def test_a_new_version_does_not_enrol_an_enrollment_under_way_again(
        stack: LocalStack, ws: Workspace) -> None:
    setup_note(stack, ws)
    ws.template("note.sms.j2", NOTE_V2)
    assert ws.push() == 0
    live_now()
    # The same delivery again (a replay, then a second event about the same order).
    enrol(stack, eid="evt-c-42-03011403")
    enrol(stack, eid="evt-again", at=datetime(2026, 3, 1, 18, 0, tzinfo=UTC))
    assert len(steps_of("note")) == 1
    assert stat_sum("note", "enrolled") == 1
    stack.run_due(DUE_1)
    stack.run_due(datetime(2026, 3, 3, 19, 0, tzinfo=UTC))
    assert len(stack.twilio.create_requests) == 1
    assert stat_sum("note", "sent") == 1


# -- 4. date and idle campaigns: backfill at push, new versions, pushing twice -----------


TZ_CUSTOMERS = {  # id: (timezone, phone, the 2026 greeting at 10:00 local, in UTC)
    "k-ny": ("America/New_York", "+14155550201", datetime(2026, 5, 20, 14, 0, tzinfo=UTC)),
    "k-tokyo": ("Asia/Tokyo", "+14155550202", datetime(2026, 5, 20, 1, 0, tzinfo=UTC)),
    "k-la": ("America/Los_Angeles", "+14155550203", datetime(2026, 5, 20, 17, 0, tzinfo=UTC)),
    "k-none": (None, "+14155550204", datetime(2026, 5, 20, 14, 0, tzinfo=UTC)),
}


def import_customers(ws: Workspace) -> None:
    clock.set_now(IMPORTED)
    rows = ws.root / "customers.jsonl"
    lines = []
    for cid, (tz, phone, _) in TZ_CUSTOMERS.items():
        row: dict[str, Any] = {"id": cid, "name": cid, "phone": phone,
                               "birthday": "1980-05-20", "consent": {"sms": True},
                               "updated_at": "2026-03-31T00:00:00Z"}
        if tz:
            row["timezone"] = tz
        lines.append(json.dumps(row))
    rows.write_text("\n".join(lines) + "\n")
    assert main(["import", "customers", str(rows)]) == 0


def greetings() -> dict[str, tuple[str, int]]:
    return {s.step["customer_id"]: (s.schedule_id, int(s.due_at)) for s in steps_of("bday")}


def test_backfill_after_push_enrols_each_known_customer_once_in_their_timezone(
        stack: LocalStack, ws: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    import_customers(ws)
    assert steps_of("bday") == []  # nothing live when they were imported
    ws.template("bday.sms.j2", BDAY_V1)
    ws.campaign(birthday_campaign())
    assert ws.push() == 0
    assert "backfill: 4 customers, 4 steps planned" in capsys.readouterr().out
    assert {cid: due for cid, (_, due) in greetings().items()} == {
        cid: int(at.timestamp()) for cid, (_, _, at) in TZ_CUSTOMERS.items()}
    assert stat_sum("bday", "enrolled") == 4
    live_now()
    for at in sorted({at for _, _, at in TZ_CUSTOMERS.values()}):
        stack.run_due(at)
    phones = {phone: cid for cid, (_, phone, _) in TZ_CUSTOMERS.items()}
    assert sorted(phones[p] for p in sms_to(stack)) == sorted(TZ_CUSTOMERS)
    assert sms_to(stack)[0] == TZ_CUSTOMERS["k-tokyo"][1]  # the earliest, 01:00 UTC


def test_pushing_the_same_files_twice_plans_and_counts_nothing_more(
        stack: LocalStack, ws: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    import_customers(ws)
    ws.template("bday.sms.j2", BDAY_V1)
    ws.template("note.sms.j2", NOTE_V1)
    ws.campaign(birthday_campaign())
    ws.campaign(note_campaign())
    assert ws.push() == 0
    live_now()
    enrol(stack, at=IMPORTED)
    before = greetings()
    note_before = [(s.schedule_id, int(s.due_at), s.status) for s in steps_of("note")]
    capsys.readouterr()
    assert ws.push() == 0
    out = capsys.readouterr().out
    assert "4 steps planned" not in out and " 0 steps planned" in out, out
    live_now()
    assert greetings() == before
    assert [(s.schedule_id, int(s.due_at), s.status) for s in steps_of("note")] == note_before
    assert stat_sum("bday", "enrolled") == 4 and stat_sum("note", "enrolled") == 1
    stack.run_due(datetime(2026, 4, 3, 14, 5, tzinfo=UTC))  # the note, P2D at 10:00
    for at in sorted({at for _, _, at in TZ_CUSTOMERS.values()}):
        stack.run_due(at)
    assert len(stack.twilio.create_requests) == 5  # one note, four greetings, once each
    # Each greeting's decision planned (and counted) next year's occurrence.
    assert stat_sum("bday", "sent") == 4 and stat_sum("bday", "enrolled") == 8
    after = greetings()
    assert len(steps_of("bday")) == 8
    capsys.readouterr()
    assert ws.push() == 0  # once more, after the sends
    assert " 0 steps planned" in capsys.readouterr().out
    assert len(steps_of("bday")) == 8 and stat_sum("bday", "enrolled") == 8
    assert greetings() == after


def test_a_new_birthday_version_goes_on_for_occurrences_planned_under_the_old_one(
        stack: LocalStack, ws: Workspace) -> None:
    import_customers(ws)
    ws.template("bday.sms.j2", BDAY_V1)
    ws.campaign(birthday_campaign())
    assert ws.push() == 0
    before = greetings()
    ws.template("bday.sms.j2", BDAY_V2)
    assert ws.push() == 0  # a new version, backfilled again
    live_now()
    assert versions("bday") == [1, 2]
    assert greetings() == before  # the same items, the same times
    assert stat_sum("bday", "enrolled") == 4
    for at in sorted({at for _, _, at in TZ_CUSTOMERS.values()}):
        stack.run_due(at)
    bodies = sms_bodies(stack)
    assert len(bodies) == 4 and all("wish two" in b for b in bodies), bodies
    # Each decision planned next year's occurrence: counted once, for 2027.
    nxt = [s for s in steps_of("bday") if s.step["ref"].endswith(":2027")]
    assert sorted(s.step["customer_id"] for s in nxt) == sorted(TZ_CUSTOMERS)
    assert stat_sum("bday", "enrolled") == 8


def test_a_new_idle_version_does_not_plan_or_count_the_spell_again(
        stack: LocalStack, ws: Workspace) -> None:
    ws.template("miss.sms.j2", 'We miss you, {{ customer.name|first_name("friend") }}. '
                'Reply STOP to opt out.')
    idle = {"id": "idle", "name": "Win back", "trigger": {"idle": "P30D"},
            "steps": [{"id": "nudge", "at": "10:00", "channel": "sms", "template": "miss"}]}
    ws.campaign(idle)
    assert ws.push() == 0
    live_now()
    clock.set_now(DELIVERED)
    order = delivered("ord-1", "c-42")
    order["type"] = "order.placed"
    stack.ingest([order])
    spell = [(s.schedule_id, int(s.due_at)) for s in steps_of("idle")]
    assert len(spell) == 1
    assert stat_sum("idle", "enrolled") == 1
    ws.template("miss.sms.j2", "Still there? Reply STOP to opt out.")
    assert ws.push() == 0
    live_now()
    assert [(s.schedule_id, int(s.due_at)) for s in steps_of("idle")] == spell
    assert stat_sum("idle", "enrolled") == 1
    stack.run_due(datetime.fromtimestamp(spell[0][1], UTC))
    assert sms_bodies(stack) == ["Still there? Reply STOP to opt out."]


# -- 5. the live cache -------------------------------------------------------------------


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_warm_lambda_sees_a_push_within_the_cache_ttl_and_not_a_refused_one(
        stack: LocalStack, ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib import settings
    from chalicelib.store import campaigns as store

    mono = FakeMonotonic()
    monkeypatch.setattr(store, "time", types.SimpleNamespace(monotonic=mono))
    ttl = settings.load().campaign_cache_seconds
    assert handlers.live().ttl == ttl == 60
    setup_note(stack, ws)  # the cache is warm: it enrolled c-42
    # A refused push changes nothing, however long the Lambda runs.
    ws.template("note.sms.j2", "{% if %}")
    ws.campaign(note_campaign(status="paused"))
    assert ws.push() == 1
    mono.now += ttl + 1
    enrol(stack, "c-1", at=datetime(2026, 3, 1, 15, 0, tzinfo=UTC))
    assert "c-1" in {s.step["customer_id"] for s in steps_of("note")}
    # The pause, pushed: still the cached version within the TTL...
    ws.template("note.sms.j2", NOTE_V1)
    assert ws.push() == 0
    mono.now += ttl / 2
    enrol(stack, "c-2", at=datetime(2026, 3, 1, 16, 0, tzinfo=UTC))
    assert "c-2" in {s.step["customer_id"] for s in steps_of("note")}
    # ...and seen once the TTL is over, without a new container.
    mono.now += ttl / 2 + 1
    enrol(stack, "c-3", at=datetime(2026, 3, 1, 17, 0, tzinfo=UTC))
    assert "c-3" not in {s.step["customer_id"] for s in steps_of("note")}
    stack.run_due(datetime(2026, 3, 3, 22, 0, tzinfo=UTC))
    assert stack.twilio.create_requests == []


# -- 6. pause and resume of a date campaign; the index of pending steps by campaign ------


def test_a_birthday_paused_over_the_day_is_greeted_again_the_next_year_after_resuming(
        stack: LocalStack, ws: Workspace) -> None:
    import_customers(ws)
    ws.template("bday.sms.j2", BDAY_V1)
    ws.campaign(birthday_campaign())
    assert ws.push() == 0
    ws.campaign(birthday_campaign(status="paused"))
    assert ws.push() == 0
    live_now()
    stack.run_due(datetime(2026, 5, 21, tzinfo=UTC))
    assert stack.twilio.create_requests == []
    by_year = {(s.step["ref"][-4:], s.outcome or s.status) for s in steps_of("bday")}
    # 2026's greetings cancelled; each cancellation planned 2027's (the yearly chain
    # goes on while paused).
    assert by_year == {("2026", "cancelled"), ("2027", "pending")}
    clock.set_now(datetime(2026, 6, 15, 12, 0, tzinfo=UTC))
    ws.campaign(birthday_campaign())
    assert ws.push() == 0  # resumed: the push backfills known customers
    live_now()
    pending = [s for s in steps_of("bday") if s.status == "pending"]
    assert sorted(s.step["ref"] for s in pending) == ["birthday:1980-05-20:2027"] * 4
    assert stat_sum("bday", "enrolled") == 8  # 2026 and 2027, once each
    stack.run_due(datetime(2027, 5, 21, tzinfo=UTC))
    assert len(stack.twilio.create_requests) == 4


def test_an_archived_birthday_campaign_ends_its_yearly_chain(
        stack: LocalStack, ws: Workspace) -> None:
    """Paused, a date campaign's cancelled steps plan next year's (cancelled in turn
    while the pause lasts); archived, it is over: nothing more is planned."""
    import_customers(ws)
    ws.template("bday.sms.j2", BDAY_V1)
    ws.campaign(birthday_campaign())
    assert ws.push() == 0
    ws.campaign(birthday_campaign(status="archived"))
    assert ws.push() == 0
    live_now()
    stack.run_due(datetime(2026, 5, 21, tzinfo=UTC))
    assert {(s.step["ref"][-4:], s.outcome) for s in steps_of("bday")} == {
        ("2026", "cancelled")}
    assert stack.twilio.create_requests == []


def test_a_birthday_paused_and_resumed_before_the_day_is_greeted_once(
        stack: LocalStack, ws: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    import_customers(ws)
    ws.template("bday.sms.j2", BDAY_V1)
    ws.campaign(birthday_campaign())
    assert ws.push() == 0
    before = greetings()
    ws.campaign(birthday_campaign(status="paused"))
    assert ws.push() == 0
    clock.set_now(datetime(2026, 5, 1, tzinfo=UTC))
    ws.campaign(birthday_campaign())
    capsys.readouterr()
    assert ws.push() == 0
    assert " 0 steps planned" in capsys.readouterr().out
    live_now()
    assert greetings() == before
    assert stat_sum("bday", "enrolled") == 4
    stack.run_due(datetime(2026, 5, 21, tzinfo=UTC))
    assert len(stack.twilio.create_requests) == 4
    assert stat_sum("bday", "sent") == 4


def pending_by_campaign(campaign: str) -> set[str]:
    return {item.schedule_id for item in ScheduleModel.by_campaign.query(campaign)}


def test_the_campaign_index_lists_exactly_a_campaigns_pending_steps(
        stack: LocalStack, ws: Workspace) -> None:
    setup_note(stack, ws, steps=TWO_STEPS)
    enrol(stack, "c-5", at=datetime(2026, 3, 1, 15, 0, tzinfo=UTC))
    everything = {s.schedule_id for s in steps_of("note")}
    assert len(everything) == 4 and pending_by_campaign("note") == everything
    ws.campaign(note_campaign(status="paused", steps=TWO_STEPS))
    assert ws.push() == 0
    live_now()
    stack.run_due(DUE_1)  # the first steps: cancelled at their send time
    firsts = {s.schedule_id for s in steps_of("note") if s.step["step_id"] == "first"}
    assert pending_by_campaign("note") == everything - firsts
    ws.campaign(note_campaign(steps=TWO_STEPS))
    assert ws.push() == 0
    live_now()
    stack.run_due(DUE_2)
    assert pending_by_campaign("note") == set()
    assert len(stack.twilio.create_requests) == 2


# -- 7. what a version is stored with: partials, variants ---------------------------------


def test_a_changed_partial_alone_makes_a_version_whose_sends_use_it(
        stack: LocalStack, ws: Workspace) -> None:
    (ws.templates / "partials").mkdir()
    ws.template("partials/sig.j2", "Team One")
    setup_note(stack, ws, template="Hello from {% include 'partials/sig.j2' %}. "
               "Reply STOP to opt out.")
    ws.template("partials/sig.j2", "Team Two")
    assert ws.push() == 0
    live_now()
    assert versions("note") == [1, 2]
    stack.run_due(DUE_1)
    assert sms_bodies(stack) == ["Hello from Team Two. Reply STOP to opt out."]


def test_a_step_planned_in_a_variant_the_new_version_dropped_gets_the_steps_template(
        stack: LocalStack, ws: Workspace) -> None:
    ws.template("note_b.sms.j2", "Variant B text. Reply STOP to opt out.")
    variants = [{"id": "b", "weight": 100, "templates": {"first": "note_b"}}]
    setup_note(stack, ws, variants=variants)
    assert step_item("note", "first").step["variant"] == "b"
    ws.campaign(note_campaign())  # no variants any more
    ws.template("note.sms.j2", NOTE_V2)
    assert ws.push() == 0
    live_now()
    stack.run_due(DUE_1)
    bodies = sms_bodies(stack)
    assert len(bodies) == 1 and "note version two" in bodies[0], bodies


# -- 8. more of push: warnings, duplicate ids, idle backfill, a step waiting to retry ------


def test_a_warning_does_not_stop_a_push(
        stack: LocalStack, ws: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    ws.template("note.sms.j2", NOTE_V1)
    path = ws.campaign(note_campaign(audience={">=": [{"var": "customer.order_cnt"}, 0]}))
    assert ws.push() == 0
    out = capsys.readouterr()
    assert f"{path}: $.audience" in out.err and "warning" in out.err
    assert "pushed note v1 (active)" in out.out
    assert live_ids() == {"note"}


def test_a_path_that_does_not_exist_stops_the_push_of_the_others(
        stack: LocalStack, ws: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    ws.template("note.sms.j2", NOTE_V1)
    good = ws.campaign(note_campaign())
    missing = ws.campaigns / "typo.json"
    assert ws.push(good, missing) == 1
    assert f"{missing}: $: no such file or folder" in capsys.readouterr().err
    assert list(CampaignModel.scan()) == []


def test_two_files_with_one_campaign_id_push_neither(
        stack: LocalStack, ws: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    ws.template("note.sms.j2", NOTE_V1)
    ws.campaign(note_campaign(), name="a")
    second = ws.campaign(note_campaign(steps=TWO_STEPS), name="b")
    assert ws.push() == 1
    assert f"{second}: $.id: campaign id 'note' is also used by" in capsys.readouterr().err
    assert list(CampaignModel.scan()) == []


def test_an_idle_campaign_pushed_later_is_backfilled_once_in_each_customers_timezone(
        stack: LocalStack, ws: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    import_customers(ws)
    orders = ws.root / "orders.csv"
    orders.write_text("order_id,customer_id,placed_at,total,currency,sku,category\n"
                      "o-1,k-tokyo,2026-03-10T03:00:00Z,10.00,USD,KX-200,appliance\n"
                      "o-2,k-ny,2026-03-10T15:00:00Z,10.00,USD,KX-200,appliance\n")
    assert main(["import", "orders", str(orders)]) == 0
    ws.template("miss.sms.j2", 'We miss you, {{ customer.name|first_name("friend") }}. '
                'Reply STOP to opt out.')
    ws.campaign({"id": "idle", "name": "Win back", "trigger": {"idle": "P30D"},
                 "steps": [{"id": "nudge", "at": "13:00", "channel": "sms",
                            "template": "miss"}]})
    capsys.readouterr()
    assert ws.push() == 0
    assert "2 steps planned" in capsys.readouterr().out
    due = {s.step["customer_id"]: int(s.due_at) for s in steps_of("idle")}
    assert due == {  # 30 days on their calendar, at 13:00 local on the idle day
        "k-tokyo": int(datetime(2026, 4, 9, 4, 0, tzinfo=UTC).timestamp()),
        "k-ny": int(datetime(2026, 4, 9, 17, 0, tzinfo=UTC).timestamp())}
    assert stat_sum("idle", "enrolled") == 2
    assert ws.push() == 0
    assert len(steps_of("idle")) == 2 and stat_sum("idle", "enrolled") == 2


def test_a_step_waiting_to_retry_is_cancelled_by_a_pause(
        stack: LocalStack, ws: Workspace) -> None:
    from datetime import timedelta

    setup_note(stack, ws)
    stack.twilio.fail_next(429, 20429)
    stack.run_due(DUE_1)
    item = step_item("note", "first")
    assert item.status == "pending" and MessageModel.get(item.schedule_id).status == "retry"
    ws.campaign(note_campaign(status="paused"))
    assert ws.push() == 0
    live_now()
    stack.run_due(DUE_1 + timedelta(minutes=6))
    stack.run_due(DUE_1 + timedelta(hours=2))
    assert len(stack.twilio.create_requests) == 1  # the refused attempt only
    assert step_item("note", "first").outcome == "cancelled"
    assert MessageModel.get(item.schedule_id).status == "cancelled"
    assert stat_sum("note", "sent") == 0 and stat_sum("note", "cancelled") == 1


# -- 9. more of new versions; two functions, two caches -----------------------------------


def test_an_exit_a_new_version_dropped_no_longer_ends_enrollments(
        stack: LocalStack, ws: Workspace) -> None:
    setup_note(stack, ws, exit={"event": "order.returned"})
    ws.campaign(note_campaign())  # version 2: no exit
    assert ws.push() == 0
    live_now()
    clock.set_now(datetime(2026, 3, 2, 12, 0, tzinfo=UTC))
    stack.ingest([{"id": "ret-1", "type": "order.returned",
                   "occurred_at": "2026-03-02T12:00:00Z", "customer": {"id": "c-42"},
                   "order": {"id": "o-9"}}])
    stack.run_due(DUE_1)
    assert len(stack.twilio.create_requests) == 1
    assert step_item("note", "first").outcome == "sent"


def test_a_step_removed_then_added_back_before_it_is_due_is_sent(
        stack: LocalStack, ws: Workspace) -> None:
    setup_note(stack, ws, steps=TWO_STEPS)
    ws.campaign(note_campaign(steps=TWO_STEPS[:1]))
    assert ws.push() == 0
    ws.campaign(note_campaign(steps=TWO_STEPS))
    assert ws.push() == 0
    live_now()
    stack.run_due(DUE_1)
    stack.run_due(DUE_2)
    assert len(stack.twilio.create_requests) == 2
    assert {s.outcome for s in steps_of("note")} == {"sent"}


def test_a_removed_step_already_claimed_is_cancelled_when_the_send_reads_the_new_version(
        stack: LocalStack, ws: Workspace) -> None:
    setup_note(stack, ws, steps=TWO_STEPS)
    stack.run_due(DUE_1)
    stack.tick(DUE_2)  # the second step is claimed, on the sends queue
    ws.campaign(note_campaign(steps=TWO_STEPS[:1]))
    assert ws.push() == 0
    live_now()
    stack.pump("sends", "send")
    assert len(stack.twilio.create_requests) == 1
    second = step_item("note", "second")
    assert (second.outcome, second.reason) == ("cancelled", "step removed from campaign")


def _two_containers(monkeypatch: pytest.MonkeyPatch) -> tuple[Any, FakeMonotonic]:
    """A send function's warm cache (loaded now), apart from the ingest function's."""
    from chalicelib.store import campaigns as store

    mono = FakeMonotonic()
    monkeypatch.setattr(store, "time", types.SimpleNamespace(monotonic=mono))
    sender = store.LiveCache(60)
    sender.get()
    return sender, mono


def test_a_step_planned_by_a_newly_pushed_campaign_is_not_lost_to_a_senders_stale_cache(
        stack: LocalStack, ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    sender, mono = _two_containers(monkeypatch)  # warm before the campaign exists
    ws.template("note.sms.j2", NOTE_V1)
    ws.campaign(note_campaign(steps=[{"id": "first", "channel": "sms", "template": "note",
                                      "after": "PT1M"}]))
    assert ws.push() == 0
    live_now()  # the ingest function starts after the push
    enrol(stack, at=datetime(2026, 3, 1, 15, 0, tzinfo=UTC))
    mono.now += 30  # half a TTL later, the tick hands the step to the warm sender
    monkeypatch.setattr(handlers, "_live", sender)
    stack.run_due(datetime(2026, 3, 1, 15, 1, 30, tzinfo=UTC))
    mono.now += 60
    stack.run_due(datetime(2026, 3, 1, 15, 2, 30, tzinfo=UTC))
    assert step_item("note", "first").outcome == "sent"
    assert len(stack.twilio.create_requests) == 1


def test_a_step_added_by_a_new_version_is_not_cancelled_as_removed_by_a_stale_sender(
        stack: LocalStack, ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    setup_note(stack, ws)
    sender, mono = _two_containers(monkeypatch)  # warm with version 1
    ws.campaign(note_campaign(steps=[
        {"id": "first", "after": "P2D", "at": "10:00", "channel": "sms", "template": "note"},
        {"id": "hello", "after": "PT1M", "channel": "sms", "template": "note"}]))
    assert ws.push() == 0
    live_now()
    enrol(stack, "c-3", at=datetime(2026, 3, 1, 15, 0, tzinfo=UTC))
    hello = step_item("note", "hello", "c-3")
    assert hello.step["campaign_version"] == 2
    mono.now += 30
    monkeypatch.setattr(handlers, "_live", sender)
    stack.run_due(datetime(2026, 3, 1, 15, 1, 30, tzinfo=UTC))
    mono.now += 60
    stack.run_due(datetime(2026, 3, 1, 15, 2, 30, tzinfo=UTC))
    after = ScheduleModel.get(hello.schedule_id)
    assert (after.outcome, after.reason) != ("cancelled", "step removed from campaign")
    assert len(stack.twilio.create_requests) == 1


def test_a_sender_whose_fresh_read_still_lags_the_steps_version_retries_it_later(
        stack: LocalStack, ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    """The active index has not caught up with the push yet (a fresh read still
    returns version 1 for a step planned from version 2): the step is neither sent
    from the old version nor cancelled; its claim lapses and a later send decides it."""
    from chalicelib.pipeline.batch import BatchIncomplete
    from chalicelib.store import campaigns as store

    setup_note(stack, ws)
    sender, mono = _two_containers(monkeypatch)  # warm with version 1
    lagging = sender.get()
    ws.campaign(note_campaign(steps=[
        {"id": "first", "after": "P2D", "at": "10:00", "channel": "sms", "template": "note"},
        {"id": "hello", "after": "PT1M", "channel": "sms", "template": "note"}]))
    assert ws.push() == 0
    live_now()
    enrol(stack, "c-3", at=datetime(2026, 3, 1, 15, 0, tzinfo=UTC))
    monkeypatch.setattr(handlers, "_live", sender)
    monkeypatch.setattr(store, "load_live", lambda: lagging)
    mono.now += 30
    with pytest.raises(BatchIncomplete):
        stack.run_due(datetime(2026, 3, 1, 15, 1, 30, tzinfo=UTC))
    hello = step_item("note", "hello", "c-3")
    assert (hello.status, hello.outcome) == ("claimed", None)
    assert stack.twilio.create_requests == []
    monkeypatch.undo()  # the index has caught up
    monkeypatch.setattr(store, "time", types.SimpleNamespace(monotonic=mono))
    monkeypatch.setattr(handlers, "_live", sender)
    mono.now += 30
    stack.run_due(datetime(2026, 3, 1, 15, 7, 30, tzinfo=UTC))  # after the claim's lease
    assert step_item("note", "hello", "c-3").outcome == "sent"
    assert len(stack.twilio.create_requests) == 1


def test_a_paused_campaigns_due_steps_read_the_live_campaigns_at_most_once_a_second(
        stack: LocalStack, ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    from chalicelib.store import campaigns as store

    setup_note(stack, ws)
    for cid in ("c-5", "c-6", "c-7"):
        enrol(stack, cid, at=DELIVERED)
    ws.campaign(note_campaign(status="paused"))
    assert ws.push() == 0
    sender, mono = _two_containers(monkeypatch)
    reads: list[int] = []
    real = store.load_live
    monkeypatch.setattr(store, "load_live", lambda: reads.append(1) or real())
    monkeypatch.setattr(handlers, "_live", sender)
    mono.now += 0.5  # the cache was read half a second ago: the campaign is paused
    stack.run_due(DUE_1)
    assert reads == []
    assert {s.reason for s in steps_of("note") if s.step["step_id"] == "first"} == {
        "campaign not active"}


def test_a_birthday_paused_over_its_greeting_and_resumed_that_day_keeps_its_yearly_chain(
        stack: LocalStack, ws: Workspace) -> None:
    import_customers(ws)
    ws.template("bday.sms.j2", BDAY_V1)
    ws.campaign(birthday_campaign())
    assert ws.push() == 0
    ws.campaign(birthday_campaign(status="paused"))
    assert ws.push() == 0
    live_now()
    stack.run_due(datetime(2026, 5, 20, 14, 5, tzinfo=UTC))  # Tokyo, New York: cancelled
    cancelled = {s.step["customer_id"] for s in steps_of("bday") if s.outcome == "cancelled"}
    assert cancelled == {"k-tokyo", "k-ny", "k-none"}
    clock.set_now(datetime(2026, 5, 20, 16, 0, tzinfo=UTC))
    ws.campaign(birthday_campaign())
    assert ws.push() == 0  # resumed the same afternoon: the push backfills
    live_now()
    stack.run_due(datetime(2026, 5, 21, 18, 0, tzinfo=UTC))  # Los Angeles: sent, late
    assert sms_to(stack) == [TZ_CUSTOMERS["k-la"][1]]
    stack.run_due(datetime(2027, 5, 21, tzinfo=UTC))  # no event in between
    greeted_2027 = sms_to(stack)[1:]
    assert sorted(greeted_2027) == sorted(phone for _, phone, _ in TZ_CUSTOMERS.values())
