"""Contents, campaigns, coupons and points in the API: CRUD, validation 400s with field
messages (never 500), archive instead of delete, roles, and row-level visibility."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from campaigns.models import Content, Coupon, PointsEntry, PointsReason
from tests.campaigns.factories import (
    CampaignFactory,
    ContentFactory,
    CouponBatchFactory,
    SopStepFactory,
)
from tests.conftest import World, api_client_for
from tests.factories import OrderFactory

pytestmark = pytest.mark.django_db


def test_content_crud_and_archive(operator_user: Any) -> None:
    client = api_client_for(operator_user)
    created = client.post(
        "/api/v1/contents/",
        {
            "name": "Guide",
            "text": "Hi {name}",
            "attachments": [{"msgtype": "link", "link": {"title": "Go", "url": "https://x.cn"}}],
        },
        format="json",
    )
    assert created.status_code == 201, created.json()
    body = created.json()
    assert body["kind"] == "link"
    content_id = body["id"]
    patched = client.patch(f"/api/v1/contents/{content_id}/", {"text": "Hello"}, format="json")
    assert patched.status_code == 200
    assert patched.json()["text"] == "Hello"
    assert patched.json()["attachments"]  # PATCH keeps what it leaves out
    SopStepFactory(content=Content.objects.get(pk=content_id))
    assert client.get(f"/api/v1/contents/{content_id}/").json()["used_by"] == 1
    assert client.delete(f"/api/v1/contents/{content_id}/").status_code == 204
    content = Content.objects.get(pk=content_id)  # archived, still there for its steps
    assert content.is_archived
    assert [c["id"] for c in client.get("/api/v1/contents/?archived=false").json()["results"]] == []


def test_content_validation_is_a_400_per_field(operator_user: Any) -> None:
    client = api_client_for(operator_user)
    response = client.post(
        "/api/v1/contents/",
        {"name": "Bad", "text": "{coupon}", "attachments": [{"msgtype": "nope"}] * 10},
        format="json",
    )
    assert response.status_code == 400
    fields = response.json()["error"]["fields"]
    assert "attachments" in fields
    assert "coupon_batch" in fields
    huge = client.post("/api/v1/contents/", {"name": "Big", "text": "字" * 2000}, format="json")
    assert huge.status_code == 400
    assert "text" in huge.json()["error"]["fields"]


def test_staff_read_content_but_cannot_write(world: World) -> None:
    content = ContentFactory()
    client = api_client_for(world.clerk_a.user)
    assert client.get(f"/api/v1/contents/{content.pk}/").status_code == 200
    assert client.post("/api/v1/contents/", {"name": "x", "text": "y"}).status_code == 403
    assert client.delete(f"/api/v1/contents/{content.pk}/").status_code == 403


def test_campaign_crud_and_report(operator_user: Any, api_client: Any) -> None:
    created = api_client.post(
        "/api/v1/campaigns/", {"name": "Repurchase", "goal": "repurchase"}, format="json"
    )
    assert created.status_code == 201, created.json()
    campaign_id = created.json()["id"]
    assert created.json()["holdout_percent"] == 10
    bad = api_client.patch(
        f"/api/v1/campaigns/{campaign_id}/", {"holdout_percent": 80}, format="json"
    )
    assert bad.status_code == 400
    assert "holdout_percent" in bad.json()["error"]["fields"]
    report = api_client.get(f"/api/v1/campaigns/{campaign_id}/report/")
    assert report.status_code == 200
    assert report.json()["members"] == 0
    assert report.json()["lift"] is None


def test_coupon_redeem_through_a_visible_order(world: World, api_client: Any) -> None:
    batch = CouponBatchFactory(min_spend=Decimal("50"))
    now = timezone.now()
    coupon = Coupon.objects.create(
        batch=batch,
        customer=world.customer_a,
        code="ABCDEF1234",
        issued_at=now - timedelta(days=1),
        expires_at=now + timedelta(days=10),
    )
    small = OrderFactory(customer=world.customer_a, amount=Decimal("10"), paid_at=now)
    refused = api_client.post(
        "/api/v1/coupons/redeem/", {"code": "ABCDEF1234", "order": small.pk}, format="json"
    )
    assert refused.status_code == 400
    assert "order" in refused.json()["error"]["fields"]
    order = OrderFactory(customer=world.customer_a, amount=Decimal("80"), paid_at=now)
    ok = api_client.post(
        "/api/v1/coupons/redeem/", {"code": "abcdef1234", "order": order.pk}, format="json"
    )
    assert ok.status_code == 200, ok.json()
    coupon.refresh_from_db()
    assert coupon.order_id == order.pk
    # Store B's clerk neither sees the coupon nor may name store A's order.
    clerk_b = api_client_for(world.clerk_b.user)
    assert clerk_b.get("/api/v1/coupons/").json()["results"] == []
    other = clerk_b.post(
        "/api/v1/coupons/redeem/", {"code": "ABCDEF1234", "order": order.pk}, format="json"
    )
    assert other.status_code == 400
    assert "order" in other.json()["error"]["fields"]


def test_points_balance_and_spend(world: World) -> None:
    PointsEntry.objects.create(
        customer=world.customer_a, delta=120, reason=PointsReason.ORDER, idempotency_key="o:1"
    )
    clerk = api_client_for(world.clerk_a.user)
    url = f"/api/v1/customers/{world.customer_a.pk}/points/"
    assert clerk.get(url).json()["balance"] == 120
    spend = {"points": 100, "note": "gift", "idempotency_key": "till-7"}
    first = clerk.post(url + "spend/", spend, format="json")
    assert first.status_code == 200, first.json()
    assert first.json()["balance"] == 20
    # Replayed: spent once.
    assert clerk.post(url + "spend/", spend, format="json").json()["balance"] == 20
    short = clerk.post(url + "spend/", {**spend, "idempotency_key": "till-8"}, format="json")
    assert short.status_code == 400
    assert "points" in short.json()["error"]["fields"]
    clerk_b = api_client_for(world.clerk_b.user)
    assert clerk_b.get(url).status_code == 404
    assert clerk_b.post(url + "spend/", spend, format="json").status_code == 404


def test_campaign_detail_of_an_unknown_id_is_404(api_client: Any) -> None:
    CampaignFactory()
    assert api_client.get("/api/v1/campaigns/424242/").status_code == 404
    assert api_client.get("/api/v1/campaigns/abc/report/").status_code == 404
