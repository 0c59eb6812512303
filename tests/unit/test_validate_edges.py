"""`aftercare validate` edges a review found (session 10), and one engine defect.

Each test held a defect: templates nested too deeply crashed validate with a
RecursionError traceback; a message rendering an unpaired surrogate crashed it (or
passed, for SMS, and could not be sent); a campaign file holding an escaped lone
surrogate crashed the warning printer; a named pipe in a campaigns folder hung it;
`1e400` in a rule was reported as "inf"; a template using `order` in a campaign
triggered by a non-order event passed silently (every send then failed); `event`
read where rules never see one passed silently; and an order-scoped exit on the
trigger's own event type exited every enrollment at once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from chalicelib.events import parse_event
from chalicelib.journeys.engine import CampaignSet, decide_step, process_event
from tests.conftest import ROOT
from tests.unit.test_cli_adversarial import campaign, step, validate

AFTERCARE = [sys.executable, "-m", "chalicelib.cli.main"]


def run_validate(campaigns: Path, templates: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*AFTERCARE, "validate", str(campaigns), "--templates",
                           str(templates)], capture_output=True, text=True, timeout=60,
                          cwd=ROOT)


@pytest.mark.parametrize("source", [
    "hi {{ " + "[" * 80 + "]" * 80 + " }}",
    "hi {{ " + " + ".join(["1"] * 1000) + " }}",
    "hi {{ " + " and ".join(["1"] * 1000) + " }}",
    "hi {{ 'a'" + "|upper" * 1000 + " }}",
    "{% if 1 %}" * 100 + "x" + "{% endif %}" * 100,
])
def test_templates_nested_too_deeply_are_one_line(
        folders: tuple[Path, Path], capsys: pytest.CaptureFixture[str], source: str) -> None:
    lines = validate(folders, capsys, campaign(steps=[step(template="deep")]),
                     {"deep.sms.j2": source})
    assert lines == [f"{folders[1]}/deep.sms.j2: $: template nested too deeply: split the "
                     "expression or the blocks"]


@pytest.mark.parametrize(("channel", "file", "source"), [
    ("sms", "lone.sms.j2", "hi {{ '\\ud800' }}"),
    ("email", "lone.email.j2", "{% block subject %}S {{ '\\udfff' }}{% endblock %}"
                               "{% block html %}x{% endblock %}"),
])
def test_a_message_holding_an_unpaired_surrogate_is_refused(
        folders: tuple[Path, Path], capsys: pytest.CaptureFixture[str], channel: str,
        file: str, source: str) -> None:
    lines = validate(folders, capsys, campaign(steps=[step(template="lone", channel=channel)]),
                     {file: source})
    assert lines == [f"{folders[1]}/{file}: $: the message holds an unpaired surrogate "
                     "(not valid Unicode)"]


def test_a_campaign_holding_a_lone_surrogate_is_refused_without_a_traceback(
        tmp_path: Path) -> None:
    campaigns = tmp_path / "c"
    campaigns.mkdir()
    text = json.dumps(campaign(audience={"var": "customer.tier"})).replace(
        "customer.tier", "customer.\\ud800")
    (campaigns / "a.json").write_text(text)
    done = run_validate(campaigns, ROOT / "templates")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.splitlines() == [
        f"{campaigns / 'a.json'}: $.audience.var: invalid JSON: text is not valid Unicode "
        "(an unpaired surrogate)"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes")
def test_a_named_pipe_in_a_campaigns_folder_is_reported_not_read(tmp_path: Path) -> None:
    campaigns = tmp_path / "c"
    campaigns.mkdir()
    (campaigns / "a.json").write_text(json.dumps(campaign()))
    os.mkfifo(campaigns / "pipe.json")
    done = run_validate(campaigns, ROOT / "templates")  # would block on the read
    assert done.returncode == 1
    assert done.stderr.splitlines() == [f"{campaigns / 'pipe.json'}: $: not a regular file"]


def test_a_number_beyond_a_double_in_a_rule_is_named_so(
        folders: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    text = json.dumps(campaign(audience={">=": [{"var": "customer.order_count"}, 1]}))
    text = text.replace('"customer.order_count"}, 1]', '"customer.order_count"}, 1e400]')
    lines = validate(folders, capsys, text)
    assert lines == [f"{folders[0]}/a.json: $.audience['>='][1]: invalid JSON: 1e400 is "
                     "beyond the range of a double"]


def test_order_in_a_campaign_triggered_by_a_non_order_event_is_a_warning(
        folders: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    templates = {"thanks.sms.j2": "Thanks! Your order {{ order.id }} is on its way."}
    for trigger in ("customer.updated", "order.delivered"):  # errors: none either way
        assert validate(folders, capsys, campaign(trigger={"event": trigger}, steps=[
            step(template="thanks")]), templates) == []
    campaigns, template_dir = folders
    from chalicelib.cli.main import main

    (campaigns / "a.json").write_text(json.dumps(campaign(
        trigger={"event": "customer.updated"}, steps=[step(template="thanks")])))
    assert main(["validate", str(campaigns), "--templates", str(template_dir)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"{template_dir}/thanks.sms.j2: line 1: warning: undefined variable 'order.id' when "
        "the 'customer.updated' event that triggers campaign 'x' carries no order (events "
        "other than order events usually carry none): test it with {% if order %}",
        "ok: 1 campaign(s) valid"]
    (campaigns / "a.json").write_text(json.dumps(campaign(steps=[step(template="thanks")])))
    assert main(["validate", str(campaigns), "--templates", str(template_dir)]) == 0
    assert capsys.readouterr().out.splitlines() == ["ok: 1 campaign(s) valid"]
    # Guarded, it is fine for any trigger.
    (template_dir / "thanks.sms.j2").write_text(
        "Thanks!{% if order %} Order {{ order.id }}.{% endif %}")
    (campaigns / "a.json").write_text(json.dumps(campaign(
        trigger={"event": "customer.updated"}, steps=[step(template="thanks")])))
    assert main(["validate", str(campaigns), "--templates", str(template_dir)]) == 0
    assert capsys.readouterr().out.splitlines() == ["ok: 1 campaign(s) valid"]


def test_event_read_where_rules_see_no_event_is_a_warning(
        folders: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    from chalicelib.cli.main import main

    campaigns, template_dir = folders
    reads = {"==": [{"var": "event.type"}, "order.placed"]}
    (campaigns / "a.json").write_text(json.dumps(campaign(
        trigger={"date": "customer.birthday"}, audience=reads, exit={"rule": reads},
        steps=[step(template="birthday", after="PT0S")])))
    assert main(["validate", str(campaigns), "--templates", str(template_dir)]) == 0
    out = capsys.readouterr().out.splitlines()
    file = campaigns / "a.json"
    assert out == [
        f"{file}: $.audience['=='][0].var: warning: 'var' reads 'event.type', but a date "
        "or idle trigger has no event: it is null for everyone",
        f"{file}: $.exit.rule['=='][0].var: warning: 'var' reads 'event.type', but an exit "
        "rule is checked at send time, without an event: it is null for everyone",
        "ok: 1 campaign(s) valid"]
    # An event campaign's audience sees its event: no warning.
    (campaigns / "a.json").write_text(json.dumps(campaign(audience=reads)))
    assert main(["validate", str(campaigns), "--templates", str(template_dir)]) == 0
    assert capsys.readouterr().out.splitlines() == ["ok: 1 campaign(s) valid"]


def test_an_exit_on_the_trigger_event_type_does_not_exit_its_own_enrollment() -> None:
    """exit order.delivered on a campaign triggered by order.delivered: the delivery
    that enrolled the order is not its exit (docs/campaigns.md); a later delivery of
    another order does not exit it either (it is not this order's)."""
    from chalicelib.config.loader import parse_campaign

    raw = campaign(id="checkin2", steps=[step(id="checkin", after="P2D", at="10:00")],
                   exit={"event": "order.delivered"})
    model, problems = parse_campaign("a.json", raw)
    assert model is not None and not problems
    from chalicelib.config.compiled import compile_campaign

    campaigns = CampaignSet([compile_campaign(model)])
    delivery = parse_event({
        "id": "e1", "type": "order.delivered", "occurred_at": "2026-03-02T15:00:00Z",
        "customer": {"id": "c-1", "phone": "+14155550123", "timezone": "America/New_York",
                     "consent": {"sms": True}},
        "order": {"id": "o-1", "total": 10}})
    result = process_event(delivery, None, campaigns, "America/New_York")
    [planned] = result.planned
    decision = decide_step(planned, result.profile, campaigns.get("checkin2"),
                           planned.due_at, "America/New_York")
    assert (decision.outcome, decision.reason) == ("send", "")


def test_a_refused_campaigns_templates_are_checked_with_its_own_data(
        folders: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    """One run lists every problem: a campaign the schema refuses still has its
    templates checked for its own trigger (no order for a date trigger) and steps
    (no survey in a step without one)."""
    campaigns, template_dir = folders
    (template_dir / "dt.sms.j2").write_text("hi {{ order.id }}")
    (template_dir / "sv.sms.j2").write_text("hi {{ survey.question }}")
    (campaigns / "b.json").write_text(json.dumps(campaign(
        id="d2", holdout_percent=80, steps=[step(template="sv")])))
    lines = validate(folders, capsys, campaign(
        id="d1", trigger={"date": "customer.birthday"},
        steps=[step(template="dt", dealy="P1D")]))
    assert lines == [
        f"{campaigns}/a.json: $.steps[0].dealy: unknown field: did you mean 'after'? (see "
        "campaigns/schema.json)",
        f"{template_dir}/dt.sms.j2: line 1: undefined variable 'order.id' (campaign 'd1' "
        "has a date or idle trigger: there is no order)",
        f"{campaigns}/b.json: $.holdout_percent: should be at most 50; got 80",
        f"{template_dir}/sv.sms.j2: line 1: undefined variable 'survey.question' (step 's1' "
        "of campaign 'd2' has no 'survey': test it with {% if survey %})",
    ]


def test_an_unused_partial_with_a_syntax_error_is_a_warning(
        folders: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    from chalicelib.cli.main import main

    campaigns, template_dir = folders
    (template_dir / "partials").mkdir(exist_ok=True)
    (template_dir / "partials" / "unused.j2").write_text("ok\n{{ x ")
    (campaigns / "a.json").write_text(json.dumps(campaign()))
    assert main(["validate", str(campaigns), "--templates", str(template_dir)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"{template_dir}/partials/unused.j2: line 2: warning: syntax error: unexpected end "
        "of template, expected 'end of print statement'. (no template uses this file yet)",
        "ok: 1 campaign(s) valid"]


def test_every_template_using_order_in_a_non_order_campaign_is_warned_about(
        folders: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    from chalicelib.cli.main import main

    campaigns, template_dir = folders
    for name in ("a", "b"):
        (template_dir / f"{name}.sms.j2").write_text(f"{name}: order {{{{ order.id }}}}")
    (campaigns / "a.json").write_text(json.dumps(campaign(
        trigger={"event": "customer.updated"},
        steps=[step(id="one", template="a"), step(id="two", template="b")])))
    assert main(["validate", str(campaigns), "--templates", str(template_dir)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split(": ")[0] for line in out[:-1]] == [
        f"{template_dir}/a.sms.j2", f"{template_dir}/b.sms.j2"]
    assert all("undefined variable 'order.id' when the 'customer.updated'" in line
               for line in out[:-1])
