"""Every report equals a plain reference computation over the raw tables, exactly.

A seeded random world (``random_world``) is written through the real services, so the
milestones are what incremental maintenance made of it; ``reference`` recomputes each
customer's milestones and every report from Customer, Activity, Order, Follow and
CustomerTag alone. Counts, rates (float ==) and money strings must match for several
filters and windows, for an operator and for a store manager. Runs on SQLite and, in
the PostgreSQL pass, on PostgreSQL.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest
from django.db import connection
from django.db.models import F
from django.utils import timezone

from channels.models import Channel
from funnel.filters import ReportFilters
from funnel.models import REACHED_FIELDS, Milestones, PaidPeriod, Stage, StageChange
from funnel.selectors import channel_report, cohort_report, funnel_report, trend_report
from scrm.roles import sees_everything
from tests.factories import UserFactory
from tests.funnel import reference
from tests.funnel.helpers import rebuild
from tests.funnel.random_world import FIRST_DAY, SPAN_DAYS, RandomWorld, build_random_world

pytestmark = pytest.mark.django_db

SEED = 20_260_301
LAST_DAY = FIRST_DAY + timedelta(days=SPAN_DAYS)
COLUMNS = [f.attname for f in Milestones._meta.concrete_fields]


@pytest.fixture
def random_world(db: Any) -> RandomWorld:
    return build_random_world(SEED)


@pytest.fixture
def operator(db: Any) -> Any:
    return UserFactory(username="reference-operator", is_superuser=True, is_staff=True)


def report_filters(world: RandomWorld) -> list[ReportFilters]:
    everything = {"start": FIRST_DAY, "end": LAST_DAY}
    return [
        ReportFilters(**everything),
        ReportFilters(**everything, window_days=7),
        ReportFilters(**everything, window_days=30),
        ReportFilters(start=date(2026, 2, 1), end=date(2026, 3, 1)),
        # Neither a Monday nor the first of a month, with a window.
        ReportFilters(start=date(2026, 2, 11), end=date(2026, 5, 20), window_days=60),
        ReportFilters(**everything, channel_id=world.channels[0].pk),
        ReportFilters(**everything, store_id=world.stores[1].pk, window_days=14),
        ReportFilters(**everything, staff_id=world.staff[2].pk),
        ReportFilters(**everything, tag_id=world.tags[0].pk),
        ReportFilters(**everything, channel_id=world.channels[1].pk, store_id=world.stores[0].pk),
        # A range nobody was acquired in: empty cohorts, None rates.
        ReportFilters(start=date(2025, 1, 1), end=date(2025, 2, 1)),
    ]


def viewers(world: RandomWorld, operator: Any) -> list[tuple[Any, set[int] | None]]:
    """(user, the customer ids the reference lets them see; None: everyone)."""
    raw = reference.load_raw()
    return [
        (operator, None),
        (world.manager, reference.visible_to_store_manager(raw, world.stores[0].pk)),
    ]


def funnel_figures(report: dict[str, Any]) -> dict[str, Any]:
    keep = ("stage", "count", "rate_from_previous", "rate_from_first")
    return {
        "stages": [{k: s[k] for k in keep} for s in report["stages"]],
        "repurchase": report["repurchase"],
    }


def test_the_world_exercises_every_definition(random_world: RandomWorld) -> None:
    # Guard the generator: a reference test over a world without these proves little.
    raw = reference.load_raw()
    assert len(raw) == 150
    assert {c.stage() for c in raw.values()} == {1, 2, 3, 4, 5}
    assert any(c.referral_at and c.referral_at < c.acquired_at for c in raw.values())
    assert any(c.activated_at and c.activated_at < c.acquired_at for c in raw.values())
    assert any(c.lost_at for c in raw.values())
    assert any(len(c.paid) > 2 for c in raw.values())
    # Late refunds demoted some customers: falls are in the history.
    assert StageChange.objects.filter(to_stage__lt=F("from_stage")).exists()


def test_milestones_equal_the_definitions_over_the_raw_tables(random_world: RandomWorld) -> None:
    expected = [reference.milestone_row(c) for c in reference.load_raw().values()]
    stored = list(Milestones.objects.order_by("customer_id").values(*COLUMNS))
    differences = [
        (want["customer_id"], column, got[column], want[column])
        for got, want in zip(stored, sorted(expected, key=lambda r: r["customer_id"]), strict=True)
        for column in COLUMNS
        if got[column] != want[column]
    ]
    assert differences == [], "\n".join(map(str, differences))


def _paid_periods() -> list[tuple[Any, ...]]:
    return sorted(
        PaidPeriod.objects.values_list("customer_id", "acquired_at", "days", "n", "amount")
    )


def test_paid_periods_equal_the_definitions_over_the_raw_tables(
    random_world: RandomWorld,
) -> None:
    expected = reference.paid_periods(reference.load_raw())
    assert any(n > 0 for _c, _at, _days, n, _amount in expected)
    assert _paid_periods() == expected


def test_funnel_report_equals_the_reference(random_world: RandomWorld, operator: Any) -> None:
    raw = reference.load_raw()
    for user, visible in viewers(random_world, operator):
        for filters in report_filters(random_world):
            report = funnel_report(user=user, filters=filters)
            assert funnel_figures(report) == reference.funnel(raw, filters, visible), filters


def test_channel_report_equals_the_reference(random_world: RandomWorld, operator: Any) -> None:
    raw = reference.load_raw()
    names = {c.pk: (c.name, c.cost) for c in Channel.objects.all()}
    for user, visible in viewers(random_world, operator):
        for filters in report_filters(random_world):
            report = channel_report(user=user, filters=filters)
            expected = reference.channels(raw, filters, names, visible)
            if not sees_everything(user):
                # A corp-wide cost is shown only to those who see every customer.
                for row in expected:
                    row["cost"] = row["cost_per_acquired"] = None
            assert report == expected, filters


@pytest.mark.parametrize("interval", ["day", "month", "year"])
def test_trend_report_equals_the_reference(
    random_world: RandomWorld, operator: Any, interval: str
) -> None:
    raw = reference.load_raw()
    for user, visible in viewers(random_world, operator):
        for filters in report_filters(random_world):
            report = trend_report(user=user, filters=filters, interval=interval)
            assert report == reference.trend(raw, filters, interval, visible), filters


@pytest.mark.parametrize(("period", "periods"), [("week", 12), ("week", 40), ("month", 12)])
def test_cohort_report_equals_the_reference(
    random_world: RandomWorld, operator: Any, period: str, periods: int
) -> None:
    raw = reference.load_raw()
    for user, visible in viewers(random_world, operator):
        for filters in report_filters(random_world):
            report = cohort_report(user=user, filters=filters, period=period, periods=periods)
            now = timezone.now()
            expected = reference.cohorts(raw, filters, period, periods, now, visible)
            assert report == expected, filters


def test_rebuild_gives_what_incremental_maintenance_gave(random_world: RandomWorld) -> None:
    if connection.vendor == "postgresql":
        # The world was written in this test's transaction, its foreign keys checked at a
        # commit that never comes; a real rebuild starts after those checks (and may alter
        # the tables, which PostgreSQL refuses while checks are pending).
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    incremental = list(Milestones.objects.order_by("customer_id").values(*COLUMNS))
    history = StageChange.objects.count()
    paid = _paid_periods()

    # Without --reset: nothing differs, so nothing is written and no change is recorded.
    rebuild()
    assert list(Milestones.objects.order_by("customer_id").values(*COLUMNS)) == incremental
    assert StageChange.objects.count() == history
    assert _paid_periods() == paid

    rebuild("--reset")
    assert list(Milestones.objects.order_by("customer_id").values(*COLUMNS)) == incremental
    assert _paid_periods() == paid
    # The history is re-derived: one rise per stage entered, at the time it was reached.
    derived = sorted(StageChange.objects.values_list("customer_id", "from_stage", "to_stage", "at"))
    expected = sorted(
        (row["customer_id"], k - 1, k, row[REACHED_FIELDS[Stage(k)]])
        for row in incremental
        for k in range(2, row["stage"] + 1)
    )
    assert derived == expected
