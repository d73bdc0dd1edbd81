"""Dashboard pages for customers: the filterable list, the detail page and its note form.

Views only parse, call a selector or service and render. Who sees which customer is
decided by ``customers.selectors``; filters by ``customers.filters.CustomerFilter``, the
same class the API uses, so a URL means the same thing in both.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext
from django.views.decorators.http import require_GET, require_POST

from customers.filters import CustomerFilter
from customers.forms import SORT_CHOICES, NoteForm, dress_filter_form
from customers.models import ActivitySource, Customer
from customers.selectors import (
    channel_options,
    customer_detail,
    customer_get_for_user,
    customer_list_qs,
    customer_notes,
    customer_orders,
    customer_timeline,
    timeline_entries,
)
from customers.services import note_create
from scrm.dashboard import (
    dashboard_view,
    is_htmx_for,
    offset_paginate,
    parse_page_number,
    vary_on_htmx,
)
from scrm.roles import masks_phones

PAGE_SIZE = 50
DETAIL_ROWS = 50
RESULTS_TARGET = "customer-results"
ACTIVITY_TARGET = "customer-activity"
#: Filters folded away in "More filters"; the panel opens when one of them is in use.
ADVANCED_FILTERS = (
    "store",
    "owner",
    "staff",
    "channel",
    "tag",
    "acquired_after",
    "acquired_before",
)
#: Columns whose header toggles the sort.
SORTABLE_COLUMNS = ("name", "acquired_at")


def _total_order(qs: QuerySet[Customer]) -> QuerySet[Customer]:
    """End the ordering with the primary key: offset pages over a non-unique sort key
    (name, acquired_at) would otherwise repeat or skip rows between pages."""
    ordering = [str(o) for o in qs.query.order_by] or list(Customer._meta.ordering or [])
    if not any(o.lstrip("-") in ("id", "pk") for o in ordering):
        ordering.append("-id")
    return qs.order_by(*ordering)


def _next_sorts(current: str) -> dict[str, str]:
    """For each sortable column, the ``ordering`` its header link switches to."""
    return {column: (f"-{column}" if current == column else column) for column in SORTABLE_COLUMNS}


@dashboard_view()
@require_GET
def customer_list(request: HttpRequest) -> HttpResponse:
    filterset = CustomerFilter(
        request.GET,
        queryset=customer_list_qs(request.user).prefetch_related("tags"),
        request=request,
    )
    dress_filter_form(filterset.form, channel_choices=channel_options(request.user))
    page = offset_paginate(
        _total_order(filterset.qs),
        number=parse_page_number(request.GET.get("page")),
        page_size=PAGE_SIZE,
    )
    current_sort = request.GET.get("ordering", "")
    context = {
        "filter": filterset,
        "page": page,
        "mask_phones": masks_phones(request.user),
        "sort_choices": SORT_CHOICES,
        "current_sort": current_sort,
        "next_sorts": _next_sorts(current_sort),
        "advanced_open": any(request.GET.get(name) for name in ADVANCED_FILTERS),
    }
    # The same URL renders the whole page or, for htmx's swap, only the results: the
    # filter state lives in the URL either way, so a reload shows the same rows.
    context["partial"] = is_htmx_for(request, RESULTS_TARGET)
    template = "customers/_results.html" if context["partial"] else "customers/list.html"
    return vary_on_htmx(render(request, template, context))


def _activity_context(customer: Customer, note_form: NoteForm) -> dict[str, Any]:
    return {
        "customer": customer,
        "notes": customer_notes(customer, limit=DETAIL_ROWS),
        "timeline": timeline_entries(customer_timeline(customer, limit=DETAIL_ROWS)),
        "note_form": note_form,
        "detail_rows": DETAIL_ROWS,
    }


def _render_detail(
    request: HttpRequest, pk: int, *, note_form: NoteForm, status: int = 200
) -> HttpResponse:
    customer = customer_detail(request.user, pk)
    orders = customer_orders(customer, limit=DETAIL_ROWS)
    context = {
        **_activity_context(customer, note_form),
        "follows": list(customer.follows.all()),
        "tag_links": list(customer.tag_links.all()),
        "orders": orders,
        "orders_truncated": len(orders) >= DETAIL_ROWS,
        "mask_phones": masks_phones(request.user),
    }
    return render(request, "customers/detail.html", context, status=status)


@dashboard_view()
@require_GET
def customer_detail_view(request: HttpRequest, pk: int) -> HttpResponse:
    return _render_detail(request, pk, note_form=NoteForm())


@dashboard_view()
@require_POST
def customer_note_create(request: HttpRequest, pk: int) -> HttpResponse:
    # Permission first: another store's customer is a 404 before the form is even read.
    customer = customer_get_for_user(request.user, pk)
    form = NoteForm(request.POST)
    created = False
    if form.is_valid():
        try:
            note_create(
                customer=customer,
                author=request.user,
                body=form.cleaned_data["body"],
                source=ActivitySource.DASHBOARD,
            )
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            created = True
    htmx = is_htmx_for(request, ACTIVITY_TARGET)
    if created:
        messages.success(request, gettext("Note added."))
        if not htmx:
            return redirect("customers:detail", pk=customer.pk)
        form = NoteForm()
    if htmx:
        # 200 even with errors: htmx 2 does not swap 4xx responses by default.
        context = {**_activity_context(customer, form), "partial": True}
        return render(request, "customers/_activity.html", context)
    return _render_detail(request, customer.pk, note_form=form, status=400)
