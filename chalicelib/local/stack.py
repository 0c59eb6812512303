"""The embedded local stack: moto for AWS, a local Twilio server, a settable clock.

It runs the real handlers the way Lambda would: events go into the moto SQS
queue, are received with real receipt handles, and are handed to the function as
a Lambda SQS event through ``chalice.test.Client``; successful batches are
deleted, as the event source mapping does. The tick is invoked as the scheduled
event; sends are pumped from the sends queue the same way.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

LOCAL_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AFTERCARE_STAGE": "local",
    "SES_FROM_ADDRESS": "care@aftercare.local",
    "PUBLIC_BASE_URL": "http://127.0.0.1:8000",
    "DEFAULT_TIMEZONE": "America/New_York",
    "CAMPAIGN_CACHE_SECONDS": "60",
    "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
    "POWERTOOLS_LOG_LEVEL": "WARNING",
}
TWILIO_ACCOUNT_SID = "AC" + "1" * 32
TWILIO_AUTH_TOKEN = "local-twilio-auth-token"
MESSAGING_SERVICE_SID = "MG" + "2" * 32
LINK_KEY = "local-link-signing-key"
SUPPRESSION_KEY = "local-suppression-hash-key"
QUEUES = ("events", "events-dlq", "sends", "sends-dlq", "ses-events", "ses-events-dlq")


def apply_local_env(env: Mapping[str, str] | None = None) -> None:
    """Set the local environment; must run before chalicelib.store.models is imported."""
    for key, value in {**LOCAL_ENV, **(env or {})}.items():
        os.environ[key] = value
    for key in ("AFTERCARE_DYNAMODB_ENDPOINT",):
        os.environ.pop(key, None)


def sqs_lambda_event(queue_arn: str, messages: Iterable[Mapping[str, Any]],
                     region: str = "us-east-1") -> dict[str, Any]:
    """The event Lambda's SQS event source mapping delivers for received messages."""
    return {"Records": [
        {
            "messageId": m["MessageId"],
            "receiptHandle": m["ReceiptHandle"],
            "body": m["Body"],
            "attributes": {
                "ApproximateReceiveCount": m.get("Attributes", {}).get(
                    "ApproximateReceiveCount", "1"),
                "SentTimestamp": m.get("Attributes", {}).get("SentTimestamp", "0"),
                "SenderId": "AIDAEXAMPLE",
                "ApproximateFirstReceiveTimestamp": "0",
            },
            "messageAttributes": {},
            "md5OfBody": m.get("MD5OfBody", ""),
            "eventSource": "aws:sqs",
            "eventSourceARN": queue_arn,
            "awsRegion": region,
        }
        for m in messages
    ]}


def scheduled_event(at: datetime) -> dict[str, Any]:
    return {
        "version": "0", "id": "local-tick", "detail-type": "Scheduled Event",
        "source": "aws.events", "account": "123456789012",
        "time": at.strftime("%Y-%m-%dT%H:%M:%SZ"), "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/aftercare-local-tick"],
        "detail": {},
    }


@dataclass
class _Response:
    payload: Any


class _LambdaContext:
    function_name = "local"
    memory_limit_in_mb = 512
    aws_request_id = "local-request"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:local"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


class _DirectLambda:
    def __init__(self, module: Any) -> None:
        self._module = module

    def invoke(self, function: str, payload: dict[str, Any]) -> _Response:
        return _Response(getattr(self._module, function)(payload, _LambdaContext()))


class DirectClient:
    """Calls the handlers exactly as the Lambda runtime does: ``app.<name>(event, context)``.

    Used where ``chalice.test`` is absent, as in the deployment package, whose
    ``chalice`` is the slim runtime copy.
    """

    def __init__(self, module: Any) -> None:
        self.lambda_ = _DirectLambda(module)
        self.http = None


