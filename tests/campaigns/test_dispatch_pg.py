"""Concurrent dispatchers on PostgreSQL: SKIP LOCKED claims are disjoint, and the quota's
upsert never lets two of them pass a customer's limit (SQLite has one writer, so the race
cannot happen there)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, connections
from django.utils import timezone

from campaigns.models import Touchpoint, TouchpointStatus
from campaigns.services._claim import ClaimedRow, touchpoints_claim
from campaigns.services.quota import quota_consume, quota_used
from tests.campaigns.factories import ContentFactory
from tests.campaigns.test_dispatch import active_sop, due
from tests.factories import CustomerFactory

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="SQLite has one writer"),
]


def _race(n: int, work: Callable[[int], Any]) -> list[Any]:
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait(5)
            results[i] = work(i)
        except BaseException as error:  # reported by the main thread
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    return results


def test_concurrent_claims_of_one_due_set_are_disjoint() -> None:
    customers = [CustomerFactory() for _ in range(300)]
    _sop, step = active_sop(content=ContentFactory(text="hi"))
    due(customers, step)
    now = timezone.now()

    claims: list[list[ClaimedRow]] = _race(
        4,
        lambda i: [
            r for _ in range(3) for r in touchpoints_claim(token=f"w{i}#x", now=now, limit=40)
        ],
    )

    ids = [r.id for claim in claims for r in claim]
    assert len(ids) == len(set(ids))  # disjoint
    assert len(ids) > 40  # and they really ran side by side
    # Each row is claimed by the worker that returned it, once.
    stored = dict(Touchpoint.objects.values_list("id", "claimed_by"))
    for i, claim in enumerate(claims):
        assert all(stored[r.id] == f"w{i}#x" for r in claim)
    assert Touchpoint.objects.filter(status=TouchpointStatus.CLAIMED).count() == len(ids)
    assert set(Touchpoint.objects.values_list("attempts", flat=True)) <= {0, 1}


def test_an_expired_lease_is_reclaimed_by_exactly_one_worker() -> None:
    customers = [CustomerFactory() for _ in range(50)]
    _sop, step = active_sop(content=ContentFactory(text="hi"))
    due(customers, step)
    Touchpoint.objects.update(
        status=TouchpointStatus.CLAIMED,
        claimed_by="dead#1",
        lease_until=timezone.now() - timedelta(seconds=1),
        attempts=1,
    )
    now = timezone.now()

    claims = _race(3, lambda i: touchpoints_claim(token=f"w{i}#y", now=now, limit=50))

    ids = [r.id for claim in claims for r in claim]
    assert sorted(ids) == sorted(Touchpoint.objects.values_list("id", flat=True))
    assert set(Touchpoint.objects.values_list("attempts", flat=True)) == {2}


def test_concurrent_quota_consumers_never_pass_the_limit(settings) -> None:
    settings.WECOM_MESSAGE_QUOTA = "week"
    customers = [CustomerFactory().pk for _ in range(20)]
    at = timezone.now()

    allowed = _race(6, lambda i: [quota_consume(customer_ids=customers, at=at) for _ in range(2)])

    per_customer = {c: sum(c in a for worker in allowed for a in worker) for c in customers}
    assert per_customer == dict.fromkeys(customers, 7)
    assert quota_used(customer_ids=customers, at=at) == dict.fromkeys(customers, 7)
