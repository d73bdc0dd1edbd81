"""Activities (the customer timeline): list, detail, record, and the bulk import."""

from __future__ import annotations

import json
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
from customers.filters import ActivityFilter
from customers.models import Activity, ActivitySource
from customers.selectors import (
    activity_customer_ids_by_key,
    activity_get_for_user,
    activity_visible_qs,
    staff_visible_qs,
)
from scrm.api import AwareDateTimeField, id_field
from scrm.api_views import ScrmViewSet

#: Keys an API client chooses are stored under this prefix, so they can never collide
#: with the keys the system derives itself ("note:12", "tag-add:3", "auto:<hash>").
API_KEY_PREFIX = "api:"
MAX_PAYLOAD_BYTES = 32_768


class ActivitySerializer(serializers.ModelSerializer[Activity]):
    class Meta:
        model = Activity
        fields = [
            "id",
            "customer",
            "kind",
            "occurred_at",
            "source",
            "staff",
            "payload",
            "idempotency_key",
            "created_at",
        ]
        read_only_fields = fields


class ActivityRowSerializer(CustomerRefSerializer):
    """One timeline event as an integration sends it."""

    kind = serializers.CharField(
        max_length=32, help_text="e.g. member_joined, coupon_claimed, store_visit, or your own."
    )
    occurred_at = AwareDateTimeField(help_text="ISO-8601 with an offset.")
    # The metaclass moves declared fields off the class: no clash with Field.source.
    source = serializers.ChoiceField(  # type: ignore[assignment]
        choices=ActivitySource.choices, default=ActivitySource.API
    )
    staff = id_field(default=None, allow_null=True, help_text="Staff id, if one was involved.")
    payload = serializers.DictField(default=dict, help_text="Any JSON object (at most 32 KB).")
    idempotency_key = serializers.CharField(
        max_length=191 - len(API_KEY_PREFIX),
        allow_blank=True,
        default="",
        help_text=(
            "Your key for the event; a replay with the same key is stored once. Without "
            "one, the same customer, kind, time, source and payload count as a replay. "
            f"Stored as {API_KEY_PREFIX}<key>."
        ),
    )

    def validate_payload(self, value: dict[str, Any]) -> dict[str, Any]:
        try:
            text = json.dumps(value, allow_nan=False, ensure_ascii=False)
        except ValueError:
            raise serializers.ValidationError("NaN and Infinity are not JSON.") from None
        if "\\u0000" in text:
            # PostgreSQL's jsonb cannot store a NUL character.
            raise serializers.ValidationError("Text may not contain NUL characters.")
        size = len(text.encode())
        if size > MAX_PAYLOAD_BYTES:
            raise serializers.ValidationError(f"At most {MAX_PAYLOAD_BYTES} bytes as JSON.")
        return value


def prepare_activities(
    request: Request, rows: list[Any]
) -> tuple[list[services.ActivityInput], RowErrors]:
    """Validate rows and resolve their references in a constant number of queries."""
    user = request.user
    validated, errors = validate_rows(ActivityRowSerializer, rows, {"request": request})
    resolve_customers(user, validated, errors)
    resolve_ids(validated, "staff", staff_visible_qs(user), errors)
    keys = [API_KEY_PREFIX + r["idempotency_key"] for r in validated if r and r["idempotency_key"]]
    # A key already used for another customer would be silently reported "unchanged".
    key_owner = activity_customer_ids_by_key(keys)
    inputs: list[services.ActivityInput] = []
    for index, row in enumerate(validated):
        if row is None or index in errors:
            continue
        key = API_KEY_PREFIX + row["idempotency_key"] if row["idempotency_key"] else ""
        if key:
            owner = key_owner.setdefault(key, row["customer_id"])
            if owner != row["customer_id"]:
                errors.add(index, "idempotency_key", "Already used for another customer.")
                continue
        inputs.append(
            services.ActivityInput(
                customer_id=row["customer_id"],
                kind=row["kind"],
                occurred_at=row["occurred_at"],
                source=row["source"],
                staff_id=row["staff"],
                payload=row["payload"],
                idempotency_key=key,
            )
        )
    return inputs, errors


@bulk_write_schema(
    row=ActivityRowSerializer,
    read=ActivitySerializer,
    created="Recorded.",
    replayed="Already recorded (a replay).",
    create_text="Record one event; a replay is stored once.",
    bulk_text=(
        "Record up to API_BULK_MAX_ROWS events (default 5,000) in one transaction: a "
        'JSON list of rows, or {"rows": [...]}. All or nothing, like orders/bulk. '
        "Replaying a body stores nothing new."
    ),
)
@extend_schema(tags=["activities"])
class ActivityViewSet(BulkWriteMixin, mixins.ListModelMixin, ScrmViewSet[Activity]):
    """Timeline events of the customers the caller may see."""

    filterset_class = ActivityFilter
    cursor_ordering = ("-occurred_at", "-id")
    row_serializer_class = ActivityRowSerializer
    read_serializer_class = ActivitySerializer
    prepare_rows = staticmethod(prepare_activities)
    write_rows = staticmethod(services.activities_record)
    get_for_user = staticmethod(activity_get_for_user)

    def get_queryset(self) -> QuerySet[Activity]:
        return activity_visible_qs(self.request.user)
