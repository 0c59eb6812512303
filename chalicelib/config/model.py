"""The campaign model: what a marketer writes in ``campaigns/*.json``.

Pydantic validates the file and generates the JSON Schema checked in at
``campaigns/schema.json``; :mod:`chalicelib.config.compiled` turns a validated
campaign into the runtime form the decision core uses (parsed durations,
compiled rules).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    WithJsonSchema,
    model_validator,
)

from chalicelib.config.durations import SCHEMA_DURATION_PATTERN, parse_duration

ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
EVENT_TYPE_PATTERN = r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$"
TEMPLATE_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
# [0-9], not \d: pydantic's \d also takes other scripts' digits ("1\u0660:00"), which the
# schema (ECMA-262) refuses and time.fromisoformat cannot read.
LOCAL_TIME_PATTERN = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"
E164_PATTERN = r"^\+[1-9][0-9]{6,14}$"
EMAIL_PATTERN = r"^[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\"]+$"
MAX_OBSERVERS = 10
MAX_STEPS = 20
MAX_VARIANTS = 10


def _whole(value: Any) -> Any:
    """``10.0`` as ``10``: JSON Schema's ``integer`` (and so an editor checking against
    campaigns/schema.json) accepts a number with a zero fraction; validation is strict
    otherwise (``"10"`` and ``true`` stay refused)."""
    if value.__class__ is float and value.is_integer():
        return int(value)
    return value


# A whole number as JSON Schema's "integer" means it: 10 or 10.0, not 10.5.
WholeNumber = Annotated[int, BeforeValidator(_whole)]

ReentryPolicy = Literal["once", "once_per_window", "once_per_order", "always"]
REENTRY_POLICIES: tuple[str, ...] = get_args(ReentryPolicy)

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")



def _check_duration(value: str) -> str:
    parse_duration(value)
    return value


def _check_positive_duration(value: str) -> str:
    if not parse_duration(value):
        raise ValueError(f"duration {value!r} must be longer than zero")
    return value


Duration = Annotated[
    str,
    AfterValidator(_check_duration),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": SCHEMA_DURATION_PATTERN,
            "description": "ISO 8601 duration in weeks/days/hours/minutes/seconds, "
            "e.g. P2D, P3W, PT12H.",
            "examples": ["P2D", "P3W", "PT6H"],
        }
    ),
]
# A window, a timeout or an idle spell: zero would mean "never" or "always".
PositiveDuration = Annotated[
    str,
    AfterValidator(_check_duration),
    AfterValidator(_check_positive_duration),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": SCHEMA_DURATION_PATTERN,
            "not": {"pattern": r"^P(0+W)?(0+D)?(T(0+H)?(0+M)?(0+S)?)?$"},
            "description": "ISO 8601 duration longer than zero, in weeks/days/hours/minutes/"
            "seconds, e.g. P2D, P3W, PT12H.",
            "examples": ["P2D", "P3W", "PT6H"],
        }
    ),
]
Rule = Annotated[
    Any,
    Field(
        description="A JSON Logic rule (https://jsonlogic.com) plus Aftercare's domain "
        "operators; evaluated against {customer, event, now}. See docs/rules.md.",
    ),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EventTrigger(_Strict):
    """Enroll when an event of this type arrives (e.g. ``order.delivered``)."""

    event: str = Field(pattern=EVENT_TYPE_PATTERN)


class DateTrigger(_Strict):
    """Enroll every year on the anniversary of a date on the customer profile."""

    date: Literal["customer.birthday", "customer.first_order_at"] = Field(
        description="The profile date whose anniversary triggers the campaign."
    )
    recurrence: Literal["yearly"] = "yearly"
    leap_day: Literal["feb28", "mar1"] = Field(
        "feb28",
        description="Where a 29 February date is celebrated in non-leap years.",
    )


class IdleTrigger(_Strict):
    """Enroll when a customer has placed no order for this long since their last one."""

    idle: PositiveDuration


def _trigger_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        for key in ("event", "date", "idle"):
            if key in value:
                return key
        return None
    if isinstance(value, BaseModel):
        return {EventTrigger: "event", DateTrigger: "date", IdleTrigger: "idle"}.get(type(value))
    return None


Trigger = Annotated[
    Annotated[EventTrigger, Tag("event")]
    | Annotated[DateTrigger, Tag("date")]
    | Annotated[IdleTrigger, Tag("idle")],
    Discriminator(
        _trigger_kind,
        custom_error_type="trigger_kind",
        custom_error_message="trigger needs one of 'event', 'date' or 'idle'",
    ),
]
TRIGGER_TAGS = frozenset({"event", "date", "idle"})


class Step(_Strict):
    id: str = Field(pattern=ID_PATTERN)
    after: Duration = Field("PT0S", description="Delay after the enrollment time.")
    at: str | None = Field(
        None,
        pattern=LOCAL_TIME_PATTERN,
        description="Local send time HH:MM in the customer's timezone.",
    )
    weekdays: list[Weekday] | None = Field(
        None, min_length=1, description="Allowed local weekdays; the step moves to the next one."
    )
    channel: Literal["sms", "email"]
    template: str = Field(pattern=TEMPLATE_PATTERN)
    condition: Rule | None = Field(
        None, description="Checked at send time; when false the step is skipped."
    )
    survey: Literal["csat", "nps", "ces"] | None = None
    expire_after: PositiveDuration | None = Field(
        None,
        description="Drop the step, with a reason, when its send time has passed by more "
        "than this (late event, outage).",
    )


class Exit(_Strict):
    event: str | None = Field(None, pattern=EVENT_TYPE_PATTERN)
    events: list[Annotated[str, Field(pattern=EVENT_TYPE_PATTERN)]] = Field(default_factory=list)
    rule: Rule | None = Field(
        None, description="Checked at send time against the current profile: true exits."
    )

    @model_validator(mode="after")
    def _something(self) -> Exit:
        if self.event is None and not self.events and self.rule is None:
            raise ValueError("exit needs 'event', 'events' or 'rule'")
        return self

    @property
    def all_events(self) -> tuple[str, ...]:
        return tuple(([self.event] if self.event else []) + list(self.events))


class Goal(_Strict):
    event: str = Field(pattern=EVENT_TYPE_PATTERN)
    within: PositiveDuration


class Variant(_Strict):
    id: str = Field(pattern=ID_PATTERN)
    weight: WholeNumber = Field(ge=1, le=10_000)
    templates: dict[str, Annotated[str, Field(pattern=TEMPLATE_PATTERN)]] = Field(
        default_factory=dict,
        description="Step id -> template used instead of the step's own for this variant.",
    )


class Reentry(_Strict):
    policy: ReentryPolicy = "once_per_order"
    window: PositiveDuration | None = Field(
        None, description="Only with policy 'once_per_window' (and required by it).")

    @model_validator(mode="after")
    def _window(self) -> Reentry:
        if self.policy == "once_per_window" and self.window is None:
            raise ValueError("policy 'once_per_window' needs 'window'")
        return self


class Observers(_Strict):
    """Staff who get copies of sampled sends ("mystery shoppers", docs/campaigns.md)."""

    sms: list[Annotated[str, Field(pattern=E164_PATTERN)]] = Field(
        default_factory=list, max_length=MAX_OBSERVERS,
        description="Phones (E.164) that get copies of the campaign's SMS.")
    email: list[Annotated[str, Field(pattern=EMAIL_PATTERN, max_length=254)]] = Field(
        default_factory=list, max_length=MAX_OBSERVERS,
        description="Addresses that get copies of the campaign's email.")
    per_day: WholeNumber = Field(1, ge=1, le=100, description=(
        "Copies per step and UTC day: of the step's first sends that day."))

    @model_validator(mode="after")
    def _someone(self) -> Observers:
        if not self.sms and not self.email:
            raise ValueError("give at least one address in 'sms' or 'email'")
        return self


class Campaign(_Strict):
    schema_: str | None = Field(None, alias="$schema")
    id: str = Field(pattern=ID_PATTERN)
    name: str = Field(min_length=1, max_length=200)
    description: str | None = None
    status: Literal["active", "paused", "draft", "archived"] = "active"
    trigger: Trigger
    audience: Rule | None = Field(None, description="Who enrolls; absent means everyone.")
    steps: list[Step] = Field(min_length=1, max_length=MAX_STEPS)
    exit: Exit | None = None
    goal: Goal | None = None
    holdout_percent: float = Field(0, ge=0, le=50)
    variants: list[Variant] = Field(default_factory=list, max_length=MAX_VARIANTS)
    reentry: Reentry | None = Field(
        None,
        description="Event triggers only (default once_per_order). Date triggers enroll once "
        "per yearly occurrence, idle triggers once per idle spell.",
    )
    priority: WholeNumber = Field(100, ge=0, le=1000, description="Lower runs first.")
    observers: Observers | None = Field(
        None, description="Staff who get copies of sampled sends; never counted in stats.")

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> Campaign:
        # The loader asks for these as separate problems, each with its path.
        if not (info.context or {}).get("defer_consistency"):
            for _loc, message in consistency_problems(self.model_dump(by_alias=True)):
                raise ValueError(message)
        return self

    def templates_used(self) -> set[tuple[str, str]]:
        """(template name, channel) pairs this campaign can send."""
        used: set[tuple[str, str]] = {(s.template, str(s.channel)) for s in self.steps}
        by_id = {s.id: s for s in self.steps}
        for variant in self.variants:
            for step_id, name in variant.templates.items():
                used.add((name, by_id[step_id].channel))
        return used


def _items(data: Mapping[str, Any], key: str, limit: int) -> list[Mapping[str, Any]]:
    """``data[key]``'s objects when it is a list (cut to what the model allows; other
    items are the schema's problems)."""
    items = data.get(key)
    if not isinstance(items, list):
        return []
    return [item if isinstance(item, Mapping) else {} for item in items[:limit]]


