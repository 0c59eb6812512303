"""``aftercare report``: what the campaigns did, from the stats counters.

The stats table holds counters per campaign x variant x arm x day, write-sharded
(``chalicelib.pipeline.stats``), so a report reads O(days x shards) items per
campaign, never the messages. :func:`summarize` is pure (counters in, figures out);
:func:`read_campaign` does the reading.

Figures, per campaign, variant and arm (``treatment`` or ``holdout``):

- the counters summed over the days asked for: ``enrolled`` and ``converted`` count
  on the day of the enrollment, the sender's on the day decided or sent,
  ``delivered``/``opened``/``clicked`` and survey answers on the day the message
  was sent (docs/campaigns.md);
- rates: ``conversion_rate`` = converted / enrolled (intent-to-treat, the same way
  in both arms), ``delivery_rate`` = delivered / sent, ``open_rate`` and
  ``click_rate`` per delivered message, for campaigns that send email (opens are
  approximate: docs/api.md), ``reply_rate`` (messages that got a free-text reply)
  per message sent, for campaigns that send SMS (per sent, not delivered: carriers
  do not always report deliveries, and a reply says the message arrived);
- the survey score of the campaign's survey kind: CSAT and CES as the mean answer,
  NPS as % promoters - % detractors (-100..100);
- per campaign, the lift of the treatment over the holdout: the difference of their
  conversion rates, relative to the holdout's, and the two-sided p-value of a
  two-proportion z-test (None while either arm has no enrollment).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from chalicelib.tracking import retention
from chalicelib.tracking.retention import RETENTION_DAYS, RetentionReport

ARMS = ("treatment", "holdout")


@dataclass(slots=True)
class ArmReport:
    variant: str | None
    arm: str
    counts: dict[str, int]
    rates: dict[str, float | None] = field(default_factory=dict)
    survey_score: float | None = None


@dataclass(slots=True)
class CampaignReport:
    campaign_id: str
    start: str
    end: str
    survey: str | None  # the campaign's survey kind; "mixed" when it asks several
    arms: list[ArmReport]
    lift: dict[str, float | None] | None
    # Counters per day (every variant and arm), for charts; filled by read_campaign.
    days: dict[str, dict[str, int]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "campaign": self.campaign_id, "from": self.start, "to": self.end,
            "survey": self.survey,
            "arms": [{"variant": a.variant, "arm": a.arm, "counts": a.counts,
                      "rates": a.rates, "survey_score": a.survey_score} for a in self.arms],
            "lift": self.lift,
        }


def _ratio(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def survey_score(kind: str | None, counts: Mapping[str, int]) -> float | None:
    """The score of the answers counted: mean for CSAT and CES, NPS for NPS (None
    without answers, or when the campaign asks several kinds)."""
    responses = counts.get("survey_responses", 0)
    if not responses or kind is None or kind == "mixed":
        return None
    if kind == "nps":
        promoters, detractors = counts.get("promoters", 0), counts.get("detractors", 0)
        return round(100 * (promoters - detractors) / responses, 1)
    return round(counts.get("survey_score_sum", 0) / responses, 2)


def lift(treatment: Mapping[str, int], holdout: Mapping[str, int]) -> dict[str, float | None]:
    """Treatment vs holdout conversion (intent-to-treat), with a two-sided p-value."""
    n1, c1 = treatment.get("enrolled", 0), treatment.get("converted", 0)
    n2, c2 = holdout.get("enrolled", 0), holdout.get("converted", 0)
    p1, p2 = _ratio(c1, n1), _ratio(c2, n2)
    out: dict[str, float | None] = {"treatment_rate": p1, "holdout_rate": p2,
                                    "difference": None, "relative": None, "p_value": None}
    if not n1 or not n2:
        return out
    r1, r2 = c1 / n1, c2 / n2
    out["difference"] = round(r1 - r2, 4)
    out["relative"] = round((r1 - r2) / r2, 4) if r2 else None
    pooled = (c1 + c2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    out["p_value"] = round(math.erfc(abs(r1 - r2) / se / math.sqrt(2)), 4) if se else 1.0
    return out


def summarize(campaign_id: str, survey: str | None, start: date, end: date,
              totals: Mapping[tuple[str | None, str], Mapping[str, int]],
              email: bool = True, sms: bool = True) -> CampaignReport:
    """The report of one campaign from its counters summed per (variant, arm).
    ``email``: whether it sends email (opens and clicks are email's: without it,
    their rates are None rather than 0); ``sms`` the same for SMS and replies."""
    arms: list[ArmReport] = []
    by_arm: dict[str, dict[str, int]] = {a: {} for a in ARMS}
    for (variant, arm), counts in sorted(totals.items(),
                                         key=lambda kv: (kv[0][0] or "", ARMS.index(kv[0][1]))):
        kept = {k: v for k, v in sorted(counts.items()) if v}
        if not kept:
            continue
        for name, value in kept.items():
            by_arm[arm][name] = by_arm[arm].get(name, 0) + value
        delivered = kept.get("delivered", 0)
        rates = {
            "conversion_rate": _ratio(kept.get("converted", 0), kept.get("enrolled", 0)),
            "delivery_rate": _ratio(delivered, kept.get("sent", 0)),
            "open_rate": _ratio(kept.get("opened", 0), delivered) if email else None,
            "click_rate": _ratio(kept.get("clicked", 0), delivered) if email else None,
            "reply_rate": _ratio(kept.get("replied", 0), kept.get("sent", 0)) if sms else None,
        }
        arms.append(ArmReport(variant, arm, kept, rates, survey_score(survey, kept)))
    has_holdout = bool(by_arm["holdout"].get("enrolled"))
    return CampaignReport(campaign_id, start.isoformat(), end.isoformat(), survey, arms,
                          lift(by_arm["treatment"], by_arm["holdout"]) if has_holdout
                          else None)


def survey_kind(definitions: Iterable[Mapping[str, Any]]) -> str | None:
    """The survey kind a campaign's steps ask (over all its versions), ``mixed``
    when more than one."""
    kinds = {step.get("survey") for d in definitions for step in d.get("steps", ())
             if step.get("survey")}
    return kinds.pop() if len(kinds) == 1 else ("mixed" if kinds else None)


def variants_of(definitions: Iterable[Mapping[str, Any]]) -> list[str | None]:
    found = {v["id"] for d in definitions for v in d.get("variants", ())}
    return [None, *sorted(found)]


# -- reading (DynamoDB) -------------------------------------------------------------------


def campaign_definitions() -> dict[str, list[dict[str, Any]]]:
    """Every pushed version's definition, by campaign id (the campaigns table is
    small: one item per version pushed)."""
    from chalicelib.store.models import CampaignModel

    out: dict[str, list[dict[str, Any]]] = {}
    # Not the templates each version stores: only what a report reads.
    for item in CampaignModel.scan(attributes_to_get=["campaign_id", "version", "definition"]):
        out.setdefault(str(item.campaign_id), []).append(dict(item.definition))
    return out


def campaign_versions(campaign_id: str) -> list[dict[str, Any]]:
    """Every pushed version's definition of one campaign (one Query; none: [])."""
    from chalicelib.store.models import CampaignModel

    return [dict(item.definition) for item in CampaignModel.query(campaign_id)]


