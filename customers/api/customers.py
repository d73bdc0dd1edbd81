"""Customers: list, detail, upsert by external_id, update, and tagging."""

from __future__ import annotations

from typing import Any

from django.db.models import Model, Prefetch, QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from customers import services
from customers.filters import CustomerFilter
from customers.models import (
    ActivitySource,
    Customer,
    CustomerTag,
    Follow,
    Gender,
    Staff,
    Store,
    Tag,
)
from customers.selectors import (
    customer_detail,
    customer_get_for_user,
    customer_list_qs,
    customer_visible_qs,
    staff_of,
    staff_visible_qs,
    store_visible_qs,
    tag_visible_qs,
)
from scrm.api import (
    AwareDateTimeField,
    HasRole,
    ReadOnlyUnlessSeesEverything,
    VisiblePrimaryKeyRelatedField,
)
from scrm.api_views import ScrmViewSet
from scrm.roles import role_of

# ``customers`` imports nothing from ``channels``: the model is reached through the FK.
_channel_model: Any = Customer._meta.get_field("source_channel").related_model


def channel_visible_qs(user: Any) -> QuerySet[Any]:
    """Channels are corp-wide vocabulary: anyone with a role may name one."""
    qs: QuerySet[Any] = _channel_model._default_manager.all()
    return qs if role_of(user) is not None else qs.none()


# --- Output ----------------------------------------------------------------------------


class CustomerTagSerializer(serializers.Serializer):
    """A tag on a customer (read from the customer's tag links)."""

    id = serializers.IntegerField(source="tag_id", read_only=True)
    name = serializers.CharField(source="tag.name", read_only=True)
    group = serializers.IntegerField(source="tag.group_id", read_only=True)


class FollowSerializer(serializers.ModelSerializer[Follow]):
    staff_name = serializers.CharField(source="staff.name", read_only=True)

    class Meta:
        model = Follow
        fields = [
            "id",
            "staff",
            "staff_name",
            "remark",
            "description",
            "state",
            "add_way",
            "added_at",
            "deleted_at",
        ]
        read_only_fields = fields


CUSTOMER_OUTPUT_FIELDS = [
    "id",
    "external_id",
    "external_userid",
    "unionid",
    "name",
    "avatar",
    "gender",
    "phone",
    "birthday",
    "owner",
    "store",
    "source_channel",
    "acquired_at",
    "referred_by",
    "status",
    "lost_at",
    "tags",
    "created_at",
    "updated_at",
]


class CustomerSerializer(serializers.ModelSerializer[Customer]):
    tags = CustomerTagSerializer(source="tag_links", many=True, read_only=True)
    # A plain string in the schema: an enum here would collide in name with the orders'
    # "status" enum, and the naming override lives in settings.
    status = serializers.CharField(read_only=True, help_text="active or lost.")

    class Meta:
        model = Customer
        fields = CUSTOMER_OUTPUT_FIELDS
        read_only_fields = fields


class CustomerDetailSerializer(CustomerSerializer):
    follows = FollowSerializer(many=True, read_only=True, help_text="Staff who have them.")

    class Meta:
        model = Customer
        fields = [*CUSTOMER_OUTPUT_FIELDS, "follows"]
        read_only_fields = fields


# --- Input -----------------------------------------------------------------------------


def _pk(value: Model | None) -> int | None:
    return None if value is None else int(value.pk)


