"""Funnel reads: the cohort every report starts from, and the funnel report itself.

Reports aggregate in the database over ``funnel_milestones`` (one narrow row per
customer, indexed by acquisition time and each dimension), never over the raw activity
table. Row-level permission applies here as everywhere: a store manager's funnel counts
the customers of their store only.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Count, Exists, F, OuterRef, Q, QuerySet

from customers.models import CustomerTag, Follow
from customers.selectors import staff_of
from funnel.filters import ReportFilters
from funnel.models import REACHED_FIELDS, Milestones, Stage
from scrm.roles import Role, role_of


def milestones_visible_qs(user: Any) -> QuerySet[Milestones]:
    """Milestone rows of the customers ``user`` may see (the same rule as
    ``customers.selectors.customer_visible_qs``, on the copied dimensions)."""
    role = role_of(user)
    qs = Milestones.objects.all()
    if role in (Role.OPERATOR, Role.INTEGRATION):
        return qs
    staff = staff_of(user)
    if staff is None:
        return qs.none()
    if role == Role.MANAGER:
        if staff.store_id is None:
            return qs.none()
        store_follow = Follow.objects.filter(
            customer_id=OuterRef("customer_id"),
            staff__store_id=staff.store_id,
            deleted_at__isnull=True,
        )
        return qs.filter(Q(store_id=staff.store_id) | Exists(store_follow))
    own_follow = Follow.objects.filter(
        customer_id=OuterRef("customer_id"), staff_id=staff.pk, deleted_at__isnull=True
    )
    return qs.filter(Q(owner_id=staff.pk) | Exists(own_follow))


def cohort_qs(user: Any, filters: ReportFilters) -> QuerySet[Milestones]:
    """The cohort: visible customers acquired in [start, end), narrowed by the filters.

    The staff filter means the staff member's customers: owned by them, or added by them
    at any time (a follow, even one since deleted, since it asks who brought the customer).
    """
    qs = milestones_visible_qs(user).filter(
        acquired_at__gte=filters.start_at, acquired_at__lt=filters.end_at
    )
    if filters.channel_id is not None:
        qs = qs.filter(channel_id=filters.channel_id)
    if filters.store_id is not None:
        qs = qs.filter(store_id=filters.store_id)
    if filters.staff_id is not None:
        followed = Follow.objects.filter(
            customer_id=OuterRef("customer_id"), staff_id=filters.staff_id
        )
        qs = qs.filter(Q(owner_id=filters.staff_id) | Exists(followed))
    if filters.tag_id is not None:
        tagged = CustomerTag.objects.filter(
            customer_id=OuterRef("customer_id"), tag_id=filters.tag_id
        )
        qs = qs.filter(Exists(tagged))
    return qs


def reached(field: str, filters: ReportFilters) -> Q:
    """A milestone (or stage time) that counts for this report: reached, and within the
    window after acquisition when there is one."""
    condition = Q(**{f"{field}__isnull": False})
    if filters.window is not None:
        condition &= Q(**{f"{field}__lt": F("acquired_at") + filters.window})
    return condition


def rate(count: int, of: int) -> float | None:
    """A conversion rate (a plain float division, so a reference computation over the raw
    tables gives the identical number); None when there is nothing to convert."""
    return count / of if of else None


def funnel_report(*, user: Any, filters: ReportFilters) -> dict[str, Any]:
    """The AARRR funnel of a cohort, in one aggregate query.

    A customer counts at stage k when milestones 1..k are all reached (within the window,
    if any). Repurchase: customers with a second paid order, as a share of those with a
    first one (both within the window, if any).
    """
    aggregates = {
        f"stage_{stage.value}": Count("pk", filter=reached(field, filters))
        for stage, field in REACHED_FIELDS.items()
        if stage != Stage.ACQUISITION
    }
    totals = cohort_qs(user, filters).aggregate(
        stage_1=Count("pk"),
        **aggregates,
        bought=Count("pk", filter=reached("revenue_at", filters)),
        repurchased=Count("pk", filter=reached("repurchase_at", filters)),
    )
    first = totals["stage_1"]
    stages = []
    previous = first
    for stage in Stage:
        count = totals[f"stage_{stage.value}"]
        stages.append(
            {
                "stage": stage.name.lower(),
                "label": str(stage.label),
                "count": count,
                "rate_from_previous": rate(count, previous),
                "rate_from_first": rate(count, first),
            }
        )
        previous = count
    return {
        "filters": filters.as_query(),
        "stages": stages,
        "repurchase": {
            "count": totals["repurchased"],
            "rate": rate(totals["repurchased"], totals["bought"]),
            "first_purchases": totals["bought"],
        },
    }
