"""Coupons: codes issued per customer (idempotent per touchpoint, within the batch's
limit) and redeemed through one paid order of the same customer."""

from __future__ import annotations

import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import connection, connections
from django.utils import timezone

from campaigns.models import Coupon
from campaigns.services.levers import CODE_ALPHABET, coupon_issue, coupon_redeem
from customers.models import Activity, ActivityKind, OrderStatus
from tests.campaigns.factories import CouponBatchFactory, TouchpointFactory
from tests.factories import CustomerFactory, OrderFactory


@pytest.mark.django_db
def test_a_code_is_ten_unambiguous_characters_and_expires_after_valid_days() -> None:
    batch = CouponBatchFactory(valid_days=7)
    customer = CustomerFactory()
    at = timezone.now()
    coupon = coupon_issue(batch=batch, customer_id=customer.pk, at=at)
    assert len(coupon.code) == 10
    assert set(coupon.code) <= set(CODE_ALPHABET)
    assert not set(coupon.code) & set("0O1I")
    assert coupon.expires_at == at + timedelta(days=7)
    codes = {coupon_issue(batch=batch, customer_id=customer.pk).code for _ in range(20)}
    assert len(codes) == 20


@pytest.mark.django_db
def test_issue_is_idempotent_per_touchpoint() -> None:
    batch = CouponBatchFactory(total_limit=5)
    touchpoint = TouchpointFactory()
    first = coupon_issue(
        batch=batch, customer_id=touchpoint.customer_id, touchpoint_id=touchpoint.pk
    )
    again = coupon_issue(
        batch=batch, customer_id=touchpoint.customer_id, touchpoint_id=touchpoint.pk
    )
    assert again.pk == first.pk
    assert Coupon.objects.filter(batch=batch).count() == 1


@pytest.mark.django_db
def test_a_retried_touchpoint_gets_its_coupon_even_once_the_batch_is_exhausted() -> None:
    batch = CouponBatchFactory(total_limit=1)
    touchpoint = TouchpointFactory()
    first = coupon_issue(
        batch=batch, customer_id=touchpoint.customer_id, touchpoint_id=touchpoint.pk
    )
    assert (
        coupon_issue(batch=batch, customer_id=touchpoint.customer_id, touchpoint_id=touchpoint.pk)
        == first
    )


@pytest.mark.django_db
def test_a_code_collision_is_retried(monkeypatch) -> None:
    from campaigns.services import levers

    batch = CouponBatchFactory()
    customer = CustomerFactory()
    taken = coupon_issue(batch=batch, customer_id=customer.pk)
    codes = iter([taken.code, taken.code, "ABCDEFGHJK"])
    monkeypatch.setattr(levers, "coupon_code_new", lambda: next(codes))
    assert coupon_issue(batch=batch, customer_id=customer.pk).code == "ABCDEFGHJK"


@pytest.mark.django_db
def test_the_total_limit_is_enforced() -> None:
    batch = CouponBatchFactory(total_limit=2)
    customer = CustomerFactory()
    coupon_issue(batch=batch, customer_id=customer.pk)
    coupon_issue(batch=batch, customer_id=customer.pk)
    with pytest.raises(ValidationError) as exc:
        coupon_issue(batch=batch, customer_id=customer.pk)
    assert "batch" in exc.value.message_dict
    assert Coupon.objects.filter(batch=batch).count() == 2


@pytest.mark.django_db
def test_an_inactive_batch_issues_nothing() -> None:
    batch = CouponBatchFactory(is_active=False)
    with pytest.raises(ValidationError):
        coupon_issue(batch=batch, customer_id=CustomerFactory().pk)


@pytest.mark.django_db(transaction=True)
def test_concurrent_issuers_cannot_pass_the_limit_together() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("row locks need PostgreSQL (SQLite serialises writers anyway)")
    batch = CouponBatchFactory(total_limit=5)
    customers = CustomerFactory.create_batch(4)
    barrier = threading.Barrier(4)
    outcomes: list[str] = []
    lock = threading.Lock()

    def issue(customer_id: int) -> None:
        try:
            barrier.wait()
            for _ in range(3):
                try:
                    coupon_issue(batch=batch, customer_id=customer_id)
                    result = "issued"
                except ValidationError:
                    result = "refused"
                with lock:
                    outcomes.append(result)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=issue, args=(c.pk,)) for c in customers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("issued") == 5
    assert outcomes.count("refused") == 7
    assert Coupon.objects.filter(batch=batch).count() == 5


