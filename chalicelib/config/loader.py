"""Load and validate campaign files and the templates they use.

Every problem is reported as one line, ``file: json.path: message``; nothing here
raises on bad input, so the CLI and the push API can list all problems at once.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from chalicelib.config.compiled import CompiledCampaign, compile_campaign
from chalicelib.config.model import TRIGGER_TAGS, Campaign


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
        return None, [Problem(file, f"line {exc.lineno} column {exc.colno}", f"invalid JSON: {exc.msg}")]
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


def check_templates(campaign: Campaign, source: str, templates: Mapping[str, str],
                    template_dir: str = "templates") -> list[Problem]:
    from chalicelib.render import SAMPLE_CONTEXT, validate_templates

    used = templates_for(campaign, templates)
    found = validate_templates(
        used,
        sample_contexts=[SAMPLE_CONTEXT],
        required=sorted(campaign.templates_used()),
    )
    problems = []
    for p in found:
        where = f"line {p.line}" if p.line else "$"
        file = f"{template_dir}/{p.template}" if p.template in used else source
        problems.append(Problem(file, where, p.message, p.severity))
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
            problems.append(Problem(str(file), "$.id", f"campaign id {campaign.id!r} is also used by {seen[campaign.id]}"))
            continue
        seen[campaign.id] = str(file)
        template_problems = check_templates(campaign, str(file), templates, template_dir)
        problems.extend(template_problems)
        if not any(p.severity == "error" for p in template_problems):
            bundles.append(CampaignBundle(campaign, str(file), templates_for(campaign, templates)))
    return bundles, problems
