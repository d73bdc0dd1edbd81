"""My customers (/m/customers/): search, filters, sorts, infinite scroll, masking and the
query budget with 1,000 customers of one clerk."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any, cast

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from customers.models import Activity, Customer, Follow, Order, Staff
from funnel.models import Milestones
from mobile.views.customers import MORE_TARGET, PAGE_SIZE
from tests.campaigns.factories import (
    EnrollmentFactory,
    SopStepFactory,
    TouchpointFactory,
    sop_with_steps,
)
from tests.conftest import World
from tests.factories import (
    ActivityFactory,
    ChannelFactory,
    CustomerFactory,
    CustomerTagFactory,
    FollowFactory,
    OrderFactory,
    TagFactory,
)

pytestmark = pytest.mark.django_db

URL = reverse("m:customers")
MORE = {"HTTP_HX_REQUEST": "true", "HTTP_HX_TARGET": MORE_TARGET}


def names(response: Any) -> list[str]:
    return [row.customer.name for row in response.context["rows"]]


def mine(clerk: Staff, **kwargs: Any) -> Customer:
    """A customer of the clerk's store whom the clerk follows."""
    customer = cast(Customer, CustomerFactory(store=clerk.store, **kwargs))
    FollowFactory(customer=customer, staff=clerk)
    return customer


def set_stage(customer: Customer, stage: int) -> None:
    # The funnel's derived row, written here as test data (production writes it through
    # milestones_refresh only).
    Milestones.objects.update_or_create(
        customer=customer, defaults={"acquired_at": customer.acquired_at, "stage": stage}
    )


# --- Who sees what ---------------------------------------------------------------------


def test_clerk_sees_only_the_customers_they_follow_or_own(
    world: World, m_client: Callable[[Any], Client]
) -> None:
    CustomerFactory(name="Owned by A", store=world.store_a, owner=world.clerk_a)
    response = m_client(world.clerk_a).get(URL)
    assert response.status_code == 200
    assert sorted(names(response)) == ["Alice A", "Owned by A"]


def test_manager_sees_the_stores_customers(world: World, m_client: Callable[[Any], Client]) -> None:
    response = m_client(world.manager_a).get(URL)
    assert sorted(names(response)) == ["Alice A", "Anna A2"]


def test_anonymous_user_goes_to_the_mobile_login(client: Client) -> None:
    response = client.get(URL)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("m:login"))


# --- Search ----------------------------------------------------------------------------


def test_search_by_name(world: World, m_client: Callable[[Any], Client]) -> None:
    mine(world.clerk_a, name="Carol Zhang")
    response = m_client(world.clerk_a).get(URL, {"q": "zhang"})
    assert names(response) == ["Carol Zhang"]


def test_search_by_wecom_remark(world: World, m_client: Callable[[Any], Client]) -> None:
    Follow.objects.filter(customer=world.customer_a, staff=world.clerk_a).update(
        remark="玫瑰精华 老顾客"
    )
    mine(world.clerk_a, name="Other")
    response = m_client(world.clerk_a).get(URL, {"q": "玫瑰"})
    assert names(response) == ["Alice A"]


def test_search_by_remark_never_reaches_customers_the_user_cannot_see(
    world: World, m_client: Callable[[Any], Client]
) -> None:
    Follow.objects.filter(customer=world.customer_b).update(remark="VIP")
    assert names(m_client(world.clerk_a).get(URL, {"q": "VIP"})) == []


def test_manager_finds_a_customer_by_any_part_of_the_phone(
    world: World, m_client: Callable[[Any], Client]
) -> None:
    Customer.objects.filter(pk=world.customer_a.pk).update(phone="139-1234-5678")
    client = m_client(world.manager_a)
    assert names(client.get(URL, {"q": "12345"})) == ["Alice A"]
    assert names(client.get(URL, {"q": "139 1234 5678"})) == ["Alice A"]


def test_clerk_finds_by_the_whole_number_or_the_digits_the_mask_shows(
    world: World, m_client: Callable[[Any], Client]
) -> None:
    Customer.objects.filter(pk=world.customer_a.pk).update(phone="13912345678")
    client = m_client(world.clerk_a)
    assert names(client.get(URL, {"q": "13912345678"})) == ["Alice A"]
    assert names(client.get(URL, {"q": "5678"})) == ["Alice A"]
    # Middle digits are masked for a clerk (139****5678): searching them would reveal them.
    assert names(client.get(URL, {"q": "12345"})) == []


# --- Filters ---------------------------------------------------------------------------


def test_filter_by_stage(world: World, m_client: Callable[[Any], Client]) -> None:
    buyer = mine(world.clerk_a, name="Buyer")
    set_stage(buyer, 4)
    client = m_client(world.clerk_a)
    assert names(client.get(URL, {"stage": 4})) == ["Buyer"]
    # A customer without a funnel row yet is at acquisition.
    assert names(client.get(URL, {"stage": 1})) == ["Alice A"]


