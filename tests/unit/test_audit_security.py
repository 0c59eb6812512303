"""Security and production-readiness audit: each test pins one defect.

Each test failed on the defect it names when the audit wrote it (as a strict
xfail); the defects are fixed and the tests hold the fixes.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from typing import Any
from urllib.parse import urlencode

import pytest
from cfnlint.decode import decode

from chalicelib import aws, clock, settings
from chalicelib.local.stack import LocalStack
from tests.conftest import ROOT, load_event

PHONE = "+14155550123"
TWILIO_NUMBER = "+15005550006"
INBOUND_PATH = "/webhooks/twilio/inbound"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


# --------------------------------------------------------------------- helpers


def _put_secret(name: str, update: dict[str, Any]) -> None:
    """Change fields of a JSON secret, as ops would, and drop the cached copies."""
    sm = aws.client("secretsmanager")
    value = json.loads(sm.get_secret_value(SecretId=name)["SecretString"])
    sm.put_secret_value(SecretId=name, SecretString=json.dumps({**value, **update}))
    aws.reset()


def _inbound(stack: LocalStack, body: str, sid: str, token: str) -> Any:
    """POST an inbound SMS webhook signed with ``token`` (Twilio's algorithm)."""
    from twilio.request_validator import RequestValidator

    params = {"MessageSid": sid, "From": PHONE, "To": TWILIO_NUMBER, "Body": body,
              "AccountSid": stack.twilio.account_sid}
    url = settings.load().public_base_url + INBOUND_PATH
    headers = {**FORM, "X-Twilio-Signature": RequestValidator(token).compute_signature(
        url, params)}
    return stack.client.http.post(INBOUND_PATH, headers=headers, body=urlencode(params))


def _sms_consent() -> dict[str, Any]:
    from chalicelib.store.models import CustomerModel

    record: dict[str, Any] = CustomerModel.get("c-42").profile["consent"]["sms"]
    return record


def _template() -> dict[str, Any]:
    template, matches = decode(str(ROOT / "infra" / "template.yaml"))
    assert not matches, matches
    return dict(template)


def function_policies(stage: str) -> dict[str, dict[str, Any]]:
    """Each Lambda function `chalice deploy --stage <stage>` creates, by name, with the
    policy document of its role (from Chalice's own application graph, not a copy of
    its naming and configuration rules)."""
    from chalice.config import Config
    from chalice.deploy import models
    from chalice.deploy.appgraph import ApplicationGraphBuilder

    import app as app_module

    # As `chalice deploy` reads it: .chalice/config.json as the disk config (stage and
    # per-function settings), not as command-line parameters.
    config = Config(
        chalice_stage=stage,
        user_provided_params={"project_dir": str(ROOT), "chalice_app": app_module.app},
        config_from_disk=json.loads((ROOT / ".chalice" / "config.json").read_text()))
    found: dict[str, dict[str, Any]] = {}

    def walk(resource: Any) -> None:
        if isinstance(resource, models.LambdaFunction):
            policy = resource.role.policy
            assert isinstance(policy, models.FileBasedIAMPolicy), policy
            with open(policy.filename, encoding="utf-8") as fh:
                found[resource.function_name] = json.load(fh)
        for child in resource.dependencies():
            walk(child)

    walk(ApplicationGraphBuilder().build(config, stage))
    return found


def _function_names(stage: str) -> list[str]:
    """The Lambda function names `chalice deploy --stage <stage>` creates."""
    return sorted(function_policies(stage))


def _allows(policy: dict[str, Any], action: str, arn: str) -> bool:
    """Whether an Allow statement of ``policy`` grants ``action`` on ``arn`` (IAM
    wildcards: ``*`` any run of characters, ``:`` and ``/`` included)."""
    for statement in policy["Statement"]:
        actions = statement["Action"]
        resources = statement["Resource"]
        actions = actions if isinstance(actions, list) else [actions]
        resources = resources if isinstance(resources, list) else [resources]
        if statement["Effect"] == "Allow" and action in actions and any(
                fnmatchcase(arn, pattern) for pattern in resources):
            return True
    return False


def _alarm_watches(alarm: dict[str, Any], namespace: str, value: str) -> bool:
    if alarm.get("Namespace") != namespace:
        return False
    for dimension in alarm.get("Dimensions", []):
        raw = dimension.get("Value")
        text = raw.get("Fn::Sub") if isinstance(raw, dict) else raw
        if text == value:
            return True
    return False


@pytest.fixture
def known(slice_stack: LocalStack) -> LocalStack:
    """The local stack with customer c-42 (phone PHONE, SMS consent) known."""
    clock.set_now(datetime(2026, 3, 1, 14, 3, tzinfo=UTC))
    slice_stack.ingest([load_event("order_delivered")])
    return slice_stack


# ------------------------------------------------- IAM: logs of every function


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_every_deployed_function_may_write_its_logs(stage: str) -> None:
    policies = function_policies(stage)
    assert f"aftercare-{stage}-tick" in policies  # the graph is the deployed one
    refused = []
    for name, policy in policies.items():
        group = f"arn:aws:logs:us-east-1:123456789012:log-group:/aws/lambda/{name}"
        stream = f"{group}:log-stream:2026/03/01/[$LATEST]0123456789abcdef"
        for action, arn in (("logs:CreateLogGroup", group),
                            ("logs:CreateLogStream", stream),
                            ("logs:PutLogEvents", stream)):
            if not _allows(policy, action, arn):
                refused.append((name, action))
    assert refused == []


# ------------------------------------- Twilio webhooks: an unset auth token


def test_twilio_webhooks_refuse_signatures_made_with_an_unset_auth_token(
        known: LocalStack) -> None:
    from chalicelib.local.stack import TWILIO_AUTH_TOKEN

    conf = settings.load()
    clock.set_now(datetime(2026, 3, 2, 12, 0, tzinfo=UTC))
    assert _inbound(known, "STOP", "SM" + "a" * 32, TWILIO_AUTH_TOKEN).status_code == 200
    known.pump("events", "ingest")
    assert _sms_consent()["granted"] is False
    # The secret as infra/template.yaml creates it, before ops set the value.
    _put_secret(conf.twilio_secret, {"auth_token": ""})
    clock.set_now(datetime(2026, 3, 2, 13, 0, tzinfo=UTC))
    forged = _inbound(known, "START", "SM" + "b" * 32, "")
    known.pump("events", "ingest")
    assert forged.status_code in (403, 503)
    assert _sms_consent()["granted"] is False


# ------------------------------------------ signed links: an empty link key


def test_links_are_refused_when_the_link_key_is_empty(stack: LocalStack) -> None:
    from chalicelib.tracking.links import sign

    _put_secret(settings.load().signing_secret, {"link_key": ""})
    token = sign({"m": "any-message", "k": "nps", "t": "survey", "exp": 4_000_000_000}, b"")
    reply = stack.client.http.get(f"/l/survey/{token}")
    assert reply.status_code in (404, 503)


# ---------------------------------------------------------------- alarms


def test_a_failing_scheduler_raises_an_alarm() -> None:
    alarms = [r["Properties"] for r in _template()["Resources"].values()
              if r["Type"] == "AWS::CloudWatch::Alarm"]
    assert any(_alarm_watches(a, "AWS/Lambda", "aftercare-${Stage}-tick") for a in alarms)


def test_a_failing_api_raises_an_alarm() -> None:
    alarms = [r["Properties"] for r in _template()["Resources"].values()
              if r["Type"] == "AWS::CloudWatch::Alarm"]
    assert any(_alarm_watches(a, "AWS/Lambda", "aftercare-${Stage}")
               or (a.get("Namespace") == "AWS/ApiGateway" and a.get("MetricName") == "5XXError")
               for a in alarms)