def read_days(campaign_id: str, variants: Sequence[str | None], start: date,
              end: date, arms: Sequence[str] = ARMS,
              ) -> dict[tuple[str | None, str], dict[str, dict[str, int]]]:
    """Counters of ``campaign_id`` per (variant, arm) and day in [start, end], the
    shards summed: one Query per variant x arm x shard."""
    from chalicelib.pipeline.stats import STATS_SHARDS, stats_pk
    from chalicelib.store.models import COUNTERS, StatsModel

    out: dict[tuple[str | None, str], dict[str, dict[str, int]]] = {}
    for variant in variants:
        for arm in arms:
            days = out.setdefault((variant, arm), {})
            for shard in range(STATS_SHARDS):
                pk = stats_pk(campaign_id, variant, arm, shard)
                for item in StatsModel.query(pk, StatsModel.day.between(
                        start.isoformat(), end.isoformat())):
                    counts = days.setdefault(str(item.day), {})
                    for name in COUNTERS:
                        value = getattr(item, name)
                        if value:
                            counts[name] = counts.get(name, 0) + int(value)
    return out


def summed(days: Mapping[str, Mapping[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for counts in days.values():
        for name, value in counts.items():
            total[name] = total.get(name, 0) + value
    return total


def read_campaign(campaign_id: str, definitions: Sequence[Mapping[str, Any]], start: date,
                  end: date) -> CampaignReport:
    days = read_days(campaign_id, variants_of(definitions), start, end)
    channels = {step.get("channel") for d in definitions for step in d.get("steps", ())}
    report = summarize(campaign_id, survey_kind(definitions), start, end,
                       {key: summed(per_day) for key, per_day in days.items()},
                       email="email" in channels, sms="sms" in channels)
    for per_day in days.values():  # every arm and variant, per day
        for day, counts in per_day.items():
            into = report.days.setdefault(day, {})
            for name, value in counts.items():
                into[name] = into.get(name, 0) + value
    return report


def read_retention(start: date, end: date) -> RetentionReport:
    """The customers' retention over the cohort of days [start, end]: one Query per
    stats shard (docs/campaigns.md, "Retention and churn")."""
    days = read_days(retention.CUSTOMERS, [None], start, end, arms=(retention.ARM,))
    return retention.summarize_retention(start, end, summed(days[(None, retention.ARM)]))


# -- the table -----------------------------------------------------------------------------

COLUMNS = ("enrolled", "held_out", "sent", "delivered", "failed", "opened", "clicked",
           "replied", "converted")
RATES = (("conv", "conversion_rate"), ("deliv", "delivery_rate"), ("open", "open_rate"),
         ("click", "click_rate"), ("reply", "reply_rate"))


def pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def format_retention(report: RetentionReport, today: date) -> str:
    """The customers' retention for a terminal."""
    c = report.counts
    state = report.state(today)
    return (f"customers  {report.start}..{report.end}  (orders within "
            f"{RETENTION_DAYS} days; {state})\n"
            f"  ordered {c['ordered']}  new {c['customers_new']}  returned {c['returned']}"
            f"  reactivated {c['reactivated']}  retention {pct(report.retention_rate)}"
            f"  churn {pct(report.churn_rate)}\n")


def format_table(report: CampaignReport) -> str:
    """A campaign's report for a terminal."""
    lines = [f"{report.campaign_id}  {report.start}..{report.end}"
             + (f"  survey: {report.survey}" if report.survey else "")]
    if not report.arms:
        return lines[0] + "\n  nothing counted in these days\n"
    head = ["variant", "arm", *COLUMNS, *(name + "%" for name, _ in RATES), "score"]
    rows = [[a.variant or "-", a.arm, *(str(a.counts.get(c, 0)) for c in COLUMNS),
             *(pct(a.rates.get(key)) for _, key in RATES),
             "-" if a.survey_score is None else f"{a.survey_score:g}"] for a in report.arms]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    for r in [head, *rows]:
        lines.append("  " + "  ".join(v.ljust(w) if i < 2 else v.rjust(w)
                                      for i, (v, w) in enumerate(zip(r, widths, strict=True))))
    if report.lift is not None:
        lift_ = report.lift
        diff = lift_["difference"]
        if diff is None:
            lines.append("  lift: no treatment enrollments yet")
        else:
            relative = "" if lift_["relative"] is None else f" ({100 * lift_['relative']:+.0f}%)"
            lines.append(f"  lift: {100 * diff:+.1f} pp{relative} conversion over the "
                         f"holdout, p = {lift_['p_value']:.3g}")
    return "\n".join(lines) + "\n"
