"""``aftercare``: validate, preview and simulate campaigns; run the local stack.

Every command reports bad input as one line per problem and a non-zero exit code,
never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any

from chalicelib.cli import output

EXIT_OK, EXIT_INVALID = 0, 1


def _when(text: str) -> datetime:
    """``--from``/``--to``: a date (its midnight UTC) or a time (UTC without an offset;
    ``T``, ``t`` or a space between date and time), to the microsecond: events are
    whole seconds, and ``--to 10:00:00.5`` keeps one at 10:00:00."""
    from chalicelib.events.envelope import EventError, parse_time

    value = text.strip()
    if len(value) > 10 and value[10] in " t":
        value = f"{value[:10]}T{value[11:]}"
    try:
        date.fromisoformat(value)
        value += "T00:00:00Z"  # a bare date
    except ValueError:
        pass
    fraction = 0
    try:
        parsed = datetime.fromisoformat(value)
        fraction = parsed.microsecond
        if parsed.tzinfo is None:
            value += "+00:00"  # a time without an offset is UTC, as a bare date is
    except ValueError:
        pass  # parse_time says what is wrong with it
    try:
        return parse_time(value, "--from/--to").replace(microsecond=fraction)
    except EventError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None


def _stat_error(path: Path) -> OSError | None:
    """Why ``path`` cannot be looked at (``FileNotFoundError``: nothing there; a name
    too long, a permission...), or None. ``Path.exists()`` raises some of these."""
    try:
        path.stat()
    except OSError as exc:
        return exc
    return None


def _cannot_read(error: OSError) -> str:
    return f"cannot read: {error.strerror or error}"


def _zone(text: str) -> str:
    from chalicelib.events.envelope import valid_zone

    if not valid_zone(text):
        raise argparse.ArgumentTypeError(f"not an IANA timezone: {text!r}")
    return text


def _bounded(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: a whole number from ``low`` to ``high`` (no upper bound: None)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"must be at most {high:,}, got {value:,}")
        return value

    return parse


_workers = _bounded(1)
# The generator dates its log from 2026-01-05: 100 years stays well inside the
# years an event may carry (docs/events.md: 1900-2199).
MAX_GENERATED_DAYS = 36_500
MAX_GENERATED_CUSTOMERS = 1_000_000
_generated_days = _bounded(1, MAX_GENERATED_DAYS)
_generated_customers = _bounded(1, MAX_GENERATED_CUSTOMERS)


def _load(paths: Sequence[Path], template_dir: Path) -> tuple[list[Any], list[Any]]:
    from chalicelib.config.loader import Problem, load_bundles
    from chalicelib.render import load_template_dir

    # A path that does not exist is one problem; the others are still validated
    # (without a templates folder, each template a campaign names is missing too).
    errors = [(p, _stat_error(p)) for p in paths]
    missing = [Problem(str(p), "$", "no such file or folder"
                       if isinstance(error, FileNotFoundError) else _cannot_read(error))
               for p, error in errors if error is not None]
    templates: dict[str, str] = {}
    error = _stat_error(template_dir)
    if error is None and template_dir.is_dir():
        templates = load_template_dir(template_dir)
    else:
        missing.insert(0, Problem(str(template_dir), "$", "is a file, not the templates folder"
                                  if error is None else "templates folder not found"
                                  if isinstance(error, FileNotFoundError)
                                  else _cannot_read(error)))
    bundles, problems = load_bundles([p for p, error in errors if error is None],
                                     templates, str(template_dir))
    return bundles, missing + problems


def cmd_validate(args: argparse.Namespace) -> int:
    bundles, problems = _load(args.paths, args.templates)
    for p in problems:
        print(p, file=sys.stderr if p.severity == "error" else sys.stdout)
    errors = sum(p.severity == "error" for p in problems)
    if not errors:
        print(f"ok: {len(bundles)} campaign(s) valid")
    return EXIT_INVALID if errors else EXIT_OK


def cmd_schema(args: argparse.Namespace) -> int:
    from chalicelib.config.model import json_schema

    print(json.dumps(json_schema(), indent=2, sort_keys=False))
    return EXIT_OK


def cmd_preview(args: argparse.Namespace) -> int:
    from chalicelib.cli.preview import preview

    return preview(args)


def cmd_simulate(args: argparse.Namespace) -> int:
    from chalicelib.journeys.engine import CampaignSet

    bundles, problems = _load([args.campaigns], args.templates)
    # Every problem with the command line at once, one line each, before any work.
    errors = [str(p) for p in problems if p.severity == "error"]
    error = _stat_error(args.events)
    if isinstance(error, FileNotFoundError):
        errors.append(f"{args.events}: $: no such file")
    elif error is not None:
        errors.append(f"{args.events}: $: {_cannot_read(error)}")
    elif args.events.is_dir():
        errors.append(f"{args.events}: $: is a folder, not an event log (JSONL file)")
    if args.start is not None and args.end is not None and args.start >= args.end:
        errors.append("--from/--to: $: --from must be before --to")
    if errors:
        for line in errors:
            print(line, file=sys.stderr)
        return EXIT_INVALID
    from chalicelib.journeys.parallel import simulate_file

    campaigns = CampaignSet(b.compiled() for b in bundles)
    check = None
    if args.render:
        from chalicelib import settings
        from chalicelib.journeys.messages import RenderCheck

        check = RenderCheck({b.campaign.id: b.templates for b in bundles}, args.timezone,
                            settings.load().public_base_url)
    try:
        with _regular_file(args.events) as path:
            sim = simulate_file(path, campaigns, start=args.start, end=args.end,
                                default_tz=args.timezone, workers=args.workers,
                                send_check=check)
    except OSError as exc:  # unreadable (permissions), or gone since it was looked at
        print(f"{args.events}: $: {_cannot_read(exc)}", file=sys.stderr)
        return EXIT_INVALID
    output.write_rows(sim, args.format, sys.stdout)
    for bad in sim.bad:
        print(f"{args.events}: line {bad.line}: {bad.reason}", file=sys.stderr)
    return EXIT_OK


@contextlib.contextmanager
def _regular_file(path: Path) -> Iterator[Path]:
    """``path``, or for a pipe (``--events /dev/stdin``, ``<(zcat log.gz)``) a
    temporary copy of what it gives: a log may be read more than once."""
    if path.is_file():
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="aftercare-") as tmp:
        copy = Path(tmp) / "events.jsonl"
        with path.open("rb") as src, copy.open("wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        yield copy


def cmd_generate(args: argparse.Namespace) -> int:
    from chalicelib.local.generator import generate, write_jsonl

    if args.out.is_dir():
        print(f"{args.out}: $: is a folder; --out names the file to write "
              f"(e.g. {args.out / 'events.jsonl'})", file=sys.stderr)
        return EXIT_INVALID
    events = generate(customers=args.customers, days=args.days, seed=args.seed)
    try:
        write_jsonl(events, args.out)
    except OSError as exc:
        print(f"{args.out}: $: cannot write: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_INVALID
    print(f"wrote {len(events)} events to {args.out}")
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from chalicelib.local.demo import run_demo

    return run_demo(args.out, customers=args.customers, days=args.days, seed=args.seed)


def cmd_run(args: argparse.Namespace) -> int:
    from chalicelib.local.server import run_server

    return run_server(args.out, port=args.port, speed=args.speed,
                      tick_seconds=args.tick_seconds, duration=args.duration)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="aftercare", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    v = sub.add_parser("validate", help="check campaigns, rules and templates")
    v.add_argument("paths", nargs="*", type=Path, default=[Path("campaigns")])
    v.add_argument("--templates", type=Path, default=Path("templates"))
    v.set_defaults(func=cmd_validate)

    pv = sub.add_parser("preview", help="show each step as a customer would see it")
    pv.add_argument("campaign", type=Path, help="campaign file, or id in --campaigns")
    pv.add_argument("--customer", type=Path, required=True, help="customer JSON file")
    pv.add_argument("--order", type=Path, help="order JSON file (default: a sample order)")
    pv.add_argument("--locale")
    pv.add_argument("--campaigns", type=Path, default=Path("campaigns"))
    pv.add_argument("--templates", type=Path, default=Path("templates"))
    pv.set_defaults(func=cmd_preview)

    s = sub.add_parser("simulate", help="backtest an event log on a virtual clock")
    s.add_argument("--events", type=Path, required=True, help="JSONL event log")
    s.add_argument("--campaigns", type=Path, default=Path("campaigns"))
    s.add_argument("--templates", type=Path, default=Path("templates"))
    s.add_argument("--from", dest="start", type=_when)
    s.add_argument("--to", dest="end", type=_when)
    s.add_argument("--format", choices=["table", "json", "csv"], default="table")
    s.add_argument("--timezone", default="America/New_York", type=_zone,
                   help="timezone for customers without a valid one")
    s.add_argument("--render", action="store_true",
                   help="render every message decided sent, as the sender would: one "
                        "that cannot render is 'failed' with the template error")
    s.add_argument("--workers", type=_workers, metavar="N",
                   help="processes to split the backtest across, by customer (default: "
                        "one per usable CPU, at most 8; 1: in this process); same output")
    s.set_defaults(func=cmd_simulate)

    sc = sub.add_parser("schema", help="print the campaign JSON Schema")
    sc.set_defaults(func=cmd_schema)

    g = sub.add_parser("generate", help="write a seeded sample event log")
    g.add_argument("--customers", type=_generated_customers, default=300)
    g.add_argument("--days", type=_generated_days, default=120)
    g.add_argument("--seed", type=int, default=7)
    g.add_argument("--out", type=Path, default=Path("out/events.jsonl"))
    g.set_defaults(func=cmd_generate)

    d = sub.add_parser("demo", help="replay a generated log through the local pipeline")
    d.add_argument("--out", type=Path, default=Path("out"))
    d.add_argument("--customers", type=_generated_customers, default=120)
    d.add_argument("--days", type=_generated_days, default=120)
    d.add_argument("--seed", type=int, default=7)
    d.set_defaults(func=cmd_demo)

    r = sub.add_parser("run", help="keep a local stack up on 127.0.0.1 (API, scheduler, outbox)")
    r.add_argument("--out", type=Path, default=Path("out"))
    r.add_argument("--port", type=int, default=8000)
    r.add_argument("--speed", type=float, default=1440.0,
                   help="business time per real time (1440: a day a minute; 1: real time)")
    r.add_argument("--tick-seconds", type=float, default=1.0)
    r.add_argument("--duration", type=float, help=argparse.SUPPRESS)
    r.set_defaults(func=cmd_run)

    from chalicelib.cli.ops import add_commands

    add_commands(sub)
    return p


def _escape_unprintable_output() -> None:
    """Text the terminal's encoding cannot hold (an unpaired surrogate from a file
    or a rule, a character beyond a legacy code page) is written escaped
    (``\\ud800``), never a traceback in the middle of a report."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)  # pytest's capture has none
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    _escape_unprintable_output()
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_OK
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
