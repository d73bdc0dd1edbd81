"""Staff and stores: read by everyone with a role (scoped to their store), written by
operators and API clients. DELETE deactivates: history (follows, orders) keeps its rows."""

from __future__ import annotations

from typing import Any

import django_filters
from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from customers import services
from customers.models import Staff, Store
from customers.selectors import (
    staff_get_for_user,
    staff_visible_qs,
    store_get_for_user,
    store_visible_qs,
)
from scrm.api import ReadOnlyUnlessSeesEverything, VisiblePrimaryKeyRelatedField
from scrm.api_views import ScrmViewSet
from scrm.roles import Role

# --- Stores ----------------------------------------------------------------------------


class StoreSerializer(serializers.ModelSerializer[Store]):
    class Meta:
        model = Store
        fields = ["id", "code", "name", "city", "address", "is_active", "created_at", "updated_at"]
        read_only_fields = fields


class StoreWriteSerializer(serializers.Serializer):
    code = serializers.CharField(
        max_length=64, help_text="Your key; POST with a known code updates."
    )
    name = serializers.CharField(max_length=128)
    city = serializers.CharField(max_length=64, required=False, allow_blank=True)
    address = serializers.CharField(max_length=255, required=False, allow_blank=True)
    is_active = serializers.BooleanField(required=False)

    def validate_code(self, code: str) -> str:
        instance = self.instance
        if instance is not None and code != instance.code:
            user = self.context["request"].user
            if store_visible_qs(user).filter(code=code).exists():
                raise serializers.ValidationError("Another store already has this code.")
        return code


class StoreFilter(django_filters.FilterSet):
    code = django_filters.CharFilter()
    city = django_filters.CharFilter()
    is_active = django_filters.BooleanFilter()

    class Meta:
        model = Store
        fields: list[str] = []


@extend_schema(tags=["stores"])
class StoreViewSet(mixins.ListModelMixin, ScrmViewSet[Store]):
    """Stores. POST upserts by code."""

    filterset_class = StoreFilter
    permission_classes = [ReadOnlyUnlessSeesEverything]
    cursor_ordering = ("name", "id")

    def get_queryset(self) -> QuerySet[Store]:
        return store_visible_qs(self.request.user)

    def get_serializer_class(self) -> type[serializers.BaseSerializer[Any]]:
        if self.action in ("create", "update", "partial_update"):
            return StoreWriteSerializer
        return StoreSerializer

    def get_object(self) -> Store:
        return store_get_for_user(self.request.user, self.kwargs.get("pk"))

    def retrieve(self, request: Request, pk: str | None = None) -> Response:
        return Response(StoreSerializer(self.get_object()).data)

    @extend_schema(
        request=StoreWriteSerializer,
        responses={
            200: OpenApiResponse(StoreSerializer, "Updated, or unchanged (a replay)."),
            201: OpenApiResponse(StoreSerializer, "Created."),
        },
    )
    def create(self, request: Request) -> Response:
        serializer = StoreWriteSerializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        store, outcome = services.store_upsert(code=data.pop("code"), data=data)
        code = status.HTTP_201_CREATED if outcome == "created" else status.HTTP_200_OK
        return Response(StoreSerializer(store).data, status=code)

    def _update(self, request: Request, *, partial: bool) -> Response:
        store = self.get_object()
        serializer = StoreWriteSerializer(
            store, data=request.data, partial=partial, context={"request": request}
        )
        serializer.is_valid(raise_exception=True)
        services.store_update(store=store, data=serializer.validated_data)
        return Response(StoreSerializer(store).data)

    @extend_schema(request=StoreWriteSerializer, responses=StoreSerializer)
    def update(self, request: Request, pk: str | None = None) -> Response:
        return self._update(request, partial=False)

    @extend_schema(request=StoreWriteSerializer, responses=StoreSerializer)
    def partial_update(self, request: Request, pk: str | None = None) -> Response:
        return self._update(request, partial=True)

    @extend_schema(description="Deactivate the store (its history stays).", responses={204: None})
    def destroy(self, request: Request, pk: str | None = None) -> Response:
        services.store_update(store=self.get_object(), data={"is_active": False})
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- Staff -----------------------------------------------------------------------------

#: An API client is a login, not a staff member; staff roles are these three.
STAFF_ROLES = [(r.value, r.label) for r in (Role.OPERATOR, Role.MANAGER, Role.STAFF)]


