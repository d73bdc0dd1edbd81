"""The edge cases of each definition (README, "The AARRR funnel"), through the real write
services and read back from the milestones and the reports."""

from __future__ import annotations

from datetime import UTC, date, timedelta
from typing import Any

import pytest
from django.utils import timezone

from customers.models import OrderStatus
from customers.services import ActivityInput, activities_record, customer_update
from funnel.filters import ReportFilters
from funnel.models import Stage, StageChange
from funnel.selectors import channel_report, cohort_report, funnel_report, trend_report
from tests.factories import UserFactory
from tests.funnel.helpers import act, customer, local, milestones, pay, refund

pytestmark = pytest.mark.django_db

US = timedelta(microseconds=1)
DAY = timedelta(days=1)
MARCH = ReportFilters(start=date(2026, 3, 1), end=date(2026, 4, 1))


@pytest.fixture
def operator(db: Any) -> Any:
    return UserFactory(username="definitions-operator", is_superuser=True, is_staff=True)


def counts(report: dict[str, Any]) -> dict[str, int]:
    return {s["stage"]: s["count"] for s in report["stages"]}


def history(c: Any) -> list[tuple[int, int, Any]]:
    return list(
        StageChange.objects.filter(customer=c)
        .order_by("at", "id")
        .values_list("from_stage", "to_stage", "at")
    )


# --- Revenue: refunded orders never count ------------------------------------------------


def test_a_refunded_order_is_never_revenue(operator: Any) -> None:
    acquired = local(2026, 3, 2, 10)
    c = customer(acquired)
    pay(c, acquired + DAY, "80.00", status=OrderStatus.REFUNDED)

    m = milestones(c)
    assert (m.revenue_at, m.paid_orders, m.last_paid_at) == (None, 0, None)
    assert counts(funnel_report(user=operator, filters=MARCH))["revenue"] == 0
    [row] = channel_report(user=operator, filters=MARCH)
    assert (row["first_purchases"], row["revenue_amount"]) == (0, "0.00")


def test_a_refunded_order_between_two_paid_ones_is_skipped() -> None:
    acquired = local(2026, 3, 2, 10)
    c = customer(acquired)
    pay(c, acquired + DAY)
    pay(c, acquired + 2 * DAY, status=OrderStatus.REFUNDED)
    pay(c, acquired + 3 * DAY)

    m = milestones(c)
    assert (m.revenue_at, m.repurchase_at) == (acquired + DAY, acquired + 3 * DAY)
    assert m.paid_orders == 2
    assert m.purchase_interval == 2 * DAY


def test_a_refund_demotes_the_stage_and_records_the_fall(operator: Any) -> None:
    acquired = local(2026, 3, 2, 10)
    c = customer(acquired)
    act(c, "message_received", acquired + DAY)
    act(c, "page_viewed", acquired + 8 * DAY)
    key = pay(c, acquired + 9 * DAY)
    assert milestones(c).stage == Stage.REVENUE

    before = timezone.now()
    refund(c, key, acquired + 9 * DAY)
    after = timezone.now()

    m = milestones(c)
    assert (m.stage, m.revenue_at, m.reached_revenue_at) == (Stage.RETENTION, None, None)
    *rises, fall = history(c)
    assert rises == [
        (1, 2, acquired + DAY),
        (2, 3, acquired + 8 * DAY),
        (3, 4, acquired + 9 * DAY),
    ]
    # A fall is dated when it was noticed: the refund has no time of its own here.
    assert fall[:2] == (4, 3) and before <= fall[2] <= after
    assert counts(funnel_report(user=operator, filters=MARCH))["revenue"] == 0


# --- Activation and retention around acquisition ------------------------------------------


def test_activity_before_acquisition_activates_but_is_not_retention(operator: Any) -> None:
    # An imported customer who wrote to us before the import dated their acquisition.
    acquired = local(2026, 3, 10, 9)
    c = customer(acquired)
    act(c, "message_received", acquired - 3 * DAY)
    act(c, "page_viewed", acquired - 2 * DAY)

    m = milestones(c)
    assert m.activated_at == acquired - 3 * DAY
    # The stage is reached when every milestone up to it is: at acquisition here.
    assert m.reached_activation_at == acquired
    assert m.retained_at is None
    # Engagement before acquisition falls in no period after it.
    assert (m.engaged_weeks, m.engaged_months) == (0, 0)
    assert counts(funnel_report(user=operator, filters=MARCH))["activation"] == 1
    assert history(c) == [(1, 2, acquired)]


def test_retention_needs_engagement_at_least_seven_days_after_acquisition() -> None:
    # Acquired on a whole second: a microsecond short of 7 days is ...:59.999999, the
    # fraction SQLite's strftime used to round up to the next second.
    acquired = local(2026, 3, 2, 10)
    early, exact = customer(acquired), customer(acquired)
    act(early, "page_viewed", acquired + 7 * DAY - US)
    act(exact, "page_viewed", acquired + 7 * DAY)

    assert milestones(early).retained_at is None
    assert milestones(early).engaged_weeks == 0b1
    assert milestones(exact).retained_at == acquired + 7 * DAY
    assert milestones(exact).engaged_weeks == 0b10


