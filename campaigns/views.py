"""Dashboard pages for campaigns: the content library, SOPs (editor, detail, preview and
its CSV), campaigns with their report, the touchpoint log and the staff's "My to-dos".

Views only parse, call one service or selector and render. Every id in a URL is fetched
through an access helper (``campaigns.selectors.touchpoints``): 404 for what the user may
not see. Writing content, SOPs and campaigns is for operators (others get the 403 page);
to-dos are the staff member's own.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import (
    HttpRequest,
    HttpResponse,
    StreamingHttpResponse,
)
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from campaigns.filters import TouchpointFilter
from campaigns.forms import (
    CampaignForm,
    ContentForm,
    ContentPreviewForm,
    CouponBatchForm,
    PreviewForm,
    SopForm,
    StepFormSet,
    apply_service_errors,
    sop_initial,
    steps_service_data,
)
from campaigns.models import Content, Sop, SopStatus
from campaigns.selectors.preview import preview_csv_rows, sop_preview
from campaigns.selectors.reports import campaign_report
from campaigns.selectors.touchpoints import (
    campaign_get_for_user,
    campaign_list_qs,
    content_get_for_user,
    content_list_qs,
    coupon_batch_get_for_user,
    coupon_batch_list_qs,
    sop_as_data,
    sop_detail_for_user,
    sop_get_for_user,
    sop_list_qs,
    sop_versions,
    todo_list_qs,
    touchpoint_get_for_user,
    touchpoint_list_qs,
)
from campaigns.services import campaigns as campaign_services
from campaigns.services import confirm, enrollment, levers, sops
from campaigns.services import content as content_services
from customers.selectors import customer_visible_qs
from scrm.dashboard import (
    M,
    OffsetPage,
    dashboard_view,
    is_htmx_for,
    offset_paginate,
    parse_page_number,
    vary_on_htmx,
)
from scrm.roles import Role, role_of

PAGE_SIZE = 50
TOUCHPOINT_RESULTS = "touchpoint-results"
#: Writing definitions (content, SOPs, campaigns) is the operators' job.
OPERATORS = frozenset({Role.OPERATOR})
#: The to-do list shows this many, oldest due first.
TODO_LIMIT = 200
SAMPLE_COUPON = "SAMPLE-COUPON"


# --- Formatting ------------------------------------------------------------------------


def _signed(value: float) -> str:
    # A real minus sign (U+2212): a hyphen reads as a dash next to "to".
    text = f"{abs(value):.1f}"
    return f"\u2212{text}" if value < 0 else f"+{text}"


def format_lift(lift: float | None, ci: tuple[float, float] | None) -> str:
    """A lift in percentage points with its interval, "+3.2 pp (95% CI -0.5 to +6.9)"
    with a real minus sign."""
    if lift is None:
        return "—"
    text = f"{_signed(lift * 100)} pp"
    if ci is not None:
        lo, hi = ci
        text += f" (95% CI {_signed(lo * 100)} to {_signed(hi * 100)})"
    return text


def _percent(rate: float | None) -> str:
    return "—" if rate is None else f"{rate * 100:.1f} %"


def _page(request: HttpRequest, qs: QuerySet[M]) -> OffsetPage[M]:
    """The ?page= page of ``qs``, ``PAGE_SIZE`` rows (every list here pages alike)."""
    number = parse_page_number(request.GET.get("page"))
    return offset_paginate(qs, number=number, page_size=PAGE_SIZE)


# --- Content library -------------------------------------------------------------------


def _save(
    request: HttpRequest, form: Any, save: Callable[[dict[str, Any]], Any], message: str
) -> tuple[bool, Any]:
    """Validate ``form``, write through the service ``save``, say ``message``: (True, what
    save returned), or (False, None) with the service's field errors put on the form."""
    if not form.is_valid():
        return False, None
    try:
        result = save(dict(form.cleaned_data))
    except ValidationError as exc:
        apply_service_errors(exc, form)
        return False, None
    messages.success(request, message)
    return True, result