class CustomerWriteSerializer(serializers.Serializer):
    """A customer as an integration sends it. Related rows are given by id and must be
    rows the caller may see."""

    external_id = serializers.CharField(
        max_length=128,
        required=False,
        allow_null=True,
        allow_blank=True,
        help_text="Your key. POST with a known external_id updates that customer.",
    )
    external_userid = serializers.CharField(
        max_length=64, required=False, allow_null=True, allow_blank=True
    )
    unionid = serializers.CharField(max_length=64, required=False, allow_blank=True)
    name = serializers.CharField(max_length=128)
    avatar = serializers.URLField(max_length=500, required=False, allow_blank=True)
    gender = serializers.ChoiceField(choices=Gender.choices, required=False)
    phone = serializers.CharField(max_length=32, required=False, allow_blank=True)
    birthday = serializers.DateField(required=False, allow_null=True)
    owner = VisiblePrimaryKeyRelatedField(
        visible=staff_visible_qs, queryset=Staff.objects.all(), required=False, allow_null=True
    )
    store = VisiblePrimaryKeyRelatedField(
        visible=store_visible_qs, queryset=Store.objects.all(), required=False, allow_null=True
    )
    source_channel = VisiblePrimaryKeyRelatedField(
        visible=channel_visible_qs,
        queryset=_channel_model._default_manager.all(),
        required=False,
        allow_null=True,
    )
    acquired_at = AwareDateTimeField(
        required=False, help_text="When they became a customer (imports keep the original)."
    )
    referred_by = VisiblePrimaryKeyRelatedField(
        visible=customer_visible_qs,
        queryset=Customer.objects.all(),
        required=False,
        allow_null=True,
        help_text="The referring customer's id.",
    )
    referred_by_external_id = serializers.CharField(
        max_length=128,
        required=False,
        write_only=True,
        help_text="Or the referring customer's external_id.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.target: Customer | None = None

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        user = self.context["request"].user
        visible = customer_visible_qs(user)
        for key in ("external_id", "external_userid"):
            if key in attrs and not attrs[key]:
                attrs[key] = None
        self.target = self.instance
        if self.target is None:
            upsert_key = self.upsert_key(attrs)
            if upsert_key:
                self.target = visible.filter(**{upsert_key: attrs[upsert_key]}).first()
        errors: dict[str, list[str]] = {}
        for key in ("external_id", "external_userid"):
            value = attrs.get(key)
            taken = visible.filter(**{key: value})
            if self.target is not None:
                taken = taken.exclude(pk=self.target.pk)
            if value and taken.exists():
                errors[key] = [f"Another customer already has this {key}."]
        referrer_key = attrs.pop("referred_by_external_id", None)
        if referrer_key:
            found = services.customer_ids_by_external_id([referrer_key]).get(referrer_key)
            if found is None or not visible.filter(pk=found).exists():
                errors["referred_by_external_id"] = [
                    f"No customer with external_id {referrer_key!r}."
                ]
            elif attrs.get("referred_by") is not None and attrs["referred_by"].pk != found:
                errors["referred_by_external_id"] = ["It names another customer than referred_by."]
            else:
                attrs["referred_by"] = visible.get(pk=found)
        referrer = attrs.get("referred_by")
        if referrer is not None and (
            (self.target is not None and referrer.pk == self.target.pk)
            or (referrer_key and referrer_key == attrs.get("external_id"))
        ):
            errors["referred_by"] = ["A customer cannot refer themselves."]
        if errors:
            raise serializers.ValidationError(errors)
        return attrs

    @staticmethod
    def upsert_key(attrs: dict[str, Any]) -> str | None:
        """external_id when given, else external_userid (a WeCom contact), else none."""
        for key in ("external_id", "external_userid"):
            if attrs.get(key):
                return key
        return None

    def service_data(self) -> dict[str, Any]:
        """The validated values as ``customers.services`` takes them (``*_id`` for FKs)."""
        data: dict[str, Any] = {}
        for name, value in self.validated_data.items():
            if name in ("owner", "store", "source_channel", "referred_by"):
                data[f"{name}_id"] = _pk(value)
            else:
                data[name] = value
        return data


class CustomerTagChangeSerializer(serializers.Serializer):
    tag = VisiblePrimaryKeyRelatedField(
        visible=tag_visible_qs, queryset=Tag.objects.all(), help_text="The tag's id."
    )


class CustomerTagsResultSerializer(serializers.Serializer):
    changed = serializers.BooleanField(help_text="False when nothing changed (already so).")
    tags = CustomerTagSerializer(many=True, help_text="The customer's tags now.")


# --- Views -----------------------------------------------------------------------------


@extend_schema(tags=["customers"])
class CustomerViewSet(
    mixins.ListModelMixin,
    ScrmViewSet[Customer],
):
    """Customers the caller may see: operators and API clients all, a store manager their
    store's, store staff the ones they own or follow. Anyone else's is a 404."""

    filterset_class = CustomerFilter
    permission_classes = [ReadOnlyUnlessSeesEverything]
    cursor_ordering = ("-acquired_at", "-id")

    def get_queryset(self) -> QuerySet[Customer]:
        return customer_list_qs(self.request.user).prefetch_related(
            Prefetch("tag_links", queryset=CustomerTag.objects.select_related("tag"))
        )

    def get_serializer_class(self) -> type[serializers.BaseSerializer[Any]]:
        if self.action in ("create", "update", "partial_update"):
            return CustomerWriteSerializer
        if self.action == "tags":
            return CustomerTagChangeSerializer
        if self.action == "list":
            return CustomerSerializer
        return CustomerDetailSerializer

    def get_object(self) -> Customer:
        return customer_get_for_user(self.request.user, self.kwargs.get("pk"))

    def _answer(self, customer: Customer, code: int = status.HTTP_200_OK) -> Response:
        detail = customer_detail(self.request.user, customer.pk)
        return Response(CustomerDetailSerializer(detail).data, status=code)

    @extend_schema(responses=CustomerDetailSerializer)
    def retrieve(self, request: Request, pk: str | None = None) -> Response:
        return Response(CustomerDetailSerializer(customer_detail(request.user, pk)).data)

    @extend_schema(
        request=CustomerWriteSerializer,
        responses={
            200: OpenApiResponse(CustomerDetailSerializer, "Updated, or unchanged (a replay)."),
            201: OpenApiResponse(CustomerDetailSerializer, "Created."),
        },
        description=(
            "Upsert: a body whose external_id (or, without one, external_userid) is already "
            "known updates that customer and answers 200; replaying the same body changes "
            "nothing. Operators and API clients only."
        ),
    )
    def create(self, request: Request) -> Response:
        serializer = CustomerWriteSerializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        data = serializer.service_data()
        key = serializer.upsert_key(data)
        if key:
            customer, outcome = services.customer_upsert(key=key, data=data)
        else:
            customer, outcome = services.customer_create(data=data), "created"
        created = outcome == "created"
        return self._answer(customer, status.HTTP_201_CREATED if created else status.HTTP_200_OK)

    def _update(self, request: Request, *, partial: bool) -> Response:
        customer = self.get_object()
        serializer = CustomerWriteSerializer(
            customer, data=request.data, partial=partial, context={"request": request}
        )
        serializer.is_valid(raise_exception=True)
        services.customer_update(customer=customer, data=serializer.service_data())
        return self._answer(customer)

    @extend_schema(request=CustomerWriteSerializer, responses=CustomerDetailSerializer)
    def update(self, request: Request, pk: str | None = None) -> Response:
        return self._update(request, partial=False)

    @extend_schema(request=CustomerWriteSerializer, responses=CustomerDetailSerializer)
    def partial_update(self, request: Request, pk: str | None = None) -> Response:
        return self._update(request, partial=True)

    @extend_schema(
        methods=["POST"],
        request=CustomerTagChangeSerializer,
        responses={
            201: OpenApiResponse(CustomerTagsResultSerializer, "Tag added."),
            200: OpenApiResponse(CustomerTagsResultSerializer, "The customer already had it."),
        },
        description="Tag a customer you can see.",
    )
    @extend_schema(
        methods=["DELETE"],
        request=None,
        parameters=[OpenApiParameter("tag", OpenApiTypes.INT, required=True)],
        responses={200: CustomerTagsResultSerializer},
        description="Untag a customer you can see; the tag id in ?tag= (or a JSON body).",
    )
    @action(detail=True, methods=["post", "delete"], permission_classes=[HasRole])
    def tags(self, request: Request, pk: str | None = None) -> Response:
        customer = self.get_object()
        body = request.data
        if request.method == "DELETE" and not (isinstance(body, dict) and "tag" in body):
            body = {"tag": request.query_params.get("tag")}
        serializer = CustomerTagChangeSerializer(data=body, context={"request": request})
        serializer.is_valid(raise_exception=True)
        tag = serializer.validated_data["tag"]
        staff = staff_of(request.user)
        if request.method == "POST":
            changed = services.customer_tag_add(
                customer=customer, tag=tag, staff=staff, source=ActivitySource.API
            )
            code = status.HTTP_201_CREATED if changed else status.HTTP_200_OK
        else:
            changed = services.customer_tag_remove(
                customer=customer, tag=tag, staff=staff, source=ActivitySource.API
            )
            code = status.HTTP_200_OK
        links = customer.tag_links.select_related("tag").order_by("tag__name", "tag_id")
        result = {"changed": changed, "tags": CustomerTagSerializer(links, many=True).data}
        return Response(result, status=code)
