"""PynamoDB models, one table each, named ``aftercare-{stage}-{table}``.

``Meta`` is read when this module is imported (PynamoDB reads it at class
creation), so the stage, region and optional endpoint must be in the environment
before the first import; Lambda sets them from ``.chalice/config.json``.
Every access on the hot paths is a GetItem, a Query on a sparse index or a
conditional write: nothing here is ever scanned by ingest, tick or send.
"""

from __future__ import annotations

import json
import os
from typing import Any

from pynamodb.attributes import (
    JSONAttribute,
    NumberAttribute,
    TTLAttribute,
    UnicodeAttribute,
    UnicodeSetAttribute,
    VersionAttribute,
)
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex, KeysOnlyProjection
from pynamodb.models import Model

from chalicelib.settings import resource_name

REGION = os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION") or "us-east-1"
HOST = os.environ.get("AFTERCARE_DYNAMODB_ENDPOINT") or None


class CompactJSONAttribute(JSONAttribute):
    """JSON without spaces: item size is what DynamoDB bills, per KB."""

    def serialize(self, value: Any) -> str | None:
        if value is None:
            return None
        return json.dumps(value, separators=(",", ":"))


class _Meta:
    region = REGION
    host = HOST
    billing_mode = "PAY_PER_REQUEST"


class _KeysIndexMeta:
    projection = KeysOnlyProjection()


class PhoneIndex(GlobalSecondaryIndex["CustomerModel"]):
    class Meta(_KeysIndexMeta):
        index_name = "by-phone"

    phone = UnicodeAttribute(hash_key=True)


class EmailIndex(GlobalSecondaryIndex["CustomerModel"]):
    class Meta(_KeysIndexMeta):
        index_name = "by-email"

    email = UnicodeAttribute(hash_key=True)


class CustomerModel(Model):
    """A customer profile; ``profile`` holds the dict the decision core works on.

    An erased customer's item is a tombstone: ``erased_at`` set, an empty profile,
    no contact (see :mod:`chalicelib.pipeline.erasure`).
    """

    class Meta(_Meta):
        table_name = resource_name("customers")

    customer_id = UnicodeAttribute(hash_key=True)
    phone = UnicodeAttribute(null=True)
    email = UnicodeAttribute(null=True)
    profile = CompactJSONAttribute()
    erased_at = UnicodeAttribute(null=True)
    # The day of the latest order counted in retention (chalicelib.tracking.retention):
    # beside the profile, which rules read, not in it.
    retention_day = UnicodeAttribute(null=True)
    version = VersionAttribute()
    by_phone = PhoneIndex()
    by_email = EmailIndex()


class ActiveIndex(GlobalSecondaryIndex["CampaignModel"]):
    class Meta:
        index_name = "active"
        projection = AllProjection()

    active = UnicodeAttribute(hash_key=True)


class CampaignModel(Model):
    """One version of a campaign with the templates it uses (Lambda has no templates/)."""

    class Meta(_Meta):
        table_name = resource_name("campaigns")

    campaign_id = UnicodeAttribute(hash_key=True)
    version = NumberAttribute(range_key=True)
    definition = CompactJSONAttribute()
    templates = CompactJSONAttribute()
    status = UnicodeAttribute()
    created_at = UnicodeAttribute()
    active = UnicodeAttribute(null=True)  # "1" on the live version only: sparse index
    by_active = ActiveIndex()


class DueIndex(GlobalSecondaryIndex["ScheduleModel"]):
    """Sparse: only pending or claimed steps carry ``due_shard``."""

    class Meta:
        index_name = "due"
        projection = AllProjection()

    due_shard = UnicodeAttribute(hash_key=True)
    due_at = NumberAttribute(range_key=True)


class CampaignPendingIndex(GlobalSecondaryIndex["ScheduleModel"]):
    """Sparse: a campaign's pending steps (pause, edit, removal). No sort key, so a
    claim, which moves ``due_at``, does not rewrite this index."""

    class Meta(_KeysIndexMeta):
        index_name = "campaign-pending"

    pending_campaign = UnicodeAttribute(hash_key=True)


class ScheduleModel(Model):
    """One planned step, keyed by (customer, campaign, enrollment ref, step)."""

    class Meta(_Meta):
        table_name = resource_name("schedule")

    schedule_id = UnicodeAttribute(hash_key=True)
    due_shard = UnicodeAttribute(null=True)
    pending_campaign = UnicodeAttribute(null=True)
    due_at = NumberAttribute()
    status = UnicodeAttribute()  # pending | claimed | sending | done | cancelled
    step = CompactJSONAttribute()
    claim_token = UnicodeAttribute(null=True)
    retries = NumberAttribute(default=0)
    outcome = UnicodeAttribute(null=True)
    reason = UnicodeAttribute(null=True)
    updated_at = UnicodeAttribute(null=True)
    due = DueIndex()
    by_campaign = CampaignPendingIndex()


class ProviderIndex(GlobalSecondaryIndex["MessageModel"]):
    class Meta(_KeysIndexMeta):
        index_name = "by-provider-id"

    provider_id = UnicodeAttribute(hash_key=True)


class SurveyIndex(GlobalSecondaryIndex["MessageModel"]):
    """Sparse: a customer's survey SMS, newest last, to match a bare-number reply."""

    class Meta(_KeysIndexMeta):
        index_name = "survey-by-customer"

    survey_customer = UnicodeAttribute(hash_key=True)
    decided_at = UnicodeAttribute(range_key=True)


