"""A botocore meter for DynamoDB: requests by operation, items read, write units.

Two hooks on the ``dynamodb`` service, ``before-call`` (the request as it goes
on the wire, DynamoDB JSON) and ``after-call`` (the parsed response), see every
call of every botocore client: boto3's and PynamoDB's alike (PynamoDB makes its
own botocore session per thread, so hooking boto3's default session would miss
it).  They get on a client in one of two ways:

- :func:`install` appends them to ``botocore.handlers.BUILTIN_HANDLERS``, which
  every botocore session registers when it is created -- the way moto installs
  its own stub.  Importing this module installs them, so every client created
  afterwards is metered.
- :func:`attach` registers them on a client made before that.

A request passed through both handlers is counted once (the request context
carries a mark).  The hooks do nothing unless a :class:`DdbMeter` is open::

    with DdbMeter() as meter:
        CustomerModel.get("c-1")
    meter.requests["GetItem"]   # 1

What is counted
---------------
- ``requests``: API calls by operation (one per ``_make_api_call``; SDK retries
  of the same call are not counted separately -- moto never throttles).
- ``items_read``: ``ScannedCount`` of Query and Scan responses (what DynamoDB
  reads and bills, before any filter) plus items returned by GetItem,
  BatchGetItem and TransactGetItems.  ``items_returned`` is ``Count`` instead
  of ``ScannedCount`` for Query/Scan.
- ``write_units``: per written item ``ceil(size / 1 KB)`` (at least 1), doubled
  inside TransactWriteItems, for PutItem, UpdateItem, DeleteItem, BatchWriteItem
  and TransactWriteItems; charged whether or not a condition fails (DynamoDB
  bills a failed conditional write too).  Base-table writes only: writes to
  global secondary indexes are billed on top and are not estimated here.

Item sizes follow the DynamoDB developer guide (attribute name bytes + value
size; numbers 1 byte per two significant digits + 1; lists and maps 3 bytes +
1 per element; null and booleans 1 byte).  A Put is sized exactly from its
``Item``.  An Update is charged by DynamoDB on the larger of the item before and
after; from the request alone it is approximated by its key plus the attribute
names and values the update expression mentions -- a lower bound.  Give
``item_sizer`` (table, key) -> size of the stored item, called after the
response, to charge the size after the update instead (the bench reads it from
moto's backend).  A Delete is sized by its key (after the call the item is
gone): another lower bound.
"""

from __future__ import annotations

import base64
import json
import math
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from botocore import handlers

ItemSizer = Callable[[str, Mapping[str, Any]], int | None]
Pending = tuple[str, Mapping[str, Any], int, bool]  # an update: table, key, bytes, in a tx

KB = 1024
_SEEN_BEFORE = "_ddb_meter_before"
_SEEN_AFTER = "_ddb_meter_after"
_BODY = "_ddb_meter_body"
_PENDING = "_ddb_meter_pending_updates"
_PLACEHOLDER = re.compile(r"[:#][A-Za-z0-9_]+")

_active: list[DdbMeter] = []
_lock = threading.Lock()


# -- item sizes ----------------------------------------------------------------------


def _number_size(text: str) -> int:
    digits = text.lstrip("+-").lower().split("e", 1)[0].replace(".", "")
    significant = digits.strip("0") or "0"
    return math.ceil(len(significant) / 2) + 1


def value_size(value: Mapping[str, Any]) -> int:
    """Bytes of one attribute value in DynamoDB JSON (``{"S": "x"}``)."""
    ((kind, v),) = value.items()
    if kind == "S":
        return len(v.encode("utf-8"))
    if kind == "N":
        return _number_size(v)
    if kind == "B":
        return len(base64.b64decode(v)) if isinstance(v, str) else len(v)
    if kind in ("NULL", "BOOL"):
        return 1
    if kind == "SS":
        return sum(len(s.encode("utf-8")) for s in v)
    if kind == "NS":
        return sum(_number_size(n) for n in v)
    if kind == "BS":
        return sum(len(base64.b64decode(b)) if isinstance(b, str) else len(b) for b in v)
    if kind == "L":
        return 3 + sum(value_size(e) + 1 for e in v)
    if kind == "M":
        return 3 + sum(len(k.encode("utf-8")) + value_size(e) + 1 for k, e in v.items())
    raise ValueError(f"unknown DynamoDB type {kind!r}")


