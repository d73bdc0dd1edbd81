"""The touchpoint log and the staff member's to-dos.

Touchpoints are read-only here: the engine writes them. A user sees the touchpoints of
the customers they may see. ``done/`` and ``snooze/`` act on a touchpoint that waits for
a staff member (a to-do, or a WeCom task they have not confirmed yet): a clerk on their
own, a manager on any of their store's customers', operators and API clients on any.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from campaigns.filters import TouchpointFilter
from campaigns.models import Touchpoint
from campaigns.selectors.touchpoints import (
    todo_list_qs,
    touchpoint_get_for_user,
    touchpoint_list_qs,
)
from campaigns.services import confirm
from scrm.api import AwareDateTimeField, HasRole
from scrm.api_views import ScrmViewSet


class TouchpointSerializer(serializers.ModelSerializer[Touchpoint]):
    customer_name = serializers.CharField(source="customer.name", read_only=True)
    sop_name = serializers.CharField(source="sop.name", read_only=True)
    staff_name = serializers.CharField(source="staff.name", read_only=True, default=None)
    step_position = serializers.IntegerField(source="step.position", read_only=True)
    # Plain strings in the schema: enums would collide in name with other "status" enums.
    status = serializers.CharField(read_only=True)
    kind = serializers.CharField(read_only=True)
    skip_reason = serializers.CharField(read_only=True)

    class Meta:
        model = Touchpoint
        fields = [
            "id",
            "customer",
            "customer_name",
            "sop",
            "sop_name",
            "campaign",
            "step",
            "step_position",
            "kind",
            "status",
            "skip_reason",
            "staff",
            "staff_name",
            "due_at",
            "dispatched_at",
            "sent_at",
            "done_at",
            "snoozed_until",
            "attempts",
            "rendered_text",
            "rendered_attachments",
            "error",
        ]
        read_only_fields = fields


class TodoSerializer(serializers.ModelSerializer[Touchpoint]):
    customer_name = serializers.CharField(source="customer.name", read_only=True)
    sop_name = serializers.CharField(source="sop.name", read_only=True)
    status = serializers.CharField(
        read_only=True,
        help_text="todo (do it, then mark done) or created (a WeCom task to confirm).",
    )
    kind = serializers.CharField(read_only=True)
    instruction = serializers.CharField(source="step.instruction", read_only=True)
    message = serializers.CharField(source="rendered_text", read_only=True)
    attachments = serializers.JSONField(source="rendered_attachments", read_only=True)
    overdue = serializers.SerializerMethodField()

    class Meta:
        model = Touchpoint
        fields = [
            "id",
            "customer",
            "customer_name",
            "sop",
            "sop_name",
            "kind",
            "status",
            "due_at",
            "overdue",
            "snoozed_until",
            "instruction",
            "message",
            "attachments",
        ]
        read_only_fields = fields

    def get_overdue(self, touchpoint: Touchpoint) -> bool:
        return bool(touchpoint.due_at < self.context.get("now", timezone.now()))


class SnoozeSerializer(serializers.Serializer):
    until = AwareDateTimeField(help_text="Show it again at this time (in the future).")

    def validate_until(self, value: Any) -> Any:
        if value <= timezone.now():
            raise serializers.ValidationError("Choose a time in the future.")
        return value


@extend_schema(tags=["touchpoints"])
class TouchpointViewSet(mixins.ListModelMixin, ScrmViewSet[Touchpoint]):
    """What each SOP step did (or will do) for each customer, and why not when skipped."""

    filterset_class = TouchpointFilter
    permission_classes = [HasRole]
    serializer_class = TouchpointSerializer
    cursor_ordering = ("-due_at",)

    def get_queryset(self) -> QuerySet[Touchpoint]:
        return touchpoint_list_qs(self.request.user)

    def get_object(self) -> Touchpoint:
        return touchpoint_get_for_user(self.request.user, self.kwargs.get("pk"))

    def retrieve(self, request: Request, pk: str | None = None) -> Response:
        return Response(TouchpointSerializer(self.get_object()).data)

    def _reload(self, touchpoint: Touchpoint) -> dict[str, Any]:
        fresh = touchpoint_get_for_user(self.request.user, touchpoint.pk)
        return dict(TouchpointSerializer(fresh).data)

    @extend_schema(
        request=None,
        responses=TouchpointSerializer,
        description="Mark a waiting to-do (or a WeCom task the staff member sent) done; "
        "recorded on the customer's timeline. Idempotent.",
    )
    @action(detail=True, methods=["post"], filter_backends=[], pagination_class=None)
    def done(self, request: Request, pk: str | None = None) -> Response:
        touchpoint = self.get_object()
        confirm.touchpoint_done(touchpoint=touchpoint, user=request.user)
        return Response(self._reload(touchpoint))

    @extend_schema(request=SnoozeSerializer, responses=TouchpointSerializer)
    @action(detail=True, methods=["post"], filter_backends=[], pagination_class=None)
    def snooze(self, request: Request, pk: str | None = None) -> Response:
        touchpoint = self.get_object()
        serializer = SnoozeSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        confirm.touchpoint_snooze(
            touchpoint=touchpoint, until=serializer.validated_data["until"], user=request.user
        )
        return Response(self._reload(touchpoint))


@extend_schema(tags=["touchpoints"])
class TodoViewSet(mixins.ListModelMixin, ScrmViewSet[Touchpoint]):
    """The asking staff member's to-dos: staff to-dos and WeCom tasks waiting for their
    confirmation, overdue first, snoozed last, with the rendered message to copy. Users
    without a staff row have none. Mark one done with ``touchpoints/{id}/done/``."""

    permission_classes = [HasRole]
    serializer_class = TodoSerializer
    filter_backends: list[Any] = []
    pagination_class = None
    #: At most this many, oldest due first: a list longer than a day's work is not read.
    limit = 200

    def get_queryset(self) -> QuerySet[Touchpoint]:
        return todo_list_qs(self.request.user)

    def list(self, request: Request) -> Response:
        now = timezone.now()
        rows = list(todo_list_qs(request.user, now=now)[: self.limit])
        return Response(TodoSerializer(rows, many=True, context={"now": now}).data)
