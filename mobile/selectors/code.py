"""Reads of the My code page: the signed-in staff member's channel codes and the
customers who added them through each code today."""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass
from datetime import datetime, time
from typing import Any

from django.conf import settings
from django.db.models import Count
from django.utils import timezone

from channels.models import ChannelCode
from customers.models import Follow
from customers.selectors import staff_of

#: Enough for any counter; a staff member on more codes sees the newest.
CODE_LIMIT = 20


@dataclass(frozen=True)
class MyCode:
    code: ChannelCode
    #: Customers who added this staff member through the code today (corp time zone).
    today_adds: int


@dataclass(frozen=True)
class MyCodes:
    codes: list[MyCode]
    total_today: int
    day_start: datetime


def corp_day_start(now: datetime) -> datetime:
    """Midnight of ``now``'s day in the corp's time zone: "today" is the store's day."""
    corp_tz = zoneinfo.ZoneInfo(settings.TIME_ZONE)
    return datetime.combine(now.astimezone(corp_tz).date(), time.min, tzinfo=corp_tz)


def my_codes(user: Any, *, now: datetime | None = None) -> MyCodes:
    """The user's own active channel codes (referral codes left out: those are
    customers' codes, not the counter's) and today's adds through each, in two queries.

    A follow counts for a code when its ``state`` is the code's state (how WeCom tells us
    which contact way was used, see ``channels.selectors.code_figures``), its staff member
    is the user and it was added today. Adds deleted since still count: they were made.
    """
    now = now or timezone.now()
    start = corp_day_start(now)
    staff = staff_of(user)
    if staff is None:
        return MyCodes(codes=[], total_today=0, day_start=start)
    codes = list(
        ChannelCode.objects.filter(staff=staff, is_active=True, referrer__isnull=True)
        .select_related("channel")
        .order_by("-created_at", "-id")[:CODE_LIMIT]
    )
    adds: dict[str, int] = {}
    if codes:
        adds = dict(
            Follow.objects.filter(
                staff=staff,
                state__in=[code.state for code in codes],
                added_at__gte=start,
                added_at__lte=now,
            )
            .order_by()
            .values("state")
            .annotate(n=Count("customer_id", distinct=True))
            .values_list("state", "n")
        )
    rows = [MyCode(code=code, today_adds=int(adds.get(code.state, 0))) for code in codes]
    return MyCodes(codes=rows, total_today=sum(adds.values()), day_start=start)
