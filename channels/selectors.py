"""Reads of the channels tables, scoped to what the asking user may see, and the channel
figures operators compare channels by (customers brought, cost per customer).

Every figure is counted by the database (grouped queries and correlated subqueries),
never by looping over rows in Python, so a channel with a million follows costs the same
number of queries as one with ten.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.db.models import (
    Count,
    Exists,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
)
from django.db.models.functions import Coalesce
from django.http import Http404

from channels.models import Channel, ChannelCode, SyncRun
from customers.models import Customer, Follow
from customers.selectors import staff_of
from scrm.roles import Role, role_of, sees_everything

#: How many codes a channel's figures list in full (a referral channel has one code per
#: referring customer; the rest are counted in the totals, and listed by the codes API).
STATS_CODE_LIMIT = 100


def channel_visible_qs(user: Any) -> QuerySet[Channel]:
    """Channels are corp-wide vocabulary: anyone with a role may read them (a clerk shows
    a channel's code at the counter); nobody else sees any."""
    if role_of(user) is None:
        return Channel.objects.none()
    return Channel.objects.all()


def channel_get_for_user(user: Any, pk: Any) -> Channel:
    """One channel the user may see, or Http404."""
    try:
        return channel_visible_qs(user).get(pk=int(pk))
    except (Channel.DoesNotExist, TypeError, ValueError, OverflowError):
        raise Http404("No such channel.") from None


# --- Channel codes ---------------------------------------------------------------------


def channel_code_visible_qs(user: Any) -> QuerySet[ChannelCode]:
    """Codes ``user`` may see.

    Operators and API clients see every code. Store managers and clerks see the codes on
    which at least one staff member of their store is (the codes their store shows at the
    counter), and nothing when they have no store. Anyone else sees nothing.
    """
    role = role_of(user)
    qs = ChannelCode.objects.all()
    if role in (Role.OPERATOR, Role.INTEGRATION):
        return qs
    staff = staff_of(user)
    if staff is None or staff.store_id is None:
        return qs.none()
    through = ChannelCode.staff.through
    on_code = through.objects.filter(channelcode_id=OuterRef("pk"), staff__store_id=staff.store_id)
    return qs.filter(Exists(on_code))


def channel_code_get_for_user(user: Any, pk: Any) -> ChannelCode:
    """One code the user may see (with its staff and tags), or Http404."""
    try:
        return channel_code_list_qs(user).get(pk=int(pk))
    except (ChannelCode.DoesNotExist, TypeError, ValueError, OverflowError):
        raise Http404("No such channel code.") from None


def channel_code_list_qs(user: Any) -> QuerySet[ChannelCode]:
    """The codes list's base queryset, with what each row shows loaded in fixed queries."""
    return (
        channel_code_visible_qs(user)
        .select_related("channel", "referrer")
        .prefetch_related("staff", "auto_tags")
    )


# --- Figures ---------------------------------------------------------------------------


def cost_per_customer(cost: Decimal, acquired: int) -> Decimal | None:
    """Customer acquisition cost in cents precision; None when nobody was acquired (a
    division by zero is not "free")."""
    if not acquired:
        return None
    return (cost / acquired).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def _count(qs: QuerySet[Any], group: str, counted: str = "pk", *, distinct: bool = False) -> Any:
    """A correlated ``(SELECT COUNT(..) ... GROUP BY group)`` that is 0 when no row matches."""
    counts = (
        qs.order_by().values(group).annotate(n=Count(counted, distinct=distinct)).values("n")[:1]
    )
    return Coalesce(Subquery(counts, output_field=IntegerField()), Value(0))


def _period(field: str, start: datetime | None, end: datetime | None) -> Q:
    """[start, end) on ``field``; either end open."""
    q = Q()
    if start is not None:
        q &= Q(**{f"{field}__gte": start})
    if end is not None:
        q &= Q(**{f"{field}__lt": end})
    return q


def channel_stats_qs(
    user: Any, *, start: datetime | None = None, end: datetime | None = None
) -> QuerySet[Channel]:
    """Visible channels annotated with ``acquired`` (customers whose source channel it is,
    acquired in [start, end)), ``codes_count`` and ``active_codes``.

    Subqueries rather than joins: joining customers and codes at once would multiply the
    rows and inflate both counts.
    """
    customers = Customer.objects.filter(
        _period("acquired_at", start, end), source_channel_id=OuterRef("pk")
    )
    codes = ChannelCode.objects.filter(channel_id=OuterRef("pk"))
    return channel_visible_qs(user).annotate(
        acquired=_count(customers, "source_channel_id"),
        codes_count=_count(codes, "channel_id"),
        active_codes=_count(codes.filter(is_active=True), "channel_id"),
    )


@dataclass(frozen=True)
class ChannelRow:
    """A row of the channels list: a channel annotated by ``channel_stats_qs``."""

    channel: Channel

    @property
    def acquired(self) -> int:
        return int(self.channel.acquired)  # type: ignore[attr-defined]

    @property
    def codes_count(self) -> int:
        return int(self.channel.codes_count)  # type: ignore[attr-defined]

    @property
    def active_codes(self) -> int:
        return int(self.channel.active_codes)  # type: ignore[attr-defined]

    @property
    def cost_per_customer(self) -> Decimal | None:
        return cost_per_customer(self.channel.cost, self.acquired)


@dataclass(frozen=True)
class StaffFigures:
    """What one staff member got through a code (or a channel's codes)."""

    staff_id: int
    name: str
    follows: int
    customers: int


@dataclass(frozen=True)
class CodeFigures:
    code: ChannelCode
    #: Follows ever made through the code's state (ended ones too: they were brought).
    follows: int
    active_follows: int
    #: Distinct customers among those follows.
    customers: int
    staff: list[StaffFigures] = field(default_factory=list)


@dataclass(frozen=True)
class ChannelFigures:
    channel: Channel
    acquired: int
    codes_count: int
    active_codes: int
    start: datetime | None
    end: datetime | None
    #: Follows and distinct customers through any of the channel's codes.
    follows: int
    customers: int
    staff: list[StaffFigures]
    codes: list[CodeFigures]

    @property
    def cost_per_customer(self) -> Decimal | None:
        return cost_per_customer(self.channel.cost, self.acquired)

    @property
    def codes_truncated(self) -> bool:
        return self.codes_count > len(self.codes)


def _staff_figure(row: Mapping[str, Any]) -> StaffFigures:
    return StaffFigures(
        staff_id=row["staff_id"],
        name=row["staff__name"],
        follows=row["follows"],
        customers=row["customers"],
    )


def _staff_figures(rows: Iterable[Mapping[str, Any]]) -> list[StaffFigures]:
    return [_staff_figure(row) for row in rows]


def code_figures(
    codes: Sequence[ChannelCode], *, start: datetime | None = None, end: datetime | None = None
) -> list[CodeFigures]:
    """Figures of the given codes (a page of them), in their order: two grouped queries
    whatever the number of codes or follows. A follow counts for a code when its
    ``state`` is the code's state and it was added in [start, end)."""
    states = [code.state for code in codes]
    follows = Follow.objects.filter(_period("added_at", start, end), state__in=states).order_by()
    totals = {
        row["state"]: row
        for row in follows.values("state").annotate(
            follows=Count("pk"),
            active=Count("pk", filter=Q(deleted_at__isnull=True)),
            customers=Count("customer_id", distinct=True),
        )
    }
    per_staff: dict[str, list[StaffFigures]] = {}
    staff_rows = (
        follows.values("state", "staff_id", "staff__name")
        .annotate(follows=Count("pk"), customers=Count("customer_id", distinct=True))
        .order_by("state", "-customers", "staff__name", "staff_id")
    )
    for row in staff_rows:
        # Grouping rows the database already counted, not counting in Python.
        per_staff.setdefault(row["state"], []).append(_staff_figure(row))
    empty = {"follows": 0, "active": 0, "customers": 0}
    return [
        CodeFigures(
            code=code,
            follows=totals.get(code.state, empty)["follows"],
            active_follows=totals.get(code.state, empty)["active"],
            customers=totals.get(code.state, empty)["customers"],
            staff=per_staff.get(code.state, []),
        )
        for code in codes
    ]


def channel_figures(
    user: Any,
    pk: Any,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    code_limit: int = STATS_CODE_LIMIT,
) -> ChannelFigures:
    """One channel's figures for [start, end): customers acquired (source channel), cost
    per acquired customer, follows and customers brought by its codes in total and per
    staff member, and per code (the ``code_limit`` codes that brought most customers)."""
    try:
        channel = channel_stats_qs(user, start=start, end=end).get(pk=int(pk))
    except (Channel.DoesNotExist, TypeError, ValueError, OverflowError):
        raise Http404("No such channel.") from None
    follows = Follow.objects.filter(
        _period("added_at", start, end),
        # A subquery, not a list: a referral channel may have a code per customer.
        state__in=ChannelCode.objects.filter(channel=channel).values("state"),
    ).order_by()
    totals = follows.aggregate(follows=Count("pk"), customers=Count("customer_id", distinct=True))
    staff = _staff_figures(
        follows.values("staff_id", "staff__name")
        .annotate(follows=Count("pk"), customers=Count("customer_id", distinct=True))
        .order_by("-customers", "staff__name", "staff_id")
    )
    brought = _count(
        Follow.objects.filter(_period("added_at", start, end), state=OuterRef("state")),
        "state",
        "customer_id",
        distinct=True,
    )
    top = (
        list(
            ChannelCode.objects.filter(channel=channel)
            .annotate(brought=brought)
            .prefetch_related("staff")
            .order_by("-brought", "-created_at", "-id")[:code_limit]
        )
        if code_limit > 0
        else []
    )
    return ChannelFigures(
        channel=channel,
        acquired=channel.acquired,  # type: ignore[attr-defined]
        codes_count=channel.codes_count,  # type: ignore[attr-defined]
        active_codes=channel.active_codes,  # type: ignore[attr-defined]
        start=start,
        end=end,
        follows=totals["follows"],
        customers=totals["customers"],
        staff=staff,
        codes=code_figures(top, start=start, end=end),
    )


# --- Sync runs -------------------------------------------------------------------------


def sync_run_visible_qs(user: Any) -> QuerySet[SyncRun]:
    """Sync runs are the integration's health: operators and API clients only."""
    if not sees_everything(user):
        return SyncRun.objects.none()
    return SyncRun.objects.all()


def sync_run_duration(run: SyncRun) -> timedelta | None:
    """How long a finished run took, to the second (None while it runs)."""
    if run.finished_at is None:
        return None
    return timedelta(seconds=round((run.finished_at - run.started_at).total_seconds()))


@dataclass(frozen=True)
class SyncRunRow:
    """A row of the sync runs page."""

    run: SyncRun

    @property
    def duration(self) -> timedelta | None:
        return sync_run_duration(self.run)


def sync_run_get_for_user(user: Any, pk: Any) -> SyncRun:
    try:
        return sync_run_visible_qs(user).get(pk=int(pk))
    except (SyncRun.DoesNotExist, TypeError, ValueError, OverflowError):
        raise Http404("No such sync run.") from None