class SmsIndex(GlobalSecondaryIndex["MessageModel"]):
    """Sparse: a customer's SMS, newest last, to match a free-text reply to the
    message it answers (:mod:`chalicelib.tracking.replies`)."""

    class Meta(_KeysIndexMeta):
        index_name = "sms-by-customer"

    sms_customer = UnicodeAttribute(hash_key=True)
    decided_at = UnicodeAttribute(range_key=True)


class MessageModel(Model):
    """The outcome of one step's send attempt; id = the schedule id (at-most-once)."""

    class Meta(_Meta):
        table_name = resource_name("messages")

    message_id = UnicodeAttribute(hash_key=True)
    status = UnicodeAttribute()
    outcome = UnicodeAttribute()
    reason = UnicodeAttribute(null=True)
    customer_id = UnicodeAttribute()
    campaign_id = UnicodeAttribute()
    step_id = UnicodeAttribute()
    variant = UnicodeAttribute(null=True)
    channel = UnicodeAttribute(null=True)
    template = UnicodeAttribute(null=True)
    due_at = UnicodeAttribute()
    decided_at = UnicodeAttribute()
    provider_id = UnicodeAttribute(null=True)
    error_code = UnicodeAttribute(null=True)
    history = CompactJSONAttribute(null=True)
    survey_kind = UnicodeAttribute(null=True)
    survey_score = NumberAttribute(null=True)
    survey_at = UnicodeAttribute(null=True)
    survey_customer = UnicodeAttribute(null=True)  # set on survey SMS only
    sms_customer = UnicodeAttribute(null=True)  # set on SMS only
    # Free-text SMS replies (chalicelib.tracking.replies): the latest one's text and
    # time, and the inbound MessageSids recorded (each reply once; how many there were).
    reply = UnicodeAttribute(null=True)
    reply_at = UnicodeAttribute(null=True)
    reply_sids = UnicodeSetAttribute(null=True)
    # The suppression-list key of the address it was sent to (a keyed hash, not the
    # address): an unsubscribe or complaint suppresses that address, even if the
    # customer's contact has changed since.
    recipient_key = UnicodeAttribute(null=True)
    by_provider = ProviderIndex()
    surveys = SurveyIndex()
    sms = SmsIndex()


class StatsModel(Model):
    """Counters per campaign x variant x arm (pk) and day (sk), bumped with ADD."""

    class Meta(_Meta):
        table_name = resource_name("stats")

    pk = UnicodeAttribute(hash_key=True)
    day = UnicodeAttribute(range_key=True)
    enrolled = NumberAttribute(null=True)
    converted = NumberAttribute(null=True)
    sent = NumberAttribute(null=True)
    delivered = NumberAttribute(null=True)
    failed = NumberAttribute(null=True)
    ambiguous = NumberAttribute(null=True)
    held_out = NumberAttribute(null=True)
    suppressed = NumberAttribute(null=True)
    skipped = NumberAttribute(null=True)
    expired = NumberAttribute(null=True)
    exited = NumberAttribute(null=True)
    cancelled = NumberAttribute(null=True)
    opened = NumberAttribute(null=True)
    clicked = NumberAttribute(null=True)
    replied = NumberAttribute(null=True)
    survey_responses = NumberAttribute(null=True)
    survey_score_sum = NumberAttribute(null=True)
    promoters = NumberAttribute(null=True)
    detractors = NumberAttribute(null=True)
    # Customers (the reserved id "_customers", chalicelib.tracking.retention).
    ordered = NumberAttribute(null=True)
    customers_new = NumberAttribute(null=True)
    returned = NumberAttribute(null=True)
    reactivated = NumberAttribute(null=True)
    # Observer copies sent per step and day (pk "_observe#<campaign>#<step>#copies",
    # chalicelib.pipeline.observers): how many of the day's slots are taken.
    copies = NumberAttribute(null=True)


COUNTERS = frozenset(
    name for name, value in vars(StatsModel).items()
    if isinstance(value, NumberAttribute) and name not in ("pk", "day")
)


class EventModel(Model):
    """Processed event ids, kept for a while for idempotency."""

    class Meta(_Meta):
        table_name = resource_name("events")

    event_id = UnicodeAttribute(hash_key=True)
    type = UnicodeAttribute()
    expires_at = TTLAttribute()


class SuppressionModel(Model):
    """An address that opted out, by its keyed hash (see
    :mod:`chalicelib.store.suppression`): never the address itself."""

    class Meta(_Meta):
        table_name = resource_name("suppression")

    address_key = UnicodeAttribute(hash_key=True)  # "sms:<hex>" or "email:<hex>"
    channel = UnicodeAttribute()
    at = UnicodeAttribute()
    source = UnicodeAttribute()
    lifted_at = UnicodeAttribute(null=True)  # a START from the address, after ``at``
    # The inbound SMS (MessageSids) whose STOP or START made this entry what it is:
    # a webhook delivered again changes nothing (not even after a later START).
    message_ids = UnicodeSetAttribute(null=True)


ALL_MODELS: tuple[type[Model], ...] = (
    CustomerModel, CampaignModel, ScheduleModel, MessageModel, StatsModel, EventModel,
    SuppressionModel,
)
