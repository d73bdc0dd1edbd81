"""Coupon batches through the API: operators create and edit them, staff only read."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from campaigns.models import CouponBatch
from campaigns.services.levers import coupon_issue
from tests.conftest import World, api_client_for

pytestmark = pytest.mark.django_db


def test_operator_creates_and_edits_a_coupon_batch(operator_user: Any) -> None:
    client = api_client_for(operator_user)
    created = client.post(
        "/api/v1/coupon-batches/",
        {"name": "20 off", "value": "20.00", "min_spend": "100.00", "total_limit": 500},
        format="json",
    )
    assert created.status_code == 201, created.content
    batch_id = created.json()["id"]
    changed = client.patch(
        f"/api/v1/coupon-batches/{batch_id}/", {"is_active": False}, format="json"
    )
    assert changed.status_code == 200, changed.content
    batch = CouponBatch.objects.get(pk=batch_id)
    assert (batch.name, batch.total_limit, batch.is_active) == ("20 off", 500, False)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "", "value": "10"}, "name"),
        ({"name": "x", "value": "0"}, "value"),
        ({"name": "x", "value": "100", "discount_kind": "percent"}, "value"),
        ({"name": "x", "value": "10", "valid_days": 0}, "valid_days"),
        ({"name": "x", "value": "10", "total_limit": 0}, "total_limit"),
    ],
)
def test_bad_coupon_batch_is_a_400_naming_the_field(
    operator_user: Any, body: dict[str, Any], field: str
) -> None:
    response = api_client_for(operator_user).post("/api/v1/coupon-batches/", body, format="json")
    assert response.status_code == 400
    assert field in str(response.json())
    assert not CouponBatch.objects.exists()


def test_staff_read_coupon_batches_but_cannot_write(world: World) -> None:
    client = api_client_for(world.clerk_a.user)
    assert client.get("/api/v1/coupon-batches/").status_code == 200
    response = client.post("/api/v1/coupon-batches/", {"name": "x", "value": "5"}, format="json")
    assert response.status_code == 403


# --- the dashboard's coupon pages --------------------------------------------------------


def _dashboard(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_operator_creates_a_batch_on_the_dashboard_and_sees_its_counts(
    operator_user: Any, world: World, django_assert_max_num_queries: Any
) -> None:
    client = _dashboard(operator_user)
    response = client.post(
        "/campaigns/coupons/new/",
        {
            "name": "满 99 减 20",
            "discount_kind": "amount",
            "value": "20",
            "min_spend": "99",
            "valid_days": "30",
            "is_active": "on",
        },
    )
    assert response.status_code == 302
    batch = CouponBatch.objects.get()
    for customer in (world.customer_a, world.customer_b):
        coupon_issue(batch=batch, customer_id=customer.pk)
    with django_assert_max_num_queries(8):
        page = client.get("/campaigns/coupons/")
    row = next(b for b in page.context["page"].rows if b.pk == batch.pk)
    assert (row.issued_count, row.redeemed_count) == (2, 0)


def test_bad_batch_on_the_dashboard_shows_the_field_error(operator_user: Any) -> None:
    response = _dashboard(operator_user).post(
        "/campaigns/coupons/new/",
        {"name": "x", "discount_kind": "percent", "value": "120", "valid_days": "30"},
    )
    assert response.status_code == 400
    assert response.context["form"].errors["value"]
    assert not CouponBatch.objects.exists()


def test_staff_see_the_coupon_list_but_cannot_edit(world: World) -> None:
    client = _dashboard(world.clerk_a.user)
    assert client.get("/campaigns/coupons/").status_code == 200
    assert client.get("/campaigns/coupons/new/").status_code == 403