# --- redemption ------------------------------------------------------------------------


@pytest.fixture
def issued(db) -> Coupon:
    batch = CouponBatchFactory(min_spend=Decimal("100.00"), valid_days=10, name="满100减20")
    customer = CustomerFactory()
    return coupon_issue(batch=batch, customer_id=customer.pk, at=timezone.now() - timedelta(days=2))


def _error(code: str, order) -> dict[str, list[str]]:
    with pytest.raises(ValidationError) as exc:
        coupon_redeem(code=code, order=order)
    return exc.value.message_dict


def test_redeem_marks_the_coupon_and_records_a_timeline_activity(issued: Coupon) -> None:
    order = OrderFactory(customer=issued.customer, amount=Decimal("120.00"))
    coupon = coupon_redeem(code=issued.code.lower(), order=order)
    assert coupon.order == order
    assert coupon.redeemed_at == order.paid_at
    activity = Activity.objects.get(idempotency_key=f"coupon-redeem:{issued.pk}")
    assert activity.kind == ActivityKind.COUPON_REDEEMED
    assert activity.customer_id == issued.customer_id
    assert activity.payload["order_id"] == order.pk
    assert activity.payload["code"] == issued.code
    # Replaying the same request changes nothing and records nothing new.
    assert coupon_redeem(code=issued.code, order=order).pk == issued.pk
    assert Activity.objects.filter(kind=ActivityKind.COUPON_REDEEMED).count() == 1


def test_an_unknown_code_is_refused(issued: Coupon) -> None:
    order = OrderFactory(customer=issued.customer, amount=Decimal("120.00"))
    assert "code" in _error("NOPE234567", order)


def test_a_used_coupon_is_refused_for_another_order(issued: Coupon) -> None:
    coupon_redeem(code=issued.code, order=OrderFactory(customer=issued.customer, amount=200))
    other = OrderFactory(customer=issued.customer, amount=Decimal("300.00"))
    assert "already been used" in _error(issued.code, other)["code"][0]


def test_a_refunded_order_cannot_redeem(issued: Coupon) -> None:
    order = OrderFactory(
        customer=issued.customer,
        amount=200,
        status=OrderStatus.REFUNDED,
        refunded_at=timezone.now(),
    )
    assert "order" in _error(issued.code, order)


def test_another_customers_order_cannot_redeem(issued: Coupon) -> None:
    order = OrderFactory(customer=CustomerFactory(), amount=Decimal("200.00"))
    assert "another customer" in _error(issued.code, order)["order"][0]


def test_an_order_below_the_minimum_spend_cannot_redeem(issued: Coupon) -> None:
    order = OrderFactory(customer=issued.customer, amount=Decimal("99.99"))
    assert "minimum spend" in _error(issued.code, order)["order"][0]
    exact = OrderFactory(customer=issued.customer, amount=Decimal("100.00"))
    assert coupon_redeem(code=issued.code, order=exact).order == exact


def test_an_order_paid_after_expiry_cannot_redeem(issued: Coupon) -> None:
    order = OrderFactory(customer=issued.customer, amount=200, paid_at=issued.expires_at)
    assert "expired" in _error(issued.code, order)["code"][0]


def test_an_order_paid_before_issue_cannot_redeem(issued: Coupon) -> None:
    order = OrderFactory(
        customer=issued.customer, amount=200, paid_at=issued.issued_at - timedelta(minutes=1)
    )
    assert "before" in _error(issued.code, order)["code"][0]


def test_one_order_redeems_one_coupon(issued: Coupon) -> None:
    order = OrderFactory(customer=issued.customer, amount=Decimal("500.00"))
    coupon_redeem(code=issued.code, order=order)
    second = coupon_issue(batch=issued.batch, customer_id=issued.customer_id, at=issued.issued_at)
    assert "order" in _error(second.code, order)
    second.refresh_from_db()
    assert second.redeemed_at is None
