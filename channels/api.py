"""REST API v1 for traffic channels, channel codes and WeCom sync runs.

* ``channels/``: read by everyone with a role, written by operators and API clients;
  DELETE deactivates, so customers keep their source channel. ``channels/{id}/stats/``
  (the figures operators compare channels by) is for operators and API clients only:
  cost and acquisition are corp-wide figures, not a store's.
* ``channel-codes/``: WeCom 「联系我」 QR codes. Operators and API clients read and write
  every code; store managers and clerks read the codes that carry a staff member of their
  store (the ones shown at their counter) and write none. DELETE deactivates (the contact
  way is deleted in WeCom, the row stays so past customers stay attributed).
* ``sync-runs/``: full WeCom syncs; operators and API clients only. POST starts one (or
  answers the running one) with 202.

WeCom being busy or unreachable answers 503 ``wecom_unavailable``: retry later.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db.models import QuerySet
from django.http import HttpResponseRedirect
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from channels import services
from channels.filters import ChannelCodeFilter, ChannelFilter, PeriodForm, SyncRunFilter
from channels.models import Channel, ChannelCode, ChannelKind, SyncRun
from channels.selectors import (
    ChannelFigures,
    channel_code_get_for_user,
    channel_code_list_qs,
    channel_figures,
    channel_get_for_user,
    channel_visible_qs,
    sync_run_duration,
    sync_run_get_for_user,
    sync_run_visible_qs,
)
from channels.wecom.errors import WeComTransientError
from customers.models import Customer
from customers.selectors import customer_visible_qs, staff_visible_qs, tag_visible_qs
from scrm.api import (
    HasRole,
    InvalidRequest,
    ReadOnlyUnlessSeesEverything,
    VisiblePrimaryKeyRelatedField,
    id_field,
)
from scrm.api_views import ScrmViewSet
from scrm.roles import sees_everything


class WeComUnavailable(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "WeCom is busy or unreachable; nothing was changed. Retry in a minute."
    default_code = "wecom_unavailable"


class SeesEverything(HasRole):
    """Operators and API clients only, for reading too."""

    message = "Only operators and API clients may use this."

    def has_permission(self, request: Request, view: APIView) -> bool:
        return super().has_permission(request, view) and sees_everything(request.user)


class WeComViewSetMixin:
    """Transient WeCom errors become a 503 in the API's error shape instead of a 500."""

    def handle_exception(self, exc: Exception) -> Response:
        if isinstance(exc, WeComTransientError):
            exc = WeComUnavailable()
        return super().handle_exception(exc)  # type: ignore[misc]


# --- Channels --------------------------------------------------------------------------


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


class StaffFiguresSerializer(serializers.Serializer):
    staff = serializers.IntegerField(source="staff_id")
    name = serializers.CharField()
    follows = serializers.IntegerField(help_text="Follows added through the code(s).")
    customers = serializers.IntegerField(help_text="Distinct customers among them.")


class CodeFiguresSerializer(serializers.Serializer):
    id = serializers.IntegerField(source="code.id")
    name = serializers.CharField(source="code.name")
    state = serializers.CharField(source="code.state")
    is_active = serializers.BooleanField(source="code.is_active")
    follows = serializers.IntegerField(help_text="Follows ever added with the code's state.")
    active_follows = serializers.IntegerField(help_text="Those still active.")
    customers = serializers.IntegerField(help_text="Distinct customers brought.")
    staff = StaffFiguresSerializer(many=True, help_text="Per staff member.")


