"""``aftercare preview``: each step of a campaign as one customer would see it.

Problems are printed like ``aftercare validate``'s, one line each
(``file: json.path: message``), and exit with 1; never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chalicelib.render import SAMPLE_CONTEXT, RenderedEmail, RenderedSms

EXIT_OK, EXIT_INVALID = 0, 1


def _error(line: str) -> None:
    print(line, file=sys.stderr)


def _read_json(path: Path, what: str) -> dict[str, Any] | None:
    from chalicelib.config.loader import decode_json

    try:
        data = path.read_bytes()
    except OSError as exc:
        _error(f"{path}: $: cannot read {what} file: {exc.strerror or exc}")
        return None
    raw, problems = decode_json(str(path), data)
    for problem in problems:
        _error(str(problem))
    if problems:
        return None
    if not isinstance(raw, dict):
        _error(f"{path}: $: the {what} must be a JSON object")
        return None
    return raw


def _checked_order(path: Path, raw: dict[str, Any] | None) -> dict[str, Any] | None:
    """The order as a message gets it: checked as an event's order is, with the
    categories its items give, and only the fields an enrollment keeps."""
    from chalicelib.events import EventError
    from chalicelib.events.envelope import check_order
    from chalicelib.journeys.engine import order_snapshot

    if raw is None:
        return None
    try:
        checked = check_order(raw)
    except EventError as exc:
        _error(f"{path}: {exc.path.replace('$.order', '$', 1)}: {exc.message}")
        return None
    return order_snapshot({"order": checked})


def _campaign_path(args: argparse.Namespace) -> Path | None:
    """The file of the campaign named on the command line (a path or an id)."""
    from chalicelib.config.loader import campaign_files, decode_json

    given = Path(args.campaign)
    if given.is_dir():
        _error(f"{given}: $: is a folder; give one campaign file, or a campaign id")
        return None
    if given.exists():
        return given
    folder = Path(args.campaigns)
    if given.suffix == ".json":  # a file name: in the campaigns folder, or nowhere
        in_folder = folder / given
        if len(given.parts) == 1 and in_folder.is_file():
            return in_folder
        _error(f"{given}: $: no such campaign file"
               + (f" (nor {in_folder})" if len(given.parts) == 1 else ""))
        return None
    by_name = folder / f"{args.campaign}.json"
    if by_name.is_file():
        return by_name
    if folder.is_dir():  # the id need not be the file name
        for file in campaign_files([folder]):
            try:
                raw, problems = decode_json(str(file), file.read_bytes())
            except OSError:
                continue
            if not problems and isinstance(raw, dict) and raw.get("id") == str(args.campaign):
                return file
    _error(f"{args.campaign}: $: no campaign file {str(given)!r} and no campaign with id "
           f"{str(args.campaign)!r} in {folder}")
    return None


def _check_customer(path: Path, customer: dict[str, Any]) -> bool:
    from chalicelib.render.filters import parse_timezone

    customer_id = customer.get("id")
    if customer_id is not None and not (isinstance(customer_id, str) and customer_id.strip()):
        # It picks the holdout and the variant: as the event envelope, a text only.
        _error(f"{path}: $.id: must be a non-empty string (or left out)")
        return False
    attributes = customer.get("attributes")
    if attributes is not None and not isinstance(attributes, dict):
        _error(f"{path}: $.attributes: must be a JSON object")
        return False
    zone = customer.get("timezone")
    if zone is not None and (not isinstance(zone, str) or parse_timezone(zone) is None):
        _error(f"{path}: $.timezone: warning: unknown timezone {zone!r}; dates and "
               "times are shown in the default timezone (DEFAULT_TIMEZONE), as they "
               "would be sent")
        if not isinstance(zone, str):
            customer["timezone"] = None  # the pipeline's envelope refuses it outright
    return True


def _known_parts(locale: Any) -> list[str]:
    """The shorter forms of an unknown ``locale`` that are known locales, most specific
    first (``es-MX-foo``: ``es-MX``, ``es``): the template variants the sender still
    looks for, before the default ones (see :meth:`chalicelib.render.Renderer.resolve`)."""
    from chalicelib.render.filters import parse_locale
    from chalicelib.render.naming import locale_parts

    if not isinstance(locale, str):
        return []  # the sender treats it as no locale
    # The chain the renderer resolves templates by (naming.locale_chain), as written.
    parts = locale_parts(locale)
    chain = ("-".join(parts[:n]) for n in range(len(parts), 0, -1))
    return [known for known in chain if parse_locale(known) is not None]


def _locale(args: argparse.Namespace, customer: dict[str, Any]) -> tuple[str | None, bool]:
    """(locale to render in, ok): ``--locale`` must be a real locale; a bad
    profile locale is used as the sender uses it (its known shorter forms, else the
    default templates), and the warning says so."""
    from chalicelib.render.filters import parse_locale

    if args.locale is not None:
        if not args.locale.strip() or parse_locale(args.locale) is None:
            _error(f"--locale: $: unknown locale {args.locale!r} (use e.g. 'es', 'pt-BR')")
            return None, False
        return str(args.locale), True
    value = customer.get("locale")
    if value is None:
        return None, True
    if not isinstance(value, str) or parse_locale(value) is None:
        known = _known_parts(value)
        shown = ("the default templates are shown" if not known else
                 "the templates for " + ", else ".join(repr(k) for k in known)
                 + ", else the default ones, are shown")
        _error(f"{args.customer}: $.locale: warning: unknown locale {value!r}; {shown}, "
               "as they would be sent")
        return None, True
    return value, True


def preview(args: argparse.Namespace) -> int:
    from chalicelib import settings
    from chalicelib.cli.main import _load
    from chalicelib.config.compiled import compile_campaign
    from chalicelib.journeys import keys
    from chalicelib.journeys.engine import PlannedStep
    from chalicelib.journeys.messages import render_context, simulated_links
    from chalicelib.render import Renderer, TemplateError, sms_encoding_info

    path = _campaign_path(args)
    if path is None:
        return EXIT_INVALID
    bundles, problems = _load([path], args.templates)
    errors = [p for p in problems if p.severity == "error"]
    for p in errors if errors or bundles else problems:  # else say why nothing loaded
        _error(str(p))
    customer = _read_json(args.customer, "customer")
    order = (_checked_order(args.order, _read_json(args.order, "order")) if args.order
             else dict(SAMPLE_CONTEXT["order"]))
    if errors or not bundles or customer is None or order is None:
        return EXIT_INVALID
    if not _check_customer(args.customer, customer):
        return EXIT_INVALID
    locale, ok = _locale(args, customer)
    if not ok:
        return EXIT_INVALID
    bundle = bundles[0]
    campaign = compile_campaign(bundle.campaign)
    renderer = Renderer(bundle.templates)
    profile = {**customer, "id": customer.get("id") or "preview"}
    customer_id = profile["id"]
    variant = (keys.pick_variant(campaign.id, customer_id, campaign.variant_weights)
               if campaign.variants else None)
    if variant is not None:
        print(f"(customer {customer_id} is in variant {variant!r})")
    if keys.in_holdout(campaign.id, customer_id, campaign.holdout_percent):
        print(f"(customer {customer_id} is in the {campaign.holdout_percent:g}% holdout: "
              "they would be enrolled but sent nothing; shown anyway)")
    failed = False
    for step, model_step in zip(campaign.steps, bundle.campaign.steps, strict=True):
        planned = PlannedStep(
            customer_id=customer_id, campaign_id=campaign.id,
            campaign_version=1, step_id=step.id, ref="preview", enrolled_at="",
            due_at=datetime.now(UTC), holdout=False, variant=variant, event_id="preview",
            order=order if campaign.trigger_kind == "event" else None)
        # Links as long as the sender's (signed, with a key that opens nothing), so the
        # length and segments shown are the real ones.
        links = simulated_links(settings.load().public_base_url, step.channel, planned.due_at)
        context = render_context(planned, profile, campaign, links,
                                 settings.load().default_timezone)
        template = campaign.template_for(step, variant)
        print(f"--- step {step.id}: {step.channel} after {model_step.after}"
              f"{' at ' + step.at.strftime('%H:%M') if step.at else ''}"
              f" (template {template})")
        try:
            if step.channel == "sms":
                sms: RenderedSms = renderer.render_sms(template, context, locale)
                encoding, segments, units = sms_encoding_info(sms.body)
                print(sms.body)
                note = " WARNING: more than 3 segments" if segments > 3 else ""
                # Units are what segments hold: a character of ^{}[]~|\€ is two in
                # GSM-7, an emoji two in UCS-2.
                length = (f"{units} chars" if units == len(sms.body)
                          else f"{units} units ({len(sms.body)} chars)")
                print(f"[{sms.template}: {encoding}, {length}, {segments} segment(s){note}]")
            else:
                email: RenderedEmail = renderer.render_email(template, context, locale)
                print(f"Subject: {email.subject}\n[{email.template}]\n\n{email.text}")
                print(f"\n[HTML part]\n{email.html}")
        except TemplateError as exc:
            # One line for this step; the other steps are still shown.
            where = getattr(exc, "template", None) or f"{template}.{step.channel}.j2"
            line = getattr(exc, "line", None)
            message = getattr(exc, "message", str(exc))
            _error(f"{args.templates}/{where}: {f'line {line}' if line else '$'}: {message}")
            print(f"(not sent: {message})")
            failed = True
        print()
    return EXIT_INVALID if failed else EXIT_OK
