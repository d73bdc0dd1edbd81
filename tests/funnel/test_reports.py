"""The channel, trend and cohort reports' own behaviour: rows, ordering, money, empty
periods, cells not yet started, and the parameters they refuse."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from channels.services import channel_create
from customers.models import OrderStatus
from customers.services import customer_mark_lost
from funnel.filters import MAX_SPAN_DAYS, ReportFilters
from funnel.selectors import (
    MAX_COHORT_PERIODS,
    channel_report,
    cohort_report,
    funnel_report,
    trend_report,
)
from tests.factories import UserFactory
from tests.funnel.helpers import act, customer, local, pay

pytestmark = pytest.mark.django_db

DAY = timedelta(days=1)
MARCH = ReportFilters(start=date(2026, 3, 1), end=date(2026, 4, 1))


@pytest.fixture
def operator(db: Any) -> Any:
    return UserFactory(username="reports-operator", is_superuser=True, is_staff=True)


def channel(name: str, cost: str) -> Any:
    return channel_create(data={"name": name, "kind": "ads", "cost": Decimal(cost)})


# --- Channels --------------------------------------------------------------------------


def test_channel_rows_come_by_acquired_then_name_with_one_row_for_no_channel(
    operator: Any,
) -> None:
    ads, shop, zoo = channel("Ads", "900.00"), channel("Shop", "0"), channel("Zoo", "10")
    for owner_channel, n in ((shop, 1), (ads, 3), (zoo, 1), (None, 2)):
        for _ in range(n):
            customer(local(2026, 3, 5, 10), source_channel_id=owner_channel and owner_channel.pk)

    rows = channel_report(user=operator, filters=MARCH)
    assert [(r["channel"], r["acquired"]) for r in rows] == [
        ("Ads", 3),
        ("", 2),
        ("Shop", 1),
        ("Zoo", 1),
    ]
    ads_row, none_row, shop_row, _zoo = rows
    assert (ads_row["channel_id"], ads_row["cost"], ads_row["cost_per_acquired"]) == (
        ads.pk,
        "900.00",
        "300.00",
    )
    assert (shop_row["cost"], shop_row["cost_per_acquired"]) == ("0.00", "0.00")
    # Customers nobody paid for: no cost, and no cost per customer to speak of.
    assert (none_row["channel_id"], none_row["cost"], none_row["cost_per_acquired"]) == (
        None,
        "0.00",
        None,
    )


def test_no_row_without_channel_when_every_customer_has_one(operator: Any) -> None:
    ads = channel("Ads", "10")
    customer(local(2026, 3, 5, 10), source_channel_id=ads.pk)
    assert [r["channel_id"] for r in channel_report(user=operator, filters=MARCH)] == [ads.pk]


def test_cost_per_acquired_is_rounded_half_up_to_the_cent(operator: Any) -> None:
    thirds, halves = channel("Thirds", "1000.00"), channel("Halves", "0.05")
    for _ in range(3):
        customer(local(2026, 3, 5, 10), source_channel_id=thirds.pk)
    for _ in range(2):
        customer(local(2026, 3, 5, 10), source_channel_id=halves.pk)
    rows = {r["channel"]: r for r in channel_report(user=operator, filters=MARCH)}
    assert rows["Thirds"]["cost_per_acquired"] == "333.33"
    assert rows["Halves"]["cost_per_acquired"] == "0.03"  # 0.025: half up, not to even


def test_channel_stages_revenue_and_repurchase_rate(operator: Any) -> None:
    ads = channel("Ads", "100")
    acquired = local(2026, 3, 2, 10)
    loyal, once, idle = (customer(acquired, source_channel_id=ads.pk) for _ in range(3))
    for c in (loyal, once):
        act(c, "message_received", acquired + DAY)
        act(c, "page_viewed", acquired + 8 * DAY)
    pay(loyal, acquired + 9 * DAY, "120.50")
    pay(loyal, acquired + 20 * DAY, "79.50")
    pay(once, acquired + 9 * DAY, "10.00")
    pay(once, acquired + 10 * DAY, "999.00", status=OrderStatus.REFUNDED)
    customer(local(2026, 4, 1, 0), source_channel_id=ads.pk)  # outside the cohort

    [row] = channel_report(user=operator, filters=MARCH)
    assert row == {
        "channel_id": ads.pk,
        "channel": "Ads",
        "acquired": 3,
        "activation": 2,
        "retention": 2,
        "revenue": 2,
        "referral": 0,
        "first_purchases": 2,
        "repurchases": 1,
        "repurchase_rate": 0.5,
        "revenue_amount": "210.00",
        "cost": "100.00",
        "cost_per_acquired": "33.33",
    }
    assert idle.pk  # acquired only
    # The channel's figures add up to the funnel's.
    funnel = {s["stage"]: s["count"] for s in funnel_report(user=operator, filters=MARCH)["stages"]}
    assert funnel["revenue"] == row["revenue"]


def test_channel_report_of_an_empty_cohort_is_empty(operator: Any) -> None:
    assert channel_report(user=operator, filters=MARCH) == []


# --- Trend -----------------------------------------------------------------------------


def test_trend_lists_every_period_with_zeros(operator: Any) -> None:
    customer(local(2026, 3, 3, 10))
    filters = ReportFilters(start=date(2026, 3, 1), end=date(2026, 3, 5))
    assert trend_report(user=operator, filters=filters, interval="day") == [
        {
            "period": f"2026-03-0{d}",
            "new_customers": int(d == 3),
            "activations": 0,
            "first_purchases": 0,
            "repurchases": 0,
            "referrals": 0,
            "lost": 0,
        }
        for d in (1, 2, 3, 4)
    ]


def test_trend_periods_start_on_the_first_of_the_month_or_year(operator: Any) -> None:
    filters = ReportFilters(start=date(2025, 11, 15), end=date(2026, 2, 2))
    months = trend_report(user=operator, filters=filters, interval="month")
    assert [r["period"] for r in months] == ["2025-11-01", "2025-12-01", "2026-01-01", "2026-02-01"]
    years = trend_report(user=operator, filters=filters, interval="year")
    assert [r["period"] for r in years] == ["2025-01-01", "2026-01-01"]


def test_trend_counts_events_when_they_happen_not_by_cohort(operator: Any) -> None:
    # Acquired in February; activated, bought twice and lost in March.
    c = customer(local(2026, 2, 20, 10))
    act(c, "coupon_claimed", local(2026, 3, 2, 10))
    pay(c, local(2026, 3, 3, 10))
    pay(c, local(2026, 3, 4, 10))
    pay(c, local(2026, 3, 5, 10))  # a third purchase is neither first nor repurchase
    customer_mark_lost(customer=c, at=local(2026, 3, 20, 10))

    [march] = trend_report(user=operator, filters=MARCH, interval="month")
    assert march == {
        "period": "2026-03-01",
        "new_customers": 0,
        "activations": 1,
        "first_purchases": 1,
        "repurchases": 1,
        "referrals": 0,
        "lost": 1,
    }
    # The window belongs to cohorts; the trend ignores it.
    windowed = ReportFilters(start=MARCH.start, end=MARCH.end, window_days=1)
    assert trend_report(user=operator, filters=windowed, interval="month") == [march]


@pytest.mark.parametrize("interval", ["week", "hour", ""])
def test_trend_refuses_other_intervals(operator: Any, interval: str) -> None:
    with pytest.raises(ValidationError) as error:
        trend_report(user=operator, filters=MARCH, interval=interval)
    assert set(error.value.message_dict) == {"interval"}


# --- Cohorts ---------------------------------------------------------------------------


def test_cohort_paid_share_and_revenue_per_customer_by_period(operator: Any) -> None:
    acquired = local(2026, 3, 2, 10)
    big, small = customer(acquired), customer(acquired + DAY)
    pay(big, acquired + DAY, "100.00")
    pay(big, acquired + 8 * DAY, "50.00")
    pay(small, acquired + DAY + 7 * DAY - timedelta(microseconds=1), "1.00")  # still week 0
    pay(small, acquired - DAY, "500.00")  # before acquisition: in no period
    pay(small, acquired + 2 * DAY, "700.00", status=OrderStatus.REFUNDED)

    filters = ReportFilters(start=date(2026, 3, 2), end=date(2026, 3, 9))
    report = cohort_report(user=operator, filters=filters, period="week", periods=3)
    assert report == {
        "period": "week",
        "periods": 3,
        "cohorts": [
            {
                "cohort": "2026-03-02",
                "size": 2,
                "engaged": [0.0, 0.0, 0.0],
                "paid": [1.0, 0.5, 0.0],
                "revenue_per_customer": ["50.50", "25.00", "0.00"],
            }
        ],
    }


def test_monthly_cohort_periods_are_thirty_days(operator: Any) -> None:
    acquired = local(2026, 3, 2, 10)
    c = customer(acquired)
    act(c, "page_viewed", acquired + 30 * DAY)
    pay(c, acquired + 30 * DAY - timedelta(microseconds=1), "10.00")
    report = cohort_report(user=operator, filters=MARCH, period="month", periods=2)
    [march] = report["cohorts"]
    assert (march["engaged"], march["paid"]) == ([0.0, 1.0], [1.0, 0.0])


def test_cohort_cells_are_none_until_the_period_starts(operator: Any) -> None:
    today = timezone.localdate()
    monday = today - timedelta(days=today.weekday())
    c = customer(timezone.make_aware(datetime.combine(monday, time(0, 0))))
    act(c, "page_viewed", timezone.now())
    filters = ReportFilters(start=monday, end=monday + timedelta(days=7))
    [week] = cohort_report(user=operator, filters=filters, period="week", periods=3)["cohorts"]
    assert week["engaged"] == [1.0, None, None]
    assert week["paid"] == [0.0, None, None]
    assert week["revenue_per_customer"] == ["0.00", None, None]


def test_empty_cohorts_are_listed_with_no_figures(operator: Any) -> None:
    customer(local(2026, 3, 9, 10))
    filters = ReportFilters(start=date(2026, 3, 2), end=date(2026, 3, 16))
    report = cohort_report(user=operator, filters=filters, period="week", periods=1)
    assert report["cohorts"] == [
        {
            "cohort": "2026-03-02",
            "size": 0,
            "engaged": [None],
            "paid": [None],
            "revenue_per_customer": [None],
        },
        {
            "cohort": "2026-03-09",
            "size": 1,
            "engaged": [0.0],
            "paid": [0.0],
            "revenue_per_customer": ["0.00"],
        },
    ]


def test_cohort_report_reaches_the_last_period_the_bit_sets_hold(operator: Any) -> None:
    acquired = local(2025, 1, 6, 10)
    c = customer(acquired)
    act(c, "page_viewed", acquired + (MAX_COHORT_PERIODS - 1) * 7 * DAY)
    pay(c, acquired + (MAX_COHORT_PERIODS - 1) * 7 * DAY, "62.00")
    filters = ReportFilters(start=date(2025, 1, 6), end=date(2025, 1, 13))
    [week] = cohort_report(
        user=operator, filters=filters, period="week", periods=MAX_COHORT_PERIODS
    )["cohorts"]
    assert week["engaged"][-1] == 1.0 and sum(x or 0 for x in week["engaged"]) == 1.0
    assert week["revenue_per_customer"][-1] == "62.00"


@pytest.mark.parametrize(
    ("period", "periods", "fields"),
    [
        ("day", 12, {"period"}),
        ("year", 12, {"period"}),
        ("week", 0, {"periods"}),
        ("month", MAX_COHORT_PERIODS + 1, {"periods"}),
        ("quarter", -1, {"period", "periods"}),
    ],
)
def test_cohort_report_refuses_bad_parameters(
    operator: Any, period: str, periods: int, fields: set[str]
) -> None:
    with pytest.raises(ValidationError) as error:
        cohort_report(user=operator, filters=MARCH, period=period, periods=periods)
    assert set(error.value.message_dict) == fields


def test_trend_and_cohorts_over_the_longest_span_a_report_accepts(operator: Any) -> None:
    # Ten years of days: thousands of period boundaries in one query, on either database.
    start = date(2017, 1, 1)
    filters = ReportFilters(start=start, end=start + timedelta(days=MAX_SPAN_DAYS))
    customer(local(2026, 3, 3, 10))
    days = trend_report(user=operator, filters=filters, interval="day")
    assert len(days) == MAX_SPAN_DAYS
    assert sum(r["new_customers"] for r in days) == 1
    assert next(r for r in days if r["new_customers"])["period"] == "2026-03-03"
    weeks = cohort_report(user=operator, filters=filters, period="week", periods=1)
    assert [c["cohort"] for c in weeks["cohorts"] if c["size"]] == ["2026-03-02"]
