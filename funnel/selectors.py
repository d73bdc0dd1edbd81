"""Funnel reads: the cohort every report starts from, and the reports over it (funnel,
channels, trend, cohorts) and the repurchase cycle / "due for repurchase" list.

Reports aggregate in the database over ``funnel_milestones`` (one narrow row per
customer, indexed by acquisition time and each dimension), never over the raw activity
table; revenue by channel joins the cohort's rows to their paid orders, revenue by
cohort and period reads the paid periods the refresh keeps beside the milestones. Each
report is a fixed number of queries. Row-level permission applies here as everywhere: a
store manager's funnel counts the customers of their store only.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.core.exceptions import EmptyResultSet, ValidationError
from django.db import connection, transaction
from django.db.models import (
    Count,
    DateTimeField,
    DurationField,
    Exists,
    ExpressionWrapper,
    F,
    Func,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Sum,
)
from django.utils import timezone

from customers.models import Customer, CustomerTag, Follow, Order, OrderStatus
from customers.selectors import visible_to
from funnel._session import local_settings
from funnel.filters import ReportFilters
from funnel.models import REACHED_FIELDS, Milestones, PaidPeriod, Stage
from funnel.services import MONTH_DAYS, PERIODS, WEEK_DAYS
from scrm.roles import sees_everything


def milestones_visible_qs(user: Any) -> QuerySet[Milestones]:
    """Milestone rows of the customers ``user`` may see: the customers' rule, applied to
    the dimensions the milestones copy (no join to the customer table)."""
    return visible_to(Milestones.objects.all(), user, customer="customer_id")


def narrowed_qs(
    qs: QuerySet[Milestones],
    *,
    channel_id: int | None = None,
    store_id: int | None = None,
    staff_id: int | None = None,
    tag_id: int | None = None,
) -> QuerySet[Milestones]:
    """Milestone rows narrowed by the report dimensions (``None`` leaves one open).

    The staff filter means the staff member's customers: owned by them, or added by them
    at any time (a follow, even one since deleted, since it asks who brought the customer).
    """
    if channel_id is not None:
        qs = qs.filter(channel_id=channel_id)
    if store_id is not None:
        qs = qs.filter(store_id=store_id)
    if staff_id is not None:
        # A UNION of two index look-ups, not ``owner = X OR EXISTS(follow)``: the OR form
        # tests every row of the cohort (700 ms against 145 ms at a million customers).
        followed = Follow.objects.filter(staff_id=staff_id).order_by().values("customer_id")
        owned = Milestones.objects.filter(owner_id=staff_id).order_by().values("customer_id")
        qs = qs.filter(customer_id__in=followed.union(owned, all=True))
    if tag_id is not None:
        tagged = CustomerTag.objects.filter(customer_id=OuterRef("customer_id"), tag_id=tag_id)
        qs = qs.filter(Exists(tagged))
    return qs


def _dimensions_qs(user: Any, filters: ReportFilters) -> QuerySet[Milestones]:
    """Visible customers narrowed by the filters' dimensions, whenever acquired."""
    return narrowed_qs(
        milestones_visible_qs(user),
        channel_id=filters.channel_id,
        store_id=filters.store_id,
        staff_id=filters.staff_id,
        tag_id=filters.tag_id,
    )


def cohort_qs(user: Any, filters: ReportFilters) -> QuerySet[Milestones]:
    """The cohort: visible customers acquired in [start, end), narrowed by the filters
    (see :func:`narrowed_qs` for what each dimension means)."""
    return _dimensions_qs(user, filters).filter(
        acquired_at__gte=filters.start_at, acquired_at__lt=filters.end_at
    )


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


# --- Channels ---------------------------------------------------------------------------

_CENT = Decimal("0.01")


def _money(value: Decimal | None) -> str:
    """Money as the API shows it: a Decimal string with two places (half up, as a till)."""
    return str((value or Decimal(0)).quantize(_CENT, rounding=ROUND_HALF_UP))


