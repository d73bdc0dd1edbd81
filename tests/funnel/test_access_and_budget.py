"""Row-level permission in every report (a store manager's funnel is their store's), and
each report's query budget: a fixed number of queries whatever the number of customers."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from channels.services import channel_create
from customers.models import Follow
from customers.services import FollowInput, follows_mark_deleted, follows_upsert
from funnel.filters import ReportFilters
from funnel.selectors import (
    channel_report,
    cohort_report,
    funnel_report,
    trend_report,
)
from funnel.services import milestones_refresh
from scrm.roles import role_of
from tests.conftest import World
from tests.factories import UserFactory
from tests.funnel.helpers import PARALLEL_EXTRA, act, customer, pay

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator(db: Any) -> Any:
    return UserFactory(username="access-operator", is_superuser=True, is_staff=True)


@pytest.fixture
def filters() -> ReportFilters:
    today = timezone.localdate()
    return ReportFilters(start=today - timedelta(days=60), end=today + timedelta(days=1))


@pytest.fixture
def stores_world(world: World) -> World:
    """The persona world (made with factories, so its milestones are rebuilt by the one
    refresh service), plus a store-B customer an active store-A follow ties to store A,
    and one whose store-A follow has ended."""
    acquired = timezone.now() - timedelta(days=10)
    tied = customer(acquired, store_id=world.store_b.pk)
    untied = customer(acquired, store_id=world.store_b.pk)
    follows_upsert(
        rows=[
            FollowInput(customer_id=tied.pk, staff_id=world.clerk_a2.pk, added_at=acquired),
            FollowInput(customer_id=untied.pk, staff_id=world.clerk_a.pk, added_at=acquired),
        ]
    )
    ended = list(Follow.objects.filter(customer=untied).values_list("pk", flat=True))
    follows_mark_deleted(follow_ids=ended, at=timezone.now(), source="wecom")
    milestones_refresh()
    return world


def acquired(user: Any, filters: ReportFilters) -> int:
    return int(funnel_report(user=user, filters=filters)["stages"][0]["count"])


def test_store_manager_funnel_counts_only_their_stores_customers(
    stores_world: World, operator: Any, filters: ReportFilters
) -> None:
    assert acquired(operator, filters) == 5
    # customer_a, customer_a2, and the store-B customer clerk A2 follows.
    assert acquired(stores_world.manager_a.user, filters) == 3


def test_every_report_applies_the_same_row_permission(
    stores_world: World, filters: ReportFilters
) -> None:
    manager = stores_world.manager_a.user
    assert sum(r["acquired"] for r in channel_report(user=manager, filters=filters)) == 3
    trend = trend_report(user=manager, filters=filters, interval="day")
    assert sum(r["new_customers"] for r in trend) == 3
    cohorts = cohort_report(user=manager, filters=filters, period="month", periods=2)
    assert sum(c["size"] for c in cohorts["cohorts"]) == 3


def test_store_staff_count_the_customers_they_own_or_follow(
    stores_world: World, filters: ReportFilters
) -> None:
    assert acquired(stores_world.clerk_a.user, filters) == 1  # customer_a; the ended follow not
    assert acquired(stores_world.clerk_a2.user, filters) == 2
    assert acquired(stores_world.clerk_b.user, filters) == 1


def test_a_manager_filtering_by_another_store_sees_only_what_they_may(
    stores_world: World, filters: ReportFilters
) -> None:
    other_store = ReportFilters(
        start=filters.start, end=filters.end, store_id=stores_world.store_b.pk
    )
    assert acquired(stores_world.manager_a.user, other_store) == 1


def test_a_user_without_a_role_sees_empty_reports(
    stores_world: World, filters: ReportFilters
) -> None:
    nobody = UserFactory(username="nobody")
    assert acquired(nobody, filters) == 0
    assert channel_report(user=nobody, filters=filters) == []
    trend = trend_report(user=nobody, filters=filters, interval="month")
    assert all(r["new_customers"] == 0 for r in trend)


# --- Query budgets ---------------------------------------------------------------------


def populate(n: int) -> None:
    """n customers over three channels, with engagement and orders, via the services."""
    channels = [
        channel_create(data={"name": f"Budget {n}-{i}", "kind": "ads", "cost": 100})
        for i in range(3)
    ]
    start = timezone.now() - timedelta(days=50)
    for i in range(n):
        c = customer(start + timedelta(days=i % 40), source_channel_id=channels[i % 3].pk)
        act(c, "message_received", c.acquired_at + timedelta(days=1))
        act(c, "page_viewed", c.acquired_at + timedelta(days=8))
        pay(c, c.acquired_at + timedelta(days=2))
        pay(c, c.acquired_at + timedelta(days=9))


#: Queries per report: one aggregate for the funnel; stages + revenue for the channels;
#: one per event time for the trend; sizes and engagement + paid orders for the cohorts.
#: On PostgreSQL the cohorts' sizes run in a transaction of their own that prices
#: parallel scans at nothing (``PARALLEL_EXTRA``).
BUDGETS = {
    "funnel": 1,
    "channels": 2,
    "trend": 5,
    "cohorts": 2 + PARALLEL_EXTRA,
}


def run_reports(user: Any, filters: ReportFilters, django_assert_num_queries: Any) -> None:
    with django_assert_num_queries(BUDGETS["funnel"]):
        funnel_report(user=user, filters=filters)
    with django_assert_num_queries(BUDGETS["channels"]):
        channel_report(user=user, filters=filters)
    for interval in ("day", "month", "year"):
        with django_assert_num_queries(BUDGETS["trend"]):
            trend_report(user=user, filters=filters, interval=interval)
    for period, periods in (("week", 12), ("month", 62)):
        with django_assert_num_queries(BUDGETS["cohorts"]):
            cohort_report(user=user, filters=filters, period=period, periods=periods)


@pytest.mark.parametrize("size", [3, 30])
def test_each_report_is_a_fixed_number_of_queries(
    world: World,
    operator: Any,
    filters: ReportFilters,
    size: int,
    django_assert_num_queries: Any,
) -> None:
    populate(size)
    run_reports(operator, filters, django_assert_num_queries)
    manager = world.manager_a.user
    role_of(manager)  # the user's role is read once per request, then kept on the user
    # Every filter at once (the ids need not match anyone: the budget is the query's shape).
    windowed = ReportFilters(
        start=filters.start,
        end=filters.end,
        window_days=30,
        staff_id=world.clerk_a.pk,
        tag_id=1,
        channel_id=1,
        store_id=world.store_a.pk,
    )
    run_reports(manager, windowed, django_assert_num_queries)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's planner settings")
def test_the_cohort_grids_parallel_pricing_ends_with_it(
    operator: Any, filters: ReportFilters
) -> None:
    """The grid prices parallel workers at nothing for its own scan only: a caller's
    transaction around it (this test's) plans its later queries as before."""
    populate(3)

    def costs() -> tuple[str, str]:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT current_setting('parallel_setup_cost'), "
                "current_setting('parallel_tuple_cost')"
            )
            return cursor.fetchone()

    before = costs()
    assert before != ("0", "0")
    report = cohort_report(user=operator, filters=filters, period="week", periods=4)
    assert sum(c["size"] for c in report["cohorts"]) == 3
    assert costs() == before
