"""The funnel bench's concurrent clients (``make bench-funnel BENCH_FUNNEL_ARGS=--clients N``)."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from bench.funnel import _concurrently, forget_new_activities
from customers.models import Activity, ActivityKind
from customers.services.activities import activity_record
from funnel.models import Milestones
from tests.factories import CustomerFactory


@pytest.mark.parametrize("clients", [1, 2, 3])
def test_each_run_is_recorded_once_on_as_many_threads_as_clients(clients: int) -> None:
    recorded: list[Any] = []
    threads: set[str] = set()
    lock = threading.Lock()

    def record(*, rows: Any) -> None:
        with lock:
            recorded.append(rows)
            threads.add(threading.current_thread().name)

    runs = [[i, i + 1] for i in range(0, 14, 2)]
    _concurrently(clients, runs, record)
    assert sorted(recorded) == runs
    assert len(threads) == clients


def test_an_error_of_a_client_is_raised_after_all_end() -> None:
    recorded: list[Any] = []

    def record(*, rows: Any) -> None:
        if rows == "bad":
            raise ValueError("bad batch")
        recorded.append(rows)

    with pytest.raises(ValueError, match="bad batch"):
        _concurrently(2, ["bad", "a", "b", "c"], record)
    # The other client ran its runs to the end; the failing one stopped at its error.
    assert sorted(recorded) == ["a", "c"]


@pytest.mark.django_db
@pytest.mark.skipif(connection.vendor != "postgresql", reason="the bench is PostgreSQL's")
def test_forgetting_the_new_activities_gives_their_customers_back_their_seed_milestones() -> None:
    customer = CustomerFactory(acquired_at=timezone.now() - timedelta(days=30))
    untouched = CustomerFactory(acquired_at=timezone.now() - timedelta(days=30))
    seeded = activity_record(customer=untouched, kind=ActivityKind.MESSAGE_RECEIVED)
    last = seeded.pk
    activity_record(customer=customer, kind=ActivityKind.MESSAGE_RECEIVED)
    assert Milestones.objects.get(customer=customer).activated_at is not None

    assert forget_new_activities(last) == 1

    assert list(Activity.objects.values_list("pk", flat=True)) == [last]
    row = Milestones.objects.get(customer=customer)
    assert (row.activated_at, row.stage, row.engaged_weeks) == (None, 1, 0)
    assert Milestones.objects.get(customer=untouched).activated_at == seeded.occurred_at
