"""Reads behind the campaigns API and dashboard: one access helper per model, the touchpoint
log, the staff member's to-dos and the SOP list with its figures.

Who sees what:

* content, SOPs (with versions and steps), campaigns and coupon batches are corp-wide
  definitions, like channels: anyone with a role may read them; only operators and API
  clients write them (checked by the API's permissions and the dashboard's views);
* touchpoints are about customers: a user sees the touchpoints of the customers they may
  see (``customers.selectors.customer_visible_qs``), so a clerk of store B never learns
  what was sent to a store-A customer;
* to-dos are the asking staff member's own.

The access helpers raise Http404 for what the user may not see (never 403: no leak of
ids). Counts are computed by the database in the same query as the rows (correlated
subqueries), so a list costs the same number of queries for 3 SOPs as for 300.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeVar

from django.core.exceptions import ObjectDoesNotExist
from django.db.models import (
    Case,
    Count,
    IntegerField,
    Model,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Coalesce
from django.http import Http404
from django.utils import timezone

from campaigns.models import (
    Campaign,
    CampaignMember,
    Content,
    Coupon,
    CouponBatch,
    Enrollment,
    EnrollmentStatus,
    PointsEntry,
    Sop,
    SopStep,
    SopVersion,
    Touchpoint,
    TouchpointStatus,
)
from customers.models import Customer
from customers.selectors import customer_visible_qs, staff_of
from scrm.roles import role_of, sees_everything

_M = TypeVar("_M", bound=Model)

#: Touchpoint statuses that wait for the staff member: a to-do, or a WeCom message task
#: created in their WeCom that they still have to confirm (send).
TODO_STATUSES = (TouchpointStatus.TODO, TouchpointStatus.CREATED)


def _get_or_404(qs: QuerySet[_M], pk: Any, what: str) -> _M:
    try:
        return qs.get(pk=int(pk))
    except (ObjectDoesNotExist, TypeError, ValueError, OverflowError):
        raise Http404(f"No such {what}.") from None


def _for_role(qs: QuerySet[_M], user: Any) -> QuerySet[_M]:
    """Definitions (content, SOPs, campaigns, coupon batches): anyone with a role reads."""
    return qs if role_of(user) is not None else qs.none()


# --- Definitions -----------------------------------------------------------------------


def content_visible_qs(user: Any) -> QuerySet[Content]:
    return _for_role(Content.objects.select_related("coupon_batch"), user)


def content_get_for_user(user: Any, pk: Any) -> Content:
    return _get_or_404(content_visible_qs(user), pk, "content")


def campaign_visible_qs(user: Any) -> QuerySet[Campaign]:
    return _for_role(Campaign.objects.all(), user)


def campaign_get_for_user(user: Any, pk: Any) -> Campaign:
    return _get_or_404(campaign_visible_qs(user), pk, "campaign")


def coupon_batch_visible_qs(user: Any) -> QuerySet[CouponBatch]:
    return _for_role(CouponBatch.objects.select_related("campaign"), user)


def coupon_batch_get_for_user(user: Any, pk: Any) -> CouponBatch:
    return _get_or_404(coupon_batch_visible_qs(user), pk, "coupon batch")


def coupon_visible_qs(user: Any) -> QuerySet[Coupon]:
    """Coupons of the customers ``user`` may see."""
    qs = Coupon.objects.select_related("batch")
    if sees_everything(user):
        return qs
    if role_of(user) is None:
        return qs.none()
    return qs.filter(customer__in=customer_visible_qs(user))


def points_ledger(customer: Customer, *, limit: int = 100) -> tuple[int, list[PointsEntry]]:
    """The customer's balance (summed by the database) and latest ``limit`` lines; the
    caller has checked that the user may see the customer."""
    balance = PointsEntry.objects.filter(customer=customer).aggregate(total=Sum("delta"))
    entries = list(
        PointsEntry.objects.filter(customer=customer).order_by("-created_at", "-id")[:limit]
    )
    return int(balance["total"] or 0), list(entries[:limit])


def _steps_prefetch(prefix: str = "") -> Prefetch[Any]:
    return Prefetch(
        f"{prefix}steps",
        queryset=SopStep.objects.select_related("content", "tag").order_by("position"),
    )


def sop_visible_qs(user: Any) -> QuerySet[Sop]:
    return _for_role(Sop.objects.select_related("current_version", "campaign"), user)


def sop_get_for_user(user: Any, pk: Any) -> Sop:
    """One SOP with its current version's steps loaded, or Http404."""
    qs = sop_visible_qs(user).prefetch_related(
        Prefetch(
            "current_version__steps",
            queryset=SopStep.objects.select_related("content", "tag").order_by("position"),
        )
    )
    return _get_or_404(qs, pk, "SOP")