def _stage_counts(filters: ReportFilters) -> dict[str, Count]:
    """Count of the rows at each stage after acquisition, keyed by the stage's name."""
    return {
        stage.name.lower(): Count("pk", filter=reached(field, filters))
        for stage, field in REACHED_FIELDS.items()
        if stage != Stage.ACQUISITION
    }


def channel_report(*, user: Any, filters: ReportFilters) -> list[dict[str, Any]]:
    """Per first-touch channel of the cohort: customers acquired, count at each stage,
    first purchases and repurchases, revenue, cost and cost per acquired customer.

    Two aggregate queries (stages, revenue), each grouped by channel in the database.
    Customers without a channel make one row with ``channel_id`` None (only if any); its
    cost is zero and its cost per acquired customer None (nothing was paid for them).
    Rows come by customers acquired (most first), then channel name. Cost and cost per
    acquired customer are None for users who do not see every customer.
    """
    cohort = cohort_qs(user, filters)
    rows = (
        cohort.values("channel_id", "channel__name", "channel__cost")
        .annotate(
            acquired=Count("pk"),
            **_stage_counts(filters),
            first_purchases=Count("pk", filter=reached("revenue_at", filters)),
            repurchases=Count("pk", filter=reached("repurchase_at", filters)),
        )
        .order_by()
    )
    # Revenue: the paid orders of the cohort's buyers (within the window, if any).
    buyers = cohort.filter(reached("revenue_at", filters))
    until = ""
    if filters.window is not None:
        buyers = buyers.annotate(
            until=ExpressionWrapper(F("acquired_at") + filters.window, output_field=DateTimeField())
        )
        until = "AND o.paid_at < m.m_until"
    columns: dict[str, Any] = {"m_customer": F("customer_id"), "m_channel": F("channel_id")}
    if until:
        columns["m_until"] = F("until")
    amounts: dict[int | None, Decimal] = {
        channel_id: _amount(amount)
        for channel_id, amount in _paid_orders_of(
            buyers.values(**columns), keys=["m.m_channel"], aggregates="SUM(o.amount)", where=until
        )
    }
    # A channel's cost is corp-wide: divided by one store's customers it would mislead, so
    # only those who see every customer get it.
    shows_cost = sees_everything(user)
    report = []
    for row in rows:
        channel_id = row["channel_id"]
        cost: Decimal = row["channel__cost"] if channel_id is not None else Decimal(0)
        acquired = row["acquired"]
        report.append(
            {
                "channel_id": channel_id,
                "channel": row["channel__name"] or "",
                "acquired": acquired,
                **{name: row[name] for name in _stage_counts(filters)},
                "first_purchases": row["first_purchases"],
                "repurchases": row["repurchases"],
                "repurchase_rate": rate(row["repurchases"], row["first_purchases"]),
                "revenue_amount": _money(amounts.get(channel_id)),
                "cost": _money(cost) if shows_cost else None,
                "cost_per_acquired": (
                    _money(cost / acquired)
                    if shows_cost and channel_id is not None and acquired
                    else None
                ),
            }
        )
    report.sort(key=lambda r: (-r["acquired"], r["channel"], r["channel_id"] or 0))
    return report


# --- Calendar periods ------------------------------------------------------------------

TREND_INTERVALS = ("day", "month", "year")
#: Cohort period -> length in days of the periods counted from each acquisition.
COHORT_PERIODS = {"week": WEEK_DAYS, "month": MONTH_DAYS}
#: The engagement bit sets hold this many periods (bit 63 is a 64-bit integer's sign).
MAX_COHORT_PERIODS = PERIODS


def _period_start(day: date, kind: str) -> date:
    """The first day of the calendar period (Monday for a week) containing ``day``."""
    if kind == "week":
        return day - timedelta(days=day.weekday())
    if kind == "month":
        return day.replace(day=1)
    if kind == "year":
        return day.replace(month=1, day=1)
    return day


