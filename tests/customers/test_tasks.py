"""customers.tasks, run in-process with ``.apply()``; the integration suite runs them in a
real worker."""

from __future__ import annotations

from datetime import datetime

import pytest
from django.utils import timezone

from customers.models import Activity, ActivityKind, ActivitySource
from customers.tasks import record_activity
from tests.factories import CustomerFactory, StaffFactory

pytestmark = pytest.mark.django_db


def test_record_activity_stores_the_event_once() -> None:
    customer = CustomerFactory()
    staff = StaffFactory()
    at = timezone.now().replace(microsecond=0)
    kwargs = {
        "source": ActivitySource.WECOM,
        "staff_id": staff.pk,
        "payload": {"text": "hi"},
        "idempotency_key": "wecom:msg:1",
    }
    args = (customer.pk, ActivityKind.MESSAGE_RECEIVED, at.isoformat())

    first = record_activity.apply(args=args, kwargs=kwargs).get()
    second = record_activity.apply(args=args, kwargs=kwargs).get()

    assert (first, second) == ("created", "unchanged")
    activity = Activity.objects.get(idempotency_key="wecom:msg:1")
    assert activity.customer_id == customer.pk
    assert activity.staff_id == staff.pk
    assert activity.occurred_at == at
    assert activity.payload == {"text": "hi"}


def test_record_activity_for_a_missing_customer_logs_and_returns(
    caplog: pytest.LogCaptureFixture,
) -> None:
    outcome = record_activity.apply(args=(424242, "page_viewed", timezone.now().isoformat())).get()

    assert outcome == "missing"
    assert not Activity.objects.exists()
    assert "customer 424242 does not exist" in caplog.text


def test_record_activity_with_a_missing_staff_keeps_the_event() -> None:
    customer = CustomerFactory()

    outcome = record_activity.apply(
        args=(customer.pk, "store_visit", timezone.now().isoformat()), kwargs={"staff_id": 99999}
    ).get()

    assert outcome == "created"
    assert Activity.objects.get(customer_id=customer.pk).staff_id is None


def test_record_activity_reads_a_naive_time_in_the_project_time_zone() -> None:
    customer = CustomerFactory()

    record_activity.apply(args=(customer.pk, "page_viewed", "2026-03-01T09:30:00")).get()

    stored = Activity.objects.get(customer_id=customer.pk).occurred_at
    expected = timezone.make_aware(datetime(2026, 3, 1, 9, 30), timezone.get_default_timezone())
    assert stored == expected
