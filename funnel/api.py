"""REST API v1 for the AARRR funnel's reports (read-only, any role).

Every report takes the same filters (``funnel.filters``): the cohort of customers
acquired in ``[start, end)`` (dates in the corp's time zone), narrowed by ``channel``,
``store``, ``staff``, ``tag`` and an optional ``window_days``. Row-level permission is the
selectors': a store manager's figures count the customers of their store only, whatever
filter they pass. Bad input is a 400 in the API's error shape naming each field, never a
500.

* ``funnel/``: the five stages with conversion rates, and the repurchase rate;
* ``funnel/cohorts/``: weekly or monthly acquisition cohorts x periods since acquisition;
* ``funnel/channels/``: per channel, the stages, revenue, cost per acquired customer;
* ``funnel/trend/``: new customers, activations, purchases, referrals, losses per day,
  month or year;
* ``funnel/repurchase-due/``: customers whose predicted next purchase is near;
* ``funnel/customers/{id}/``: one customer's milestones, stage, history and cycle.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import QuerySet
from django.http import Http404
from django.urls import path
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import remove_query_param, replace_query_param
from rest_framework.views import APIView

from customers.selectors import customer_get_for_user
from funnel import selectors
from funnel.filters import ReportFilters, report_filters_from
from funnel.models import Milestones, Stage, StageChange
from scrm.api import API_PARSERS, MAX_ID, HasRole, InvalidRequest, id_field
from scrm.api_views import ErrorSerializer, ScrmAutoSchema

#: Choices and bounds of the reports' own parameters are the selectors'; checked here
#: too so that one 400 names every bad parameter along with the filters'.
COHORT_PERIODS = tuple(selectors.COHORT_PERIODS)
TREND_INTERVALS = selectors.TREND_INTERVALS
DEFAULT_COHORT_PERIOD = "week"
DEFAULT_TREND_INTERVAL = "day"
DUE_PAGE_SIZE = 50
DUE_MAX_PAGE_SIZE = 500
MAX_WITHIN_DAYS = selectors.MAX_DUE_WITHIN_DAYS


# --- Parameters ------------------------------------------------------------------------


def _validation_messages(exc: DjangoValidationError) -> dict[str, list[str]]:
    if hasattr(exc, "error_dict"):
        return {field: [str(m) for m in messages] for field, messages in exc.message_dict.items()}
    return {"non_field_errors": [str(m) for m in exc.messages]}


def parse_report_request(
    params: Any, extra: type[serializers.Serializer] | None = None
) -> tuple[ReportFilters, dict[str, Any]]:
    """The shared filters and a report's own parameters, with every bad field in ONE 400
    (a client fixing ``start`` should not then learn that ``interval`` is wrong too)."""
    errors: dict[str, Any] = {}
    filters: ReportFilters | None = None
    try:
        filters = report_filters_from(params)
    except DjangoValidationError as exc:
        errors.update(_validation_messages(exc))
    options: dict[str, Any] = {}
    if extra is not None:
        serializer = extra(data=params)
        if serializer.is_valid():
            options = dict(serializer.validated_data)
        else:
            errors.update(serializer.errors)
    if errors or filters is None:
        raise InvalidRequest("The report's parameters are not valid.", errors)
    return filters, options


class CohortParamsSerializer(serializers.Serializer):
    period = serializers.ChoiceField(choices=COHORT_PERIODS, default=DEFAULT_COHORT_PERIOD)
    periods = serializers.IntegerField(
        required=False, min_value=1, max_value=selectors.MAX_COHORT_PERIODS
    )


class TrendParamsSerializer(serializers.Serializer):
    interval = serializers.ChoiceField(choices=TREND_INTERVALS, default=DEFAULT_TREND_INTERVAL)


class DueParamsSerializer(serializers.Serializer):
    as_of = serializers.DateField(required=False, input_formats=["%Y-%m-%d"])
    within_days = serializers.IntegerField(default=7, min_value=0, max_value=MAX_WITHIN_DAYS)
    store = id_field(required=False)
    staff = id_field(required=False)
    channel = id_field(required=False)
    tag = id_field(required=False)
    limit = serializers.IntegerField(
        default=DUE_PAGE_SIZE, min_value=1, max_value=DUE_MAX_PAGE_SIZE
    )
    offset = serializers.IntegerField(default=0, min_value=0, max_value=MAX_ID)


def _filter_parameters() -> list[OpenApiParameter]:
    return [
        OpenApiParameter(
            "start",
            OpenApiTypes.DATE,
            required=True,
            description="First acquisition day of the cohort (YYYY-MM-DD, corp time zone).",
        ),
        OpenApiParameter(
            "end",
            OpenApiTypes.DATE,
            required=True,
            description="First day NOT in the cohort (exclusive; after start).",
        ),
        OpenApiParameter("channel", OpenApiTypes.INT, description="First-touch channel id."),
        OpenApiParameter("store", OpenApiTypes.INT, description="Store id."),
        OpenApiParameter(
            "staff",
            OpenApiTypes.INT,
            description="Staff id: customers owned by them or ever added by them.",
        ),
        OpenApiParameter("tag", OpenApiTypes.INT, description="Tag id."),
        OpenApiParameter(
            "window_days",
            OpenApiTypes.INT,
            description="Count a milestone only when reached within this many days of "
            "acquisition (1 to 3650).",
        ),
    ]


# --- Output ----------------------------------------------------------------------------

STAGE_NAMES = [stage.name.lower() for stage in Stage]


class FunnelStageSerializer(serializers.Serializer):
    stage = serializers.ChoiceField(choices=STAGE_NAMES, help_text="AARRR order.")
    # The metaclass moves declared fields off the class, so this does not shadow .label.
    label = serializers.CharField(  # type: ignore[assignment]
        help_text="The stage's name in the request's language."
    )
    count = serializers.IntegerField(help_text="Customers who reached this stage and all before.")
    rate_from_previous = serializers.FloatField(
        allow_null=True, help_text="count / previous stage's count; null when that is 0."
    )
    rate_from_first = serializers.FloatField(
        allow_null=True, help_text="count / acquired; null when nobody was acquired."
    )


class RepurchaseSerializer(serializers.Serializer):
    count = serializers.IntegerField(help_text="Customers with a second paid order.")
    rate = serializers.FloatField(
        allow_null=True, help_text="count / first_purchases; null when nobody bought."
    )
    first_purchases = serializers.IntegerField(help_text="Customers with a first paid order.")


class FiltersEchoSerializer(serializers.Serializer):
    """The filters the figures are for, as URL parameters (absent ones left out)."""

    start = serializers.DateField()
    end = serializers.DateField()
    channel = serializers.CharField(required=False)
    store = serializers.CharField(required=False)
    staff = serializers.CharField(required=False)
    tag = serializers.CharField(required=False)
    window_days = serializers.CharField(required=False)


class FunnelReportSerializer(serializers.Serializer):
    filters = FiltersEchoSerializer()
    stages = FunnelStageSerializer(many=True)
    repurchase = RepurchaseSerializer()


class ChannelRowSerializer(serializers.Serializer):
    channel_id = serializers.IntegerField(allow_null=True, help_text="null: no known channel.")
    channel = serializers.CharField(allow_null=True)
    acquired = serializers.IntegerField()
    activation = serializers.IntegerField(help_text="Customers at stage 2 or beyond.")
    retention = serializers.IntegerField()
    revenue = serializers.IntegerField()
    referral = serializers.IntegerField()
    first_purchases = serializers.IntegerField()
    repurchases = serializers.IntegerField()
    repurchase_rate = serializers.FloatField(allow_null=True)
    revenue_amount = serializers.CharField(help_text='Paid order amounts, decimal: "1234.00".')
    cost = serializers.CharField(
        allow_null=True,
        help_text="The channel's cost, decimal; null for a store manager or store staff "
        "(a corp-wide cost is not theirs to divide).",
    )
    cost_per_acquired = serializers.CharField(
        allow_null=True,
        help_text="cost / acquired, decimal; null when none was acquired or cost is hidden.",
    )


class ChannelReportSerializer(serializers.Serializer):
    filters = FiltersEchoSerializer()
    rows = ChannelRowSerializer(many=True)


class CohortSerializer(serializers.Serializer):
    cohort = serializers.DateField(help_text="First day of the acquisition week or month.")
    size = serializers.IntegerField()
    engaged = serializers.ListField(
        child=serializers.FloatField(allow_null=True),
        help_text="Per period since acquisition: share with any engagement; null when the "
        "period has not ended yet.",
    )
    paid = serializers.ListField(
        child=serializers.FloatField(allow_null=True), help_text="Share who paid, per period."
    )
    revenue_per_customer = serializers.ListField(
        child=serializers.CharField(allow_null=True), help_text="Decimal strings, per period."
    )


class CohortReportSerializer(serializers.Serializer):
    filters = FiltersEchoSerializer()
    period = serializers.ChoiceField(choices=COHORT_PERIODS)
    periods = serializers.IntegerField()
    cohorts = CohortSerializer(many=True)


class TrendRowSerializer(serializers.Serializer):
    period = serializers.DateField(help_text="First day of the day, month or year.")
    new_customers = serializers.IntegerField()
    activations = serializers.IntegerField()
    first_purchases = serializers.IntegerField()
    repurchases = serializers.IntegerField()
    referrals = serializers.IntegerField()
    lost = serializers.IntegerField()


class TrendReportSerializer(serializers.Serializer):
    filters = FiltersEchoSerializer()
    interval = serializers.ChoiceField(choices=TREND_INTERVALS)
    rows = TrendRowSerializer(many=True)


class DueRowSerializer(serializers.Serializer):
    customer = serializers.IntegerField(source="customer_id")
    name = serializers.CharField(source="customer.name")
    store = serializers.IntegerField(source="store_id", allow_null=True)
    store_name = serializers.CharField(source="store.name", allow_null=True, default=None)
    owner = serializers.IntegerField(source="owner_id", allow_null=True)
    owner_name = serializers.CharField(source="owner.name", allow_null=True, default=None)
    paid_orders = serializers.IntegerField()
    last_paid_at = serializers.DateTimeField()
    median_interval_days = serializers.SerializerMethodField()
    next_purchase_at = serializers.DateTimeField()

    def get_median_interval_days(self, row: Milestones) -> float | None:
        interval = row.purchase_interval
        return None if interval is None else interval.total_seconds() / 86_400


class DuePageSerializer(serializers.Serializer):
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = DueRowSerializer(many=True)


class RepurchaseCycleSerializer(serializers.Serializer):
    paid_orders = serializers.IntegerField()
    median_interval_days = serializers.FloatField(allow_null=True)
    last_paid_at = serializers.DateTimeField(allow_null=True)
    next_purchase_at = serializers.DateTimeField(allow_null=True)


class MilestoneTimesSerializer(serializers.Serializer):
    acquisition = serializers.DateTimeField(source="acquired_at")
    activation = serializers.DateTimeField(source="activated_at", allow_null=True)
    retention = serializers.DateTimeField(source="retained_at", allow_null=True)
    revenue = serializers.DateTimeField(source="revenue_at", allow_null=True)
    repurchase = serializers.DateTimeField(source="repurchase_at", allow_null=True)
    referral = serializers.DateTimeField(source="referral_at", allow_null=True)


class StageReachedSerializer(serializers.Serializer):
    """When each stage was reached: the latest of its milestone and the earlier ones'."""

    acquisition = serializers.DateTimeField(source="acquired_at")
    activation = serializers.DateTimeField(source="reached_activation_at", allow_null=True)
    retention = serializers.DateTimeField(source="reached_retention_at", allow_null=True)
    revenue = serializers.DateTimeField(source="reached_revenue_at", allow_null=True)
    referral = serializers.DateTimeField(source="reached_referral_at", allow_null=True)


