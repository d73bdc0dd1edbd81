"""FilterSets shared by the channels dashboard pages and the API: one class per list, so
a filter means the same thing in a URL of either. ``PeriodForm`` reads the [start, end)
window of the channel figures, for both as well."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import django_filters
from django import forms
from django.db.models import QuerySet
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy
from django_filters.fields import IsoDateTimeField

from channels.models import Channel, ChannelCode, ChannelKind, SyncRun, SyncStatus
from customers.filters import IdFilter


class ChannelFilter(django_filters.FilterSet):
    kind = django_filters.ChoiceFilter(choices=ChannelKind.choices, label=_("Kind"))
    is_active = django_filters.BooleanFilter(label=pgettext_lazy("switch", "Active"))

    class Meta:
        model = Channel
        fields: list[str] = []


class ChannelCodeFilter(django_filters.FilterSet):
    channel = IdFilter(field_name="channel_id", label=_("Channel"))
    is_active = django_filters.BooleanFilter(label=pgettext_lazy("switch", "Active"))
    staff = IdFilter(method="filter_staff", label=_("Staff member"))
    referrer = IdFilter(field_name="referrer_id", label=_("Referring customer"))
    state = django_filters.CharFilter(label=_("State"))

    class Meta:
        model = ChannelCode
        fields: list[str] = []

    def filter_staff(
        self, qs: QuerySet[ChannelCode], name: str, value: Any
    ) -> QuerySet[ChannelCode]:
        if value is None:
            return qs
        # A subquery rather than a join: a join would repeat a code once per matching member.
        through = ChannelCode.staff.through
        return qs.filter(pk__in=through.objects.filter(staff_id=value).values("channelcode_id"))


class SyncRunFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=SyncStatus.choices, label=_("Status"))

    class Meta:
        model = SyncRun
        fields: list[str] = []


class PeriodForm(forms.Form):
    """The window of the channel figures: customers acquired and follows added in
    [start, end). Either end may be open; a plain date means midnight in TIME_ZONE."""

    start = IsoDateTimeField(
        required=False,
        label=_("From"),
        widget=forms.DateInput(attrs={"type": "date"}),
    )
    end = IsoDateTimeField(
        required=False,
        label=_("Before"),
        widget=forms.DateInput(attrs={"type": "date"}),
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        start, end = cleaned.get("start"), cleaned.get("end")
        if start is not None and end is not None and end <= start:
            self.add_error("end", _("The end must be after the start."))
        return cleaned

    def period(self) -> tuple[datetime | None, datetime | None]:
        """(start, end) when valid, else the whole history."""
        if not self.is_valid():
            return None, None
        return self.cleaned_data.get("start"), self.cleaned_data.get("end")
