"""The one set of filters every funnel report shares, for the API and the dashboard alike.

A report is asked for a cohort: customers acquired in ``[start, end)`` (dates in the
configured time zone), optionally narrowed by first-touch channel, store, staff member
(owner or anyone who ever added the customer) and tag, and optionally counting a
milestone only when it came within ``window_days`` of the customer's acquisition.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

#: The longest cohort a report accepts, so a typo in a year cannot ask for ten centuries.
MAX_SPAN_DAYS = 3_700
MAX_WINDOW_DAYS = 3_650


@dataclass(frozen=True, kw_only=True)
class ReportFilters:
    start: date
    end: date  # exclusive
    channel_id: int | None = None
    store_id: int | None = None
    staff_id: int | None = None
    tag_id: int | None = None
    window_days: int | None = None

    @property
    def start_at(self) -> datetime:
        """The first instant of ``start`` in the configured time zone."""
        return timezone.make_aware(datetime.combine(self.start, time.min))

    @property
    def end_at(self) -> datetime:
        return timezone.make_aware(datetime.combine(self.end, time.min))

    @property
    def window(self) -> timedelta | None:
        return None if self.window_days is None else timedelta(days=self.window_days)

    def as_query(self) -> dict[str, str]:
        """The filters as URL parameters (the dashboard keeps its state in the URL)."""
        query = {"start": self.start.isoformat(), "end": self.end.isoformat()}
        for name in ("channel", "store", "staff", "tag", "window_days"):
            value = getattr(self, name if name == "window_days" else f"{name}_id")
            if value is not None:
                query[name] = str(value)
        return query


def _id_field(label: Any) -> forms.IntegerField:
    return forms.IntegerField(required=False, min_value=1, max_value=2**63 - 1, label=label)


class ReportFilterForm(forms.Form):
    """Parses and checks the report filters from a query string; errors are per field."""

    start = forms.DateField(label=_("From"), input_formats=["%Y-%m-%d"])
    end = forms.DateField(
        label=_("Until (exclusive)"),
        input_formats=["%Y-%m-%d"],
        help_text=_("The first day not included."),
    )
    channel = _id_field(_("Channel"))
    store = _id_field(_("Store"))
    staff = _id_field(_("Staff member"))
    tag = _id_field(_("Tag"))
    window_days = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=MAX_WINDOW_DAYS,
        label=_("Window (days)"),
        help_text=_("Count a milestone only when reached within this many days of acquisition."),
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        start, end = data.get("start"), data.get("end")
        if start and end:
            if end <= start:
                self.add_error("end", _("Must be after the start date."))
            elif (end - start).days > MAX_SPAN_DAYS:
                self.add_error(
                    "end", _("A report covers at most %(days)s days.") % {"days": MAX_SPAN_DAYS}
                )
        return data

    def filters(self) -> ReportFilters:
        """The validated filters (call after ``is_valid()``)."""
        data = self.cleaned_data
        return ReportFilters(
            start=data["start"],
            end=data["end"],
            channel_id=data.get("channel"),
            store_id=data.get("store"),
            staff_id=data.get("staff"),
            tag_id=data.get("tag"),
            window_days=data.get("window_days"),
        )


def report_filters_from(params: Any) -> ReportFilters:
    """Report filters from a query dict, or ``ValidationError`` with a message per field."""
    form = ReportFilterForm(params)
    if not form.is_valid():
        raise ValidationError(
            {field: [str(e) for e in errors] for field, errors in form.errors.items()}
        )
    return form.filters()
