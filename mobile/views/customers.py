"""My customers (/m/customers/): search, filters, sorting and infinite scroll.

The view parses the query string, asks ``mobile.selectors.customers`` for one page and
renders it. The same URL answers the whole page or, for htmx's infinite scroll, only the
next rows: the filter state lives in the URL either way, so a reload or a link shows
the same list.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from campaigns.models import Touchpoint
from customers.models import Customer
from customers.selectors import channel_options
from mobile.forms_customers import CustomerListForm
from mobile.selectors.customers import (
    my_customers_filtered,
    next_steps,
    stage_label,
    step_label,
)
from mobile.views.auth import mobile_view
from scrm.dashboard import is_htmx_for, offset_paginate, parse_page_number, vary_on_htmx
from scrm.roles import masks_phones

PAGE_SIZE = 30
#: The element at the end of the list that loads the next page when scrolled into view.
MORE_TARGET = "customers-more"
# Deep offsets cost the database a scan of every skipped row; nobody scrolls 300 pages.
MAX_PAGE = 300


@dataclass(frozen=True)
class CustomerRow:
    customer: Customer
    stage_label: str
    next_touchpoint: Touchpoint | None
    next_label: str


def _rows(customers: list[Customer]) -> list[CustomerRow]:
    steps = next_steps(customers)
    rows = []
    for customer in customers:
        touchpoint = steps.get(customer.pk)
        rows.append(
            CustomerRow(
                customer=customer,
                stage_label=stage_label(customer.stage),  # type: ignore[attr-defined]
                next_touchpoint=touchpoint,
                next_label=step_label(touchpoint) if touchpoint is not None else "",
            )
        )
    return rows


def _query_without_page(request: HttpRequest) -> str:
    return urlencode([(k, v) for k, v in request.GET.items() if k != "page" and v])


@mobile_view()
@require_GET
def customer_list(request: HttpRequest) -> HttpResponse:
    user: Any = request.user
    form = CustomerListForm(request.GET, user=user, channel_choices=channel_options(user))
    filters = form.filters()
    masked = masks_phones(user)
    qs = my_customers_filtered(user, filters, masked=masked)
    page = offset_paginate(
        qs,
        number=parse_page_number(request.GET.get("page"), maximum=MAX_PAGE),
        page_size=PAGE_SIZE,
    )
    context: dict[str, Any] = {
        "form": form,
        "page": page,
        "rows": _rows(list(page.rows)),
        "mask_phones": masked,
        "query": _query_without_page(request),
        "more_target": MORE_TARGET,
        "m_tab": "customers",
    }
    if is_htmx_for(request, MORE_TARGET):
        return vary_on_htmx(render(request, "m/_customer_rows.html", context))
    # The total is asked only for the whole page, never per scrolled page.
    context["total"] = qs.count() if page.has_next or page.number > 1 else len(page.rows)
    context["filtered"] = form.is_filtered()
    return vary_on_htmx(render(request, "m/customers.html", context))
