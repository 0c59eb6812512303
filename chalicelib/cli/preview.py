"""``aftercare preview``: each step of a campaign as one customer would see it."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chalicelib.render import SAMPLE_CONTEXT, RenderedEmail, RenderedSms


def _read_json(path: Path, what: str) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        print(f"{path}: $: cannot read {what}: {exc}", file=sys.stderr)
        return None
    if not isinstance(data, dict):
        print(f"{path}: $: {what} must be a JSON object", file=sys.stderr)
        return None
    return data


def _campaign_path(args: argparse.Namespace) -> Path:
    if args.campaign.exists():
        return Path(args.campaign)
    return Path(args.campaigns) / f"{args.campaign}.json"


def preview(args: argparse.Namespace) -> int:
    from chalicelib.cli.main import _load
    from chalicelib.config.compiled import compile_campaign
    from chalicelib.journeys.engine import PlannedStep
    from chalicelib.journeys.messages import render_context
    from chalicelib.render import Renderer, TemplateError, sms_encoding_info

    bundles, problems = _load([_campaign_path(args)], args.templates)
    errors = [p for p in problems if p.severity == "error"]
    for p in errors:
        print(p, file=sys.stderr)
    customer = _read_json(args.customer, "customer")
    order = _read_json(args.order, "order") if args.order else dict(SAMPLE_CONTEXT["order"])
    if errors or not bundles or customer is None or order is None:
        return 1
    bundle = bundles[0]
    campaign = compile_campaign(bundle.campaign)
    renderer = Renderer(bundle.templates)
    locale = args.locale or customer.get("locale")
    profile = {"id": customer.get("id", "preview"), **customer}
    for step in campaign.steps:
        planned = PlannedStep(
            customer_id=str(profile["id"]), campaign_id=campaign.id,
            campaign_version=1, step_id=step.id, ref="preview", enrolled_at="",
            due_at=datetime.now(UTC), holdout=False, variant=None, event_id="preview",
            order=order if campaign.trigger_kind == "event" else None)
        context = render_context(planned, profile, campaign,
                                 lambda kind, _p: f"https://example.invalid/l/{kind}/preview")
        print(f"--- step {step.id}: {step.channel} after {step.after}"
              f"{' at ' + step.at.strftime('%H:%M') if step.at else ''}"
              f" (template {campaign.template_for(step, None)})")
        try:
            if step.channel == "sms":
                sms: RenderedSms = renderer.render_sms(step.template, context, locale)
                encoding, segments, chars = sms_encoding_info(sms.body)
                print(sms.body)
                note = " WARNING: more than 3 segments" if segments > 3 else ""
                print(f"[{sms.template}: {encoding}, {chars} chars, {segments} segment(s){note}]")
            else:
                email: RenderedEmail = renderer.render_email(step.template, context, locale)
                print(f"Subject: {email.subject}\n[{email.template}]\n\n{email.text}")
        except TemplateError as exc:
            print(f"{args.templates}/{exc}", file=sys.stderr)
            return 1
        print()
    return 0
