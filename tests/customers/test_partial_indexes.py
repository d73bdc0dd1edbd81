"""The acquisition indexes by store, owner and channel leave out customers without one
(PostgreSQL): the queries that name one still read them, and the customers without one
are not in them."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection, transaction
from django.db.models import QuerySet

from customers.models import Customer
from funnel.models import Milestones
from funnel.services import milestones_refresh
from tests.factories import ChannelFactory, CustomerFactory, StaffFactory, StoreFactory

pytestmark = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="PostgreSQL's plans and index sizes"
)


def _plan(qs: QuerySet[Any]) -> str:
    # A handful of rows: without this the planner rightly reads the table instead, and
    # the test would not tell whether the partial index can serve the query.
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        return qs.explain()


def _predicate(index: str) -> str | None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_get_expr(indpred, indrelid) FROM pg_index WHERE indexrelid = %s::regclass",
            [index],
        )
        return cursor.fetchone()[0]


@pytest.mark.django_db
def test_the_filters_that_name_a_store_owner_or_channel_read_the_partial_indexes() -> None:
    store, channel = StoreFactory(), ChannelFactory()
    staff = StaffFactory(store=store)
    CustomerFactory(store=store, owner=staff, source_channel=channel)
    CustomerFactory(store=None, owner=None, source_channel=None)
    customers = Customer.objects.order_by("-acquired_at")
    assert "customer_store_acq_idx" in _plan(customers.filter(store=store)[:20])
    assert "customer_owner_acq_idx" in _plan(customers.filter(owner_id=staff.pk)[:20])
    channel_qs = Customer.objects.filter(source_channel_id=channel.pk).order_by("acquired_at")
    assert "customer_channel_acq_idx" in _plan(channel_qs[:20])

    milestones_refresh()
    rows = Milestones.objects.order_by("acquired_at")
    assert "milestones_store_idx" in _plan(rows.filter(store_id=store.pk))
    assert "milestones_owner_idx" in _plan(rows.filter(owner_id=staff.pk))
    assert "milestones_channel_idx" in _plan(rows.filter(channel_id=channel.pk))


@pytest.mark.django_db
def test_customers_without_a_store_owner_or_channel_are_not_in_those_indexes() -> None:
    # Read off the database, not the models: what the migrations made.
    assert _predicate("customer_store_acq_idx") == "(store_id IS NOT NULL)"
    assert _predicate("customer_owner_acq_idx") == "(owner_id IS NOT NULL)"
    assert _predicate("customer_channel_acq_idx") == "(source_channel_id IS NOT NULL)"
    assert _predicate("milestones_store_idx") == "(store_id IS NOT NULL)"
    assert _predicate("milestones_owner_idx") == "(owner_id IS NOT NULL)"
    assert _predicate("milestones_channel_idx") == "(channel_id IS NOT NULL)"