@dashboard_view()
@require_GET
def content_list(request: HttpRequest) -> HttpResponse:
    show_archived = request.GET.get("archived") == "1"
    qs = content_list_qs(request.user).filter(is_archived=show_archived).order_by("name", "id")
    page = _page(request, qs)
    return render(
        request,
        "campaigns/content_list.html",
        {"page": page, "show_archived": show_archived, "tab": "content"},
    )


def _sample_values(request: HttpRequest) -> tuple[dict[str, str], Any]:
    """Values for the live preview from a customer the user may see (the newest one)."""
    customer = (
        customer_visible_qs(request.user).select_related("owner", "store").order_by("-id").first()
    )
    if customer is None:
        return {
            "name": gettext("Sample customer"),
            "staff": gettext("Sample staff"),
            "store": gettext("Sample store"),
            "coupon": SAMPLE_COUPON,
        }, None
    return {
        "name": customer.name,
        "staff": customer.owner.name if customer.owner else "",
        "store": customer.store.name if customer.store else "",
        "coupon": SAMPLE_COUPON,
    }, customer


def _content_form_page(
    request: HttpRequest, form: ContentForm, content: Content | None, status: int = 200
) -> HttpResponse:
    values, sample = _sample_values(request)
    text = form["text"].value() or ""
    rendered = content_services.content_render(
        content=Content(text=str(text), attachments=[]), values=values
    )
    context = {
        "form": form,
        "content": content,
        "rendered": rendered,
        "sample": sample,
        "tab": "content",
    }
    return render(request, "campaigns/content_form.html", context, status=status)


@dashboard_view(roles=OPERATORS)
@require_http_methods(["GET", "POST"])
def content_edit(request: HttpRequest, pk: int | None = None) -> HttpResponse:
    content = content_get_for_user(request.user, pk) if pk is not None else None
    if request.method == "GET":
        initial = ContentForm.initial_for(content) if content else {}
        return _content_form_page(request, ContentForm(initial=initial), content)
    form = ContentForm(request.POST)
    saved, _result = _save(
        request,
        form,
        lambda data: (
            content_services.content_create(data=data, user=request.user)
            if content is None
            else content_services.content_update(content=content, data=data)
        ),
        gettext("Content saved."),
    )
    if saved:
        return redirect("campaigns:content_list")
    return _content_form_page(request, form, content, status=400)


@dashboard_view(roles=OPERATORS)
@require_POST
def content_preview(request: HttpRequest) -> HttpResponse:
    """The live preview (htmx): the text being typed, rendered for a sample customer."""
    form = ContentPreviewForm(request.POST)
    values, sample = _sample_values(request)
    text = form.data.get("text", "") if not form.is_valid() else form.cleaned_data["text"]
    rendered = content_services.content_render(
        content=Content(text=str(text)[:20_000], attachments=[]), values=values
    )
    return render(
        request, "campaigns/_content_preview.html", {"rendered": rendered, "sample": sample}
    )


@dashboard_view(roles=OPERATORS)
@require_POST
def content_archive(request: HttpRequest, pk: int) -> HttpResponse:
    content = content_get_for_user(request.user, pk)
    content_services.content_archive(content=content)
    messages.success(request, gettext("Content archived; SOP steps that use it keep it."))
    return redirect("campaigns:content_list")


# --- SOPs ------------------------------------------------------------------------------


@dashboard_view()
@require_GET
def sop_list(request: HttpRequest) -> HttpResponse:
    status = request.GET.get("status", "")
    qs = sop_list_qs(request.user)
    if status in SopStatus.values:
        qs = qs.filter(status=status)
    page = _page(request, qs.order_by("name", "id"))
    context = {"page": page, "status": status, "statuses": SopStatus.choices, "tab": "sops"}
    return render(request, "campaigns/sop_list.html", context)


