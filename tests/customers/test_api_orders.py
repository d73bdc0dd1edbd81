"""REST API v1: orders (roles, one-row upsert, the all-or-nothing bulk import)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.test import override_settings
from rest_framework.test import APIClient

from customers.models import Customer, Order, OrderStatus
from tests.conftest import World, api_client_for
from tests.factories import CustomerFactory, OrderFactory

pytestmark = pytest.mark.django_db

LIST = "/api/v1/orders/"
BULK = "/api/v1/orders/bulk/"


def order_row(n: int, **overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "external_id": f"o-{n}",
        "customer_external_id": f"c-{n % 10}",
        "amount": f"{n}.50",
        "currency": "CNY",
        "paid_at": "2024-05-01T10:00:00+08:00",
        "product_role": "profit",
        "product_name": "Rose serum",
    }
    row.update(overrides)
    return row


@pytest.fixture
def ten_customers(db: Any) -> list[Any]:
    return [CustomerFactory(external_id=f"c-{i}") for i in range(10)]


# --- Who sees what ---------------------------------------------------------------------


@pytest.fixture
def orders(world: World) -> dict[str, Any]:
    return {
        "a": OrderFactory(customer=world.customer_a, external_id="oa"),
        "a2": OrderFactory(customer=world.customer_a2, external_id="oa2"),
        "b": OrderFactory(customer=world.customer_b, external_id="ob"),
    }


def ext_ids(response: Any) -> set[str]:
    return {row["external_id"] for row in response.json()["results"]}


def test_operator_sees_every_order(orders: dict[str, Order], operator_user: Any) -> None:
    assert ext_ids(api_client_for(operator_user).get(LIST)) == {"oa", "oa2", "ob"}


def test_manager_sees_their_stores_orders(orders: dict[str, Order], world: World) -> None:
    assert ext_ids(api_client_for(world.manager_a.user).get(LIST)) == {"oa", "oa2"}


def test_staff_sees_only_their_customers_orders(orders: dict[str, Order], world: World) -> None:
    client = api_client_for(world.clerk_a.user)
    assert ext_ids(client.get(LIST)) == {"oa"}
    assert client.get(f"{LIST}{orders['b'].pk}/").status_code == 404
    assert client.get(f"{LIST}{orders['a'].pk}/").status_code == 200


def test_orders_filter_by_customer_external_id(
    orders: dict[str, Order], api_client: APIClient, world: World
) -> None:
    response = api_client.get(LIST, {"customer_external_id": world.customer_b.external_id})
    assert ext_ids(response) == {"ob"}


# --- One order -------------------------------------------------------------------------


def test_order_upsert_is_idempotent(api_client: APIClient, world: World) -> None:
    body = {
        "external_id": "pos-1",
        "customer": world.customer_a.pk,
        "amount": "199.00",
        "paid_at": "2024-05-01T10:00:00+08:00",
    }
    created = api_client.post(LIST, body, format="json")
    assert created.status_code == 201
    assert created.json()["amount"] == "199.00"
    assert created.json()["customer_external_id"] == world.customer_a.external_id
    before = Order.objects.get(external_id="pos-1").updated_at
    replay = api_client.post(LIST, body, format="json")
    assert replay.status_code == 200
    assert Order.objects.get(external_id="pos-1").updated_at == before
    changed = api_client.post(LIST, {**body, "amount": 150}, format="json")
    assert changed.status_code == 200
    assert Order.objects.get(external_id="pos-1").amount == Decimal("150.00")
    assert Order.objects.count() == 1


def test_refunded_order_replay_keeps_its_refund_time(api_client: APIClient, world: World) -> None:
    body = {
        "external_id": "pos-r",
        "customer": world.customer_a.pk,
        "amount": "10",
        "paid_at": "2024-05-01T10:00:00Z",
        "status": "refunded",
    }
    api_client.post(LIST, body, format="json")
    first = Order.objects.get(external_id="pos-r")
    assert first.refunded_at is not None
    assert api_client.post(LIST, body, format="json").status_code == 200
    again = Order.objects.get(external_id="pos-r")
    assert (again.refunded_at, again.updated_at) == (first.refunded_at, first.updated_at)


def test_staff_may_record_an_order_for_their_customer(world: World) -> None:
    client = api_client_for(world.clerk_a.user)
    body = {
        "external_id": "m-1",
        "customer": world.customer_a.pk,
        "amount": "9.90",
        "paid_at": "2024-05-01T10:00:00+08:00",
        "staff": world.clerk_a.pk,
        "store": world.store_a.pk,
    }
    assert client.post(LIST, body, format="json").status_code == 201


def test_staff_cannot_record_an_order_for_another_stores_customer(world: World) -> None:
    client = api_client_for(world.clerk_a.user)
    body = {
        "external_id": "m-2",
        "customer": world.customer_b.pk,
        "amount": "9.90",
        "paid_at": "2024-05-01T10:00:00+08:00",
    }
    response = client.post(LIST, body, format="json")
    assert response.status_code == 400
    assert "customer" in response.json()["error"]["fields"]
    assert not Order.objects.exists()


def test_staff_cannot_overwrite_another_stores_order(world: World) -> None:
    OrderFactory(customer=world.customer_b, external_id="theirs", amount=Decimal("5"))
    client = api_client_for(world.clerk_a.user)
    body = {
        "external_id": "theirs",
        "customer": world.customer_a.pk,
        "amount": "1.00",
        "paid_at": "2024-05-01T10:00:00+08:00",
    }
    response = client.post(LIST, body, format="json")
    assert response.status_code == 400
    assert "external_id" in response.json()["error"]["fields"]
    order = Order.objects.get(external_id="theirs")
    assert (order.customer_id, order.amount) == (world.customer_b.pk, Decimal("5.00"))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("amount", "abc"),
        ("amount", "-1"),
        ("amount", "1.999"),
        ("amount", "1e400"),
        ("amount", "NaN"),
        ("amount", 10**20),
        ("currency", "RMBX"),
        ("currency", "12"),
        ("paid_at", "2024-05-01T10:00:00"),
        ("paid_at", "2024-02-30T10:00:00Z"),
        ("paid_at", "yesterday"),
        ("paid_at", "9999-12-31T23:59:59-12:00"),
        ("status", "lost"),
        ("product_role", "cheap"),
        ("customer", "abc"),
        ("customer", 10**30),
        ("customer", True),
        ("store", 10**30),
        ("staff", "x"),
    ],
)
def test_invalid_order_fields_are_400_naming_the_field(
    api_client: APIClient, world: World, field: str, value: Any
) -> None:
    body = {
        "external_id": "bad",
        "customer": world.customer_a.pk,
        "amount": "1.00",
        "paid_at": "2024-05-01T10:00:00+08:00",
        field: value,
    }
    response = api_client.post(LIST, body, format="json")
    assert response.status_code == 400, response.json()
    assert field in response.json()["error"]["fields"]
    assert not Order.objects.exists()


def test_order_needs_exactly_one_customer_reference(api_client: APIClient, world: World) -> None:
    base = {"external_id": "x", "amount": "1", "paid_at": "2024-05-01T10:00:00Z"}
    neither = api_client.post(LIST, base, format="json")
    both = api_client.post(
        LIST,
        {**base, "customer": world.customer_a.pk, "customer_external_id": "c"},
        format="json",
    )
    for response in (neither, both):
        assert response.status_code == 400
        assert "customer" in response.json()["error"]["fields"]


def test_paid_order_with_refund_time_is_refused(api_client: APIClient, world: World) -> None:
    body = {
        "external_id": "x",
        "customer": world.customer_a.pk,
        "amount": "1",
        "paid_at": "2024-05-01T10:00:00Z",
        "refunded_at": "2024-05-02T10:00:00Z",
    }
    response = api_client.post(LIST, body, format="json")
    assert "refunded_at" in response.json()["error"]["fields"]


# --- Bulk ------------------------------------------------------------------------------


def test_bulk_1000_orders_twice_leaves_exactly_1000(
    api_client: APIClient, ten_customers: list[Customer]
) -> None:
    rows = [order_row(n) for n in range(1000)]
    first = api_client.post(BULK, rows, format="json")
    assert first.status_code == 200, first.json()
    assert first.json()["created"] == 1000
    assert len(first.json()["ids"]) == 1000
    second = api_client.post(BULK, {"rows": rows}, format="json")
    assert second.status_code == 200
    assert {k: second.json()[k] for k in ("created", "updated", "unchanged")} == {
        "created": 0,
        "updated": 0,
        "unchanged": 1000,
    }
    assert second.json()["ids"] == first.json()["ids"]
    assert Order.objects.count() == 1000


def test_bulk_reports_updates(api_client: APIClient, ten_customers: list[Customer]) -> None:
    api_client.post(BULK, [order_row(1), order_row(2)], format="json")
    response = api_client.post(
        BULK, [order_row(1), order_row(2, status=OrderStatus.REFUNDED)], format="json"
    )
    assert (response.json()["unchanged"], response.json()["updated"]) == (1, 1)


def test_bulk_with_a_malformed_row_stores_nothing_and_names_it(
    api_client: APIClient, ten_customers: list[Customer]
) -> None:
    rows = [order_row(n) for n in range(1000)]
    rows[417]["amount"] = "abc"
    response = api_client.post(BULK, rows, format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert "1 of 1000 rows" in error["message"]
    assert [(r["row"], list(r["fields"])) for r in error["rows"]] == [(417, ["amount"])]
    assert Order.objects.count() == 0


def test_bulk_reports_every_bad_row_of_both_passes(
    api_client: APIClient, ten_customers: list[Customer]
) -> None:
    rows: list[Any] = [order_row(n) for n in range(5)]
    rows[1]["customer_external_id"] = "nobody"
    rows[3] = "not an object"
    rows[4]["paid_at"] = "2024-05-01"
    response = api_client.post(BULK, rows, format="json")
    assert response.status_code == 400
    by_row = {r["row"]: r["fields"] for r in response.json()["error"]["rows"]}
    assert set(by_row) == {1, 3, 4}
    assert "customer_external_id" in by_row[1]
    assert "non_field_errors" in by_row[3]
    assert "paid_at" in by_row[4]
    assert Order.objects.count() == 0


def test_bulk_validation_does_not_query_per_row(
    api_client: APIClient,
    ten_customers: list[Customer],
    django_assert_max_num_queries: Any,
) -> None:
    rows = [order_row(n, store=None, staff=None) for n in range(1000)]
    rows[999]["amount"] = "abc"
    with django_assert_max_num_queries(10):
        response = api_client.post(BULK, rows, format="json")
    assert response.status_code == 400


def test_bulk_import_runs_in_a_constant_number_of_queries(
    api_client: APIClient,
    ten_customers: list[Customer],
    django_assert_max_num_queries: Any,
) -> None:
    rows = [order_row(n) for n in range(1000)]
    # PostgreSQL inserts the 1,000 rows in one statement; SQLite's 999-parameter limit
    # makes Django split them into 14, hence the headroom. The funnel's refresh adds its
    # constant handful of statements (milestones and paid periods: funnel.services),
    # campaigns three (the running SOPs, the points credit and reversal).
    with django_assert_max_num_queries(40):
        response = api_client.post(BULK, rows, format="json")
    assert response.json()["created"] == 1000


@override_settings(API_BULK_MAX_ROWS=50)
def test_bulk_over_the_limit_is_400_naming_the_limit(
    api_client: APIClient, ten_customers: list[Customer]
) -> None:
    response = api_client.post(BULK, [order_row(n) for n in range(51)], format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert "50" in error["message"]
    assert "50" in error["fields"]["rows"][0]
    assert Order.objects.count() == 0


def test_default_limit_allows_at_least_1000_rows(settings: Any) -> None:
    assert settings.API_BULK_MAX_ROWS >= 1000


@pytest.mark.parametrize("body", [[], {}, {"rows": "x"}, "text", 5, {"rows": [None]}])
def test_bulk_with_no_usable_rows_is_400(api_client: APIClient, body: Any) -> None:
    response = api_client.post(BULK, body, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid"


def test_bulk_by_customer_id_and_staff_visibility(world: World) -> None:
    client = api_client_for(world.clerk_a.user)
    rows = [
        order_row(1, customer_external_id=None, customer=world.customer_a.pk),
        order_row(2, customer_external_id=None, customer=world.customer_b.pk),
    ]
    for row in rows:
        del row["customer_external_id"]
    response = client.post(BULK, rows, format="json")
    assert response.status_code == 400
    assert [r["row"] for r in response.json()["error"]["rows"]] == [1]
    assert Order.objects.count() == 0
    ok = client.post(BULK, rows[:1], format="json")
    assert ok.status_code == 200
    assert ok.json()["created"] == 1
