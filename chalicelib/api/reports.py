"""``GET /reports`` and ``GET /reports/{campaign_id}``: ``aftercare report`` over HTTP.

The same figures as the CLI (:mod:`chalicelib.tracking.report`), read from the
stats counters (one Query per variant, arm and stats shard per campaign, never the
messages), as JSON or as the self-contained HTML page. Both routes are admin routes:
API Gateway checks the caller's IAM signature (SigV4) before the function runs
(``IAMAuthorizer`` in ``app.py``), so only principals granted ``execute-api:Invoke``
on them get through. Query parameters:

- ``from``, ``to``: the days (UTC, ``YYYY-MM-DD``, both included); by default the
  last 30 days up to today; at most :data:`MAX_DAYS` days;
- ``campaign`` (``GET /reports`` only, repeatable): the campaigns to report, by
  default every campaign ever pushed;
- ``format``: ``json`` (default) or ``html``.

``GET /reports`` also gives the customers' retention over the same days
(:mod:`chalicelib.tracking.retention`), as ``retention``.
"""

from __future__ import annotations

from datetime import UTC, date, timedelta
from typing import Any

from chalicelib import clock
from chalicelib.api.errors import BadRequestError, NotFoundError
from chalicelib.api.http import HttpRequest, HttpResponse
from chalicelib.tracking.report import (
    CampaignReport,
    campaign_definitions,
    campaign_versions,
    read_campaign,
    read_retention,
)
from chalicelib.tracking.retention import RetentionReport

DEFAULT_DAYS = 30
MAX_DAYS = 400  # a report reads O(days): a bound keeps one request's cost known
FORMATS = ("json", "html")
MAX_CAMPAIGNS = 100


def _one(request: HttpRequest, name: str) -> str | None:
    values = request.query.get(name) or []
    if len(values) > 1:
        raise BadRequestError(f"{name}: give it once")
    return values[0] if values else None


def _day(request: HttpRequest, name: str) -> date | None:
    text = _one(request, name)
    if text is None:
        return None
    from chalicelib.events.envelope import parse_day

    try:
        return parse_day(text)
    except ValueError as exc:  # "not a day (YYYY-MM-DD)", or the year out of range
        raise BadRequestError(f"{name}: {exc}") from None


def _range(request: HttpRequest) -> tuple[date, date]:
    end = _day(request, "to") or clock.now().astimezone(UTC).date()
    start = _day(request, "from") or end - timedelta(days=DEFAULT_DAYS - 1)
    if start > end:
        raise BadRequestError(f"from: {start} is after to {end}")
    if (end - start).days + 1 > MAX_DAYS:
        raise BadRequestError(f"from, to: at most {MAX_DAYS} days in one report")
    return start, end


def _format(request: HttpRequest) -> str:
    fmt = _one(request, "format") or "json"
    if fmt not in FORMATS:
        raise BadRequestError(f"format: one of {', '.join(FORMATS)}")
    return fmt


def _reply(reports: list[CampaignReport], fmt: str, body: Any,
           customers: RetentionReport | None = None) -> HttpResponse:
    if fmt == "html":
        from chalicelib.tracking.report_html import format_html

        now = clock.now().astimezone(UTC)
        generated = now.strftime("%Y-%m-%d %H:%M UTC")
        return HttpResponse(200, format_html(reports, generated, customers, now.date()),
                            {"Content-Type": "text/html; charset=utf-8",
                             "Cache-Control": "no-store"})
    return HttpResponse(200, body, {"Cache-Control": "no-store"})


def list_reports(request: HttpRequest) -> HttpResponse:
    """``GET /reports``: every campaign pushed, or those named by ``campaign``."""
    start, end = _range(request)
    fmt = _format(request)
    wanted = request.query.get("campaign") or []
    if len(wanted) > MAX_CAMPAIGNS:
        raise BadRequestError(f"campaign: at most {MAX_CAMPAIGNS} in one report")
    definitions = campaign_definitions()
    unknown = [c for c in wanted if c not in definitions]
    if unknown:
        raise NotFoundError(f"campaign: no campaign with id {unknown[0][:100]!r} was pushed")
    ids = list(dict.fromkeys(wanted)) or sorted(definitions)
    reports = [read_campaign(c, definitions[c], start, end) for c in ids]
    customers = read_retention(start, end)
    return _reply(reports, fmt, {"from": start.isoformat(), "to": end.isoformat(),
                                 "reports": [r.to_json() for r in reports],
                                 "retention": customers.to_json()}, customers)


def campaign_report(request: HttpRequest) -> HttpResponse:
    """``GET /reports/{campaign_id}``: one campaign's report; 404 if never pushed."""
    campaign_id = request.params.get("campaign_id", "")
    start, end = _range(request)
    fmt = _format(request)
    definitions = campaign_versions(campaign_id)
    if not definitions:
        raise NotFoundError("no campaign with this id was pushed")
    report = read_campaign(campaign_id, definitions, start, end)
    return _reply([report], fmt, report.to_json())