def _sop_editor(
    request: HttpRequest,
    sop: Sop | None,
    form: SopForm,
    formset: Any,
    status: int = 200,
) -> HttpResponse:
    context = {"form": form, "formset": formset, "sop": sop, "tab": "sops"}
    return render(request, "campaigns/sop_form.html", context, status=status)


@dashboard_view(roles=OPERATORS)
@require_http_methods(["GET", "POST"])
def sop_edit(request: HttpRequest, pk: int | None = None) -> HttpResponse:
    sop = sop_get_for_user(request.user, pk) if pk is not None else None
    live = sop is not None and sop.status in (SopStatus.ACTIVE, SopStatus.PAUSED)
    if sop is not None and sop.status == SopStatus.ARCHIVED:
        messages.error(request, gettext("An archived SOP cannot be edited."))
        return redirect("campaigns:sop_detail", pk=sop.pk)
    if request.method == "GET":
        if sop is None:
            form = SopForm(live=False)
            formset = StepFormSet(prefix="steps")
        else:
            initial, steps = sop_initial(sop_as_data(sop))
            form = SopForm(initial=initial, live=live)
            formset = StepFormSet(initial=steps, prefix="steps")
        return _sop_editor(request, sop, form, formset)
    form = SopForm(request.POST, live=live)
    formset = StepFormSet(request.POST, prefix="steps")
    if form.is_valid() and formset.is_valid():
        data = {**form.service_data(), "steps": steps_service_data(formset)}
        try:
            if sop is None:
                sop = sops.sop_create(data=data, user=request.user)
                messages.success(request, gettext("SOP created as a draft."))
            else:
                previous = sop.current_version_id
                version = sops.sop_update(sop=sop, data=data, user=request.user)
                if version.pk != previous:
                    messages.success(
                        request,
                        gettext("Version %(number)s published.") % {"number": version.number},
                    )
                else:
                    messages.success(request, gettext("SOP saved."))
        except ValidationError as exc:
            apply_service_errors(exc, form, formset)
        else:
            return redirect("campaigns:sop_detail", pk=sop.pk)
    return _sop_editor(request, sop, form, formset, status=400)


@dashboard_view()
@require_GET
def sop_detail(request: HttpRequest, pk: int) -> HttpResponse:
    sop = sop_detail_for_user(request.user, pk)
    context = {
        "sop": sop,
        "versions": sop_versions(sop),
        "tab": "sops",
        "can_edit": _is_operator(request),
    }
    return render(request, "campaigns/sop_detail.html", context)


def _is_operator(request: HttpRequest) -> bool:
    return role_of(request.user) == Role.OPERATOR


SOP_ACTIONS = ("activate", "pause", "archive", "enrol")


@dashboard_view(roles=OPERATORS)
@require_POST
def sop_action(request: HttpRequest, pk: int, action: str) -> HttpResponse:
    sop = sop_get_for_user(request.user, pk)
    try:
        if action == "activate":
            sops.sop_activate(sop=sop, user=request.user)
            messages.success(request, gettext("SOP activated."))
        elif action == "pause":
            sops.sop_pause(sop=sop)
            messages.success(request, gettext("SOP paused."))
        elif action == "archive":
            sops.sop_archive(sop=sop)
            messages.success(request, gettext("SOP archived."))
        else:  # "enrol": the URL map offers only SOP_ACTIONS
            result = enrollment.sop_enroll_segment(sop=sop, user=request.user)
            messages.success(
                request,
                gettext(
                    "Enrolled %(enrolled)s customers (%(holdout)s held out, %(skipped)s "
                    "skipped); %(touchpoints)s touchpoints scheduled."
                )
                % {
                    "enrolled": result.enrolled,
                    "holdout": result.holdout,
                    "skipped": result.skipped,
                    "touchpoints": result.touchpoints,
                },
            )
    except ValidationError as exc:
        for message in exc.messages:
            messages.error(request, message)
    return redirect("campaigns:sop_detail", pk=sop.pk)


