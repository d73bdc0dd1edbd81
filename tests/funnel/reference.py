"""The funnel computed the plain way, from the raw tables, to check the reports against.

Nothing here reads ``funnel_milestones`` or calls ``funnel``: each customer's milestones
are derived in Python from ``Customer``, ``Activity``, ``Order``, ``Follow`` and
``CustomerTag`` by the README's definitions, and every report is recounted from them.
Rates are the same plain float divisions as the selectors', so results compare with ==.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.conf import settings
from django.utils import timezone

from customers.models import Activity, Customer, CustomerTag, Follow, Order, OrderStatus, Staff
from funnel.filters import ReportFilters

CENT = Decimal("0.01")
STAGES = ("acquisition", "activation", "retention", "revenue", "referral")
#: Periods the engagement bit sets hold, and their lengths in days.
PERIODS = 62
PERIOD_DAYS = {"week": 7, "month": 30}


@dataclass
class RawCustomer:
    """A customer as the raw tables have it, with the milestones derived by hand."""

    id: int
    acquired_at: datetime
    channel_id: int | None
    store_id: int | None
    owner_id: int | None
    referred_by_id: int | None
    lost_at: datetime | None
    follow_staff: set[int] = field(default_factory=set)  # every follow, ended or not
    active_follow_stores: set[int] = field(default_factory=set)
    tags: set[int] = field(default_factory=set)
    activated_at: datetime | None = None
    retained_at: datetime | None = None
    referral_at: datetime | None = None
    paid: list[tuple[datetime, Decimal]] = field(default_factory=list)  # by (paid_at, id)
    engaged: dict[int, set[int]] = field(default_factory=lambda: {7: set(), 30: set()})

    @property
    def revenue_at(self) -> datetime | None:
        return self.paid[0][0] if self.paid else None

    @property
    def repurchase_at(self) -> datetime | None:
        return self.paid[1][0] if len(self.paid) > 1 else None

    def milestones(self) -> list[datetime | None]:
        return [
            self.acquired_at,
            self.activated_at,
            self.retained_at,
            self.revenue_at,
            self.referral_at,
        ]

    def reached(self, k: int) -> datetime | None:
        """When stage k (1-based) was reached: the latest of milestones 1..k."""
        times = self.milestones()[:k]
        if any(t is None for t in times):
            return None
        return max(t for t in times if t is not None)

    def stage(self) -> int:
        return max(k for k in range(1, 6) if self.reached(k) is not None)

    def purchase_interval(self) -> timedelta | None:
        """The median gap between consecutive paid orders, floored to the second."""
        gaps = sorted(
            (b[0] - a[0]) // timedelta(microseconds=1)
            for a, b in zip(self.paid, self.paid[1:], strict=False)
        )
        if not gaps:
            return None
        middle = len(gaps) // 2
        if len(gaps) % 2:
            seconds = gaps[middle] // 1_000_000
        else:
            seconds = (gaps[middle - 1] + gaps[middle]) // 2_000_000
        return timedelta(seconds=seconds)

    def bits(self, days: int) -> int:
        return sum(1 << n for n in self.engaged[days])


def load_raw() -> dict[int, RawCustomer]:
    """Every customer with milestones derived from the raw tables (the definitions)."""
    activation = set(settings.FUNNEL_ACTIVATION_KINDS)
    system = set(settings.FUNNEL_SYSTEM_KINDS)
    retention = timedelta(days=settings.FUNNEL_RETENTION_DAYS)
    customers = {
        c["id"]: RawCustomer(
            id=c["id"],
            acquired_at=c["acquired_at"],
            channel_id=c["source_channel_id"],
            store_id=c["store_id"],
            owner_id=c["owner_id"],
            referred_by_id=c["referred_by_id"],
            lost_at=c["lost_at"],
        )
        for c in Customer.objects.values(
            "id",
            "acquired_at",
            "source_channel_id",
            "store_id",
            "owner_id",
            "referred_by_id",
            "lost_at",
        )
    }
    store_of = dict(Staff.objects.values_list("id", "store_id"))
    for customer_id, staff_id, deleted_at in Follow.objects.values_list(
        "customer_id", "staff_id", "deleted_at"
    ):
        customers[customer_id].follow_staff.add(staff_id)
        if deleted_at is None and store_of[staff_id] is not None:
            customers[customer_id].active_follow_stores.add(store_of[staff_id])
    for customer_id, tag_id in CustomerTag.objects.values_list("customer_id", "tag_id"):
        customers[customer_id].tags.add(tag_id)
    for customer_id, kind, occurred_at in Activity.objects.values_list(
        "customer_id", "kind", "occurred_at"
    ):
        c = customers[customer_id]
        if kind in activation:
            c.activated_at = _earliest(c.activated_at, occurred_at)
        if kind in system:
            continue
        since = occurred_at - c.acquired_at
        if since >= retention:
            c.retained_at = _earliest(c.retained_at, occurred_at)
        for days in (7, 30):
            if timedelta(0) <= since < timedelta(days=days * PERIODS):
                c.engaged[days].add(since // timedelta(days=days))
    paid = Order.objects.filter(status=OrderStatus.PAID).values_list(
        "customer_id", "paid_at", "id", "amount"
    )
    for customer_id, paid_at, _id, amount in sorted(paid, key=lambda o: (o[1], o[2])):
        customers[customer_id].paid.append((paid_at, amount))
    for c in list(customers.values()):
        if c.referred_by_id is not None:
            referrer = customers[c.referred_by_id]
            referrer.referral_at = _earliest(referrer.referral_at, c.acquired_at)
    return customers


def _earliest(current: datetime | None, candidate: datetime) -> datetime:
    return candidate if current is None or candidate < current else current


def milestone_row(c: RawCustomer) -> dict[str, Any]:
    """What the Milestones row of ``c`` must hold (its columns, by hand)."""
    return {
        "customer_id": c.id,
        "acquired_at": c.acquired_at,
        "channel_id": c.channel_id,
        "store_id": c.store_id,
        "owner_id": c.owner_id,
        "is_referred": c.referred_by_id is not None,
        "lost_at": c.lost_at,
        "activated_at": c.activated_at,
        "retained_at": c.retained_at,
        "revenue_at": c.revenue_at,
        "repurchase_at": c.repurchase_at,
        "referral_at": c.referral_at,
        "reached_activation_at": c.reached(2),
        "reached_retention_at": c.reached(3),
        "reached_revenue_at": c.reached(4),
        "reached_referral_at": c.reached(5),
        "stage": c.stage(),
        "engaged_weeks": c.bits(7),
        "engaged_months": c.bits(30),
        "paid_orders": len(c.paid),
        "last_paid_at": c.paid[-1][0] if c.paid else None,
        "purchase_interval": c.purchase_interval(),
    }


def paid_periods(customers: dict[int, RawCustomer]) -> list[tuple[Any, ...]]:
    """What the PaidPeriod rows must hold, sorted: (customer, acquired_at, days, n, amount)
    for each period of 7 and of 30 days (n < PERIODS) in which the customer paid."""
    rows = []
    for c in customers.values():
        for days in (7, 30):
            amounts: dict[int, Decimal] = defaultdict(Decimal)
            for paid_at, amount in c.paid:
                since = paid_at - c.acquired_at
                if timedelta(0) <= since < timedelta(days=days * PERIODS):
                    amounts[since // timedelta(days=days)] += amount
            rows += [(c.id, c.acquired_at, days, n, a) for n, a in amounts.items()]
    return sorted(rows)


# --- Who is counted ---------------------------------------------------------------------


def visible_to_store_manager(customers: dict[int, RawCustomer], store_id: int) -> set[int]:
    """A store manager sees the store's customers, and those an active follow of a staff
    member of the store ties to it."""
    return {
        c.id
        for c in customers.values()
        if c.store_id == store_id or store_id in c.active_follow_stores
    }


def in_dimensions(c: RawCustomer, f: ReportFilters) -> bool:
    return (
        (f.channel_id is None or c.channel_id == f.channel_id)
        and (f.store_id is None or c.store_id == f.store_id)
        and (f.staff_id is None or c.owner_id == f.staff_id or f.staff_id in c.follow_staff)
        and (f.tag_id is None or f.tag_id in c.tags)
    )


def _selected(
    customers: dict[int, RawCustomer], f: ReportFilters, visible: set[int] | None
) -> list[RawCustomer]:
    return [
        c
        for c in customers.values()
        if (visible is None or c.id in visible) and in_dimensions(c, f)
    ]


def cohort(
    customers: dict[int, RawCustomer], f: ReportFilters, visible: set[int] | None = None
) -> list[RawCustomer]:
    return [c for c in _selected(customers, f, visible) if f.start_at <= c.acquired_at < f.end_at]


def counts(c: RawCustomer, moment: datetime | None, f: ReportFilters) -> bool:
    """A milestone that counts: reached, and within the window after acquisition if any."""
    return moment is not None and (f.window is None or moment < c.acquired_at + f.window)


def at_stage(c: RawCustomer, k: int, f: ReportFilters) -> bool:
    return all(counts(c, m, f) for m in c.milestones()[:k])


def _rate(count: int, of: int) -> float | None:
    return count / of if of else None


def _money(value: Decimal) -> str:
    return str(value.quantize(CENT, rounding=ROUND_HALF_UP))


# --- The reports ---------------------------------------------------------------------


def funnel(
    customers: dict[int, RawCustomer], f: ReportFilters, visible: set[int] | None = None
) -> dict[str, Any]:
    members = cohort(customers, f, visible)
    stage_counts = [sum(at_stage(c, k, f) for c in members) for k in range(1, 6)]
    stages = []
    for k, name in enumerate(STAGES):
        previous = stage_counts[k - 1] if k else stage_counts[0]
        stages.append(
            {
                "stage": name,
                "count": stage_counts[k],
                "rate_from_previous": _rate(stage_counts[k], previous),
                "rate_from_first": _rate(stage_counts[k], stage_counts[0]),
            }
        )
    bought = sum(counts(c, c.revenue_at, f) for c in members)
    repurchased = sum(counts(c, c.repurchase_at, f) for c in members)
    return {
        "stages": stages,
        "repurchase": {
            "count": repurchased,
            "rate": _rate(repurchased, bought),
            "first_purchases": bought,
        },
    }


def channels(
    customers: dict[int, RawCustomer],
    f: ReportFilters,
    channel_names: dict[int, tuple[str, Decimal]],
    visible: set[int] | None = None,
) -> list[dict[str, Any]]:
    by_channel: dict[int | None, list[RawCustomer]] = defaultdict(list)
    for c in cohort(customers, f, visible):
        by_channel[c.channel_id].append(c)
    rows: list[dict[str, Any]] = []
    for channel_id, members in by_channel.items():
        name, cost = channel_names[channel_id] if channel_id is not None else ("", Decimal(0))
        first = sum(counts(c, c.revenue_at, f) for c in members)
        again = sum(counts(c, c.repurchase_at, f) for c in members)
        revenue = sum(
            (amount for c in members for paid_at, amount in c.paid if counts(c, paid_at, f)),
            Decimal(0),
        )
        rows.append(
            {
                "channel_id": channel_id,
                "channel": name,
                "acquired": len(members),
                **{STAGES[k - 1]: sum(at_stage(c, k, f) for c in members) for k in range(2, 6)},
                "first_purchases": first,
                "repurchases": again,
                "repurchase_rate": _rate(again, first),
                "revenue_amount": _money(revenue),
                "cost": _money(cost),
                "cost_per_acquired": _money(cost / len(members))
                if channel_id is not None
                else None,
            }
        )
    rows.sort(key=lambda r: (-r["acquired"], r["channel"], r["channel_id"] or 0))
    return rows


def _local_day(moment: datetime) -> date:
    return timezone.localtime(moment).date()


def _start_of(day: date, kind: str) -> date:
    if kind == "week":
        return day - timedelta(days=day.weekday())
    if kind == "month":
        return day.replace(day=1)
    if kind == "year":
        return day.replace(month=1, day=1)
    return day


def _periods(f: ReportFilters, kind: str) -> list[date]:
    """First days of the periods overlapping [start, end), found day by day."""
    days = (f.start + timedelta(days=i) for i in range((f.end - f.start).days))
    return list(dict.fromkeys(_start_of(day, kind) for day in days))


def trend(
    customers: dict[int, RawCustomer],
    f: ReportFilters,
    interval: str,
    visible: set[int] | None = None,
) -> list[dict[str, Any]]:
    names = ("new_customers", "activations", "first_purchases", "repurchases", "referrals", "lost")
    table = {day: dict.fromkeys(names, 0) for day in _periods(f, interval)}
    for c in _selected(customers, f, visible):
        events = {
            "new_customers": c.acquired_at,
            "activations": c.activated_at,
            "first_purchases": c.revenue_at,
            "repurchases": c.repurchase_at,
            "referrals": c.acquired_at if c.referred_by_id is not None else None,
            "lost": c.lost_at,
        }
        for name, moment in events.items():
            if moment is not None and f.start_at <= moment < f.end_at:
                table[_start_of(_local_day(moment), interval)][name] += 1
    return [{"period": day.isoformat(), **cells} for day, cells in table.items()]


def cohorts(
    customers: dict[int, RawCustomer],
    f: ReportFilters,
    period: str,
    periods: int,
    now: datetime,
    visible: set[int] | None = None,
) -> dict[str, Any]:
    days = PERIOD_DAYS[period]
    length = timedelta(days=days)
    groups: dict[date, list[RawCustomer]] = defaultdict(list)
    for c in cohort(customers, f, visible):
        groups[_start_of(_local_day(c.acquired_at), period)].append(c)
    rows = []
    for first_day in _periods(f, period):
        members = groups.get(first_day, [])
        first_at = timezone.make_aware(datetime.combine(first_day, time.min))
        payers: dict[int, set[int]] = defaultdict(set)
        amounts: dict[int, Decimal] = defaultdict(Decimal)
        for c in members:
            for paid_at, amount in c.paid:
                since = paid_at - c.acquired_at
                if timedelta(0) <= since < length * periods:
                    n = since // length
                    payers[n].add(c.id)
                    amounts[n] += amount
        engaged: list[float | None] = []
        paid: list[float | None] = []
        revenue: list[str | None] = []
        for n in range(periods):
            if not members or first_at + n * length > now:
                engaged.append(None)
                paid.append(None)
                revenue.append(None)
                continue
            engaged.append(_rate(sum(n in c.engaged[days] for c in members), len(members)))
            paid.append(_rate(len(payers[n]), len(members)))
            revenue.append(_money(amounts[n] / len(members)))
        rows.append(
            {
                "cohort": first_day.isoformat(),
                "size": len(members),
                "engaged": engaged,
                "paid": paid,
                "revenue_per_customer": revenue,
            }
        )
    return {"period": period, "periods": periods, "cohorts": rows}
