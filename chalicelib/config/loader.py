"""Load and validate campaign files and the templates they use.

Every problem is reported as one line, ``file: json.path: message``; nothing here
raises on bad input, so the CLI and the push API can list all problems at once.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from chalicelib.config.compiled import CompiledCampaign, compile_campaign
from chalicelib.config.model import TRIGGER_TAGS, Campaign, EventTrigger, consistency_problems
from chalicelib.render.naming import locale_chain, parse_filename

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
    parts: list[str | int] = []
    previous: str | int | None = None
    for part in loc:
        if previous == "trigger" and part in TRIGGER_TAGS:
            previous = None
            continue
        parts.append(part)
        previous = part
    return _plain_json_path(parts)


def _pydantic_problems(file: str, error: ValidationError) -> list[Problem]:
    problems = []
    for err in error.errors(include_url=False):
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field (check the spelling; see campaigns/schema.json)"
        elif err["type"] == "missing":
            msg = "required field is missing"
        problems.append(Problem(file, json_path(err["loc"]), msg))
    return problems


def _literal_rule_problem(rule: Any) -> str | None:
    """A whole rule that is a constant by mistake (``"customer.tier == 'gold'"``)."""
    if isinstance(rule, bool):
        return None  # `true` / `false`: everyone / no one, on purpose
    if isinstance(rule, dict):
        return "an empty object is not a rule (it is always true)" if not rule else None
    kind = {str: "a string", list: "an array", int: "a number", float: "a number"}.get(
        type(rule), type(rule).__name__)
    return (f"a rule must be a JSON Logic operation such as {{\"==\": [...]}}, or true/false;"
            f" got {kind}, which is a constant")


def _rule_problems(file: str, campaign: Campaign) -> list[Problem]:
    from chalicelib.rules import lint_rule, validate_rule

    rules: list[tuple[Any, str]] = [(campaign.audience, "$.audience")]
    rules += [(s.condition, f"$.steps[{i}].condition") for i, s in enumerate(campaign.steps)]
    if campaign.exit is not None:
        rules.append((campaign.exit.rule, "$.exit.rule"))
    problems = []
    for rule, path in rules:
        if rule is None:
            continue
        literal = _literal_rule_problem(rule)
        if literal is not None:
            problems.append(Problem(file, path, literal))
            continue
        errors = validate_rule(rule, path=path) or lint_rule(rule, path=path)
        problems.extend(Problem(file, err.path, err.message) for err in errors)
    return problems


def parse_campaign(file: str, raw: Any) -> tuple[Campaign | None, list[Problem]]:
    """Validate one decoded campaign document against the model and its rules.

    Validation is strict: JSON types are not coerced (``"10"`` is not a number,
    ``true`` is not 1), as in the JSON Schema.
    """
    if not isinstance(raw, dict):
        return None, [Problem(file, "$", "a campaign must be a JSON object, "
                              f"not {_json_kind(raw)}")]
    try:
        campaign = Campaign.model_validate(raw, strict=True,
                                           context={"defer_consistency": True})
    except ValidationError as exc:
        return None, _pydantic_problems(file, exc)
    problems = [Problem(file, json_path(loc), message)
                for loc, message in consistency_problems(campaign)]
    problems += _rule_problems(file, campaign)
    return (campaign if not problems else None), problems


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    return {list: "an array", str: "a string", bool: "a boolean", int: "a number",
            float: "a number"}.get(type(value), type(value).__name__)


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
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.replace("_", "").replace("-", "").isalnum():
            out += f".{part}"
        else:
            out += f"[{json.dumps(part)}]"
    return out


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value (write a number, or null)")


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
    duplicates = _DuplicateKeys()
    try:
        raw = json.loads(text, object_pairs_hook=duplicates, parse_constant=_not_json)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        return None, [Problem(file, where, f"invalid JSON: {exc.msg}")]
    except RecursionError:
        return None, [Problem(file, "$", "invalid JSON: nested too deeply")]
    except ValueError as exc:  # NaN, Infinity, an integer with thousands of digits
        message = ("a number has too many digits" if "digits" in str(exc) else str(exc))
        return None, [Problem(file, "$", f"invalid JSON: {message}")]
    if duplicates.found:
        paths = _paths_of(raw, {id(obj) for obj, _ in duplicates.found})
        return None, [Problem(file, _child_path(paths.get(id(obj), "$"), key),
                              f"key {key!r} appears more than once in this object")
                      for obj, key in duplicates.found]
    return raw, []


def _child_path(path: str, key: str) -> str:
    return _plain_json_path([key]).replace("$", path, 1)


def load_campaign(path: Path) -> tuple[Campaign | None, list[Problem]]:
    file = str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        return None, [Problem(file, "$", f"cannot read file: {exc.strerror or exc}")]
    raw, problems = decode_json(file, data)
    if problems:
        return None, problems
    return parse_campaign(file, raw)


def campaign_files(paths: Iterable[Path]) -> list[Path]:
    """The campaign files named or found in folders, each once (``validate a.json a.json``
    or a folder and a file in it must not report a campaign as its own duplicate)."""
    files: list[Path] = []
    seen: set[Path] = set()
    for path in paths:
        found = ([p for p in sorted(path.glob("*.json")) if p.name != "schema.json"]
                 if path.is_dir() else [path])
        for file in found:
            key = file.resolve()
            if key not in seen:
                seen.add(key)
                files.append(file)
    return files


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


def sample_context(campaign: Campaign, survey: str | None) -> dict[str, Any]:
    """What a template of this campaign sees at send time, with sample values.

    Date and idle triggers carry no order, and only survey steps have a survey, so
    a template that uses either where it will not exist fails validation.
    """
    from chalicelib.journeys.messages import SURVEY_QUESTIONS
    from chalicelib.render import SAMPLE_CONTEXT

    context = copy.deepcopy(SAMPLE_CONTEXT)
    context["customer"] = {**SAMPLE_CUSTOMER, **context["customer"]}
    if not isinstance(campaign.trigger, EventTrigger):
        context["order"] = {}
    context["campaign"] = {"id": campaign.id, "name": campaign.name}
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


def check_templates(campaign: Campaign, source: str, templates: Mapping[str, str],
                    template_dir: str = "templates") -> list[Problem]:
    from chalicelib.render import validate_templates

    problems: list[Problem] = []
    uses: dict[tuple[str, str], tuple[str, list[str | None]]] = {}
    for i, step in enumerate(campaign.steps):
        names = [(step.template, f"$.steps[{i}].template")]
        names += [(v.templates[step.id], f"$.variants[{j}].templates.{step.id}")
                  for j, v in enumerate(campaign.variants) if step.id in v.templates]
        for name, path in names:
            missing = _missing_template(name, step.channel, templates, template_dir)
            if missing is not None:
                problems.append(Problem(source, path, missing))
                continue
            uses.setdefault((name, step.channel), (path, []))[1].append(step.survey)
    for (name, channel), (_path, surveys) in sorted(uses.items()):
        files = _with_dependencies(_message_files(name, channel, templates), templates)
        contexts = [sample_context(campaign, s) for s in dict.fromkeys(surveys)]
        for p in validate_templates(files, sample_contexts=contexts):
            where = f"line {p.line}" if p.line else "$"
            problems.append(Problem(f"{template_dir}/{p.template}", where, p.message, p.severity))
    return problems


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


def load_bundles(paths: Iterable[Path], templates: Mapping[str, str],
                 template_dir: str = "templates") -> tuple[list[CampaignBundle], list[Problem]]:
    """Validate campaign files and their templates; return the good bundles and all problems."""
    bundles: list[CampaignBundle] = []
    problems: list[Problem] = []
    seen: dict[str, str] = {}
    paths = list(paths)
    for path in paths:
        if path.is_dir() and not campaign_files([path]):
            problems.append(Problem(str(path), "$", "no campaign files (*.json) in this folder"))
    for file in campaign_files(paths):
        campaign, found = load_campaign(file)
        problems.extend(found)
        if campaign is None:
            continue
        if campaign.id in seen:
            problems.append(Problem(str(file), "$.id", f"campaign id {campaign.id!r} is "
                                    f"also used by {seen[campaign.id]}"))
            continue
        seen[campaign.id] = str(file)
        problems.extend(timing_warnings(campaign, str(file)))
        template_problems = check_templates(campaign, str(file), templates, template_dir)
        problems.extend(template_problems)
        if not any(p.severity == "error" for p in template_problems):
            bundles.append(CampaignBundle(campaign, str(file), templates_for(campaign, templates)))
    return bundles, problems