class StageChangeSerializer(serializers.Serializer):
    from_stage = serializers.SerializerMethodField()
    to_stage = serializers.SerializerMethodField()
    at = serializers.DateTimeField()

    def get_from_stage(self, change: StageChange) -> str:
        return Stage(change.from_stage).name.lower()

    def get_to_stage(self, change: StageChange) -> str:
        return Stage(change.to_stage).name.lower()


class CustomerFunnelSerializer(serializers.Serializer):
    customer = serializers.IntegerField()
    stage = serializers.ChoiceField(
        choices=STAGE_NAMES, allow_null=True, help_text="null until the funnel has seen them."
    )
    stage_label = serializers.CharField(allow_null=True)
    milestones = MilestoneTimesSerializer(allow_null=True)
    reached = StageReachedSerializer(allow_null=True)
    history = StageChangeSerializer(many=True, help_text="Changes of the stage, oldest first.")
    repurchase_cycle = RepurchaseCycleSerializer()


# --- Views -----------------------------------------------------------------------------


class FunnelAPIView(APIView):
    """Base of the report endpoints: a role is required, rows are scoped by selectors."""

    schema = ScrmAutoSchema()
    parser_classes = API_PARSERS
    permission_classes = [HasRole]


_REPORT_ERRORS = {400: ErrorSerializer}


