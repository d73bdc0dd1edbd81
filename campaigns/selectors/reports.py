"""Campaign results: who was enrolled and reached, who converted, and the lift over the
holdout with a 95 % confidence interval.

Conversion: a member converted when the campaign's goal happened within ``goal_days``
after they joined the campaign (``CampaignMember.enrolled_at``), in both groups alike, so
the holdout measures what would have happened anyway:

* activation / retention: the funnel stage was reached in the window
  (``Milestones.reached_activation_at`` / ``reached_retention_at``);
* first_purchase: the customer's first paid order (``Milestones.revenue_at``) in the
  window; referral: their first referral (``Milestones.referral_at``) in the window;
* purchase: any paid order in the window;
* repurchase: a paid order in the window that is not the customer's first paid order.
  (Not ``Milestones.repurchase_at``, the second order ever: a repurchase campaign targets
  customers who already bought, many of them twice, and those could never convert.)

A member who had reached a milestone before joining does not count as converted: the
milestone holds the first time, which then lies before the window.

The lift is ``rate_treatment - rate_holdout`` with Newcombe's hybrid score interval
(method 10 of Newcombe 1998, built from each group's Wilson score interval), which
behaves at small counts and at rates of 0 or 1 where the Wald interval does not.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

from django.db.models import (
    Count,
    DateTimeField,
    Exists,
    ExpressionWrapper,
    OuterRef,
    Q,
    QuerySet,
)

from campaigns.models import (
    Campaign,
    CampaignGoal,
    CampaignMember,
    Enrollment,
    EnrollmentStatus,
    Sop,
    Touchpoint,
    TouchpointStatus,
)
from customers.models import Customer, Order, OrderStatus
from customers.selectors import visible_to
from funnel.models import Milestones
from scrm.roles import sees_everything

#: The two-sided 95 % normal quantile.
Z95 = 1.959963984540054

_MILESTONE_OF_GOAL = {
    CampaignGoal.ACTIVATION: "reached_activation_at",
    CampaignGoal.RETENTION: "reached_retention_at",
    CampaignGoal.FIRST_PURCHASE: "revenue_at",
    CampaignGoal.REFERRAL: "referral_at",
}

_STATUSES = [s.value for s in TouchpointStatus]


def wilson_interval(successes: int, n: int, *, z: float = Z95) -> tuple[float, float] | None:
    """Wilson's score interval for a proportion; None when there are no trials."""
    if n <= 0:
        return None
    p = successes / n
    denominator = 1 + z * z / n
    centre = p + z * z / (2 * n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, (centre - half) / denominator), min(1.0, (centre + half) / denominator)


def newcombe_interval(
    x1: int, n1: int, x2: int, n2: int, *, z: float = Z95
) -> tuple[float, float] | None:
    """Newcombe's hybrid score interval for p1 - p2 (his method 10); None when a group
    is empty."""
    first = wilson_interval(x1, n1, z=z)
    second = wilson_interval(x2, n2, z=z)
    if first is None or second is None:
        return None
    p1, p2 = x1 / n1, x2 / n2
    (l1, u1), (l2, u2) = first, second
    d = p1 - p2
    return (
        d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2),
        d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2),
    )


def _conversion(goal: str, window: timedelta) -> Exists:
    """Whether the member reached the goal within ``window`` after joining, as a
    correlated EXISTS: one index probe per member, no join fan-out."""
    # The window's end computed inside the subquery: an annotation on the outer query is
    # dropped by aggregate() when only a subquery refers to it.
    window_end = ExpressionWrapper(OuterRef("enrolled_at") + window, output_field=DateTimeField())
    if goal in _MILESTONE_OF_GOAL:
        field = _MILESTONE_OF_GOAL[CampaignGoal(goal)]
        return Exists(
            Milestones.objects.filter(
                customer_id=OuterRef("customer_id"),
                **{
                    f"{field}__gte": OuterRef("enrolled_at"),
                    f"{field}__lte": window_end,
                },
            )
        )
    orders = Order.objects.filter(
        customer_id=OuterRef("customer_id"),
        status=OrderStatus.PAID,
        paid_at__gte=OuterRef("enrolled_at"),
        paid_at__lte=window_end,
    )
    if goal == CampaignGoal.REPURCHASE:
        earlier = Order.objects.filter(
            customer_id=OuterRef("customer_id"),
            status=OrderStatus.PAID,
            paid_at__lt=OuterRef("paid_at"),
        )
        orders = orders.filter(Exists(earlier))
    return Exists(orders)


def _visible(qs: QuerySet[Any], user: Any) -> QuerySet[Any]:
    if sees_everything(user):
        return qs
    return qs.filter(customer_id__in=visible_to(Customer.objects.all(), user).values("pk"))


def _rate(converted: int, n: int) -> float | None:
    return converted / n if n else None


def _touchpoint_counts(counts: dict[str, int]) -> dict[str, int]:
    out = {status: counts.get(status, 0) for status in _STATUSES}
    out["total"] = sum(counts.values())
    # What the staff member acted on: WeCom tasks they confirmed, and to-dos they did.
    out["confirmed"] = out[TouchpointStatus.SENT] + out[TouchpointStatus.DONE]
    return out