@pytest.mark.parametrize(
    "kind",
    [
        "touchpoint_sent",
        "touchpoint_done",
        "contact_added",
        "contact_deleted",
        "welcome_sent",
        "note_added",
    ],
)
def test_system_kinds_are_never_engagement(operator: Any, kind: str) -> None:
    acquired = local(2026, 3, 2, 10)
    c = customer(acquired)
    act(c, kind, acquired + DAY)
    act(c, kind, acquired + 10 * DAY)

    m = milestones(c)
    assert (m.activated_at, m.retained_at, m.engaged_weeks, m.engaged_months) == (None, None, 0, 0)
    report = cohort_report(user=operator, filters=MARCH, period="week", periods=2)
    [week] = [c for c in report["cohorts"] if c["cohort"] == "2026-03-02"]
    assert (week["size"], week["engaged"]) == (1, [0.0, 0.0])


def test_kinds_an_integration_invents_are_engagement() -> None:
    acquired = local(2026, 3, 2, 10)
    c = customer(acquired)
    act(c, "mini_program_opened", acquired + 8 * DAY)
    m = milestones(c)
    assert (m.activated_at, m.retained_at) == (None, acquired + 8 * DAY)
    assert m.engaged_weeks == 0b10


def test_activation_kinds_follow_the_setting(settings: Any) -> None:
    settings.FUNNEL_ACTIVATION_KINDS = ["store_visit"]
    acquired = local(2026, 3, 2, 10)
    c = customer(acquired)
    act(c, "message_received", acquired + DAY)
    assert milestones(c).activated_at is None

    act(c, "store_visit", acquired + 2 * DAY)
    assert milestones(c).activated_at == acquired + 2 * DAY


def test_retention_days_follow_the_setting(settings: Any) -> None:
    settings.FUNNEL_RETENTION_DAYS = 3
    acquired = local(2026, 3, 2, 10)
    c = customer(acquired)
    act(c, "page_viewed", acquired + 3 * DAY)
    assert milestones(c).retained_at == acquired + 3 * DAY


# --- Referral --------------------------------------------------------------------------


def test_a_referral_whose_referee_came_first_counts(operator: Any) -> None:
    # The referee joined on the 2nd; the referrer only on the 10th, and the link was
    # told afterwards (an import that names who brought whom).
    referee = customer(local(2026, 3, 2, 10))
    referrer = customer(local(2026, 3, 10, 10))
    act(referrer, "message_received", local(2026, 3, 10, 11))
    act(referrer, "page_viewed", local(2026, 3, 18, 11))
    pay(referrer, local(2026, 3, 19, 11))
    customer_update(customer=referee, data={"referred_by_id": referrer.pk})

    m = milestones(referrer)
    assert m.referral_at == local(2026, 3, 2, 10)  # before the referrer's own acquisition
    assert (m.stage, m.reached_referral_at) == (Stage.REFERRAL, local(2026, 3, 19, 11))
    assert history(referrer)[-1] == (4, 5, local(2026, 3, 19, 11))
    assert milestones(referee).is_referred
    assert counts(funnel_report(user=operator, filters=MARCH))["referral"] == 1
    # The trend counts the referee as a referred newcomer on the day they came.
    trend = trend_report(user=operator, filters=MARCH, interval="day")
    assert next(r for r in trend if r["period"] == "2026-03-02")["referrals"] == 1


def test_a_referral_moved_to_another_referrer_leaves_the_first() -> None:
    first, second = customer(local(2026, 3, 1, 10)), customer(local(2026, 3, 1, 11))
    referee = customer(local(2026, 3, 5, 10), referred_by_id=first.pk)
    assert milestones(first).referral_at == local(2026, 3, 5, 10)

    customer_update(customer=referee, data={"referred_by_id": second.pk})
    assert milestones(first).referral_at is None
    assert milestones(second).referral_at == local(2026, 3, 5, 10)


# --- Time zone: days start at midnight in Asia/Shanghai ----------------------------------


