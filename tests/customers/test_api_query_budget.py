"""Every list endpoint answers in a number of queries that does not grow with the page:
3 rows and 30 rows cost the same."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User

from tests.conftest import World, api_client_for
from tests.factories import (
    ActivityFactory,
    ChannelFactory,
    CustomerFactory,
    CustomerTagFactory,
    FollowFactory,
    NoteFactory,
    OrderFactory,
    StaffFactory,
    StoreFactory,
    TagFactory,
    TagGroupFactory,
)

pytestmark = pytest.mark.django_db


def make_customers(world: World, n: int) -> None:
    channel = ChannelFactory()
    for _ in range(n):
        customer = CustomerFactory(store=world.store_a, owner=world.clerk_a, source_channel=channel)
        FollowFactory(customer=customer, staff=world.clerk_a)
        CustomerTagFactory(customer=customer)
        CustomerTagFactory(customer=customer)


def make_orders(world: World, n: int) -> None:
    for _ in range(n):
        OrderFactory(customer=world.customer_a, store=world.store_a, staff=world.clerk_a)


def make_activities(world: World, n: int) -> None:
    for _ in range(n):
        ActivityFactory(customer=world.customer_a, staff=world.clerk_a)


def make_notes(world: World, n: int) -> None:
    for _ in range(n):
        NoteFactory(customer=world.customer_a, author=world.clerk_a.user)


def make_tags(world: World, n: int) -> None:
    group = TagGroupFactory()
    for _ in range(n):
        TagFactory(group=group)


def make_tag_groups(world: World, n: int) -> None:
    for _ in range(n):
        group = TagGroupFactory()
        TagFactory(group=group)
        TagFactory(group=group)


def make_staff(world: World, n: int) -> None:
    for _ in range(n):
        StaffFactory(store=world.store_a)


def make_stores(world: World, n: int) -> None:
    for _ in range(n):
        StoreFactory()


def make_channels(world: World, n: int) -> None:
    for _ in range(n):
        ChannelFactory()


ENDPOINTS: dict[str, tuple[Callable[[World, int], None], int]] = {
    # path: (make n rows visible to both the operator and clerk A, query budget)
    "/api/v1/customers/": (make_customers, 6),
    "/api/v1/orders/": (make_orders, 5),
    "/api/v1/activities/": (make_activities, 5),
    "/api/v1/notes/": (make_notes, 5),
    "/api/v1/tags/": (make_tags, 5),
    "/api/v1/tag-groups/": (make_tag_groups, 6),
    "/api/v1/staff/": (make_staff, 5),
    "/api/v1/stores/": (make_stores, 5),
    "/api/v1/channels/": (make_channels, 5),
}


@pytest.mark.parametrize("who", ["operator", "clerk"])
@pytest.mark.parametrize("path", list(ENDPOINTS))
def test_list_query_budget_does_not_grow_with_the_page(
    path: str,
    who: str,
    world: World,
    operator_user: Any,
    django_assert_max_num_queries: Any,
) -> None:
    make, budget = ENDPOINTS[path]
    user = operator_user if who == "operator" else world.clerk_a.user
    assert user is not None
    sizes: list[int] = []
    for rows in (3, 30):
        make(world, rows - (sizes[-1] if sizes else 0))
        # A fresh user object each time, so the role is looked up again, as per request.
        client = api_client_for(User.objects.get(pk=user.pk))
        with django_assert_max_num_queries(budget):
            response = client.get(path, {"page_size": 100})
        assert response.status_code == 200
        sizes.append(rows)
    if not (who == "clerk" and path == "/api/v1/stores/"):  # a clerk sees one store
        assert len(response.json()["results"]) >= 30


def test_filtered_customer_list_keeps_its_budget(
    world: World, operator_user: Any, django_assert_max_num_queries: Any
) -> None:
    make_customers(world, 30)
    tag = TagFactory()
    query = {
        "store": world.store_a.pk,
        "owner": world.clerk_a.pk,
        "staff": world.clerk_a.pk,
        "tag": tag.pk,
        "q": "客户",
        "ordering": "-name",
        "page_size": 100,
    }
    with django_assert_max_num_queries(10):
        assert api_client_for(operator_user).get("/api/v1/customers/", query).status_code == 200