def _next_period(day: date, kind: str) -> date:
    if kind == "week":
        return day + timedelta(days=7)
    if kind == "month":
        return (day.replace(day=28) + timedelta(days=4)).replace(day=1)
    if kind == "year":
        return day.replace(year=day.year + 1)
    return day + timedelta(days=1)


def _period_starts(start: date, end: date, kind: str) -> list[date]:
    """First days of the calendar periods that overlap [start, end), in order."""
    starts = []
    day = _period_start(start, kind)
    while day < end:
        starts.append(day)
        day = _next_period(day, kind)
    return starts


def _midnight(day: date) -> datetime:
    """The first instant of ``day`` in the configured time zone."""
    return timezone.make_aware(datetime.combine(day, time.min))


class _CalendarIndex(Func):
    """The 1-based index of the calendar period holding a time, given the periods' first
    instants in order (the time is never before the first one).

    The calendar is cut in Python, in the configured time zone, so the database only
    compares timestamps: ``date_trunc(... AT TIME ZONE ...)`` converts every row's time
    zone, which at a million rows cost the cohort grid more than its twelve counts.
    PostgreSQL finds the period by binary search (``width_bucket``); SQLite, at its
    scale, by a CASE over the boundaries.
    """

    output_field = IntegerField()

    def __init__(self, expression: Any, starts: Sequence[datetime]) -> None:
        if not starts:
            raise ValueError("_CalendarIndex needs at least one period")
        super().__init__(expression)
        self.starts = list(starts)

    def as_sql(  # type: ignore[override]
        self, compiler: Any, connection: Any, **extra_context: Any
    ) -> tuple[str, list[Any]]:
        [expression] = self.get_source_expressions()
        sql, params = compiler.compile(expression)
        if params:
            # SQLite's CASE repeats the operand: parameters would be out of step.
            raise ValueError("_CalendarIndex takes a column reference only")
        starts = [connection.ops.adapt_datetimefield_value(start) for start in self.starts]
        if connection.vendor == "postgresql":
            return f"WIDTH_BUCKET({sql}, %s::timestamptz[])", [starts]
        if len(starts) == 1:
            return "1", []
        whens = " ".join(f"WHEN {sql} < %s THEN {i}" for i in range(1, len(starts)))
        return f"(CASE {whens} ELSE {len(starts)} END)", starts[1:]


