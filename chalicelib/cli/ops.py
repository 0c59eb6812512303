"""Commands that act on a stage: push, import, backfill, erase, suppression-backfill.

They use the environment the way the functions do (``AFTERCARE_STAGE``, AWS
credentials, optional ``AFTERCARE_DYNAMODB_ENDPOINT`` for a local stack).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import UTC, date, datetime
from pathlib import Path


class Progress:
    """A one-line progress counter on stderr (only when it is a terminal)."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.tty = sys.stderr.isatty()

    def __call__(self, n: int) -> None:
        if self.tty and n % 10 == 0:
            print(f"\r{self.label}: {n}", end="", file=sys.stderr, flush=True)

    def done(self) -> None:
        if self.tty:
            print(file=sys.stderr)


def aws_errors(*more: type[Exception]) -> tuple[type[Exception], ...]:
    """What a command that reaches AWS reports as one line (imported when needed:
    botocore is slow to import, and most commands never use it), and ``more``."""
    from botocore.exceptions import BotoCoreError, ClientError
    from pynamodb.exceptions import PynamoDBException

    return (PynamoDBException, BotoCoreError, ClientError, *more)


def cmd_push(args: argparse.Namespace) -> int:
    from chalicelib.cli.main import _load
    from chalicelib.pipeline.backfill import FileCheckpoint, run_backfill
    from chalicelib.store.campaigns import push

    bundles, problems = _load(args.paths, args.templates)
    errors = [p for p in problems if p.severity == "error"]
    for p in problems:
        print(p, file=sys.stderr)
    if errors:
        print("nothing pushed: fix the problems above", file=sys.stderr)
        return 1
    try:
        for b in bundles:
            version = push(b.campaign, b.templates)
            print(f"pushed {b.campaign.id} v{version} ({b.campaign.status})")
    except aws_errors() as exc:
        print(f"push stopped: {exc}; run it again once fixed (the campaigns pushed above "
              f"are live)", file=sys.stderr)
        return 1
    if not args.no_backfill:
        progress = Progress("backfill")
        try:
            report = run_backfill(FileCheckpoint(args.checkpoint), progress=progress)
        except aws_errors() as exc:
            progress.done()
            print(f"backfill stopped: {exc}; run `aftercare backfill` to resume from "
                  f"{args.checkpoint}", file=sys.stderr)
            return 1
        print(f"backfill: {report.customers} customers, {report.planned} steps planned")
    return 0


def _as_of(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            "not an ISO 8601 time with an offset (2026-03-01T00:00:00Z)") from None
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError("needs an offset or Z (2026-03-01T00:00:00Z)")
    return value.astimezone(UTC)


def cmd_import(args: argparse.Namespace) -> int:
    from chalicelib.handlers import live
    from chalicelib.pipeline.importer import MAX_HINTED, HeaderError, run_import

    checkpoint = args.checkpoint or args.file.with_name(args.file.name + ".checkpoint")
    problem = _import_paths_problem(args.file, checkpoint)
    if problem:
        print(problem, file=sys.stderr)
        return 1
    rejected_path = args.file.with_name(args.file.name + ".rejected.txt")
    progress = Progress(f"import {args.kind}")
    try:
        report = run_import(args.kind, args.file, live(), checkpoint=checkpoint,
                            limit=args.limit, progress=progress, rejected_log=rejected_path,
                            as_of=args.as_of)
    except HeaderError as exc:
        progress.done()
        print(f"{args.file}: {exc}", file=sys.stderr)
        return 1
    except aws_errors(RuntimeError, OSError) as exc:
        progress.done()
        # An OSError: the checkpoint or the rejected-rows report cannot be written.
        reason = (f"{exc.filename}: {exc.strerror}" if isinstance(exc, OSError)
                  and exc.filename and exc.strerror else exc)
        print(f"import stopped: {reason}; run the same command again to resume after the "
              f"rows done (checkpoint {checkpoint})", file=sys.stderr)
        return 1
    progress.done()
    for warning in report.warnings[:MAX_HINTED]:
        print(f"{args.file}: warning: {warning}", file=sys.stderr)
    if len(report.warnings) > MAX_HINTED:
        print(f"{args.file}: warning: {len(report.warnings) - MAX_HINTED} more columns not "
              "read", file=sys.stderr)
    if report.restarted:
        print(f"{checkpoint}: not used, {report.restarted}: imported from the top (rows "
              f"imported before count as already imported)", file=sys.stderr)
    for n, why in report.rejected[:20]:
        print(f"{args.file}: line {n}: {why}", file=sys.stderr)
    earlier = (f", {report.earlier_rejected} more by earlier runs"
               if report.earlier_rejected else "")
    see = f" (see {rejected_path})" if report.rejected or report.earlier_rejected else ""
    state = "complete" if report.complete else f"stopped, resume from {checkpoint}"
    print(f"{report.rows} rows: {report.imported} imported, {report.duplicates} already "
          f"imported, {len(report.rejected)} rejected{earlier}{see}; {state}")
    # Exit 1 when any row of the whole import was rejected, by this run or one it resumed.
    return 1 if report.rejected or report.earlier_rejected else 0