def item_size(item: Mapping[str, Mapping[str, Any]]) -> int:
    """Bytes of an item in DynamoDB JSON: attribute name lengths + value sizes."""
    return sum(len(name.encode("utf-8")) + value_size(v) for name, v in item.items())


def write_units(size: int, transactional: bool = False) -> int:
    """Write capacity units of writing one item of ``size`` bytes."""
    return max(1, math.ceil(size / KB)) * (2 if transactional else 1)


def update_size(request: Mapping[str, Any]) -> int:
    """Lower bound of an updated item's size from an Update request: its key plus
    the attribute names and values that the update expression mentions."""
    expression = request.get("UpdateExpression", "")
    names: Mapping[str, str] = request.get("ExpressionAttributeNames") or {}
    values: Mapping[str, Any] = request.get("ExpressionAttributeValues") or {}
    used = set(_PLACEHOLDER.findall(expression))
    size = item_size(request.get("Key", {}))
    size += sum(len(n.encode("utf-8")) for p, n in names.items() if p in used)
    size += sum(value_size(v) for p, v in values.items() if p in used)
    return size


# -- the meter -------------------------------------------------------------------------


@dataclass
class DdbMeter:
    """Counts DynamoDB requests, items read and write units while open.

    Parameters
    ----------
    item_sizer
        Optional ``(table, key) -> bytes`` of the stored item, used after an
        update to charge the item's size after the update (None: keep the
        request-based lower bound).
    """

    item_sizer: ItemSizer | None = None
    requests: Counter[str] = field(default_factory=Counter)
    items_read: int = 0
    items_returned: int = 0
    items_written: int = 0
    write_units: int = 0
    write_units_by_table: Counter[str] = field(default_factory=Counter)
    writes_by_table: Counter[str] = field(default_factory=Counter)
    reads_by_table: Counter[str] = field(default_factory=Counter)

    def __enter__(self) -> DdbMeter:
        install()
        with _lock:
            _active.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        with _lock:
            if self in _active:
                _active.remove(self)

    @property
    def total_requests(self) -> int:
        return sum(self.requests.values())

    def snapshot(self) -> dict[str, Any]:
        return {"requests": dict(self.requests), "total_requests": self.total_requests,
                "items_read": self.items_read, "items_returned": self.items_returned,
                "items_written": self.items_written, "write_units": self.write_units,
                "write_units_by_table": dict(self.write_units_by_table),
                "writes_by_table": dict(self.writes_by_table),
                "reads_by_table": dict(self.reads_by_table)}

    # -- requests ----------------------------------------------------------------

    def _charge(self, table: str, size: int, transactional: bool) -> None:
        units = write_units(size, transactional)
        self.items_written += 1
        self.write_units += units
        self.write_units_by_table[table] += units
        self.writes_by_table[table] += 1

    def _on_request(self, op: str, body: Mapping[str, Any],
                    pending: list[Pending]) -> None:
        self.requests[op] += 1
        table = body.get("TableName", "")
        if op == "PutItem":
            self._charge(table, item_size(body["Item"]), False)
        elif op == "DeleteItem":
            self._charge(table, item_size(body["Key"]), False)
        elif op == "UpdateItem":
            pending.append((table, body["Key"], update_size(body), False))
        elif op == "BatchWriteItem":
            for name, writes in body.get("RequestItems", {}).items():
                for w in writes:
                    if "PutRequest" in w:
                        self._charge(name, item_size(w["PutRequest"]["Item"]), False)
                    else:
                        self._charge(name, item_size(w["DeleteRequest"]["Key"]), False)
        elif op == "TransactWriteItems":
            for entry in body.get("TransactItems", []):
                self._transact_entry(entry, pending)

    def _transact_entry(self, entry: Mapping[str, Any],
                        pending: list[Pending]) -> None:
        if "Put" in entry:
            self._charge(entry["Put"]["TableName"], item_size(entry["Put"]["Item"]), True)
        elif "Delete" in entry:
            self._charge(entry["Delete"]["TableName"], item_size(entry["Delete"]["Key"]), True)
        elif "Update" in entry:
            update = entry["Update"]
            pending.append((update["TableName"], update["Key"], update_size(update), True))
        # ConditionCheck: a read, no write units

    # -- responses ---------------------------------------------------------------

    def _on_response(self, op: str, body: Mapping[str, Any], parsed: Mapping[str, Any],
                     pending: Iterable[Pending]) -> None:
        for table, key, approx, transactional in pending:
            stored = self.item_sizer(table, key) if self.item_sizer is not None else None
            self._charge(table, max(approx, stored or 0), transactional)
        table = body.get("TableName", "")
        if op in ("Query", "Scan"):
            self._read(table, int(parsed.get("ScannedCount", 0)), int(parsed.get("Count", 0)))
        elif op == "GetItem":
            got = 1 if parsed.get("Item") else 0
            self._read(table, got, got)
        elif op == "BatchGetItem":
            for name, items in (parsed.get("Responses") or {}).items():
                self._read(name, len(items), len(items))
        elif op == "TransactGetItems":
            got = sum(1 for r in parsed.get("Responses") or [] if r.get("Item"))
            self._read("", got, got)

    def _read(self, table: str, read: int, returned: int) -> None:
        self.items_read += read
        self.items_returned += returned
        self.reads_by_table[table] += read


