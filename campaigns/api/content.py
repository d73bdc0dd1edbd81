"""Content library and campaigns: CRUD over ``campaigns.services.content`` and
``campaigns.services.campaigns`` (reads for every role, writes for operators and API
clients)."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from campaigns.filters import CampaignFilter, ContentFilter
from campaigns.models import Campaign, CampaignGoal, Content
from campaigns.selectors.reports import campaign_report
from campaigns.selectors.touchpoints import (
    campaign_get_for_user,
    campaign_list_qs,
    content_get_for_user,
    content_list_qs,
)
from campaigns.services import campaigns as campaign_services
from campaigns.services import content as content_services
from scrm.api import AwareDateTimeField, ReadOnlyUnlessSeesEverything, id_field
from scrm.api_views import ScrmViewSet

# --- Content ---------------------------------------------------------------------------


class ContentSerializer(serializers.ModelSerializer[Content]):
    used_by = serializers.IntegerField(
        read_only=True, required=False, help_text="SOP steps (of any version) that use it."
    )
    kind = serializers.CharField(read_only=True, help_text="text, image, link or miniprogram.")

    class Meta:
        model = Content
        fields = [
            "id",
            "name",
            "kind",
            "text",
            "attachments",
            "coupon_batch",
            "is_archived",
            "used_by",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class ContentWriteSerializer(serializers.Serializer):
    """Shapes only; WeCom's rules (attachment shapes, ≤ 9, 4000 bytes, a batch for
    ``{coupon}``) are the service's, reported per field (``attachments[2].msgtype``)."""

    name = serializers.CharField(max_length=128)
    text = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False)
    attachments = serializers.ListField(
        child=serializers.JSONField(),
        required=False,
        help_text='WeCom attachments: [{"msgtype": "link", "link": {"title": ..., "url": ...}}]',
    )
    coupon_batch = id_field(required=False, allow_null=True)


