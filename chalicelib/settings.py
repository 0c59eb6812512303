"""Runtime settings, read from environment variables at call time.

Resource names follow one per-stage convention, ``aftercare-{stage}-{what}``, so
that event-source names known at import time (aws/chalice#1385) and the names the
functions use at run time always agree.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

DEFAULT_STAGE = "dev"
DUE_SHARDS = 16


def stage() -> str:
    return os.environ.get("AFTERCARE_STAGE", DEFAULT_STAGE)


def resource_name(what: str, stage_name: str | None = None) -> str:
    """The deployed name of a table, queue, topic or secret for a stage."""
    return f"aftercare-{stage_name or stage()}-{what}"


@dataclass(frozen=True, slots=True)
class Settings:
    stage: str
    region: str
    sends_queue: str
    events_queue: str
    events_dlq: str
    sends_dlq: str
    ses_events_queue: str
    ses_events_dlq: str
    twilio_secret: str
    signing_secret: str
    suppression_secret: str
    ses_from: str
    ses_configuration_set: str | None
    public_base_url: str
    twilio_base_url: str | None
    default_timezone: str
    claim_lease_seconds: int
    campaign_cache_seconds: float


def load() -> Settings:
    env = os.environ
    st = stage()
    return Settings(
        stage=st,
        region=env.get("AWS_DEFAULT_REGION", env.get("AWS_REGION", "us-east-1")),
        sends_queue=resource_name("sends", st),
        events_queue=resource_name("events", st),
        events_dlq=resource_name("events-dlq", st),
        sends_dlq=resource_name("sends-dlq", st),
        ses_events_queue=resource_name("ses-events", st),
        ses_events_dlq=resource_name("ses-events-dlq", st),
        twilio_secret=env.get("TWILIO_SECRET_ID", f"aftercare/{st}/twilio"),
        signing_secret=env.get("SIGNING_SECRET_ID", f"aftercare/{st}/signing"),
        suppression_secret=env.get("SUPPRESSION_SECRET_ID", f"aftercare/{st}/suppression"),
        ses_from=env.get("SES_FROM_ADDRESS", "care@example.com"),
        ses_configuration_set=env.get("SES_CONFIGURATION_SET") or None,
        public_base_url=env.get("PUBLIC_BASE_URL", "https://example.invalid").rstrip("/"),
        twilio_base_url=env.get("TWILIO_BASE_URL") or None,
        default_timezone=env.get("DEFAULT_TIMEZONE", "America/New_York"),
        claim_lease_seconds=int(env.get("CLAIM_LEASE_SECONDS", "300")),
        campaign_cache_seconds=float(env.get("CAMPAIGN_CACHE_SECONDS", "60")),
    )
