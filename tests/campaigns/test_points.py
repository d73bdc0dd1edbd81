"""Member points: earned per paid order and per referral (following the facts, once),
reversed by refunds, spent without overdrawing."""

from __future__ import annotations

import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import connection, connections
from django.utils import timezone

from campaigns import receivers_levers
from campaigns.models import PointsEntry, PointsReason
from campaigns.services.levers import points_adjust, points_balance, points_spend
from customers.hooks import Fact, announce, facts_changed
from customers.models import OrderStatus
from customers.services import OrderInput, customer_create, customer_update, orders_upsert
from tests.factories import CustomerFactory, UserFactory


@pytest.fixture(autouse=True)
def _points_follow_the_facts():
    # apps.py may not call connect() yet; connecting twice must not double the credits.
    receivers_levers.connect()
    receivers_levers.connect()
    yield


def _order(customer_id: int, ext: str, amount: str, **kw) -> OrderInput:
    return OrderInput(
        external_id=ext,
        customer_id=customer_id,
        amount=Decimal(amount),
        paid_at=kw.pop("paid_at", timezone.now() - timedelta(hours=1)),
        **kw,
    )


@pytest.mark.django_db
def test_connect_is_idempotent() -> None:
    uids = [r[0] for r in facts_changed.receivers if "campaigns-levers-points" in str(r[0])]
    assert len(uids) == 1


@pytest.mark.django_db
def test_a_paid_order_earns_whole_yuan_times_the_rate_once(settings) -> None:
    settings.POINTS_PER_YUAN = 2
    customer = CustomerFactory()
    orders_upsert(rows=[_order(customer.pk, "o-1", "199.99")])
    assert points_balance(customer.pk) == 398
    # The same order announced again (a replayed import, another fact) credits nothing.
    orders_upsert(rows=[_order(customer.pk, "o-1", "199.99", product_name="changed")])
    announce([customer.pk], Fact.ORDER)
    entries = PointsEntry.objects.filter(customer=customer)
    assert entries.count() == 1
    entry = entries.get()
    assert entry.reason == PointsReason.ORDER
    assert entry.idempotency_key == f"order:{entry.order_id}"


@pytest.mark.django_db
def test_a_bulk_import_credits_every_customer_in_one_go(django_assert_max_num_queries) -> None:
    customers = CustomerFactory.create_batch(5)
    rows = [_order(c.pk, f"bulk-{i}-{j}", "10.50") for i, c in enumerate(customers) for j in (1, 2)]
    orders_upsert(rows=rows)
    assert [points_balance(c.pk) for c in customers] == [20] * 5
    # Nothing due: the receiver reads and writes nothing more than its two look-ups.
    with django_assert_max_num_queries(3):
        receivers_levers.points_credit_orders(customer_ids=[c.pk for c in customers])


@pytest.mark.django_db
def test_a_refund_reverses_the_credit_once() -> None:
    customer = CustomerFactory()
    orders_upsert(rows=[_order(customer.pk, "o-r", "88.00")])
    assert points_balance(customer.pk) == 88
    orders_upsert(rows=[_order(customer.pk, "o-r", "88.00", status=OrderStatus.REFUNDED)])
    assert points_balance(customer.pk) == 0
    announce([customer.pk], Fact.ORDER)
    refund = PointsEntry.objects.get(customer=customer, reason=PointsReason.REFUND)
    assert refund.delta == -88
    assert refund.idempotency_key == f"refund:{refund.order_id}"
    assert PointsEntry.objects.filter(customer=customer).count() == 2


@pytest.mark.django_db
def test_an_order_refunded_before_we_saw_it_paid_earns_and_loses_nothing() -> None:
    customer = CustomerFactory()
    orders_upsert(rows=[_order(customer.pk, "o-x", "50.00", status=OrderStatus.REFUNDED)])
    assert not PointsEntry.objects.filter(customer=customer).exists()


@pytest.mark.django_db
def test_a_referral_credits_the_referrer_once(settings) -> None:
    settings.POINTS_PER_REFERRAL = 150
    referrer = CustomerFactory()
    referee = customer_create(data={"name": "新客", "referred_by_id": referrer.pk})
    assert points_balance(referrer.pk) == 150
    assert points_balance(referee.pk) == 0
    customer_update(customer=referee, data={"name": "新客2"})
    announce([referee.pk], Fact.REFERRAL)
    entry = PointsEntry.objects.get(customer=referrer)
    assert entry.reason == PointsReason.REFERRAL
    assert entry.idempotency_key == f"referral:{referee.pk}"


@pytest.mark.django_db
def test_a_referral_set_later_credits_the_referrer() -> None:
    referrer = CustomerFactory()
    referee = CustomerFactory()
    customer_update(customer=referee, data={"referred_by_id": referrer.pk})
    assert points_balance(referrer.pk) == 100


@pytest.mark.django_db
def test_spending_lowers_the_balance_and_cannot_overdraw() -> None:
    customer = CustomerFactory()
    orders_upsert(rows=[_order(customer.pk, "o-s", "120.00")])
    entry = points_spend(customer=customer, points=100, note="gift", idempotency_key="spend-1")
    assert entry.delta == -100
    assert points_balance(customer.pk) == 20
    # The same request replayed spends nothing more.
    assert (
        points_spend(customer=customer, points=100, note="gift", idempotency_key="spend-1") == entry
    )
    with pytest.raises(ValidationError) as exc:
        points_spend(customer=customer, points=21, note="too much", idempotency_key="spend-2")
    assert "points" in exc.value.message_dict
    assert points_balance(customer.pk) == 20
    with pytest.raises(ValidationError):
        points_spend(customer=customer, points=0, note="nothing", idempotency_key="spend-3")


@pytest.mark.django_db
def test_adjustments_need_a_reason_and_cannot_go_below_zero() -> None:
    customer = CustomerFactory()
    user = UserFactory(username="ops")
    entry = points_adjust(
        customer=customer, points=30, note="goodwill", idempotency_key="a1", user=user
    )
    assert entry.note == "goodwill (ops)"
    assert points_balance(customer.pk) == 30
    with pytest.raises(ValidationError):
        points_adjust(customer=customer, points=-31, note="fix", idempotency_key="a2")
    with pytest.raises(ValidationError):
        points_adjust(customer=customer, points=5, note=" ", idempotency_key="a3")
    points_adjust(customer=customer, points=-30, note="fix", idempotency_key="a4")
    assert points_balance(customer.pk) == 0


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_spends_cannot_overdraw() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("row locks need PostgreSQL (SQLite serialises writers anyway)")
    customer = CustomerFactory()
    orders_upsert(rows=[_order(customer.pk, "o-c", "100.00")])
    barrier = threading.Barrier(4)
    outcomes: list[str] = []
    lock = threading.Lock()

    def spend(n: int) -> None:
        try:
            barrier.wait()
            try:
                points_spend(customer=customer, points=60, note="race", idempotency_key=f"r{n}")
                result = "spent"
            except ValidationError:
                result = "short"
            with lock:
                outcomes.append(result)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=spend, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["short", "short", "short", "spent"]
    assert points_balance(customer.pk) == 40
