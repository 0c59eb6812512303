"""Ingest: one parsed event -> profile, goals, exits, enrollments, in one transaction.

Per event: one GetItem (the profile) and one TransactWriteItems holding the
processed-event marker, the profile (optimistic version check), the new schedule
items (conditional on not existing: enrolling twice is a no-op), cancellations
and stats. A replayed event fails the marker's condition and changes nothing.

A step planned again with the same key (a yearly occurrence planned both by an
event and by the decision on last year's step; a date changed and changed back)
is written once: an item still pending takes the new plan, one cancelled at
ingest with the outcome ``cancelled`` is planned anew, any other is left as it
is; ``enrolled`` counts the enrollments whose items were created, so each
enrollment once. Steps moved by a change of timezone update pending items only.

An event that changes the customer's zone, of a customer with event enrollments
recent enough to have steps not yet due, reads those steps first (one
BatchGetItem per 100 candidate ids: see :func:`read_pending_steps`); every other
event makes the two requests above.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from pynamodb.transactions import TransactWrite

from chalicelib import clock, settings
from chalicelib.events import EventError, parse_event
from chalicelib.events import text as event_text
from chalicelib.events.envelope import MAX_EVENT_BYTES
from chalicelib.journeys import keys
from chalicelib.journeys.engine import (
    CampaignSet,
    Cancellation,
    EventResult,
    PlannedStep,
    StepKey,
    event_steps_to_move,
    move_event_steps,
    process_event,
)
from chalicelib.journeys.profile import merge_consent, profile_size_problem
from chalicelib.pipeline.batch import PermanentError
from chalicelib.pipeline.stats import StatKey, stat_ops
from chalicelib.store.campaigns import LiveCache
from chalicelib.store.models import CustomerModel, EventModel, MessageModel, ScheduleModel
from chalicelib.store.tx import (
    MAX_ITEMS,
    Op,
    RequiredConditionFailed,
    Transaction,
    commit,
    commit_states,
)
from chalicelib.tracking.retention import retention_bumps

# A schedule item planned again with the same key: still pending (it moves), or
# cancelled at ingest by a change of date (it is planned anew). Decided items, and
# steps exited or cancelled for another reason, stay as they are.
_MAY_PLAN_AGAIN = (ScheduleModel.status == "pending") | (
    (ScheduleModel.status == "cancelled") & (ScheduleModel.outcome == "cancelled"))

log = logging.getLogger(__name__)
EVENT_MARKER_TTL = timedelta(days=30)
MAX_VERSION_RETRIES = 4


@dataclass(frozen=True, slots=True)
class IngestOutcome:
    event_id: str
    duplicate: bool
    planned: int
    cancelled: int
    skipped_existing: int
    due: tuple[str, ...] = ()
    erased: bool = False  # dropped: it happened before its customer was erased


def decode(body: str | bytes | dict[str, Any]) -> dict[str, Any]:
    """Decode and check one event; PermanentError (to the DLQ) when it never can be."""
    if isinstance(body, dict):
        raw: Any = body
    else:
        if event_text.utf8_size(body) > MAX_EVENT_BYTES:  # bytes, as SQS counts them
            raise PermanentError(f"event larger than {MAX_EVENT_BYTES} bytes", "too_large")
        try:
            raw = event_text.loads(event_text.decode_utf8(body) if isinstance(body, bytes)
                                   else body)
        except UnicodeDecodeError:
            raise PermanentError("invalid JSON: not UTF-8 text", "invalid_json") from None
        except json.JSONDecodeError as exc:
            raise PermanentError(f"invalid JSON: {exc}", "invalid_json") from None
        except RecursionError:
            raise PermanentError("invalid JSON: nested too deeply", "invalid_json") from None
        except ValueError as exc:  # too many digits, NaN, 1e999, a lone surrogate
            raise PermanentError(f"invalid JSON: {exc}", "invalid_json") from None
    try:
        return parse_event(raw)
    except EventError as exc:
        raise PermanentError(str(exc), "invalid_event") from None


def schedule_item(step: PlannedStep) -> ScheduleModel:
    return ScheduleModel(
        step.id,
        due_shard=step.shard,
        pending_campaign=step.campaign_id,
        due_at=int(step.due_at.timestamp()),
        status="pending",
        step=step.to_dict(),
        updated_at=clock.iso(clock.now()),
    )


def _put_new(item: ScheduleModel) -> Op:
    def op(tw: TransactWrite) -> None:
        tw.save(item, condition=ScheduleModel.schedule_id.does_not_exist())

    return op


def _plan_again(step: PlannedStep, condition: Any) -> Op:
    """The schedule item of ``step`` rewritten with its plan, when ``condition`` holds;
    what it holds of the previous plan's attempts (``retries``) stays."""
    def op(tw: TransactWrite) -> None:
        tw.update(
            ScheduleModel(step.id),
            actions=[
                ScheduleModel.status.set("pending"),
                ScheduleModel.due_at.set(int(step.due_at.timestamp())),
                ScheduleModel.due_shard.set(step.shard),
                ScheduleModel.pending_campaign.set(step.campaign_id),
                ScheduleModel.step.set(step.to_dict()),
                ScheduleModel.updated_at.set(clock.iso(clock.now())),
                ScheduleModel.outcome.remove(),
                ScheduleModel.reason.remove(),
                ScheduleModel.claim_token.remove(),
            ],
            condition=condition,
        )

    return op