def _preview_params(request: HttpRequest) -> int:
    form = PreviewForm(request.GET)
    if form.is_valid() and form.cleaned_data.get("window_days"):
        return int(form.cleaned_data["window_days"])
    return 7


@dashboard_view(roles=OPERATORS)
@require_GET
def sop_preview_page(request: HttpRequest, pk: int) -> HttpResponse:
    sop = sop_get_for_user(request.user, pk)
    window_days = _preview_params(request)
    preview = sop_preview(
        sop_or_version=sop, now=timezone.now(), window_days=window_days, user=request.user
    )
    steps = list(sop.current_version.steps.all()) if sop.current_version else []
    calendar = [
        {"day": day, "counts": [day.steps.get(step.position + 1, 0) for step in steps]}
        for day in preview.calendar
    ]
    context = {
        "sop": sop,
        "preview": preview,
        "summary": preview.summary,
        "calendar": calendar,
        "steps": steps,
        "window_days": window_days,
        "form": PreviewForm(initial={"window_days": window_days}),
        "tab": "sops",
    }
    return render(request, "campaigns/sop_preview.html", context)


class _Echo:
    """csv.writer's file: hands back each line instead of storing it."""

    def write(self, value: str) -> str:
        return value


@dashboard_view(roles=OPERATORS)
@require_GET
def sop_preview_csv(request: HttpRequest, pk: int) -> Any:
    """Every preview row as CSV, streamed: rows are computed chunk by chunk as the client
    reads, so a million-customer audience holds one chunk in memory."""
    sop = sop_get_for_user(request.user, pk)
    rows = preview_csv_rows(
        sop_or_version=sop,
        now=timezone.now(),
        window_days=_preview_params(request),
        user=request.user,
    )
    writer = csv.writer(_Echo())

    def lines() -> Iterator[str]:
        yield "\ufeff"  # a BOM, so that Excel opens the Chinese names as UTF-8
        for row in rows:
            yield writer.writerow(row)

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="sop-{sop.pk}-preview.csv"'
    return response


# --- Campaigns -------------------------------------------------------------------------


@dashboard_view()
@require_GET
def campaign_list(request: HttpRequest) -> HttpResponse:
    page = _page(request, campaign_list_qs(request.user).order_by("-created_at", "-id"))
    return render(request, "campaigns/campaign_list.html", {"page": page, "tab": "campaigns"})


@dashboard_view(roles=OPERATORS)
@require_http_methods(["GET", "POST"])
def campaign_edit(request: HttpRequest, pk: int | None = None) -> HttpResponse:
    campaign = campaign_get_for_user(request.user, pk) if pk is not None else None
    if request.method == "GET":
        initial = CampaignForm.initial_for(campaign) if campaign else {}
        form = CampaignForm(initial=initial)
    else:
        form = CampaignForm(request.POST)
        saved, created = _save(
            request,
            form,
            lambda data: (
                campaign_services.campaign_create(data=data, user=request.user)
                if campaign is None
                else campaign_services.campaign_update(campaign=campaign, data=data)
            ),
            gettext("Campaign saved."),
        )
        if saved:
            pk = created.pk if campaign is None else campaign.pk
            return redirect("campaigns:campaign_detail", pk=pk)
    status = 400 if form.is_bound else 200
    context = {"form": form, "campaign": campaign, "tab": "campaigns"}
    return render(request, "campaigns/campaign_form.html", context, status=status)


@dashboard_view()
@require_GET
def campaign_detail(request: HttpRequest, pk: int) -> HttpResponse:
    campaign = campaign_get_for_user(request.user, pk)
    report = campaign_report(campaign=campaign, user=request.user)
    context = {
        "campaign": campaign,
        "report": report,
        "rate_treatment": _percent(report["rate"]["treatment"]),
        "rate_holdout": _percent(report["rate"]["holdout"]),
        "lift": format_lift(report["lift"], report["lift_ci"]),
        "can_edit": _is_operator(request),
        "tab": "campaigns",
    }
    return render(request, "campaigns/campaign_detail.html", context)


