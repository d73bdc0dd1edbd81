"""FilterSets shared by the campaigns dashboard lists and the API: one class per list, so
a filter means the same thing in a URL of either (``/campaigns/touchpoints/?status=skipped``
and ``/api/v1/touchpoints/?status=skipped`` show the same rows)."""

from __future__ import annotations

from typing import Any

import django_filters
from django.db.models import Q, QuerySet
from django.utils.translation import gettext_lazy as _

from campaigns.models import (
    Campaign,
    CampaignStatus,
    Content,
    ContentKind,
    Coupon,
    CouponBatch,
    SkipReason,
    Sop,
    SopStatus,
    Touchpoint,
    TouchpointKind,
    TouchpointStatus,
    TriggerKind,
)
from campaigns.selectors.touchpoints import campaign_visible_qs, sop_visible_qs
from customers.filters import IdFilter
from customers.models import Staff
from customers.selectors import staff_visible_qs


class TouchpointFilter(django_filters.FilterSet):
    """The touchpoint log: what was (or will be) sent, to whom, and why not."""

    sop = django_filters.ModelChoiceFilter(queryset=Sop.objects.all(), label=_("SOP"))
    campaign = django_filters.ModelChoiceFilter(
        queryset=Campaign.objects.all(), label=_("Campaign")
    )
    status = django_filters.ChoiceFilter(choices=TouchpointStatus.choices, label=_("Status"))
    skip_reason = django_filters.ChoiceFilter(
        choices=SkipReason.choices, label=_("Skipped because")
    )
    kind = django_filters.ChoiceFilter(choices=TouchpointKind.choices, label=_("Kind"))
    staff = django_filters.ModelChoiceFilter(queryset=Staff.objects.all(), label=_("Staff"))
    customer = IdFilter(field_name="customer_id", label=_("Customer id"))
    due_after = django_filters.IsoDateTimeFilter(
        field_name="due_at", lookup_expr="gte", label=_("Due from")
    )
    due_before = django_filters.IsoDateTimeFilter(
        field_name="due_at", lookup_expr="lt", label=_("Due before")
    )
    ordering = django_filters.OrderingFilter(
        fields=(("due_at", "due_at"), ("id", "id")), label=_("Sort")
    )

    class Meta:
        model = Touchpoint
        fields: list[str] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Choices offered (and accepted) are only what the user may see: a clerk cannot
        # name another store's staff member in a filter.
        user = getattr(self.request, "user", None)
        self.filters["sop"].queryset = sop_visible_qs(user)
        self.filters["campaign"].queryset = campaign_visible_qs(user)
        self.filters["staff"].queryset = staff_visible_qs(user)


class SopFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(field_name="name", lookup_expr="icontains", label=_("Search"))
    status = django_filters.ChoiceFilter(choices=SopStatus.choices, label=_("Status"))
    campaign = IdFilter(field_name="campaign_id", label=_("Campaign"))
    trigger_kind = django_filters.ChoiceFilter(
        field_name="current_version__trigger_kind", choices=TriggerKind.choices, label=_("Trigger")
    )
    ordering = django_filters.OrderingFilter(
        fields=(("name", "name"), ("created_at", "created_at"), ("updated_at", "updated_at")),
        label=_("Sort"),
    )

    class Meta:
        model = Sop
        fields: list[str] = []


class ContentFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(method="filter_search", label=_("Search"))
    kind = django_filters.ChoiceFilter(choices=ContentKind.choices, label=_("Kind"))
    archived = django_filters.BooleanFilter(field_name="is_archived", label=_("Archived"))

    class Meta:
        model = Content
        fields: list[str] = []

    def filter_search(self, qs: QuerySet[Content], name: str, value: str) -> QuerySet[Content]:
        value = value.strip()
        if not value:
            return qs
        return qs.filter(Q(name__icontains=value) | Q(text__icontains=value))


class CampaignFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(field_name="name", lookup_expr="icontains", label=_("Search"))
    status = django_filters.ChoiceFilter(choices=CampaignStatus.choices, label=_("Status"))

    class Meta:
        model = Campaign
        fields: list[str] = []


class CouponBatchFilter(django_filters.FilterSet):
    campaign = IdFilter(field_name="campaign_id", label=_("Campaign"))
    is_active = django_filters.BooleanFilter(label=_("Active"))

    class Meta:
        model = CouponBatch
        fields: list[str] = []


class CouponFilter(django_filters.FilterSet):
    customer = IdFilter(field_name="customer_id", label=_("Customer id"))
    batch = IdFilter(field_name="batch_id", label=_("Coupon batch"))
    code = django_filters.CharFilter(label=_("Code"))
    redeemed = django_filters.BooleanFilter(
        field_name="redeemed_at", lookup_expr="isnull", exclude=True, label=_("Redeemed")
    )

    class Meta:
        model = Coupon
        fields: list[str] = []
