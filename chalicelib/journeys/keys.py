"""Deterministic keys and hash-based assignments.

Everything here is a pure function of its inputs, so the pipeline, a replay and
``aftercare simulate`` always agree: enrolling twice yields the same schedule ids
(a no-op), and holdout and variant membership never flip between runs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import lru_cache

from chalicelib.settings import DUE_SHARDS


def _digest(*parts: str) -> bytes:
    return hashlib.blake2b("\x1f".join(parts).encode("utf-8"), digest_size=16).digest()


def schedule_id(customer_id: str, campaign_id: str, ref: str, step_id: str) -> str:
    """One id per planned step of one enrollment."""
    # _digest("step", ...) spelled out: this runs for every planned step.
    text = f"step\x1f{customer_id}\x1f{campaign_id}\x1f{ref}\x1f{step_id}"
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


@lru_cache(maxsize=65536)
def shard_for(customer_id: str, shards: int = DUE_SHARDS) -> str:
    """The due-index partition for a customer's steps: ``due#00``..``due#15``."""
    n = int.from_bytes(_digest("shard", customer_id)[:4], "big") % shards
    return f"due#{n:02d}"


@lru_cache(maxsize=131_072)
def bucket(salt: str, campaign_id: str, customer_id: str) -> int:
    """A stable number in [0, 10000) for (campaign, customer)."""
    # _digest(salt, campaign_id, customer_id) spelled out: this runs per enrollment.
    text = f"{salt}\x1f{campaign_id}\x1f{customer_id}"
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()
    return int.from_bytes(digest[:8], "big") % 10_000


def in_holdout(campaign_id: str, customer_id: str, percent: float) -> bool:
    return percent > 0 and bucket("holdout", campaign_id, customer_id) < round(percent * 100)


def pick_variant(campaign_id: str, customer_id: str,
                 variants: Sequence[tuple[str, int]]) -> str | None:
    """Weighted, deterministic A/B assignment; None when the campaign has no variants."""
    if not variants:
        return None
    total = sum(w for _, w in variants)
    point = bucket("variant", campaign_id, customer_id) * total // 10_000
    for variant_id, weight in variants:
        if point < weight:
            return variant_id
        point -= weight
    return variants[-1][0]