class StaffSerializer(serializers.ModelSerializer[Staff]):
    class Meta:
        model = Staff
        fields = [
            "id",
            "name",
            "wecom_userid",
            "mobile",
            "store",
            "role",
            "is_active",
            "user",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class StaffWriteSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=128)
    wecom_userid = serializers.CharField(
        max_length=64,
        required=False,
        allow_null=True,
        allow_blank=True,
        help_text="WeCom userid; POST with a known one updates that staff member.",
    )
    mobile = serializers.CharField(max_length=32, required=False, allow_blank=True)
    store = VisiblePrimaryKeyRelatedField(
        visible=store_visible_qs, queryset=Store.objects.all(), required=False, allow_null=True
    )
    role = serializers.ChoiceField(choices=STAFF_ROLES, required=False)
    is_active = serializers.BooleanField(required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        user = self.context["request"].user
        if "wecom_userid" in attrs and not attrs["wecom_userid"]:
            attrs["wecom_userid"] = None  # unique: absent is NULL, never ""
        target: Staff | None = self.instance
        wecom_userid = attrs.get("wecom_userid")
        same_id = staff_visible_qs(user).filter(wecom_userid=wecom_userid)
        if target is None:
            # POST upserts by wecom_userid: the row it names is the one being written.
            target = same_id.first() if wecom_userid else None
        elif wecom_userid and same_id.exclude(pk=target.pk).exists():
            raise serializers.ValidationError(
                {"wecom_userid": ["Another staff member has this WeCom userid."]}
            )
        role = attrs.get("role", target.role if target else Role.STAFF)
        store = attrs.get("store", target.store if target else None)
        if role == Role.MANAGER and store is None:
            raise serializers.ValidationError({"store": ["A store manager needs a store."]})
        return attrs


class StaffFilter(django_filters.FilterSet):
    store = django_filters.NumberFilter(field_name="store_id")
    role = django_filters.ChoiceFilter(choices=STAFF_ROLES)
    is_active = django_filters.BooleanFilter()
    wecom_userid = django_filters.CharFilter()

    class Meta:
        model = Staff
        fields: list[str] = []


@extend_schema(tags=["staff"])
class StaffViewSet(mixins.ListModelMixin, ScrmViewSet[Staff]):
    """Staff members: all for operators and API clients, one's own store's for store
    staff. POST upserts by wecom_userid when given."""

    filterset_class = StaffFilter
    permission_classes = [ReadOnlyUnlessSeesEverything]
    cursor_ordering = ("name", "id")

    def get_queryset(self) -> QuerySet[Staff]:
        return staff_visible_qs(self.request.user)

    def get_serializer_class(self) -> type[serializers.BaseSerializer[Any]]:
        if self.action in ("create", "update", "partial_update"):
            return StaffWriteSerializer
        return StaffSerializer

    def get_object(self) -> Staff:
        return staff_get_for_user(self.request.user, self.kwargs.get("pk"))

    def retrieve(self, request: Request, pk: str | None = None) -> Response:
        return Response(StaffSerializer(self.get_object()).data)

    @extend_schema(
        request=StaffWriteSerializer,
        responses={
            200: OpenApiResponse(StaffSerializer, "Updated, or unchanged (a replay)."),
            201: OpenApiResponse(StaffSerializer, "Created."),
        },
    )
    def create(self, request: Request) -> Response:
        serializer = StaffWriteSerializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        wecom_userid = data.pop("wecom_userid", None)
        if wecom_userid:
            staff, outcome = services.staff_upsert(wecom_userid=wecom_userid, data=data)
        else:
            staff, outcome = services.staff_create(data=data), "created"
        code = status.HTTP_201_CREATED if outcome == "created" else status.HTTP_200_OK
        return Response(StaffSerializer(staff).data, status=code)

    def _update(self, request: Request, *, partial: bool) -> Response:
        staff = self.get_object()
        serializer = StaffWriteSerializer(
            staff, data=request.data, partial=partial, context={"request": request}
        )
        serializer.is_valid(raise_exception=True)
        services.staff_update(staff=staff, data=serializer.validated_data)
        return Response(StaffSerializer(staff).data)

    @extend_schema(request=StaffWriteSerializer, responses=StaffSerializer)
    def update(self, request: Request, pk: str | None = None) -> Response:
        return self._update(request, partial=False)

    @extend_schema(request=StaffWriteSerializer, responses=StaffSerializer)
    def partial_update(self, request: Request, pk: str | None = None) -> Response:
        return self._update(request, partial=True)

    @extend_schema(
        description="Deactivate the staff member (follows and orders stay).",
        responses={204: None},
    )
    def destroy(self, request: Request, pk: str | None = None) -> Response:
        services.staff_update(staff=self.get_object(), data={"is_active": False})
        return Response(status=status.HTTP_204_NO_CONTENT)