# -- the hooks -------------------------------------------------------------------------


def _decode(params: Mapping[str, Any]) -> dict[str, Any]:
    raw = params.get("body") or b"{}"
    try:
        decoded: dict[str, Any] = json.loads(raw)
    except ValueError:
        return {}
    return decoded


def _before_call(model: Any, params: Mapping[str, Any], context: dict[str, Any],
                 **_: Any) -> None:
    if not _active or context.get(_SEEN_BEFORE):
        return None
    context[_SEEN_BEFORE] = True
    body = _decode(params)
    context[_BODY] = body
    with _lock:
        meters = list(_active)
    opened: list[tuple[DdbMeter, list[Pending]]] = []
    for meter in meters:
        pending: list[Pending] = []
        meter._on_request(model.name, body, pending)
        opened.append((meter, pending))
    context[_PENDING] = opened
    return None  # never a response: the call goes on


def _after_call(model: Any, parsed: Mapping[str, Any], context: dict[str, Any],
                **_: Any) -> None:
    if context.get(_SEEN_AFTER) or _PENDING not in context:
        return
    context[_SEEN_AFTER] = True
    body = context.get(_BODY, {})
    for meter, pending in context[_PENDING]:
        meter._on_response(model.name, body, parsed or {}, pending)


_SPECS = (("before-call.dynamodb", _before_call), ("after-call.dynamodb", _after_call))


def install() -> None:
    """Meter every botocore client created from now on (idempotent)."""
    for spec in _SPECS:
        if spec not in handlers.BUILTIN_HANDLERS:
            handlers.BUILTIN_HANDLERS.append(spec)


def attach(client: Any) -> Any:
    """Meter a client created before :func:`install`; returns it (idempotent)."""
    for event, handler in _SPECS:
        client.meta.events.register(event, handler, unique_id=f"ddb-meter-{event}")
    return client


def attach_app_clients() -> None:
    """Meter the app's DynamoDB clients made before the meter was installed (PynamoDB's
    per model, and the transactions' connection)."""
    from chalicelib.store import tx
    from chalicelib.store.models import ALL_MODELS

    for model in ALL_MODELS:
        attach(model._get_connection().connection.client)
    attach(tx.connection().client)


install()