@extend_schema(
    tags=["funnel"],
    parameters=_filter_parameters(),
    responses={200: FunnelReportSerializer, **_REPORT_ERRORS},
    description="The AARRR funnel of a cohort: per stage the customers who reached it (and "
    "every stage before it, in any order), the conversion from the previous stage and from "
    "acquisition; plus the repurchase count and rate.",
)
class FunnelReportView(FunnelAPIView):
    def get(self, request: Request) -> Response:
        filters, _ = parse_report_request(request.query_params)
        report = selectors.funnel_report(user=request.user, filters=filters)
        return Response(FunnelReportSerializer(report).data)


@extend_schema(
    tags=["funnel"],
    parameters=[
        *_filter_parameters(),
        OpenApiParameter(
            "period",
            OpenApiTypes.STR,
            enum=list(COHORT_PERIODS),
            description=f"Cohort length (default {DEFAULT_COHORT_PERIOD}).",
        ),
        OpenApiParameter(
            "periods",
            OpenApiTypes.INT,
            description=f"Periods since acquisition (1 to {selectors.MAX_COHORT_PERIODS}, "
            "default 12).",
        ),
    ],
    responses={200: CohortReportSerializer, **_REPORT_ERRORS},
    description="Weekly or monthly acquisition cohorts x periods since acquisition: the "
    "share of the cohort with any engagement in each period, the share who paid, and "
    "revenue per customer.",
)
class CohortReportView(FunnelAPIView):
    def get(self, request: Request) -> Response:
        filters, options = parse_report_request(request.query_params, CohortParamsSerializer)
        kwargs: dict[str, Any] = {"period": options["period"]}
        if options.get("periods") is not None:
            kwargs["periods"] = options["periods"]
        report = selectors.cohort_report(user=request.user, filters=filters, **kwargs)
        return Response(CohortReportSerializer({"filters": filters.as_query(), **report}).data)


