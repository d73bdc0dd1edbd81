"""Triggers, audience, enrolment (touchpoint rows) and exit conditions.

Enrolling is set-based and idempotent. A trigger yields *occurrences*
``(customer_id, trigger_key, trigger_at)``; ``sop_enroll`` narrows them to the current
version's audience with one ``id IN (...)`` query per chunk, decides the campaign holdout,
and writes the enrolments and their touchpoints with one ``INSERT ... SELECT`` each per
chunk (rows passed as a single JSON parameter, ``ON CONFLICT DO NOTHING ... RETURNING``).
The unique (sop, customer, trigger_key) constraint turns a replayed announcement or a
re-scan into a no-op, and the unique (enrollment, step) constraint does the same for
touchpoints. Chunks keep memory and statement size bounded at 100,000 customers, and the
number of statements does not depend on the number of rows inside a chunk (Django's
``bulk_create`` on SQLite would split every 111 rows, ``max_query_params`` being 999).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from itertools import islice
from types import SimpleNamespace
from typing import Any, TypeVar

from django.db import connections, models, router, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from campaigns.models import (
    Enrollment,
    EnrollmentStatus,
    QuietAction,
    SkipReason,
    Sop,
    SopStatus,
    SopStep,
    SopVersion,
    StepAction,
    Touchpoint,
    TouchpointKind,
    TouchpointStatus,
    TriggerKind,
)
from campaigns.selectors.audience import audience_qs
from campaigns.services.campaigns import campaign_assign
from campaigns.services.schedule import corp_tz, quiet_hours_end, step_due_at
from customers.models import Customer, CustomerStatus, CustomerTag, Order, OrderStatus
from funnel.models import Milestones, StageChange

#: Customers enrolled per chunk: one audience query, one enrolment INSERT and one
#: touchpoint INSERT each (touchpoint rows are split further by ``_INSERT_ROWS``).
ENROLL_CHUNK = 10_000
#: Rows per INSERT statement (its JSON parameter stays a few megabytes).
_INSERT_ROWS = 50_000

#: Touchpoint kind per step action.
STEP_KIND = {
    StepAction.WECOM_MESSAGE: TouchpointKind.WECOM_MESSAGE,
    StepAction.TODO: TouchpointKind.TODO,
    StepAction.ADD_TAG: TouchpointKind.ADD_TAG,
}

#: Exit reasons written to ``Enrollment.exit_reason``.
EXIT_LOST = "lost"
EXIT_BOUGHT = "bought"
EXIT_STAGE = "reached_stage"
EXIT_VERSION_STOP = "version_stop"
EXIT_ARCHIVED = "archived"

# The funnel's "due for repurchase" list filters by the reader's visibility; the engine
# reads as the system, which sees every customer (an operator in ``scrm.roles`` terms).
_SYSTEM = SimpleNamespace(is_authenticated=True, is_active=True, is_superuser=True)

_T = TypeVar("_T")


@dataclass
class EnrollResult:
    enrolled: int = 0
    holdout: int = 0
    touchpoints: int = 0
    #: Already enrolled for that trigger occurrence, or outside the audience.
    skipped: int = 0

    def add(self, other: EnrollResult) -> None:
        self.enrolled += other.enrolled
        self.holdout += other.holdout
        self.touchpoints += other.touchpoints
        self.skipped += other.skipped


def chunks(items: Iterable[_T], size: int) -> Iterator[list[_T]]:
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


def _local_date(at: datetime) -> date:
    return at.astimezone(corp_tz()).date()


# --- set-based INSERT ... SELECT from one JSON parameter ---------------------------------


def insert_json(
    model: type[models.Model],
    *,
    const: dict[str, Any],
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    returning: Sequence[str] = (),
) -> list[tuple[Any, ...]]:
    """``INSERT INTO model (const..., columns...) SELECT ... ON CONFLICT DO NOTHING``
    with the varying ``columns`` of ``rows`` passed as one JSON array parameter.

    Returns the ``returning`` columns of the rows actually inserted (conflicting rows are
    skipped silently, which is what makes enrolment idempotent). Every concrete column
    not named gets its field default, as ``Model.save`` would store it.
    """
    if not rows:
        return []
    connection = connections[router.db_for_write(model)]
    if connection.vendor not in ("postgresql", "sqlite"):  # pragma: no cover - other DBs
        raise NotImplementedError(connection.vendor)
    qn = connection.ops.quote_name
    meta = model._meta
    now = timezone.now()
    values = dict(const)
    for f in meta.concrete_fields:
        if f.primary_key or f.attname in values or f.attname in columns:
            continue
        auto = getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False)
        values[f.attname] = now if auto else f.get_default()
    fields = {f.attname: f for f in meta.concrete_fields}
    const_sql = [
        f"CAST(%s AS {fields[name].db_type(connection)})"
        if connection.vendor == "postgresql"
        else "%s"
        for name in values
    ]
    const_params = [fields[name].get_db_prep_save(v, connection) for name, v in values.items()]
    out: list[list[Any]] = []
    for row in rows:
        encoded: list[Any] = []
        for name, value in zip(columns, row, strict=True):
            if isinstance(value, datetime):
                # SQLite stores naive UTC text; PostgreSQL parses ISO with its offset.
                value = (
                    value.isoformat()
                    if connection.vendor == "postgresql"
                    else fields[name].get_db_prep_save(value, connection)
                )
            encoded.append(value)
        out.append(encoded)
    if connection.vendor == "postgresql":
        source = "jsonb_array_elements(%s::jsonb) AS j(v)"
        varying = [
            f"CAST(v->>{i} AS {fields[name].db_type(connection)})" for i, name in enumerate(columns)
        ]
    else:
        source = "json_each(%s) AS j"
        varying = [f"json_extract(j.value, '$[{i}]')" for i in range(len(columns))]
    names = ", ".join(qn(fields[n].column) for n in (*values, *columns))
    sql = (
        f"INSERT INTO {qn(meta.db_table)} ({names}) "
        f"SELECT {', '.join((*const_sql, *varying))} FROM {source} "
        # WHERE true: SQLite reads "ON" after a FROM as a join constraint otherwise.
        "WHERE true ON CONFLICT DO NOTHING"
    )
    if returning:
        sql += " RETURNING " + ", ".join(qn(fields[n].column) for n in returning)
    with connection.cursor() as cursor:
        cursor.execute(sql, [*const_params, json.dumps(out)])
        if not returning:
            return []
        result = [tuple(r) for r in cursor.fetchall()]
    converters = [fields[n] for n in returning]
    return [
        tuple(
            f.to_python(v) if not isinstance(f, models.DateTimeField) else _db_datetime(v)
            for f, v in zip(converters, r, strict=True)
        )
        for r in result
    ]


def _db_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if timezone.is_aware(value) else value.replace(tzinfo=UTC)
    parsed = datetime.fromisoformat(str(value))
    return parsed if timezone.is_aware(parsed) else parsed.replace(tzinfo=UTC)


# --- touchpoints for enrolments ------------------------------------------------------------


def touchpoint_due_at(*, step: SopStep, version: SopVersion, trigger_at: datetime) -> datetime:
    """The step's due time, deferred to the end of the version's quiet hours when its
    action is *defer*. With *skip* the time stays: the dispatcher skips the touchpoint
    (reason ``quiet_hours``) when it comes due inside them."""
    due = step_due_at(step=step, trigger_at=trigger_at)
    if (
        version.quiet_action == QuietAction.DEFER
        and version.quiet_start is not None
        and version.quiet_end is not None
    ):
        due = quiet_hours_end(due, start=version.quiet_start, end=version.quiet_end)
    return due


def touchpoints_create(
    *,
    sop: Sop,
    version: SopVersion,
    steps: Sequence[SopStep],
    enrollments: Sequence[tuple[int, int, datetime, int | None]],
    after: datetime | None = None,
) -> int:
    """Pending touchpoints of ``steps`` for ``enrollments`` (``(id, customer_id,
    trigger_at, campaign_id)``); with ``after``, only steps whose own due time (before
    quiet hours) is later than it. Returns the number of rows inserted."""
    due_cache: dict[tuple[datetime, int], tuple[datetime, datetime]] = {}
    inserted = 0
    by_campaign: dict[int | None, list[tuple[Any, ...]]] = {}
    for enrollment_id, customer_id, trigger_at, campaign_id in enrollments:
        for step in steps:
            key = (trigger_at, step.pk)
            if key not in due_cache:
                due_cache[key] = (
                    step_due_at(step=step, trigger_at=trigger_at),
                    touchpoint_due_at(step=step, version=version, trigger_at=trigger_at),
                )
            raw, due = due_cache[key]
            if after is not None and raw <= after:
                continue
            by_campaign.setdefault(campaign_id, []).append(
                (enrollment_id, step.pk, customer_id, STEP_KIND[StepAction(step.action)], due)
            )
    for campaign_id, rows in by_campaign.items():
        for chunk in chunks(rows, _INSERT_ROWS):
            inserted += len(
                insert_json(
                    Touchpoint,
                    const={
                        "sop_id": sop.pk,
                        "campaign_id": campaign_id,
                        "status": TouchpointStatus.PENDING,
                    },
                    columns=("enrollment_id", "step_id", "customer_id", "kind", "due_at"),
                    rows=chunk,
                    returning=("id",),
                )
            )
    return inserted


# --- triggers ------------------------------------------------------------------------------


def trigger_occurrences(
    *,
    version: SopVersion,
    since: datetime,
    until: datetime | None = None,
    customer_ids: Iterable[int] | None = None,
) -> list[tuple[int, str, datetime]]:
    """``(customer_id, trigger_key, trigger_at)`` of the version's trigger in [since,
    until), optionally among ``customer_ids``.

    Event triggers read the facts' own times (acquisition, stage change, tag link), so a
    backdated import before ``since`` (the SOP's activation) enrols nobody. The scanned
    triggers (repurchase due, birthday) and manual enrolment ask about ``until`` (default
    now) and ignore ``since``: their keys (``due:<last purchase>``, ``birthday:<year>``)
    make an hourly re-scan enrol each occurrence once.
    """
    now = until or timezone.now()
    ids = None if customer_ids is None else list(customer_ids)
    config: dict[str, Any] = version.trigger_config or {}
    kind = version.trigger_kind
    if kind == TriggerKind.CONTACT_ADDED:
        customers = Customer.objects.filter(acquired_at__gte=since)
        if until is not None:
            customers = customers.filter(acquired_at__lt=until)
        if ids is not None:
            customers = customers.filter(id__in=ids)
        if channel_ids := config.get("channel_ids"):
            customers = customers.filter(source_channel_id__in=channel_ids)
        return [(pk, "acquired", at) for pk, at in customers.values_list("id", "acquired_at")]
    if kind == TriggerKind.STAGE_ENTERED:
        stage = int(config["stage"])
        # Rises only: a refund that drops a customer from referral to revenue has not
        # "entered" revenue, they were there already.
        changes = StageChange.objects.filter(
            to_stage=stage, from_stage__lt=stage, at__gte=since
        ).order_by("at", "id")
        if until is not None:
            changes = changes.filter(at__lt=until)
        if ids is not None:
            changes = changes.filter(customer_id__in=ids)
        return _first_per_key(
            (cid, f"stage:{stage}:{_local_date(at).isoformat()}", at)
            for cid, at in changes.values_list("customer_id", "at")
        )
    if kind == TriggerKind.TAG_ADDED:
        tag_id = int(config["tag_id"])
        links = CustomerTag.objects.filter(tag_id=tag_id, created_at__gte=since)
        if until is not None:
            links = links.filter(created_at__lt=until)
        if ids is not None:
            links = links.filter(customer_id__in=ids)
        return _first_per_key(
            (cid, f"tag:{tag_id}:{_local_date(at).isoformat()}", at)
            for cid, at in links.order_by("created_at").values_list("customer_id", "created_at")
        )
    if kind == TriggerKind.REPURCHASE_DUE:
        from funnel.selectors import repurchase_due_qs

        # Due by now (within 0 days): the step offsets say how early to remind.
        due = repurchase_due_qs(user=_SYSTEM, as_of=now, within_days=0).order_by()
        if ids is not None:
            due = due.filter(customer_id__in=ids)
        return [
            (cid, f"due:{_local_date(last).isoformat()}", now)
            for cid, last in due.values_list("customer_id", "last_paid_at")
            if last is not None  # the selector requires it; narrowed for the type
        ]
    if kind == TriggerKind.DATE_FIELD:
        today = _local_date(now)
        target = today + timedelta(days=int(config.get("days_before", 0)))
        birthday = Q(birthday__month=target.month, birthday__day=target.day)
        if target.month == 2 and target.day == 28 and not _is_leap(target.year):
            # Born on Feb 29: celebrated on Feb 28 in a common year.
            birthday |= Q(birthday__month=2, birthday__day=29)
        customers = Customer.objects.filter(birthday, status=CustomerStatus.ACTIVE)
        if ids is not None:
            customers = customers.filter(id__in=ids)
        midnight = datetime.combine(today, time.min, tzinfo=corp_tz())
        key = f"birthday:{target.year}"
        return [(pk, key, midnight) for pk in customers.values_list("id", flat=True)]
    if kind == TriggerKind.MANUAL:
        key = f"manual:{uuid.uuid4().hex}"
        audience = audience_qs(version, now=now)
        if ids is not None:
            audience = audience.filter(id__in=ids)
        return [(pk, key, now) for pk in audience.values_list("id", flat=True)]
    raise ValueError(f"unknown trigger kind {kind!r}")


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def _first_per_key(
    rows: Iterable[tuple[int, str, datetime]],
) -> list[tuple[int, str, datetime]]:
    """One occurrence per (customer, key), the earliest (rows come in time order)."""
    seen: dict[tuple[int, str], tuple[int, str, datetime]] = {}
    for row in rows:
        seen.setdefault((row[0], row[1]), row)
    return list(seen.values())


# --- enrolment -----------------------------------------------------------------------------


def _enroll_chunk(
    *,
    sop: Sop,
    version: SopVersion,
    steps: Sequence[SopStep],
    rows: Sequence[tuple[int, str, datetime]],
    audience_checked: bool,
    now: datetime,
) -> EnrollResult:
    result = EnrollResult()
    if audience_checked:
        wanted = list(rows)
    else:
        ids = {cid for cid, _key, _at in rows}
        inside = set(audience_qs(version, now=now).filter(id__in=ids).values_list("id", flat=True))
        wanted = [row for row in rows if row[0] in inside]
    result.skipped += len(rows) - len(wanted)
    if not wanted:
        return result
    held_out: set[int] = set()
    if sop.campaign_id is not None:
        assert sop.campaign is not None
        held_out = campaign_assign(
            campaign=sop.campaign, customer_ids={row[0] for row in wanted}, at=now
        )
    created = insert_json(
        Enrollment,
        const={
            "sop_id": sop.pk,
            "version_id": version.pk,
            "campaign_id": sop.campaign_id,
            "enrolled_at": now,
        },
        columns=("customer_id", "trigger_key", "trigger_at", "status"),
        rows=[
            (
                cid,
                key,
                at,
                EnrollmentStatus.HOLDOUT if cid in held_out else EnrollmentStatus.ACTIVE,
            )
            for cid, key, at in wanted
        ],
        returning=("id", "customer_id", "trigger_at", "status"),
    )
    result.skipped += len(wanted) - len(created)
    active = [
        (pk, cid, at, sop.campaign_id)
        for pk, cid, at, status in created
        if status == EnrollmentStatus.ACTIVE
    ]
    result.enrolled += len(active)
    result.holdout += len(created) - len(active)
    result.touchpoints += touchpoints_create(
        sop=sop, version=version, steps=steps, enrollments=active
    )
    return result


def _enrollable(sop: Sop) -> tuple[SopVersion, list[SopStep]] | None:
    """The version and steps new enrolments get, or None when the SOP is not running:
    only an active SOP enrols (a paused one keeps its in-flight customers waiting)."""
    if sop.status != SopStatus.ACTIVE or sop.current_version_id is None:
        return None
    version = sop.current_version
    assert version is not None
    return version, list(version.steps.order_by("position"))


def sop_enroll(*, sop: Sop, rows: Sequence[tuple[int, str, datetime]]) -> EnrollResult:
    """Enrol the trigger occurrences ``rows`` (``(customer_id, trigger_key, trigger_at)``)
    into the SOP's current version: customers outside its audience and occurrences
    already enrolled are skipped, campaign holdouts get an enrolment with status
    *holdout* and no touchpoints, everyone else one pending touchpoint per step.
    Idempotent; one transaction."""
    result = EnrollResult()
    enrollable = _enrollable(sop)
    if enrollable is None:
        result.skipped = len(rows)
        return result
    version, steps = enrollable
    now = timezone.now()
    with transaction.atomic():
        for chunk in chunks(rows, ENROLL_CHUNK):
            result.add(
                _enroll_chunk(
                    sop=sop,
                    version=version,
                    steps=steps,
                    rows=chunk,
                    audience_checked=False,
                    now=now,
                )
            )
    return result


def sop_enroll_segment(*, sop: Sop, user: Any) -> EnrollResult:
    """Manual enrolment: the current version's audience now, as one occurrence
    ``manual:<uuid>`` (so enrolling the segment again next week is a new run).

    The audience is read by id ranges (keyset), ``ENROLL_CHUNK`` at a time, so a
    100,000-customer segment never sits in memory at once.
    """
    del user  # permission is the interface's; the audience is the SOP's, not the user's
    result = EnrollResult()
    enrollable = _enrollable(sop)
    if enrollable is None:
        return result
    version, steps = enrollable
    now = timezone.now()
    key = f"manual:{uuid.uuid4().hex}"
    audience = audience_qs(version, now=now).order_by("id")
    last = 0
    with transaction.atomic():
        while True:
            ids = list(audience.filter(id__gt=last).values_list("id", flat=True)[:ENROLL_CHUNK])
            if not ids:
                break
            result.add(
                _enroll_chunk(
                    sop=sop,
                    version=version,
                    steps=steps,
                    rows=[(cid, key, now) for cid in ids],
                    audience_checked=True,
                    now=now,
                )
            )
            if len(ids) < ENROLL_CHUNK:
                break
            last = ids[-1]
    return result


def triggers_scan(*, now: datetime) -> int:
    """Enrol the scanned triggers (due for repurchase, birthdays) of every active SOP.
    Idempotent by trigger key, so the hourly beat may run it as often as it likes.
    Returns the number of customers newly enrolled (treatment and holdout)."""
    enrolled = 0
    sops = Sop.objects.filter(
        status=SopStatus.ACTIVE,
        current_version__trigger_kind__in=[TriggerKind.REPURCHASE_DUE, TriggerKind.DATE_FIELD],
    ).select_related("current_version", "campaign")
    for sop in sops:
        assert sop.current_version is not None
        rows = trigger_occurrences(version=sop.current_version, since=now, until=now)
        result = sop_enroll(sop=sop, rows=rows)
        enrolled += result.enrolled + result.holdout
    return enrolled


# --- exits ---------------------------------------------------------------------------------


def enrollments_exit(*, enrollment_ids: Iterable[int], reason: str, now: datetime) -> int:
    """Exit active enrolments with ``reason``; their pending touchpoints are skipped
    (reason *exited*). Returns the number of enrolments exited."""
    ids = list(enrollment_ids)
    if not ids:
        return 0
    exited = 0
    for chunk in chunks(ids, ENROLL_CHUNK):
        exited += Enrollment.objects.filter(id__in=chunk, status=EnrollmentStatus.ACTIVE).update(
            status=EnrollmentStatus.EXITED, exit_reason=reason, exited_at=now
        )
        Touchpoint.objects.filter(enrollment_id__in=chunk, status=TouchpointStatus.PENDING).update(
            status=TouchpointStatus.SKIPPED, skip_reason=SkipReason.EXITED, updated_at=now
        )
    return exited


def enrollments_complete(*, enrollment_ids: Iterable[int]) -> int:
    """Mark active enrolments completed once no step is left to dispatch (none pending or
    claimed): they are no longer "in flight" for a new version's policy or the SOP's
    counts. Awaiting a staff member's confirmation or a to-do does not keep one open."""
    ids = list(enrollment_ids)
    completed = 0
    for chunk in chunks(ids, ENROLL_CHUNK):
        open_steps = Touchpoint.objects.filter(
            enrollment_id=OuterRef("pk"),
            status__in=[TouchpointStatus.PENDING, TouchpointStatus.CLAIMED],
        )
        completed += (
            Enrollment.objects.filter(id__in=chunk, status=EnrollmentStatus.ACTIVE)
            .exclude(Exists(open_steps))
            .update(status=EnrollmentStatus.COMPLETED)
        )
    return completed


def enrollments_exit_due(*, enrollment_ids: Iterable[int], now: datetime) -> dict[int, str]:
    """Check the exit conditions of active enrolments (their own version's): the customer
    is lost, bought (a paid order after the trigger), or reached the exit stage. Exits
    those that meet one and returns ``{enrollment_id: reason}``.

    "Bought" counts orders paid strictly after the trigger, so the order that *caused* a
    "became a paying customer" enrolment does not end it at once.
    """
    ids = list(enrollment_ids)
    reasons: dict[int, str] = {}
    for chunk in chunks(ids, ENROLL_CHUNK):
        rows = (
            Enrollment.objects.filter(id__in=chunk, status=EnrollmentStatus.ACTIVE)
            .annotate(
                bought=Exists(
                    Order.objects.filter(
                        customer_id=OuterRef("customer_id"),
                        status=OrderStatus.PAID,
                        paid_at__gt=OuterRef("trigger_at"),
                    )
                ),
                stage_now=models.Subquery(
                    Milestones.objects.filter(customer_id=OuterRef("customer_id")).values("stage")[
                        :1
                    ]
                ),
            )
            .values_list(
                "id",
                "customer__status",
                "bought",
                "stage_now",
                "version__exit_on_lost",
                "version__exit_on_purchase",
                "version__exit_stage",
            )
        )
        for pk, status, bought, stage, on_lost, on_purchase, exit_stage in rows:
            if on_lost and status == CustomerStatus.LOST:
                reasons[pk] = EXIT_LOST
            elif on_purchase and bought:
                reasons[pk] = EXIT_BOUGHT
            elif exit_stage is not None and stage is not None and stage >= exit_stage:
                reasons[pk] = EXIT_STAGE
    for reason in {EXIT_LOST, EXIT_BOUGHT, EXIT_STAGE}:
        enrollments_exit(
            enrollment_ids=[pk for pk, r in reasons.items() if r == reason], reason=reason, now=now
        )
    return reasons
