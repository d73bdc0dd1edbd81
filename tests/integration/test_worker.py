"""The real worker path: a task enqueued by this process runs in a separate Celery worker
process, over Redis, and writes to PostgreSQL."""

from __future__ import annotations

import pytest
from django.db import connection, transaction
from django.utils import timezone

from customers.models import Activity, ActivityKind, ActivitySource
from customers.tasks import record_activity
from tests.factories import CustomerFactory
from tests.integration.conftest import Worker

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_worker_records_an_activity_enqueued_after_commit(celery_worker: Worker) -> None:
    customer = CustomerFactory()
    at = timezone.now().replace(microsecond=0)
    with transaction.atomic():
        record_activity.delay_on_commit(
            customer.pk,
            ActivityKind.PAGE_VIEWED,
            at.isoformat(),
            source=ActivitySource.API,
            payload={"page": "/mall/"},
            idempotency_key="it:page:1",
        )
        # Held back until commit: the worker must never look for uncommitted rows.
        assert len(connection.run_on_commit) == 1

    activity = celery_worker.wait_for(
        lambda: Activity.objects.filter(idempotency_key="it:page:1").first()
    )

    assert activity.customer_id == customer.pk
    assert activity.kind == ActivityKind.PAGE_VIEWED
    assert activity.occurred_at == at
    assert activity.payload == {"page": "/mall/"}
    assert connection.vendor == "postgresql"


def test_a_task_delivered_twice_records_the_event_once(celery_worker: Worker) -> None:
    customer = CustomerFactory()
    at = timezone.now().isoformat()
    args = (customer.pk, ActivityKind.COUPON_CLAIMED, at)

    keyed = [record_activity.delay(*args, idempotency_key="it:coupon:1") for _ in range(2)]
    # Without a key the event's content is its identity: a replay is still recognised.
    unkeyed = [record_activity.delay(*args, payload={"coupon": "A"}) for _ in range(2)]

    assert sorted(celery_worker.result(r.id) for r in keyed) == ["created", "unchanged"]
    assert sorted(celery_worker.result(r.id) for r in unkeyed) == ["created", "unchanged"]
    assert Activity.objects.filter(customer_id=customer.pk).count() == 2
    assert Activity.objects.filter(idempotency_key="it:coupon:1").count() == 1


def test_worker_skips_a_missing_customer_and_keeps_working(celery_worker: Worker) -> None:
    now = timezone.now().isoformat()
    missing = record_activity.delay(987_654_321, ActivityKind.PAGE_VIEWED, now)

    assert celery_worker.result(missing.id) == "missing"
    assert "customer 987654321 does not exist" in celery_worker.output()
    assert not Activity.objects.exists()

    customer = CustomerFactory()
    after = record_activity.delay(customer.pk, ActivityKind.STORE_VISIT, now)
    assert celery_worker.result(after.id) == "created"
    assert celery_worker.process.poll() is None
