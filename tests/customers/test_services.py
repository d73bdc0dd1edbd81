"""Write services: idempotent upserts, all-or-nothing bulk writes, fact announcements."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import IntegrityError
from django.utils import timezone

from customers.hooks import Fact, facts_changed
from customers.models import Activity, Customer, CustomerTag, Note, Order
from customers.services import (
    ActivityInput,
    OrderInput,
    activities_record,
    customer_mark_active,
    customer_mark_lost,
    customer_tag_add,
    customer_tag_remove,
    customer_upsert,
    note_create,
    orders_upsert,
)
from tests.factories import CustomerFactory, TagFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def announced():
    calls: list[tuple[frozenset[int], frozenset[Fact]]] = []

    def receiver(sender, customer_ids, facts, **kwargs):
        calls.append((customer_ids, facts))

    facts_changed.connect(receiver)
    yield calls
    facts_changed.disconnect(receiver)


def _order(customer: Customer, n: int, **kw) -> OrderInput:
    values = {"amount": Decimal("10.50"), "paid_at": timezone.now() - timedelta(days=1), **kw}
    return OrderInput(external_id=f"o-{n}", customer_id=customer.pk, **values)


def test_customer_upsert_creates_then_leaves_unchanged(announced) -> None:
    data = {"external_id": "mall-1", "name": "李雷", "phone": "13800000000"}
    customer, outcome = customer_upsert(key="external_id", data=data)
    assert outcome == "created"
    stamp = Customer.objects.get(pk=customer.pk).updated_at
    again, outcome = customer_upsert(key="external_id", data=data)
    assert (again.pk, outcome) == (customer.pk, "unchanged")
    assert Customer.objects.get(pk=customer.pk).updated_at == stamp
    assert Customer.objects.count() == 1
    assert len(announced) == 1


def test_customer_upsert_updates_changed_fields_only() -> None:
    customer, _ = customer_upsert(key="external_id", data={"external_id": "x", "name": "A"})
    _, outcome = customer_upsert(key="external_id", data={"external_id": "x", "name": "B"})
    assert outcome == "updated"
    customer.refresh_from_db()
    assert customer.name == "B"


def test_referral_announces_the_referrer(announced) -> None:
    referrer = CustomerFactory()
    announced.clear()
    customer, _ = customer_upsert(
        key="external_id", data={"external_id": "r", "name": "R", "referred_by_id": referrer.pk}
    )
    ids, facts = announced[-1]
    assert ids == {customer.pk, referrer.pk}
    assert Fact.REFERRAL in facts


def test_orders_upsert_replay_changes_nothing(announced) -> None:
    customer = CustomerFactory()
    rows = [_order(customer, n) for n in range(50)]
    first = orders_upsert(rows=rows)
    assert first.created == 50
    stamps = dict(Order.objects.values_list("id", "updated_at"))
    second = orders_upsert(rows=rows)
    assert (second.created, second.updated, second.unchanged) == (0, 0, 50)
    assert second.ids == first.ids
    assert dict(Order.objects.values_list("id", "updated_at")) == stamps
    assert Order.objects.count() == 50


def test_orders_upsert_updates_a_refund() -> None:
    customer = CustomerFactory()
    orders_upsert(rows=[_order(customer, 1)])
    result = orders_upsert(rows=[_order(customer, 1, status="refunded")])
    assert result.updated == 1
    order = Order.objects.get()
    assert order.status == "refunded" and order.refunded_at is not None


def test_orders_upsert_is_all_or_nothing() -> None:
    customer = CustomerFactory()
    rows = [_order(customer, 1), _order(customer, 2, amount=Decimal("-1"))]
    with pytest.raises(IntegrityError):
        orders_upsert(rows=rows)
    assert Order.objects.count() == 0


def test_orders_upsert_query_count_does_not_grow(django_assert_max_num_queries) -> None:
    customer = CustomerFactory()
    rows = [_order(customer, n) for n in range(1000)]
    # A read, a few INSERT batches (SQLite caps bound variables per statement), savepoints,
    # and the subscribers' constant few (the funnel's refresh of milestones and paid
    # periods; campaigns: the running SOPs, the points credit and reversal): a handful,
    # never one per row.
    with django_assert_max_num_queries(33):
        orders_upsert(rows=rows)


def test_activities_record_is_idempotent_by_key_and_by_content() -> None:
    customer = CustomerFactory()
    at = timezone.now()
    keyed = ActivityInput(
        customer_id=customer.pk, kind="message_received", occurred_at=at, idempotency_key="wx-1"
    )
    unkeyed = ActivityInput(
        customer_id=customer.pk, kind="page_viewed", occurred_at=at, payload={"url": "/a"}
    )
    first = activities_record(rows=[keyed, unkeyed])
    second = activities_record(rows=[keyed, unkeyed])
    assert first.created == 2 and second.unchanged == 2
    assert first.ids == second.ids
    assert Activity.objects.count() == 2


def test_duplicate_keys_inside_one_batch_store_once() -> None:
    customer = CustomerFactory()
    row = ActivityInput(
        customer_id=customer.pk, kind="x", occurred_at=timezone.now(), idempotency_key="k"
    )
    result = activities_record(rows=[row, row])
    assert result.outcomes == ["created", "unchanged"]
    assert Activity.objects.count() == 1


def test_note_create_writes_note_and_timeline() -> None:
    customer = CustomerFactory()
    note = note_create(
        customer=customer, author=UserFactory(), body="  喜欢玫瑰精华 🌹 ", source="dashboard"
    )
    assert Note.objects.get().body == "喜欢玫瑰精华 🌹"
    assert Activity.objects.get().payload["note_id"] == note.pk


def test_empty_note_is_refused() -> None:
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError):
        note_create(customer=CustomerFactory(), author=None, body="   ", source="api")
    assert Note.objects.count() == 0


def test_tag_add_and_remove_are_idempotent() -> None:
    customer, tag = CustomerFactory(), TagFactory()
    assert customer_tag_add(customer=customer, tag=tag, source="api") is True
    assert customer_tag_add(customer=customer, tag=tag, source="api") is False
    assert CustomerTag.objects.count() == 1
    assert customer_tag_remove(customer=customer, tag=tag, source="api") is True
    assert customer_tag_remove(customer=customer, tag=tag, source="api") is False
    kinds = list(Activity.objects.order_by("id").values_list("kind", flat=True))
    assert kinds == ["tag_added", "tag_removed"]


def test_lost_and_back_keeps_status_consistent() -> None:
    customer = CustomerFactory()
    assert customer_mark_lost(customer=customer) is True
    assert customer_mark_lost(customer=customer) is False
    assert customer.status == "lost" and customer.lost_at is not None
    assert customer_mark_active(customer=customer) is True
    assert customer.status == "active" and customer.lost_at is None


def test_database_refuses_lost_without_time() -> None:
    customer = CustomerFactory()
    with pytest.raises(IntegrityError):
        Customer.objects.filter(pk=customer.pk).update(status="lost")


def test_deleting_a_staff_member_keeps_their_tag_links_without_attribution() -> None:
    # A tag link's staff has no database foreign key (customers migration 0006): Django's
    # delete still sets it to NULL, and the link itself stays.
    from tests.factories import CustomerTagFactory, StaffFactory

    staff = StaffFactory()
    link = CustomerTagFactory(staff=staff)
    staff.delete()
    link.refresh_from_db()
    assert link.staff_id is None
