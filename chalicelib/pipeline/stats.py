"""Stats counters: one item per campaign x variant x arm x day, bumped with ADD."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable

from pynamodb.expressions.update import Action
from pynamodb.transactions import TransactWrite

from chalicelib.store.models import COUNTERS, StatsModel
from chalicelib.store.tx import Op

StatKey = tuple[str, str | None, str, str]  # campaign, variant, arm, day


STATS_SHARDS = 8


def stats_pk(campaign_id: str, variant: str | None, arm: str, shard: int = 0) -> str:
    """Counters are write-sharded: concurrent transactions that bump the same item
    conflict, so each bump picks one of STATS_SHARDS items and reports add them up
    (a report still reads O(days x shards), never O(messages))."""
    return f"{campaign_id}#{variant or '-'}#{arm}#{shard}"


def stats_totals(campaign_id: str, variant: str | None, arm: str, day: str) -> dict[str, int]:
    """Every counter for one campaign x variant x arm x day, summed over the shards."""
    totals: dict[str, int] = {}
    keys = [(stats_pk(campaign_id, variant, arm, s), day) for s in range(STATS_SHARDS)]
    for item in StatsModel.batch_get(keys, consistent_read=True):
        for name in COUNTERS:
            value = getattr(item, name)
            if value is not None:
                totals[name] = totals.get(name, 0) + int(value)
    return totals


def stat_ops(bumps: Iterable[tuple[StatKey, str]],
             less: Iterable[tuple[StatKey, str]] = ()) -> list[Op]:
    """One update per stats item (a transaction may touch an item only once); each of
    ``less`` takes one back (a count moved from one counter to another)."""
    grouped: dict[StatKey, Counter[str]] = {}
    for sign, pairs in ((1, bumps), (-1, less)):
        for key, counter in pairs:
            if counter not in COUNTERS:
                raise ValueError(f"unknown stats counter {counter!r}")
            grouped.setdefault(key, Counter())[counter] += sign
    ops: list[Op] = []
    for (campaign, variant, arm, day), counts in grouped.items():
        item = StatsModel(stats_pk(campaign, variant, arm, random.randrange(STATS_SHARDS)), day)
        actions: list[Action] = [
            getattr(StatsModel, name).add(n) for name, n in sorted(counts.items()) if n
        ]
        if not actions:
            continue

        def op(tw: TransactWrite, item: StatsModel = item,
               actions: list[Action] = actions) -> None:
            tw.update(item, actions=actions)

        ops.append(op)
    return ops
