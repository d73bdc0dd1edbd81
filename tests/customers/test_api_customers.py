"""REST API v1: customers (roles, upsert, update, tagging, ordering with cursors)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from customers.models import Activity, ActivityKind, Customer, CustomerTag
from tests.conftest import World, api_client_for
from tests.factories import (
    ChannelFactory,
    CustomerFactory,
    CustomerTagFactory,
    OrderFactory,
    StoreFactory,
    TagFactory,
    TagGroupFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

LIST = "/api/v1/customers/"


def detail(pk: int) -> str:
    return f"/api/v1/customers/{pk}/"


def names(response: Any) -> set[str]:
    return {row["name"] for row in response.json()["results"]}


# --- Who sees what ---------------------------------------------------------------------


def test_operator_sees_every_customer(world: World, operator_user: Any) -> None:
    response = api_client_for(operator_user).get(LIST)
    assert response.status_code == 200
    assert names(response) == {"Alice A", "Anna A2", "Bob B"}


def test_integration_sees_every_customer(world: World, api_client: APIClient) -> None:
    assert names(api_client.get(LIST)) == {"Alice A", "Anna A2", "Bob B"}


def test_manager_sees_only_their_stores_customers(world: World) -> None:
    response = api_client_for(world.manager_a.user).get(LIST)
    assert names(response) == {"Alice A", "Anna A2"}


def test_staff_sees_only_customers_they_follow_or_own(world: World) -> None:
    owned = CustomerFactory(name="Owned by clerk A", owner=world.clerk_a)
    response = api_client_for(world.clerk_a.user).get(LIST)
    assert names(response) == {"Alice A", owned.name}


def test_staff_cannot_see_other_stores_customers(world: World) -> None:
    response = api_client_for(world.clerk_a.user).get(detail(world.customer_b.pk))
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_staff_cannot_see_a_colleagues_customer(world: World) -> None:
    response = api_client_for(world.clerk_a.user).get(detail(world.customer_a2.pk))
    assert response.status_code == 404


def test_manager_cannot_see_other_stores_customer(world: World) -> None:
    response = api_client_for(world.manager_a.user).get(detail(world.customer_b.pk))
    assert response.status_code == 404


def test_detail_shows_follows_and_tags(world: World, api_client: APIClient) -> None:
    link = CustomerTagFactory(customer=world.customer_a)
    body = api_client.get(detail(world.customer_a.pk)).json()
    assert [f["staff"] for f in body["follows"]] == [world.clerk_a.pk]
    assert body["follows"][0]["staff_name"] == "Clerk A"
    assert body["tags"] == [{"id": link.tag.pk, "name": link.tag.name, "group": link.tag.group_id}]


def test_list_filters_by_store_and_tag(world: World, api_client: APIClient) -> None:
    tag = TagFactory()
    CustomerTagFactory(customer=world.customer_b, tag=tag)
    assert names(api_client.get(LIST, {"store": world.store_a.pk})) == {"Alice A", "Anna A2"}
    assert names(api_client.get(LIST, {"tag": tag.pk})) == {"Bob B"}


def test_staff_cannot_filter_by_another_store(world: World) -> None:
    response = api_client_for(world.clerk_a.user).get(LIST, {"store": world.store_b.pk})
    assert response.status_code == 400
    assert "store" in response.json()["error"]["fields"]


def test_user_without_role_is_forbidden(db: Any) -> None:
    response = api_client_for(UserFactory(username="nobody")).get(LIST)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"


# --- Cursor pagination and ordering ----------------------------------------------------


def test_list_has_no_count_and_pages_by_cursor(api_client: APIClient) -> None:
    for i in range(5):
        CustomerFactory(name=f"c{i}")
    first = api_client.get(LIST, {"page_size": 2}).json()
    assert "count" not in first
    assert len(first["results"]) == 2
    second = api_client.get(first["next"]).json()
    third = api_client.get(second["next"]).json()
    seen = [r["id"] for r in first["results"] + second["results"] + third["results"]]
    assert len(seen) == len(set(seen)) == 5
    assert third["next"] is None


def test_ordering_by_name_pages_through_ties_without_gaps(api_client: APIClient) -> None:
    # Many equal names: the cursor position alone cannot tell them apart.
    for name in ["b", "a", "b", "a", "c", "b", "a"]:
        CustomerFactory(name=name)
    url: str | None = f"{LIST}?ordering=name&page_size=2"
    rows: list[dict[str, Any]] = []
    while url:
        page = api_client.get(url).json()
        rows += page["results"]
        url = page["next"]
    assert [r["name"] for r in rows] == ["a", "a", "a", "b", "b", "b", "c"]
    ids_of_a = [r["id"] for r in rows if r["name"] == "a"]
    assert ids_of_a == sorted(ids_of_a)  # the id tiebreak follows the direction
    assert len({r["id"] for r in rows}) == 7


def test_descending_ordering_is_honoured(api_client: APIClient) -> None:
    now = timezone.now()
    for days in (3, 1, 2):
        CustomerFactory(name=f"d{days}", acquired_at=now - timedelta(days=days))
    page = api_client.get(LIST, {"ordering": "acquired_at"}).json()
    assert [r["name"] for r in page["results"]] == ["d3", "d2", "d1"]
    page = api_client.get(LIST, {"ordering": "-acquired_at"}).json()
    assert [r["name"] for r in page["results"]] == ["d1", "d2", "d3"]


def test_unknown_ordering_is_a_400(api_client: APIClient) -> None:
    response = api_client.get(LIST, {"ordering": "phone"})
    assert response.status_code == 400
    assert "ordering" in response.json()["error"]["fields"]


# --- Upsert ----------------------------------------------------------------------------


def test_post_new_external_id_creates_with_201(api_client: APIClient) -> None:
    response = api_client.post(LIST, {"external_id": "mall-1", "name": "Li"}, format="json")
    assert response.status_code == 201
    assert Customer.objects.get(external_id="mall-1").name == "Li"
    assert response.json()["external_id"] == "mall-1"


def test_post_known_external_id_updates_with_200(api_client: APIClient) -> None:
    customer = CustomerFactory(external_id="mall-2", name="Old")
    response = api_client.post(LIST, {"external_id": "mall-2", "name": "New"}, format="json")
    assert response.status_code == 200
    assert response.json()["id"] == customer.pk
    customer.refresh_from_db()
    assert customer.name == "New"
    assert Customer.objects.filter(external_id="mall-2").count() == 1


def test_replaying_a_customer_changes_nothing(api_client: APIClient) -> None:
    store = StoreFactory()
    body = {
        "external_id": "mall-3",
        "name": "Wang",
        "phone": "13900000000",
        "gender": 2,
        "birthday": "1990-05-01",
        "store": store.pk,
        "acquired_at": "2024-03-01T10:00:00+08:00",
    }
    assert api_client.post(LIST, body, format="json").status_code == 201
    before = Customer.objects.get(external_id="mall-3")
    again = api_client.post(LIST, body, format="json")
    assert again.status_code == 200
    after = Customer.objects.get(external_id="mall-3")
    assert after.updated_at == before.updated_at
    assert Customer.objects.count() == 1


def test_import_keeps_acquired_at_and_referrer(api_client: APIClient) -> None:
    referrer = CustomerFactory(external_id="mall-ref")
    body = {
        "external_id": "mall-4",
        "name": "Zhao",
        "acquired_at": "2023-01-02T03:04:05Z",
        "referred_by_external_id": "mall-ref",
    }
    response = api_client.post(LIST, body, format="json")
    assert response.status_code == 201
    customer = Customer.objects.get(external_id="mall-4")
    assert customer.referred_by_id == referrer.pk
    assert customer.acquired_at.isoformat() == "2023-01-02T03:04:05+00:00"


def test_referrer_by_id_and_unknown_referrer_external_id(api_client: APIClient) -> None:
    referrer = CustomerFactory()
    ok = api_client.post(
        LIST, {"external_id": "r1", "name": "x", "referred_by": referrer.pk}, format="json"
    )
    assert ok.json()["referred_by"] == referrer.pk
    bad = api_client.post(
        LIST, {"external_id": "r2", "name": "x", "referred_by_external_id": "nope"}, format="json"
    )
    assert bad.status_code == 400
    assert "referred_by_external_id" in bad.json()["error"]["fields"]


def test_customer_cannot_refer_themselves(api_client: APIClient) -> None:
    customer = CustomerFactory(external_id="self")
    response = api_client.patch(detail(customer.pk), {"referred_by": customer.pk}, format="json")
    assert response.status_code == 400
    assert "referred_by" in response.json()["error"]["fields"]


def test_unknown_related_ids_are_field_errors(api_client: APIClient) -> None:
    body = {"name": "x", "owner": 999999, "store": "abc", "source_channel": 10**30}
    response = api_client.post(LIST, body, format="json")
    assert response.status_code == 400
    assert set(response.json()["error"]["fields"]) == {"owner", "store", "source_channel"}


def test_source_channel_is_settable(api_client: APIClient) -> None:
    channel = ChannelFactory()
    response = api_client.post(LIST, {"name": "x", "source_channel": channel.pk}, format="json")
    assert response.status_code == 201
    assert response.json()["source_channel"] == channel.pk


def test_naive_acquired_at_is_refused(api_client: APIClient) -> None:
    response = api_client.post(
        LIST, {"name": "x", "acquired_at": "2024-01-01T10:00:00"}, format="json"
    )
    assert response.status_code == 400
    assert "acquired_at" in response.json()["error"]["fields"]


def test_external_userid_of_another_customer_is_refused(api_client: APIClient) -> None:
    CustomerFactory(external_userid="wm1")
    response = api_client.post(
        LIST, {"external_id": "e1", "external_userid": "wm1", "name": "x"}, format="json"
    )
    assert response.status_code == 400
    assert "external_userid" in response.json()["error"]["fields"]


def test_patch_updates_and_put_needs_the_name(api_client: APIClient, world: World) -> None:
    url = detail(world.customer_a.pk)
    response = api_client.patch(url, {"phone": "111"}, format="json")
    assert response.status_code == 200
    assert response.json()["phone"] == "111"
    put = api_client.put(url, {"phone": "222"}, format="json")
    assert put.status_code == 400
    assert "name" in put.json()["error"]["fields"]
    put = api_client.put(url, {"name": "Alice", "phone": "222"}, format="json")
    assert put.status_code == 200
    world.customer_a.refresh_from_db()
    assert (world.customer_a.name, world.customer_a.phone) == ("Alice", "222")


def test_patch_with_same_values_does_not_bump_updated_at(api_client: APIClient) -> None:
    customer = CustomerFactory(name="Same")
    before = Customer.objects.get(pk=customer.pk).updated_at
    api_client.patch(detail(customer.pk), {"name": "Same"}, format="json")
    assert Customer.objects.get(pk=customer.pk).updated_at == before


def test_staff_may_not_create_or_update_customers(world: World) -> None:
    client = api_client_for(world.clerk_a.user)
    assert client.post(LIST, {"name": "x"}, format="json").status_code == 403
    response = client.patch(detail(world.customer_a.pk), {"name": "y"}, format="json")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"


# --- Tags on a customer ----------------------------------------------------------------


def test_tag_add_and_remove(api_client: APIClient, world: World) -> None:
    tag = TagFactory()
    url = f"{detail(world.customer_a.pk)}tags/"
    added = api_client.post(url, {"tag": tag.pk}, format="json")
    assert added.status_code == 201
    assert added.json()["changed"] is True
    assert [t["id"] for t in added.json()["tags"]] == [tag.pk]
    again = api_client.post(url, {"tag": tag.pk}, format="json")
    assert again.status_code == 200
    assert again.json()["changed"] is False
    removed = api_client.delete(f"{url}?tag={tag.pk}")
    assert removed.status_code == 200
    assert removed.json() == {"changed": True, "tags": []}
    assert not CustomerTag.objects.filter(customer=world.customer_a).exists()
    kinds = set(Activity.objects.filter(customer=world.customer_a).values_list("kind", flat=True))
    assert {ActivityKind.TAG_ADDED, ActivityKind.TAG_REMOVED} <= kinds


def test_tag_remove_accepts_a_json_body(api_client: APIClient, world: World) -> None:
    link = CustomerTagFactory(customer=world.customer_a)
    url = f"{detail(world.customer_a.pk)}tags/"
    response = api_client.delete(url, {"tag": link.tag.pk}, format="json")
    assert response.json()["changed"] is True


def test_staff_may_tag_their_own_customer(world: World) -> None:
    tag = TagFactory(group=TagGroupFactory())
    client = api_client_for(world.clerk_a.user)
    response = client.post(f"{detail(world.customer_a.pk)}tags/", {"tag": tag.pk}, format="json")
    assert response.status_code == 201
    assert CustomerTag.objects.get(customer=world.customer_a).staff_id == world.clerk_a.pk


def test_staff_cannot_tag_another_stores_customer(world: World) -> None:
    tag = TagFactory()
    client = api_client_for(world.clerk_a.user)
    response = client.post(f"{detail(world.customer_b.pk)}tags/", {"tag": tag.pk}, format="json")
    assert response.status_code == 404
    assert not CustomerTag.objects.exists()


def test_tag_change_needs_a_known_tag(api_client: APIClient, world: World) -> None:
    url = f"{detail(world.customer_a.pk)}tags/"
    assert api_client.post(url, {"tag": 424242}, format="json").status_code == 400
    assert api_client.delete(url).status_code == 400
    assert api_client.delete(f"{url}?tag=abc").status_code == 400


# --- The whole matrix: role x customer, on list, detail and orders ---------------------

VISIBLE = {
    "operator": {"customer_a", "customer_a2", "customer_b"},
    "integration": {"customer_a", "customer_a2", "customer_b"},
    "manager_a": {"customer_a", "customer_a2"},
    "clerk_a": {"customer_a"},
    "clerk_b": {"customer_b"},
}


def client_as(who: str, world: World, operator_user: Any, integration_user: Any) -> APIClient:
    users = {
        "operator": operator_user,
        "integration": integration_user,
        "manager_a": world.manager_a.user,
        "clerk_a": world.clerk_a.user,
        "clerk_b": world.clerk_b.user,
    }
    return api_client_for(users[who])


@pytest.mark.parametrize("who", list(VISIBLE))
def test_each_role_sees_exactly_its_customers_everywhere(
    who: str, world: World, operator_user: Any, integration_user: Any
) -> None:
    customers = {
        "customer_a": world.customer_a,
        "customer_a2": world.customer_a2,
        "customer_b": world.customer_b,
    }
    for key, customer in customers.items():
        OrderFactory(customer=customer, external_id=f"order-{key}")
    client = client_as(who, world, operator_user, integration_user)
    listed = {row["id"] for row in client.get(LIST).json()["results"]}
    assert listed == {customers[k].pk for k in VISIBLE[who]}
    for key, customer in customers.items():
        expected = 200 if key in VISIBLE[who] else 404
        assert client.get(detail(customer.pk)).status_code == expected, (who, key)
    orders = {row["external_id"] for row in client.get("/api/v1/orders/").json()["results"]}
    assert orders == {f"order-{k}" for k in VISIBLE[who]}