def add_planned(tx: Transaction, steps: Iterable[PlannedStep],
                bumps: Sequence[tuple[StatKey, str]] = (), continuing: str = "") -> None:
    """Add planned steps to ``tx``: each item created if it does not exist, else
    planned again if it may be (``_MAY_PLAN_AGAIN``), else left as it is; and, as
    ``tx.derived``, the stats: ``bumps`` and one ``enrolled`` per enrollment at least
    one of whose items is created (so an enrollment planned twice counts once).
    Steps of the enrollment ``continuing`` (a ref: a new campaign version's steps of
    an occurrence under way) do not count it enrolled again."""
    if tx.derived is not None:  # one set of planned steps per transaction
        raise ValueError("add_planned: the transaction already has its derived stats")
    steps = list(steps)
    first = len(tx.optional)
    for j, step in enumerate(steps, first):
        tx.optional.append(_put_new(schedule_item(step)))
        tx.fallback[j] = _plan_again(step, _MAY_PLAN_AGAIN)
    tx.derived = _Stats(steps, first, list(bumps), continuing)


@dataclass(slots=True)
class _Stats:
    """The stats a transaction's planned steps and ``bumps`` make (``tx.derived``),
    also as bumps, so that several events' stats merge into one update per item."""

    steps: list[PlannedStep]
    first: int  # the index in ``tx.optional`` of the first step's operation
    bumps: list[tuple[StatKey, str]]
    continuing: str

    def stat_bumps(self, written: Sequence[bool]) -> list[tuple[StatKey, str]]:
        created = [s for j, s in enumerate(self.steps, self.first)
                   if written[j] and s.ref != self.continuing]
        return [*self.bumps, *enrolled_bumps(created)]

    def __call__(self, written: Sequence[bool]) -> list[Op]:
        return stat_ops(self.stat_bumps(written))


def moved_step_ops(steps: Iterable[PlannedStep]) -> list[Op]:
    """Pending items planned again in place (a change of timezone); others stay."""
    return [_plan_again(s, ScheduleModel.status == "pending") for s in steps]


def read_pending_steps(wanted: Sequence[StepKey]) -> list[PlannedStep]:
    """The customer's schedule items among ``wanted`` that are still pending, as steps.

    A timezone move plans a customer's pending event steps again from the items as
    stored (their order snapshot, event data and event id are nowhere else). They
    are read by key: the ids are derived from the profile's enrollment refs
    (:func:`event_steps_to_move`), at most 100 per BatchGetItem, consistent (an item
    written by the customer's previous event is seen), and only when the event moved
    the zone of a customer with a recent event enrollment. The alternatives cost
    more: a Query of the customer's due shard from the move on reads the pending
    items of every customer of that shard (a sixteenth of the whole backlog), and an
    index by customer would be paid by every schedule write. A candidate that does
    not exist or is no longer pending (sent, cancelled, claimed) is left out."""
    if not wanted:
        return []
    ids = [keys.schedule_id(*k) for k in wanted]
    return [PlannedStep.from_dict(item.step)
            for item in ScheduleModel.batch_get(ids, consistent_read=True)
            if item.status == "pending"]


