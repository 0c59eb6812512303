"""The decision core: what an event changes, and whether a due step is sent.

Pure functions over plain data (profile dicts, compiled campaigns, datetimes):
no boto3, no pynamodb, no twilio. The Lambda pipeline (``chalicelib.pipeline``)
and ``aftercare simulate`` (``chalicelib.journeys.simulate``) both call exactly
these functions, and a differential test holds them to the same rows.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from chalicelib.clock import iso, parse_iso
from chalicelib.config.compiled import CompiledCampaign, CompiledStep
from chalicelib.journeys import keys
from chalicelib.journeys.dates import anniversary, next_anniversary, parse_date, yearly_date
from chalicelib.journeys.profile import Profile, apply_event, new_profile, order_scoped
from chalicelib.journeys.timing import (
    add_local,
    local_time,
    next_allowed,
    on_allowed_day,
    plan_from_local,
    zone,
)
from chalicelib.rules.reads import event_data_reads, reads_clock

MAX_REFS_KEPT = 50
# The most of an event's ``data`` kept with each planned step for its step conditions
# (compact JSON). A schedule item is one DynamoDB item (at most 400 KB) and up to 100
# of them go in one transaction (at most 4 MB), so what steps keep stays small: only
# the top-level keys of ``data`` the conditions read, and an enrollment that would
# need more than this is skipped with the reason (see :func:`_kept_data`).
MAX_STEP_DATA_BYTES = 4096
_LAST_PLANNED_YEAR = 9998
CONTACT_FIELD = {"sms": "phone", "email": "email"}
_MEMO_MAX = 65_536  # entries of CampaignSet's memo; cleared when full
_MISSING = object()
_NO_TIME = timedelta(0)
_REACH_SLACK = timedelta(days=9)
_SECOND = timedelta(seconds=1)


StepKey = tuple[str, str, str, str]  # (customer_id, campaign_id, ref, step_id)


@dataclass(slots=True)
class PlannedStep:
    """One step of one enrollment, waiting in the schedule.

    Its schedule id (a hash of :attr:`key`) is derived when asked for: the
    pipeline stores it, while ``aftercare simulate`` keys its in-memory schedule
    by ``key`` and never pays for the hash.
    """

    customer_id: str
    campaign_id: str
    campaign_version: int
    step_id: str
    ref: str
    enrolled_at: str
    due_at: datetime
    holdout: bool
    variant: str | None
    event_id: str
    order: dict[str, Any] | None = None
    # The part of the triggering event's ``data`` its step conditions read (None when
    # they read none, and in records written before this was kept).
    data: dict[str, Any] | None = None
    # How long deferrals (quiet hours, a weekday not allowed) have held it back, in
    # whole seconds: waiting for them is not lateness for ``expire_after``.
    deferred_for: timedelta = _NO_TIME

    @property
    def key(self) -> StepKey:
        return (self.customer_id, self.campaign_id, self.ref, self.step_id)

    @property
    def id(self) -> str:
        return keys.schedule_id(self.customer_id, self.campaign_id, self.ref, self.step_id)

    @property
    def shard(self) -> str:
        return keys.shard_for(self.customer_id)

    def to_dict(self) -> dict[str, Any]:
        d = {
            "id": self.id, "customer_id": self.customer_id, "campaign_id": self.campaign_id,
            "campaign_version": self.campaign_version, "step_id": self.step_id,
            "ref": self.ref, "enrolled_at": self.enrolled_at, "due_at": iso(self.due_at),
            "holdout": self.holdout, "variant": self.variant, "event_id": self.event_id,
            "order": self.order,
        }
        if self.data is not None:  # only steps whose conditions read event.data
            d["data"] = self.data
        if self.deferred_for:  # only steps deferred at least once
            d["deferred_for"] = self.deferred_for // _SECOND
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PlannedStep:
        return cls(
            customer_id=d["customer_id"], campaign_id=d["campaign_id"],
            campaign_version=int(d["campaign_version"]), step_id=d["step_id"], ref=d["ref"],
            enrolled_at=d["enrolled_at"], due_at=parse_iso(d["due_at"]),
            holdout=bool(d["holdout"]), variant=d.get("variant"), event_id=d["event_id"],
            order=d.get("order"), data=d.get("data"),
            deferred_for=timedelta(seconds=int(d.get("deferred_for") or 0)),
        )

    def held_back(self, now: datetime, until: datetime) -> None:
        """Note a deferral decided at ``now`` to ``until``: the wait is not lateness
        (whole seconds, as stored)."""
        self.deferred_for += (until - now) // _SECOND * _SECOND


class Row(NamedTuple):
    """One decision, as simulate prints it and the differential test compares it.

    ``channel`` and ``template`` say what a step decision is about (``template``
    only when it is sent: the variant's template if the customer has one); both
    are empty on enrollment rows and on steps cancelled at ingest.

    A named tuple rather than a frozen dataclass: a backtest makes millions of
    these, and a tuple is built several times faster.
    """

    customer: str
    campaign: str
    step: str
    at: str
    outcome: str
    reason: str
    channel: str = ""
    template: str = ""

    def as_tuple(self) -> tuple[str, str, str, str, str, str, str, str]:
        return (self.customer, self.campaign, self.step, self.at, self.outcome, self.reason,
                self.channel, self.template)


@dataclass(frozen=True, slots=True)
class Conversion:
    campaign_id: str
    arm: str  # "treatment" | "holdout"
    variant: str | None
    enrolled_at: str


@dataclass(frozen=True, slots=True)
class Cancellation:
    """A pending step taken off the schedule at ingest, with why."""

    key: StepKey  # the PlannedStep.key of the step
    outcome: str  # "exited" | "cancelled"
    reason: str

    @property
    def schedule_id(self) -> str:
        return keys.schedule_id(*self.key)


@dataclass(slots=True)
class EventResult:
    profile: Profile
    planned: list[PlannedStep] = field(default_factory=list)
    # Pending steps planned again with the same keys (and no row): the yearly
    # occurrences and the idle spell of a customer whose timezone changed, in the new
    # zone. Only the steps still pending change; the others are left as they are.
    # (Event enrollments move too, but from their stored steps, which the profile
    # does not hold: see :func:`event_steps_to_move`.)
    moved: list[PlannedStep] = field(default_factory=list)
    cancelled: list[Cancellation] = field(default_factory=list)
    conversions: list[Conversion] = field(default_factory=list)
    # The first step (not planned) of each enrollment that ended in the event that
    # made it: a yearly occurrence learnt after an exit event that followed its
    # start (:func:`_started_late`), not planned before. Counted enrolled in the
    # stats all the same.
    ended: list[PlannedStep] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)


@dataclass(slots=True)
class StepDecision:
    outcome: str  # send | held_out | expired | exited | skipped | suppressed | cancelled | deferred
    reason: str
    channel: str | None = None
    template: str | None = None
    to: str | None = None
    defer_until: datetime | None = None
    follow_ups: list[PlannedStep] = field(default_factory=list)


class CampaignSet:
    """Active compiled campaigns, indexed by what each event type can do."""

    def __init__(self, campaigns: Iterable[CompiledCampaign]) -> None:
        ordered = sorted((c for c in campaigns if c.active), key=lambda c: (c.priority, c.id))
        self.all: tuple[CompiledCampaign, ...] = tuple(ordered)
        self.by_id = {c.id: c for c in ordered}
        self.by_trigger: dict[str, list[CompiledCampaign]] = {}
        self.by_exit: dict[str, list[CompiledCampaign]] = {}
        self.by_goal: dict[str, list[CompiledCampaign]] = {}
        for c in ordered:
            if c.trigger_event:
                self.by_trigger.setdefault(c.trigger_event, []).append(c)
            for e in c.exit_events:
                self.by_exit.setdefault(e, []).append(c)
            if c.goal_event:
                self.by_goal.setdefault(c.goal_event, []).append(c)
        # What each event campaign's step conditions read of the triggering event's
        # data (see event_data_reads); campaigns whose conditions read none are absent.
        self.data_reads: dict[str, tuple[bool, frozenset[str]]] = {}
        for c in ordered:
            if c.trigger_kind == "event":
                reads = _step_data_reads(c)
                if reads[0] or reads[1]:
                    self.data_reads[c.id] = reads
        self.dated = tuple(c for c in ordered if c.trigger_kind == "date")
        self._live_through: dict[tuple[str, str, date], date | None] = {}
        self._year_ends: dict[str, str] = {}
        self._next_occurrence: dict[tuple[str, str, str, date, ZoneInfo],
                                    tuple[str, str, str] | None] = {}
        self.idle = tuple(c for c in ordered if c.trigger_kind == "idle")
        self.evented = tuple(c for c in ordered if c.trigger_kind == "event" and c.steps)
        # How long after its trigger an event enrollment's steps can still be pending
        # (not yet due): the longest delay, plus a day for an ``at`` time, six for
        # weekdays and one for quiet hours and DST (an upper bound, never reached).
        self.event_reach = {c.id: max(s.after.span for s in c.steps) + _REACH_SLACK
                            for c in self.evented}

    def get(self, campaign_id: str) -> CompiledCampaign | None:
        return self.by_id.get(campaign_id)

    def most_writes(self, event_type: str) -> int:
        """An upper bound of the items one event of this type writes at ingest: its
        marker and the profile; each triggered campaign's steps and stats item; the
        steps each exit cancels; each goal's stats item; and every date and idle
        campaign cancelled and planned again (a changed date, a new order); and the
        two retention counters a new order bumps (chalicelib.tracking.retention)."""
        steps = sum(len(c.steps) + 1 for c in self.by_trigger.get(event_type, ()))
        exits = sum(len(c.steps) for c in self.by_exit.get(event_type, ()))
        goals = len(self.by_goal.get(event_type, ()))
        yearly = sum(2 * len(c.steps) + 1 for c in (*self.dated, *self.idle))
        return 4 + steps + exits + goals + yearly

    def event_types(self) -> set[str]:
        """Every event type some campaign is triggered, exited or converted by."""
        return {*self.by_trigger, *self.by_exit, *self.by_goal}

    def live_through(self, campaign: CompiledCampaign, ref: str, day: date) -> date | None:
        """For a date campaign's recorded ``ref``, given the date the profile holds
        now (:func:`yearly_date`): None when the ref is of another date (the date
        changed), else the last local day the occurrence is live
        (:func:`_occurrence_last_day`).

        Memoised per campaign set: every event of a customer asks this for each date
        campaign, and the answer depends on these three values only."""
        key = (campaign.id, ref, day)
        found = self._live_through.get(key, _MISSING)
        if found is _MISSING:
            if len(self._live_through) >= _MEMO_MAX:
                self._live_through.clear()
            if ref.startswith(f"{campaign.date_field}:{day.isoformat()}:"):
                found = _occurrence_last_day(campaign, ref)
            else:
                found = None
            self._live_through[key] = found
        return found  # type: ignore[return-value]

    def year_end(self, ref: str) -> str:
        """The earliest time (ISO, UTC) a date campaign's occurrence after ``ref``'s can
        start: local midnight on 1 January of the next year in the easternmost zone
        (UTC+14). Before it an enrollment cannot have moved on (_roll_yearly)."""
        found = self._year_ends.get(ref)
        if found is None:
            if len(self._year_ends) >= _MEMO_MAX:
                self._year_ends.clear()
            found = self._year_ends[ref] = f"{ref[ref.rfind(':') + 1:]}-12-31T10:00:00Z"
        return found

    def next_occurrence(self, campaign: CompiledCampaign, ref: str, enrolled_at: str,
                        day: date, tz: ZoneInfo) -> tuple[str, str, str] | None:
        """The occurrence planned after the date campaign's occurrence ``ref`` (which
        started at ``enrolled_at``) when its last step is decided, as (ref, start, the
        time from which it is the customer's enrollment), times in ISO; memoised."""
        key = (campaign.id, ref, enrolled_at, day, tz)
        found = self._next_occurrence.get(key, _MISSING)
        if found is _MISSING:
            if len(self._next_occurrence) >= _MEMO_MAX:
                self._next_occurrence.clear()
            found = self._next_occurrence[key] = _next_occurrence(
                campaign, ref, enrolled_at, day, tz)
        return found  # type: ignore[return-value]


def _step_data_reads(campaign: CompiledCampaign) -> tuple[bool, frozenset[str]]:
    """What the campaign's step conditions read of the triggering event's data."""
    steps = campaign.definition.get("steps")
    keys: frozenset[str] = frozenset()
    for i, step in enumerate(campaign.steps):
        if step.condition is None:
            continue
        raw = steps[i] if isinstance(steps, Sequence) and i < len(steps) else None
        if not isinstance(raw, Mapping) or "condition" not in raw:
            return True, frozenset()  # compiled without its definition: keep it all
        whole, found = event_data_reads(raw["condition"])
        if whole:
            return True, frozenset()
        keys |= found
    return False, keys


def _kept_data(reads: tuple[bool, frozenset[str]], event: Mapping[str, Any],
               ) -> tuple[dict[str, Any] | None, int]:
    """The part of the event's ``data`` kept with an enrollment's steps, and its size
    as stored (compact JSON)."""
    whole, keys = reads
    data: dict[str, Any] = event.get("data") or {}
    if not whole:
        data = {k: data[k] for k in keys if k in data}
        if not data:
            return None, 0
    return data, len(json.dumps(data, separators=(",", ":")))


def order_snapshot(event: Mapping[str, Any]) -> dict[str, Any] | None:
    """What an enrollment keeps of its event's order for the messages: the fields
    templates read (``order.*``), nothing else the event carried."""
    order = event.get("order")
    if not order:
        return None
    keep = ("id", "total", "currency", "items", "category", "categories")
    return {k: order[k] for k in keep if k in order}


def plan_enrollment(campaign: CompiledCampaign, customer_id: str, ref: str, base: datetime,
                    tz_name: str | None, default_tz: str, event_id: str,
                    order: dict[str, Any] | None,
                    data: dict[str, Any] | None = None) -> list[PlannedStep]:
    """Every step of one enrollment, with its due time (deterministic ids)."""
    tz = zone(tz_name, default_tz)
    campaign_id = campaign.id
    holdout = keys.in_holdout(campaign_id, customer_id, campaign.holdout_percent)
    variant = keys.pick_variant(campaign_id, customer_id, campaign.variant_weights) \
        if campaign.variants else None
    enrolled_at = iso(base)
    base_local = base.astimezone(tz)  # once for all steps (see timing.plan_from_local)
    version = campaign.version
    # Positional arguments (in field order: customer_id, campaign_id,
    # campaign_version, step_id, ref, enrolled_at, due_at, holdout, variant,
    # event_id, order, data): this runs for every planned step.
    return [
        PlannedStep(customer_id, campaign_id, version, step.id, ref, enrolled_at,
                    plan_from_local(base_local, step, tz), holdout, variant, event_id, order,
                    data)
        for step in campaign.steps
    ]


def _cancel(campaign: CompiledCampaign, customer_id: str, ref: str, outcome: str,
            reason: str) -> list[Cancellation]:
    campaign_id = campaign.id
    return [Cancellation((customer_id, campaign_id, ref, s.id), outcome, reason)
            for s in campaign.steps]


def _record(profile: Profile, campaign: CompiledCampaign, planned: Sequence[PlannedStep],
            ref: str, **extra: Any) -> None:
    enrollments = dict(profile.get("enrollments") or {})
    previous = enrollments.get(campaign.id)
    refs = [*previous.get("refs", ()), ref] if previous else [ref]
    if len(refs) > MAX_REFS_KEPT:
        del refs[:-MAX_REFS_KEPT]
    first = planned[0]
    record = {"ref": ref, "at": first.enrolled_at, "holdout": first.holdout,
              "variant": first.variant, "refs": refs}
    if previous:
        # Older enrollments that exited stay exited: a second exit event for one
        # (another partial return of its order) is not a second exit.
        exited = [r for r in previous.get("exited_refs", ()) if r in refs]
        if previous.get("exited") and previous["ref"] in refs:
            exited.append(previous["ref"])
        if exited:
            record["exited_refs"] = exited
    if extra:
        record.update(extra)
    enrollments[campaign.id] = record
    profile["enrollments"] = enrollments


def _reentry_block(campaign: CompiledCampaign, enrollment: Mapping[str, Any] | None, ref: str,
                   at: str) -> str | None:
    if enrollment is None:
        return None
    policy = campaign.reentry_policy
    if policy == "once":
        return "already enrolled (reentry once)"
    if policy == "once_per_order" and ref in enrollment.get("refs", ()):
        return "already enrolled for this order"
    window = campaign.reentry_window
    if policy == "once_per_window" and window is not None \
            and parse_iso(enrollment["at"]) + window > parse_iso(at):
        return "enrolled within the reentry window"
    if policy == "always" and ref in enrollment.get("refs", ()):
        return "already enrolled for this event"
    return None


def _event_ref(campaign: CompiledCampaign, event: Mapping[str, Any]) -> str:
    if campaign.reentry_policy == "once":
        return "once"
    order = event.get("order")
    if campaign.reentry_policy == "once_per_order" and order:
        return f"order:{order['id']}"
    return f"event:{event['id']}"


def _goals_and_exits(result: EventResult, event: Mapping[str, Any], at: str,
                     campaigns: CampaignSet) -> None:
    profile = result.profile
    enrollments = profile.get("enrollments")
    if not enrollments:
        return
    etype = event["type"]
    goals = campaigns.by_goal.get(etype, ())
    exits = campaigns.by_exit.get(etype, ())
    if not goals and not exits:
        return
    # Copied on the first change only: the input profile's dict is never modified.
    changed = enrollments
    when: datetime | None = None
    order = event.get("order")
    if goals and order is not None and _cancelled_purchase(profile, etype, order["id"]):
        goals = ()  # a cancelled order is not a purchase (docs/events.md): no conversion
    for c in goals:
        e = enrollments.get(c.id)
        if not e or c.goal_within is None:
            continue
        # Before the recorded occurrence starts, an exited one's window may be open.
        previous = e.get("exited_occurrence") if e["at"] >= at else None
        counted = previous or e
        if counted.get("converted"):
            continue
        start = parse_iso(counted["at"])
        when = when or parse_iso(at)
        # Strictly after the enrollment, as exits: an event at its own instant (the
        # trigger's, whichever line comes first) does not convert it.
        if start < when <= start + c.goal_within:
            arm = "holdout" if counted.get("holdout") else "treatment"
            result.conversions.append(
                Conversion(c.id, arm, counted.get("variant"), counted["at"]))
            if changed is enrollments:
                changed = dict(enrollments)
            changed[c.id] = ({**e, "exited_occurrence": {**counted, "converted": at}}
                             if previous else {**e, "converted": at})
            result.rows.append(Row(profile["id"], c.id, "-", at, "converted", etype))
    for c in exits:
        e = changed.get(c.id)
        if not e:
            continue
        ref = _exited_ref(e, etype, order, at, c.trigger_event)
        if ref is None or ref in e.get("exited_refs", ()) or (
                ref == e["ref"] and e.get("exited")):
            continue  # no enrollment of this campaign to end, or it has ended already
        result.cancelled.extend(_cancel(c, profile["id"], ref, "exited", etype))
        if changed is enrollments:
            changed = dict(enrollments)
        if ref == e["ref"]:
            changed[c.id] = {**e, "exited": at}
        else:  # an older enrollment of the campaign (another order's)
            changed[c.id] = {**e, "exited_refs": [*e.get("exited_refs", ()), ref]}
        result.rows.append(Row(profile["id"], c.id, "-", at, "exited", etype))
    if changed is not enrollments:
        profile["enrollments"] = changed


def _exited_ref(enrollment: Mapping[str, Any], etype: str, order: Mapping[str, Any] | None,
                at: str, trigger_event: str | None) -> str | None:
    """The ref of the campaign's enrollment an exit event ends at ingest, if any."""
    ref: str = enrollment["ref"]
    if order_scoped(etype) and _enrollment_order(enrollment) is not None:
        # Only the enrollment made for this event's order exits (as at send time),
        # and not by an event of the trigger's type (a second parcel's delivery is
        # not the exit of the delivery that enrolled it: _exit_reason).
        if not order or etype == trigger_event:
            return None
        if ref.startswith("order:"):  # once_per_order: each order has its own ref
            ref = f"order:{order['id']}"
            return ref if ref in enrollment.get("refs", ()) else None
        # The latest enrollment is this order's, or the older one exits at send time.
        return ref if enrollment.get("order") == order["id"] else None
    # Only an event after the enrollment (one at the same instant, such as the
    # trigger itself, does not follow it).
    return None if enrollment["at"] >= at else ref


def _context(profile: Profile, event: Mapping[str, Any] | None, at: str) -> dict[str, Any]:
    return {"customer": profile, "event": event or {}, "now": at}


# Compiled audience -> whether its rule never reads `now` (then a date or idle
# audience is asked without computing the occurrence's clock).
_clock_free: dict[Any, bool] = {}


def _occurrence_now(campaign: CompiledCampaign, ref: str, start: str, tz: ZoneInfo) -> str:
    """The ``now`` a date or idle campaign's audience is asked at: as of its
    occurrence ``ref``, which starts at ``start`` (ISO, UTC; local midnight of the
    date, or the day the customer goes idle).

    That is the start, or midnight UTC of the occurrence's local date when that is
    later: east of UTC local midnight is still the day before in UTC, where the date
    operators (which count UTC dates) would read ``years_since`` one short on the
    18th birthday. The result stays on the customer's local date (offsets are under
    a day). For an idle spell it is also never before the idle duration has elapsed
    in real time: the spell counts whole days on the customer's calendar, and across
    a spring DST change 120 calendar days are an hour short of 120 elapsed days,
    where ``days_since`` of the last order reads 119. A date's local day is read from
    its ref (not from ``tz``), so a later move of timezone does not change it.
    """
    day: date | None = None
    now = start
    try:
        if campaign.trigger_kind == "date":
            d = parse_date(ref.split(":", 2)[1])
            if d is not None:
                day = anniversary(d, int(ref.rsplit(":", 1)[1]), campaign.leap_day)
        else:
            day = parse_iso(start).astimezone(tz).date()
            if campaign.idle_after is not None and ref.startswith("idle:"):
                now = max(now, iso(parse_iso(ref[5:]) + campaign.idle_after.span))
    except (ValueError, OverflowError, IndexError):
        pass  # a ref this release did not write: as of its start
    if day is not None:
        now = max(now, f"{day.isoformat()}T00:00:00Z")
    return now


def _audience_holds(campaign: CompiledCampaign, ref: str, start: str, profile: Profile,
                    tz: ZoneInfo) -> bool:
    """Whether a date or idle campaign's audience holds for the occurrence ``ref``
    (starting at ``start``), for ``profile`` as it is now: asked as of the occurrence
    (``now`` from :func:`_occurrence_now`, computed only for a rule that reads it),
    with no event. True without an audience."""
    audience = campaign.audience
    if audience is None:
        return True
    clock_free = _clock_free.get(audience)
    if clock_free is None:
        rule = campaign.definition.get("audience", _MISSING)
        clock_free = rule is not _MISSING and not reads_clock(rule)
        if len(_clock_free) >= _MEMO_MAX:
            _clock_free.clear()
        _clock_free[audience] = clock_free
    now = start if clock_free else _occurrence_now(campaign, ref, start, tz)
    return bool(audience(_context(profile, None, now)))


def _enroll_event(result: EventResult, event: Mapping[str, Any], at: datetime, stamp: str,
                  campaigns: CampaignSet, default_tz: str) -> None:
    triggered = campaigns.by_trigger.get(event["type"])
    if not triggered:
        return
    profile = result.profile
    cid = profile["id"]
    context: dict[str, Any] | None = None
    order: dict[str, Any] | None = None  # one snapshot, shared by the event's enrollments
    for c in triggered:
        ref = _event_ref(c, event)
        blocked = _reentry_block(c, (profile.get("enrollments") or {}).get(c.id), ref, stamp)
        if blocked:
            result.rows.append(Row(cid, c.id, "-", stamp, "skipped", blocked))
            continue
        if c.audience is not None:
            context = context or _context(profile, event, stamp)
            if not c.audience(context):
                result.rows.append(Row(cid, c.id, "-", stamp, "skipped", "audience rule false"))
                continue
        data: dict[str, Any] | None = None
        reads = campaigns.data_reads.get(c.id) if campaigns.data_reads else None
        if reads is not None:  # its step conditions read event.data: keep that part
            data, size = _kept_data(reads, event)
            if size > MAX_STEP_DATA_BYTES:
                result.rows.append(Row(
                    cid, c.id, "-", stamp, "skipped",
                    f"event data read by step conditions is {size} bytes, over the "
                    f"{MAX_STEP_DATA_BYTES} kept with a step"))
                continue
        if order is None:
            order = order_snapshot(event)
        planned = plan_enrollment(c, cid, ref, at, profile.get("timezone"), default_tz,
                                  event["id"], order, data)
        if order:  # the enrollment is this order's: order-scoped exits end only it
            _record(profile, c, planned, ref, order=order["id"])
        else:
            _record(profile, c, planned, ref)
        result.planned.extend(planned)
        result.rows.append(Row(cid, c.id, "-", stamp, "enrolled",
                               "holdout group" if planned[0].holdout else ""))
        if c.goal_event is not None:
            _goal_seen_before(result, c, planned[0], at)


def _cancelled_purchase(profile: Profile, event_type: str, order_id: str) -> bool:
    """Whether an event is a purchase event (an order placed or delivered) of an order
    the profile knows is cancelled: not a purchase, so it converts no goal."""
    if event_type != "order.placed" and event_type != "order.delivered":
        return False
    record = (profile.get("orders") or {}).get(order_id)
    return record is not None and "cancelled" in record


def _goal_seen_before(result: EventResult, c: CompiledCampaign, first: PlannedStep,
                      at: datetime) -> None:
    """A late trigger's enrollment converts at once when its goal event, within the
    window after it, was processed before it (events arrive out of order): as the
    goal would have converted it had the trigger come first. The profile keeps the
    latest event of each type, and each order's own events: a goal seen more than
    once after the enrollment converts it if the latest (or, for an order event,
    any order's) is in the window.

    A cancelled order is not a purchase: for an ``order.placed`` or
    ``order.delivered`` goal its events do not count. When the latest such event is
    (at the time of) a cancelled order's, the times of the orders not cancelled
    stand in for it (an order's time is when it was placed, or first seen)."""
    goal = c.goal_event
    assert goal is not None and c.goal_within is not None
    profile = result.profile
    start = first.enrolled_at
    end = iso(at + c.goal_within)
    latest = (profile.get("last_events") or {}).get(goal)
    seen = [latest]
    orders = (profile.get("orders") or {}).values()
    purchase = goal == "order.placed" or goal == "order.delivered"
    if order_scoped(goal):
        seen += [(o.get("events") or {}).get(goal) for o in orders
                 if not purchase or "cancelled" not in o]
    if purchase and latest is not None and any(
            "cancelled" in o and latest in (o.get("at"), (o.get("events") or {}).get(goal))
            for o in orders):
        seen[0] = None  # the latest is (at the same time as) a cancelled order's
        if goal == "order.placed":
            seen += [o.get("at") for o in orders if "cancelled" not in o]
    hits = [t for t in seen if t is not None and start < t <= end]
    if not hits:
        return
    when = min(hits)
    arm = "holdout" if first.holdout else "treatment"
    result.conversions.append(Conversion(c.id, arm, first.variant, start))
    enrollments = dict(profile["enrollments"])
    enrollments[c.id] = {**enrollments[c.id], "converted": when}
    profile["enrollments"] = enrollments
    result.rows.append(Row(profile["id"], c.id, "-", when, "converted", goal))


def _date_occurrence(c: CompiledCampaign, profile: Profile, today_local: datetime,
                     after_year: int | None = None) -> tuple[str, datetime] | None:
    assert c.date_field is not None
    tz = today_local.tzinfo
    assert tz is not None
    d = yearly_date(profile.get(c.date_field), tz)
    if d is None:
        return None
    return _occurrence_of(c, d, today_local, after_year)


def _occurrence_of(c: CompiledCampaign, d: date, today_local: datetime,
                   after_year: int | None = None) -> tuple[str, datetime] | None:
    """The ref and local-midnight start of the first occurrence of date ``d`` on or
    after ``today_local``'s date (and after ``after_year``, when given)."""
    tz = today_local.tzinfo
    offset = 1 if c.date_field != "birthday" else 0
    today = today_local.date()
    if max(today.year, after_year or 0, d.year + offset) >= _LAST_PLANNED_YEAR:
        # The calendar ends at 9999: nothing is planned this far out (a placeholder
        # date such as 9999-12-31 has no occurrence whose steps fit before then).
        return None
    if after_year is not None:
        today = max(today, today.replace(year=after_year + 1, month=1, day=1))
    occurrence = next_anniversary(d, today, c.leap_day, first_year_offset=offset)
    if occurrence.year >= _LAST_PLANNED_YEAR:
        return None
    base = local_time(occurrence, time(0, 0), tz)  # type: ignore[arg-type]
    return f"{c.date_field}:{d.isoformat()}:{occurrence.year}", base


def _occurrence_last_day(c: CompiledCampaign, ref: str) -> date:
    """The last local day the yearly occurrence ``ref`` is live: past that day its
    last step and its goal window are over. Normally the decision on its last step
    plans the next year; when that decision never came (an exit cancelled the
    steps, the campaign was paused), the next event after this day plans it instead.
    ``date.max`` when the ref names no usable date (it is then never over)."""
    d = parse_date(ref.split(":", 2)[1])
    if d is None:
        return date.max
    year = int(ref.rsplit(":", 1)[1])
    span = max(s.after.span for s in c.steps) + (c.goal_within or timedelta(0)) + timedelta(days=1)
    try:
        return anniversary(d, year, c.leap_day) + span
    except (ValueError, OverflowError):  # beyond the calendar: never over
        return date.max


def _next_occurrence(c: CompiledCampaign, ref: str, enrolled_at: str, day: date,
                     tz: ZoneInfo) -> tuple[str, str, str] | None:
    """See :meth:`CampaignSet.next_occurrence`: what :func:`_follow_ups` plans when
    the last step of ``ref`` (due as planned from ``enrolled_at``) is decided. That
    occurrence is the enrollment from its start, once that last step was due."""
    last_due = plan_from_local(parse_iso(enrolled_at).astimezone(tz), c.steps[-1], tz)
    found = _occurrence_of(c, day, last_due.astimezone(tz),
                           after_year=int(ref.rsplit(":", 1)[1]))
    if found is None:
        return None
    next_ref, base = found
    return next_ref, iso(base), iso(max(base, last_due))


def _roll_yearly(result: EventResult, before: Profile, stamp: str, campaigns: CampaignSet,
                 default_tz: str) -> None:
    """Record the yearly occurrence the customer is in at ``stamp`` as the enrollment.

    A date campaign's next occurrence is planned when the last step of the current
    one is decided (decide_step's follow-ups), where no profile is written, so the
    recorded enrollment still names an older occurrence. Before the event's goals and
    exits are counted it moves along that chain to the latest occurrence that has
    started (and whose predecessor's last step was due), computed as the follow-ups
    were, from the profile before this event. An exited enrollment does not move:
    its next occurrence was planned at once, and recorded (see _enroll_dated)."""
    profile = result.profile
    enrollments = profile.get("enrollments")
    if not enrollments:
        return
    changed = enrollments
    tz: ZoneInfo | None = None
    for c in campaigns.dated:
        e = changed.get(c.id)
        if e is None or stamp < campaigns.year_end(e["ref"]) or e.get("exited"):
            continue  # most events: no later occurrence can have started
        if tz is None:
            tz = zone(before.get("timezone"), default_tz)
        rolled = _rolled_enrollment(c, e, profile["id"], before, stamp, campaigns, tz)
        if rolled is not e:
            if changed is enrollments:
                changed = dict(enrollments)
            changed[c.id] = rolled
    if changed is not enrollments:
        profile["enrollments"] = changed


def _rolled_enrollment(c: CompiledCampaign, e: Mapping[str, Any], customer_id: str,
                       before: Profile, stamp: str, campaigns: CampaignSet,
                       tz: ZoneInfo) -> Mapping[str, Any]:
    day = yearly_date(before.get(c.date_field or ""), tz)
    if day is None or campaigns.live_through(c, e["ref"], day) is None:
        return e  # not this date's occurrence (the date changed): no chain to follow
    current = e
    while (found := campaigns.next_occurrence(c, current["ref"], current["at"], day, tz)) \
            is not None and found[2] <= stamp:
        ref, start, _ = found
        refs = [*current.get("refs", ()), ref][-MAX_REFS_KEPT:]
        # As plan_enrollment assigns them to the follow-up's steps.
        holdout = keys.in_holdout(c.id, customer_id, c.holdout_percent)
        variant = keys.pick_variant(c.id, customer_id, c.variant_weights) \
            if c.variants else None
        current = {"ref": ref, "at": start, "holdout": holdout, "variant": variant,
                   "refs": refs}
    return current


def _enroll_dated(result: EventResult, at: datetime, stamp: str, campaigns: CampaignSet,
                  default_tz: str, before: Profile | None = None) -> None:
    """Plan each date campaign's next occurrence when it is not planned yet.

    Its audience is asked as of the occurrence (:func:`_audience_holds`) with the
    profile as it is after this event; when false nothing is planned, and every later
    event asks again (and plans it once true): the verdict of the last event before
    the occurrence is the profile's at the occurrence. The ``skipped`` row is left by
    the event that makes the date known or changes it (or a backfill: ``before`` is
    None), not by every event that asks again. Its steps ask again when decided."""
    profile = result.profile
    enrollments = profile.get("enrollments") or {}
    tz = zone(profile.get("timezone"), default_tz)
    local: datetime | None = None
    for c in campaigns.dated:
        value = profile.get(c.date_field or "")
        if not value:
            continue
        if local is None:
            local = at.astimezone(tz)
        current = enrollments.get(c.id)
        after_year: int | None = None
        if current is not None and (day := yearly_date(value, tz)) is not None:
            last_day = campaigns.live_through(c, current["ref"], day)
            if last_day is not None and local.date() <= last_day:
                if not current.get("exited"):
                    continue  # planned already; later years are planned as each is decided
                # This year's occurrence was exited (its steps cancelled, so no decision
                # on its last step will plan the next): plan next year's now.
                after_year = int(current["ref"].rsplit(":", 1)[1])
        # Twice at most: an occurrence planned late that an exit event has already
        # ended is recorded exited, and the next year's is planned at once (it starts
        # after this event, so it is not late).
        for _ in range(2):
            found = _date_occurrence(c, profile, local, after_year)
            if found is None:
                break
            ref, base = found
            # The audience is asked as of the occurrence (the enrollment's start): "18
            # or older" is true on the 18th birthday, not only when the date became known.
            if c.audience is not None and not _audience_holds(c, ref, iso(base), profile, tz):
                if before is None or before.get(c.date_field or "") != value:
                    result.rows.append(
                        Row(profile["id"], c.id, "-", stamp, "skipped", "audience rule false"))
                break
            if current is not None \
                    and current["ref"].rsplit(":", 1)[0] != ref.rsplit(":", 1)[0]:
                result.cancelled.extend(
                    _cancel(c, profile["id"], current["ref"], "cancelled", "date changed"))
            planned = plan_enrollment(c, profile["id"], ref, base, profile.get("timezone"),
                                      default_tz, f"date:{ref}", None)
            extra = {}
            if after_year is not None and current is not None and c.goal_within is not None \
                    and not current.get("converted"):
                # The exited occurrence's goal window is still open: kept, as an exited
                # event enrollment converts (intent to treat) until the next one starts.
                extra["exited_occurrence"] = {k: current.get(k)
                                              for k in ("ref", "at", "holdout", "variant")}
            # An occurrence planned before (its date changed and changed back) is
            # planned again as it was: its goals and exits were counted then.
            planned_before = current is not None and ref in current.get("refs", ())
            _record(profile, c, planned, ref, **extra)
            result.rows.append(Row(profile["id"], c.id, "-", stamp, "planned", ref))
            if planned_before or planned[0].enrolled_at >= stamp \
                    or not _started_late(result, c, planned[0], base, stamp):
                result.planned.extend(planned)
                break
            result.ended.append(planned[0])
            current = profile["enrollments"][c.id]
            after_year = int(ref.rsplit(":", 1)[1])


def _started_late(result: EventResult, c: CompiledCampaign, first: PlannedStep,
                  base: datetime, stamp: str) -> bool:
    """A date occurrence planned after it started (the date became known, or the
    campaign went live, later that day): the goal and exit events the profile holds
    since its start (processed before this event, whatever their time) count as they
    would have had it been planned in time, as its steps' exit check at send time
    counts them. A goal converts it; an exit event ends it here (returns True: its
    steps are not planned, its record says ``exited`` and an ``exited`` row is
    left), where otherwise each of its steps would be decided ``exited`` one by one
    and the next year planned only when the last one is decided."""
    if c.goal_event is not None:
        _goal_seen_before(result, c, first, base)
    last_events = result.profile.get("last_events") or {}
    start = first.enrolled_at
    # Date enrollments are not made for an order: any exit event after the start
    # ends them, as at ingest and at send time (_exit_reason, whose reason is the
    # first such type in the campaign's order, as here).
    reason = next((etype for etype in c.exit_events
                   if (t := last_events.get(etype)) is not None and start < t), None)
    if reason is None:
        return False
    profile = result.profile
    enrollments = dict(profile["enrollments"])
    enrollments[c.id] = {**enrollments[c.id], "exited": stamp}
    profile["enrollments"] = enrollments
    result.rows.append(Row(profile["id"], c.id, "-", stamp, "exited", reason))
    return True


def _enroll_idle(result: EventResult, before: Profile, stamp: str, campaigns: CampaignSet,
                 default_tz: str) -> None:
    """Plan the idle spell a new last order starts (cancelling the previous one).

    Its audience is asked as of the day the customer goes idle (:func:`_audience_holds`)
    with the profile as it is after this event: when false nothing is planned (row
    ``skipped``), and each later event before that day asks again and plans the spell
    once true, so the verdict of the last event before the idle day, the profile's
    then, counts. Its steps ask again when decided."""
    profile = result.profile
    last = profile.get("last_order_at")
    if not last:
        return
    new_spell = last != before.get("last_order_at")
    ref = ""
    tz: ZoneInfo | None = None
    for c in campaigns.idle:
        assert c.idle_after is not None
        if not new_spell and c.audience is None:
            continue  # planned by the order that started the spell, unasked
        current = (profile.get("enrollments") or {}).get(c.id)
        ref = ref or f"idle:{last}"
        if current is not None and current["ref"] == ref:
            continue  # this idle spell is planned already
        if new_spell and current is not None:
            result.cancelled.extend(
                _cancel(c, profile["id"], current["ref"], "cancelled",
                        _spell_change(current["ref"], last)))
        # Whole days of idleness count on the customer's calendar, as step delays do.
        tz = tz or zone(profile.get("timezone"), default_tz)
        base = add_local(parse_iso(last), c.idle_after, tz).astimezone(UTC)
        start = iso(base)
        if not new_spell and start <= stamp:
            continue  # the spell has started: its audience was asked as of then
        # The audience is asked as of the day the customer goes idle (the enrollment's
        # start), so "days_since(last order) >= 120" reads 120 there.
        if not _audience_holds(c, ref, start, profile, tz):
            if new_spell:
                result.rows.append(
                    Row(profile["id"], c.id, "-", stamp, "skipped", "audience rule false"))
            continue
        planned = plan_enrollment(c, profile["id"], ref, base, profile.get("timezone"),
                                  default_tz, ref, None)
        _record(profile, c, planned, ref)
        result.planned.extend(planned)
        result.rows.append(Row(profile["id"], c.id, "-", stamp, "planned", ref))


def process_event(event: Mapping[str, Any], profile: Profile | None, campaigns: CampaignSet,
                  default_tz: str = "America/New_York",
                  dates_as_of: datetime | None = None) -> EventResult:
    """Everything one (parsed, not yet seen) event changes.

    Order matters and is fixed: fold the event into the profile, count goals and
    apply exits of earlier enrollments, then enroll (so an event never converts or
    exits the enrollment it creates itself).

    ``dates_as_of``: plan date campaigns' occurrences as of this time when it is
    later than the event's (history loaded by ``aftercare import``: a birthday
    imported from a 2024 row is next year's, as a backfill plans it, never the 2024
    one, 2025's and this year's sent late one after another). Live events plan as of
    their own time, and ``expire_after`` judges how late a step may still go.
    """
    at: datetime = event["_at"]
    dates_at = at if dates_as_of is None or dates_as_of <= at else dates_as_of
    stamp = iso(at)
    before = profile if profile is not None else new_profile(event["customer"]["id"])
    result = EventResult(profile=apply_event(before, event, at))
    if campaigns.dated:
        _roll_yearly(result, before, stamp, campaigns, default_tz)
    _goals_and_exits(result, event, stamp, campaigns)
    _enroll_event(result, event, at, stamp, campaigns, default_tz)
    if campaigns.dated:
        _enroll_dated(result, dates_at, stamp, campaigns, default_tz, before)
        if result.profile.get("timezone") != before.get("timezone"):
            _move_dated(result, before, dates_at, campaigns, default_tz)
    if campaigns.idle:
        _enroll_idle(result, before, stamp, campaigns, default_tz)
        # A spell planned before this event is in ``before``'s records (a customer's
        # first event, which sets their timezone, has none to move).
        if result.profile.get("timezone") != before.get("timezone") \
                and before.get("enrollments"):
            _move_idle(result, before, at, campaigns, default_tz)
    if result.cancelled:
        _one_operation_per_step(result)
    return result


def _one_operation_per_step(result: EventResult) -> None:
    """A step is cancelled once (first reason wins), and never both planned and
    cancelled: the store writes one operation per schedule item."""
    planned = {s.key for s in result.planned}
    seen: set[StepKey] = set()
    unique = []
    for c in result.cancelled:
        if c.key not in seen and c.key not in planned:
            seen.add(c.key)
            unique.append(c)
    result.cancelled = unique


def _move_dated(result: EventResult, before: Profile, at: datetime, campaigns: CampaignSet,
                default_tz: str) -> None:
    """A customer whose timezone changed keeps their yearly dates in the new zone.

    For each date campaign, the steps of the recorded occurrence, and of the next one
    when it was planned (by the decision on the last step), that were not due yet are
    planned again from local midnight of the date in the new zone, with the same keys
    (``result.moved``), and the recorded enrollment starts there. Steps already due
    (decided, or deferred and waiting) are decided as they are. An occurrence whose
    date changed with the zone (a purchase's local date) was cancelled and planned
    again by _enroll_dated."""
    profile = result.profile
    enrollments = profile.get("enrollments")
    zones = _zone_move(before, profile, default_tz)
    if not enrollments or zones is None:
        return
    old_tz, new_tz = zones
    # A campaign _enroll_dated planned for in this event is planned in the new zone,
    # and has no later occurrence planned yet.
    planned = {s.campaign_id for s in result.planned}
    changed = enrollments
    for c in campaigns.dated:
        e = changed.get(c.id)
        if e is None or e.get("exited") or c.id in planned:
            continue  # an exit cancelled its steps (and planned the next year's anew)
        day = yearly_date(profile.get(c.date_field or ""), new_tz)
        if day is None or campaigns.live_through(c, e["ref"], day) is None:
            continue  # not this date's occurrence: _enroll_dated re-planned it, or not
        ref, start = e["ref"], e["at"]
        moved = _moved_date_steps(c, profile, ref, start, old_tz, new_tz, at, default_tz)
        if moved:
            if changed is enrollments:
                changed = dict(enrollments)
            changed[c.id] = {**e, "at": moved[0].enrolled_at}
        last_due = plan_from_local(parse_iso(start).astimezone(old_tz), c.steps[-1], old_tz)
        if last_due <= at:  # the next occurrence was planned when that step was decided
            found = campaigns.next_occurrence(c, ref, start, day, old_tz)
            if found is not None:
                moved += _moved_date_steps(c, profile, found[0], found[1], old_tz, new_tz,
                                           at, default_tz)
        result.moved.extend(moved)
    if changed is not enrollments:
        profile["enrollments"] = changed


def _moved_date_steps(c: CompiledCampaign, profile: Profile, ref: str, start: str,
                      old_tz: ZoneInfo, new_tz: ZoneInfo, at: datetime,
                      default_tz: str) -> list[PlannedStep]:
    """The steps of the date campaign's occurrence ``ref`` (planned from ``start`` in
    ``old_tz``) not due by ``at``, planned from the occurrence's start in ``new_tz``
    (local midnight of the date there); those whose time does not change are left
    out."""
    d = parse_date(ref.split(":", 2)[1])
    if d is None:
        return []
    try:
        base = local_time(anniversary(d, int(ref.rsplit(":", 1)[1]), c.leap_day), time(0, 0),
                          new_tz)
    except (ValueError, OverflowError):
        return []  # a ref this release did not write, or beyond the calendar
    return _moved_steps(c, profile, ref, start, base, old_tz, at, default_tz, f"date:{ref}")


def _zone_move(before: Profile, profile: Profile,
               default_tz: str) -> tuple[ZoneInfo, ZoneInfo] | None:
    """(old zone, new zone) when an event changed the customer's resolved zone."""
    old_tz = zone(before.get("timezone"), default_tz)
    new_tz = zone(profile.get("timezone"), default_tz)
    return None if old_tz == new_tz else (old_tz, new_tz)


def _move_idle(result: EventResult, before: Profile, at: datetime, campaigns: CampaignSet,
               default_tz: str) -> None:
    """A customer whose timezone changed has the pending steps of their idle spell
    planned again in the new zone, from the same start (the instant they went idle,
    as the enrollment record holds it): a ``10:30`` step goes out at 10:30 there.

    Only the recorded spell of the current last order can have pending steps: one
    this event planned (a new order) is planned in the new zone already, an exited
    one was cancelled, and one of another order was cancelled when its order was
    superseded. The steps are rebuilt from the record and the step definitions as
    :func:`_enroll_idle` planned them (an idle step keeps no event, order or data)."""
    profile = result.profile
    enrollments = profile.get("enrollments")
    zones = _zone_move(before, profile, default_tz)
    if not enrollments or zones is None:
        return
    old_tz = zones[0]
    spell = f"idle:{profile.get('last_order_at')}"
    planned = {s.campaign_id for s in result.planned}
    for c in campaigns.idle:
        e = enrollments.get(c.id)
        if e is None or e["ref"] != spell or e.get("exited") or c.id in planned:
            continue
        start = e["at"]
        result.moved.extend(_moved_steps(c, profile, spell, start, parse_iso(start), old_tz,
                                         at, default_tz, spell))


def _moved_steps(c: CompiledCampaign, profile: Profile, ref: str, start: str,
                 base: datetime, old_tz: ZoneInfo, at: datetime, default_tz: str,
                 event_id: str) -> list[PlannedStep]:
    """The steps of the enrollment ``ref`` (planned from ``start`` in ``old_tz``) not
    due by ``at``, planned again from ``base`` in the profile's zone now; those whose
    plan does not change are left out.

    Every step is planned again, whatever it is timed by: an ``at`` time, weekdays and
    whole days of delay count on the new zone's calendar. A delay in hours and minutes
    is elapsed time, the same instant in any zone; only the quiet hours it may have
    been moved out of are the new zone's, so it moves only when its instant is in
    quiet hours in one zone and not in the other.

    A step whose new time has passed already (10:30 in the new zone was earlier today)
    is due at the move, ``at``: it was not late, so ``expire_after`` counts from then."""
    old_base = parse_iso(start).astimezone(old_tz)
    steps = plan_enrollment(c, profile["id"], ref, base, profile.get("timezone"), default_tz,
                            event_id, None)
    moved = []
    for step, compiled in zip(steps, c.steps, strict=True):
        old_due = plan_from_local(old_base, compiled, old_tz)
        if old_due > at and (step.due_at != old_due or step.enrolled_at != start):
            if step.due_at < at:
                step.due_at = at
            moved.append(step)
    return moved


def event_steps_to_move(result: EventResult, before: Profile | None, at: datetime,
                        campaigns: CampaignSet,
                        default_tz: str = "America/New_York") -> list[StepKey]:
    """The keys of the event enrollments' steps that may still be pending when this
    event changed the customer's zone (empty when it did not: the common path, one
    comparison): what the caller looks up in its schedule and gives to
    :func:`move_event_steps`.

    An event step keeps what the profile does not (its order snapshot, the event
    data its conditions read, the event id), so it is planned again from the step as
    stored, not rebuilt; and the profile records only the latest enrollment of each
    campaign, so the keys come from every ref it kept (``refs``, at most
    ``MAX_REFS_KEPT``) times the campaign's steps. A campaign whose latest trigger
    (``last_events``, the latest whatever the order events came in) is too long ago
    for any of its steps to be pending (:attr:`CampaignSet.event_reach`) has none to
    read. Enrollments this event made are planned in the new zone already, and steps
    it cancelled or planned are left out (one operation per schedule item)."""
    if before is None or not campaigns.evented \
            or result.profile.get("timezone") == before.get("timezone"):
        return []
    enrollments = before.get("enrollments")
    if not enrollments or _zone_move(before, result.profile, default_tz) is None:
        return []
    last_events = before.get("last_events") or {}
    customer_id = result.profile["id"]
    wanted: list[StepKey] = []
    for c in campaigns.evented:
        e = enrollments.get(c.id)
        if e is None:
            continue
        last = last_events.get(c.trigger_event or "")
        if last is not None and parse_iso(last) + campaigns.event_reach[c.id] <= at:
            continue  # every step of every enrollment was due before the move
        for ref in e.get("refs") or (e["ref"],):
            wanted.extend((customer_id, c.id, ref, s.id) for s in c.steps)
    if wanted and (result.planned or result.cancelled):
        taken = {s.key for s in result.planned} | {x.key for x in result.cancelled}
        wanted = [k for k in wanted if k not in taken]
    return wanted


def move_event_steps(result: EventResult, before: Profile | None, at: datetime,
                     stored: Iterable[PlannedStep], campaigns: CampaignSet,
                     default_tz: str = "America/New_York") -> list[PlannedStep]:
    """The customer's pending event steps ``stored`` (as their schedule holds them,
    looked up by :func:`event_steps_to_move`) planned again in the zone this event
    moved them to, with the same keys; those whose time does not change are left
    out.

    Each keeps its enrollment (``enrolled_at``, holdout, variant), order snapshot,
    event data and event id; its due time is planned again from the enrollment's
    instant in the new zone, as :func:`_moved_steps` plans date and idle steps: an
    ``at`` time, weekdays and whole days of delay count on the new zone's calendar, a
    delay in hours and minutes keeps its instant (only the quiet hours around it are
    the new zone's), and a time already passed at the move is due at the move, not
    late for ``expire_after``. Only steps not yet due at the move change: one due by
    then, or deferred once already (it was due), is decided as it is."""
    if before is None:
        return []
    zones = _zone_move(before, result.profile, default_tz)
    if zones is None:
        return []
    new_tz = zones[1]
    customer_id = result.profile["id"]
    moved = []
    for step in stored:
        if step.due_at <= at or step.deferred_for or step.customer_id != customer_id:
            continue
        c = campaigns.get(step.campaign_id)
        compiled = c.step(step.step_id) if c is not None and c.trigger_kind == "event" \
            else None
        if compiled is None:
            continue  # no longer an active event campaign's step: decided as it is
        due = plan_from_local(parse_iso(step.enrolled_at).astimezone(new_tz), compiled, new_tz)
        if due < at:
            due = at
        if due != step.due_at:
            moved.append(replace(step, due_at=due))
    return moved


def backfill_profile(profile: Profile, campaigns: CampaignSet, now: datetime,
                     default_tz: str = "America/New_York") -> EventResult:
    """Plan the date and idle campaigns for a customer already known (no event).

    Used when such a campaign goes live after the customers were imported: the
    same planning an event would do, so planning twice is a no-op.
    """
    result = EventResult(profile=dict(profile))
    stamp = iso(now)
    if campaigns.dated:
        _roll_yearly(result, profile, stamp, campaigns, default_tz)
        _enroll_dated(result, now, stamp, campaigns, default_tz)
    if campaigns.idle:
        _enroll_idle(result, {}, stamp, campaigns, default_tz)
    return result


def _enrollment_order(enrollment: Mapping[str, Any]) -> str | None:
    """The order an enrollment was made for (None: not made for an order)."""
    order_id = enrollment.get("order")
    if order_id is None and enrollment["ref"].startswith("order:"):
        return str(enrollment["ref"][6:])  # recorded before "order" was kept
    return order_id


def _exit_reason(campaign: CompiledCampaign, step: PlannedStep, profile: Profile,
                 now: datetime) -> str | None:
    last_events = profile.get("last_events") or {}
    if step.order and step.order.get("id") is not None:
        order_id: str | None = str(step.order["id"])
    else:
        order_id = step.ref[6:] if step.ref.startswith("order:") else None
    for etype in campaign.exit_events:
        if order_id is not None and order_scoped(etype):
            if etype == campaign.trigger_event:
                # The order's own event of this type is the trigger that enrolled it
                # (the first of each type is kept): the trigger does not exit its
                # own enrollment (docs/campaigns.md).
                continue
            # Only an event of this enrollment's own order exits it, whenever it came
            # (a return logged before the delivery that enrolled it counts too).
            order = (profile.get("orders") or {}).get(order_id) or {}
            if etype in (order.get("events") or ()) or (
                    etype == "order.returned" and order.get("returned")):
                return etype
            continue
        seen = last_events.get(etype)
        if seen is not None and seen > step.enrolled_at:  # after it, as at ingest
            return etype
    if campaign.exit_rule is not None and campaign.exit_rule(_context(profile, None, iso(now))):
        return "exit rule"
    return None


def _spell_change(ref: str, last_order_at: str | None) -> str:
    """Why an idle spell (``ref`` = ``idle:<its last order time>``) ended: a newer order,
    or the cancellation of the order it counted from (docs/events.md)."""
    if last_order_at and last_order_at > ref[5:]:
        return "ordered again"
    return "order cancelled"


def _stale_reason(campaign: CompiledCampaign, step: PlannedStep, profile: Profile,
                  default_tz: str) -> str | None:
    if campaign.trigger_kind == "idle":
        last = profile.get("last_order_at")
        if step.ref != f"idle:{last}":
            return _spell_change(step.ref, last)
    if campaign.trigger_kind == "date":
        d = yearly_date(profile.get(campaign.date_field or ""),
                        zone(profile.get("timezone"), default_tz))
        if d is None or not step.ref.startswith(f"{campaign.date_field}:{d.isoformat()}:"):
            return "date changed"
    return None


def _consent_block(channel: str, profile: Profile) -> str | None:
    address = profile.get(CONTACT_FIELD[channel])
    if not address:
        return f"no {CONTACT_FIELD[channel]}"
    record = (profile.get("consent") or {}).get(channel)
    if record is not None and not record.get("granted"):
        return f"{channel} consent withdrawn"
    if channel == "sms" and record is None:
        return "no sms consent on record"
    return None


def _follow_ups(campaign: CompiledCampaign, step: PlannedStep, profile: Profile,
                default_tz: str) -> list[PlannedStep]:
    """Next year's occurrence, planned when this year's last step is decided."""
    if campaign.trigger_kind != "date" or step.step_id != campaign.steps[-1].id:
        return []
    return _next_year(campaign, step, profile, default_tz)


def _next_year(campaign: CompiledCampaign, step: PlannedStep, profile: Profile,
               default_tz: str) -> list[PlannedStep]:
    """The steps of the occurrence after ``step``'s (a date campaign)."""
    year = int(step.ref.rsplit(":", 1)[1])
    tz = zone(profile.get("timezone"), default_tz)
    # The same computation as _rolled_enrollment's, which records this occurrence as
    # the enrollment once it has started.
    found = _date_occurrence(campaign, profile, step.due_at.astimezone(tz), after_year=year)
    if found is None:
        return []
    ref, base = found
    return plan_enrollment(campaign, profile["id"], ref, base, profile.get("timezone"),
                           default_tz, f"date:{ref}", None)


def decide_step(step: PlannedStep, profile: Profile | None, campaign: CompiledCampaign | None,
                now: datetime, default_tz: str = "America/New_York", *,
                paused: CompiledCampaign | None = None) -> StepDecision:
    """Whether a due step is sent now, and if not, why. Checked at send time.

    ``campaign`` is the live version (None when the campaign is not live), ``paused``
    the current version of a campaign not live because it is paused: a date
    campaign's step is cancelled, but its occurrence goes on (its later steps, then
    next year's), each cancelled in turn while the pause lasts, so that resuming
    the campaign finds every customer's yearly chain."""
    if campaign is None:
        stopped = StepDecision("cancelled", "campaign not active")
        if paused is not None and paused.trigger_kind == "date" and profile is not None \
                and not _stale_reason(paused, step, profile, default_tz):
            stopped.follow_ups = (
                _follow_ups(paused, step, profile, default_tz)
                if step.campaign_version == paused.version and paused.step(step.step_id)
                else _new_version_steps(paused, step, profile, default_tz))
        return stopped
    compiled_step = campaign.step(step.step_id)
    if compiled_step is None:
        removed = StepDecision("cancelled", "step removed from campaign")
        if profile is not None and campaign.trigger_kind == "date" \
                and not _stale_reason(campaign, step, profile, default_tz):
            removed.follow_ups = _new_version_steps(campaign, step, profile, default_tz)
        return removed
    if profile is None:
        return StepDecision("cancelled", "customer unknown")
    decision = _decide(step, compiled_step, profile, campaign, now, default_tz)
    decision.channel = compiled_step.channel
    if campaign.trigger_kind == "date" and decision.outcome != "deferred":
        # (A cancelled step's occurrence is over: its date changed.)
        if step.campaign_version != campaign.version and decision.outcome != "cancelled":
            decision.follow_ups = _new_version_steps(campaign, step, profile, default_tz)
        else:
            decision.follow_ups = _follow_ups(campaign, step, profile, default_tz)
    return decision


def _new_version_steps(campaign: CompiledCampaign, step: PlannedStep, profile: Profile,
                       default_tz: str) -> list[PlannedStep]:
    """A yearly occurrence planned under an older version of its date campaign goes on
    under the current one: the current version's steps of the same occurrence due
    from this step's planned time on (a renamed step takes the old one's place, an
    added one is planned), or, when the new version has none left, next year's
    occurrence, as the decision on a last step plans it. So every customer planned
    under the old version keeps a yearly chain. Steps planned already keep their plan
    (planning is idempotent by key)."""
    planned = plan_enrollment(campaign, profile["id"], step.ref, parse_iso(step.enrolled_at),
                              profile.get("timezone"), default_tz, step.event_id,
                              step.order, step.data)
    # ``due_at`` is the planned time: a deferral adds to ``deferred_for`` only.
    rest = [s for s in planned if s.step_id != step.step_id and s.due_at >= step.due_at]
    if step.step_id == campaign.steps[-1].id or not rest:
        rest += _next_year(campaign, step, profile, default_tz)
    return rest


def _decide(step: PlannedStep, compiled_step: CompiledStep, profile: Profile,
            campaign: CompiledCampaign, now: datetime, default_tz: str) -> StepDecision:
    channel = compiled_step.channel
    # Lateness: since the step was due, less the time deferrals held it back (which is
    # never negative, so the cheaper test goes first).
    if compiled_step.expire_after is not None \
            and (late := now - step.due_at) > compiled_step.expire_after \
            and (late := late - step.deferred_for) > compiled_step.expire_after:
        limit = _span(compiled_step.expire_after)
        return StepDecision("expired", f"{_span(late, up=True)} late, expire_after {limit}")
    if campaign.trigger_kind != "event":  # only date and idle enrollments go stale
        stale = _stale_reason(campaign, step, profile, default_tz)
        if stale:
            return StepDecision("cancelled", stale)
    if campaign.exit_events or campaign.exit_rule is not None:
        exited = _exit_reason(campaign, step, profile, now)
        if exited:
            return StepDecision("exited", exited)
    # A date or idle campaign's audience is asked again as of the occurrence, with the
    # profile as it is now: a customer who left it since the plan is skipped.
    if campaign.audience is not None and campaign.trigger_kind != "event" \
            and not _audience_holds(campaign, step.ref, step.enrolled_at, profile,
                                    zone(profile.get("timezone"), default_tz)):
        return StepDecision("skipped", "audience rule false")
    if compiled_step.condition is not None:
        context = _context(profile, _step_event(campaign, step), iso(now))
        if not compiled_step.condition(context):
            return StepDecision("skipped", "step condition false")
    if step.holdout:
        return StepDecision("held_out", "holdout group")
    blocked = _consent_block(channel, profile)
    if blocked:
        return StepDecision("suppressed", blocked)
    tz = zone(profile.get("timezone"), default_tz)
    later = next_allowed(now, tz)
    if later is not None:
        if compiled_step.weekdays:
            later = on_allowed_day(later.astimezone(tz), compiled_step.weekdays, tz)
        return StepDecision("deferred", "quiet hours", defer_until=later.astimezone(UTC))
    if compiled_step.weekdays:
        local = now.astimezone(tz)
        if local.weekday() not in compiled_step.weekdays:  # a late tick crossed midnight
            moved = on_allowed_day(local, compiled_step.weekdays, tz)
            return StepDecision("deferred", "not an allowed weekday",
                                defer_until=moved.astimezone(UTC))
    return StepDecision("send", "", channel=channel,
                        template=campaign.template_for(compiled_step, step.variant),
                        to=profile[CONTACT_FIELD[channel]])


def _step_event(campaign: CompiledCampaign, step: PlannedStep) -> dict[str, Any] | None:
    """The triggering event as a step condition sees it at send time: its id, type,
    order and the part of its data the campaign's step conditions read (as kept with
    the step). Date and idle enrollments have no event."""
    if campaign.trigger_kind != "event":
        return {"order": step.order} if step.order else None
    event: dict[str, Any] = {"id": step.event_id, "type": campaign.trigger_event}
    if step.order:
        event["order"] = step.order
    if step.data is not None:
        event["data"] = step.data
    return event


def _span(delta: timedelta, *, up: bool = False) -> str:
    """A duration for a reason: ``30m``, ``1h50m``, ``13h``; from 48 hours in days and
    hours (``4d``, ``2d12h``). Rounded down, or up with ``up`` (a lateness: so that
    one just over its limit never reads as equal to it). Seconds are shown under an
    hour when there are any (``expire_after: PT30S`` reads ``30s``, not ``0m``)."""
    seconds = delta // _SECOND if not up else -(-delta // _SECOND)
    if seconds < 3600 and seconds % 60:  # seconds shown under an hour (PT90S: 1m30s)
        minutes, seconds = divmod(seconds, 60)
        return (f"{minutes}m" if minutes else "") + f"{seconds}s"
    minutes = delta // _MINUTE if not up else -(-delta // _MINUTE)
    if minutes < 48 * 60:
        hours, minutes = divmod(minutes, 60)
        text = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "")
        return text or "0m"
    hours = minutes // 60 if not up else -(-minutes // 60)
    days, hours = divmod(hours, 24)
    return f"{days}d" + (f"{hours}h" if hours else "")


_MINUTE = timedelta(minutes=1)
