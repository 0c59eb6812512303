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
from chalicelib.config.model import TRIGGER_TAGS, Campaign, EventTrigger

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
    out = "$"
    previous: str | int | None = None
    for part in loc:
        if previous == "trigger" and part in TRIGGER_TAGS:
            previous = None
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.replace("_", "").replace("-", "").isalnum():
            out += f".{part}"
        else:
            out += f"[{json.dumps(part)}]"
        previous = part
    return out


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


def _rule_problems(file: str, campaign: Campaign) -> list[Problem]:
    from chalicelib.rules import validate_rule

    rules: list[tuple[Any, str]] = [(campaign.audience, "$.audience")]
    rules += [(s.condition, f"$.steps[{i}].condition") for i, s in enumerate(campaign.steps)]
    if campaign.exit is not None:
        rules.append((campaign.exit.rule, "$.exit.rule"))
    problems = []
    for rule, path in rules:
        if rule is None:
            continue
        for err in validate_rule(rule, path=path):
            problems.append(Problem(file, err.path, err.message))
    return problems


def parse_campaign(file: str, raw: Any) -> tuple[Campaign | None, list[Problem]]:
    """Validate one decoded campaign document against the model and its rules."""
    if not isinstance(raw, dict):
        return None, [Problem(file, "$", "a campaign must be a JSON object")]
    try:
        campaign = Campaign.model_validate(raw)
    except ValidationError as exc:
        return None, _pydantic_problems(file, exc)
    problems = _rule_problems(file, campaign)
    return (campaign if not problems else None), problems


def load_campaign(path: Path) -> tuple[Campaign | None, list[Problem]]:
    file = str(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        return None, [Problem(file, where, f"invalid JSON: {exc.msg}")]
    except (OSError, UnicodeDecodeError) as exc:
        return None, [Problem(file, "$", f"cannot read file: {exc}")]
    return parse_campaign(file, raw)


def campaign_files(paths: Iterable[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(p for p in sorted(path.glob("*.json")) if p.name != "schema.json")
        else:
            files.append(path)
    return files


def templates_for(campaign: Campaign, templates: Mapping[str, str]) -> dict[str, str]:
    """The template files (every locale variant) a campaign uses."""
    names = {name for name, _ in campaign.templates_used()}
    return {f: src for f, src in templates.items() if f.split(".", 1)[0] in names}


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


def _file_exists(name: str, channel: str, templates: Mapping[str, str]) -> bool:
    return any(f.split(".", 1)[0] == name and f.endswith(f".{channel}.j2") for f in templates)


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
            if not _file_exists(name, step.channel, templates):
                problems.append(Problem(source, path, f"no {step.channel} template {name!r} "
                                        f"(expected {template_dir}/{name}.{step.channel}.j2)"))
                continue
            uses.setdefault((name, step.channel), (path, []))[1].append(step.survey)
    for (name, channel), (_path, surveys) in sorted(uses.items()):
        files = {f: src for f, src in templates.items()
                 if f.split(".", 1)[0] == name and f.endswith(f".{channel}.j2")}
        contexts = [sample_context(campaign, s) for s in dict.fromkeys(surveys)]
        for p in validate_templates(files, sample_contexts=contexts):
            where = f"line {p.line}" if p.line else "$"
            problems.append(Problem(f"{template_dir}/{p.template}", where, p.message, p.severity))
    return problems


def load_bundles(paths: Iterable[Path], templates: Mapping[str, str],
                 template_dir: str = "templates") -> tuple[list[CampaignBundle], list[Problem]]:
    """Validate campaign files and their templates; return the good bundles and all problems."""
    bundles: list[CampaignBundle] = []
    problems: list[Problem] = []
    seen: dict[str, str] = {}
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
        template_problems = check_templates(campaign, str(file), templates, template_dir)
        problems.extend(template_problems)
        if not any(p.severity == "error" for p in template_problems):
            bundles.append(CampaignBundle(campaign, str(file), templates_for(campaign, templates)))
    return bundles, problems
