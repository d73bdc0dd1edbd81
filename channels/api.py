"""REST API v1 for traffic channels: read by everyone with a role, written by operators
and API clients. DELETE deactivates, so customers keep their source channel."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import django_filters
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from channels import services
from channels.models import Channel, ChannelKind
from channels.selectors import channel_get_for_user, channel_visible_qs
from scrm.api import ReadOnlyUnlessSeesEverything
from scrm.api_views import ScrmViewSet


class ChannelSerializer(serializers.ModelSerializer[Channel]):
    class Meta:
        model = Channel
        fields = [
            "id",
            "name",
            "kind",
            "cost",
            "description",
            "is_active",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class ChannelWriteSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=128)
    kind = serializers.ChoiceField(choices=ChannelKind.choices)
    cost = serializers.DecimalField(
        max_digits=14,
        decimal_places=2,
        min_value=Decimal("0"),
        required=False,
        help_text='What the channel cost over its life, e.g. "12000.00" (for CAC).',
    )
    description = serializers.CharField(max_length=5000, required=False, allow_blank=True)
    is_active = serializers.BooleanField(required=False)


class ChannelFilter(django_filters.FilterSet):
    kind = django_filters.ChoiceFilter(choices=ChannelKind.choices)
    is_active = django_filters.BooleanFilter()

    class Meta:
        model = Channel
        fields: list[str] = []


@extend_schema(tags=["channels"])
class ChannelViewSet(mixins.ListModelMixin, ScrmViewSet[Channel]):
    """Traffic channels (where customers come from, and what each cost)."""

    filterset_class = ChannelFilter
    permission_classes = [ReadOnlyUnlessSeesEverything]
    cursor_ordering = ("name", "id")

    def get_queryset(self) -> QuerySet[Channel]:
        return channel_visible_qs(self.request.user)

    def get_serializer_class(self) -> type[serializers.BaseSerializer[Any]]:
        if self.action in ("create", "update", "partial_update"):
            return ChannelWriteSerializer
        return ChannelSerializer

    def get_object(self) -> Channel:
        return channel_get_for_user(self.request.user, self.kwargs.get("pk"))

    def retrieve(self, request: Request, pk: str | None = None) -> Response:
        return Response(ChannelSerializer(self.get_object()).data)

    @extend_schema(request=ChannelWriteSerializer, responses={201: ChannelSerializer})
    def create(self, request: Request) -> Response:
        serializer = ChannelWriteSerializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        channel = services.channel_create(data=serializer.validated_data)
        return Response(ChannelSerializer(channel).data, status=status.HTTP_201_CREATED)

    def _update(self, request: Request, *, partial: bool) -> Response:
        channel = self.get_object()
        serializer = ChannelWriteSerializer(
            channel, data=request.data, partial=partial, context={"request": request}
        )
        serializer.is_valid(raise_exception=True)
        services.channel_update(channel=channel, data=serializer.validated_data)
        return Response(ChannelSerializer(channel).data)

    @extend_schema(request=ChannelWriteSerializer, responses=ChannelSerializer)
    def update(self, request: Request, pk: str | None = None) -> Response:
        return self._update(request, partial=False)

    @extend_schema(request=ChannelWriteSerializer, responses=ChannelSerializer)
    def partial_update(self, request: Request, pk: str | None = None) -> Response:
        return self._update(request, partial=True)

    @extend_schema(
        description="Deactivate the channel (customers keep it as their source).",
        responses={204: None},
    )
    def destroy(self, request: Request, pk: str | None = None) -> Response:
        services.channel_update(channel=self.get_object(), data={"is_active": False})
        return Response(status=status.HTTP_204_NO_CONTENT)
