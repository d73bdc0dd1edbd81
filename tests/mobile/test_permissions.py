"""Who may open which customer on the phone pages: every URL of mobile/urls_customers.py
that takes a customer id answers 404 for a customer the user may not see, for GET and
POST alike, and writes nothing.

The rule is ``customers.selectors.visible_to``: a clerk (Role.STAFF) sees the customers
they own or actively follow, not every customer of their store; a manager sees the
customers of their store (or followed by a staff member of it); an operator sees all.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from django.urls import URLPattern, reverse
from django.utils import timezone

from channels.models import ChannelCode
from customers.models import Activity, Customer, CustomerTag, Follow, Note, Order
from mobile import urls_customers
from mobile.forms_customers import new_order_key
from tests.conftest import World
from tests.factories import CustomerTagFactory, FollowFactory, TagFactory

pytestmark = pytest.mark.django_db

#: Every URL name of the area that takes a customer id, with the methods it answers.
ID_URLS: dict[str, tuple[str, ...]] = {
    "card": ("get",),
    "card_timeline": ("get",),
    "card_order": ("get", "post"),
    "card_tag_add": ("post",),
    "card_tag_remove": ("post",),
    "card_note_add": ("post",),
    "card_referral": ("post",),
}
HTMX = {"HTTP_HX_REQUEST": "true"}


def test_every_url_with_an_id_is_covered_here() -> None:
    registered = {
        p.name
        for p in urls_customers.urlpatterns
        if isinstance(p, URLPattern) and "<int:pk>" in str(p.pattern)
    }
    assert registered == set(ID_URLS)


def _cases() -> list[tuple[str, str]]:
    return [(name, method) for name, methods in ID_URLS.items() for method in methods]


def _post_data(tag_id: int) -> dict[str, Any]:
    return {
        "tag": tag_id,
        "body": "A note that must not be written",
        "key": new_order_key(),
        "amount": "10.00",
        "product_role": "",
        "product_name": "x",
        "paid_at": timezone.localtime().strftime("%Y-%m-%dT%H:%M"),
    }


def _request(client: Client, name: str, method: str, customer: Customer, **extra: Any) -> Any:
    target = reverse(f"m:{name}", args=[customer.pk])
    if method == "get":
        return client.get(target, **extra)
    tag = TagFactory()
    if name == "card_tag_remove":
        # The customer has the tag, so that only the permission check keeps it there.
        CustomerTagFactory(customer=customer, tag=tag)
    return client.post(target, _post_data(tag.pk), **extra)


def _nothing_written(customer: Customer, *, tags: int) -> None:
    assert not Order.objects.filter(customer=customer).exists()
    assert not Note.objects.filter(customer=customer).exists()
    assert not Activity.objects.filter(customer=customer).exists()
    assert CustomerTag.objects.filter(customer=customer).count() == tags
    assert not ChannelCode.objects.filter(referrer=customer).exists()


@pytest.mark.parametrize("htmx", [False, True], ids=["plain", "htmx"])
@pytest.mark.parametrize(("name", "method"), _cases())
def test_staff_of_store_a_gets_404_for_a_store_b_customer(
    world: World, m_client: Callable[[Any], Client], name: str, method: str, htmx: bool
) -> None:
    customer = world.customer_b
    response = _request(m_client(world.clerk_a), name, method, customer, **(HTMX if htmx else {}))
    assert response.status_code == 404
    _nothing_written(customer, tags=1 if name == "card_tag_remove" else 0)


@pytest.mark.parametrize(("name", "method"), _cases())
def test_manager_of_store_a_gets_404_for_a_store_b_customer(
    world: World, m_client: Callable[[Any], Client], name: str, method: str
) -> None:
    response = _request(m_client(world.manager_a), name, method, world.customer_b)
    assert response.status_code == 404


@pytest.mark.parametrize(("name", "method"), _cases())
def test_clerk_cannot_open_a_colleagues_customer_of_the_same_store(
    world: World, m_client: Callable[[Any], Client], name: str, method: str
) -> None:
    # customer_a2 is of store A, followed by clerk_a2 only: not clerk_a's customer.
    response = _request(m_client(world.clerk_a), name, method, world.customer_a2)
    assert response.status_code == 404
    _nothing_written(world.customer_a2, tags=1 if name == "card_tag_remove" else 0)


def test_a_missing_customer_id_is_404(world: World, m_client: Callable[[Any], Client]) -> None:
    assert m_client(world.clerk_a).get(reverse("m:card", args=[999999])).status_code == 404


def test_clerk_sees_a_colleagues_customer_once_they_follow_or_own_it(
    world: World, m_client: Callable[[Any], Client]
) -> None:
    client = m_client(world.clerk_a)
    card = reverse("m:card", args=[world.customer_a2.pk])
    assert client.get(card).status_code == 404
    follow = FollowFactory(customer=world.customer_a2, staff=world.clerk_a)
    assert client.get(card).status_code == 200
    # A follow that ended (the customer deleted the clerk) no longer opens the card.
    Follow.objects.filter(pk=follow.pk).update(deleted_at=timezone.now())
    assert client.get(card).status_code == 404
    Customer.objects.filter(pk=world.customer_a2.pk).update(owner=world.clerk_a)
    assert client.get(card).status_code == 200


def test_manager_of_store_a_sees_every_store_a_customer(
    world: World, m_client: Callable[[Any], Client]
) -> None:
    client = m_client(world.manager_a)
    for customer in (world.customer_a, world.customer_a2):
        assert client.get(reverse("m:card", args=[customer.pk])).status_code == 200
    response = client.post(
        reverse("m:card_note_add", args=[world.customer_a2.pk]), {"body": "Manager's note"}
    )
    assert response.status_code == 302
    assert Note.objects.filter(customer=world.customer_a2, body="Manager's note").exists()


def test_operator_may_open_any_card(
    world: World, operator_user: Any, m_client: Callable[[Any], Client]
) -> None:
    response = m_client(operator_user).get(reverse("m:card", args=[world.customer_b.pk]))
    assert response.status_code == 200


def test_api_client_account_cannot_use_the_phone_pages(
    world: World, integration_user: Any, m_client: Callable[[Any], Client]
) -> None:
    response = m_client(integration_user).get(reverse("m:card", args=[world.customer_a.pk]))
    assert response.status_code == 403
