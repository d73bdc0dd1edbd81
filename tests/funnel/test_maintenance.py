"""Incremental maintenance follows every door a fact comes in by: each test changes a fact
through a write service and checks that the milestones equal the plain reference
computation over the raw tables (``reference``), for every customer."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from customers.services import (
    ContactInput,
    OrderInput,
    contacts_upsert,
    customer_mark_active,
    customer_mark_lost,
    customer_update,
    orders_upsert,
)
from funnel.models import Milestones
from tests.funnel import reference
from tests.funnel.helpers import act, customer, local, milestones, pay

pytestmark = pytest.mark.django_db

DAY = timedelta(days=1)
COLUMNS = [f.attname for f in Milestones._meta.concrete_fields]


def assert_milestones_follow_the_raw_tables() -> None:
    expected = sorted(
        (reference.milestone_row(c) for c in reference.load_raw().values()),
        key=lambda r: r["customer_id"],
    )
    assert list(Milestones.objects.order_by("customer_id").values(*COLUMNS)) == expected


def test_a_referee_acquired_earlier_by_a_later_sync_moves_the_referral() -> None:
    referrer = customer(local(2026, 3, 1, 10))
    contacts_upsert(
        rows=[
            ContactInput(
                external_userid="wm-referee",
                name="Referee",
                acquired_at=local(2026, 3, 20, 10),
                referred_by_id=referrer.pk,
            )
        ]
    )
    assert milestones(referrer).referral_at == local(2026, 3, 20, 10)
    # A later sync finds an earlier add time for the referee (another staff member).
    contacts_upsert(
        rows=[
            ContactInput(
                external_userid="wm-referee", name="Referee", acquired_at=local(2026, 3, 5, 10)
            )
        ]
    )
    assert milestones(referrer).referral_at == local(2026, 3, 5, 10)
    assert_milestones_follow_the_raw_tables()


def test_an_order_moved_to_another_customer_updates_both() -> None:
    first, second = customer(local(2026, 3, 1, 10)), customer(local(2026, 3, 1, 11))
    key = pay(first, local(2026, 3, 2, 10))
    orders_upsert(
        rows=[
            OrderInput(
                external_id=key,
                customer_id=second.pk,
                amount=Decimal("100.00"),
                paid_at=local(2026, 3, 2, 10),
            )
        ]
    )
    assert milestones(first).revenue_at is None
    assert milestones(second).revenue_at == local(2026, 3, 2, 10)
    assert_milestones_follow_the_raw_tables()


def test_a_new_acquisition_time_recomputes_retention_and_periods() -> None:
    c = customer(local(2026, 3, 10, 10))
    act(c, "page_viewed", local(2026, 3, 18, 10))  # 8 days after: retained, week 1
    assert milestones(c).retained_at is not None

    customer_update(customer=c, data={"acquired_at": local(2026, 3, 14, 10)})
    m = milestones(c)
    assert (m.retained_at, m.engaged_weeks) == (None, 0b1)  # 4 days after: week 0 only
    assert_milestones_follow_the_raw_tables()


def test_lost_and_back_follow_the_customer() -> None:
    c = customer(local(2026, 3, 1, 10))
    customer_mark_lost(customer=c, at=local(2026, 3, 9, 10))
    assert milestones(c).lost_at == local(2026, 3, 9, 10)
    c.refresh_from_db()
    customer_mark_active(customer=c)
    assert milestones(c).lost_at is None
    assert_milestones_follow_the_raw_tables()


def test_a_repurchase_cycle_follows_new_and_refunded_orders() -> None:
    c = customer(local(2026, 1, 1, 10))
    pay(c, local(2026, 1, 1, 10))
    second = pay(c, local(2026, 1, 11, 10))
    pay(c, local(2026, 1, 31, 10))
    assert (milestones(c).paid_orders, milestones(c).purchase_interval) == (3, 15 * DAY)
    orders_upsert(
        rows=[
            OrderInput(
                external_id=second,
                customer_id=c.pk,
                amount=Decimal("100.00"),
                paid_at=local(2026, 1, 11, 10),
                status="refunded",
            )
        ]
    )
    m = milestones(c)
    assert (m.paid_orders, m.purchase_interval, m.repurchase_at) == (
        2,
        30 * DAY,
        local(2026, 1, 31, 10),
    )
    assert_milestones_follow_the_raw_tables()


def test_deleting_a_channel_store_or_staff_clears_the_milestones_copies() -> None:
    # The copies have no database foreign keys (funnel migration 0003): Django's delete
    # still sets them to NULL, as it does the customer's own keys.
    from tests.factories import ChannelFactory, StaffFactory, StoreFactory

    store = StoreFactory()
    channel, staff = ChannelFactory(), StaffFactory(store=store)
    c = customer(
        local(2026, 3, 1, 10), store_id=store.pk, owner_id=staff.pk, source_channel_id=channel.pk
    )
    row = milestones(c)
    assert (row.channel_id, row.store_id, row.owner_id) == (channel.pk, store.pk, staff.pk)
    channel.delete()
    staff.delete()
    store.delete()
    row = milestones(c)
    assert (row.channel_id, row.store_id, row.owner_id) == (None, None, None)
    assert_milestones_follow_the_raw_tables()


def _funnel_rows(customer_id: int) -> tuple[int, int, int]:
    from funnel.models import PaidPeriod, StageChange

    return (
        Milestones.objects.filter(customer_id=customer_id).count(),
        StageChange.objects.filter(customer_id=customer_id).count(),
        PaidPeriod.objects.filter(customer_id=customer_id).count(),
    )


def test_a_deleted_customer_leaves_no_funnel_rows() -> None:
    # The funnel tables keep no database key to the customer (funnel migration 0004):
    # Django's delete removes their rows, and a full refresh those of a customer deleted
    # by hand in SQL.
    from django.db import connection

    from funnel.services import milestones_rebuild, milestones_refresh

    kept, by_orm, by_sql = (customer(local(2026, 3, day, 10)) for day in (1, 2, 3))
    for c in (kept, by_orm, by_sql):
        act(c, "message_received", local(2026, 3, 10, 10))
    for c in (kept, by_sql):  # orders protect their customer from Django's delete
        pay(c, local(2026, 3, 11, 10))
    assert _funnel_rows(by_orm.pk) == (1, 2, 0)
    assert _funnel_rows(by_sql.pk) == (1, 3, 2)
    by_orm_id = by_orm.pk
    by_orm.delete()
    assert _funnel_rows(by_orm_id) == (0, 0, 0)

    with connection.cursor() as cursor:
        tables = ("campaigns_pointsentry", "customers_activity", "customers_order")
        for table in (*tables, "customers_customer"):
            column = "id" if table == "customers_customer" else "customer_id"
            cursor.execute(f"DELETE FROM {table} WHERE {column} = %s", [by_sql.pk])
    assert _funnel_rows(by_sql.pk) == (1, 3, 2)  # left behind: no key cascades
    milestones_refresh()  # of everyone
    assert _funnel_rows(by_sql.pk) == (0, 0, 0)
    assert _funnel_rows(kept.pk) == (1, 3, 2)
    assert_milestones_follow_the_raw_tables()
    milestones_rebuild()  # the same through rebuild_funnel's service, nothing left to do
    assert _funnel_rows(kept.pk) == (1, 3, 2)