@extend_schema(tags=["contents"])
class ContentViewSet(mixins.ListModelMixin, ScrmViewSet[Content]):
    """Reusable messages with variables {name} {staff} {store} {coupon}."""

    filterset_class = ContentFilter
    permission_classes = [ReadOnlyUnlessSeesEverything]
    serializer_class = ContentSerializer
    cursor_ordering = ("-id",)

    def get_queryset(self) -> QuerySet[Content]:
        return content_list_qs(self.request.user)

    def get_object(self) -> Content:
        return content_get_for_user(self.request.user, self.kwargs.get("pk"))

    def _output(self, content: Content) -> dict[str, Any]:
        fresh = content_list_qs(self.request.user).get(pk=content.pk)
        return dict(ContentSerializer(fresh).data)

    def retrieve(self, request: Request, pk: str | None = None) -> Response:
        return Response(self._output(self.get_object()))

    @extend_schema(request=ContentWriteSerializer, responses={201: ContentSerializer})
    def create(self, request: Request) -> Response:
        serializer = ContentWriteSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        content = content_services.content_create(data=serializer.validated_data, user=request.user)
        return Response(self._output(content), status=status.HTTP_201_CREATED)

    def _update(self, request: Request, *, partial: bool) -> Response:
        content = self.get_object()
        serializer = ContentWriteSerializer(data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        if not partial:
            # PUT describes the whole content: what it leaves out goes back to empty.
            data.setdefault("text", "")
            data.setdefault("attachments", [])
            data.setdefault("coupon_batch", None)
        content_services.content_update(content=content, data=data)
        return Response(self._output(content))

    @extend_schema(request=ContentWriteSerializer, responses=ContentSerializer)
    def update(self, request: Request, pk: str | None = None) -> Response:
        return self._update(request, partial=False)

    @extend_schema(request=ContentWriteSerializer, responses=ContentSerializer)
    def partial_update(self, request: Request, pk: str | None = None) -> Response:
        return self._update(request, partial=True)

    @extend_schema(
        description="Archive the content: it leaves the library, and SOP steps that use it "
        "(SOP versions are immutable) keep sending it. Idempotent.",
        responses={204: None},
    )
    def destroy(self, request: Request, pk: str | None = None) -> Response:
        content_services.content_archive(content=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- Campaigns -------------------------------------------------------------------------


class CampaignSerializer(serializers.ModelSerializer[Campaign]):
    status = serializers.CharField(read_only=True, help_text="draft, active or ended.")
    sops_count = serializers.IntegerField(read_only=True, required=False)
    members_count = serializers.IntegerField(read_only=True, required=False)
    holdout_count = serializers.IntegerField(read_only=True, required=False)

    class Meta:
        model = Campaign
        fields = [
            "id",
            "name",
            "description",
            "goal",
            "goal_days",
            "holdout_percent",
            "status",
            "starts_at",
            "ends_at",
            "sops_count",
            "members_count",
            "holdout_count",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class CampaignWriteSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=128)
    description = serializers.CharField(required=False, allow_blank=True, max_length=5000)
    goal = serializers.ChoiceField(choices=CampaignGoal.choices, required=False)
    goal_days = serializers.IntegerField(min_value=1, max_value=365, required=False)
    holdout_percent = serializers.IntegerField(min_value=0, max_value=50, required=False)
    # A plain string in the schema (the service checks it): an enum would collide in
    # name with the other "status" enums.
    status = serializers.CharField(required=False, help_text="draft, active or ended.")
    starts_at = AwareDateTimeField(required=False, allow_null=True)
    ends_at = AwareDateTimeField(required=False, allow_null=True)


@extend_schema(tags=["campaigns"])
class CampaignViewSet(mixins.ListModelMixin, ScrmViewSet[Campaign]):
    """Campaigns: a goal, the SOPs working toward it, and a held-out control share."""

    filterset_class = CampaignFilter
    permission_classes = [ReadOnlyUnlessSeesEverything]
    serializer_class = CampaignSerializer
    cursor_ordering = ("-id",)

    def get_queryset(self) -> QuerySet[Campaign]:
        return campaign_list_qs(self.request.user)

    def get_object(self) -> Campaign:
        return campaign_get_for_user(self.request.user, self.kwargs.get("pk"))

    def _output(self, campaign: Campaign) -> dict[str, Any]:
        fresh = campaign_list_qs(self.request.user).get(pk=campaign.pk)
        return dict(CampaignSerializer(fresh).data)

    def retrieve(self, request: Request, pk: str | None = None) -> Response:
        return Response(self._output(self.get_object()))

    @extend_schema(request=CampaignWriteSerializer, responses={201: CampaignSerializer})
    def create(self, request: Request) -> Response:
        serializer = CampaignWriteSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        campaign = campaign_services.campaign_create(
            data=serializer.validated_data, user=request.user
        )
        return Response(self._output(campaign), status=status.HTTP_201_CREATED)

    def _update(self, request: Request, *, partial: bool) -> Response:
        campaign = self.get_object()
        serializer = CampaignWriteSerializer(data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        campaign_services.campaign_update(campaign=campaign, data=serializer.validated_data)
        return Response(self._output(campaign))

    @extend_schema(request=CampaignWriteSerializer, responses=CampaignSerializer)
    def update(self, request: Request, pk: str | None = None) -> Response:
        return self._update(request, partial=False)

    @extend_schema(request=CampaignWriteSerializer, responses=CampaignSerializer)
    def partial_update(self, request: Request, pk: str | None = None) -> Response:
        return self._update(request, partial=True)

    @extend_schema(
        description="Enrolled, sent, confirmed and converted customers, treatment vs the "
        "holdout, and the lift with its 95 % confidence interval (Newcombe), per SOP too.",
        responses={200: OpenApiTypes.OBJECT},
    )
    @action(detail=True, methods=["get"], filter_backends=[], pagination_class=None)
    def report(self, request: Request, pk: str | None = None) -> Response:
        campaign = self.get_object()
        return Response(campaign_report(campaign=campaign, user=request.user))