def _first_of_each_id(field: str, items: list[Mapping[str, Any]],
                      problems: list[tuple[tuple[str | int, ...], str]]) -> dict[str, int]:
    """Index of each id's first use in ``field``; later uses are duplicate problems."""
    first: dict[str, int] = {}
    kind = field.rstrip("s")
    for i, item in enumerate(items):
        item_id = item.get("id")
        if not isinstance(item_id, str):
            continue
        if item_id in first:
            problems.append(((field, i, "id"), f"duplicate {kind} id {item_id!r} "
                             f"(also $.{field}[{first[item_id]}].id)"))
        first.setdefault(item_id, i)
    return first


def consistency_problems(data: Mapping[str, Any]) -> list[tuple[tuple[str | int, ...], str]]:
    """Rules that span fields, as ``(location, message)``: duplicate ids, stray references.

    ``data`` is the campaign as JSON (a validated campaign's ``model_dump``, or the raw
    document of one the schema refused for another reason, so that one run lists every
    problem): what a rule needs but cannot read is left to the schema's messages. The
    location is a pydantic-style tuple (``("steps", 1, "id")``) so the loader reports
    ``$.steps[1].id``.
    """
    problems: list[tuple[tuple[str | int, ...], str]] = []
    steps = _items(data, "steps", MAX_STEPS)
    first_step = _first_of_each_id("steps", steps, problems)
    variants = _items(data, "variants", MAX_VARIANTS)
    _first_of_each_id("variants", variants, problems)
    raw_steps = data.get("steps")
    if (isinstance(raw_steps, list) and 0 < len(raw_steps) <= MAX_STEPS
            and all(isinstance(step.get("id"), str) for step in steps)):  # else a cascade
        for j, variant in enumerate(variants):
            templates = variant.get("templates")
            for step_id in templates if isinstance(templates, Mapping) else ():
                if step_id not in first_step:
                    problems.append((("variants", j, "templates", step_id),
                                     f"variant {variant.get('id')!r} names unknown step "
                                     f"{step_id!r} (steps: {', '.join(sorted(first_step))})"))
    reentry = data.get("reentry")
    kind = _trigger_kind(data.get("trigger"))
    if isinstance(reentry, Mapping) and kind is not None:
        policy = reentry.get("policy", "once_per_order")
        if kind != "event":
            problems.append((("reentry",), "reentry applies to event triggers only"))
        elif reentry.get("window") is not None and policy in REENTRY_POLICIES \
                and policy != "once_per_window":
            problems.append((("reentry", "window"), "'window' applies only to policy "
                             f"'once_per_window', not {policy!r}"))
    return problems


def json_schema() -> dict[str, Any]:
    """The JSON Schema for campaign files (checked in at campaigns/schema.json)."""
    schema = Campaign.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://aftercare.dev/schema/campaign.json"
    schema["title"] = "Aftercare campaign"
    return schema