def _import_paths_problem(file: Path, checkpoint: Path) -> str | None:
    """Why an import cannot start with these paths (None: it can)."""
    try:
        if not file.exists():
            return f"{file}: no such file"
        if file.is_dir():
            return f"{file}: is a folder, not a file of rows"
        if not file.is_file():  # a pipe: read more than once, and resumed by position
            return f"{file}: not a regular file (save the rows to a file first)"
        if checkpoint.is_dir():
            return f"{checkpoint}: --checkpoint is a folder, not a file"
        if not checkpoint.parent.is_dir():
            return f"{checkpoint}: --checkpoint: no such folder {str(checkpoint.parent)!r}"
    except OSError as exc:  # a name too long...
        return f"{exc.filename or file}: {exc.strerror or exc}"
    return None


def cmd_backfill(args: argparse.Namespace) -> int:
    from chalicelib.pipeline.backfill import FileCheckpoint, run_backfill

    progress = Progress("backfill")
    try:
        report = run_backfill(FileCheckpoint(args.checkpoint), limit=args.limit,
                              progress=progress)
    except aws_errors() as exc:
        progress.done()
        print(f"backfill stopped: {exc}; run it again to resume from {args.checkpoint}",
              file=sys.stderr)
        return 1
    state = "complete" if report.complete else f"stopped, resume from {args.checkpoint}"
    print(f"backfill: {report.customers} customers, {report.planned} steps planned, "
          f"{report.already_planned} already planned; {state}")
    return 0


def id_problem(value: str) -> str | None:
    """Why ``value`` cannot be a customer id (None: it can): any id an event may carry
    can be erased (spaces inside it too: "Ana Smith")."""
    from chalicelib.events.envelope import MAX_STR_CHARS  # the envelope's limit

    if not value.strip():
        return "an empty customer id"
    if len(value) > MAX_STR_CHARS:
        return f"a customer id has at most {MAX_STR_CHARS} characters"
    return None


# A comment in an id file: a line starting with "#", or "#" after a space. Not any
# "#": "shop#1" is an id (cut at the "#", it would erase customer "shop").
_ID_COMMENT = re.compile(r"(?:^|\s)#.*", re.DOTALL)
_ONE_PER_LINE = 'one customer id per line (an id with spaces as a JSON string: "Ana Smith")'


def _file_id(line: str) -> tuple[str | None, str | None]:
    """(the id of one line of an id file, or None; why the line is refused, or None)."""
    text = line.strip()
    if text.startswith('"'):  # a JSON string: any id, spaces and "#" in it too
        try:
            value, end = json.JSONDecoder().raw_decode(text)
        except ValueError:
            return None, "a quoted id must be a JSON string (\\\" for a quote in it)"
        if _ID_COMMENT.sub("", text[end:], count=1).strip():
            return None, _ONE_PER_LINE
        return value, id_problem(value)
    value = _ID_COMMENT.sub("", text, count=1).strip()
    if not value:
        return None, None  # blank, or a comment
    if any(c.isspace() for c in value):  # "c-1 c-2": two ids, or a quote forgotten
        return None, _ONE_PER_LINE
    return value, id_problem(value)


