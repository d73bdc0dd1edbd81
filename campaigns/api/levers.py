"""Levers: coupon batches and coupons, and each customer's member points.

* ``coupon-batches/``: read by every role (a clerk tells a customer what a coupon is
  worth); created and edited by operators and API clients (no delete: issued coupons
  point at their batch; set ``is_active`` false to stop issuing).
* ``coupons/``: the coupons of the customers the user may see; ``coupons/redeem/`` takes
  a code and an order id (the till or the mall after payment) and redeems it through
  ``levers.coupon_redeem`` (400 naming the field when unknown, expired, used, another
  customer's or below the minimum spend).
* ``customers/{id}/points/``: balance and latest ledger lines; ``.../points/spend/``.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.urls import path
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from campaigns.filters import CouponBatchFilter, CouponFilter
from campaigns.models import Coupon, CouponBatch, PointsEntry
from campaigns.selectors.touchpoints import (
    coupon_batch_get_for_user,
    coupon_batch_visible_qs,
    coupon_visible_qs,
    points_ledger,
)
from campaigns.services import levers
from customers.models import Order
from customers.selectors import customer_get_for_user, order_visible_qs
from scrm.api import (
    API_PARSERS,
    HasRole,
    ReadOnlyUnlessSeesEverything,
    VisiblePrimaryKeyRelatedField,
)
from scrm.api_views import ScrmAutoSchema, ScrmViewSet

#: Ledger lines shown with the balance (newest first).
LEDGER_LINES = 100


class CouponBatchSerializer(serializers.ModelSerializer[CouponBatch]):
    class Meta:
        model = CouponBatch
        fields = ["id", *levers.COUPON_BATCH_FIELDS, "created_at", "updated_at"]
        read_only_fields = ["id", "created_at", "updated_at"]


@extend_schema(tags=["coupons"])
class CouponBatchViewSet(mixins.ListModelMixin, ScrmViewSet[CouponBatch]):
    """Kinds of coupon; codes are issued per customer by SOP steps with {coupon}."""

    filterset_class = CouponBatchFilter
    permission_classes = [ReadOnlyUnlessSeesEverything]
    serializer_class = CouponBatchSerializer
    cursor_ordering = ("-id",)

    def get_queryset(self) -> QuerySet[CouponBatch]:
        return coupon_batch_visible_qs(self.request.user)

    def get_object(self) -> CouponBatch:
        return coupon_batch_get_for_user(self.request.user, self.kwargs.get("pk"))

    def retrieve(self, request: Request, pk: str | None = None) -> Response:
        return Response(CouponBatchSerializer(self.get_object()).data)

    @extend_schema(request=CouponBatchSerializer, responses={201: CouponBatchSerializer})
    def create(self, request: Request) -> Response:
        serializer = CouponBatchSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        batch = levers.coupon_batch_create(data=serializer.validated_data)
        return Response(CouponBatchSerializer(batch).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=CouponBatchSerializer, responses=CouponBatchSerializer)
    def partial_update(self, request: Request, pk: str | None = None) -> Response:
        batch = self.get_object()
        serializer = CouponBatchSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        levers.coupon_batch_update(batch=batch, data=serializer.validated_data)
        return Response(CouponBatchSerializer(batch).data)


class CouponSerializer(serializers.ModelSerializer[Coupon]):
    batch_name = serializers.CharField(source="batch.name", read_only=True)

    class Meta:
        model = Coupon
        fields = [
            "id",
            "code",
            "batch",
            "batch_name",
            "customer",
            "touchpoint",
            "issued_at",
            "expires_at",
            "redeemed_at",
            "order",
        ]
        read_only_fields = fields


class RedeemSerializer(serializers.Serializer):
    code = serializers.CharField(max_length=64)
    order = VisiblePrimaryKeyRelatedField(
        visible=order_visible_qs,
        queryset=Order.objects.all(),
        help_text="The paid order (its id) that uses the coupon.",
    )


@extend_schema(tags=["coupons"])
class CouponViewSet(mixins.ListModelMixin, ScrmViewSet[Coupon]):
    """Coupon codes issued to the customers the user may see."""

    filterset_class = CouponFilter
    permission_classes = [HasRole]
    serializer_class = CouponSerializer
    cursor_ordering = ("-id",)

    def get_queryset(self) -> QuerySet[Coupon]:
        return coupon_visible_qs(self.request.user)

    @extend_schema(request=RedeemSerializer, responses=CouponSerializer)
    @action(detail=False, methods=["post"], filter_backends=[], pagination_class=None)
    def redeem(self, request: Request) -> Response:
        serializer = RedeemSerializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        coupon = levers.coupon_redeem(
            code=serializer.validated_data["code"], order=serializer.validated_data["order"]
        )
        return Response(CouponSerializer(coupon).data)


# --- Points ----------------------------------------------------------------------------


class PointsEntrySerializer(serializers.ModelSerializer[PointsEntry]):
    class Meta:
        model = PointsEntry
        fields = ["id", "delta", "reason", "order", "note", "created_at"]
        read_only_fields = fields


class PointsSerializer(serializers.Serializer):
    customer = serializers.IntegerField()
    balance = serializers.IntegerField()
    entries = PointsEntrySerializer(many=True, help_text=f"The latest {LEDGER_LINES} lines.")


class SpendSerializer(serializers.Serializer):
    points = serializers.IntegerField(min_value=1, max_value=10**9)
    note = serializers.CharField(max_length=255, required=False, allow_blank=True, default="")
    idempotency_key = serializers.CharField(
        max_length=150,
        help_text="Your key for this spend (e.g. the till's receipt number): a retried "
        "request spends once.",
    )


class _PointsView(APIView):
    schema = ScrmAutoSchema()
    parser_classes = API_PARSERS
    permission_classes = [HasRole]

    def _body(self, request: Request, customer_id: int) -> dict[str, Any]:
        customer = customer_get_for_user(request.user, customer_id)
        balance, entries = points_ledger(customer, limit=LEDGER_LINES)
        return {
            "customer": customer.pk,
            "balance": balance,
            "entries": PointsEntrySerializer(entries, many=True).data,
        }


@extend_schema(tags=["points"])
class PointsView(_PointsView):
    """A customer's member points: balance and latest ledger lines."""

    @extend_schema(responses=PointsSerializer)
    def get(self, request: Request, customer_id: int) -> Response:
        return Response(self._body(request, customer_id))


@extend_schema(tags=["points"])
class PointsSpendView(_PointsView):
    """Spend points of a customer the user may see (400 when the balance is short)."""

    @extend_schema(request=SpendSerializer, responses=PointsSerializer)
    def post(self, request: Request, customer_id: int) -> Response:
        customer = customer_get_for_user(request.user, customer_id)
        serializer = SpendSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        levers.points_spend(
            customer=customer,
            points=data["points"],
            note=data["note"],
            # Namespaced, so a caller's key cannot collide with the ledger's own
            # ("order:12") and silently answer with another line.
            idempotency_key=f"spend:{customer.pk}:{data['idempotency_key']}",
        )
        return Response(self._body(request, customer.pk))


urlpatterns = [
    path("customers/<int:customer_id>/points/", PointsView.as_view(), name="customer-points"),
    path(
        "customers/<int:customer_id>/points/spend/",
        PointsSpendView.as_view(),
        name="customer-points-spend",
    ),
]
