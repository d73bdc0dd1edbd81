"""Who an SOP version targets: its ``audience`` filter as one customer query.

Every condition is a column test or an ``EXISTS`` subquery on an indexed table, so the
audience of a million customers is one SQL statement the database plans as a whole; the
enrolment narrows it further with ``id IN (...)`` per chunk of triggered customers.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from campaigns.models import SopVersion
from campaigns.services.schedule import corp_tz
from customers.models import Activity, Customer, CustomerStatus, CustomerTag, Follow
from funnel.models import Milestones, Stage

#: The keys an audience may have (``SopVersion.audience``); the SOP service validates them.
AUDIENCE_KEYS = (
    "tags_any",
    "tags_none",
    "stages",
    "channel_ids",
    "store_ids",
    "staff_ids",
    "acquired_from",
    "acquired_to",
    "active_within_days",
)


def _local_midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=corp_tz())


def _as_date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def audience_qs(version: SopVersion, *, now: datetime | None = None) -> QuerySet[Customer]:
    """Active (never lost) customers matching ``version.audience``; an empty audience is
    every active customer.

    ``staff_ids`` means customers the staff member owns or actively follows (a deleted
    follow no longer makes them "theirs" to message); ``acquired_from`` / ``acquired_to``
    are inclusive calendar days in the corp's time zone; ``active_within_days`` counts
    the customer's own activities only, not the ones the system writes (sync adds, sent
    touchpoints, tags), which would make every messaged customer look engaged.
    """
    audience: dict[str, Any] = version.audience or {}
    # Lost customers deleted every staff member: nobody can reach them on WeCom.
    qs = Customer.objects.filter(status=CustomerStatus.ACTIVE)
    if tags := audience.get("tags_any"):
        qs = qs.filter(
            Exists(CustomerTag.objects.filter(customer_id=OuterRef("pk"), tag_id__in=tags))
        )
    if tags := audience.get("tags_none"):
        qs = qs.filter(
            ~Exists(CustomerTag.objects.filter(customer_id=OuterRef("pk"), tag_id__in=tags))
        )
    if stages := audience.get("stages"):
        milestones = Milestones.objects.filter(customer_id=OuterRef("pk"))
        at_stage = Exists(milestones.filter(stage__in=stages))
        if Stage.ACQUISITION in stages:
            # A customer whose milestones were never computed is at acquisition.
            qs = qs.filter(Q(at_stage) | Q(~Exists(milestones)))
        else:
            qs = qs.filter(at_stage)
    if channel_ids := audience.get("channel_ids"):
        qs = qs.filter(source_channel_id__in=channel_ids)
    if store_ids := audience.get("store_ids"):
        qs = qs.filter(store_id__in=store_ids)
    if staff_ids := audience.get("staff_ids"):
        follows = Follow.objects.filter(
            customer_id=OuterRef("pk"), staff_id__in=staff_ids, deleted_at__isnull=True
        )
        qs = qs.filter(Q(owner_id__in=staff_ids) | Exists(follows))
    if acquired_from := audience.get("acquired_from"):
        qs = qs.filter(acquired_at__gte=_local_midnight(_as_date(acquired_from)))
    if acquired_to := audience.get("acquired_to"):
        qs = qs.filter(acquired_at__lt=_local_midnight(_as_date(acquired_to) + timedelta(days=1)))
    if days := audience.get("active_within_days"):
        since = (now or timezone.now()) - timedelta(days=int(days))
        engaged = Activity.objects.filter(
            customer_id=OuterRef("pk"), occurred_at__gte=since
        ).exclude(kind__in=settings.FUNNEL_SYSTEM_KINDS)
        qs = qs.filter(Exists(engaged))
    return qs
