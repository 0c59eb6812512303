"""Stats counters: one item per campaign x variant x arm x day, bumped with ADD."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from pynamodb.expressions.update import Action
from pynamodb.transactions import TransactWrite

from chalicelib.store.models import COUNTERS, StatsModel
from chalicelib.store.tx import Op

StatKey = tuple[str, str | None, str, str]  # campaign, variant, arm, day


def stats_pk(campaign_id: str, variant: str | None, arm: str) -> str:
    return f"{campaign_id}#{variant or '-'}#{arm}"


def stat_ops(bumps: Iterable[tuple[StatKey, str]]) -> list[Op]:
    """One update per stats item (a transaction may touch an item only once)."""
    grouped: dict[StatKey, Counter[str]] = {}
    for key, counter in bumps:
        if counter not in COUNTERS:
            raise ValueError(f"unknown stats counter {counter!r}")
        grouped.setdefault(key, Counter())[counter] += 1
    ops: list[Op] = []
    for (campaign, variant, arm, day), counts in grouped.items():
        item = StatsModel(stats_pk(campaign, variant, arm), day)
        actions: list[Action] = [
            getattr(StatsModel, name).add(n) for name, n in sorted(counts.items())
        ]

        def op(tw: TransactWrite, item: StatsModel = item,
               actions: list[Action] = actions) -> None:
            tw.update(item, actions=actions)

        ops.append(op)
    return ops
