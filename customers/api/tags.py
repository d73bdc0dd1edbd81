"""Tag groups and tags: the corp-wide vocabulary (read by everyone with a role, written
by operators and API clients)."""

from __future__ import annotations

from typing import Any

import django_filters
from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from customers import services
from customers.models import Tag, TagGroup, TagSource
from customers.selectors import (
    tag_get_for_user,
    tag_group_get_for_user,
    tag_group_visible_qs,
    tag_visible_qs,
)
from scrm.api import (
    MAX_ID,
    ReadOnlyUnlessSeesEverything,
    VisiblePrimaryKeyRelatedField,
)
from scrm.api_views import ScrmViewSet


class TagInGroupSerializer(serializers.ModelSerializer[Tag]):
    class Meta:
        model = Tag
        fields = ["id", "name", "order", "wecom_tag_id"]
        read_only_fields = fields


class TagGroupSerializer(serializers.ModelSerializer[TagGroup]):
    tags = TagInGroupSerializer(many=True, read_only=True)
    # A plain string in the schema, so as not to collide with the activities' "source" enum.
    source = serializers.CharField(read_only=True, help_text="wecom or local.")  # type: ignore[assignment]

    class Meta:
        model = TagGroup
        fields = ["id", "name", "source", "wecom_group_id", "order", "tags", "created_at"]
        read_only_fields = fields


class TagSerializer(serializers.ModelSerializer[Tag]):
    group_name = serializers.CharField(source="group.name", read_only=True)

    class Meta:
        model = Tag
        fields = ["id", "group", "group_name", "name", "order", "wecom_tag_id", "created_at"]
        read_only_fields = fields


def _order_field() -> serializers.IntegerField:
    return serializers.IntegerField(
        min_value=0, max_value=MAX_ID, required=False, help_text="Larger sorts first."
    )


class TagGroupWriteSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=64)
    order = _order_field()


class TagWriteSerializer(serializers.Serializer):
    group = VisiblePrimaryKeyRelatedField(
        visible=tag_group_visible_qs, queryset=TagGroup.objects.all()
    )
    name = serializers.CharField(max_length=64)
    order = _order_field()

    def validate_group(self, group: TagGroup) -> TagGroup:
        if group.source != TagSource.LOCAL:
            # WeCom sync owns those groups and would not know a tag made here.
            raise serializers.ValidationError("Tags of a WeCom tag group are managed in WeCom.")
        return group


def _order_data(validated: dict[str, Any]) -> dict[str, Any]:
    return {"order": validated["order"]} if "order" in validated else {}


@extend_schema(tags=["tags"])
class TagGroupViewSet(mixins.ListModelMixin, ScrmViewSet[TagGroup]):
    """Tag groups with their tags. POST upserts a local group by name."""

    permission_classes = [ReadOnlyUnlessSeesEverything]
    cursor_ordering = ("-order", "name", "id")

    def get_queryset(self) -> QuerySet[TagGroup]:
        return tag_group_visible_qs(self.request.user)

    def get_serializer_class(self) -> type[serializers.BaseSerializer[Any]]:
        return TagGroupWriteSerializer if self.action == "create" else TagGroupSerializer

    def get_object(self) -> TagGroup:
        return tag_group_get_for_user(self.request.user, self.kwargs.get("pk"))

    def retrieve(self, request: Request, pk: str | None = None) -> Response:
        return Response(TagGroupSerializer(self.get_object()).data)

    @extend_schema(
        request=TagGroupWriteSerializer,
        responses={
            200: OpenApiResponse(TagGroupSerializer, "A local group of that name existed."),
            201: OpenApiResponse(TagGroupSerializer, "Created."),
        },
    )
    def create(self, request: Request) -> Response:
        serializer = TagGroupWriteSerializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        group, outcome = services.tag_group_upsert(
            name=serializer.validated_data["name"],
            source=TagSource.LOCAL,
            data=_order_data(serializer.validated_data),
        )
        code = status.HTTP_201_CREATED if outcome == "created" else status.HTTP_200_OK
        return Response(TagGroupSerializer(self.get_queryset().get(pk=group.pk)).data, status=code)


class TagFilter(django_filters.FilterSet):
    group = django_filters.NumberFilter(field_name="group_id")
    name = django_filters.CharFilter(lookup_expr="icontains")

    class Meta:
        model = Tag
        fields: list[str] = []


@extend_schema(tags=["tags"])
class TagViewSet(mixins.ListModelMixin, ScrmViewSet[Tag]):
    """Tags. POST upserts a tag by name within a local group."""

    filterset_class = TagFilter
    permission_classes = [ReadOnlyUnlessSeesEverything]
    cursor_ordering = ("-order", "name", "id")

    def get_queryset(self) -> QuerySet[Tag]:
        return tag_visible_qs(self.request.user)

    def get_serializer_class(self) -> type[serializers.BaseSerializer[Any]]:
        return TagWriteSerializer if self.action == "create" else TagSerializer

    def get_object(self) -> Tag:
        return tag_get_for_user(self.request.user, self.kwargs.get("pk"))

    def retrieve(self, request: Request, pk: str | None = None) -> Response:
        return Response(TagSerializer(self.get_object()).data)

    @extend_schema(
        request=TagWriteSerializer,
        responses={
            200: OpenApiResponse(TagSerializer, "The group already had a tag of that name."),
            201: OpenApiResponse(TagSerializer, "Created."),
        },
    )
    def create(self, request: Request) -> Response:
        serializer = TagWriteSerializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        tag, outcome = services.tag_upsert(
            group=serializer.validated_data["group"],
            name=serializer.validated_data["name"],
            data=_order_data(serializer.validated_data),
        )
        code = status.HTTP_201_CREATED if outcome == "created" else status.HTTP_200_OK
        return Response(TagSerializer(tag).data, status=code)
