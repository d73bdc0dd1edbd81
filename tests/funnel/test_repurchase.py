"""The repurchase cycle (median interval, next purchase) and the "due for repurchase" list
a store manager works from."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from customers.models import Customer, OrderStatus
from customers.services import customer_mark_lost
from funnel.selectors import customer_repurchase_cycle, repurchase_due_qs
from tests.conftest import World
from tests.factories import UserFactory
from tests.funnel.helpers import customer, local, pay

pytestmark = pytest.mark.django_db

DAY = timedelta(days=1)
AS_OF = local(2026, 6, 1, 12)


@pytest.fixture
def operator(db: Any) -> Any:
    return UserFactory(username="repurchase-operator", is_superuser=True, is_staff=True)


def regular(last_paid_at: datetime, every_days: int, **data: Any) -> Customer:
    """A customer with three paid orders ``every_days`` apart, the last at ``last_paid_at``."""
    c = customer(last_paid_at - timedelta(days=3 * every_days), **data)
    for k in (2, 1, 0):
        pay(c, last_paid_at - timedelta(days=k * every_days))
    return c


def due(user: Any, **options: Any) -> list[Customer]:
    return [m.customer for m in repurchase_due_qs(user=user, as_of=AS_OF, **options)]


# --- One customer's cycle --------------------------------------------------------------


def test_cycle_is_the_median_interval_and_the_next_purchase_one_interval_after_the_last() -> None:
    c = customer(local(2026, 1, 1, 10))
    pay(c, local(2026, 1, 2, 10))
    pay(c, local(2026, 1, 12, 10))  # +10 days
    pay(c, local(2026, 1, 15, 10), status=OrderStatus.REFUNDED)  # never counts
    pay(c, local(2026, 2, 1, 10))  # +20 days
    pay(c, local(2026, 2, 2, 10))  # +1 day: the median of 10, 20 and 1 is 10

    assert customer_repurchase_cycle(c) == {
        "paid_orders": 4,
        "median_interval_days": 10.0,
        "last_paid_at": local(2026, 2, 2, 10),
        "next_purchase_at": local(2026, 2, 12, 10),
    }


def test_an_even_number_of_intervals_takes_the_middle_two_to_the_second() -> None:
    c = customer(local(2026, 1, 1, 10))
    pay(c, local(2026, 1, 1, 10))
    pay(c, local(2026, 1, 2, 10))  # +1 day
    pay(c, local(2026, 1, 2, 10, 0, 3))  # +3 s: the median is (1 day + 3 s) / 2 = 12 h 1.5 s
    cycle = customer_repurchase_cycle(c)
    assert cycle["median_interval_days"] == (12 * 3600 + 1) / 86_400  # floored to the second
    assert cycle["next_purchase_at"] == local(2026, 1, 2, 22, 0, 4)


def test_one_purchase_makes_no_cycle_and_none_makes_nothing() -> None:
    once, never = customer(local(2026, 1, 1, 10)), customer(local(2026, 1, 1, 10))
    pay(once, local(2026, 1, 2, 10))
    assert customer_repurchase_cycle(once) == {
        "paid_orders": 1,
        "median_interval_days": None,
        "last_paid_at": local(2026, 1, 2, 10),
        "next_purchase_at": None,
    }
    assert customer_repurchase_cycle(never) == {
        "paid_orders": 0,
        "median_interval_days": None,
        "last_paid_at": None,
        "next_purchase_at": None,
    }


# --- The due list ----------------------------------------------------------------------


def test_due_list_keeps_the_due_and_the_recently_overdue_soonest_first(operator: Any) -> None:
    soon = regular(AS_OF - 27 * DAY, 30)  # due in 3 days
    later = regular(AS_OF - 20 * DAY, 30)  # due in 10 days: not yet
    overdue = regular(AS_OF - 40 * DAY, 30)  # 10 days late
    edge = regular(AS_OF - 4 * 30 * DAY, 30)  # exactly 3 intervals late: still due
    lapsed = regular(AS_OF - 4 * 30 * DAY - timedelta(seconds=1), 30)  # more: lapsed
    on_time = regular(AS_OF - 30 * DAY + 7 * DAY, 30)  # due exactly at as_of + 7 days
    once = customer(AS_OF - 100 * DAY)
    pay(once, AS_OF - 40 * DAY)  # no interval: no cycle to be due in
    lost = regular(AS_OF - 28 * DAY, 30)
    customer_mark_lost(customer=lost, at=AS_OF - DAY)

    rows = list(repurchase_due_qs(user=operator, as_of=AS_OF))
    assert [m.customer for m in rows] == [edge, overdue, soon, on_time]
    assert rows[2].next_purchase_at == AS_OF + 3 * DAY  # type: ignore[attr-defined]
    assert later not in due(operator) and lapsed not in due(operator)
    assert due(operator, within_days=10) == [edge, overdue, soon, on_time, later]


def test_due_list_as_of_a_day_means_by_the_end_of_that_day(operator: Any) -> None:
    late_evening = regular(local(2026, 5, 9, 23, 0), 30)  # due 2026-06-08 23:00
    following_day = regular(local(2026, 5, 10, 0, 0), 30)  # due 2026-06-09 00:00
    qs = repurchase_due_qs(user=operator, as_of=date(2026, 6, 1), within_days=7)
    assert [m.customer for m in qs] == [late_evening]
    assert following_day.pk


def test_due_list_defaults_to_now(operator: Any) -> None:
    now = timezone.now()
    c = regular(now - 29 * DAY, 30)
    assert [m.customer for m in repurchase_due_qs(user=operator)] == [c]


def test_due_list_filters_by_store_staff_channel_and_tag(operator: Any, world: World) -> None:
    in_a = regular(AS_OF - 28 * DAY, 30, store_id=world.store_a.pk, owner_id=world.clerk_a.pk)
    in_b = regular(AS_OF - 28 * DAY, 30, store_id=world.store_b.pk)
    assert due(operator, store_id=world.store_a.pk) == [in_a]
    assert due(operator, staff_id=world.clerk_a.pk) == [in_a]
    assert due(operator, store_id=world.store_b.pk) == [in_b]


def test_store_manager_sees_only_their_stores_regulars(world: World) -> None:
    in_a = regular(AS_OF - 28 * DAY, 30, store_id=world.store_a.pk)
    regular(AS_OF - 28 * DAY, 30, store_id=world.store_b.pk)
    assert due(world.manager_a.user) == [in_a]
    assert due(world.clerk_b.user) == []


def test_due_list_is_one_query_with_its_customer_store_and_owner(
    operator: Any, world: World, django_assert_num_queries: Any
) -> None:
    for _ in range(5):
        regular(AS_OF - 28 * DAY, 30, store_id=world.store_a.pk, owner_id=world.clerk_a.pk)
    with django_assert_num_queries(1):
        rows = list(repurchase_due_qs(user=operator, as_of=AS_OF))
        assert [(m.customer.name, m.store.name, m.owner.name) for m in rows]  # type: ignore[union-attr]
    assert len(rows) == 5


def test_cycle_is_one_query(django_assert_num_queries: Any) -> None:
    c = regular(AS_OF, 30)
    with django_assert_num_queries(1):
        assert customer_repurchase_cycle(c)["paid_orders"] == 3


@pytest.mark.parametrize("within_days", [-1, 367])
def test_due_list_refuses_a_window_out_of_range(operator: Any, within_days: int) -> None:
    with pytest.raises(ValidationError) as error:
        repurchase_due_qs(user=operator, within_days=within_days)
    assert set(error.value.message_dict) == {"within_days"}


def test_due_list_as_of_midnight_in_shanghai(operator: Any) -> None:
    # As of a day: its end in the corp's time zone, not in UTC.
    c = regular(timezone.make_aware(datetime.combine(date(2026, 5, 2), time(23, 59))), 30)
    qs = repurchase_due_qs(user=operator, as_of=date(2026, 6, 1), within_days=0)
    assert [m.customer for m in qs] == [c]