def _paid_orders_of(
    members: QuerySet[Milestones, Any],
    *,
    keys: Sequence[str],
    aggregates: str,
    where: str = "",
    where_params: Sequence[Any] = (),
) -> list[tuple[Any, ...]]:
    """Aggregate the paid orders (``o``) of ``members`` (``m``: a ``values()`` query of
    milestone rows with at least an ``m_customer`` column), grouped by the SQL ``keys``:
    rows of the keys, then the ``aggregates``.

    The orders are joined on the milestone row's customer id directly: the ORM would go
    through the customer table (milestones -> customer -> orders), a million index probes
    for nothing at the benchmark's size. The members' permission and filters stay the
    ORM's, compiled into the subquery.
    """
    try:
        members_sql, members_params = members.query.sql_with_params()
    except EmptyResultSet:  # members.none(): a user who may see nobody
        return []
    groups = ", ".join(str(i + 1) for i in range(len(keys)))
    sql = (
        f"SELECT {', '.join(keys)}, {aggregates} FROM ({members_sql}) m "
        f"JOIN {Order._meta.db_table} o ON o.customer_id = m.m_customer "
        f"WHERE o.status = %s {where} GROUP BY {groups}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*members_params, OrderStatus.PAID.value, *where_params])
        return list(cursor.fetchall())


def _amount(value: Any) -> Decimal:
    """A summed amount from a raw row, to the cent (SQLite sums NUMERIC columns as floats;
    the sum of amounts in cents is whole cents, so rounding to the cent removes only the
    float's noise)."""
    if value is None:
        return Decimal(0)
    return Decimal(str(value)).quantize(_CENT, rounding=ROUND_HALF_UP)


# --- Trend -----------------------------------------------------------------------------

#: Series of the trend report: name -> the milestone time that puts a customer in it.
_TREND_SERIES = {
    "new_customers": "acquired_at",
    "activations": "activated_at",
    "first_purchases": "revenue_at",
    "repurchases": "repurchase_at",
    "lost": "lost_at",
}


def trend_report(*, user: Any, filters: ReportFilters, interval: str) -> list[dict[str, Any]]:
    """Events per day, month or year of [start, end) in the configured time zone: new
    customers, activations, first purchases, repurchases, referred newcomers, customers
    lost. Each event counts in the period it happened (not by cohort), over the visible
    customers narrowed by the filters' dimensions; ``window_days`` does not apply.

    Every period is listed, with zeros where nothing happened. One grouped query per
    event time (five), whatever the span.
    """
    if interval not in TREND_INTERVALS:
        raise ValidationError(
            {"interval": [f"Choose one of {', '.join(TREND_INTERVALS)}; not {interval!r}."]}
        )
    days = _period_starts(filters.start, filters.end, interval)
    if not days:
        return []
    starts = [_midnight(day) for day in days]
    base = _dimensions_qs(user, filters)
    series = [*_TREND_SERIES, "referrals"]
    table = {day: dict.fromkeys(series, 0) for day in days}
    for name, field in _TREND_SERIES.items():
        # Referred newcomers are counted with the newcomers: one scan of acquired_at.
        extra = (
            {"referrals": Count("pk", filter=Q(is_referred=True))}
            if name == "new_customers"
            else {}
        )
        rows = (
            base.filter(**{f"{field}__gte": filters.start_at, f"{field}__lt": filters.end_at})
            .annotate(period=_CalendarIndex(field, starts))
            .values("period")
            .annotate(n=Count("pk"), **extra)
            .order_by()
        )
        for row in rows:
            cells = table[days[row["period"] - 1]]
            cells[name] = row["n"]
            if extra:
                cells["referrals"] = row["referrals"]
    return [{"period": day.isoformat(), **cells} for day, cells in table.items()]


# --- Cohorts ---------------------------------------------------------------------------


def _cohort_validate(period: str, periods: int) -> None:
    errors: dict[str, list[str]] = {}
    if period not in COHORT_PERIODS:
        errors["period"] = [f"Choose one of {', '.join(COHORT_PERIODS)}; not {period!r}."]
    if not isinstance(periods, int) or not 1 <= periods <= MAX_COHORT_PERIODS:
        errors["periods"] = [f"Must be a whole number from 1 to {MAX_COHORT_PERIODS}."]
    if errors:
        raise ValidationError(errors)


@contextmanager
def _parallel_scans() -> Iterator[None]:
    """On PostgreSQL, a transaction in which parallel workers' start and the rows they
    hand over are priced at nothing, so that the planner reads a large part of a table
    with them wherever that is the cheaper plan (the previous prices are back after the
    block, for a caller's transaction around it).

    The cohort grid reads the engagement bits from the milestone rows (no index carries
    them, so that folding in new activities stays a HOT update). At the default costs the
    planner read a year of a million customers (750,000 rows) in one process: it cannot
    tell that they fall into a few thousand groups, so sharing the aggregate out looked
    useless to it. In parallel the week grid's median went 353 → 281-301 ms and the month
    grid's 311 → 265-288 ms (alternating runs on the 2-core development machine). A
    narrow filter's index scan stays cheaper than any scan of the table and is kept."""
    if connection.vendor != "postgresql":
        yield
        return
    with (
        transaction.atomic(),
        connection.cursor() as cursor,
        local_settings(cursor, {"parallel_setup_cost": "0", "parallel_tuple_cost": "0"}),
    ):
        yield


def cohort_report(
    *, user: Any, filters: ReportFilters, period: str, periods: int = 12
) -> dict[str, Any]:
    """Acquisition cohorts (calendar weeks from Monday, or months, in the configured time
    zone, of the customers acquired in [start, end)) by periods since acquisition.

    Period n of a customer is days [7n, 7n + 7) (weeks) or [30n, 30n + 30) (months) after
    their own acquisition. For each cohort and n: the share of the cohort with any
    engagement activity in period n, the share with a paid order in period n, and the
    paid amount in period n per customer of the cohort. A cell is None when period n of the
    cohort has not started yet (its first day + n periods is after now), or the cohort is
    empty. ``window_days`` does not apply: the columns are the window.

    Two queries: sizes and engagement from the milestones' bit sets (read from the rows,
    in parallel: no index carries the bits, so that new activities' folds are HOT
    updates), and payers and revenue from the paid periods (``PaidPeriod``: one row per
    customer and period paid in) by cohort and period, without reading the orders.
    """
    _cohort_validate(period, periods)
    first_days = _period_starts(filters.start, filters.end, period)
    if not first_days:
        return {"period": period, "periods": periods, "cohorts": []}
    length_days = COHORT_PERIODS[period]
    length = timedelta(days=length_days)
    bits = "engaged_weeks" if period == "week" else "engaged_months"
    starts = [_midnight(day) for day in first_days]
    members = _dimensions_qs(user, filters)
    cohort = cohort_qs(user, filters).annotate(cohort=_CalendarIndex("acquired_at", starts))
    # Sizes and engagement: the rows grouped by cohort and their bits of the grid's
    # periods first (tens of thousands of groups), then each period's count summed over
    # the groups. Twelve or more per-row bit tests cost more than the grouping.
    grouped = (
        cohort.annotate(bits=F(bits).bitand((1 << periods) - 1))
        .values("cohort", "bits")
        .annotate(customers=Count("*"))
        .order_by()
    )
    sizes: dict[int, list[int]] = {}
    try:
        grouped_sql, grouped_params = grouped.query.sql_with_params()
    except EmptyResultSet:  # a user who may see nobody
        pass
    else:
        per_period = ", ".join(f"SUM(g.customers * ((g.bits >> {n}) & 1))" for n in range(periods))
        with _parallel_scans(), connection.cursor() as cursor:
            cursor.execute(
                f"SELECT g.cohort, SUM(g.customers), {per_period} "
                f"FROM ({grouped_sql}) g GROUP BY g.cohort",
                grouped_params,
            )
            sizes = {int(row[0]): [int(x) for x in row[1:]] for row in cursor.fetchall()}
    # Payers and revenue: the paid periods (one row per customer and period paid in, with
    # the amount) of the cohort's customers, by cohort and period. Without any filter or
    # restriction the cohort is every customer acquired in [start, end): no join at all.
    paid_rows = PaidPeriod.objects.filter(
        days=length_days,
        n__lt=periods,
        acquired_at__gte=filters.start_at,
        acquired_at__lt=filters.end_at,
    )
    if members.query.has_filters():
        paid_rows = paid_rows.filter(customer_id__in=cohort_qs(user, filters).values("customer_id"))
    paid: dict[tuple[int, int], tuple[int, Decimal]] = {
        (row["cohort"], row["n"]): (row["payers"], _amount(row["amount"]))
        for row in paid_rows.annotate(cohort=_CalendarIndex("acquired_at", starts))
        .values("cohort", "n")
        .annotate(payers=Count("*"), amount=Sum("amount"))
        .order_by()
    }
    now = timezone.now()
    cohorts = []
    for i, first_day in enumerate(first_days, start=1):
        row = sizes.get(i)
        size = row[0] if row else 0
        first_at = _midnight(first_day)
        engaged_cells: list[float | None] = []
        paid_cells: list[float | None] = []
        revenue_cells: list[str | None] = []
        for n in range(periods):
            if not row or not size or first_at + n * length > now:
                engaged_cells.append(None)
                paid_cells.append(None)
                revenue_cells.append(None)
                continue
            payers, amount = paid.get((i, n), (0, Decimal(0)))
            engaged_cells.append(rate(row[1 + n], size))
            paid_cells.append(rate(payers, size))
            revenue_cells.append(_money(amount / size))
        cohorts.append(
            {
                "cohort": first_day.isoformat(),
                "size": size,
                "engaged": engaged_cells,
                "paid": paid_cells,
                "revenue_per_customer": revenue_cells,
            }
        )
    return {"period": period, "periods": periods, "cohorts": cohorts}


# --- Repurchase cycle ------------------------------------------------------------------

#: A customer overdue by more than this many of their own intervals has lapsed: they are
#: a win-back case, no longer "due".
LAPSED_AFTER_INTERVALS = 3
MAX_DUE_WITHIN_DAYS = 366


def customer_repurchase_cycle(customer: Customer) -> dict[str, Any]:
    """A customer's purchase rhythm: paid orders, the median interval between them, the
    last purchase and the next one expected (one median interval after the last)."""
    row = (
        Milestones.objects.filter(customer_id=customer.pk)
        .values("paid_orders", "last_paid_at", "purchase_interval")
        .first()
    )
    paid_orders = row["paid_orders"] if row else 0
    last_paid_at: datetime | None = row["last_paid_at"] if row else None
    interval: timedelta | None = row["purchase_interval"] if row else None
    return {
        "paid_orders": paid_orders,
        "median_interval_days": (
            interval.total_seconds() / 86_400 if interval is not None else None
        ),
        "last_paid_at": last_paid_at,
        "next_purchase_at": (
            last_paid_at + interval if last_paid_at is not None and interval is not None else None
        ),
    }


def repurchase_due_qs(
    *,
    user: Any,
    as_of: datetime | date | None = None,
    within_days: int = 7,
    store_id: int | None = None,
    staff_id: int | None = None,
    channel_id: int | None = None,
    tag_id: int | None = None,
) -> QuerySet[Milestones]:
    """Repeat buyers (two paid orders or more) whose next purchase is expected by
    ``as_of`` + ``within_days``, soonest (most overdue) first, annotated with
    ``next_purchase_at``.

    ``as_of`` is a moment (default now) or a day in the configured time zone, which means
    the end of that day: due by the end of day ``as_of + within_days``. Overdue customers
    stay on the list until they are more than ``LAPSED_AFTER_INTERVALS`` of their own
    intervals late; lost customers (who deleted every staff member) are left out, since
    nobody can reach them on WeCom.
    """
    if not isinstance(within_days, int) or not 0 <= within_days <= MAX_DUE_WITHIN_DAYS:
        raise ValidationError(
            {"within_days": [f"Must be a whole number from 0 to {MAX_DUE_WITHIN_DAYS}."]}
        )
    within = timedelta(days=within_days)
    if as_of is None:
        as_of = timezone.now()
    if isinstance(as_of, datetime):
        moment = as_of
        due = Q(next_purchase_at__lte=moment + within)
    else:
        moment = timezone.make_aware(datetime.combine(as_of + timedelta(days=1), time.min))
        due = Q(next_purchase_at__lt=moment + within)
    qs = narrowed_qs(
        milestones_visible_qs(user),
        channel_id=channel_id,
        store_id=store_id,
        staff_id=staff_id,
        tag_id=tag_id,
    )
    return (
        qs.filter(purchase_interval__isnull=False, last_paid_at__isnull=False, lost_at__isnull=True)
        .annotate(
            next_purchase_at=ExpressionWrapper(
                F("last_paid_at") + F("purchase_interval"), output_field=DateTimeField()
            )
        )
        .alias(
            # The product typed as a duration, or SQLite adds integer microseconds to the
            # timestamp's text instead of shifting the timestamp.
            lapsed_at=ExpressionWrapper(
                F("last_paid_at")
                + ExpressionWrapper(
                    F("purchase_interval") * (LAPSED_AFTER_INTERVALS + 1),
                    output_field=DurationField(),
                ),
                output_field=DateTimeField(),
            )
        )
        .filter(due, lapsed_at__gte=moment)
        .select_related("customer", "store", "owner")
        .order_by("next_purchase_at", "customer_id")
    )
