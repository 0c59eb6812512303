"""``make demo``: a generated event log through the real handlers on the local stack."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

from chalicelib.local.generator import generate, write_jsonl


def _outbox(stack: Any) -> list[dict[str, Any]]:
    from chalicelib.store.models import MessageModel

    sms = {m["sid"]: m for m in stack.twilio.messages}
    emails = {m["id"]: m for m in stack.sent_emails()}
    entries = []
    for m in MessageModel.scan(MessageModel.provider_id.exists()):
        entry: dict[str, Any] = {"at": m.decided_at, "campaign": m.campaign_id,
                                 "step": m.step_id, "customer": m.customer_id,
                                 "channel": m.channel, "status": m.status,
                                 "provider_id": m.provider_id}
        if m.channel == "sms" and m.provider_id in sms:
            entry.update(to=sms[m.provider_id]["to"], body=sms[m.provider_id]["body"])
        elif m.provider_id in emails:
            e = emails[m.provider_id]
            entry.update(to=", ".join(e["to"]), subject=e["subject"], body=e["body"])
        entries.append(entry)
    entries.sort(key=lambda e: (e["at"], e["customer"]))
    return entries


def _write_outbox(entries: list[dict[str, Any]], out: Path) -> Path:
    path = out / "outbox.txt"
    with path.open("w", encoding="utf-8") as fh:
        for e in entries:
            fh.write(f"=== {e['at']}  {e['channel'].upper()} to {e.get('to', '?')}  "
                     f"[{e['campaign']}/{e['step']}]  {e['status']}\n")
            if e.get("subject"):
                fh.write(f"Subject: {e['subject']}\n")
            fh.write(f"{e.get('body', '')}\n\n")
    (out / "outbox.jsonl").write_text("".join(json.dumps(e) + "\n" for e in entries))
    return path


def run_demo(out: Path, customers: int = 120, days: int = 120, seed: int = 7) -> int:
    from chalicelib.local.replay import Replay, pipeline_rows
    from chalicelib.local.stack import LocalStack

    out.mkdir(parents=True, exist_ok=True)
    events = generate(customers=customers, days=days, seed=seed)
    write_jsonl(events, out / "events.jsonl")
    started = time.perf_counter()
    with LocalStack(outbox_dir=out) as stack:
        campaigns = stack.push_campaigns()
        print(f"pushed {len(campaigns)} campaigns: {', '.join(campaigns)}")
        print(f"replaying {len(events)} events from {events[0]['occurred_at']} "
              f"to {events[-1]['occurred_at']} ...")
        replay = Replay(stack, callbacks=True, replies=True)
        replay.run(events)
        rows = pipeline_rows()
        enrolled = _enrollments()
        statuses = _message_statuses()
        entries = _outbox(stack)
        path = _write_outbox(entries, out)
        dlq = stack.dead_letters()
        reports = _reports(events, out / "report.html")
        replied = replay.replied
    elapsed = time.perf_counter() - started
    _print_summary(events, rows, entries, len(dlq), elapsed, enrolled)
    print(f"message status after provider callbacks: {dict(sorted(statuses.items()))}")
    print(f"texted back (signed inbound webhooks): {replied['survey']} survey answers, "
          f"{replied['text']} free-text replies")
    for e in entries[:8]:
        print(f"  {e['at']}  {e['channel']:<5} {e.get('to', '?'):<28} "
              f"{e['campaign']}/{e['step']}: {(e.get('subject') or e.get('body', ''))[:60]!r}")
    print(f"outbox: {path} ({len(entries)} messages); events: {out / 'events.jsonl'}")
    print("\naftercare report (from the stats counters, as on a stage):")
    print("\n".join(reports))
    return 0


def _reports(events: list[dict[str, Any]], html: Path) -> list[str]:
    """``aftercare report`` of every campaign, over the days of the replay (also
    written as ``html``, as ``--format html`` writes it)."""
    from chalicelib import clock
    from chalicelib.tracking.report import (
        campaign_definitions,
        format_retention,
        format_table,
        read_campaign,
        read_retention,
    )
    from chalicelib.tracking.report_html import format_html

    start = clock.parse_iso(events[0]["occurred_at"]).date()
    end = clock.now().date()
    reports = [read_campaign(c, d, start, end)
               for c, d in sorted(campaign_definitions().items())]
    customers = read_retention(start, end)
    html.write_text(format_html(reports, clock.iso(clock.now()), customers, end),
                    encoding="utf-8")
    return [format_retention(customers, end), *(format_table(r) for r in reports),
            f"(as a page with charts: {html})"]


def _message_statuses() -> Counter[str]:
    from chalicelib.store.models import MessageModel

    return Counter(m.status for m in MessageModel.scan(MessageModel.provider_id.exists()))


def _enrollments() -> Counter[tuple[str, str]]:
    """Enrollments by (campaign, arm), from the stats counters (a Scan: demo only)."""
    from chalicelib.store.models import StatsModel

    counts: Counter[tuple[str, str]] = Counter()
    for item in StatsModel.scan():
        if item.pk.startswith("_"):
            continue  # not a campaign's: the customers' retention, observer slots
        campaign, _variant, arm, _shard = item.pk.split("#")
        counts[(campaign, arm)] += int(item.enrolled or 0)
    return counts


def _print_summary(events: list[dict[str, Any]], rows: list[Any], entries: list[dict[str, Any]],
                   dead: int, elapsed: float, enrolled: Counter[tuple[str, str]]) -> None:
    by_outcome = Counter(r.outcome for r in rows)
    by_channel = Counter((e["channel"], e["campaign"]) for e in entries)
    reasons = Counter(f"{r.outcome}: {r.reason}" for r in rows
                      if r.outcome not in ("sent",))
    print(f"\nevents: {len(events)} ({Counter(e['type'] for e in events).most_common()})")
    print("enrollments by campaign (treatment / holdout):")
    for campaign in sorted({c for c, _ in enrolled}):
        print(f"  {campaign:<24} {enrolled[(campaign, 'treatment')]:>5} / "
              f"{enrolled[(campaign, 'holdout')]}")
    print(f"step decisions: {dict(sorted(by_outcome.items()))}")
    print("sends by channel and campaign:")
    for (channel, campaign), n in sorted(by_channel.items()):
        print(f"  {channel:<5} {campaign:<24} {n}")
    print("not sent, by reason:")
    for reason, n in reasons.most_common():
        print(f"  {n:>5}  {reason}")
    print(f"dead-lettered events: {dead}; wall time {elapsed:.1f}s "
          f"({len(events) / elapsed:.0f} events/s)\n")