def test_filter_by_tag(world: World, m_client: Callable[[Any], Client]) -> None:
    tag = TagFactory(name="VIP")
    tagged = mine(world.clerk_a, name="Tagged")
    CustomerTagFactory(customer=tagged, tag=tag)
    CustomerTagFactory(customer=world.customer_b, tag=tag)
    assert names(m_client(world.clerk_a).get(URL, {"tag": tag.pk})) == ["Tagged"]


def test_filter_by_channel(world: World, m_client: Callable[[Any], Client]) -> None:
    channel = ChannelFactory(name="Poster")
    mine(world.clerk_a, name="From poster", source_channel=channel)
    assert names(m_client(world.clerk_a).get(URL, {"channel": channel.pk})) == ["From poster"]


def test_filter_by_last_activity(world: World, m_client: Callable[[Any], Client]) -> None:
    now = timezone.now()
    recent = mine(world.clerk_a, name="Recent")
    ActivityFactory(customer=recent, occurred_at=now - timedelta(days=2))
    monthly = mine(world.clerk_a, name="Monthly")
    ActivityFactory(customer=monthly, occurred_at=now - timedelta(days=20))
    quarterly = mine(world.clerk_a, name="Quarterly")
    ActivityFactory(customer=quarterly, occurred_at=now - timedelta(days=60))
    # What the system or staff wrote is not the customer's activity (FUNNEL_SYSTEM_KINDS).
    ActivityFactory(customer=quarterly, kind="touchpoint_sent", occurred_at=now)
    client = m_client(world.clerk_a)
    assert names(client.get(URL, {"activity": "7"})) == ["Recent"]
    assert sorted(names(client.get(URL, {"activity": "30"}))) == ["Monthly", "Recent"]
    assert sorted(names(client.get(URL, {"activity": "90"}))) == [
        "Monthly",
        "Quarterly",
        "Recent",
    ]
    # Idle: nothing for 30 days or more, including customers with no activity at all.
    assert sorted(names(client.get(URL, {"activity": "idle30"}))) == ["Alice A", "Quarterly"]


def test_invalid_filter_values_are_ignored_not_an_error(
    world: World, m_client: Callable[[Any], Client]
) -> None:
    response = m_client(world.clerk_a).get(
        URL, {"stage": "9", "tag": "999999", "channel": "x", "activity": "?", "sort": "evil"}
    )
    assert response.status_code == 200
    assert names(response) == ["Alice A"]


# --- Sorts -----------------------------------------------------------------------------


@pytest.fixture
def three(world: World) -> dict[str, Customer]:
    """Three customers of clerk A, each first by a different sort."""
    Customer.objects.filter(pk=world.customer_a.pk).delete()
    now = timezone.now()
    a = mine(world.clerk_a, name="Ann", acquired_at=now - timedelta(days=90))
    b = mine(world.clerk_a, name="Bea", acquired_at=now - timedelta(days=1))
    c = mine(world.clerk_a, name="Cid", acquired_at=now - timedelta(days=40))
    ActivityFactory(customer=c, occurred_at=now - timedelta(hours=1))
    ActivityFactory(customer=a, occurred_at=now - timedelta(days=3))
    OrderFactory(customer=a, paid_at=now - timedelta(days=2), amount=Decimal("10.00"))
    OrderFactory(customer=b, paid_at=now - timedelta(days=5))
    sop = sop_with_steps(steps=1)
    assert sop.current_version is not None
    step = SopStepFactory(version=sop.current_version, position=9, instruction="Call her")
    for customer, hours in ((b, 2), (c, 30)):
        enrollment = EnrollmentFactory(version=sop.current_version, customer=customer)
        TouchpointFactory(enrollment=enrollment, step=step, due_at=now + timedelta(hours=hours))
    return {"a": a, "b": b, "c": c}


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ("recent", ["Cid", "Ann", "Bea"]),
        ("name", ["Ann", "Bea", "Cid"]),
        ("last_order", ["Ann", "Bea", "Cid"]),
        ("next_step", ["Bea", "Cid", "Ann"]),
        ("newest", ["Bea", "Cid", "Ann"]),
    ],
)
def test_each_sort(
    sort: str,
    expected: list[str],
    world: World,
    three: dict[str, Customer],
    m_client: Callable[[Any], Client],
) -> None:
    assert names(m_client(world.clerk_a).get(URL, {"sort": sort})) == expected


def test_row_shows_stage_last_order_and_next_step(
    world: World, three: dict[str, Customer], m_client: Callable[[Any], Client]
) -> None:
    set_stage(three["a"], 4)
    response = m_client(world.clerk_a).get(URL, {"sort": "name"})
    html = response.content.decode()
    rows = {row.customer.name: row for row in response.context["rows"]}
    assert rows["Ann"].customer.last_order_amount == Decimal("10.00")
    assert rows["Ann"].customer.stage == 4
    assert rows["Bea"].next_label == "Call her"
    assert rows["Ann"].next_touchpoint is None
    assert "Call her" in html and "¥10.00" in html
    assert 'class="badge m-stage m-stage-4"' in html