@extend_schema(
    tags=["funnel"],
    parameters=_filter_parameters(),
    responses={200: ChannelReportSerializer, **_REPORT_ERRORS},
    description="Per first-touch channel: customers acquired, the count at each stage, "
    "repurchases, revenue, the channel's cost and cost per acquired customer.",
)
class ChannelReportView(FunnelAPIView):
    def get(self, request: Request) -> Response:
        filters, _ = parse_report_request(request.query_params)
        rows = selectors.channel_report(user=request.user, filters=filters)
        return Response(ChannelReportSerializer({"filters": filters.as_query(), "rows": rows}).data)


@extend_schema(
    tags=["funnel"],
    parameters=[
        *_filter_parameters(),
        OpenApiParameter(
            "interval",
            OpenApiTypes.STR,
            enum=list(TREND_INTERVALS),
            description=f"Bucket length (default {DEFAULT_TREND_INTERVAL}).",
        ),
    ],
    responses={200: TrendReportSerializer, **_REPORT_ERRORS},
    description="Per day, month or year of [start, end): new customers, activations, first "
    "purchases, repurchases, referrals and lost customers.",
)
class TrendReportView(FunnelAPIView):
    def get(self, request: Request) -> Response:
        filters, options = parse_report_request(request.query_params, TrendParamsSerializer)
        rows = selectors.trend_report(
            user=request.user, filters=filters, interval=options["interval"]
        )
        data = {"filters": filters.as_query(), "interval": options["interval"], "rows": rows}
        return Response(TrendReportSerializer(data).data)


def due_options(params: Any) -> dict[str, Any]:
    """The due list's parameters, or a 400 naming each bad one."""
    serializer = DueParamsSerializer(data=params)
    if not serializer.is_valid():
        raise InvalidRequest("The list's parameters are not valid.", serializer.errors)
    return dict(serializer.validated_data)


