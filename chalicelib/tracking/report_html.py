"""``aftercare report --format html``: the report as one self-contained HTML page.

No script and no external asset: the charts are inline SVG drawn here, so the page
opens anywhere (a mail attachment, an S3 object) and shows the same thing offline.
Per campaign: the table of ``format_table``, the lift, a chart of the conversion
rate per arm, the message funnel (sent, delivered, opened, clicked, replied) and the
enrollments and sends per day. Every value is escaped (campaign ids come from
config, but a page is no place to trust them).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta

from markupsafe import Markup, escape

from chalicelib.tracking.report import COLUMNS, RATES, CampaignReport, pct
from chalicelib.tracking.retention import RETENTION_DAYS, RetentionReport

_W, _BAR_H = 560, 22
_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222;max-width:1100px}
h1{font-size:1.4em} h2{font-size:1.15em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0} td,th{padding:2px 8px;text-align:right}
td:nth-child(-n+2),th:nth-child(-n+2){text-align:left} th{border-bottom:1px solid #aaa}
.charts{display:flex;flex-wrap:wrap;gap:2em} .muted{color:#777}
svg text{font:12px system-ui,sans-serif}
"""


def _bars(title: str, items: Sequence[tuple[str, float, str]], maximum: float) -> Markup:
    """Horizontal bars: (label, value, shown text)."""
    height = 24 + _BAR_H * len(items)
    parts = [f'<svg width="{_W}" height="{height}" role="img" aria-label="{escape(title)}">',
             f'<text x="0" y="14" font-weight="bold">{escape(title)}</text>']
    for i, (label, value, shown) in enumerate(items):
        y = 24 + i * _BAR_H
        width = 0 if maximum <= 0 else round((_W - 260) * value / maximum)
        parts.append(f'<text x="0" y="{y + 15}">{escape(label)}</text>'
                     f'<rect x="150" y="{y + 3}" width="{width}" height="{_BAR_H - 6}" '
                     f'fill="#4a7bd0"/><text x="{156 + width}" y="{y + 15}">'
                     f'{escape(shown)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def _daily(report: CampaignReport) -> Markup:
    """Enrollments (bars) and sends (line) per day over the report's days."""
    start, end = date.fromisoformat(report.start), date.fromisoformat(report.end)
    days = [(start + timedelta(n)).isoformat() for n in range((end - start).days + 1)]
    enrolled = [report.days.get(d, {}).get("enrolled", 0) for d in days]
    sent = [report.days.get(d, {}).get("sent", 0) for d in days]
    top = max([*enrolled, *sent, 1])
    height, base = 140, 120
    step = (_W - 40) / max(len(days), 1)
    parts = [f'<svg width="{_W}" height="{height + 20}" role="img" '
             'aria-label="enrollments and sends per day">',
             '<text x="0" y="14" font-weight="bold">per day: enrolled (bars), sent (line), '
             f'max {top}</text>']
    for i, n in enumerate(enrolled):
        h = round(90 * n / top)
        parts.append(f'<rect x="{40 + i * step:.1f}" y="{base - h}" '
                     f'width="{max(step - 1, 1):.1f}" height="{h}" fill="#9bb7e8"/>')
    points = " ".join(f"{40 + (i + .5) * step:.1f},{base - round(90 * n / top)}"
                      for i, n in enumerate(sent))
    parts.append(f'<polyline points="{points}" fill="none" stroke="#d0604a" '
                 'stroke-width="1.5"/>')
    parts.append(f'<text x="40" y="{height + 12}">{escape(days[0])}</text>'
                 f'<text x="{_W - 80}" y="{height + 12}">{escape(days[-1])}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def _campaign(report: CampaignReport) -> str:
    title = escape(report.campaign_id)
    out = [f"<h2>{title} <span class=muted>{escape(report.start)} .. {escape(report.end)}"
           + (f", survey {escape(report.survey)}" if report.survey else "") + "</span></h2>"]
    if not report.arms:
        return out[0] + "<p class=muted>nothing counted in these days</p>"
    head = ["variant", "arm", *COLUMNS, *(name for name, _ in RATES), "score"]
    out.append("<table><tr>" + "".join(f"<th>{escape(h)}</th>" for h in head) + "</tr>")
    for a in report.arms:
        cells = [a.variant or "-", a.arm, *(str(a.counts.get(c, 0)) for c in COLUMNS),
                 *(pct(a.rates.get(key)) for _, key in RATES),
                 "-" if a.survey_score is None else f"{a.survey_score:g}"]
        out.append("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in cells) + "</tr>")
    out.append("</table>")
    lift = report.lift
    if lift is not None and lift["difference"] is not None:
        relative = "" if lift["relative"] is None else f" ({100 * lift['relative']:+.0f}%)"
        out.append(f"<p>Lift: <b>{100 * lift['difference']:+.1f} pp</b>{escape(relative)} "
                   f"conversion over the holdout, p = {lift['p_value']:.3g} "
                   "(two-proportion z-test, intent-to-treat).</p>")
    charts = []
    arms: dict[str, dict[str, int]] = {}
    for a in report.arms:
        counts = arms.setdefault(a.arm, {})
        for name, value in a.counts.items():
            counts[name] = counts.get(name, 0) + value
    rates = [(arm, c.get("converted", 0) / c["enrolled"],
              f"{pct(c.get('converted', 0) / c['enrolled'])} of {c['enrolled']}")
             for arm, c in arms.items() if c.get("enrolled")]
    if rates:
        charts.append(_bars("conversion rate by arm", rates, max(r for _, r, _ in rates)))
    treated = arms.get("treatment", {})
    funnel = [(name, float(treated.get(name, 0)), str(treated.get(name, 0)))
              for name in ("sent", "delivered", "opened", "clicked", "replied")]
    if treated.get("sent"):
        charts.append(_bars("messages (treatment)", funnel, funnel[0][1]))
    charts.append(_daily(report))
    out.append('<div class="charts">' + "".join(charts) + "</div>")
    return "".join(out)


def _customers(report: RetentionReport, today: date) -> str:
    c = report.counts
    state = report.state(today)
    head = ["ordered", "new", "returned", "reactivated", "retention", "churn"]
    cells = [str(c["ordered"]), str(c["customers_new"]), str(c["returned"]),
             str(c["reactivated"]), pct(report.retention_rate), pct(report.churn_rate)]
    return (f"<h2>Customers <span class=muted>{escape(report.start)} .. "
            f"{escape(report.end)}</span></h2><table><tr>"
            + "".join(f"<th>{escape(h)}</th>" for h in head) + "</tr><tr>"
            + "".join(f"<td>{escape(v)}</td>" for v in cells) + "</tr></table>"
            f"<p class=muted>Customers who ordered in these days, and of them those who "
            f"ordered again within {RETENTION_DAYS} days ({escape(state)}).</p>")


def format_html(reports: Sequence[CampaignReport], generated: str,
                customers: RetentionReport | None = None, today: date | None = None) -> str:
    body = "".join(_campaign(r) for r in reports) or "<p>No campaign pushed yet.</p>"
    if customers is not None:
        body = _customers(customers, today or date.fromisoformat(customers.end)) + body
    return ("<!doctype html><html lang=en><meta charset=utf-8>"
            "<title>Aftercare report</title>"
            f"<style>{_STYLE}</style><h1>Aftercare report</h1>"
            f"<p class=muted>Generated {escape(generated)} from the stats counters. "
            "Rates: conversion = converted / enrolled, delivery = delivered / sent, "
            "open, click and reply per delivered message (opens are approximate).</p>"
            f"{body}</html>\n")
