"""Orders: list, detail, upsert by external_id, and the bulk import."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers
from rest_framework.request import Request

from customers import services
from customers.api.bulk import (
    BulkWriteMixin,
    CustomerRefSerializer,
    RowErrors,
    bulk_write_schema,
    resolve_customers,
    resolve_ids,
    validate_rows,
)
from customers.filters import OrderFilter
from customers.models import Order, OrderStatus, ProductRole
from customers.selectors import (
    order_customer_ids_by_external_id,
    order_get_for_user,
    order_visible_qs,
    staff_visible_qs,
    store_visible_qs,
)
from scrm.api import AwareDateTimeField, id_field
from scrm.api_views import ScrmViewSet
from scrm.roles import sees_everything

_CURRENCY = re.compile(r"^[A-Za-z]{3}$")


class OrderSerializer(serializers.ModelSerializer[Order]):
    customer_external_id = serializers.CharField(
        source="customer.external_id", read_only=True, allow_null=True
    )

    class Meta:
        model = Order
        fields = [
            "id",
            "external_id",
            "customer",
            "customer_external_id",
            "amount",
            "currency",
            "paid_at",
            "status",
            "refunded_at",
            "product_role",
            "product_name",
            "store",
            "staff",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class OrderRowSerializer(CustomerRefSerializer):
    """One order as an integration sends it. It is the whole record: a field left out
    takes its default, also when the order already exists."""

    external_id = serializers.CharField(max_length=128, help_text="Your key for the order.")
    amount = serializers.DecimalField(
        max_digits=12,
        decimal_places=2,
        min_value=Decimal("0"),
        help_text='A decimal string such as "199.00" (at most 2 decimals, not negative).',
    )
    currency = serializers.CharField(default="CNY", help_text="ISO 4217, 3 letters.")
    paid_at = AwareDateTimeField(help_text="ISO-8601 with an offset.")
    status = serializers.ChoiceField(choices=OrderStatus.choices, default=OrderStatus.PAID)
    refunded_at = AwareDateTimeField(
        default=None, allow_null=True, help_text="For refunded orders; defaults to now."
    )
    product_role = serializers.ChoiceField(
        choices=ProductRole.choices, allow_blank=True, default=""
    )
    product_name = serializers.CharField(max_length=255, allow_blank=True, default="")
    store = id_field(default=None, allow_null=True, help_text="Store id.")
    staff = id_field(default=None, allow_null=True, help_text="Staff id (who sold it).")

    def validate_currency(self, value: str) -> str:
        if not _CURRENCY.match(value):
            raise serializers.ValidationError("Use a 3-letter ISO 4217 code such as CNY.")
        return value.upper()

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = super().validate(attrs)
        if attrs["status"] == OrderStatus.PAID and attrs.get("refunded_at") is not None:
            raise serializers.ValidationError(
                {"refunded_at": ["Only a refunded order has a refund time."]}
            )
        return attrs


def prepare_orders(
    request: Request, rows: list[Any]
) -> tuple[list[services.OrderInput], RowErrors]:
    """Validate rows and resolve their references in a constant number of queries."""
    user = request.user
    validated, errors = validate_rows(OrderRowSerializer, rows, {"request": request})
    # A store clerk may not rewrite (or move) an order of a customer they cannot see.
    owners = (
        {}
        if sees_everything(user)
        else order_customer_ids_by_external_id(r["external_id"] for r in validated if r)
    )
    visible = resolve_customers(user, validated, errors, also_check=owners.values())
    resolve_ids(validated, "store", store_visible_qs(user), errors)
    resolve_ids(validated, "staff", staff_visible_qs(user), errors)
    inputs: list[services.OrderInput] = []
    for index, row in enumerate(validated):
        if row is None or index in errors:
            continue
        owner = owners.get(row["external_id"])
        if owner is not None and owner not in visible:
            errors.add(index, "external_id", "This external_id is another customer's order.")
            continue
        inputs.append(
            services.OrderInput(
                external_id=row["external_id"],
                customer_id=row["customer_id"],
                amount=row["amount"],
                paid_at=row["paid_at"],
                currency=row["currency"],
                status=row["status"],
                refunded_at=row["refunded_at"],
                product_role=row["product_role"],
                product_name=row["product_name"],
                store_id=row["store"],
                staff_id=row["staff"],
            )
        )
    return inputs, errors


@bulk_write_schema(
    row=OrderRowSerializer,
    read=OrderSerializer,
    created="Created.",
    replayed="Updated, or unchanged (a replay).",
    create_text="Upsert one order by external_id; replaying it changes nothing.",
    bulk_text=(
        "Upsert up to API_BULK_MAX_ROWS orders (default 5,000) in one transaction: a "
        'JSON list of rows, or {"rows": [...]}. All or nothing: if any row is invalid '
        "the answer is 400 with error.rows = [{row: 0-based index, fields: {...}}] "
        "and nothing is stored. Replaying a body changes nothing."
    ),
)
@extend_schema(tags=["orders"])
class OrderViewSet(BulkWriteMixin, mixins.ListModelMixin, ScrmViewSet[Order]):
    """Orders of the customers the caller may see. Store staff may record orders for
    their own customers; operators and API clients for anyone."""

    filterset_class = OrderFilter
    cursor_ordering = ("-paid_at", "-id")
    row_serializer_class = OrderRowSerializer
    read_serializer_class = OrderSerializer
    prepare_rows = staticmethod(prepare_orders)
    write_rows = staticmethod(services.orders_upsert)
    get_for_user = staticmethod(order_get_for_user)

    def get_queryset(self) -> QuerySet[Order]:
        return order_visible_qs(self.request.user).select_related("customer")