class ChannelStatsSerializer(serializers.Serializer):
    channel = serializers.IntegerField(source="channel.id")
    name = serializers.CharField(source="channel.name")
    kind = serializers.CharField(source="channel.kind")
    cost = serializers.DecimalField(source="channel.cost", max_digits=14, decimal_places=2)
    start = serializers.DateTimeField(allow_null=True)
    end = serializers.DateTimeField(allow_null=True)
    customers_acquired = serializers.IntegerField(
        source="acquired", help_text="Customers whose source channel this is, acquired in range."
    )
    cost_per_customer = serializers.DecimalField(
        max_digits=14,
        decimal_places=2,
        allow_null=True,
        help_text="cost / customers_acquired; null when none was acquired.",
    )
    codes_count = serializers.IntegerField()
    active_codes = serializers.IntegerField()
    follows = serializers.IntegerField(help_text="Follows added through any of its codes.")
    customers = serializers.IntegerField(help_text="Distinct customers brought by its codes.")
    staff = StaffFiguresSerializer(many=True, help_text="Per staff member, all codes.")
    codes = CodeFiguresSerializer(many=True, help_text="The codes that brought most customers.")
    codes_truncated = serializers.BooleanField(
        help_text="True when the channel has more codes than listed (see channel-codes/)."
    )


PERIOD_PARAMETERS = [
    OpenApiParameter(
        "start", OpenApiTypes.DATETIME, description="Count from this time (inclusive)."
    ),
    OpenApiParameter("end", OpenApiTypes.DATETIME, description="Count before this time."),
]


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
        if self.action == "stats":
            return ChannelStatsSerializer
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

    @extend_schema(
        parameters=PERIOD_PARAMETERS,
        responses=ChannelStatsSerializer,
        description="Customers acquired, cost per acquired customer, and what its codes "
        "brought (follows, distinct customers, per staff member, per code) in [start, end).",
    )
    @action(detail=True, methods=["get"], permission_classes=[SeesEverything], filter_backends=[])
    def stats(self, request: Request, pk: str | None = None) -> Response:
        period = PeriodForm(request.query_params)
        if not period.is_valid():
            raise InvalidRequest("The period is not valid.", period.errors.get_json_data())
        start, end = period.period()
        figures: ChannelFigures = channel_figures(request.user, pk, start=start, end=end)
        return Response(ChannelStatsSerializer(figures).data)


# --- Channel codes ---------------------------------------------------------------------