_CANCELLABLE = ("pending", "claimed")


def _cancel_actions(cancel: Cancellation) -> list[Any]:
    return [
        ScheduleModel.status.set("cancelled"),
        ScheduleModel.outcome.set(cancel.outcome),
        ScheduleModel.reason.set(cancel.reason),
        ScheduleModel.due_shard.remove(),
        ScheduleModel.pending_campaign.remove(),
        ScheduleModel.claim_token.remove(),
    ]


def _cancel(cancel: Cancellation) -> Op:
    """A step not yet attempted taken off the schedule (a step already decided is
    left as it is). DynamoDB returns the item when the condition fails, so a step
    waiting for its retry gets :func:`_cancel_retrying` instead, without a read."""
    def op(tw: TransactWrite) -> None:
        tw.update(
            ScheduleModel(cancel.schedule_id),
            actions=_cancel_actions(cancel),
            condition=ScheduleModel.status.is_in(*_CANCELLABLE)
            & ((ScheduleModel.retries == 0) | ScheduleModel.retries.does_not_exist()),
            return_values="ALL_OLD",
        )

    return op


def _waits_for_retry(item: dict[str, Any] | None) -> bool:
    """Whether a schedule item whose :func:`_cancel` failed is still cancellable (then
    it failed on its ``retries``: an attempt was made and is to be retried)."""
    return item is not None and item.get("status", {}).get("S") in _CANCELLABLE


def _cancel_retrying(cancel: Cancellation) -> Op:
    """A step waiting for its retry taken off the schedule, and its message (status
    ``retry`` since the attempt) settled with the cancellation's outcome and reason,
    so it does not say for ever that it will be retried. The message's history (the
    sender's attempts) is kept as it is."""
    def op(tw: TransactWrite) -> None:
        tw.update(ScheduleModel(cancel.schedule_id), actions=_cancel_actions(cancel),
                  condition=ScheduleModel.status.is_in(*_CANCELLABLE))
        # ``cancelled``: a step whose retry a change of date cancelled, planned again by
        # a change back (its message says so), and now cancelled again.
        tw.update(MessageModel(cancel.schedule_id), actions=[
            MessageModel.status.set(cancel.outcome),
            MessageModel.outcome.set(cancel.outcome),
            MessageModel.reason.set(cancel.reason),
        ], condition=MessageModel.status.is_in("retry", "cancelled"))

    return op


def add_cancelled(tx: Transaction, cancellations: Sequence[Cancellation]) -> None:
    """Add the cancellations to ``tx`` as optional operations (a step already decided
    or gone is left as it is).

    A step waiting for its retry is cancelled with its message (two items) while
    the transaction has room for that many; beyond that (never with campaigns that
    validate with room to spare) it is left pending, and its retry decides the
    exit: the sender records the message ``exited`` then."""
    room = max(0, MAX_ITEMS - len(tx) - len(cancellations))
    for n, cancel in enumerate(cancellations):
        j = len(tx.optional)
        tx.optional.append(_cancel(cancel))
        if n < room:
            tx.fallback[j] = _cancel_retrying(cancel)
            tx.fallback_if[j] = _waits_for_retry
            tx.extra_items += 1


def enrolled_bumps(created: Iterable[PlannedStep]) -> list[tuple[StatKey, str]]:
    """One ``enrolled`` per enrollment (campaign, ref) among steps whose items were
    created, on the day it started."""
    bumps: list[tuple[StatKey, str]] = []
    seen: set[tuple[str, str]] = set()
    for step in created:
        if (step.campaign_id, step.ref) in seen:
            continue
        seen.add((step.campaign_id, step.ref))
        arm = "holdout" if step.holdout else "treatment"
        bumps.append(((step.campaign_id, step.variant, arm, step.enrolled_at[:10]), "enrolled"))
    return bumps


def _conversion_bumps(result: EventResult) -> list[tuple[StatKey, str]]:
    return [((conv.campaign_id, conv.variant, conv.arm, conv.enrolled_at[:10]), "converted")
            for conv in result.conversions]


