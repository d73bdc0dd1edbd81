"""The funnel dashboard's filter form: the shared report filters (``funnel.filters``) with
menus of what the user may see, plus the panels' own switches.

Field names and validation are ``ReportFilterForm``'s, so a dashboard URL and an API URL
with the same query mean the same cohort; the menus only offer choices, the selectors
still decide what the figures count.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import forms
from django.http import QueryDict
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from customers.selectors import (
    channel_options,
    staff_visible_qs,
    store_visible_qs,
    tag_visible_qs,
)
from funnel.filters import ReportFilterForm

#: The range shown when the URL names none: the last 90 days, today included.
DEFAULT_DAYS = 90

COHORT_PERIOD_CHOICES = [("week", _("Weekly")), ("month", _("Monthly"))]
COHORT_METRIC_CHOICES = [
    ("engaged", _("Engaged")),
    ("paid", _("Paid")),
    ("revenue", _("Revenue per customer")),
]
TREND_INTERVAL_CHOICES = [("day", _("Daily")), ("month", _("Monthly")), ("year", _("Yearly"))]

#: Panel switches: the first choice is the default, so a URL without them is complete.
SWITCHES = {
    "period": COHORT_PERIOD_CHOICES,
    "metric": COHORT_METRIC_CHOICES,
    "interval": TREND_INTERVAL_CHOICES,
}


def with_default_range(params: QueryDict) -> QueryDict:
    """``params`` with the default range filled in where the URL names no date.

    Only the missing end of the range is filled, so ``?start=2026-01-01`` means "from
    then until today" and ``?end=...`` "the 90 days before".
    """
    data = params.copy()
    today = timezone.localdate()
    end = data.get("end") or ""
    start = data.get("start") or ""
    if not end:
        data["end"] = (today + timedelta(days=1)).isoformat()
    if not start:
        try:
            parsed_end = forms.DateField(input_formats=["%Y-%m-%d"]).clean(data["end"])
        except forms.ValidationError:
            parsed_end = today + timedelta(days=1)  # the end's own error is shown
        data["start"] = (parsed_end - timedelta(days=DEFAULT_DAYS)).isoformat()
    return data


class FunnelFilterForm(ReportFilterForm):
    """The report filters with menus, and the switches of the cohort and trend panels."""

    period = forms.ChoiceField(label=_("Cohorts"), choices=COHORT_PERIOD_CHOICES, required=False)
    metric = forms.ChoiceField(
        label=_("Heat map of"), choices=COHORT_METRIC_CHOICES, required=False
    )
    interval = forms.ChoiceField(label=_("Trend"), choices=TREND_INTERVAL_CHOICES, required=False)

    def __init__(self, *args: Any, user: Any, menus: bool = True, **kwargs: Any) -> None:
        # Labels sit above the inputs, so no trailing colon.
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)
        for name in ("start", "end"):
            self.fields[name].widget = forms.DateInput(attrs={"type": "date"})
        if menus:
            self._add_menus(user)

    def _add_menus(self, user: Any) -> None:
        any_ = [("", _("Any"))]
        menus = {
            "channel": channel_options(user),
            "store": list(store_visible_qs(user).order_by("name", "pk").values_list("pk", "name")),
            "staff": [
                (staff.pk, f"{staff.name} · {staff.store.name}" if staff.store else staff.name)
                for staff in staff_visible_qs(user).order_by("name", "pk")
            ],
            "tag": [
                (tag.pk, f"{tag.group.name} / {tag.name}")
                for tag in tag_visible_qs(user).order_by("group__name", "name", "pk")
            ],
        }
        for name, choices in menus.items():
            # Still an IntegerField: the value is validated exactly as the API's.
            self.fields[name].widget = forms.Select(choices=[*any_, *choices])

    def switch(self, name: str) -> str:
        """A panel switch's value, its default when absent or invalid."""
        value = self.cleaned_data.get(name) if hasattr(self, "cleaned_data") else None
        return str(value or SWITCHES[name][0][0])
