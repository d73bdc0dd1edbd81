"""SOP definitions: create, edit (versions), activate, pause, archive.

A draft is edited in place. A live SOP (active or paused) is never edited: an edit that
changes its behaviour publishes version n+1, and ``in_flight`` says what happens to the
customers already running on older versions (see ``InFlightPolicy``). Editing only the
name, description or campaign changes the SOP row and publishes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime, time
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_time

from campaigns.models import (
    Campaign,
    Content,
    Enrollment,
    EnrollmentStatus,
    InFlightPolicy,
    QuietAction,
    SkipReason,
    Sop,
    SopStatus,
    SopStep,
    SopVersion,
    StepAction,
    Touchpoint,
    TouchpointStatus,
    TriggerKind,
)
from campaigns.selectors.audience import AUDIENCE_KEYS
from campaigns.services.enrollment import (
    ENROLL_CHUNK,
    EXIT_ARCHIVED,
    EXIT_VERSION_STOP,
    touchpoints_create,
)
from channels.models import Channel
from customers.models import Staff, Store, Tag
from funnel.models import Stage

MAX_STEPS = 20
MAX_OFFSET_DAYS = 3650
MAX_OFFSET_MINUTES = 60 * 24 * 365
MAX_DAYS_BEFORE = 30
MAX_ACTIVE_WITHIN_DAYS = 3650
MAX_CAP_COUNT = 100
MAX_CAP_DAYS = 365

#: Behaviour fields of a version (what a new version is made of), with their defaults.
_VERSION_DEFAULTS: dict[str, Any] = {
    "trigger_kind": None,
    "trigger_config": {},
    "audience": {},
    "quiet_start": None,
    "quiet_end": None,
    "quiet_action": QuietAction.DEFER,
    "cap_count": None,
    "cap_days": None,
    "exit_on_purchase": False,
    "exit_on_lost": True,
    "exit_stage": None,
}
_STEP_FIELDS = (
    "offset_days",
    "at_time",
    "offset_minutes",
    "action",
    "content",
    "tag",
    "instruction",
)


# --- validation ----------------------------------------------------------------------------


def _int(value: Any, lo: int, hi: int) -> int | None:
    """``value`` as a whole number in [lo, hi], or None. Booleans are not numbers here."""
    if isinstance(value, bool):
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    if str(number) != str(value).strip() and not isinstance(value, int):
        return None
    return number if lo <= number <= hi else None


def _time(value: Any) -> tuple[bool, time | None]:
    """(ok, value) for a time of day given as ``time``, "HH:MM[:SS]", or empty."""
    if value is None or value == "":
        return True, None
    if isinstance(value, time):
        return True, value.replace(tzinfo=None)
    try:
        parsed = parse_time(str(value))
    except ValueError:
        parsed = None
    return (parsed is not None), parsed


def _ids(value: Any) -> list[int] | None:
    """A list of positive ids (deduplicated, order kept), or None when malformed."""
    if not isinstance(value, list | tuple):
        return None
    out: list[int] = []
    for item in value:
        number = _int(item, 1, 2**62)
        if number is None:
            return None
        if number not in out:
            out.append(number)
    return out


def _missing(model: Any, ids: list[int]) -> list[int]:
    found = set(model.objects.filter(pk__in=ids).values_list("pk", flat=True))
    return [pk for pk in ids if pk not in found]


def _check_ids(errors: dict[str, str], field: str, value: Any, model: Any) -> list[int]:
    ids = _ids(value)
    if ids is None:
        errors[field] = "A list of ids."
        return []
    if missing := _missing(model, ids):
        errors[field] = f"Unknown ids: {', '.join(map(str, missing))}."
    return ids


def _bool(errors: dict[str, str], field: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if value in ("true", "1", 1, "on"):
        return True
    if value in ("false", "0", 0, "", "off", None):
        return False
    errors[field] = "true or false."
    return False


def _trigger_config(errors: dict[str, str], kind: Any, config: Any) -> dict[str, Any]:
    if kind not in TriggerKind.values:
        errors["trigger_kind"] = f"Unknown trigger; one of {', '.join(TriggerKind.values)}."
        return {}
    if config in (None, ""):
        config = {}
    if not isinstance(config, Mapping):
        errors["trigger_config"] = "An object."
        return {}
    allowed = {
        TriggerKind.CONTACT_ADDED: {"channel_ids"},
        TriggerKind.STAGE_ENTERED: {"stage"},
        TriggerKind.TAG_ADDED: {"tag_id"},
        TriggerKind.REPURCHASE_DUE: set(),
        TriggerKind.DATE_FIELD: {"field", "days_before"},
        TriggerKind.MANUAL: set(),
    }[TriggerKind(kind)]
    if unknown := sorted(set(config) - allowed):
        errors["trigger_config"] = f"Unknown settings for this trigger: {', '.join(unknown)}."
        return {}
    out: dict[str, Any] = {}
    if kind == TriggerKind.CONTACT_ADDED:
        ids = _check_ids(
            errors, "trigger_config.channel_ids", config.get("channel_ids", []), Channel
        )
        if ids:
            out["channel_ids"] = ids
    elif kind == TriggerKind.STAGE_ENTERED:
        stage = _int(config.get("stage"), Stage.ACTIVATION, Stage.REFERRAL)
        if stage is None:
            errors["trigger_config.stage"] = "A funnel stage from 2 (activation) to 5 (referral)."
        else:
            out["stage"] = stage
    elif kind == TriggerKind.TAG_ADDED:
        tag_id = _int(config.get("tag_id"), 1, 2**62)
        if tag_id is None or not Tag.objects.filter(pk=tag_id).exists():
            errors["trigger_config.tag_id"] = "An existing tag."
        else:
            out["tag_id"] = tag_id
    elif kind == TriggerKind.DATE_FIELD:
        if config.get("field") != "birthday":
            errors["trigger_config.field"] = 'The only date field is "birthday".'
        days = _int(config.get("days_before", 0), 0, MAX_DAYS_BEFORE)
        if days is None:
            errors["trigger_config.days_before"] = f"Days before: 0 to {MAX_DAYS_BEFORE}."
        else:
            out.update(field="birthday", days_before=days)
    return out


def _audience(errors: dict[str, str], audience: Any) -> dict[str, Any]:
    if audience in (None, ""):
        return {}
    if not isinstance(audience, Mapping):
        errors["audience"] = "An object."
        return {}
    if unknown := sorted(set(audience) - set(AUDIENCE_KEYS)):
        errors["audience"] = f"Unknown audience filters: {', '.join(unknown)}."
        return {}
    out: dict[str, Any] = {}
    for key, model in (
        ("tags_any", Tag),
        ("tags_none", Tag),
        ("channel_ids", Channel),
        ("store_ids", Store),
        ("staff_ids", Staff),
    ):
        if audience.get(key):
            ids = _check_ids(errors, f"audience.{key}", audience[key], model)
            if ids:
                out[key] = ids
    if audience.get("stages"):
        stages = _ids(audience["stages"])
        if stages is None or any(s not in Stage.values for s in stages):
            errors["audience.stages"] = "Funnel stages from 1 to 5."
        else:
            out["stages"] = stages
    days: dict[str, date] = {}
    for key in ("acquired_from", "acquired_to"):
        value = audience.get(key)
        if value in (None, ""):
            continue
        try:
            days[key] = value if isinstance(value, date) else date.fromisoformat(str(value))
        except ValueError:
            errors[f"audience.{key}"] = "A date (YYYY-MM-DD)."
            continue
        out[key] = days[key].isoformat()
    if len(days) == 2 and days["acquired_from"] > days["acquired_to"]:
        errors["audience.acquired_to"] = "Must not be before acquired_from."
    if audience.get("active_within_days") not in (None, ""):
        n = _int(audience["active_within_days"], 1, MAX_ACTIVE_WITHIN_DAYS)
        if n is None:
            errors["audience.active_within_days"] = f"Days: 1 to {MAX_ACTIVE_WITHIN_DAYS}."
        else:
            out["active_within_days"] = n
    return out


def _steps(errors: dict[str, str], steps: Any, *, stored: bool = False) -> list[dict[str, Any]]:
    """Validated step rows. ``stored``: the steps of the current version, carried over by
    an edit that did not touch them (content archived since does not block the edit)."""
    if not isinstance(steps, list | tuple) or not 1 <= len(steps) <= MAX_STEPS:
        errors["steps"] = f"From 1 to {MAX_STEPS} steps."
        return []
    contents = {
        c.pk: c
        for c in Content.objects.filter(
            pk__in=[s.get("content") for s in steps if isinstance(s, Mapping) and s.get("content")]
        )
        if isinstance(c.pk, int)
    }
    out: list[dict[str, Any]] = []
    for i, step in enumerate(steps):
        where = f"steps[{i}]"
        if not isinstance(step, Mapping):
            errors[where] = "An object."
            continue
        if unknown := sorted(set(step) - set(_STEP_FIELDS)):
            errors[where] = f"Unknown step fields: {', '.join(unknown)}."
            continue
        row: dict[str, Any] = {"position": i}
        days = _int(step.get("offset_days", 0) or 0, 0, MAX_OFFSET_DAYS)
        if days is None:
            errors[f"{where}.offset_days"] = f"Day: 0 to {MAX_OFFSET_DAYS}."
        row["offset_days"] = days or 0
        ok, at_time = _time(step.get("at_time"))
        if not ok:
            errors[f"{where}.at_time"] = "A time of day (HH:MM)."
        row["at_time"] = at_time
        minutes = _int(step.get("offset_minutes", 0) or 0, 0, MAX_OFFSET_MINUTES)
        if minutes is None:
            errors[f"{where}.offset_minutes"] = f"Minutes: 0 to {MAX_OFFSET_MINUTES}."
        elif minutes and at_time is not None:
            errors[f"{where}.offset_minutes"] = "Either a time of day or minutes, not both."
        row["offset_minutes"] = minutes or 0
        action = step.get("action")
        if action not in StepAction.values:
            errors[f"{where}.action"] = f"One of {', '.join(StepAction.values)}."
            continue
        row["action"] = action
        content_id = step.get("content") or None
        content = None
        if content_id is not None:
            content = contents.get(_int(content_id, 1, 2**62) or 0)
            if content is None:
                errors[f"{where}.content"] = "Unknown content."
            elif content.is_archived and not stored:
                errors[f"{where}.content"] = "This content is archived."
        elif action == StepAction.WECOM_MESSAGE:
            errors[f"{where}.content"] = "A WeCom message needs content."
        row["content_id"] = content.pk if content is not None else None
        tag_id = step.get("tag") or None
        row["tag_id"] = None
        if action == StepAction.ADD_TAG:
            tag = _int(tag_id, 1, 2**62) if tag_id is not None else None
            if tag is None or not Tag.objects.filter(pk=tag).exists():
                errors[f"{where}.tag"] = "Adding a tag needs an existing tag."
            row["tag_id"] = tag
        instruction = str(step.get("instruction") or "").strip()
        if len(instruction) > 255:
            errors[f"{where}.instruction"] = "At most 255 characters."
        if action == StepAction.TODO and not instruction and content is None:
            errors[f"{where}.instruction"] = "A to-do needs an instruction or content."
        row["instruction"] = instruction
        out.append(row)
    return out


def _validated(
    values: Mapping[str, Any], *, stored_steps: bool = False
) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """(sop fields, version fields, steps) from a full definition, or ValidationError."""
    errors: dict[str, str] = {}
    name = str(values.get("name") or "").strip()
    if not name:
        errors["name"] = "Required."
    elif len(name) > 128:
        errors["name"] = "At most 128 characters."
    campaign_id = values.get("campaign")
    if isinstance(campaign_id, Campaign):
        campaign_id = campaign_id.pk
    if campaign_id not in (None, ""):
        campaign_id = _int(campaign_id, 1, 2**62)
        if campaign_id is None or not Campaign.objects.filter(pk=campaign_id).exists():
            errors["campaign"] = "Unknown campaign."
    else:
        campaign_id = None
    sop = {
        "name": name,
        "description": str(values.get("description") or ""),
        "campaign_id": campaign_id,
    }
    kind = values.get("trigger_kind")
    version: dict[str, Any] = {
        "trigger_kind": kind,
        "trigger_config": _trigger_config(errors, kind, values.get("trigger_config")),
        "audience": _audience(errors, values.get("audience")),
    }
    ok_start, quiet_start = _time(values.get("quiet_start"))
    ok_end, quiet_end = _time(values.get("quiet_end"))
    if not ok_start:
        errors["quiet_start"] = "A time of day (HH:MM)."
    if not ok_end:
        errors["quiet_end"] = "A time of day (HH:MM)."
    if ok_start and ok_end:
        if (quiet_start is None) != (quiet_end is None):
            errors["quiet_end" if quiet_end is None else "quiet_start"] = (
                "Quiet hours need both a start and an end."
            )
        elif quiet_start is not None and quiet_start == quiet_end:
            errors["quiet_end"] = "Quiet hours must end at another time than they start."
    quiet_action = values.get("quiet_action") or QuietAction.DEFER
    if quiet_action not in QuietAction.values:
        errors["quiet_action"] = f"One of {', '.join(QuietAction.values)}."
    version.update(quiet_start=quiet_start, quiet_end=quiet_end, quiet_action=quiet_action)
    cap_count, cap_days = values.get("cap_count"), values.get("cap_days")
    cap_count = None if cap_count in (None, "") else cap_count
    cap_days = None if cap_days in (None, "") else cap_days
    if (cap_count is None) != (cap_days is None):
        errors["cap_days" if cap_days is None else "cap_count"] = (
            "A frequency cap needs both a count and a window in days."
        )
    if cap_count is not None:
        cap_count = _int(cap_count, 1, MAX_CAP_COUNT)
        if cap_count is None:
            errors["cap_count"] = f"Messages: 1 to {MAX_CAP_COUNT}."
    if cap_days is not None:
        cap_days = _int(cap_days, 1, MAX_CAP_DAYS)
        if cap_days is None:
            errors["cap_days"] = f"Days: 1 to {MAX_CAP_DAYS}."
    version.update(cap_count=cap_count, cap_days=cap_days)
    version["exit_on_purchase"] = _bool(errors, "exit_on_purchase", values.get("exit_on_purchase"))
    version["exit_on_lost"] = _bool(errors, "exit_on_lost", values.get("exit_on_lost", True))
    exit_stage = values.get("exit_stage")
    if exit_stage not in (None, ""):
        exit_stage = _int(exit_stage, Stage.ACTIVATION, Stage.REFERRAL)
        if exit_stage is None:
            errors["exit_stage"] = "A funnel stage from 2 to 5."
        elif kind == TriggerKind.STAGE_ENTERED and exit_stage <= version["trigger_config"].get(
            "stage", 0
        ):
            # Everyone enrolled has just reached the trigger stage: they would exit at once.
            errors["exit_stage"] = "Must be a later stage than the trigger's."
    else:
        exit_stage = None
    version["exit_stage"] = exit_stage
    in_flight = values.get("in_flight") or InFlightPolicy.KEEP
    if in_flight not in InFlightPolicy.values:
        errors["in_flight"] = f"One of {', '.join(InFlightPolicy.values)}."
    version["in_flight"] = in_flight
    steps = _steps(errors, values.get("steps"), stored=stored_steps)
    if errors:
        raise ValidationError(errors)
    return sop, version, steps


# --- reading a stored definition back --------------------------------------------------------


def _version_values(version: SopVersion) -> dict[str, Any]:
    return {name: getattr(version, name) for name in _VERSION_DEFAULTS} | {
        "in_flight": version.in_flight
    }


def _step_values(version: SopVersion) -> list[dict[str, Any]]:
    return [
        {
            "offset_days": s.offset_days,
            "at_time": s.at_time,
            "offset_minutes": s.offset_minutes,
            "action": s.action,
            "content": s.content_id,
            "tag": s.tag_id,
            "instruction": s.instruction,
        }
        for s in version.steps.order_by("position")
    ]


def _definition(sop: Sop, version: SopVersion) -> dict[str, Any]:
    return {
        "name": sop.name,
        "description": sop.description,
        "campaign": sop.campaign_id,
        **_version_values(version),
        "steps": _step_values(version),
    }


def _comparable(version_fields: Mapping[str, Any], steps: Sequence[Mapping[str, Any]]) -> Any:
    fields = {k: v for k, v in version_fields.items() if k != "in_flight"}
    return fields, [dict(s) for s in steps]


def _user(user: Any) -> Any:
    return user if isinstance(user, get_user_model()) and user.pk else None


def _write_steps(version: SopVersion, steps: Sequence[Mapping[str, Any]]) -> list[SopStep]:
    return SopStep.objects.bulk_create([SopStep(version=version, **row) for row in steps])


# --- services ------------------------------------------------------------------------------


@transaction.atomic
def sop_create(*, data: Mapping[str, Any], user: Any) -> Sop:
    """A draft SOP with version 1 and its steps (nothing runs until activation)."""
    sop_fields, version_fields, steps = _validated({**_VERSION_DEFAULTS, **data})
    sop = Sop.objects.create(**sop_fields, status=SopStatus.DRAFT, created_by=_user(user))
    version = SopVersion.objects.create(sop=sop, number=1, created_by=_user(user), **version_fields)
    _write_steps(version, steps)
    sop.current_version = version
    sop.save(update_fields=["current_version", "updated_at"])
    return sop


@transaction.atomic
def sop_update(*, sop: Sop, data: Mapping[str, Any], user: Any) -> SopVersion:
    """Apply ``data`` (a partial definition: missing keys keep their current value,
    ``steps`` replaces every step) and return the version now current.

    A draft's version is edited in place. An active or paused SOP whose behaviour
    changes gets version n+1 (published now), and ``data["in_flight"]`` decides what
    happens to customers in flight on older versions: *keep* (they finish on their own
    version's touchpoints), *migrate* (their pending touchpoints are superseded and they
    get the new version's steps still in the future, counted from their own trigger), or
    *stop* (pending touchpoints superseded, enrolment exited ``version_stop``).
    """
    given = sop
    sop = Sop.objects.select_for_update().get(pk=sop.pk)
    if sop.status == SopStatus.ARCHIVED:
        raise ValidationError({"status": "An archived SOP cannot be edited."})
    version = _update(sop, data, user)
    # The caller's instance follows, so that enrolling with it next uses the new version.
    given.refresh_from_db()
    return version


def _update(sop: Sop, data: Mapping[str, Any], user: Any) -> SopVersion:
    current = sop.current_version
    assert current is not None
    merged = {**_definition(sop, current), **data}
    if "in_flight" not in data:
        merged["in_flight"] = InFlightPolicy.KEEP
    sop_fields, version_fields, steps = _validated(merged, stored_steps="steps" not in data)
    changed_sop = [f for f, v in sop_fields.items() if getattr(sop, f) != v]
    for f in changed_sop:
        setattr(sop, f, sop_fields[f])
    if changed_sop:
        sop.save(update_fields=[*changed_sop, "updated_at"])
    if sop.status == SopStatus.DRAFT:
        for f, v in version_fields.items():
            setattr(current, f, v)
        current.save()
        if "steps" in data:
            # A draft never enrolled anyone, so no touchpoint refers to its steps.
            current.steps.all().delete()
            _write_steps(current, steps)
        return current
    stored_steps = [
        {k: v for k, v in s.items() if k != "position"} for s in _steps({}, _step_values(current))
    ]
    new_steps = [{k: v for k, v in s.items() if k != "position"} for s in steps]
    if _comparable(version_fields, new_steps) == _comparable(
        _version_values(current), stored_steps
    ):
        return current  # only the name, description or campaign changed
    now = timezone.now()
    version = SopVersion.objects.create(
        sop=sop,
        number=current.number + 1,
        published_at=now,
        created_by=_user(user),
        **version_fields,
    )
    written = _write_steps(version, steps)
    sop.current_version = version
    sop.save(update_fields=["current_version", "updated_at"])
    _apply_in_flight(sop=sop, version=version, steps=written, now=now)
    return version


def _apply_in_flight(
    *, sop: Sop, version: SopVersion, steps: Sequence[SopStep], now: datetime
) -> None:
    policy = version.in_flight
    if policy == InFlightPolicy.KEEP:
        return
    older = Enrollment.objects.filter(sop=sop, status=EnrollmentStatus.ACTIVE).exclude(
        version=version
    )
    # Only rows still waiting: a claimed touchpoint is being dispatched right now and
    # its outcome will be recorded as usual.
    Touchpoint.objects.filter(
        sop=sop,
        status=TouchpointStatus.PENDING,
        enrollment__status=EnrollmentStatus.ACTIVE,
    ).exclude(step__version=version).update(
        status=TouchpointStatus.SKIPPED, skip_reason=SkipReason.SUPERSEDED, updated_at=now
    )
    if policy == InFlightPolicy.STOP:
        older.update(status=EnrollmentStatus.EXITED, exit_reason=EXIT_VERSION_STOP, exited_at=now)
        return
    # Migrate, keyset over the enrolments so that 100,000 in flight stay bounded.
    last = 0
    rows = older.order_by("id").values_list("id", "customer_id", "trigger_at", "campaign_id")
    while True:
        chunk = list(rows.filter(id__gt=last)[:ENROLL_CHUNK])
        if not chunk:
            break
        touchpoints_create(sop=sop, version=version, steps=steps, enrollments=chunk, after=now)
        last = chunk[-1][0]
        if len(chunk) < ENROLL_CHUNK:
            break
    older.update(version=version)


@transaction.atomic
def sop_activate(*, sop: Sop, user: Any) -> Sop:
    """Start (or resume) the SOP: from now on its triggers enrol customers.

    ``activated_at`` is set to now on every activation, resuming after a pause included.
    Events announced while the SOP was paused were never enrolled; a backdated fact
    arriving after the resume (an import of last week's orders) must not be treated
    differently from them, and a "welcome" a week late is worse than none. Operators who
    want the paused period covered enrol that segment manually.
    """
    del user
    sop = Sop.objects.select_for_update().get(pk=sop.pk)
    if sop.status == SopStatus.ACTIVE:
        return sop
    if sop.status == SopStatus.ARCHIVED:
        raise ValidationError({"status": "An archived SOP cannot be activated."})
    version = sop.current_version
    assert version is not None
    archived = list(
        version.steps.filter(content__is_archived=True).values_list("position", flat=True)
    )
    if archived:
        raise ValidationError(
            {f"steps[{p}].content": "This content is archived." for p in archived}
        )
    now = timezone.now()
    if version.published_at is None:
        version.published_at = now
        version.save(update_fields=["published_at"])
    sop.status = SopStatus.ACTIVE
    sop.activated_at = now
    sop.save(update_fields=["status", "activated_at", "updated_at"])
    return sop


@transaction.atomic
def sop_pause(*, sop: Sop) -> Sop:
    """Stop enrolling and sending. Pending touchpoints stay pending (the dispatcher does
    not claim touchpoints of a SOP that is not active), so resuming continues them; the
    ones that came due meanwhile go out on resume (quiet hours and the quota still apply
    at dispatch)."""
    updated = Sop.objects.filter(pk=sop.pk, status=SopStatus.ACTIVE).update(
        status=SopStatus.PAUSED, updated_at=timezone.now()
    )
    sop.refresh_from_db()
    if not updated and sop.status not in (SopStatus.PAUSED,):
        raise ValidationError({"status": "Only an active SOP can be paused."})
    return sop


@transaction.atomic
def sop_archive(*, sop: Sop) -> Sop:
    """End the SOP for good: pending touchpoints are skipped (reason *paused*, "the SOP
    was archived") and customers in flight exit (reason ``archived``)."""
    sop = Sop.objects.select_for_update().get(pk=sop.pk)
    if sop.status == SopStatus.ARCHIVED:
        return sop
    now = timezone.now()
    Touchpoint.objects.filter(sop=sop, status=TouchpointStatus.PENDING).update(
        status=TouchpointStatus.SKIPPED, skip_reason=SkipReason.PAUSED, updated_at=now
    )
    Enrollment.objects.filter(sop=sop, status=EnrollmentStatus.ACTIVE).update(
        status=EnrollmentStatus.EXITED, exit_reason=EXIT_ARCHIVED, exited_at=now
    )
    sop.status = SopStatus.ARCHIVED
    sop.save(update_fields=["status", "updated_at"])
    return sop
