"""Folding new activities into stored milestone rows must stay a HOT update on
PostgreSQL: the row rewritten in its page with no index entry added. An index on a column
that activities change (activation, retention, the stage, the engagement bits) would
silently turn every fold into a rewrite of all the table's indexes, the ingest's largest
cost (migration funnel 0007)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from customers.models import ActivityKind, ActivitySource
from customers.services import ActivityInput, activities_record
from funnel.models import Milestones
from tests.funnel.helpers import customer

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="HOT updates are PostgreSQL's"),
]


def _updates_in_this_transaction() -> tuple[int, int]:
    """(rows updated, of which HOT) in funnel_milestones by the current transaction."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_stat_get_xact_tuples_updated(%s::regclass), "
            "pg_stat_get_xact_tuples_hot_updated(%s::regclass)",
            [Milestones._meta.db_table] * 2,
        )
        updated, hot = cursor.fetchone()
    return int(updated), int(hot)


def test_new_activities_rewrite_the_milestone_rows_in_place() -> None:
    now = timezone.now()
    people = [customer(now - timedelta(days=40 + i)) for i in range(5)]
    rows = [
        ActivityInput(
            customer_id=c.pk,
            kind=kind,
            occurred_at=now - timedelta(days=1),
            source=ActivitySource.API,
        )
        # Activation, retention and an engagement bit each change for every customer.
        for c in people
        for kind in (ActivityKind.MESSAGE_RECEIVED, ActivityKind.PAGE_VIEWED)
    ]
    with transaction.atomic():
        before = _updates_in_this_transaction()
        activities_record(rows=rows)
        updated, hot = (a - b for a, b in zip(_updates_in_this_transaction(), before, strict=True))
    stored = Milestones.objects.filter(customer__in=people)
    assert all(m.activated_at and m.retained_at and m.engaged_weeks for m in stored)
    assert updated == len(people)
    assert hot == updated


def test_the_milestone_table_leaves_room_in_its_pages_for_the_new_versions() -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT reloptions FROM pg_class WHERE oid = %s::regclass",
            [Milestones._meta.db_table],
        )
        assert "fillfactor=85" in (cursor.fetchone()[0] or [])