def sop_versions(sop: Sop) -> list[SopVersion]:
    """Every version of the SOP, newest first, with steps and their enrolment counts."""
    enrolled = _count(Enrollment.objects.filter(version=OuterRef("pk")), "version")
    return list(
        SopVersion.objects.filter(sop=sop)
        .select_related("created_by")
        .prefetch_related(_steps_prefetch())
        .annotate(enrolled=enrolled)
        .order_by("-number")
    )


def _count(qs: QuerySet[Any], group: str) -> Any:
    """A correlated ``(SELECT COUNT(*) ... GROUP BY group)`` that is 0 when nothing matches.

    A subquery per figure rather than joins: joining enrolments and touchpoints at once
    would multiply the rows and inflate every count.
    """
    counts = qs.order_by().values(group).annotate(n=Count("pk")).values("n")[:1]
    return Coalesce(Subquery(counts, output_field=IntegerField()), Value(0))


def sop_list_qs(user: Any) -> QuerySet[Sop]:
    """SOPs with ``enrolled`` (treatment and holdout), ``in_flight`` and ``sent`` counted
    in the same query as the rows (the (sop, status) indexes serve each subquery)."""
    enrollments = Enrollment.objects.filter(sop=OuterRef("pk"))
    return sop_visible_qs(user).annotate(
        enrolled=_count(enrollments, "sop"),
        in_flight=_count(enrollments.filter(status=EnrollmentStatus.ACTIVE), "sop"),
        holdout=_count(enrollments.filter(status=EnrollmentStatus.HOLDOUT), "sop"),
        sent=_count(
            Touchpoint.objects.filter(sop=OuterRef("pk"), status=TouchpointStatus.SENT), "sop"
        ),
        pending=_count(
            Touchpoint.objects.filter(sop=OuterRef("pk"), status=TouchpointStatus.PENDING), "sop"
        ),
    )


def sop_detail_for_user(user: Any, pk: Any) -> Sop:
    """One SOP with its figures (as in the list) and current steps, or Http404."""
    qs = sop_list_qs(user).prefetch_related(
        Prefetch(
            "current_version__steps",
            queryset=SopStep.objects.select_related("content", "tag").order_by("position"),
        )
    )
    return _get_or_404(qs, pk, "SOP")


def campaign_list_qs(user: Any) -> QuerySet[Campaign]:
    """Campaigns with their SOP count and members (treatment, holdout) in one query."""
    members = CampaignMember.objects.filter(campaign=OuterRef("pk"))
    return campaign_visible_qs(user).annotate(
        sops_count=_count(Sop.objects.filter(campaign=OuterRef("pk")), "campaign"),
        members_count=_count(members, "campaign"),
        holdout_count=_count(members.filter(is_holdout=True), "campaign"),
    )


def coupon_batch_list_qs(user: Any) -> QuerySet[CouponBatch]:
    """Coupon batches with the coupons issued and redeemed, in one query."""
    coupons = Coupon.objects.filter(batch=OuterRef("pk"))
    return coupon_batch_visible_qs(user).annotate(
        issued_count=_count(coupons, "batch"),
        redeemed_count=_count(coupons.filter(redeemed_at__isnull=False), "batch"),
    )


def content_list_qs(user: Any) -> QuerySet[Content]:
    """Content with how many SOP steps use it (an archived SOP's steps count too: its
    versions still name the content)."""
    return content_visible_qs(user).annotate(
        used_by=_count(SopStep.objects.filter(content=OuterRef("pk")), "content")
    )


# --- Touchpoints -----------------------------------------------------------------------