def due_qs(user: Any, options: dict[str, Any]) -> QuerySet[Milestones]:
    as_of: date | None = options.get("as_of")
    return selectors.repurchase_due_qs(
        user=user,
        as_of=as_of,
        within_days=options["within_days"],
        store_id=options.get("store"),
        staff_id=options.get("staff"),
        channel_id=options.get("channel"),
        tag_id=options.get("tag"),
    )


@extend_schema(
    tags=["funnel"],
    parameters=[
        OpenApiParameter(
            "as_of", OpenApiTypes.DATE, description="The day to look from (default today)."
        ),
        OpenApiParameter(
            "within_days",
            OpenApiTypes.INT,
            description=f"Due up to this many days after as_of (0 to {MAX_WITHIN_DAYS}, "
            "default 7); overdue customers are included.",
        ),
        OpenApiParameter("store", OpenApiTypes.INT),
        OpenApiParameter("staff", OpenApiTypes.INT),
        OpenApiParameter("channel", OpenApiTypes.INT),
        OpenApiParameter("tag", OpenApiTypes.INT),
        OpenApiParameter(
            "limit",
            OpenApiTypes.INT,
            description=f"Rows per page (1 to {DUE_MAX_PAGE_SIZE}, default {DUE_PAGE_SIZE}).",
        ),
        OpenApiParameter("offset", OpenApiTypes.INT, description="Rows to skip."),
    ],
    responses={200: DuePageSerializer, **_REPORT_ERRORS},
    description="Customers with a repurchase cycle (two paid orders or more) whose "
    "predicted next purchase (last purchase + median interval) is due, soonest first. "
    "Pages follow `next`; no total is counted.",
)
class RepurchaseDueView(FunnelAPIView):
    def get(self, request: Request) -> Response:
        options = due_options(request.query_params)
        limit, offset = options["limit"], options["offset"]
        # One row more than the page says whether a next page exists, without COUNT(*).
        rows = list(due_qs(request.user, options)[offset : offset + limit + 1])
        url = request.build_absolute_uri()
        next_url = (
            replace_query_param(replace_query_param(url, "offset", offset + limit), "limit", limit)
            if len(rows) > limit
            else None
        )
        previous_url: str | None = None
        if offset > 0:
            previous_url = replace_query_param(url, "limit", limit)
            previous_url = (
                replace_query_param(previous_url, "offset", offset - limit)
                if offset > limit
                else remove_query_param(previous_url, "offset")
            )
        page = {"next": next_url, "previous": previous_url, "results": rows[:limit]}
        return Response(DuePageSerializer(page).data)


@extend_schema(
    tags=["funnel"],
    responses={200: CustomerFunnelSerializer},
    description="One customer's milestone times, current stage, stage history and "
    "repurchase cycle. 404 for a customer the caller may not see.",
)
class CustomerFunnelView(FunnelAPIView):
    def get(self, request: Request, customer_id: int) -> Response:
        if customer_id > MAX_ID:
            # Beyond a bigint: no such customer (the database would refuse the number).
            raise Http404("No such customer.")
        customer = customer_get_for_user(request.user, customer_id)
        milestones = Milestones.objects.filter(customer=customer).first()
        history = StageChange.objects.filter(customer=customer).order_by("at", "id")
        stage = None if milestones is None else Stage(milestones.stage)
        data = {
            "customer": customer.pk,
            "stage": None if stage is None else stage.name.lower(),
            "stage_label": None if stage is None else str(stage.label),
            "milestones": milestones,
            "reached": milestones,
            "history": history,
            "repurchase_cycle": selectors.customer_repurchase_cycle(customer),
        }
        return Response(CustomerFunnelSerializer(data).data)


#: Mounted under /api/v1/ by ``scrm.api_urls``.
urlpatterns = [
    path("funnel/", FunnelReportView.as_view(), name="funnel-report"),
    path("funnel/cohorts/", CohortReportView.as_view(), name="funnel-cohorts"),
    path("funnel/channels/", ChannelReportView.as_view(), name="funnel-channels"),
    path("funnel/trend/", TrendReportView.as_view(), name="funnel-trend"),
    path("funnel/repurchase-due/", RepurchaseDueView.as_view(), name="funnel-repurchase-due"),
    path(
        "funnel/customers/<int:customer_id>/",
        CustomerFunnelView.as_view(),
        name="funnel-customer",
    ),
]
