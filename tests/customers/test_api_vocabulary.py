"""REST API v1: tags, tag groups, staff and stores (read by all roles, written by
operators and API clients)."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from customers.models import Staff, Store, Tag, TagGroup, TagSource
from scrm.roles import Role
from tests.conftest import World, api_client_for
from tests.factories import StaffFactory, StoreFactory, TagFactory, TagGroupFactory

pytestmark = pytest.mark.django_db


# --- Tags ------------------------------------------------------------------------------


def test_everyone_with_a_role_reads_tags(world: World) -> None:
    TagFactory(name="VIP")
    response = api_client_for(world.clerk_b.user).get("/api/v1/tags/")
    assert [t["name"] for t in response.json()["results"]] == ["VIP"]


def test_tag_group_upsert_by_name(api_client: APIClient) -> None:
    created = api_client.post("/api/v1/tag-groups/", {"name": "Skin", "order": 5}, format="json")
    assert created.status_code == 201
    assert created.json()["source"] == "local"
    again = api_client.post("/api/v1/tag-groups/", {"name": "Skin", "order": 5}, format="json")
    assert again.status_code == 200
    assert TagGroup.objects.count() == 1


def test_tag_create_in_a_local_group(api_client: APIClient) -> None:
    group = TagGroupFactory()
    response = api_client.post("/api/v1/tags/", {"group": group.pk, "name": "Dry"}, format="json")
    assert response.status_code == 201
    assert response.json()["group_name"] == group.name
    detail = api_client.get(f"/api/v1/tag-groups/{group.pk}/").json()
    assert [t["name"] for t in detail["tags"]] == ["Dry"]


def test_tags_of_a_wecom_group_cannot_be_made_here(api_client: APIClient) -> None:
    group = TagGroupFactory(source=TagSource.WECOM, wecom_group_id="g1")
    response = api_client.post("/api/v1/tags/", {"group": group.pk, "name": "x"}, format="json")
    assert response.status_code == 400
    assert "group" in response.json()["error"]["fields"]
    assert not Tag.objects.exists()


def test_staff_cannot_create_tags(world: World) -> None:
    group = TagGroupFactory()
    client = api_client_for(world.clerk_a.user)
    response = client.post("/api/v1/tags/", {"group": group.pk, "name": "x"}, format="json")
    assert response.status_code == 403
    assert client.post("/api/v1/tag-groups/", {"name": "x"}, format="json").status_code == 403


def test_tags_filter_by_group(api_client: APIClient) -> None:
    a, b = TagGroupFactory(), TagGroupFactory()
    TagFactory(group=a, name="in a")
    TagFactory(group=b, name="in b")
    response = api_client.get("/api/v1/tags/", {"group": a.pk})
    assert [t["name"] for t in response.json()["results"]] == ["in a"]


# --- Stores ----------------------------------------------------------------------------


def test_store_upsert_by_code(api_client: APIClient) -> None:
    body = {"code": "SH01", "name": "Shanghai 1", "city": "上海"}
    assert api_client.post("/api/v1/stores/", body, format="json").status_code == 201
    before = Store.objects.get(code="SH01").updated_at
    assert api_client.post("/api/v1/stores/", body, format="json").status_code == 200
    assert Store.objects.get(code="SH01").updated_at == before
    renamed = api_client.post("/api/v1/stores/", {**body, "name": "SH One"}, format="json")
    assert renamed.json()["name"] == "SH One"
    assert Store.objects.count() == 1


def test_store_code_change_must_stay_unique(api_client: APIClient) -> None:
    StoreFactory(code="TAKEN")
    store = StoreFactory(code="MINE")
    response = api_client.patch(f"/api/v1/stores/{store.pk}/", {"code": "TAKEN"}, format="json")
    assert response.status_code == 400
    assert "code" in response.json()["error"]["fields"]


def test_store_delete_deactivates(api_client: APIClient) -> None:
    store = StoreFactory()
    assert api_client.delete(f"/api/v1/stores/{store.pk}/").status_code == 204
    store.refresh_from_db()
    assert store.is_active is False


def test_staff_sees_only_their_store(world: World) -> None:
    client = api_client_for(world.clerk_a.user)
    response = client.get("/api/v1/stores/")
    assert [s["code"] for s in response.json()["results"]] == ["A"]
    assert client.get(f"/api/v1/stores/{world.store_b.pk}/").status_code == 404


def test_manager_cannot_write_stores(world: World) -> None:
    client = api_client_for(world.manager_a.user)
    url = f"/api/v1/stores/{world.store_a.pk}/"
    assert client.patch(url, {"name": "Mine now"}, format="json").status_code == 403
    assert client.delete(url).status_code == 403
    assert client.post("/api/v1/stores/", {"code": "X", "name": "X"}).status_code == 403


# --- Staff -----------------------------------------------------------------------------


def test_staff_list_is_scoped_to_the_store(world: World) -> None:
    response = api_client_for(world.clerk_a.user).get("/api/v1/staff/")
    assert {s["name"] for s in response.json()["results"]} == {"Manager A", "Clerk A", "Clerk A2"}


def test_staff_upsert_by_wecom_userid(api_client: APIClient, world: World) -> None:
    body = {"wecom_userid": "zhangsan", "name": "Zhang", "store": world.store_a.pk}
    created = api_client.post("/api/v1/staff/", body, format="json")
    assert created.status_code == 201
    assert created.json()["role"] == Role.STAFF
    again = api_client.post("/api/v1/staff/", {**body, "name": "Zhang San"}, format="json")
    assert again.status_code == 200
    assert Staff.objects.get(wecom_userid="zhangsan").name == "Zhang San"


def test_staff_without_wecom_id_is_created(api_client: APIClient) -> None:
    response = api_client.post("/api/v1/staff/", {"name": "Temp", "wecom_userid": ""})
    assert response.status_code == 201
    assert Staff.objects.get(name="Temp").wecom_userid is None


def test_manager_needs_a_store(api_client: APIClient) -> None:
    response = api_client.post("/api/v1/staff/", {"name": "M", "role": "manager"}, format="json")
    assert response.status_code == 400
    assert "store" in response.json()["error"]["fields"]


def test_staff_role_cannot_be_integration(api_client: APIClient) -> None:
    response = api_client.post("/api/v1/staff/", {"name": "I", "role": "integration"})
    assert response.status_code == 400
    assert "role" in response.json()["error"]["fields"]


def test_staff_wecom_userid_stays_unique(api_client: APIClient) -> None:
    StaffFactory(wecom_userid="taken")
    staff = StaffFactory(wecom_userid="mine")
    response = api_client.patch(
        f"/api/v1/staff/{staff.pk}/", {"wecom_userid": "taken"}, format="json"
    )
    assert response.status_code == 400
    assert "wecom_userid" in response.json()["error"]["fields"]


def test_staff_delete_deactivates_and_store_staff_cannot(world: World, api_client: Any) -> None:
    url = f"/api/v1/staff/{world.clerk_a2.pk}/"
    assert api_client_for(world.clerk_a.user).delete(url).status_code == 403
    assert api_client.delete(url).status_code == 204
    world.clerk_a2.refresh_from_db()
    assert world.clerk_a2.is_active is False