def result_transaction(result: EventResult, current: CustomerModel | None,
                       event: dict[str, Any] | None = None) -> Transaction:
    """What one decision result writes: [event marker], profile, stats (required);
    new schedule items and cancellations (optional: already done is fine)."""
    before = live_profile(current)
    retained, mark = retention_bumps(
        before, result.profile,
        current.retention_day if current is not None and before is not None else None)
    customer = current or CustomerModel(result.profile["id"])
    customer.profile = result.profile
    customer.phone = result.profile.get("phone")
    customer.email = result.profile.get("email")
    customer.erased_at = None  # a tombstone replaced by a profile started after it
    if mark is not None:
        customer.retention_day = mark
    elif before is None:
        customer.retention_day = None  # a new profile (after an erasure: counted anew)
    required: list[Op] = []
    if event is not None:
        marker = EventModel(event["id"], type=event["type"],
                            expires_at=clock.now() + EVENT_MARKER_TTL)

        def put_marker(tw: TransactWrite) -> None:
            tw.save(marker, condition=EventModel.event_id.does_not_exist())

        required.append(put_marker)

    def put_profile(tw: TransactWrite) -> None:
        tw.save(customer)

    tx = Transaction(required=[*required, put_profile])
    # DynamoDB refuses a transaction that touches one item twice: one operation per
    # schedule id, a new plan winning over a cancellation of the same id, and both
    # over a move.
    planned = {s.id: s for s in result.planned}
    cancelled = {c.schedule_id: c for c in reversed(result.cancelled)
                 if c.schedule_id not in planned}
    add_planned(tx, planned.values(),
                [*_conversion_bumps(result), *enrolled_bumps(result.ended), *retained])
    if result.moved:
        tx.optional.extend(moved_step_ops(
            s for s in {s.id: s for s in result.moved}.values()
            if s.id not in planned and s.id not in cancelled))
    add_cancelled(tx, list(reversed(cancelled.values())))  # last: it counts the room left
    return tx


def load_customer(customer_id: str) -> CustomerModel | None:
    """The customer's item, a tombstone if erased (``erased_at``), or None."""
    try:
        return CustomerModel.get(customer_id, consistent_read=True)
    except CustomerModel.DoesNotExist:
        return None


def live_profile(current: CustomerModel | None) -> dict[str, Any] | None:
    """A copy of the profile the decision core works on; None when there is none (an
    unknown or erased customer)."""
    if current is None or current.erased_at is not None:
        return None
    return dict(current.profile)


def _erased_before(event: dict[str, Any], current: CustomerModel | None) -> bool:
    """Whether the event happened before its customer was erased: such an event (late,
    or replayed from a dead-letter queue) must not bring the erased data back. An
    event after the erasure starts a new profile."""
    return current is not None and current.erased_at is not None \
        and event["_at"] <= clock.parse_iso(current.erased_at)


def _list_opt_outs(event: dict[str, Any]) -> None:
    """An event dropped for an erased customer may still carry an opt-out: it goes on
    the suppression list, as the erasure would have put it had it arrived before."""
    from chalicelib.store import suppression

    customer = event["customer"]
    if not customer.get("consent"):
        return
    stamp = clock.iso(event["_at"])
    records = {channel: merge_consent(None, value, stamp)
               for channel, value in customer["consent"].items()}
    for channel, address, at, source in suppression.opt_outs({**customer, "consent": records}):
        suppression.suppress(channel, address, at, source)


def _mark_processed(event: dict[str, Any]) -> bool:
    """Record the event id alone; False when it was processed before."""
    marker = EventModel(event["id"], type=event["type"],
                        expires_at=clock.now() + EVENT_MARKER_TTL)
    try:
        commit(Transaction(required=[
            lambda tw: tw.save(marker, condition=EventModel.event_id.does_not_exist())]))
    except RequiredConditionFailed:
        return False
    return True


def _check_profile_size(profile: dict[str, Any]) -> None:
    """Refuse an event that would grow the profile past what an item holds (attributes
    merge across events, each under 64 KiB): a PermanentError, to the DLQ with the
    reason, rather than a write DynamoDB refuses on every retry. ``aftercare simulate``
    refuses the same events."""
    reason = profile_size_problem(profile)
    if reason is not None:
        raise PermanentError(reason, "too_large")