def test_cohorts_start_at_midnight_in_shanghai(operator: Any) -> None:
    first_instant = customer(local(2026, 3, 1, 0, 0, 0))  # 2026-02-28 16:00 UTC
    last_before = customer(local(2026, 2, 28, 23, 59, 59))

    march = funnel_report(user=operator, filters=MARCH)
    february = funnel_report(
        user=operator, filters=ReportFilters(start=date(2026, 2, 1), end=date(2026, 3, 1))
    )
    assert counts(march)["acquisition"] == 1
    assert counts(february)["acquisition"] == 1

    spring = ReportFilters(start=date(2026, 2, 1), end=date(2026, 4, 1))
    months = cohort_report(user=operator, filters=spring, period="month", periods=1)
    assert [(c["cohort"], c["size"]) for c in months["cohorts"]] == [
        ("2026-02-01", 1),
        ("2026-03-01", 1),
    ]
    days = {
        r["period"]: r["new_customers"]
        for r in trend_report(user=operator, filters=spring, interval="day")
    }
    assert (days["2026-02-28"], days["2026-03-01"]) == (1, 1)
    months_trend = trend_report(user=operator, filters=spring, interval="month")
    assert [(r["period"], r["new_customers"]) for r in months_trend] == [
        ("2026-02-01", 1),
        ("2026-03-01", 1),
    ]
    # In UTC both fall on the 28th: only the local day tells them apart.
    assert first_instant.acquired_at.astimezone(UTC).date() == date(2026, 2, 28)
    assert last_before.acquired_at.astimezone(UTC).date() == date(2026, 2, 28)


def test_weekly_cohorts_start_on_monday_in_shanghai(operator: Any) -> None:
    customer(local(2026, 3, 2, 0, 0, 0))  # Monday 00:00 (Sunday 16:00 UTC)
    customer(local(2026, 3, 1, 23, 59, 59))  # Sunday, the week before
    filters = ReportFilters(start=date(2026, 2, 23), end=date(2026, 3, 9))
    report = cohort_report(user=operator, filters=filters, period="week", periods=1)
    assert [(c["cohort"], c["size"]) for c in report["cohorts"]] == [
        ("2026-02-23", 1),
        ("2026-03-02", 1),
    ]


def test_events_count_on_their_local_day_in_the_trend(operator: Any) -> None:
    c = customer(local(2026, 3, 1, 12))
    act(c, "message_received", local(2026, 3, 3, 0, 0, 0))  # 2026-03-02 16:00 UTC
    pay(c, local(2026, 3, 3, 23, 59, 59))
    trend = {r["period"]: r for r in trend_report(user=operator, filters=MARCH, interval="day")}
    assert trend["2026-03-02"]["activations"] == 0
    assert trend["2026-03-03"]["activations"] == 1
    assert trend["2026-03-03"]["first_purchases"] == 1


# --- The window ------------------------------------------------------------------------


def test_window_days_counts_milestones_reached_strictly_within_the_window(operator: Any) -> None:
    acquired = local(2026, 3, 2, 10)
    inside, outside = customer(acquired), customer(acquired)
    act(inside, "message_received", acquired + 7 * DAY - US)
    act(outside, "message_received", acquired + 7 * DAY)
    pay(inside, acquired + 6 * DAY, "30.00")
    pay(inside, acquired + 8 * DAY, "70.00")

    week = ReportFilters(start=MARCH.start, end=MARCH.end, window_days=7)
    assert counts(funnel_report(user=operator, filters=week))["activation"] == 1
    assert counts(funnel_report(user=operator, filters=MARCH))["activation"] == 2
    repurchase = funnel_report(user=operator, filters=week)["repurchase"]
    assert (repurchase["first_purchases"], repurchase["count"]) == (1, 0)
    [row] = channel_report(user=operator, filters=week)
    assert (row["first_purchases"], row["repurchases"], row["revenue_amount"]) == (1, 0, "30.00")
    [row] = channel_report(user=operator, filters=MARCH)
    assert (row["repurchases"], row["revenue_amount"]) == (1, "100.00")


# --- Stage history ---------------------------------------------------------------------


def test_history_has_one_row_per_stage_entered_at_the_time_reached() -> None:
    acquired = local(2026, 3, 2, 10)
    one_by_one, in_bulk = customer(acquired), customer(acquired)
    act(one_by_one, "page_viewed", acquired + 8 * DAY)  # retention before activation
    pay(one_by_one, acquired + 2 * DAY)
    act(one_by_one, "coupon_claimed", acquired + 9 * DAY)
    # The same facts at once, in another order: same history.
    pay(in_bulk, acquired + 2 * DAY)
    activities_record(
        rows=[
            ActivityInput(
                customer_id=in_bulk.pk, kind="coupon_claimed", occurred_at=acquired + 9 * DAY
            ),
            ActivityInput(
                customer_id=in_bulk.pk, kind="page_viewed", occurred_at=acquired + 8 * DAY
            ),
        ]
    )
    # Every stage is reached when its milestone and all before it are: on day 9 here.
    expected = [(1, 2, acquired + 9 * DAY), (2, 3, acquired + 9 * DAY), (3, 4, acquired + 9 * DAY)]
    assert history(one_by_one) == expected
    assert history(in_bulk) == expected
    assert milestones(in_bulk).stage == Stage.REVENUE


def test_history_starts_at_acquisition_with_no_row() -> None:
    c = customer(local(2026, 3, 2, 10))
    assert milestones(c).stage == Stage.ACQUISITION
    assert history(c) == []
