"""Concurrent writers for one customer must leave exact milestones (PostgreSQL: SQLite has
a single writer, so the race cannot happen there)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection, connections, transaction
from django.utils import timezone

from customers.models import ActivityKind, ActivitySource
from customers.services.activities import ActivityInput, activities_record
from customers.services.orders import OrderInput, orders_upsert
from funnel.models import Milestones
from funnel.services import milestones_refresh
from tests.factories import CustomerFactory

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="SQLite has one writer"),
]


def _order(external_id: str, customer_id: int, days: int) -> OrderInput:
    return OrderInput(
        external_id=external_id,
        customer_id=customer_id,
        amount=Decimal("10.00"),
        paid_at=timezone.now() - timedelta(days=days),
    )


def _race(first_write: Callable[[], None], second_write: Callable[[], None]) -> None:
    """Run two writers in their own transactions (threads, so their own connections): the
    first writes and holds its transaction open while the second writes; re-raise what
    either raised."""
    first_written = threading.Event()
    errors: list[BaseException] = []

    def first() -> None:
        try:
            with transaction.atomic():
                first_write()
                first_written.set()
                # Still uncommitted while the second writer computes its refresh.
                time.sleep(0.5)
        except BaseException as error:  # reported by the main thread
            errors.append(error)
            first_written.set()
        finally:
            connections.close_all()

    def second() -> None:
        try:
            first_written.wait(5)
            with transaction.atomic():
                second_write()
        except BaseException as error:
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert not errors


def test_two_transactions_adding_orders_to_one_customer_both_count() -> None:
    customer = CustomerFactory()
    milestones_refresh(customer_ids=[customer.pk])
    _race(
        lambda: orders_upsert(rows=[_order("race-a", customer.pk, 20)]),
        lambda: orders_upsert(rows=[_order("race-b", customer.pk, 10)]),
    )
    row = Milestones.objects.get(customer_id=customer.pk)
    assert row.paid_orders == 2
    assert row.repurchase_at is not None
    # And it is what a rebuild computes.
    assert milestones_refresh(customer_ids=[customer.pk]).changed == 0


def test_two_transactions_adding_activities_to_one_customer_both_count() -> None:
    """Each folds only its own new activities into the stored row: the second must wait
    for the first's row lock and fold into what the first committed."""
    customer = CustomerFactory(acquired_at=timezone.now() - timedelta(days=30))
    milestones_refresh(customer_ids=[customer.pk])

    def record(kind: str, days_ago: int) -> None:
        activities_record(
            rows=[
                ActivityInput(
                    customer_id=customer.pk,
                    kind=kind,
                    occurred_at=timezone.now() - timedelta(days=days_ago),
                    source=ActivitySource.API,
                )
            ]
        )

    _race(
        lambda: record(ActivityKind.MESSAGE_RECEIVED, 25),
        lambda: record(ActivityKind.PAGE_VIEWED, 10),
    )
    row = Milestones.objects.get(customer_id=customer.pk)
    assert row.activated_at is not None
    assert row.retained_at is not None
    assert milestones_refresh(customer_ids=[customer.pk]).changed == 0