# --- Paging ----------------------------------------------------------------------------


def test_next_page_through_htmx_returns_the_following_rows_without_duplicates(
    world: World, m_client: Callable[[Any], Client]
) -> None:
    for i in range(PAGE_SIZE + 5):
        mine(world.clerk_a, name=f"P{i:03d}")
    client = m_client(world.clerk_a)
    first = client.get(URL, {"sort": "name"})
    html = first.content.decode()
    assert f'id="{MORE_TARGET}"' in html and 'hx-trigger="revealed"' in html
    assert "page=2" in html and "sort=name" in html
    second = client.get(URL, {"sort": "name", "page": 2}, **MORE)
    assert second.status_code == 200
    assert second.templates[0].name == "m/_customer_rows.html"
    page_1, page_2 = names(first), names(second)
    assert len(page_1) == PAGE_SIZE
    assert not set(page_1) & set(page_2)
    assert sorted(page_1 + page_2) == sorted(
        [*(f"P{i:03d}" for i in range(PAGE_SIZE + 5)), "Alice A"]
    )
    assert MORE_TARGET not in second.content.decode(), "the last page offers no more"


def test_total_is_shown_on_the_whole_page(world: World, m_client: Callable[[Any], Client]) -> None:
    for i in range(PAGE_SIZE + 1):
        mine(world.clerk_a, name=f"T{i}")
    response = m_client(world.clerk_a).get(URL)
    assert response.context["total"] == PAGE_SIZE + 2


# --- Masking ---------------------------------------------------------------------------


def test_phone_is_masked_for_a_clerk_and_shown_to_a_manager(
    world: World, m_client: Callable[[Any], Client], settings: Any
) -> None:
    Customer.objects.filter(pk=world.customer_a.pk).update(phone="13912345678")
    clerk_html = m_client(world.clerk_a).get(URL).content.decode()
    assert "139****5678" in clerk_html and "13912345678" not in clerk_html
    manager_html = m_client(world.manager_a).get(URL).content.decode()
    assert "13912345678" in manager_html
    settings.STAFF_SEES_PHONES = True
    assert "13912345678" in m_client(world.clerk_a).get(URL).content.decode()


# --- Query budget ----------------------------------------------------------------------


def _many_customers(clerk: Staff, n: int) -> None:
    """n customers followed by ``clerk``, half with an order, a third with an activity,
    a quarter with a pending touchpoint: bulk inserts, so the fixture stays fast."""
    now = timezone.now()
    customers = Customer.objects.bulk_create(
        Customer(
            name=f"Bulk {i:04d}",
            external_id=f"bulk-{clerk.pk}-{i}",
            phone=f"137{i:08d}",
            store=clerk.store,
            acquired_at=now - timedelta(days=i % 200),
        )
        for i in range(n)
    )
    Follow.objects.bulk_create(Follow(customer=c, staff=clerk) for c in customers)
    Order.objects.bulk_create(
        Order(
            external_id=f"bulk-o-{c.pk}",
            customer=c,
            amount=Decimal("88.00"),
            paid_at=now - timedelta(days=i % 50),
        )
        for i, c in enumerate(customers)
        if i % 2 == 0
    )
    Activity.objects.bulk_create(
        Activity(
            customer=c,
            kind="message_received",
            occurred_at=now - timedelta(hours=i),
            idempotency_key=f"bulk-a-{c.pk}",
        )
        for i, c in enumerate(customers)
        if i % 3 == 0
    )
    sop = sop_with_steps(steps=1)
    assert sop.current_version is not None
    step = sop.current_version.steps.get()
    for i, c in enumerate(customers[: n // 4]):
        enrollment = EnrollmentFactory(version=sop.current_version, customer=c)
        TouchpointFactory(enrollment=enrollment, step=step, due_at=now + timedelta(hours=i))


@pytest.mark.parametrize("sort", ["recent", "name", "last_order", "next_step", "newest"])
def test_list_queries_do_not_grow_with_1000_customers(
    sort: str,
    world: World,
    m_client: Callable[[Any], Client],
    django_assert_max_num_queries: Any,
) -> None:
    _many_customers(world.clerk_a, 1000)
    client = m_client(world.clerk_a)
    # Session, user, staff row, tag and channel choices, the rows, the page's next
    # steps and the total (8 today): a fixed number, whatever the number of customers.
    with django_assert_max_num_queries(10):
        response = client.get(URL, {"sort": sort, "q": "Bulk"})
    assert response.status_code == 200
    assert len(response.context["rows"]) == PAGE_SIZE
    with django_assert_max_num_queries(8):
        more = client.get(URL, {"sort": sort, "page": 5}, **MORE)
    assert len(more.context["rows"]) == PAGE_SIZE
