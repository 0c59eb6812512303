"""Campaign versions in DynamoDB, and the function-lifetime cache of live ones."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

from pynamodb.transactions import TransactWrite

from chalicelib import clock
from chalicelib.config.compiled import CompiledCampaign, compile_campaign
from chalicelib.config.model import Campaign
from chalicelib.journeys.engine import CampaignSet
from chalicelib.store.models import CampaignModel
from chalicelib.store.tx import connection


def push(campaign: Campaign, templates: Mapping[str, str]) -> int:
    """Store a validated campaign as its next version and make it the live one."""
    latest = list(CampaignModel.query(campaign.id, scan_index_forward=False, limit=1))
    version = latest[0].version + 1 if latest else 1
    item = CampaignModel(
        campaign.id,
        version,
        definition=campaign.model_dump(mode="json", by_alias=True, exclude_none=True),
        templates=dict(templates),
        status=campaign.status,
        created_at=clock.iso(clock.now()),
        active="1" if campaign.status == "active" else None,
    )
    with TransactWrite(connection=connection()) as tw:
        tw.save(item, condition=CampaignModel.campaign_id.does_not_exist())
        for old in latest:
            if old.active:
                tw.update(old, actions=[CampaignModel.active.remove()])
    return int(version)


@dataclass(frozen=True, slots=True)
class LiveCampaigns:
    campaigns: CampaignSet
    templates: Mapping[str, Mapping[str, str]]  # campaign id -> {file: source}


def load_live() -> LiveCampaigns:
    """Every live campaign version: one Query on the sparse ``active`` index."""
    compiled: list[CompiledCampaign] = []
    templates: dict[str, Mapping[str, str]] = {}
    for item in CampaignModel.by_active.query("1"):
        campaign = Campaign.model_validate(item.definition)
        compiled.append(compile_campaign(campaign, int(item.version)))
        templates[campaign.id] = item.templates or {}
    return LiveCampaigns(CampaignSet(compiled), templates)


class LiveCache:
    """Live campaigns, refreshed at most every ``ttl`` seconds per function instance."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._value: LiveCampaigns | None = None
        self._loaded = 0.0

    def get(self, max_age: float | None = None) -> LiveCampaigns:
        """The live campaigns, read again when older than ``ttl`` (or ``max_age``)."""
        limit = self.ttl if max_age is None else min(self.ttl, max_age)
        if self._value is None or time.monotonic() - self._loaded > limit:
            self._value = load_live()
            self._loaded = time.monotonic()
        return self._value

    def invalidate(self) -> None:
        self._value = None


_compiled: dict[tuple[str, int], CompiledCampaign] = {}


def latest_version(campaign_id: str) -> tuple[str, CompiledCampaign] | None:
    """The campaign's latest version (its status and compiled definition), read from
    the table itself (consistent, unlike the active index): one Query; compiled once
    per version and instance. None for a campaign never pushed."""
    latest = list(CampaignModel.query(campaign_id, scan_index_forward=False, limit=1,
                                      consistent_read=True))
    if not latest:
        return None
    item = latest[0]
    key = (campaign_id, int(item.version))
    if key not in _compiled:
        _compiled[key] = compile_campaign(Campaign.model_validate(item.definition), key[1])
    return str(item.status), _compiled[key]


def clear_compiled() -> None:
    """Forget the versions compiled by :func:`latest_version` (see ``handlers.reset``)."""
    _compiled.clear()
