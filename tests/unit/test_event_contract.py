"""The published event schema and the parser agree, on one example per type."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from chalicelib.events import EventError, parse_event
from tests.conftest import FIXTURES, ROOT

SCHEMA = json.loads((ROOT / "chalicelib" / "events" / "events.schema.json").read_text())
EXAMPLES = ["order_placed", "order_delivered", "order_returned", "customer_updated"]


@pytest.mark.parametrize("name", EXAMPLES)
def test_examples_are_valid_for_schema_and_parser(name: str) -> None:
    event = json.loads((FIXTURES / "events" / f"{name}.json").read_text())
    jsonschema.validate(event, SCHEMA)
    assert parse_event(event)["type"] == event["type"]


def test_schema_is_valid_json_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


@pytest.mark.parametrize("patch", [
    {"id": ""}, {"type": "Order"}, {"customer": {}}, {"customer": {"id": 5}},
    {"order": {"total": 3}}, {"customer": {"id": "c", "consent": {"fax": True}}},
])
def test_both_refuse_the_same_bad_events(patch: dict) -> None:
    event = {**json.loads((FIXTURES / "events" / "order_delivered.json").read_text()), **patch}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(event, SCHEMA)
    with pytest.raises(EventError):
        parse_event(event)


def test_docs_list_every_example() -> None:
    doc = (ROOT / "docs" / "events.md").read_text()
    for name in EXAMPLES:
        assert f"tests/fixtures/events/{name}.json" in doc
    assert Path(ROOT / "chalicelib" / "events" / "events.schema.json").exists()
