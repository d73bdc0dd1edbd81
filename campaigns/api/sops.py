"""SOPs: definitions with their current version's steps nested in the body.

Creating makes a draft (version 1). Updating a draft edits it in place; updating an
active or paused SOP publishes a new version, and ``in_flight`` (keep, migrate or stop)
says what happens to the customers enrolled on the previous one; the answer reports the
new version number and those customers. Reads for every role; writes, enrolment and the
preview (it lists customers of every store) for operators and API clients.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from campaigns.filters import SopFilter
from campaigns.models import (
    InFlightPolicy,
    QuietAction,
    Sop,
    SopStep,
    SopVersion,
    StepAction,
    TriggerKind,
)
from campaigns.selectors.preview import PREVIEW_MAX_DAYS, SopPreview, sop_preview
from campaigns.selectors.touchpoints import (
    SOP_VERSION_FIELDS,
    sop_get_for_user,
    sop_in_flight_counts,
    sop_list_qs,
    sop_versions,
)
from campaigns.services import enrollment, sops
from scrm.api import AwareDateTimeField, HasRole, ReadOnlyUnlessSeesEverything, id_field
from scrm.api_views import ScrmViewSet
from scrm.roles import sees_everything

# --- Output ----------------------------------------------------------------------------


class StepSerializer(serializers.ModelSerializer[SopStep]):
    action = serializers.CharField(read_only=True)
    content_name = serializers.CharField(source="content.name", read_only=True, default=None)

    class Meta:
        model = SopStep
        fields = [
            "id",
            "position",
            "offset_days",
            "at_time",
            "offset_minutes",
            "action",
            "content",
            "content_name",
            "tag",
            "instruction",
        ]
        read_only_fields = fields


VERSION_FIELDS = [*SOP_VERSION_FIELDS, "in_flight"]


class VersionSerializer(serializers.ModelSerializer[SopVersion]):
    steps = StepSerializer(many=True, read_only=True)
    enrolled = serializers.IntegerField(read_only=True, required=False)

    class Meta:
        model = SopVersion
        fields = [
            "id",
            "number",
            *VERSION_FIELDS,
            "published_at",
            "created_at",
            "enrolled",
            "steps",
        ]
        read_only_fields = fields


class SopSerializer(serializers.ModelSerializer[Sop]):
    status = serializers.CharField(read_only=True, help_text="draft, active, paused or archived.")
    version = VersionSerializer(source="current_version", read_only=True)
    enrolled = serializers.IntegerField(read_only=True, required=False)
    in_flight = serializers.IntegerField(read_only=True, required=False)
    holdout = serializers.IntegerField(read_only=True, required=False)
    sent = serializers.IntegerField(read_only=True, required=False)
    pending = serializers.IntegerField(read_only=True, required=False)

    class Meta:
        model = Sop
        fields = [
            "id",
            "name",
            "description",
            "campaign",
            "status",
            "activated_at",
            "version",
            "enrolled",
            "in_flight",
            "holdout",
            "sent",
            "pending",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


# --- Input -----------------------------------------------------------------------------


class StepWriteSerializer(serializers.Serializer):
    offset_days = serializers.IntegerField(min_value=0, max_value=3650, required=False, default=0)
    at_time = serializers.TimeField(
        required=False, allow_null=True, default=None, help_text="HH:MM in the corp's time zone."
    )
    offset_minutes = serializers.IntegerField(
        min_value=0, max_value=60 * 24 * 365, required=False, default=0
    )
    action = serializers.ChoiceField(choices=StepAction.choices)
    content = id_field(required=False, allow_null=True, default=None)
    tag = id_field(required=False, allow_null=True, default=None)
    instruction = serializers.CharField(
        max_length=255, required=False, allow_blank=True, default=""
    )


class SopWriteSerializer(serializers.Serializer):
    """Shapes only: the rules between fields (a message step needs content, quiet hours
    need both ends, a trigger's settings) are the service's, reported per field."""

    name = serializers.CharField(max_length=128)
    description = serializers.CharField(required=False, allow_blank=True, max_length=5000)
    campaign = id_field(required=False, allow_null=True)
    trigger_kind = serializers.ChoiceField(choices=TriggerKind.choices)
    trigger_config = serializers.DictField(required=False)
    audience = serializers.DictField(required=False)
    quiet_start = serializers.TimeField(required=False, allow_null=True)
    quiet_end = serializers.TimeField(required=False, allow_null=True)
    quiet_action = serializers.ChoiceField(choices=QuietAction.choices, required=False)
    cap_count = serializers.IntegerField(min_value=1, required=False, allow_null=True)
    cap_days = serializers.IntegerField(min_value=1, required=False, allow_null=True)
    exit_on_purchase = serializers.BooleanField(required=False)
    exit_on_lost = serializers.BooleanField(required=False)
    exit_stage = serializers.IntegerField(min_value=1, max_value=5, required=False, allow_null=True)
    in_flight = serializers.ChoiceField(
        choices=InFlightPolicy.choices,
        required=False,
        help_text="On updating an active SOP: keep (finish on their version), migrate "
        "(pending steps move to the new version) or stop (pending steps are skipped).",
    )
    steps = serializers.ListField(child=StepWriteSerializer(), min_length=1, max_length=50)


class EnrollResultSerializer(serializers.Serializer):
    enrolled = serializers.IntegerField()
    holdout = serializers.IntegerField()
    touchpoints = serializers.IntegerField()
    skipped = serializers.IntegerField()


class PreviewQuerySerializer(serializers.Serializer):
    window_days = serializers.IntegerField(
        min_value=1, max_value=PREVIEW_MAX_DAYS, required=False, default=7
    )
    now = AwareDateTimeField(required=False, help_text="Preview as of this time (default now).")


def preview_as_json(preview: SopPreview, *, rows: int = 100) -> dict[str, Any]:
    """The preview's summary and calendar, and its first ``rows`` rows (the CSV has all)."""
    return {
        "summary": asdict(preview.summary),
        "calendar": [asdict(day) for day in preview.calendar],
        "rows": [asdict(row) for row in preview.iter_rows(limit=rows)],
    }


class SeesEverything(HasRole):
    """Operators and API clients only, for reading too (a preview lists customers of
    every store)."""

    message = "Only operators and API clients may use this."

    def has_permission(self, request: Request, view: APIView) -> bool:
        return super().has_permission(request, view) and sees_everything(request.user)


# --- Viewset ---------------------------------------------------------------------------


@extend_schema(tags=["sops"])
class SopViewSet(mixins.ListModelMixin, ScrmViewSet[Sop]):
    """SOPs (standard operating procedures): trigger, audience, steps, versions."""

    filterset_class = SopFilter
    permission_classes = [ReadOnlyUnlessSeesEverything]
    serializer_class = SopSerializer
    cursor_ordering = ("-id",)

    def get_queryset(self) -> QuerySet[Sop]:
        return sop_list_qs(self.request.user).prefetch_related("current_version__steps__content")

    def get_object(self) -> Sop:
        return sop_get_for_user(self.request.user, self.kwargs.get("pk"))

    def _output(self, sop: Sop) -> dict[str, Any]:
        fresh = self.get_queryset().get(pk=sop.pk)
        return dict(SopSerializer(fresh).data)

    def retrieve(self, request: Request, pk: str | None = None) -> Response:
        return Response(self._output(self.get_object()))

    @extend_schema(request=SopWriteSerializer, responses={201: SopSerializer})
    def create(self, request: Request) -> Response:
        serializer = SopWriteSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        sop = sops.sop_create(data=serializer.validated_data, user=request.user)
        return Response(self._output(sop), status=status.HTTP_201_CREATED)

    def _update(self, request: Request, *, partial: bool) -> Response:
        sop = self.get_object()
        serializer = SopWriteSerializer(data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        # The service takes a partial definition (missing keys keep their values), and
        # "in_flight" only from the request: it is a decision about this edit.
        data = dict(serializer.validated_data)
        before = sop_in_flight_counts(sop)
        previous = sop.current_version_id
        version = sops.sop_update(sop=sop, data=data, user=request.user)
        after = sop_in_flight_counts(sop)
        in_flight_before = sum(before.values())
        moved = after.get(version.pk, 0) if version.pk != previous else 0
        kept = sum(n for v, n in after.items() if v != version.pk)
        body = {
            "sop": self._output(sop),
            "version": version.number,
            "published": version.pk != previous,
            "in_flight": {
                "policy": data.get("in_flight", InFlightPolicy.KEEP),
                "customers": in_flight_before,
                "kept": kept,
                "migrated": moved,
                "stopped": max(in_flight_before - kept - moved, 0),
            },
        }
        return Response(body)

    @extend_schema(
        request=SopWriteSerializer,
        description="Replace the SOP's definition. On an active SOP this publishes a new "
        "version; the answer says what happened to the customers in flight.",
    )
    def update(self, request: Request, pk: str | None = None) -> Response:
        return self._update(request, partial=False)

    @extend_schema(request=SopWriteSerializer)
    def partial_update(self, request: Request, pk: str | None = None) -> Response:
        return self._update(request, partial=True)

    @extend_schema(request=None, responses=SopSerializer, description="Start enrolling.")
    @action(detail=True, methods=["post"], filter_backends=[], pagination_class=None)
    def activate(self, request: Request, pk: str | None = None) -> Response:
        sop = sops.sop_activate(sop=self.get_object(), user=request.user)
        return Response(self._output(sop))

    @extend_schema(
        request=None,
        responses=SopSerializer,
        description="Stop enrolling and dispatching; pending touchpoints wait.",
    )
    @action(detail=True, methods=["post"], filter_backends=[], pagination_class=None)
    def pause(self, request: Request, pk: str | None = None) -> Response:
        sop = sops.sop_pause(sop=self.get_object())
        return Response(self._output(sop))

    @extend_schema(
        request=None,
        responses=SopSerializer,
        description="End the SOP for good; pending touchpoints are skipped.",
    )
    @action(detail=True, methods=["post"], filter_backends=[], pagination_class=None)
    def archive(self, request: Request, pk: str | None = None) -> Response:
        sop = sops.sop_archive(sop=self.get_object())
        return Response(self._output(sop))

    @extend_schema(
        request=None,
        responses=EnrollResultSerializer,
        description="Manual trigger: enrol the SOP's audience now (one occurrence).",
    )
    @action(detail=True, methods=["post"], filter_backends=[], pagination_class=None)
    def enrol(self, request: Request, pk: str | None = None) -> Response:
        result = enrollment.sop_enroll_segment(sop=self.get_object(), user=request.user)
        return Response(EnrollResultSerializer(result).data)

    @extend_schema(responses=VersionSerializer(many=True))
    @action(detail=True, methods=["get"], filter_backends=[], pagination_class=None)
    def versions(self, request: Request, pk: str | None = None) -> Response:
        versions = sop_versions(self.get_object())
        return Response(VersionSerializer(versions, many=True).data)

    @extend_schema(
        parameters=[
            OpenApiParameter("window_days", int, description="Days to look at (default 7)."),
            OpenApiParameter("now", str, description="Preview as of (ISO 8601, default now)."),
        ],
        responses={200: OpenApiTypes.OBJECT},
        description="A dry run (works on a draft): who would enter in the window, when "
        "each step would fire, collisions with other SOPs on the same day, and the quota. "
        "All rows: /campaigns/sops/{id}/preview.csv.",
    )
    @action(
        detail=True,
        methods=["get"],
        filter_backends=[],
        pagination_class=None,
        permission_classes=[SeesEverything],
    )
    def preview(self, request: Request, pk: str | None = None) -> Response:
        query = PreviewQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        now: datetime = query.validated_data.get("now") or timezone.now()
        preview = sop_preview(
            sop_or_version=self.get_object(),
            now=now,
            window_days=query.validated_data["window_days"],
            user=request.user,
        )
        return Response(preview_as_json(preview))
