"""Reads of the Today page: the staff member's open to-dos, customers due for repurchase,
new contacts of the last 24 hours, and the counts on top.

Every list is capped and every count is one aggregate, so the page costs the same number
of queries for a clerk with 10 customers as for one with 10,000.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from campaigns.models import Touchpoint, TouchpointStatus
from campaigns.selectors.touchpoints import todo_list_qs
from customers.models import Customer
from customers.selectors import customer_visible_qs
from funnel.models import Milestones
from funnel.selectors import repurchase_due_qs

#: Rows per section: a phone shows a handful; the full lists live on other pages.
TODO_LIMIT = 50
REPURCHASE_LIMIT = 20
NEW_CONTACTS_LIMIT = 20
NEW_CONTACTS_WINDOW = timedelta(hours=24)
#: "Due for repurchase" on Today: expected within the next 3 days, or overdue.
REPURCHASE_WITHIN_DAYS = 3


@dataclass(frozen=True)
class TodayCounts:
    todos: int
    wecom_tasks: int
    repurchase_due: int
    new_contacts: int


@dataclass(frozen=True)
class Today:
    now: datetime
    counts: TodayCounts
    todos: list[Touchpoint]
    repurchase_due: list[Milestones]
    new_contacts: list[Customer]


def open_todos_qs(user: Any, *, now: datetime) -> QuerySet[Touchpoint]:
    """The user's to-dos and WeCom tasks awaiting confirmation that are not snoozed,
    overdue (oldest due) first. A snoozed one comes back once its snooze has passed."""
    return todo_list_qs(user, now=now).filter(
        Q(snoozed_until__isnull=True) | Q(snoozed_until__lte=now)
    )


def todo_counts(user: Any, *, now: datetime) -> dict[str, int]:
    """Open to-dos and WeCom tasks awaiting confirmation, in one aggregate."""
    counts = (
        open_todos_qs(user, now=now)
        .order_by()
        .aggregate(
            todos=Count("pk", filter=Q(status=TouchpointStatus.TODO)),
            wecom_tasks=Count("pk", filter=Q(status=TouchpointStatus.CREATED)),
        )
    )
    return {"todos": int(counts["todos"] or 0), "wecom_tasks": int(counts["wecom_tasks"] or 0)}


def new_contacts_qs(user: Any, *, now: datetime) -> QuerySet[Customer]:
    """Visible customers acquired in the last 24 hours, newest first."""
    return (
        customer_visible_qs(user)
        .filter(acquired_at__gt=now - NEW_CONTACTS_WINDOW, acquired_at__lte=now)
        .select_related("source_channel")
        .order_by("-acquired_at", "-id")
    )


def repurchase_qs(user: Any, *, now: datetime) -> QuerySet[Milestones]:
    return repurchase_due_qs(user=user, as_of=now, within_days=REPURCHASE_WITHIN_DAYS)


def today_for_user(user: Any, *, now: datetime | None = None) -> Today:
    """Everything the Today page shows, in a fixed number of queries (7)."""
    now = now or timezone.now()
    counts = today_counts(user, now=now)
    return Today(
        now=now,
        counts=counts,
        todos=list(open_todos_qs(user, now=now)[:TODO_LIMIT]),
        repurchase_due=list(repurchase_qs(user, now=now)[:REPURCHASE_LIMIT]),
        new_contacts=list(new_contacts_qs(user, now=now)[:NEW_CONTACTS_LIMIT]),
    )


def today_counts(user: Any, *, now: datetime | None = None) -> TodayCounts:
    """Only the counts (the htmx refresh after a to-do is done or snoozed)."""
    now = now or timezone.now()
    todos = todo_counts(user, now=now)
    return TodayCounts(
        todos=todos["todos"],
        wecom_tasks=todos["wecom_tasks"],
        repurchase_due=repurchase_qs(user, now=now).order_by().count(),
        new_contacts=new_contacts_qs(user, now=now).order_by().count(),
    )
