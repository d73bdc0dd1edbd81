"""Today: the staff member's open to-dos (done, snooze), customers due for repurchase and
new contacts, with the counts on top."""

from __future__ import annotations

import zoneinfo
from datetime import datetime, time, timedelta

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRedirect

from campaigns.selectors.touchpoints import todo_get_for_user
from campaigns.services.confirm import touchpoint_done, touchpoint_snooze
from mobile.forms import SnoozeForm
from mobile.selectors.today import today_counts, today_for_user
from mobile.views.auth import mobile_view


@mobile_view()
@require_GET
def today(request: HttpRequest) -> HttpResponse:
    data = today_for_user(request.user)
    return render(request, "m/today.html", {"today": data, "now": data.now, "m_tab": "today"})


def _after_change(request: HttpRequest) -> HttpResponse:
    """htmx: an empty body replaces the row (it disappears) and the counts come along
    out-of-band; without htmx, back to the page."""
    if getattr(request, "htmx", None):
        counts = today_counts(request.user)
        return render(request, "m/_today_counts.html", {"counts": counts, "oob": True})
    return redirect("m:today")


def _failed(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    for message in exc.messages:
        messages.error(request, message)
    # A whole-page reload shows the message and the to-do's current state; a plain
    # redirect would be swapped into the row.
    if getattr(request, "htmx", None):
        return HttpResponseClientRedirect(reverse("m:today"))
    return redirect("m:today")


@mobile_view()
@require_POST
def todo_done(request: HttpRequest, pk: int) -> HttpResponse:
    touchpoint = todo_get_for_user(request.user, pk)
    try:
        touchpoint_done(touchpoint=touchpoint, user=request.user)
    except ValidationError as exc:
        return _failed(request, exc)
    if not getattr(request, "htmx", None):
        messages.success(request, _("Marked done."))
    return _after_change(request)


def snooze_until(choice: str, *, now: datetime) -> datetime:
    """An hour from now, or tomorrow 09:00 in the corp's time zone (a clerk's "tomorrow"
    is the store's, not the server's UTC)."""
    if choice == SnoozeForm.HOUR:
        return now + timedelta(hours=1)
    corp_tz = zoneinfo.ZoneInfo(settings.TIME_ZONE)
    tomorrow = now.astimezone(corp_tz).date() + timedelta(days=1)
    return datetime.combine(tomorrow, time(9, 0), tzinfo=corp_tz)


@mobile_view()
@require_POST
def todo_snooze(request: HttpRequest, pk: int) -> HttpResponse:
    touchpoint = todo_get_for_user(request.user, pk)
    form = SnoozeForm(request.POST)
    if not form.is_valid():
        return _failed(request, ValidationError(_("Choose how long to snooze.")))
    until = snooze_until(form.cleaned_data["until"], now=timezone.now())
    try:
        touchpoint_snooze(touchpoint=touchpoint, until=until, user=request.user)
    except ValidationError as exc:
        return _failed(request, exc)
    if not getattr(request, "htmx", None):
        messages.success(request, _("Snoozed."))
    return _after_change(request)