def ingest_event(event: dict[str, Any], live: LiveCache, *,
                 history: bool = False) -> IngestOutcome:
    """Process one parsed event exactly once (transient errors propagate for a retry).

    ``history``: a row of ``aftercare import``, whose time is when the data was true,
    not when it happened to arrive: date campaigns are planned as of now, as a
    backfill plans them (see :func:`process_event`)."""
    conf = settings.load()
    campaigns = live.get().campaigns
    customer_id = event["customer"]["id"]
    for _ in range(MAX_VERSION_RETRIES):
        current = load_customer(customer_id)
        if _erased_before(event, current):
            _list_opt_outs(event)  # first: if it fails, the event is retried
            fresh = _mark_processed(event)
            return IngestOutcome(event["id"], not fresh, 0, 0, 0, erased=True)
        before = live_profile(current)
        result, tx = _prepare(event, current, before, campaigns, conf.default_timezone,
                              history)
        # A change of zone moves the pending steps of event enrollments too (no read
        # at all when the zone did not change).
        wanted = event_steps_to_move(result, before, event["_at"], campaigns,
                                     conf.default_timezone)
        moved = move_event_steps(result, before, event["_at"], read_pending_steps(wanted),
                                 campaigns, conf.default_timezone) if wanted else []
        # As many as fit go with the event; the rest (a customer with dozens of pending
        # event steps) in transactions of their own once it is written.
        room = MAX_ITEMS - len(tx)
        tx.optional.extend(moved_step_ops(moved[:room]))
        try:
            dropped = commit(tx)
        except RequiredConditionFailed as exc:
            if exc.index == 0:
                return IngestOutcome(event["id"], True, 0, 0, 0)
            if exc.index == 1:
                continue  # the profile changed under us: read it again
            raise
        for start in range(room, len(moved), MAX_ITEMS):
            dropped += commit(Transaction(optional=moved_step_ops(
                moved[start:start + MAX_ITEMS])))
        due = tuple(sorted({clock.iso(s.due_at)
                            for s in (*result.planned, *result.moved, *moved)}))
        return IngestOutcome(event["id"], False, len(result.planned), len(result.cancelled),
                             dropped, due)
    raise RuntimeError(f"profile kept changing while processing event {event['id']}")


def _prepare(event: dict[str, Any], current: CustomerModel | None,
             before: dict[str, Any] | None, campaigns: CampaignSet, default_tz: str,
             history: bool) -> tuple[EventResult, Transaction]:
    """The event's decisions over the profile as read, and their transaction
    (PermanentError when it can never be written)."""
    result = process_event(event, before, campaigns, default_tz,
                           dates_as_of=clock.now() if history else None)
    _check_profile_size(result.profile)
    tx = result_transaction(result, current, event)
    if len(tx) > MAX_ITEMS:  # validation refuses campaigns that could need this
        raise PermanentError(
            f"this event needs {len(tx)} writes; one DynamoDB transaction holds at "
            f"most {MAX_ITEMS}: fewer or shorter campaigns on {event['type']!r}",
            "too_many_writes")
    return result, tx


# -- several events at once (``aftercare import``) --------------------------------------


@dataclass(slots=True)
class _Ready:
    """An event of :func:`ingest_events` decided, its transaction to be written."""

    index: int  # in the events given
    event: dict[str, Any]
    result: EventResult
    tx: Transaction


def load_customers(customer_ids: Sequence[str]) -> dict[str, CustomerModel]:
    """The customers' items (tombstones included) by id, in BatchGetItems of 100."""
    return {c.customer_id: c
            for c in CustomerModel.batch_get(list(customer_ids), consistent_read=True)}