def read_ids(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    """Customer ids from the arguments and ``--file`` (one per line, without the
    spaces around it, or as a JSON string when it holds spaces; ``#`` at the start
    of a line or after a space starts a comment; UTF-8 with or without a byte-order
    mark), and the problems found reading them."""
    ids: list[str] = []
    problems: list[str] = []
    for value in args.customer_ids:
        why = id_problem(value)
        if why:
            problems.append(f"argument {value[:40]!r}: {why}")
        else:
            ids.append(value)
    if args.file is not None:
        try:
            text = args.file.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            return ids, [*problems, f"{args.file}: cannot read: {exc}"]
        for n, line in enumerate(text.splitlines(), 1):
            value, why = _file_id(line)
            if why:
                problems.append(f"{args.file}: line {n}: {why}")
            elif value is not None:
                ids.append(value)
    return ids, problems


def _segments(text: str) -> int:
    from chalicelib.store.scan import MAX_SEGMENTS

    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_SEGMENTS:
        raise argparse.ArgumentTypeError(f"must be a whole number from 1 to {MAX_SEGMENTS}")
    return value


def cmd_erase(args: argparse.Namespace) -> int:
    from chalicelib.pipeline.erasure import erase

    ids, problems = read_ids(args)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print("nothing erased: fix the problems above", file=sys.stderr)
        return 1
    if not ids:
        print("no customer ids given (arguments or --file)", file=sys.stderr)
        return 1
    progress = Progress("erase")
    try:
        report = erase(ids, dry_run=args.dry_run, segments=args.segments, progress=progress)
    except aws_errors(ValueError, RuntimeError) as exc:
        progress.done()
        print(f"erase stopped: {exc}; run it again with the same ids once fixed (it is "
              f"idempotent)", file=sys.stderr)
        return 1
    progress.done()
    verb = "would erase" if args.dry_run else "erased"
    print(f"{verb} {report.customers} customers ({report.unknown} unknown ids "
          f"{'would get' if args.dry_run else 'got'} a tombstone too) at {report.erased_at}: "
          f"{report.schedule_items} schedule items, {report.messages} messages, "
          f"{report.suppressed} opt-outs kept on the suppression list")
    if report.unknown:
        print(f"{report.unknown} ids had no profile: check them", file=sys.stderr)
    if report.returned:
        print(f"{report.returned} customers came back (an event after the erasure) during "
              f"the run: their newer items are kept", file=sys.stderr)
    return 0


def cmd_suppression_backfill(args: argparse.Namespace) -> int:
    from chalicelib.pipeline.suppression_backfill import backfill_suppression

    try:
        report = backfill_suppression(segments=args.segments, dry_run=args.dry_run)
    except aws_errors(ValueError) as exc:
        print(f"suppression-backfill stopped: {exc}; run it again once fixed (it is "
              f"idempotent)", file=sys.stderr)
        return 1
    if args.dry_run:
        print(f"{report.opt_outs} opt-outs made from an address would be listed")
    else:
        print(f"{report.opt_outs} opt-outs made from an address: {report.listed} listed, "
              f"{report.opt_outs - report.listed} had a newer word on the list already")
    return 0


def _days(args: argparse.Namespace, today: date) -> tuple[date, date] | None:
    """``--from``/``--to`` (default: the 30 days up to today); None, said, when the
    range is backwards."""
    from datetime import timedelta

    end = args.end or today
    start = args.start or end - timedelta(days=29)
    if start > end:
        print(f"--from {start} is after --to {end}", file=sys.stderr)
        return None
    return start, end


def cmd_report(args: argparse.Namespace) -> int:
    import json

    from chalicelib.tracking.report import (
        campaign_definitions,
        format_retention,
        format_table,
        read_campaign,
        read_retention,
    )

    today = datetime.now(UTC).date()
    days = _days(args, today)
    if days is None:
        return 1
    start, end = days
    try:
        definitions = campaign_definitions()
        unknown = [c for c in args.campaigns if c not in definitions]
        if unknown:
            for c in unknown:
                print(f"{c}: no campaign with this id was pushed", file=sys.stderr)
            return 1
        reports = [read_campaign(c, definitions[c], start, end)
                   for c in (args.campaigns or sorted(definitions))]
        # The whole business's retention, with the report of every campaign.
        customers = read_retention(start, end) if not args.campaigns else None
    except aws_errors() as exc:
        print(f"report stopped: {exc}", file=sys.stderr)
        return 1
    if args.format == "json":
        print(json.dumps([r.to_json() for r in reports], indent=2))
    elif args.format == "html":
        from chalicelib.tracking.report_html import format_html

        print(format_html(reports, datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
                          customers, today), end="")
    else:
        blocks = [format_retention(customers, today)] if customers is not None else []
        blocks += [format_table(r) for r in reports] or ["no campaign pushed yet\n"]
        print("\n".join(blocks), end="")
    return 0


def cmd_retention(args: argparse.Namespace) -> int:
    import json

    from chalicelib.tracking.report import format_retention, read_retention

    today = datetime.now(UTC).date()
    days = _days(args, today)
    if days is None:
        return 1
    start, end = days
    try:
        report = read_retention(start, end)
    except aws_errors() as exc:
        print(f"retention stopped: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(report.to_json(), indent=2) if args.format == "json"
          else format_retention(report, today), end="\n" if args.format == "json" else "")
    return 0


def _day(text: str) -> date:
    from chalicelib.events.envelope import parse_day

    try:
        return parse_day(text)
    except ValueError as exc:
        if str(exc).startswith("year"):
            raise argparse.ArgumentTypeError(str(exc)) from None
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a day (YYYY-MM-DD)") from None


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("push", help="validate, store and activate campaigns, then backfill")
    p.add_argument("paths", nargs="*", type=Path, default=[Path("campaigns")])
    p.add_argument("--templates", type=Path, default=Path("templates"))
    p.add_argument("--no-backfill", action="store_true")
    p.add_argument("--checkpoint", type=Path, default=Path(".aftercare-backfill.json"))
    p.set_defaults(func=cmd_push)

    i = sub.add_parser("import", help="bulk-load existing customers or orders")
    i.add_argument("kind", choices=["customers", "orders"])
    i.add_argument("file", type=Path, help=".jsonl or .csv")
    i.add_argument("--checkpoint", type=Path, help="default: FILE.checkpoint")
    i.add_argument("--limit", type=int, help="stop after this many rows (resume later)")
    i.add_argument("--as-of", type=_as_of, metavar="TIME",
                   help="when the export was made: the time of customer rows without "
                        "updated_at (default: the file's modification time)")
    i.set_defaults(func=cmd_import)

    b = sub.add_parser("backfill", help="plan date/idle campaigns for known customers")
    b.add_argument("--checkpoint", type=Path, default=Path(".aftercare-backfill.json"))
    b.add_argument("--limit", type=int, help="stop after this many customers (resume later)")
    b.set_defaults(func=cmd_backfill)

    e = sub.add_parser("erase", help="delete customers' data (keeps opt-outs as hashes)")
    e.add_argument("customer_ids", nargs="*", metavar="CUSTOMER_ID")
    e.add_argument("--file", type=Path, help="customer ids, one per line")
    e.add_argument("--dry-run", action="store_true", help="count what would be erased")
    e.add_argument("--segments", type=_segments, default=4,
                   help="parallel scan segments per table (1-64, default 4)")
    e.set_defaults(func=cmd_erase)

    r = sub.add_parser("report", help="what campaigns did: counts, rates, survey scores, "
                                      "conversion lift over the holdout")
    r.add_argument("campaigns", nargs="*", metavar="CAMPAIGN_ID",
                   help="default: every campaign pushed")
    r.add_argument("--from", dest="start", type=_day, metavar="DAY",
                   help="first day, UTC (default: 29 days before --to)")
    r.add_argument("--to", dest="end", type=_day, metavar="DAY",
                   help="last day, UTC (default: today)")
    r.add_argument("--format", choices=["table", "json", "html"], default="table",
                   help="html: one self-contained page with charts (> report.html)")
    r.set_defaults(func=cmd_report)

    rt = sub.add_parser("retention", help="customers who ordered again (retention, churn)")
    rt.add_argument("--from", dest="start", type=_day, metavar="DAY",
                    help="first day of the cohort, UTC (default: 29 days before --to)")
    rt.add_argument("--to", dest="end", type=_day, metavar="DAY",
                    help="last day of the cohort, UTC (default: today)")
    rt.add_argument("--format", choices=["table", "json"], default="table")
    rt.set_defaults(func=cmd_retention)

    sb = sub.add_parser("suppression-backfill",
                        help="list opt-outs recorded before the suppression list (once)")
    sb.add_argument("--dry-run", action="store_true", help="count what would be listed")
    sb.add_argument("--segments", type=_segments, default=4,
                    help="parallel scan segments (1-64, default 4)")
    sb.set_defaults(func=cmd_suppression_backfill)
