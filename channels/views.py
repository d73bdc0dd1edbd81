"""Dashboard pages for channels, their codes and the WeCom sync runs (operators only).

Views only parse, call a selector or service and render. Filters come from
``channels.filters`` (the FilterSets and period form the API uses), figures from
``channels.selectors``, writes from ``channels.services``.

Operators only: the figures are corp-wide (cost, acquisition across every store) and
codes are created in the corp's WeCom; store managers and clerks read the codes of their
store's staff through the API (and their phones), not here.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRedirect

from channels.filters import ChannelFilter, PeriodForm, SyncRunFilter
from channels.forms import ChannelCodeForm, dress_channel_filter_form
from channels.models import SyncStatus
from channels.selectors import (
    ChannelRow,
    SyncRunRow,
    channel_code_get_for_user,
    channel_code_list_qs,
    channel_figures,
    channel_get_for_user,
    channel_stats_qs,
    code_figures,
    sync_run_visible_qs,
)
from channels.services import channel_code_create, channel_code_deactivate, sync_request
from channels.wecom.errors import WeComTransientError
from scrm.dashboard import (
    dashboard_view,
    is_htmx_for,
    offset_paginate,
    parse_page_number,
    vary_on_htmx,
)
from scrm.roles import Role

OPERATORS = frozenset({Role.OPERATOR})
PAGE_SIZE = 50
CODES_PAGE_SIZE = 20
SYNC_PAGE_SIZE = 20
CODE_FORM_TARGET = "code-form"
SYNC_TARGET = "sync-runs"


def _wecom_busy() -> str:
    return gettext("WeCom is busy or unreachable; nothing was changed. Try again in a minute.")


@dashboard_view(roles=OPERATORS)
@require_GET
def channel_list(request: HttpRequest) -> HttpResponse:
    period = PeriodForm(request.GET)
    start, end = period.period()
    filterset = ChannelFilter(
        request.GET,
        queryset=channel_stats_qs(request.user, start=start, end=end).order_by("name", "id"),
        request=request,
    )
    dress_channel_filter_form(filterset.form)
    page = offset_paginate(
        filterset.qs, number=parse_page_number(request.GET.get("page")), page_size=PAGE_SIZE
    )
    context = {
        "filter": filterset,
        "period": period,
        "page": page,
        "rows": [ChannelRow(channel) for channel in page.rows],
    }
    return render(request, "channels/list.html", context)


def _render_detail(
    request: HttpRequest, pk: int, *, form: ChannelCodeForm, status: int = 200
) -> HttpResponse:
    period = PeriodForm(request.GET)
    start, end = period.period()
    # Codes are listed page by page below (a referral channel has one per customer), so
    # the figures need no per-code list of their own.
    figures = channel_figures(request.user, pk, start=start, end=end, code_limit=0)
    codes = offset_paginate(
        channel_code_list_qs(request.user)
        .filter(channel=figures.channel)
        .order_by("-is_active", "-created_at", "-id"),
        number=parse_page_number(request.GET.get("page")),
        page_size=CODES_PAGE_SIZE,
    )
    context = {
        "figures": figures,
        "channel": figures.channel,
        "period": period,
        "codes": codes,
        "code_rows": code_figures(codes.rows, start=start, end=end),
        "form": form,
    }
    return render(request, "channels/detail.html", context, status=status)


@dashboard_view(roles=OPERATORS)
@require_GET
def channel_detail(request: HttpRequest, pk: int) -> HttpResponse:
    return _render_detail(request, pk, form=ChannelCodeForm(user=request.user))


@dashboard_view(roles=OPERATORS)
@require_POST
def code_create(request: HttpRequest, pk: int) -> HttpResponse:
    channel = channel_get_for_user(request.user, pk)
    form = ChannelCodeForm(request.POST, user=request.user)
    code = None
    if form.is_valid():
        data = form.cleaned_data
        try:
            code = channel_code_create(
                channel=channel,
                name=data["name"],
                staff=list(data["staff"]),
                state=data["state"],
                skip_verify=data["skip_verify"],
                welcome_text=data["welcome_text"],
                auto_tags=list(data["auto_tags"]),
            )
        except ValidationError as exc:
            _add_service_errors(form, exc)
        except WeComTransientError:
            form.add_error(None, _wecom_busy())
    htmx = is_htmx_for(request, CODE_FORM_TARGET)
    if code is not None:
        messages.success(request, gettext("Channel code “%(name)s” created.") % {"name": code.name})
        url = reverse("channels:detail", args=[channel.pk])
        # The new code shows in the codes table: reload the page rather than the form.
        return HttpResponseClientRedirect(url) if htmx else redirect(url)
    if htmx:
        # 200 even with errors: htmx 2 does not swap 4xx responses by default.
        return render(request, "channels/_code_form.html", {"form": form, "channel": channel})
    return _render_detail(request, channel.pk, form=form, status=400)


def _add_service_errors(form: ChannelCodeForm, exc: ValidationError) -> None:
    """A service's errors on the form's own fields, the rest at the top of the form."""
    if not hasattr(exc, "error_dict"):
        form.add_error(None, exc)
        return
    for field, errors in exc.message_dict.items():
        form.add_error(field if field in form.fields else None, errors)


@dashboard_view(roles=OPERATORS)
@require_POST
def code_deactivate(request: HttpRequest, pk: int) -> HttpResponse:
    code = channel_code_get_for_user(request.user, pk)
    try:
        if channel_code_deactivate(code=code):
            messages.success(
                request, gettext("Channel code “%(name)s” deactivated.") % {"name": code.name}
            )
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    except WeComTransientError:
        messages.error(request, _wecom_busy())
    return redirect("channels:detail", pk=code.channel_id)


@dashboard_view(roles=OPERATORS)
@require_GET
def sync_list(request: HttpRequest) -> HttpResponse:
    filterset = SyncRunFilter(request.GET, queryset=sync_run_visible_qs(request.user))
    page = offset_paginate(
        filterset.qs.order_by("-started_at", "-id"),
        number=parse_page_number(request.GET.get("page")),
        page_size=SYNC_PAGE_SIZE,
    )
    context: dict[str, Any] = {
        "filter": filterset,
        "page": page,
        "rows": [SyncRunRow(run) for run in page.rows],
        # While a run is going, the table refreshes itself (htmx polling).
        "running": any(run.status == SyncStatus.RUNNING for run in page.rows),
    }
    context["partial"] = is_htmx_for(request, SYNC_TARGET)
    template = "channels/_sync_results.html" if context["partial"] else "channels/sync.html"
    return vary_on_htmx(render(request, template, context))


@dashboard_view(roles=OPERATORS)
@require_POST
def sync_start(request: HttpRequest) -> HttpResponse:
    run = sync_request()
    messages.success(request, gettext("Sync #%(id)s requested; a worker runs it.") % {"id": run.pk})
    return redirect("channels:sync")