def ingest_events(events: Sequence[dict[str, Any]], live: LiveCache, *,
                  history: bool = False) -> list[IngestOutcome | PermanentError]:
    """Ingest parsed events of distinct customers and distinct ids as
    :func:`ingest_event` ingests each, with far fewer requests: the customers are
    read in one BatchGetItem (per 100), and the events' writes share transactions of
    up to ``MAX_ITEMS`` items (their stats merged into one update per item).

    Returns an outcome per event, in order: its ``IngestOutcome``, or the
    PermanentError it was refused with. Transient errors propagate: events whose
    transaction was not written are not ingested (ingesting them again is safe).
    An event whose write fails a condition is taken out of its transaction, the
    rest written again: a duplicate (its marker exists) is reported as one, a
    profile changed since the read (a live event meanwhile) goes alone through
    :func:`ingest_event`, as do the rare events that need more than one profile
    read: one for an erased customer, one that moves pending event steps (a change
    of timezone).
    """
    ids = [e["customer"]["id"] for e in events]
    if len(set(ids)) != len(ids) or len({e["id"] for e in events}) != len(events):
        raise ValueError("ingest_events: one event per customer and per id")
    conf = settings.load()
    campaigns = live.get().campaigns
    currents = load_customers(ids) if ids else {}
    out: list[IngestOutcome | PermanentError | None] = [None] * len(events)
    ready: list[_Ready] = []
    for i, event in enumerate(events):
        current = currents.get(ids[i])
        try:
            if _erased_before(event, current):
                out[i] = _alone(event, live, history)
                continue
            before = live_profile(current)
            result, tx = _prepare(event, current, before, campaigns, conf.default_timezone,
                                  history)
            if event_steps_to_move(result, before, event["_at"], campaigns,
                                   conf.default_timezone):
                out[i] = _alone(event, live, history)
                continue
        except PermanentError as exc:
            out[i] = exc
            continue
        ready.append(_Ready(i, event, result, tx))
    group: list[_Ready] = []
    size = 0
    for item in ready:
        if group and size + len(item.tx) > MAX_ITEMS:
            _write_group(group, out, live, history)
            group, size = [], 0
        group.append(item)
        size += len(item.tx)
    if group:
        _write_group(group, out, live, history)
    assert all(o is not None for o in out)
    return out  # type: ignore[return-value]


def _alone(event: dict[str, Any], live: LiveCache,
           history: bool) -> IngestOutcome | PermanentError:
    try:
        return ingest_event(event, live, history=history)
    except PermanentError as exc:
        return exc


def _write_group(group: list[_Ready], out: list[IngestOutcome | PermanentError | None],
                 live: LiveCache, history: bool) -> None:
    """Write the group's transactions as one; events failing a condition come out."""
    while group:
        tx, spans = _merge([item.tx for item in group])
        try:
            states = commit_states(tx)
        except RequiredConditionFailed as exc:
            owners = [(k, n) for k, (required, _, _) in enumerate(spans)
                      for n in range(required)]
            failed: dict[int, int] = {}  # event in group -> its first failed operation
            for i in exc.indices:
                if i < len(owners):
                    failed.setdefault(*owners[i])
            if not failed:
                raise
            for k in sorted(failed, reverse=True):
                item = group.pop(k)
                event = item.event
                # Required operations: the event's marker (0), then the profile (1).
                out[item.index] = IngestOutcome(event["id"], True, 0, 0, 0) \
                    if failed[k] == 0 else _alone(event, live, history)
            continue
        for item, (_, first, count) in zip(group, spans, strict=True):
            result = item.result
            due = tuple(sorted({clock.iso(s.due_at) for s in (*result.planned, *result.moved)}))
            out[item.index] = IngestOutcome(
                item.event["id"], False, len(result.planned), len(result.cancelled),
                states[first:first + count].count(2), due)
        return


def _merge(parts: Sequence[Transaction]) -> tuple[Transaction, list[tuple[int, int, int]]]:
    """One transaction writing all of ``parts`` (of distinct items, but for stats,
    merged into one update per item), and per part: its number of required
    operations, the index of its first optional one and how many it has."""
    merged = Transaction()
    spans: list[tuple[int, int, int]] = []
    stats: list[_Stats] = []
    for tx in parts:
        base = len(merged.optional)
        if tx.derived is not None and not isinstance(tx.derived, _Stats):
            raise TypeError("only stats derived from planned steps merge")
        merged.required.extend(tx.required)
        merged.optional.extend(tx.optional)
        merged.fallback.update({base + j: op for j, op in tx.fallback.items()})
        merged.fallback_if.update({base + j: f for j, f in tx.fallback_if.items()})
        merged.extra_items += tx.extra_items
        spans.append((len(tx.required), base, len(tx.optional)))
        if tx.derived is not None:
            stats.append(tx.derived)

    def derived(written: Sequence[bool]) -> list[Op]:
        bumps: list[tuple[StatKey, str]] = []
        for part, (_, base, count) in zip(parts, spans, strict=True):
            if isinstance(part.derived, _Stats):
                bumps.extend(part.derived.stat_bumps(written[base:base + count]))
        return stat_ops(bumps)

    merged.derived = derived if stats else None
    return merged, spans
