"""The event envelope (a contract; see docs/events.md and events.schema.json)."""

from chalicelib.events.envelope import EventError, parse_event, unwrap

__all__ = ["EventError", "parse_event", "unwrap"]