# --- Coupon batches --------------------------------------------------------------------


@dashboard_view()
@require_GET
def coupon_list(request: HttpRequest) -> HttpResponse:
    page = _page(request, coupon_batch_list_qs(request.user).order_by("-created_at", "-id"))
    return render(request, "campaigns/coupon_list.html", {"page": page, "tab": "coupons"})


@dashboard_view(roles=OPERATORS)
@require_http_methods(["GET", "POST"])
def coupon_edit(request: HttpRequest, pk: int | None = None) -> HttpResponse:
    batch = coupon_batch_get_for_user(request.user, pk) if pk is not None else None
    if request.method == "GET":
        form = CouponBatchForm(initial=CouponBatchForm.initial_for(batch) if batch else {})
    else:
        form = CouponBatchForm(request.POST)
        saved, _result = _save(
            request,
            form,
            lambda data: (
                levers.coupon_batch_create(data=data)
                if batch is None
                else levers.coupon_batch_update(batch=batch, data=data)
            ),
            gettext("Coupon batch saved."),
        )
        if saved:
            return redirect("campaigns:coupons")
    status = 400 if form.is_bound else 200
    context = {"form": form, "batch": batch, "tab": "coupons"}
    return render(request, "campaigns/coupon_form.html", context, status=status)


# --- Touchpoint log and to-dos ---------------------------------------------------------


@dashboard_view()
@require_GET
def touchpoint_log(request: HttpRequest) -> HttpResponse:
    filterset = TouchpointFilter(
        request.GET, queryset=touchpoint_list_qs(request.user), request=request
    )
    for name in ("sop", "campaign", "staff"):
        filterset.form.fields[name].empty_label = gettext("Any")
    filterset.form.label_suffix = ""
    qs = filterset.qs
    if not request.GET.get("ordering"):
        qs = qs.order_by("-due_at", "-id")
    else:
        qs = qs.order_by(*qs.query.order_by, "-id")
    page = _page(request, qs)
    context = {"filter": filterset, "page": page, "tab": "touchpoints"}
    context["partial"] = is_htmx_for(request, TOUCHPOINT_RESULTS)
    template = (
        "campaigns/_touchpoint_results.html" if context["partial"] else "campaigns/touchpoints.html"
    )
    return vary_on_htmx(render(request, template, context))


@dashboard_view()
@require_GET
def todo_list(request: HttpRequest) -> HttpResponse:
    now = timezone.now()
    todos = list(todo_list_qs(request.user, now=now)[:TODO_LIMIT])
    context = {
        "todos": todos,
        "now": now,
        "snooze_until": now + timedelta(days=1),
        "tab": "todos",
    }
    return render(request, "campaigns/todos.html", context)


@dashboard_view()
@require_POST
def todo_done(request: HttpRequest, pk: int) -> HttpResponse:
    touchpoint = touchpoint_get_for_user(request.user, pk)
    try:
        if confirm.touchpoint_done(touchpoint=touchpoint, user=request.user):
            messages.success(request, gettext("Marked done."))
    except ValidationError as exc:
        for message in exc.messages:
            messages.error(request, message)
    return redirect("campaigns:todos")


@dashboard_view()
@require_POST
def todo_snooze(request: HttpRequest, pk: int) -> HttpResponse:
    touchpoint = touchpoint_get_for_user(request.user, pk)
    try:
        confirm.touchpoint_snooze(
            touchpoint=touchpoint, until=timezone.now() + timedelta(days=1), user=request.user
        )
        messages.success(request, gettext("Snoozed until tomorrow."))
    except ValidationError as exc:
        for message in exc.messages:
            messages.error(request, message)
    return redirect("campaigns:todos")