class ChannelCodeSerializer(serializers.ModelSerializer[ChannelCode]):
    staff = serializers.ManyRelatedField(
        child_relation=serializers.PrimaryKeyRelatedField(read_only=True), read_only=True
    )
    auto_tags = serializers.ManyRelatedField(
        child_relation=serializers.PrimaryKeyRelatedField(read_only=True), read_only=True
    )
    qr_code = serializers.CharField(
        read_only=True, help_text="URL of the QR image in WeCom (also at .../qr/)."
    )

    class Meta:
        model = ChannelCode
        fields = [
            "id",
            "channel",
            "name",
            "state",
            "config_id",
            "qr_code",
            "staff",
            "skip_verify",
            "welcome_text",
            "welcome_attachments",
            "auto_tags",
            "referrer",
            "is_active",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class ReferralCodeRequestSerializer(serializers.Serializer):
    customer = VisiblePrimaryKeyRelatedField(
        visible=customer_visible_qs, queryset=Customer.objects.all()
    )


def _resolve_ids(qs: QuerySet[Any], ids: list[int], field: str) -> list[Any]:
    """Rows for ids in one query, in the given order; unknown (or invisible) ids are a 400
    naming them, exactly as an id that does not exist."""
    found = {row.pk: row for row in qs.filter(pk__in=set(ids))}
    missing = sorted({i for i in ids if i not in found})
    if missing:
        raise serializers.ValidationError({field: [f"Unknown ids: {missing}."]})
    return [found[i] for i in dict.fromkeys(ids)]


class ChannelCodeWriteSerializer(serializers.Serializer):
    channel = VisiblePrimaryKeyRelatedField(
        visible=channel_visible_qs, queryset=Channel.objects.all()
    )
    name = serializers.CharField(max_length=128)
    staff = serializers.ListField(
        child=id_field(),
        min_length=1,
        max_length=services.MAX_CODE_STAFF,
        help_text="Staff ids (1 to 100) with a WeCom userid. One: a single-member code.",
    )
    state = serializers.CharField(
        max_length=services.STATE_MAX_LENGTH,
        required=False,
        allow_blank=True,
        help_text="≤ 30 of A-Z a-z 0-9 _ -; generated when blank. Unique.",
    )
    skip_verify = serializers.BooleanField(required=False)
    welcome_text = serializers.CharField(required=False, allow_blank=True, max_length=4000)
    welcome_attachments = serializers.ListField(
        child=serializers.DictField(),
        required=False,
        max_length=services.MAX_WELCOME_ATTACHMENTS,
        help_text='send_welcome_msg attachments: [{"msgtype": "image", "image": {...}}].',
    )
    auto_tags = serializers.ListField(child=id_field(), required=False, max_length=100)
    referrer = VisiblePrimaryKeyRelatedField(
        visible=customer_visible_qs,
        queryset=Customer.objects.all(),
        required=False,
        allow_null=True,
        help_text="The referring customer (fission); set on create only.",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        user = self.context["request"].user
        if "staff" in attrs:
            attrs["staff"] = _resolve_ids(staff_visible_qs(user), attrs["staff"], "staff")
        if "auto_tags" in attrs:
            attrs["auto_tags"] = _resolve_ids(tag_visible_qs(user), attrs["auto_tags"], "auto_tags")
        if self.instance is not None and "referrer" in attrs:
            raise serializers.ValidationError({"referrer": ["Set on create only."]})
        return attrs


@extend_schema(tags=["channel codes"])
class ChannelCodeViewSet(WeComViewSetMixin, mixins.ListModelMixin, ScrmViewSet[ChannelCode]):
    """WeCom 「联系我」 QR codes of the channels; creating one creates the contact way in
    WeCom. Store staff read the codes of their store's staff."""

    filterset_class = ChannelCodeFilter
    permission_classes = [ReadOnlyUnlessSeesEverything]
    cursor_ordering = ("-id",)

    def get_queryset(self) -> QuerySet[ChannelCode]:
        return channel_code_list_qs(self.request.user)

    def get_serializer_class(self) -> type[serializers.BaseSerializer[Any]]:
        if self.action in ("create", "update", "partial_update"):
            return ChannelCodeWriteSerializer
        return ChannelCodeSerializer

    def get_object(self) -> ChannelCode:
        return channel_code_get_for_user(self.request.user, self.kwargs.get("pk"))

    def retrieve(self, request: Request, pk: str | None = None) -> Response:
        return Response(ChannelCodeSerializer(self.get_object()).data)

    @extend_schema(request=ChannelCodeWriteSerializer, responses={201: ChannelCodeSerializer})
    def create(self, request: Request) -> Response:
        serializer = ChannelCodeWriteSerializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        code = services.channel_code_create(**serializer.validated_data)
        code = channel_code_get_for_user(request.user, code.pk)
        return Response(ChannelCodeSerializer(code).data, status=status.HTTP_201_CREATED)

    def _update(self, request: Request, *, partial: bool) -> Response:
        code = self.get_object()
        serializer = ChannelCodeWriteSerializer(
            code, data=request.data, partial=partial, context={"request": request}
        )
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        if not partial:
            # PUT describes the whole code: what it leaves out goes back to the defaults.
            data.setdefault("skip_verify", True)
            data.setdefault("welcome_text", "")
            data.setdefault("welcome_attachments", [])
            data.setdefault("auto_tags", [])
        services.channel_code_update(code=code, **data)
        code = channel_code_get_for_user(request.user, code.pk)
        return Response(ChannelCodeSerializer(code).data)

    @extend_schema(request=ChannelCodeWriteSerializer, responses=ChannelCodeSerializer)
    def update(self, request: Request, pk: str | None = None) -> Response:
        return self._update(request, partial=False)

    @extend_schema(request=ChannelCodeWriteSerializer, responses=ChannelCodeSerializer)
    def partial_update(self, request: Request, pk: str | None = None) -> Response:
        return self._update(request, partial=True)

    @extend_schema(
        description="Deactivate: delete the contact way in WeCom, keep the row (inactive) "
        "so customers who came through it stay attributed. Idempotent.",
        responses={204: None},
    )
    def destroy(self, request: Request, pk: str | None = None) -> Response:
        services.channel_code_deactivate(code=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        description="Redirect (302) to the QR code image; 404 when the code has none.",
        responses={302: OpenApiResponse(description="Location: the QR image URL.")},
    )
    @action(detail=True, methods=["get"], filter_backends=[], pagination_class=None)
    def qr(self, request: Request, pk: str | None = None) -> HttpResponseRedirect:
        code = self.get_object()
        if not code.qr_code:
            raise exceptions.NotFound("This code has no QR image.")
        return HttpResponseRedirect(code.qr_code)

    @extend_schema(
        request=ReferralCodeRequestSerializer,
        responses={200: ChannelCodeSerializer},
        description="The customer's own referral code (老带新), created on the first call "
        "on the referral channel with the customer's owner (or earliest follower) as staff. "
        "Idempotent.",
    )
    @action(
        detail=False,
        methods=["post"],
        url_path="referral",
        permission_classes=[SeesEverything],
        filter_backends=[],
        pagination_class=None,
    )
    def referral(self, request: Request) -> Response:
        serializer = ReferralCodeRequestSerializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        code = services.referral_code_for(customer=serializer.validated_data["customer"])
        code = channel_code_get_for_user(request.user, code.pk)
        return Response(ChannelCodeSerializer(code).data)


# --- Sync runs -------------------------------------------------------------------------


class SyncRunSerializer(serializers.ModelSerializer[SyncRun]):
    # A plain string in the schema: an enum would collide in name with other "status" enums.
    status = serializers.CharField(read_only=True, help_text="running, succeeded or failed.")
    in_step = serializers.BooleanField(
        read_only=True,
        allow_null=True,
        help_text="wecom_follows == active_follows at the end of the run; null until then.",
    )
    duration_seconds = serializers.SerializerMethodField()
    phase = serializers.SerializerMethodField()

    class Meta:
        model = SyncRun
        fields = [
            "id",
            "status",
            "phase",
            "started_at",
            "finished_at",
            "heartbeat_at",
            "duration_seconds",
            "pages",
            "http_calls",
            "relationships",
            "created",
            "updated",
            "deleted",
            "wecom_follows",
            "active_follows",
            "in_step",
            "errors",
        ]
        read_only_fields = fields

    def get_duration_seconds(self, run: SyncRun) -> int | None:
        duration = sync_run_duration(run)
        return None if duration is None else int(duration.total_seconds())

    def get_phase(self, run: SyncRun) -> str:
        """Where the run is: staff, tags, contacts, sweep or done."""
        return str((run.checkpoint or {}).get("phase", "staff"))


@extend_schema(tags=["sync runs"])
class SyncRunViewSet(WeComViewSetMixin, mixins.ListModelMixin, ScrmViewSet[SyncRun]):
    """Full WeCom syncs with their figures and reconciliation (operators and API clients)."""

    filterset_class = SyncRunFilter
    permission_classes = [SeesEverything]
    serializer_class = SyncRunSerializer
    cursor_ordering = ("-id",)

    def get_queryset(self) -> QuerySet[SyncRun]:
        return sync_run_visible_qs(self.request.user)

    def get_object(self) -> SyncRun:
        return sync_run_get_for_user(self.request.user, self.kwargs.get("pk"))

    def retrieve(self, request: Request, pk: str | None = None) -> Response:
        return Response(SyncRunSerializer(self.get_object()).data)

    @extend_schema(
        request=None,
        responses={202: SyncRunSerializer},
        description="Start a full sync, or answer the one running; a worker executes it.",
    )
    def create(self, request: Request) -> Response:
        run = services.sync_request()
        return Response(SyncRunSerializer(run).data, status=status.HTTP_202_ACCEPTED)
