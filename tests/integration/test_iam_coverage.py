"""The functions' IAM policy grants every AWS call they make.

moto does not enforce IAM, so a permission missing from ``.chalice/policy-*.json``
would pass every other test and fail in production. Here every AWS request the
deployed functions make (the routes through ``chalice.test.Client``, ingest, tick,
send and the SES-events function through their event shapes, and the SQS reads
their event source mappings make with the same role) is recorded at botocore's
``_make_api_call``, turned into the IAM action and resource ARN it needs (one per
item of a transaction), and checked against each stage's policy.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import pytest
from botocore.client import BaseClient

from chalicelib import api, aws, clock, handlers, settings
from chalicelib.api.signature import sign_header
from chalicelib.local.stack import LocalStack
from chalicelib.store.models import MessageModel
from tests.conftest import FIXTURES, load_event
from tests.unit.test_audit_security import _allows, function_policies

PHONE = "+14155550123"
INBOUND = "http://127.0.0.1:8000/webhooks/twilio/inbound"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
ACCOUNT = "123456789012"
REGION = "us-east-1"
SQS_BATCH = {"SendMessageBatch": "SendMessage", "DeleteMessageBatch": "DeleteMessage",
             "ChangeMessageVisibilityBatch": "ChangeMessageVisibility"}
TRANSACT = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem",
            "ConditionCheck": "ConditionCheckItem"}


def _table(name: str, index: str | None = None) -> str:
    arn = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}"
    return f"{arn}/index/{index}" if index else arn


def _needs(service: str, operation: str, params: dict[str, Any]) -> list[tuple[str, str]]:
    """(IAM action, resource ARN) pairs one request needs."""
    if service == "dynamodb":
        if operation == "TransactWriteItems":
            return [(f"dynamodb:{TRANSACT[kind]}", _table(body["TableName"]))
                    for item in params["TransactItems"] for kind, body in item.items()]
        if operation in ("BatchGetItem", "BatchWriteItem"):
            return [(f"dynamodb:{operation}", _table(name)) for name in params["RequestItems"]]
        return [(f"dynamodb:{operation}", _table(params["TableName"], params.get("IndexName")))]
    if service == "sqs":
        name = params["QueueName"] if "QueueName" in params else \
            params["QueueUrl"].rstrip("/").rsplit("/", 1)[1]
        return [(f"sqs:{SQS_BATCH.get(operation, operation)}",
                 f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}")]
    if service == "secretsmanager":
        return [(f"secretsmanager:{operation}",
                 f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{params['SecretId']}-AbCdEf")]
    if service == "sesv2" and operation == "SendEmail":
        sender = params["FromEmailAddress"].rsplit("<", 1)[-1].rstrip(">")
        needs = [("ses:SendEmail", f"arn:aws:ses:{REGION}:{ACCOUNT}:identity/{sender}")]
        if params.get("ConfigurationSetName"):
            needs.append(("ses:SendEmail", f"arn:aws:ses:{REGION}:{ACCOUNT}:configuration-set/"
                                           f"{params['ConfigurationSetName']}"))
        return needs
    return [(f"{service}:{operation}", "*")]


# Which function is running (its role makes the calls); "" outside any: the event
# source mappings' SQS reads, made with the role of the function they feed.
_running: ContextVar[str] = ContextVar("running", default="")
HANDLERS = {"ingest_batch": "ingest", "tick": "tick", "send_batch": "send",
            "ses_events_batch": "ses_events"}


def _as(function: str, call: Any) -> Any:
    def run(*args: Any, **kwargs: Any) -> Any:
        token = _running.set(function)
        try:
            return call(*args, **kwargs)
        finally:
            _running.reset(token)

    return run


@pytest.fixture
def recorded(slice_stack: LocalStack, monkeypatch: pytest.MonkeyPatch,
             ) -> Iterator[list[tuple[str, str, str, dict[str, Any]]]]:
    """(function, service, operation, params) of every AWS request."""
    calls: list[tuple[str, str, str, dict[str, Any]]] = []
    original = BaseClient._make_api_call

    def record(client: Any, operation: str, params: dict[str, Any]) -> Any:
        calls.append((_running.get(), client.meta.service_model.service_name, operation,
                      dict(params)))
        return original(client, operation, params)

    monkeypatch.setattr(BaseClient, "_make_api_call", record)
    for name, function in HANDLERS.items():
        monkeypatch.setattr(handlers, name, _as(function, getattr(handlers, name)))
    monkeypatch.setattr(api, "dispatch", _as("api_handler", api.dispatch))
    yield calls


def _inbound(stack: LocalStack, body: str, sid: str) -> None:
    params = {"MessageSid": sid, "From": PHONE, "To": "+15005550006", "Body": body,
              "AccountSid": stack.twilio.account_sid}
    headers = {**FORM, "X-Twilio-Signature": stack.twilio.sign(INBOUND, params)}
    reply = stack.client.http.post("/webhooks/twilio/inbound", headers=headers,
                                   body=urlencode(params))
    assert reply.status_code == 200


def _run_everything(stack: LocalStack, calls: list[Any]) -> None:
    """Every function's paths, each AWS call recorded; test-side reads are not."""
    clock.set_now(datetime(2026, 3, 1, 14, 3, tzinfo=UTC))
    stack.ingest([load_event("order_delivered")])  # ingest (SQS mapping, DynamoDB)
    body = json.dumps({**load_event("order_delivered"), "id": "evt-api"}).encode()
    stamp = int(clock.now().timestamp())
    reply = stack.client.http.post("/events", body=body, headers={
        "Content-Type": "application/json",
        "X-Aftercare-Signature": sign_header(b"local-events-hmac-key", stamp, body)})
    assert reply.status_code == 202  # POST /events (secret, SendMessageBatch)
    stack.pump("events", "ingest")
    stack.run_due(datetime(2026, 3, 3, 15, 0, tzinfo=UTC))  # tick, send SMS, status callback
    stack.run_due(datetime(2026, 3, 8, 13, 30, tzinfo=UTC))  # send email (SES)
    _inbound(stack, "4", "SM" + "1" * 32)  # a survey answer by SMS
    _inbound(stack, "STOP", "SM" + "2" * 32)  # opt-out: consent event, suppression list
    _inbound(stack, "START", "SM" + "3" * 32)  # opt-in: the entry lifted
    _inbound(stack, "It came, thanks", "SM" + "4" * 32)  # a free-text reply (sms index)
    for path in ("/reports", "/reports/checkin?format=html"):  # the admin routes
        assert stack.client.http.get(path).status_code == 200
    stack.pump("events", "ingest")
    mark = len(calls)
    (email_msg,) = [m for m in MessageModel.scan() if m.channel == "email"]
    emails = stack.sent_emails()
    del calls[mark:]  # the test's own reads
    link = re.search(r"http://127\.0\.0\.1:8000(/l/unsubscribe/[\w.-]+)", emails[0]["body"])
    assert link is not None
    assert stack.client.http.get(link.group(1)).status_code == 200
    assert stack.client.http.post(link.group(1), headers=FORM,
                                  body="List-Unsubscribe=One-Click").status_code == 200
    text = (FIXTURES / "ses_events" / "complaint.json").read_text()
    text = text.replace("MESSAGE_ID", str(email_msg.provider_id))
    text = text.replace("TAGGED_ID", email_msg.message_id)
    mark = len(calls)
    aws.client("sqs").send_message(
        QueueUrl=aws.queue_url(settings.resource_name("ses-events")), MessageBody=text)
    del calls[mark:]  # SNS delivers it, not our role
    (summary,) = stack.pump("ses-events", "ses_events")
    assert summary["processed"] == 1
    stack.pump("events", "ingest")
    clock.set_now(datetime(2026, 3, 9, 12, 0, tzinfo=UTC))
    stack.tick(datetime(2026, 3, 20, 12, 0, tzinfo=UTC))  # the sweep of stuck sends too
    # A timezone move reads the customer's pending event steps (BatchGetItem).
    moving = load_event("order_delivered")
    moving.update(id="evt-c77", occurred_at="2026-03-21T14:02:00Z")
    moving["customer"] = {**moving["customer"], "id": "c-77"}
    clock.set_now(datetime(2026, 3, 21, 14, 3, tzinfo=UTC))
    stack.ingest([moving])
    stack.ingest([{"id": "evt-c77-tz", "type": "customer.updated",
                   "occurred_at": "2026-03-21T15:00:00Z",
                   "customer": {"id": "c-77", "timezone": "Asia/Tokyo"}}])


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_each_function_s_policy_grants_every_call_it_makes(
        recorded: list[tuple[str, str, str, dict[str, Any]]], slice_stack: LocalStack,
        stage: str) -> None:
    del recorded[:]  # setup (tables, queues, secrets, campaigns) is not the functions'
    _run_everything(slice_stack, recorded)
    # Each function's policy as `chalice deploy` attaches it to its role.
    policies = {name.removeprefix(f"aftercare-{stage}").lstrip("-") or "api_handler": doc
                for name, doc in function_policies(stage).items()}
    assert set(policies) == {*HANDLERS.values(), "api_handler"}
    local = settings.load().stage
    needed = {(function or "mapping", action,
               arn.replace(f"aftercare-{local}-", f"aftercare-{stage}-")
               .replace(f"aftercare/{local}/", f"aftercare/{stage}/"))
              for function, service, operation, params in recorded
              for action, arn in _needs(service, operation, params)}
    by_function = {f: {a for g, a, _ in needed if g == f} for f, _, _ in needed}
    # The scenario reached every function and every kind of call they make.
    assert set(by_function) == {*policies, "mapping"}, set(by_function)
    assert {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:Query",
            "dynamodb:BatchGetItem", "sqs:SendMessage", "secretsmanager:GetSecretValue",
            "ses:SendEmail"} <= set().union(*by_function.values())
    assert {"sqs:ReceiveMessage", "sqs:DeleteMessage"} <= by_function["mapping"]
    refused = sorted((f, a, r) for f, a, r in needed
                     # An event source mapping reads with the role of the function it feeds:
                     # every queue-fed function has the shared policy.
                     if not _allows(policies["ingest" if f == "mapping" else f], a, r))
    assert refused == []


def test_the_api_function_may_not_send_email_or_read_queues() -> None:
    for stage in ("dev", "prod"):
        policy = function_policies(stage)[f"aftercare-{stage}"]
        queue = f"arn:aws:sqs:us-east-1:1:aftercare-{stage}-sends"
        assert not _allows(policy, "ses:SendEmail", "arn:aws:ses:us-east-1:1:identity/x")
        assert not _allows(policy, "sqs:ReceiveMessage", queue)
        assert not _allows(policy, "sqs:SendMessage", queue)  # only the events queue
        assert _allows(policy, "sqs:SendMessage", queue.replace("-sends", "-events"))