def campaign_report(*, campaign: Campaign, user: Any) -> dict[str, Any]:
    """The campaign's results over the members ``user`` may see (an operator: all).

    Keys: ``members``, ``treatment``, ``holdout`` (member counts); ``enrolled`` (SOP
    enrolments of treated customers) and ``enrolled_holdout``; ``touchpoints`` (counts by
    status plus ``total`` and ``confirmed`` = sent + done); ``sent``, ``created`` (WeCom
    tasks awaiting the staff member), ``confirmed``, ``skipped`` and ``skipped_by_reason``;
    ``converted`` and ``rate`` (each ``{"treatment", "holdout"}``); ``lift`` and
    ``lift_ci`` (95 %, None when a group is empty); ``sops``: one row per SOP with its
    enrolments and touchpoint counts. Five queries, whatever the number of members.
    """
    window = timedelta(days=campaign.goal_days)
    members = _visible(CampaignMember.objects.filter(campaign=campaign), user)
    converted = Q(_conversion(campaign.goal, window))
    totals = members.aggregate(
        members=Count("pk"),
        treatment=Count("pk", filter=Q(is_holdout=False)),
        holdout=Count("pk", filter=Q(is_holdout=True)),
        converted_treatment=Count("pk", filter=Q(is_holdout=False) & converted),
        converted_holdout=Count("pk", filter=Q(is_holdout=True) & converted),
    )

    enrolment_rows = list(
        _visible(Enrollment.objects.filter(campaign=campaign), user)
        .values("sop_id")
        .annotate(
            enrolled=Count("pk", filter=~Q(status=EnrollmentStatus.HOLDOUT)),
            holdout=Count("pk", filter=Q(status=EnrollmentStatus.HOLDOUT)),
            active=Count("pk", filter=Q(status=EnrollmentStatus.ACTIVE)),
            completed=Count("pk", filter=Q(status=EnrollmentStatus.COMPLETED)),
            exited=Count("pk", filter=Q(status=EnrollmentStatus.EXITED)),
        )
        .order_by("sop_id")
    )
    touchpoint_rows = list(
        _visible(Touchpoint.objects.filter(campaign=campaign), user)
        .values("sop_id", "status", "skip_reason")
        .annotate(n=Count("pk"))
        .order_by("sop_id", "status", "skip_reason")
    )

    # Small per-group rows (SOPs x statuses x reasons), summed here; the counting was
    # done by the database.
    by_status: dict[str, int] = {}
    by_reason: dict[str, int] = {}
    sop_status: dict[int, dict[str, int]] = {}
    for row in touchpoint_rows:
        by_status[row["status"]] = by_status.get(row["status"], 0) + row["n"]
        per_sop = sop_status.setdefault(row["sop_id"], {})
        per_sop[row["status"]] = per_sop.get(row["status"], 0) + row["n"]
        if row["status"] == TouchpointStatus.SKIPPED:
            reason = row["skip_reason"] or "unknown"
            by_reason[reason] = by_reason.get(reason, 0) + row["n"]
    enrolments = {row["sop_id"]: row for row in enrolment_rows}

    sop_ids = set(enrolments) | set(sop_status)
    sops = Sop.objects.filter(Q(campaign=campaign) | Q(pk__in=sop_ids)).values(
        "id", "name", "status"
    )
    sop_rows = []
    for sop in sorted(sops, key=lambda s: (s["name"], s["id"])):
        enrolment = enrolments.get(sop["id"], {})
        counts = _touchpoint_counts(sop_status.get(sop["id"], {}))
        sop_rows.append(
            {
                "id": sop["id"],
                "name": sop["name"],
                "status": sop["status"],
                "enrolled": enrolment.get("enrolled", 0),
                "holdout": enrolment.get("holdout", 0),
                "active": enrolment.get("active", 0),
                "completed": enrolment.get("completed", 0),
                "exited": enrolment.get("exited", 0),
                "sent": counts[TouchpointStatus.SENT],
                "created": counts[TouchpointStatus.CREATED],
                "confirmed": counts["confirmed"],
                "skipped": counts[TouchpointStatus.SKIPPED],
                "touchpoints": counts,
            }
        )

    touchpoints = _touchpoint_counts(by_status)
    n_t, n_h = totals["treatment"], totals["holdout"]
    x_t, x_h = totals["converted_treatment"], totals["converted_holdout"]
    rate_t, rate_h = _rate(x_t, n_t), _rate(x_h, n_h)
    return {
        "campaign": {
            "id": campaign.pk,
            "name": campaign.name,
            "goal": campaign.goal,
            "goal_days": campaign.goal_days,
            "holdout_percent": campaign.holdout_percent,
        },
        "members": totals["members"],
        "treatment": n_t,
        "holdout": n_h,
        "enrolled": sum(row["enrolled"] for row in enrolment_rows),
        "enrolled_holdout": sum(row["holdout"] for row in enrolment_rows),
        "touchpoints": touchpoints,
        "sent": touchpoints[TouchpointStatus.SENT],
        "created": touchpoints[TouchpointStatus.CREATED],
        "confirmed": touchpoints["confirmed"],
        "skipped": touchpoints[TouchpointStatus.SKIPPED],
        "skipped_by_reason": dict(sorted(by_reason.items())),
        "converted": {"treatment": x_t, "holdout": x_h},
        "rate": {"treatment": rate_t, "holdout": rate_h},
        "lift": None if rate_t is None or rate_h is None else rate_t - rate_h,
        "lift_ci": newcombe_interval(x_t, n_t, x_h, n_h),
        "sops": sop_rows,
    }