def touchpoint_visible_qs(user: Any) -> QuerySet[Touchpoint]:
    """Touchpoints of the customers ``user`` may see."""
    # Those who see every customer get no "customer IN (SELECT ...)" filter: it adds
    # nothing but a scan of the customer table to every query of a large table.
    if sees_everything(user):
        return Touchpoint.objects.all()
    if role_of(user) is None:
        return Touchpoint.objects.none()
    return Touchpoint.objects.filter(customer__in=customer_visible_qs(user))


def touchpoint_list_qs(user: Any) -> QuerySet[Touchpoint]:
    """The touchpoint log's base queryset: what each row shows joined in one query."""
    return touchpoint_visible_qs(user).select_related(
        "customer", "staff", "sop", "campaign", "step", "step__content"
    )


def touchpoint_get_for_user(user: Any, pk: Any) -> Touchpoint:
    return _get_or_404(touchpoint_list_qs(user), pk, "touchpoint")


def todo_list_qs(user: Any, *, now: datetime | None = None) -> QuerySet[Touchpoint]:
    """The asking staff member's to-dos: their ``todo`` touchpoints and the WeCom message
    tasks created in their WeCom that await their confirmation.

    Overdue first (oldest due first); snoozed ones after the others until their snooze
    ends. Users without a staff row (operators, API clients) have no to-dos.
    """
    staff = staff_of(user)
    if staff is None:
        return Touchpoint.objects.none()
    now = now or timezone.now()
    return (
        touchpoint_visible_qs(user)
        .filter(staff=staff, status__in=TODO_STATUSES)
        .select_related("customer", "sop", "step", "step__content")
        .annotate(
            snoozed=Case(
                When(snoozed_until__gt=now, then=Value(1)),
                default=Value(0),
                output_field=IntegerField(),
            )
        )
        .order_by("snoozed", "due_at", "id")
    )


def todo_get_for_user(user: Any, pk: Any) -> Touchpoint:
    """One of the user's own to-dos, or Http404 (a colleague's to-do is not theirs to
    mark done, even for a customer both follow)."""
    return _get_or_404(todo_list_qs(user), pk, "to-do")


def staff_todo_count(user: Any) -> int:
    """How many to-dos wait for the user now (snoozed ones excluded)."""
    now = timezone.now()
    return (
        todo_list_qs(user, now=now)
        .filter(Q(snoozed_until__isnull=True) | Q(snoozed_until__lte=now))
        .count()
    )


# --- An SOP as the services' data ------------------------------------------------------

#: The version fields that ``sop_create`` / ``sop_update`` take, besides steps.
SOP_VERSION_FIELDS = (
    "trigger_kind",
    "trigger_config",
    "audience",
    "quiet_start",
    "quiet_end",
    "quiet_action",
    "cap_count",
    "cap_days",
    "exit_on_purchase",
    "exit_on_lost",
    "exit_stage",
)


def step_as_data(step: SopStep) -> dict[str, Any]:
    return {
        "offset_days": step.offset_days,
        "at_time": step.at_time,
        "offset_minutes": step.offset_minutes,
        "action": step.action,
        "content": step.content_id,
        "tag": step.tag_id,
        "instruction": step.instruction,
    }


def sop_as_data(sop: Sop, version: SopVersion | None = None) -> dict[str, Any]:
    """The SOP (and ``version``, by default its current one) in the shape ``sop_create``
    and ``sop_update`` take: a partial API update and the dashboard editor start from it."""
    version = version or sop.current_version
    data: dict[str, Any] = {
        "name": sop.name,
        "description": sop.description,
        "campaign": sop.campaign_id,
    }
    if version is None:
        return {**data, "steps": []}
    for field in SOP_VERSION_FIELDS:
        data[field] = getattr(version, field)
    data["in_flight"] = version.in_flight
    data["steps"] = [step_as_data(step) for step in version.steps.all()]
    return data


def sop_in_flight_counts(sop: Sop) -> dict[int, int]:
    """In-flight enrolments by version id (one grouped query)."""
    rows = (
        Enrollment.objects.filter(sop=sop, status=EnrollmentStatus.ACTIVE)
        .order_by()
        .values_list("version_id")
        .annotate(n=Count("pk"))
    )
    return {int(version_id): int(n) for version_id, n in rows}
