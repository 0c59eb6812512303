"""Load and validate campaign files and the templates they use.

Every problem is reported as one line, ``file: json.path: message``; nothing here
raises on bad input, so the CLI and the push API can list all problems at once.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import functools
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from pydantic import ValidationError

from chalicelib.config.compiled import CompiledCampaign, compile_campaign
from chalicelib.config.model import (
    E164_PATTERN,
    EMAIL_PATTERN,
    EVENT_TYPE_PATTERN,
    ID_PATTERN,
    LOCAL_TIME_PATTERN,
    MAX_STEPS,
    MAX_VARIANTS,
    TRIGGER_TAGS,
    Campaign,
    EventTrigger,
    Step,
    consistency_problems,
)
from chalicelib.events import text as event_text
from chalicelib.jsonkind import json_kind
from chalicelib.render.naming import locale_chain, parse_filename
from chalicelib.rules.model import child_key

DEFAULT_LOCALE = "en-US"  # the locale of locale-less template files (Renderer's default)

# Profile fields a template may use beyond the renderer's sample customer.
SAMPLE_CUSTOMER: dict[str, Any] = {
    "birthday": "1992-02-29", "currency": "USD", "first_order_at": "2025-11-02T15:04:00Z",
    "last_order_at": "2026-02-27T10:00:00Z", "last_delivery_at": "2026-03-01T14:02:00Z",
}


@dataclass(frozen=True, slots=True)
class Problem:
    file: str
    path: str
    message: str
    severity: str = "error"
    # A template's problem without the campaign named in ``message`` (the same line
    # shown with another campaign's data is the same problem): see ``_first_time``.
    plain: str = field(default="", compare=False, repr=False)

    def __str__(self) -> str:
        prefix = "warning: " if self.severity == "warning" else ""
        return f"{self.file}: {self.path}: {prefix}{self.message}"


@dataclass(slots=True)
class CampaignBundle:
    """A validated campaign with the templates it uses: the unit that is pushed."""

    campaign: Campaign
    source: str
    templates: dict[str, str] = field(default_factory=dict)

    def compiled(self, version: int = 1) -> CompiledCampaign:
        return compile_campaign(self.campaign, version)


def json_path(loc: Sequence[str | int]) -> str:
    """``("steps", 0, "after")`` as ``$.steps[0].after`` (pydantic's trigger tags dropped)."""
    return _plain_json_path(_document_loc(loc))


def _document_loc(loc: Sequence[str | int]) -> list[str | int]:
    """A pydantic error's location as keys and indexes of the document (the tags
    pydantic puts after ``trigger`` for the union's variants dropped)."""
    parts: list[str | int] = []
    previous: str | int | None = None
    for part in loc:
        if previous == "trigger" and part in TRIGGER_TAGS:
            previous = None
            continue
        parts.append(part)
        previous = part
    return parts


@functools.cache
def _campaign_schema() -> dict[str, Any]:
    return Campaign.model_json_schema()


def _fields_at(loc: Sequence[str | int]) -> set[str]:
    """The field names the campaign schema allows in the object at ``loc`` (a
    document location; every variant's of a union such as the trigger)."""
    schema = _campaign_schema()
    defs = schema.get("$defs", {})

    def resolve(node: Any) -> list[dict[str, Any]]:
        if not isinstance(node, dict):
            return []
        if "$ref" in node:
            return resolve(defs.get(node["$ref"].rsplit("/", 1)[-1]))
        options = node.get("oneOf") or node.get("anyOf")
        if options:
            return [n for option in options for n in resolve(option)]
        return [node]

    nodes = resolve(schema)
    for part in loc:
        if isinstance(part, int):
            nodes = [n for node in nodes for n in resolve(node.get("items"))]
        else:
            nodes = [n for node in nodes
                     for n in resolve((node.get("properties") or {}).get(part))]
    return {name for node in nodes for name in node.get("properties") or {}}


# What a value matching each of the model's patterns looks like, for the message
# that replaces pydantic's "String should match pattern '^...$'".
_PATTERN_HINTS: Final = {
    LOCAL_TIME_PATTERN: "a local time HH:MM, 00:00 to 23:59",
    EVENT_TYPE_PATTERN: ("an event type: lowercase dotted words such as "
                         "'order.delivered'"),
    E164_PATTERN: "a phone number in E.164 form, such as '+14155550100'",
    EMAIL_PATTERN: "an email address, such as 'ops@example.com'",
    ID_PATTERN: ("1 to 63 lowercase letters, digits, '-' or '_', starting with a "
                 "letter or digit"),
}


_FIELD_SYNONYMS: Final = {"delay": "after", "wait": "after", "send_at": "at",
                          "time": "at", "days": "weekdays"}


def _pydantic_message(err: Mapping[str, Any]) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        return "unknown field (check the spelling; see campaigns/schema.json)"
    if kind == "missing":
        return "required field is missing"
    if kind == "string_pattern_mismatch":
        pattern = (err.get("ctx") or {}).get("pattern")
        hint = _PATTERN_HINTS.get(pattern) if isinstance(pattern, str) else None
        if hint is not None:
            return f"should be {hint}; got {_shown(err['input'])}"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return f"should be a JSON object, not {json_kind(err['input'])}"
    plain = _plain_pydantic_message(kind, err.get("ctx") or {}, err.get("input"))
    if plain is not None:
        return plain
    return str(err["msg"]).removeprefix("Value error, ").replace("Input should be",
                                                                  "should be")


def _shown(value: Any) -> str:
    """A value as JSON, cut short: what a message quotes of the marketer's input."""
    if isinstance(value, str) and len(value) > 60:
        value = value[:57] + "..."  # cut inside the quotes
    if type(value) is int and 10**20 <= abs(value) <= 1.7976931348623157e308:
        # 1e300 as written: a whole number written as a float is made an int (an
        # integer written with more than 20 digits is shown so too).
        return f"{float(value):g}"
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 64 else text[:61] + "..."


def _plain_pydantic_message(kind: str, ctx: Mapping[str, Any], value: Any) -> str | None:
    """Pydantic's wording ("Input should be a valid integer", "List should have at
    least 1 item after validation, not 0") in a marketer's words, with what was given."""
    got = f"; got {_shown(value)}"
    if kind in ("int_type", "int_from_float", "int_parsing"):
        if isinstance(value, float) and not isinstance(value, bool):
            return f"should be a whole number{got}"
        return f"should be a whole number, not {json_kind(value)}{got}"
    if kind in ("float_type", "float_parsing"):
        return f"should be a number, not {json_kind(value)}{got}"
    if kind in ("string_type", "str_type"):
        return f"should be a string, not {json_kind(value)}"
    if kind == "bool_type":
        return f"should be true or false, not {json_kind(value)}"
    if kind in ("list_type", "tuple_type"):
        return f"should be an array, not {json_kind(value)}"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        bound = next(iter(ctx.values()), None)
        if isinstance(bound, float) and bound.is_integer():
            bound = int(bound)
        words = {"greater_than_equal": "at least", "greater_than": "more than",
                 "less_than_equal": "at most", "less_than": "less than"}[kind]
        return f"should be {words} {bound}{got}"
    if kind in ("too_short", "too_long"):
        limit = ctx.get("min_length" if kind == "too_short" else "max_length")
        actual = ctx.get("actual_length")
        words = "at least" if kind == "too_short" else "at most"
        noun = "item" if limit == 1 else "items"
        return f"should have {words} {limit} {noun}; it has {actual}"
    if kind in ("string_too_short", "string_too_long"):
        limit = ctx.get("min_length" if kind == "string_too_short" else "max_length")
        if kind == "string_too_short" and limit == 1:
            return "should not be empty"
        words = "at least" if kind == "string_too_short" else "at most"
        length = len(value) if isinstance(value, str) else "?"
        return f"should have {words} {limit} characters; it has {length}"
    if kind == "literal_error":
        return f"should be {ctx.get('expected')}{got}"
    return None


def _pydantic_problems(file: str, error: ValidationError) -> list[Problem]:
    """One problem per pydantic error; a misspelt required field (``chanel`` for
    ``channel``) is one line, the unknown field naming the one it should be, not
    that line and a "required field is missing" beside it."""
    errors = error.errors(include_url=False)
    missing = {(tuple(e["loc"][:-1]), e["loc"][-1]) for e in errors
               if e["type"] == "missing" and e["loc"] and isinstance(e["loc"][-1], str)}
    meant: dict[tuple[Any, ...], str] = {}  # an unknown field's loc -> the missing one
    for err in errors:
        loc = tuple(err["loc"])
        if err["type"] != "extra_forbidden" or not loc or not isinstance(loc[-1], str):
            continue
        wanted = [name for parent, name in missing if parent == loc[:-1]
                  and (parent, name) not in {(k[:-1], v) for k, v in meant.items()}]
        close = difflib.get_close_matches(loc[-1], wanted, n=1, cutoff=0.6)
        if close:
            meant[loc] = close[0]
    named = {(k[:-1], v) for k, v in meant.items()}  # missing fields a typo names
    problems = []
    for err in errors:
        loc = tuple(err["loc"])
        if err["type"] == "missing" and loc and (loc[:-1], loc[-1]) in named:
            continue  # named by the misspelt field's line
        if err["type"] == "trigger_kind" and isinstance(err.get("input"), dict):
            # No kind's key, but one misspelt (`evnt`): named, as a typo elsewhere is.
            typos = [(key, close[0]) for key in err["input"] if isinstance(key, str)
                     and (close := difflib.get_close_matches(key, sorted(TRIGGER_TAGS),
                                                             n=1, cutoff=0.6))]
            problems += [Problem(file, json_path((*loc, key)),
                                 f"unknown field: did you mean {meant_key!r}? (a trigger "
                                 "needs one of 'event', 'date' or 'idle')")
                         for key, meant_key in typos]
            if typos:
                continue
        message = _pydantic_message(err)
        if loc in meant:
            message = (f"unknown field: did you mean {meant[loc]!r}, a required field "
                       "that is missing? (see campaigns/schema.json)")
        elif err["type"] == "extra_forbidden" and loc and isinstance(loc[-1], str):
            where = _document_loc(loc)
            fields = _fields_at(where[:-1])
            if loc[-1] in fields:  # a field of the trigger's other kinds
                message = ("unknown field for this kind of trigger (it belongs to another "
                           "kind; see campaigns/schema.json)")
                problems.append(Problem(file, json_path(loc), message))
                continue
            # What other tools call a step's delay (`dealy`, the issue's own typo).
            synonyms = {k: v for k, v in _FIELD_SYNONYMS.items() if v in fields}
            close = difflib.get_close_matches(loc[-1], sorted(fields | set(synonyms)),
                                              n=1, cutoff=0.75)
            close = [synonyms.get(c, c) for c in close]
            if close:
                message = (f"unknown field: did you mean {close[0]!r}? (see "
                           "campaigns/schema.json)")
        problems.append(Problem(file, json_path(loc), message))
    return problems


def _literal_rule_problem(rule: Any) -> str | None:
    """A whole rule that is a constant by mistake (``"customer.tier == 'gold'"``)."""
    if isinstance(rule, bool):
        return None  # `true` / `false`: everyone / no one, on purpose
    if isinstance(rule, dict):
        return "an empty object is not a rule (it is always true)" if not rule else None
    kind = json_kind(rule)
    return (f"a rule must be a JSON Logic operation such as {{\"==\": [...]}}, or true/false;"
            f" got {kind}, which is a constant")


def _raw_items(raw: Mapping[str, Any], key: str) -> list[Any]:
    """``raw[key]`` if it is a list, cut to what the model allows (more is one problem
    already, not one per item)."""
    items = raw.get(key)
    limit = MAX_STEPS if key == "steps" else MAX_VARIANTS
    return items[:limit] if isinstance(items, list) else []


def _raw_rules(raw: Mapping[str, Any]) -> list[tuple[Any, str]]:
    """The rules of a campaign document, with their JSON paths, read from the raw JSON
    (a rule is any JSON, so this works whatever else is wrong with the file)."""
    rules: list[tuple[Any, str]] = [(raw.get("audience"), "$.audience")]
    rules += [(s.get("condition"), f"$.steps[{i}].condition")
              for i, s in enumerate(_raw_items(raw, "steps")) if isinstance(s, dict)]
    exit_ = raw.get("exit")
    if isinstance(exit_, dict):
        rules.append((exit_.get("rule"), "$.exit.rule"))
    return rules


def _rule_problems(file: str, raw: Mapping[str, Any]) -> list[Problem]:
    from chalicelib.journeys.profile import PROFILE_FIELDS
    from chalicelib.rules import absent_roots, lint_rule, unknown_fields, validate_rule

    problems = []
    trigger = raw.get("trigger")
    # Rules that decide without an event read `event` as {}: a date or idle
    # campaign's, and every exit rule (checked at send time).
    dated = isinstance(trigger, dict) and bool(trigger) and "event" not in trigger
    for rule, path in _raw_rules(raw):
        absent = ({"event": "an exit rule is checked at send time, without an event"}
                  if path == "$.exit.rule" else
                  {"event": "a date or idle trigger has no event"} if dated else {})
        if rule is None:
            continue
        literal = _literal_rule_problem(rule)
        if literal is not None:
            problems.append(Problem(file, path, literal))
            continue
        errors = validate_rule(rule, path=path)
        # What lint finds inside a node that does not compile is noise: say it once.
        errors += [e for e in lint_rule(rule, path=path)
                   if not any(_within(e.path, c.path) for c in errors)]
        problems.extend(dict.fromkeys(Problem(file, err.path, err.message) for err in errors))
        # A profile field no profile has is most likely a typo, but only a warning:
        # the rule still works (it reads null), and the push is not stopped.
        problems.extend(dict.fromkeys(
            Problem(file, w.path, w.message, "warning")
            for w in [*unknown_fields(rule, {"customer": PROFILE_FIELDS}, path=path),
                      *absent_roots(rule, absent, path=path)]
            if not any(_within(w.path, e.path) for e in errors)))
    return problems


def _within(path: str, node: str) -> bool:
    """``path`` is ``node`` or a JSON path below it."""
    return path == node or path.startswith((f"{node}.", f"{node}["))


def _consistency(raw: Mapping[str, Any]) -> list[tuple[str, str]]:
    return [(json_path(loc), message) for loc, message in consistency_problems(raw)]


def parse_campaign(file: str, raw: Any) -> tuple[Campaign | None, list[Problem]]:
    """Validate one decoded campaign document against the model and its rules.

    Validation is strict: JSON types are not coerced (``"10"`` is not a number,
    ``true`` is not 1), as in the JSON Schema.
    """
    if not isinstance(raw, dict):
        return None, [Problem(file, "$", "a campaign must be a JSON object, "
                              f"not {json_kind(raw)}")]
    try:
        campaign = Campaign.model_validate(raw, strict=True,
                                           context={"defer_consistency": True})
    except ValidationError as exc:
        # Report what else is wrong too, so that one run lists every problem.
        problems = _pydantic_problems(file, exc)
        refused = [p.path for p in problems]
        steps_refused = any(_within(node, "$.steps") for node in refused)
        problems += [Problem(file, path, message)
                     for path, message in _consistency(raw)
                     if not any(_within(path, node) or _within(node, path)
                                for node in refused)
                     and not (steps_refused and "names unknown step" in message)]
        return None, problems + _rule_problems(file, raw)
    problems = [Problem(file, path, message) for path, message in _consistency(raw)]
    problems += _rule_problems(file, raw)
    return (None if any(p.severity == "error" for p in problems) else campaign), problems


class _DuplicateKeys:
    """``object_pairs_hook`` for json.loads that remembers objects with a key twice."""

    def __init__(self) -> None:
        self.found: list[tuple[dict[str, Any], str]] = []

    def __call__(self, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj: dict[str, Any] = {}
        for key, value in pairs:
            if key in obj:
                self.found.append((obj, key))
            obj[key] = value
        return obj


def _paths_of(root: Any, targets: set[int]) -> dict[int, str]:
    """JSON paths of the objects (by id) in ``targets``, found walking ``root``."""
    paths: dict[int, str] = {}
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(root, ())]
    while stack and len(paths) < len(targets):
        value, loc = stack.pop()
        if id(value) in targets:
            paths.setdefault(id(value), _plain_json_path(loc))
        if isinstance(value, dict):
            stack.extend((v, (*loc, k)) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((v, (*loc, i)) for i, v in enumerate(value))
    return paths


def _plain_json_path(loc: Sequence[str | int]) -> str:
    out = "$"
    for part in loc:
        # Keys written as the rule compiler writes them: $.steps, $['$schema'].
        out = f"{out}[{part}]" if isinstance(part, int) else child_key(out, part)
    return out


class _NotJson:
    """Stands, in a decoded document, where a number JSON does not allow was."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


def _not_json(found: list[_NotJson], reason: str) -> _NotJson:
    found.append(_NotJson(reason))
    return found[-1]


def _finite(found: list[_NotJson], number: str) -> float | _NotJson:
    try:
        return event_text.finite_float(number)
    except ValueError as exc:
        return _not_json(found, str(exc))


def _int(found: list[_NotJson], number: str) -> int | _NotJson:
    try:
        return int(number)
    except ValueError:  # beyond Python's digit limit for int()
        return _not_json(found, "a number has too many digits")


# Far deeper than any campaign or customer file (a rule may nest 64 levels).
MAX_DOCUMENT_DEPTH = 500


def _deeper_than(value: Any, limit: int) -> bool:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def decode_json(file: str, data: bytes) -> tuple[Any, list[Problem]]:
    """Decode a JSON document, refusing what ``json.loads`` lets through silently.

    A UTF-8 byte order mark is allowed; other encodings, a key given twice in
    one object (the last would win), nesting deeper than Python can parse and
    numbers too long to convert are each one problem, never an exception.
    """
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        before = data[: exc.start]
        line = before.count(b"\n") + 1
        column = exc.start - (before.rfind(b"\n") + 1) + 1
        return None, [Problem(file, f"line {line} column {column}",
                              f"not UTF-8 text (byte 0x{data[exc.start]:02x}); "
                              "save the file as UTF-8")]
    if not text.strip():
        return None, [Problem(file, "$", "the file is empty: it should hold one JSON object")]
    if text.startswith("\ufeff"):
        return None, [Problem(file, "line 1 column 1", "invalid JSON: a second byte order "
                              "mark (U+FEFF) opens the file: save it as UTF-8 with one "
                              "at most")]
    duplicates = _DuplicateKeys()
    bad: list[_NotJson] = []  # NaN, Infinity, 1e400, an integer of thousands of digits
    try:
        raw = json.loads(text, object_pairs_hook=duplicates,
                         parse_constant=lambda name: _not_json(
                             bad, f"{name} is not a JSON value (write a number, or null)"),
                         parse_float=lambda number: _finite(bad, number),
                         parse_int=lambda number: _int(bad, number))
    except json.JSONDecodeError as exc:
        # Lines as editors count them: a lone carriage return (old Mac files) ends
        # one too, which json counts only at "\n".
        breaks = list(_LINE_BREAK.finditer(text, 0, exc.pos))
        column = exc.pos - (breaks[-1].end() if breaks else 0) + 1
        where = f"line {len(breaks) + 1} column {column}"
        message = exc.msg
        if message == "Invalid control character at":
            message = ("a control character (a tab, a line break) inside a string: "
                       "write it as \\t or \\n")
        return None, [Problem(file, where, f"invalid JSON: {message}")]
    except RecursionError:
        return None, [Problem(file, "$", "invalid JSON: nested too deeply")]
    if bad:  # each named where it is
        paths = _paths_of(raw, {id(value) for value in bad})
        return None, [Problem(file, paths.get(id(value), "$"), f"invalid JSON: {value.reason}")
                      for value in bad]
    if "\\u" in text and not event_text.encodes(json.dumps(raw, ensure_ascii=False)):
        # An escaped UTF-16 surrogate that is not half of a pair: not Unicode, and
        # DynamoDB refuses to store it (push would fail on it).
        return None, [Problem(file, _not_unicode_path(raw),
                              f"invalid JSON: {event_text.NOT_UNICODE}")]
    if _deeper_than(raw, MAX_DOCUMENT_DEPTH):
        # Where Python's parser gives up depends on its version (3.11: about 1000
        # levels; 3.13 parses more): one limit, the same answer everywhere.
        return None, [Problem(file, "$", "invalid JSON: nested too deeply")]
    if duplicates.found:
        paths = _paths_of(raw, {id(obj) for obj, _ in duplicates.found})
        # The document is returned too (the last value of each key), so that what
        # else is wrong with it is checked in the same run.
        return raw, [Problem(file, _child_path(paths.get(id(obj), "$"), key),
                             f"key {key!r} appears more than once in this object")
                     for obj, key in duplicates.found]
    return raw, []


_LINE_BREAK: Final = re.compile(r"\r\n|\r|\n")


def _not_unicode_path(raw: Any) -> str:
    """The JSON path of the first key or string that is not Unicode (a lone
    surrogate), ``$`` when none is found."""
    stack: list[tuple[Any, tuple[Any, ...]]] = [(raw, ())]
    while stack:
        value, loc = stack.pop()
        if isinstance(value, str):
            if not event_text.encodes(value):
                return _plain_json_path(loc)
        elif isinstance(value, dict):
            for key in reversed(list(value)):
                if not event_text.encodes(key):
                    return _plain_json_path(loc)  # the object: the key cannot be shown
                stack.append((value[key], (*loc, key)))
        elif isinstance(value, list):
            stack.extend((item, (*loc, i)) for i, item in reversed(list(enumerate(value))))
    return "$"


def _child_path(path: str, key: str) -> str:
    return _plain_json_path([key]).replace("$", path, 1)


# A campaign is stored, with its templates, as one DynamoDB item: at most 400 KB.
# What the item's keys and other attributes take is left as a margin.
MAX_ITEM_BYTES: Final = 400 * 1024
MAX_STORED_BYTES: Final = MAX_ITEM_BYTES - 8 * 1024
# A file is read no further than this (a 2.8 MB rule took 12 s and 870 MB to check):
# room for a campaign that fits one item, written with indentation.
MAX_FILE_BYTES: Final = 1024 * 1024
_TOO_BIG = ("a campaign is stored with its templates as one DynamoDB item, at most "
            "400 KB: shorten its rules or templates, or split it")


def _read_campaign(path: Path) -> tuple[Any, list[Problem]]:
    file = str(path)
    if path.exists() and not path.is_file():  # a named pipe would block the read
        return None, [Problem(file, "$", "not a regular file")]
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)  # a huge file is not read whole
    except OSError as exc:
        return None, [Problem(file, "$", f"cannot read file: {exc.strerror or exc}")]
    if len(data) > MAX_FILE_BYTES:
        return None, [Problem(file, "$", f"the file is over 1 MB; {_TOO_BIG}")]
    return decode_json(file, data)


def stored_size(campaign: Campaign, templates: Mapping[str, str]) -> int:
    """Bytes of the campaign definition and templates as :func:`store.campaigns.push`
    stores them (each attribute as its model serializes it: JSON in which a character
    beyond ASCII takes 6 bytes, \\uXXXX, and one beyond the Basic Multilingual Plane 12,
    a surrogate pair; attribute names and keys not counted)."""
    from chalicelib.store.models import CampaignModel

    definition = campaign.model_dump(mode="json", by_alias=True, exclude_none=True)
    stored = (CampaignModel.definition.serialize(definition) or "",
              CampaignModel.templates.serialize(dict(templates)) or "")
    return sum(len(text.encode("utf-8")) for text in stored)


def load_campaign(path: Path) -> tuple[Campaign | None, list[Problem]]:
    raw, problems = _read_campaign(path)
    if problems:
        return None, problems
    return parse_campaign(str(path), raw)


def campaign_files(paths: Iterable[Path]) -> list[Path]:
    """The campaign files named or found in folders, each once (``validate a.json a.json``
    or a folder and a file in it must not report a campaign as its own duplicate)."""
    files: list[Path] = []
    seen: set[Path] = set()
    for path in paths:
        found = _folder_files(path) if path.is_dir() else [path]
        for file in found:
            try:
                key = file.resolve()
            except (OSError, RuntimeError):  # a symlink loop: reading it reports it
                key = file.absolute()
            if key not in seen:
                seen.add(key)
                files.append(file)
    return files


def _folder_files(folder: Path) -> list[Path]:
    """The campaign files of a folder: its ``*.json`` (``.JSON`` too), but not the
    editors' JSON Schema beside them (``schema.json``, when it is one)."""
    return [p for p in _entries(folder) if p.suffix.lower() == ".json"
            and not (p.name == "schema.json" and _is_schema_file(p))]


def _is_schema_file(path: Path) -> bool:
    """The editors' JSON Schema; or not a regular file (a dangling link, a folder
    named so): not read, as before ``schema.json`` could be a campaign."""
    if not path.is_file():
        return True
    raw, problems = _read_campaign(path)
    return not problems and _is_json_schema(raw)


def _inner_folders(folder: Path, named: set[Path]) -> list[Problem]:
    """A warning for each folder inside ``folder`` that holds JSON files: they are
    not read (only the files at the top of a folder given are), unless that folder
    is given too (``named``: the paths given, resolved)."""
    try:
        inner = [p for p in _entries(folder) if p.is_dir()
                 and not p.name.startswith(".") and p.suffix.lower() != ".json"
                 and p.resolve() not in named]
    except (OSError, RuntimeError):
        return []
    return [Problem(str(p), "$", "a folder inside the one given: its campaign files are not "
                    "read (name it to check them)", "warning")
            for p in inner if any(q.suffix.lower() == ".json" for q in _entries(p))]


def _entries(folder: Path) -> list[Path]:
    """A folder's entries, sorted by name; none when it cannot be listed."""
    try:
        return sorted(folder.iterdir())
    except OSError:
        return []


def _message_files(name: str, channel: str, templates: Mapping[str, str]) -> dict[str, str]:
    """Every locale variant of one message template."""
    found = {}
    for filename, source in templates.items():
        parsed = parse_filename(filename)
        if parsed is not None and parsed.name == name and parsed.channel == channel:
            found[filename] = source
    return found


def _with_dependencies(files: Mapping[str, str],
                       templates: Mapping[str, str]) -> dict[str, str]:
    """``files`` plus the layouts and partials they extend, include or import, transitively.

    A reference computed at render time (``{% include customer.x %}``) could be
    any file: then every file that is not itself a message template comes along.
    """
    from jinja2 import Environment, TemplateSyntaxError, meta

    env = Environment()
    out = dict(files)
    todo = list(files)
    while todo:
        source = templates.get(todo.pop(), "")
        try:
            found = list(meta.find_referenced_templates(env.parse(source)))
        except (TemplateSyntaxError, RecursionError):
            continue  # validation reports the syntax error
        references = [f for f in templates if _is_partial(f)] if None in found else [
            f for f in found if f is not None]
        for ref in references:
            if ref in templates and ref not in out:
                out[ref] = templates[ref]
                todo.append(ref)
    return out


def _is_partial(filename: str) -> bool:
    parsed = parse_filename(filename)
    return parsed is None or parsed.is_partial


def templates_for(campaign: Campaign, templates: Mapping[str, str]) -> dict[str, str]:
    """The template files a campaign uses: every locale variant, and the layouts and
    partials those extend or include (a campaign version is stored with all of them)."""
    files: dict[str, str] = {}
    for name, channel in campaign.templates_used():
        files.update(_message_files(name, channel, templates))
    return _with_dependencies(files, templates)


@dataclass(frozen=True, slots=True)
class _TemplateUse:
    """One place a campaign names a message template."""

    name: str
    channel: str
    path: str  # JSON path of the name in the campaign file
    survey: str | None
    step: str


@dataclass(frozen=True, slots=True)
class _CampaignShape:
    """What template checks need to know of a campaign (valid or not)."""

    id: str
    name: str
    event_trigger: bool
    uses: tuple[_TemplateUse, ...]
    trigger_event: str | None = None  # an event trigger's event type


def _shape(campaign: Campaign) -> _CampaignShape:
    uses = []
    for i, step in enumerate(campaign.steps):
        uses.append(_TemplateUse(step.template, step.channel, f"$.steps[{i}].template",
                                 step.survey, step.id))
        uses += [_TemplateUse(v.templates[step.id], step.channel,
                              _plain_json_path(("variants", j, "templates", step.id)),
                              step.survey, step.id)
                 for j, v in enumerate(campaign.variants) if step.id in v.templates]
    trigger = campaign.trigger
    return _CampaignShape(campaign.id, campaign.name, isinstance(trigger, EventTrigger),
                          tuple(uses),
                          trigger.event if isinstance(trigger, EventTrigger) else None)


def _raw_shape(raw: Mapping[str, Any]) -> _CampaignShape:
    """The template uses of a campaign document the model refused, as far as they can
    be read (steps with a valid channel and template name), so that a missing or
    broken template is reported in the same run as the other problems."""

    from chalicelib.config.model import TEMPLATE_PATTERN
    from chalicelib.journeys.messages import SURVEY_QUESTIONS

    def text(value: Any, default: str = "") -> str:
        return value if isinstance(value, str) else default

    def name_ok(value: Any) -> bool:
        return isinstance(value, str) and re.match(TEMPLATE_PATTERN, value) is not None

    uses: list[_TemplateUse] = []
    channels: dict[str, str] = {}
    surveys: dict[str, str | None] = {}
    for i, step in enumerate(_raw_items(raw, "steps")):
        if not isinstance(step, dict) or step.get("channel") not in ("sms", "email"):
            continue
        step_id = text(step.get("id"), f"#{i}")
        channels.setdefault(step_id, step["channel"])
        # A survey kind the model refused (misspelt, a list) still means a survey
        # step: its template is checked as one (the kind's line is the problem).
        kind = step.get("survey")
        if kind is None:  # a misspelt key (`survy`), reported as an unknown field
            kind = next((v for k, v in step.items() if isinstance(k, str)
                         and k not in Step.model_fields
                         and difflib.get_close_matches(k, ("survey",), cutoff=0.75)), None)
        survey = (kind if isinstance(kind, str) and kind in SURVEY_QUESTIONS
                  else None if kind is None else next(iter(SURVEY_QUESTIONS)))
        surveys.setdefault(step_id, survey)
        if name_ok(step.get("template")):
            uses.append(_TemplateUse(step["template"], step["channel"],
                                     f"$.steps[{i}].template", survey, step_id))
    for j, variant in enumerate(_raw_items(raw, "variants")):
        swaps = variant.get("templates") if isinstance(variant, dict) else None
        for step_id, name in (swaps.items() if isinstance(swaps, dict) else ()):
            if step_id in channels and name_ok(name):
                uses.append(_TemplateUse(name, channels[step_id],
                                         _plain_json_path(("variants", j, "templates",
                                                           step_id)),
                                         surveys[step_id], step_id))
    # A trigger that cannot be read (missing, misspelt, empty) is taken as an event
    # trigger, the one whose messages see the most: no template line is blamed on
    # what the trigger's own line reports. Likewise an event type the model refused
    # draws no warning about which events carry an order.
    trigger = raw.get("trigger")
    dated = isinstance(trigger, dict) and "event" not in trigger and (
        "date" in trigger or "idle" in trigger)
    event = trigger.get("event") if isinstance(trigger, dict) else None
    valid_event = isinstance(event, str) and re.match(EVENT_TYPE_PATTERN, event) is not None
    return _CampaignShape(text(raw.get("id")), text(raw.get("name")), not dated, tuple(uses),
                          event if valid_event else None)


def sample_context(campaign: Campaign | _CampaignShape, survey: str | None) -> dict[str, Any]:
    """What a template of this campaign sees at send time, with sample values.

    Date and idle triggers carry no order, and only survey steps have a survey, so
    a template that uses either where it will not exist fails validation.
    """
    from chalicelib.journeys.messages import SURVEY_QUESTIONS
    from chalicelib.render import SAMPLE_CONTEXT

    shape = campaign if isinstance(campaign, _CampaignShape) else _shape(campaign)
    context = copy.deepcopy(SAMPLE_CONTEXT)
    context["customer"] = {**SAMPLE_CUSTOMER, **context["customer"]}
    if not shape.event_trigger:
        context["order"] = {}
    context["campaign"] = {"id": shape.id, "name": shape.name}
    context["survey"] = (
        {"kind": survey, "question": SURVEY_QUESTIONS[survey]} if survey else None
    )
    return context


def _missing_template(name: str, channel: str, templates: Mapping[str, str],
                      template_dir: str) -> str | None:
    """Why a step's template cannot be sent to every customer, or None.

    Customers whose locale has no variant get the locale-less file (or, as a
    last resort, the default locale's variant), so one of those must exist.
    """
    variants = _message_files(name, channel, templates)
    expected = f"{template_dir}/{name}.{channel}.j2"
    if not variants:
        return f"no {channel} template {name!r} (expected {expected})"
    fallbacks = {None, *locale_chain(DEFAULT_LOCALE)}
    if any(getattr(parse_filename(f), "locale", None) in fallbacks for f in variants):
        return None
    return (f"no default {channel} template {name!r}: customers in other locales would get "
            f"nothing (expected {expected}; found only {', '.join(sorted(variants))})")


def _hint(message: str, shape: _CampaignShape, steps: list[_TemplateUse]) -> str:
    """Why a variable the sample data has is undefined for this campaign."""
    if message.startswith(("undefined variable 'order.", "undefined variable 'order[")) and (
            not shape.event_trigger):
        return f"{message} (campaign {shape.id!r} has a date or idle trigger: there is no order)"
    if message.startswith(("undefined variable 'survey.", "undefined variable 'survey[")):
        plain = sorted({u.step for u in steps if u.survey is None})
        if plain:
            return (f"{message} (step {', '.join(repr(s) for s in plain)} of campaign "
                    f"{shape.id!r} has no 'survey': test it with {{% if survey %}})")
    return message


def missing_templates(shape: _CampaignShape, source: str, templates: Mapping[str, str],
                      template_dir: str = "templates") -> list[Problem]:
    """The template names of a campaign with no file every customer can get."""
    problems = []
    for use in shape.uses:
        missing = _missing_template(use.name, use.channel, templates, template_dir)
        if missing is not None:
            problems.append(Problem(source, use.path, missing))
    return problems


def check_templates(campaign: Campaign | _CampaignShape, source: str,
                    templates: Mapping[str, str],
                    template_dir: str = "templates") -> list[Problem]:
    """The problems of the templates a campaign uses, rendered with its data (a
    template's line says which campaign's data showed it: see ``Problem.plain``)."""
    from chalicelib.render import validate_templates

    shape = campaign if isinstance(campaign, _CampaignShape) else _shape(campaign)
    problems = missing_templates(shape, source, templates, template_dir)
    uses: dict[tuple[str, str], list[_TemplateUse]] = {}
    for use in shape.uses:
        if _missing_template(use.name, use.channel, templates, template_dir) is None:
            uses.setdefault((use.name, use.channel), []).append(use)
    for (name, channel), steps in sorted(uses.items()):
        files = _with_dependencies(_message_files(name, channel, templates), templates)
        surveys = dict.fromkeys(u.survey for u in steps)
        contexts = [sample_context(shape, s) for s in surveys]
        found = validate_templates(files, sample_contexts=contexts)
        for p in found:
            where = f"line {p.line}" if p.line else "$"
            problems.append(Problem(f"{template_dir}/{p.template}", where,
                                    _hint(p.message, shape, steps), p.severity, p.message))
        if not any(p.severity == "error" for p in found):  # else those come first
            problems += _orderless_warnings(shape, files, contexts, template_dir)
    return problems


def _orderless_warnings(shape: _CampaignShape, files: Mapping[str, str],
                        contexts: list[dict[str, Any]], template_dir: str) -> list[Problem]:
    """Warnings for templates that use ``order`` in a campaign triggered by an event
    that is not an order event (``customer.updated``): the envelope lets any event
    carry an order, but one without fails the message (docs/templates.md)."""
    from chalicelib.render import validate_templates

    event = shape.trigger_event
    if event is None or event.startswith("order."):
        return []
    orderless = [{**c, "order": {}} for c in contexts]
    found = []
    for p in validate_templates(files, sample_contexts=orderless):
        if p.message.startswith(("undefined variable 'order.", "undefined variable 'order[")):
            found.append(Problem(
                f"{template_dir}/{p.template}", f"line {p.line}" if p.line else "$",
                f"{p.message} when the {event!r} event that triggers campaign "
                f"{shape.id!r} carries no order (events other than order events usually "
                "carry none): test it with {% if order %}", "warning",
                f"{p.message} (no order)"))
    return found


def timing_warnings(campaign: Campaign, file: str) -> list[Problem]:
    """Steps whose local ``at`` time falls in quiet hours: every send of them waits."""
    from datetime import time

    from chalicelib.journeys.timing import QUIET_END, QUIET_START

    problems = []
    for i, step in enumerate(campaign.steps):
        if step.at is None:
            continue
        at = time.fromisoformat(step.at)
        if at >= QUIET_START or at < QUIET_END:
            when = "the next day" if at >= QUIET_START else "that day"
            problems.append(Problem(
                file, f"$.steps[{i}].at",
                f"{step.at} is in quiet hours ({QUIET_START:%H:%M}-{QUIET_END:%H:%M} local): "
                f"every send of this step waits until {QUIET_END:%H:%M} {when}", "warning"))
    return problems


def _is_json_schema(raw: Any) -> bool:
    """A JSON Schema document (``campaigns/schema.json``), not a campaign."""
    if not isinstance(raw, dict) or "steps" in raw or "trigger" in raw:
        return False  # a campaign, whatever its "$schema" says
    marker = raw.get("$schema")
    return (isinstance(marker, str) and "json-schema.org" in marker
            and any(key in raw for key in ("properties", "$defs", "type")))


def _unchecked_templates(templates: Mapping[str, str], checked: set[tuple[str, str]],
                         template_dir: str, known: Iterable[Problem] = ()) -> list[Problem]:
    """Render the message templates no campaign here names (valid or refused: each
    checks its own with its own data), against the sample data of an event
    campaign: warnings (every template is checked; only a campaign's own can stop
    a push)."""
    from chalicelib.render import SAMPLE_CONTEXT, validate_templates

    context = copy.deepcopy(SAMPLE_CONTEXT)
    context["customer"] = {**SAMPLE_CUSTOMER, **context["customer"]}
    pairs = {(parsed.name, parsed.channel) for parsed in map(parse_filename, templates)
             if parsed is not None and not parsed.is_partial}
    problems: list[Problem] = []
    reported = {(p.file, p.path, p.message) for p in known}  # a shared partial, say
    for name, channel in sorted(pairs - checked):
        files = _with_dependencies(_message_files(name, channel, templates), templates)
        for p in validate_templates(files, sample_contexts=[context]):
            where = f"line {p.line}" if p.line else "$"
            if (f"{template_dir}/{p.template}", where, p.message) in reported:
                continue
            if p.severity == "warning":
                problems.append(Problem(f"{template_dir}/{p.template}", where, p.message,
                                        p.severity))
            else:
                problems.append(Problem(f"{template_dir}/{p.template}", where,
                                        f"{p.message} (no campaign validated here uses "
                                        f"{name!r} yet)", "warning"))
    return problems + _unused_partials(templates, template_dir)


_MESSAGE_LIKE: Final = re.compile(r"\.(?:sms|email)\.j2$", re.IGNORECASE)


def _unused_partials(templates: Mapping[str, str], template_dir: str) -> list[Problem]:
    """Syntax errors in layouts and partials no message template uses (those that
    are used are checked with them): warnings, as every file is checked."""
    from jinja2 import Environment, TemplateSyntaxError

    messages = {f: src for f, src in templates.items() if not _is_partial(f)}
    used = _with_dependencies(messages, templates)
    env = Environment()
    problems = []
    for filename in sorted(set(templates) - set(used)):
        if _MESSAGE_LIKE.search(filename) and "/" not in filename \
                and not filename.startswith("_"):
            # `checkin.e.sms.j2`, `checkin.es.es.sms.j2`, `checkin.SMS.j2`: a message
            # by its look that no step can send (a translation never used).
            problems.append(Problem(
                f"{template_dir}/{filename}", "$", "not a message template's name "
                "(name[.locale].sms.j2 or name[.locale].email.j2, such as "
                "checkin.es.sms.j2): no step sends it, and only its syntax is checked",
                "warning"))
        try:
            env.parse(templates[filename])
        except TemplateSyntaxError as exc:
            where = f"line {exc.lineno}" if exc.lineno else "$"
            problems.append(Problem(f"{template_dir}/{filename}", where,
                                    f"syntax error: {exc.message} (no template uses this "
                                    "file yet)", "warning"))
        except RecursionError:
            problems.append(Problem(f"{template_dir}/{filename}", "$",
                                    "template nested too deeply (no template uses this "
                                    "file yet)", "warning"))
    return problems


def _first_time(problems: list[Problem],
                reported: set[tuple[str, str, str, str]]) -> list[Problem]:
    """``problems`` less the template lines already reported with another campaign's
    data (``reported`` is updated): a template several campaigns use is reported
    once, with the first of them."""
    out = []
    for p in problems:
        key = (p.file, p.path, p.plain or p.message, p.severity)
        if not p.plain or key not in reported:
            reported.add(key)
            out.append(p)
    return out


def load_bundles(paths: Iterable[Path], templates: Mapping[str, str],
                 template_dir: str = "templates") -> tuple[list[CampaignBundle], list[Problem]]:
    """Validate campaign files and their templates; return the good bundles and all problems.

    Problems come file by file in a stable order, each line once: a template that
    several campaigns use is reported with the first of them. Templates no valid
    campaign uses are checked last (see :func:`_unchecked_templates`).
    """
    bundles: list[CampaignBundle] = []
    problems: list[Problem] = []
    seen: dict[str, str] = {}
    checked: set[tuple[str, str]] = set()
    reported: set[tuple[str, str, str, str]] = set()  # template lines (see _first_time)
    paths = list(paths)
    named = set()
    for path in paths:
        with contextlib.suppress(OSError, RuntimeError):
            named.add(path.resolve())
    for path in paths:
        if path.is_dir():
            problems += _inner_folders(path, named)
            if not campaign_files([path]):
                problems.append(Problem(str(path), "$",
                                        "no campaign files (*.json) in this folder"))
    for file in campaign_files(paths):
        raw, found = _read_campaign(file)
        if not found and _is_json_schema(raw):
            problems.append(Problem(str(file), "$", "a JSON Schema, not a campaign: skipped",
                                    "warning"))
            continue
        campaign = None
        if not found:
            campaign, found = parse_campaign(str(file), raw)
        elif isinstance(raw, dict):  # decoded, with a key given twice: check the rest
            found += parse_campaign(str(file), raw)[1]
        problems.extend(found)
        # Ids are compared between valid campaigns only: broken copies of one campaign
        # (each with its own problem) do not also each get a duplicate-id line.
        if campaign is not None and campaign.id in seen:
            problems.append(Problem(str(file), "$.id", f"campaign id {campaign.id!r} is "
                                    f"also used by {seen[campaign.id]}"))
            campaign = None
        elif campaign is not None:
            seen[campaign.id] = str(file)
        if campaign is None:
            if isinstance(raw, dict):  # what can still be checked: its templates, with
                # its own trigger's and steps' data (no order for a date trigger...)
                shape = _raw_shape(raw)
                problems.extend(_first_time(
                    check_templates(shape, str(file), templates, template_dir), reported))
                checked.update((u.name, u.channel) for u in shape.uses)
            continue
        problems.extend(timing_warnings(campaign, str(file)))
        template_problems = check_templates(campaign, str(file), templates, template_dir)
        problems.extend(_first_time(template_problems, reported))
        checked.update(campaign.templates_used())
        if not any(p.severity == "error" for p in template_problems):
            own = templates_for(campaign, templates)
            size = stored_size(campaign, own)
            if size > MAX_STORED_BYTES:
                problems.append(Problem(str(file), "$", f"with its templates it takes "
                                        f"{size / 1024:,.0f} KB; {_TOO_BIG}"))
                continue
            bundles.append(CampaignBundle(campaign, str(file), own))
    problems += _unchecked_templates(templates, checked, template_dir, problems)
    problems += write_limit_problems(bundles)
    return bundles, list(dict.fromkeys(problems))


def write_limit_problems(bundles: Sequence[CampaignBundle]) -> list[Problem]:
    """Campaigns that together could make one event write more items than one
    DynamoDB transaction holds (ingest writes an event's effects in one)."""
    from chalicelib.journeys.engine import CampaignSet
    from chalicelib.store.tx import MAX_ITEMS

    compiled = [b.compiled() for b in bundles]
    campaigns = CampaignSet(compiled)
    file_of = {b.campaign.id: b.source for b in bundles}
    out = []
    for event_type in sorted(campaigns.event_types()):
        writes = campaigns.most_writes(event_type)
        if writes <= MAX_ITEMS:
            continue
        for c in campaigns.by_trigger.get(event_type, ()) or campaigns.all:
            out.append(Problem(
                file_of[c.id], "$.steps",
                f"with the other campaigns, one {event_type!r} event could need {writes} "
                f"writes (steps planned and cancelled, stats); at most {MAX_ITEMS} fit the "
                "one DynamoDB transaction an event is written in: use fewer or shorter "
                "campaigns"))
    return out
