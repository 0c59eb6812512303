"""LocalTwilioServer and TwilioSmsChannel against Twilio's OpenAPI spec, without Prism.

Fast and dependency-free (jsonschema only): the local server's message
resources must have exactly the fields of ``api.v2010.account.message`` with
the allowed types and values, and the adapter may only send form fields the
spec's create operation defines. Prism checks the same over HTTP (contract marker).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from chalicelib.channels.base import SmsMessage
from chalicelib.channels.sms import TwilioSmsChannel
from chalicelib.local.twilio_server import LocalTwilioServer

SPEC = Path(__file__).resolve().parents[2].parent / "shared" / "twilio" / "twilio_api_v2010.json"
ACCOUNT = "AC" + "0123456789abcdef" * 2
TOKEN = "spec-test-token"
SERVICE = "MG" + "fedcba9876543210" * 2
MESSAGES_PATH = "/2010-04-01/Accounts/{AccountSid}/Messages.json"
_DROP = {"description", "format", "nullable", "x-twilio"}


@cache
def _spec() -> dict[str, Any]:
    if not SPEC.is_file():
        pytest.fail(f"Twilio OpenAPI spec not found at {SPEC}")
    return json.loads(SPEC.read_text())


def _json_schema(node: Any) -> Any:
    """OpenAPI 3.0 schema -> JSON Schema: inline $refs, ``nullable`` -> null allowed.

    Custom formats (``phone-number``, ``date-time-rfc-2822``) are dropped; the
    integration tests check dates and numbers themselves.
    """
    if isinstance(node, list):
        return [_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        return _json_schema(_spec()["components"]["schemas"][node["$ref"].split("/")[-1]])
    out = {k: _json_schema(v) for k, v in node.items() if k not in _DROP and k != "properties"}
    if "properties" in node:
        out["properties"] = {k: _json_schema(v) for k, v in node["properties"].items()}
    return {"anyOf": [out, {"type": "null"}]} if node.get("nullable") else out


def _exact_message_schema() -> dict[str, Any]:
    """The message schema, with every field required and no others allowed."""
    schema = _json_schema(_spec()["components"]["schemas"]["api.v2010.account.message"])
    schema["required"] = sorted(schema["properties"])
    schema["additionalProperties"] = False
    return dict(schema)


@pytest.fixture
def server() -> Iterator[LocalTwilioServer]:
    with LocalTwilioServer(ACCOUNT, TOKEN) as running:
        yield running


def _channel(
    server: LocalTwilioServer, service: str | None, sender: str | None
) -> TwilioSmsChannel:
    return TwilioSmsChannel(ACCOUNT, TOKEN, service, sender, base_url=server.base_url)


def test_message_resources_match_the_spec_in_every_state(server: LocalTwilioServer) -> None:
    server.undeliverable.add("+14155550199")
    _channel(server, None, "+15005550006").send(SmsMessage("+14155550123", "Hi €"))
    _channel(server, SERVICE, None).send(SmsMessage("+14155550199", "ł" * 71))
    validator = jsonschema.Draft7Validator(_exact_message_schema())

    created = server.messages
    server.deliver_callbacks()
    delivered = server.messages

    assert [m["status"] for m in created] == ["queued", "accepted"]
    assert [m["status"] for m in delivered] == ["delivered", "undelivered"]
    for message in created + delivered:
        errors = [e.message for e in validator.iter_errors(message)]
        assert errors == [], errors


def test_the_schema_check_has_teeth() -> None:
    validator = jsonschema.Draft7Validator(_exact_message_schema())
    bad = {"sid": "XX1", "status": "bogus", "num_segments": 1, "extra": True}

    messages = {e.validator for e in validator.iter_errors(bad)}

    assert {"additionalProperties", "required", "anyOf"} <= messages


def test_adapter_sends_only_fields_the_spec_defines(server: LocalTwilioServer) -> None:
    operation = _spec()["paths"][MESSAGES_PATH]["post"]
    form = operation["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"]
    channel = TwilioSmsChannel(ACCOUNT, TOKEN, SERVICE, "+15005550006", base_url=server.base_url)

    channel.send(SmsMessage("+14155550123", "x", status_callback="https://a.example/cb"))

    [sent] = server.create_requests
    assert set(sent) == {"To", "From", "MessagingServiceSid", "Body", "StatusCallback"}
    assert set(sent) <= set(form["properties"])
    assert set(form["required"]) <= set(sent)