class LocalStack:
    """moto + local Twilio + the Chalice app, in this process."""

    def __init__(self, outbox_dir: Path | None = None, project_root: Path | None = None,
                 *, direct: bool = False, env: Mapping[str, str] | None = None) -> None:
        """``env``: settings over ``LOCAL_ENV`` (``aftercare run --port`` gives its
        ``PUBLIC_BASE_URL``, so links and signed webhooks name the real port)."""
        self.root = project_root or Path(__file__).resolve().parents[2]
        self.outbox_dir = outbox_dir
        self.direct = direct
        self.env = dict(env or {})
        self._stack = ExitStack()
        self.twilio: Any = None
        self.client: Any = None
        self.app: Any = None

    # -- lifecycle -------------------------------------------------------------

    def __enter__(self) -> LocalStack:
        apply_local_env(self.env)
        from moto import mock_aws

        self._stack.enter_context(mock_aws())
        from chalicelib import aws, handlers

        aws.reset()
        handlers.reset()
        self._create_resources()
        self._start_twilio()
        self._load_app()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        from chalicelib import aws, clock, handlers

        self._stack.close()
        clock.set_now(None)
        aws.reset()
        handlers.reset()

    def _create_resources(self) -> None:
        from chalicelib import aws, settings
        from chalicelib.store.models import ALL_MODELS

        for model in ALL_MODELS:
            if not model.exists():
                model.create_table(wait=False)
        sqs = aws.client("sqs")
        for q in QUEUES:
            sqs.create_queue(QueueName=settings.resource_name(q),
                             Attributes={"VisibilityTimeout": "0"})
        conf = settings.load()
        aws.client("sesv2").create_email_identity(EmailIdentity=conf.ses_from)
        sm = aws.client("secretsmanager")
        sm.create_secret(Name=conf.twilio_secret, SecretString=json.dumps({
            "account_sid": TWILIO_ACCOUNT_SID, "auth_token": TWILIO_AUTH_TOKEN,
            "messaging_service_sid": MESSAGING_SERVICE_SID}))
        sm.create_secret(Name=conf.signing_secret, SecretString=json.dumps({
            "link_key": LINK_KEY, "events_hmac_key": "local-events-hmac-key"}))
        sm.create_secret(Name=conf.suppression_secret,
                         SecretString=json.dumps({"key": SUPPRESSION_KEY}))

    def _start_twilio(self) -> None:
        from chalicelib.local.twilio_server import LocalTwilioServer

        outbox = self.outbox_dir / "sms.jsonl" if self.outbox_dir else None
        if outbox is not None:
            outbox.parent.mkdir(parents=True, exist_ok=True)
            outbox.unlink(missing_ok=True)
        self.twilio = LocalTwilioServer(TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, outbox=outbox,
                                        callback_poster=self._post_webhook)
        self._stack.enter_context(self.twilio)
        os.environ["TWILIO_BASE_URL"] = self.twilio.base_url

    def _load_app(self) -> None:
        if str(self.root) not in sys.path:
            sys.path.insert(0, str(self.root))
        import app as app_module

        self.app = app_module.app
        if self.direct:
            self.client = DirectClient(app_module)
            return
        from chalice.test import Client

        self.client = self._stack.enter_context(
            Client(self.app, stage_name="local", project_dir=str(self.root)))

    def _post_webhook(self, url: str, params: dict[str, str], headers: dict[str, str]) -> None:
        """Deliver a webhook into the app through the test client; raise on non-2xx.

        The route is ``url`` less the configured public base (which may carry a
        stage path, like API Gateway's ``/api``); the query string goes along, as
        Twilio signed it.
        """
        from urllib.parse import urlencode, urlsplit

        from chalicelib import settings

        base = settings.load().public_base_url
        parts = urlsplit(url[len(base):] if url.startswith(base) else url)
        path = parts.path
        if self.client.http is None or path not in set(self.app.routes):
            return  # no route for it (yet): the callback is recorded, not delivered
        target = f"{path}?{parts.query}" if parts.query else path
        response = self.client.http.post(target, headers=headers, body=urlencode(params))
        if not 200 <= response.status_code < 300:
            raise RuntimeError(f"webhook {path} answered HTTP {response.status_code}")

    # -- campaigns ---------------------------------------------------------------

    def push_campaigns(self, campaign_dir: Path | None = None,
                       template_dir: Path | None = None) -> list[str]:
        from chalicelib.config.loader import load_bundles
        from chalicelib.render import load_template_dir
        from chalicelib.store.campaigns import push

        campaign_dir = campaign_dir or self.root / "campaigns"
        template_dir = template_dir or self.root / "templates"
        bundles, problems = load_bundles([campaign_dir], load_template_dir(template_dir))
        errors = [p for p in problems if p.severity == "error"]
        if errors:
            raise ValueError("campaigns do not validate:\n" + "\n".join(map(str, errors)))
        for b in bundles:
            push(b.campaign, b.templates)
        from chalicelib import handlers

        handlers.live().invalidate()  # as a new Lambda container would see them
        return [b.campaign.id for b in bundles]

    # -- the event source mappings ----------------------------------------------

    def queue_arn(self, what: str) -> str:
        from chalicelib import settings

        return f"arn:aws:sqs:us-east-1:123456789012:{settings.resource_name(what)}"

    def send_events(self, events: Iterable[Mapping[str, Any] | str]) -> None:
        from chalicelib import aws, settings

        sqs = aws.client("sqs")
        url = aws.queue_url(settings.resource_name("events"))
        batch = [e if isinstance(e, str) else json.dumps(e) for e in events]
        for start in range(0, len(batch), 10):
            sqs.send_message_batch(QueueUrl=url, Entries=[
                {"Id": str(i), "MessageBody": b} for i, b in enumerate(batch[start:start + 10])])

    def pump(self, what: str, function: str, batch_size: int = 10) -> list[dict[str, Any]]:
        """Deliver everything in a queue to its function, as the event source mapping does."""
        from chalicelib import aws, settings

        sqs = aws.client("sqs")
        url = aws.queue_url(settings.resource_name(what))
        results: list[dict[str, Any]] = []
        while True:
            got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=batch_size,
                                      AttributeNames=["All"]).get("Messages", [])
            if not got:
                return results
            payload = sqs_lambda_event(self.queue_arn(what), got)
            response = self.client.lambda_.invoke(function, payload)
            results.append(response.payload)
            sqs.delete_message_batch(QueueUrl=url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)])

    def ingest(self, events: Iterable[Mapping[str, Any] | str]) -> list[dict[str, Any]]:
        self.send_events(events)
        return self.pump("events", "ingest")

    def tick(self, at: datetime | None = None) -> dict[str, Any]:
        from chalicelib import clock

        if at is not None:
            clock.set_now(at)
        response = self.client.lambda_.invoke("tick", scheduled_event(clock.now()))
        payload: dict[str, Any] = response.payload
        return payload

    def run_due(self, at: datetime) -> list[dict[str, Any]]:
        """Tick at ``at`` and deliver the resulting sends."""
        self.tick(at)
        return self.pump("sends", "send")

    def dead_letters(self, what: str = "events-dlq") -> list[dict[str, Any]]:
        from chalicelib import aws, settings

        sqs = aws.client("sqs")
        url = aws.queue_url(settings.resource_name(what))
        out: list[dict[str, Any]] = []
        while True:
            got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10,
                                      MessageAttributeNames=["All"]).get("Messages", [])
            if not got:
                return out
            out.extend(got)
            sqs.delete_message_batch(QueueUrl=url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)])

    # -- what was sent -------------------------------------------------------------

    def sent_emails(self) -> list[dict[str, Any]]:
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.ses.models import ses_backends

        backend = ses_backends[DEFAULT_ACCOUNT_ID]["us-east-1"]
        return [
            {"to": list(m.destinations.get("ToAddresses", [])), "subject": m.subject,
             "body": m.body, "source": m.source, "id": m.id}
            for m in backend.sent_messages
        ]
