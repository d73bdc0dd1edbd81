"""The enterprise-message quota ledger: periods in the corp's time zone, limits per mode,
and consumption that never passes the limit."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from campaigns.models import QuotaUsage
from campaigns.services.quota import quota_consume, quota_period, quota_refund, quota_used
from tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db

SHANGHAI = ZoneInfo("Asia/Shanghai")


def local(*args: int) -> datetime:
    return datetime(*args, tzinfo=SHANGHAI)


@pytest.mark.parametrize(
    ("mode", "day", "expected"),
    [
        ("month", date(2026, 2, 14), (date(2026, 2, 1), 28)),
        ("month", date(2028, 2, 29), (date(2028, 2, 1), 29)),
        ("month", date(2026, 1, 31), (date(2026, 1, 1), 31)),
        ("month", date(2026, 4, 1), (date(2026, 4, 1), 30)),
        ("week", date(2026, 3, 1), (date(2026, 2, 23), 7)),  # a Sunday: week from Monday
        ("week", date(2026, 2, 23), (date(2026, 2, 23), 7)),
        ("day", date(2026, 3, 1), (date(2026, 3, 1), 1)),
    ],
)
def test_quota_period_start_and_limit(settings, mode, day, expected) -> None:
    settings.WECOM_MESSAGE_QUOTA = mode
    assert quota_period(day) == expected


def test_month_quota_allows_as_many_as_days_then_refuses(settings) -> None:
    settings.WECOM_MESSAGE_QUOTA = "month"
    customer = CustomerFactory()
    at = local(2026, 2, 10, 12)
    allowed = [customer.pk in quota_consume(customer_ids=[customer.pk], at=at) for _ in range(30)]
    assert allowed == [True] * 28 + [False] * 2
    assert quota_used(customer_ids=[customer.pk], at=at) == {customer.pk: 28}


def test_a_new_month_in_the_corp_time_zone_starts_a_new_period(settings) -> None:
    settings.WECOM_MESSAGE_QUOTA = "day"
    customer = CustomerFactory()
    # 23:30 on Jan 31 in Shanghai, then 00:10 on Feb 1 (still Jan 31 in UTC).
    assert quota_consume(customer_ids=[customer.pk], at=local(2026, 1, 31, 23, 30)) == {customer.pk}
    assert quota_consume(customer_ids=[customer.pk], at=local(2026, 1, 31, 23, 50)) == set()
    assert quota_consume(customer_ids=[customer.pk], at=local(2026, 2, 1, 0, 10)) == {customer.pk}
    assert sorted(QuotaUsage.objects.values_list("period_start", "used")) == [
        (date(2026, 1, 31), 1),
        (date(2026, 2, 1), 1),
    ]


def test_week_quota_spans_a_month_boundary(settings) -> None:
    settings.WECOM_MESSAGE_QUOTA = "week"
    customer = CustomerFactory()
    # Mon 2026-01-26 .. Sun 2026-02-01 is one week.
    days = [local(2026, 1, 26 + i, 10) for i in range(6)] + [local(2026, 2, 1, 10)]
    for at in days:
        assert quota_consume(customer_ids=[customer.pk], at=at) == {customer.pk}
    assert quota_consume(customer_ids=[customer.pk], at=local(2026, 2, 1, 20)) == set()
    assert quota_consume(customer_ids=[customer.pk], at=local(2026, 2, 2, 9)) == {customer.pk}


def test_consume_is_per_customer_and_refund_gives_a_unit_back(settings) -> None:
    settings.WECOM_MESSAGE_QUOTA = "day"
    a, b = CustomerFactory(), CustomerFactory()
    at = local(2026, 5, 5, 9)
    assert quota_consume(customer_ids=[a.pk], at=at) == {a.pk}
    # a is spent, b is not; a duplicate id counts once.
    assert quota_consume(customer_ids=[a.pk, b.pk, b.pk], at=at) == {b.pk}
    quota_refund(customer_ids=[a.pk], at=at)
    assert quota_used(customer_ids=[a.pk, b.pk], at=at) == {a.pk: 0, b.pk: 1}
    quota_refund(customer_ids=[a.pk], at=at)  # never below zero
    assert quota_used(customer_ids=[a.pk], at=at) == {a.pk: 0}
    assert quota_consume(customer_ids=[a.pk], at=at) == {a.pk}
