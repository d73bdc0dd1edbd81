"""REST API v1: activities (the timeline) and notes."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from customers.models import Activity, ActivityKind, Customer, Note
from tests.conftest import World, api_client_for
from tests.factories import ActivityFactory, CustomerFactory, NoteFactory

pytestmark = pytest.mark.django_db

LIST = "/api/v1/activities/"
BULK = "/api/v1/activities/bulk/"
NOTES = "/api/v1/notes/"


def activity_row(n: int, **overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "customer_external_id": f"c-{n % 10}",
        "kind": ActivityKind.COUPON_CLAIMED,
        "occurred_at": f"2024-05-01T10:{n % 60:02d}:00+08:00",
        "payload": {"coupon": f"C{n}"},
        "idempotency_key": f"mall-coupon-{n}",
    }
    row.update(overrides)
    return row


@pytest.fixture
def ten_customers(db: Any) -> list[Any]:
    return [CustomerFactory(external_id=f"c-{i}") for i in range(10)]


# --- Activities ------------------------------------------------------------------------


def test_staff_sees_only_their_customers_activities(world: World) -> None:
    ActivityFactory(customer=world.customer_a, idempotency_key="a")
    theirs = ActivityFactory(customer=world.customer_b, idempotency_key="b")
    client = api_client_for(world.clerk_a.user)
    response = client.get(LIST)
    assert [r["idempotency_key"] for r in response.json()["results"]] == ["a"]
    assert client.get(f"{LIST}{theirs.pk}/").status_code == 404


def test_activities_filter_by_kind_and_customer(api_client: APIClient, world: World) -> None:
    ActivityFactory(customer=world.customer_a, kind="store_visit")
    ActivityFactory(customer=world.customer_a, kind="page_viewed")
    ActivityFactory(customer=world.customer_b, kind="store_visit")
    response = api_client.get(LIST, {"kind": "store_visit", "customer": world.customer_a.pk})
    assert len(response.json()["results"]) == 1


def test_record_one_activity_then_replay(api_client: APIClient, world: World) -> None:
    body = {
        "customer": world.customer_a.pk,
        "kind": "member_joined",
        "occurred_at": "2024-05-01T10:00:00+08:00",
        "payload": {"level": "gold"},
    }
    first = api_client.post(LIST, body, format="json")
    assert first.status_code == 201
    assert first.json()["source"] == "api"
    replay = api_client.post(LIST, body, format="json")
    assert replay.status_code == 200
    assert replay.json()["id"] == first.json()["id"]
    # The same instant written with another offset is the same event.
    same = api_client.post(LIST, {**body, "occurred_at": "2024-05-01T02:00:00Z"}, format="json")
    assert same.status_code == 200
    assert Activity.objects.count() == 1


def test_client_keys_are_namespaced(api_client: APIClient, world: World) -> None:
    body = {
        "customer": world.customer_a.pk,
        "kind": "x",
        "occurred_at": "2024-05-01T10:00:00Z",
        "idempotency_key": "note:1",
    }
    response = api_client.post(LIST, body, format="json")
    assert response.json()["idempotency_key"] == "api:note:1"


def test_activity_key_of_another_customer_is_refused(api_client: APIClient, world: World) -> None:
    body = {
        "customer": world.customer_a.pk,
        "kind": "x",
        "occurred_at": "2024-05-01T10:00:00Z",
        "idempotency_key": "k1",
    }
    assert api_client.post(LIST, body, format="json").status_code == 201
    other = api_client.post(LIST, {**body, "customer": world.customer_b.pk}, format="json")
    assert other.status_code == 400
    assert "idempotency_key" in other.json()["error"]["fields"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("occurred_at", "2024-05-01 10:00"),
        ("kind", ""),
        ("kind", "k" * 33),
        ("payload", ["not", "an", "object"]),
        ("payload", {"big": "x" * 40_000}),
        ("source", "fax"),
        ("staff", 10**40),
        ("idempotency_key", "k" * 200),
    ],
)
def test_invalid_activity_fields_are_400(
    api_client: APIClient, world: World, field: str, value: Any
) -> None:
    body = {"customer": world.customer_a.pk, "kind": "x", "occurred_at": "2024-05-01T10:00:00Z"}
    response = api_client.post(LIST, {**body, field: value}, format="json")
    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]


def test_staff_cannot_record_for_another_stores_customer(world: World) -> None:
    client = api_client_for(world.clerk_a.user)
    body = {"customer": world.customer_b.pk, "kind": "x", "occurred_at": "2024-05-01T10:00:00Z"}
    assert client.post(LIST, body, format="json").status_code == 400
    body["customer"] = world.customer_a.pk
    assert client.post(LIST, body, format="json").status_code == 201


def test_activities_bulk_replay_is_idempotent(
    api_client: APIClient, ten_customers: list[Customer]
) -> None:
    rows = [activity_row(n) for n in range(1000)]
    rows += [activity_row(n, idempotency_key="") for n in range(1000, 1200)]
    first = api_client.post(BULK, rows, format="json")
    assert first.status_code == 200, first.json()
    assert first.json()["created"] == 1200
    second = api_client.post(BULK, {"rows": rows}, format="json")
    assert second.json()["unchanged"] == 1200
    assert second.json()["created"] == 0
    assert second.json()["ids"] == first.json()["ids"]
    assert Activity.objects.count() == 1200


def test_activities_bulk_is_all_or_nothing(
    api_client: APIClient, ten_customers: list[Customer]
) -> None:
    rows = [activity_row(n) for n in range(20)]
    rows[7]["occurred_at"] = "not a time"
    rows[9]["customer_external_id"] = "unknown"
    response = api_client.post(BULK, rows, format="json")
    assert response.status_code == 400
    assert [r["row"] for r in response.json()["error"]["rows"]] == [7, 9]
    assert Activity.objects.count() == 0


def test_activities_bulk_refuses_one_key_for_two_customers(
    api_client: APIClient, ten_customers: list[Customer]
) -> None:
    rows = [activity_row(1, idempotency_key="same"), activity_row(2, idempotency_key="same")]
    response = api_client.post(BULK, rows, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["rows"][0]["row"] == 1


def test_activities_bulk_validation_query_budget(
    api_client: APIClient,
    ten_customers: list[Customer],
    django_assert_max_num_queries: Any,
) -> None:
    rows = [activity_row(n) for n in range(1000)]
    rows[500]["kind"] = ""
    with django_assert_max_num_queries(10):
        assert api_client.post(BULK, rows, format="json").status_code == 400


# --- Notes -----------------------------------------------------------------------------


def test_notes_list_filters_by_customer_and_respects_roles(world: World) -> None:
    NoteFactory(customer=world.customer_a, body="mine")
    NoteFactory(customer=world.customer_b, body="theirs")
    client = api_client_for(world.clerk_a.user)
    assert [n["body"] for n in client.get(NOTES).json()["results"]] == ["mine"]
    assert client.get(NOTES, {"customer": world.customer_b.pk}).json()["results"] == []


def test_staff_adds_a_note_to_their_customer(world: World) -> None:
    client = api_client_for(world.clerk_a.user)
    response = client.post(
        NOTES, {"customer": world.customer_a.pk, "body": " Likes roses "}, format="json"
    )
    assert response.status_code == 201
    assert response.json()["body"] == "Likes roses"
    assert response.json()["author_name"] == "clerk_a"
    assert Activity.objects.filter(customer=world.customer_a, kind="note_added").exists()


def test_staff_cannot_add_a_note_to_another_stores_customer(world: World) -> None:
    client = api_client_for(world.clerk_a.user)
    response = client.post(NOTES, {"customer": world.customer_b.pk, "body": "x"}, format="json")
    assert response.status_code == 400
    assert "customer" in response.json()["error"]["fields"]
    assert not Note.objects.exists()


def test_blank_note_is_refused(api_client: APIClient, world: World) -> None:
    response = api_client.post(NOTES, {"customer": world.customer_a.pk, "body": "   "})
    assert response.status_code == 400
    assert "body" in response.json()["error"]["fields"]


def test_note_detail_is_scoped(world: World) -> None:
    theirs = NoteFactory(customer=world.customer_b)
    assert api_client_for(world.clerk_a.user).get(f"{NOTES}{theirs.pk}/").status_code == 404
    assert api_client_for(world.clerk_b.user).get(f"{NOTES}{theirs.pk}/").status_code == 200
