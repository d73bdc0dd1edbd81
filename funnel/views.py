"""The funnel dashboard page and its CSV exports.

Views only parse, call the ``funnel.selectors`` reports and shape their answers for the
page (percentages, chart series, heat-map shades). The filters are the API's
(``funnel.filters`` through ``funnel.forms``) and live in the URL: htmx swaps the
results and pushes the URL, and a full load of that URL renders the same page.

Every role of the dashboard may open it: the selectors count only the customers the
user may see. Channel cost is a corp-wide figure, so cost and cost per acquired customer
are shown to operators only (a store's share of a channel's cost is not known).
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from django.conf import settings
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    StreamingHttpResponse,
)
from django.shortcuts import render
from django.utils import timezone
from django.utils.http import urlencode
from django.utils.translation import gettext, gettext_lazy
from django.views.decorators.http import require_GET

from funnel import selectors
from funnel.forms import SWITCHES, FunnelFilterForm, with_default_range
from funnel.models import Milestones
from scrm.dashboard import dashboard_view, is_htmx_for, vary_on_htmx
from scrm.roles import sees_everything

RESULTS_TARGET = "funnel-results"
#: Rows of the due list on the page; the CSV has them all.
DUE_ROWS = 50
#: Heat-map colour (Pico's green) whose opacity is the cell's share.
HEAT_RGB = "16, 133, 72"
#: Characters that make a spreadsheet read a cell as a formula (CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

TREND_SERIES = [
    ("new_customers", gettext_lazy("New customers")),
    ("activations", gettext_lazy("Activations")),
    ("first_purchases", gettext_lazy("First purchases")),
    ("repurchases", gettext_lazy("Repurchases")),
    ("referrals", gettext_lazy("Referrals")),
    ("lost", gettext_lazy("Lost customers")),
]


def percent(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def _filter_form(request: HttpRequest, *, menus: bool = True) -> FunnelFilterForm:
    return FunnelFilterForm(with_default_range(request.GET), user=request.user, menus=menus)


def _query(form: FunnelFilterForm) -> dict[str, str]:
    """The valid form's state as URL parameters (for the export links)."""
    query = form.filters().as_query()
    for name in SWITCHES:
        query[name] = form.switch(name)
    return query


def _due_qs(user: Any, form: FunnelFilterForm) -> Any:
    filters = form.filters()
    return selectors.repurchase_due_qs(
        user=user,
        store_id=filters.store_id,
        staff_id=filters.staff_id,
        channel_id=filters.channel_id,
        tag_id=filters.tag_id,
    )


def _heat_cells(cohort: dict[str, Any], metric: str, top: float) -> list[dict[str, Any]]:
    """One cohort's cells of the heat map: the text and the shade (0..1) of each."""
    cells: list[dict[str, Any]] = []
    values = {"engaged": cohort["engaged"], "paid": cohort["paid"]}.get(
        metric, cohort["revenue_per_customer"]
    )
    for value in values:
        if value is None:
            cells.append({"text": "", "shade": None})
        elif metric == "revenue":
            amount = float(value)
            cells.append({"text": value, "shade": round(amount / top, 3) if top else 0.0})
        else:
            cells.append({"text": percent(value), "shade": round(value, 3)})
    return cells


def _panels(user: Any, form: FunnelFilterForm) -> dict[str, Any]:
    filters = form.filters()
    period, metric, interval = form.switch("period"), form.switch("metric"), form.switch("interval")
    funnel = selectors.funnel_report(user=user, filters=filters)
    channels = selectors.channel_report(user=user, filters=filters)
    cohorts = selectors.cohort_report(user=user, filters=filters, period=period)
    trend = selectors.trend_report(user=user, filters=filters, interval=interval)
    due: list[Milestones] = list(_due_qs(user, form)[: DUE_ROWS + 1])

    revenue_top = max(
        (float(v) for c in cohorts["cohorts"] for v in c["revenue_per_customer"] if v is not None),
        default=0.0,
    )
    return {
        "funnel": funnel,
        "stages": [
            {
                **stage,
                "from_previous": percent(stage["rate_from_previous"]),
                "from_first": percent(stage["rate_from_first"]),
            }
            for stage in funnel["stages"]
        ],
        "repurchase_rate": percent(funnel["repurchase"]["rate"]),
        "funnel_chart": {
            "labels": [stage["label"] for stage in funnel["stages"]],
            "data": [stage["count"] for stage in funnel["stages"]],
            "label": gettext("Customers"),
        },
        "channels": [
            {**row, "repurchase_pct": percent(row["repurchase_rate"])} for row in channels
        ],
        "shows_cost": sees_everything(user),
        "cohorts": [
            {**cohort, "cells": _heat_cells(cohort, metric, revenue_top)}
            for cohort in cohorts["cohorts"]
        ],
        "cohort_periods": range(cohorts["periods"]),
        "period": period,
        "metric": metric,
        "interval": interval,
        "trend": trend,
        "trend_chart": {
            "labels": [row["period"] for row in trend],
            "series": [
                {"key": key, "label": str(label), "data": [row[key] for row in trend]}
                for key, label in TREND_SERIES
            ],
        },
        "trend_series": [(key, str(label)) for key, label in TREND_SERIES],
        "due": due[:DUE_ROWS],
        "due_more": len(due) > DUE_ROWS,
        "heat_rgb": HEAT_RGB,
        "export_query": urlencode(_query(form)),
    }


@dashboard_view()
@require_GET
def funnel_dashboard(request: HttpRequest) -> HttpResponse:
    form = _filter_form(request)
    context: dict[str, Any] = {"form": form, "definitions": definitions()}
    if form.is_valid():
        context.update(_panels(request.user, form))
    # The same URL renders the whole page or, for htmx's swap, only the results: the
    # state lives in the URL either way, so a reload shows the same figures.
    context["partial"] = is_htmx_for(request, RESULTS_TARGET)
    template = "funnel/_results.html" if context["partial"] else "funnel/dashboard.html"
    return vary_on_htmx(render(request, template, context))


def definitions() -> dict[str, Any]:
    """The settings the definitions in the help text name (the product's contract)."""
    return {
        "activation_kinds": ", ".join(settings.FUNNEL_ACTIVATION_KINDS),
        "system_kinds": ", ".join(settings.FUNNEL_SYSTEM_KINDS),
        "retention_days": settings.FUNNEL_RETENTION_DAYS,
    }


# --- CSV -------------------------------------------------------------------------------


class _Echo:
    """A file whose write returns the line, for csv.writer into a streamed response."""

    def write(self, value: str) -> str:
        return value


def _cell(value: Any) -> Any:
    """A value as a spreadsheet should read it: blank for none, text that looks like a
    formula kept as text (a customer named "=HYPERLINK(...)" must not run in Excel)."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def _lines(header: Sequence[Any], rows: Iterable[Sequence[Any]]) -> Iterator[str]:
    writer = csv.writer(_Echo())
    # The BOM makes Excel read the file as UTF-8 (Chinese names and headers intact).
    yield "\ufeff" + writer.writerow([str(h) for h in header])
    for row in rows:
        yield writer.writerow([_cell(v) for v in row])


def _funnel_csv(user: Any, form: FunnelFilterForm) -> tuple[list[Any], Iterable[Sequence[Any]]]:
    report = selectors.funnel_report(user=user, filters=form.filters())
    header = [
        gettext("Stage"),
        gettext("Customers"),
        gettext("Rate from previous"),
        gettext("Rate from acquisition"),
    ]
    rows: list[list[Any]] = [
        [stage["label"], stage["count"], stage["rate_from_previous"], stage["rate_from_first"]]
        for stage in report["stages"]
    ]
    repurchase = report["repurchase"]
    rows.append([gettext("Repurchase"), repurchase["count"], repurchase["rate"], None])
    return header, rows


def _channels_csv(user: Any, form: FunnelFilterForm) -> tuple[list[Any], Iterable[Sequence[Any]]]:
    rows = selectors.channel_report(user=user, filters=form.filters())
    shows_cost = sees_everything(user)
    header = [
        gettext("Channel"),
        gettext("Acquired"),
        gettext("Activation"),
        gettext("Retention"),
        gettext("Revenue"),
        gettext("Referral"),
        gettext("First purchases"),
        gettext("Repurchases"),
        gettext("Repurchase rate"),
        gettext("Revenue amount"),
    ]
    if shows_cost:
        header += [gettext("Cost"), gettext("Cost per acquired customer")]

    def line(row: dict[str, Any]) -> list[Any]:
        cells = [
            row["channel"] or gettext("No channel"),
            row["acquired"],
            row["activation"],
            row["retention"],
            row["revenue"],
            row["referral"],
            row["first_purchases"],
            row["repurchases"],
            row["repurchase_rate"],
            row["revenue_amount"],
        ]
        if shows_cost:
            cells += [row["cost"], row["cost_per_acquired"]]
        return cells

    return header, [line(row) for row in rows]


def _cohorts_csv(user: Any, form: FunnelFilterForm) -> tuple[list[Any], Iterable[Sequence[Any]]]:
    report = selectors.cohort_report(
        user=user, filters=form.filters(), period=form.switch("period")
    )
    header = [
        gettext("Cohort"),
        gettext("Customers"),
        gettext("Period"),
        gettext("Engaged"),
        gettext("Paid"),
        gettext("Revenue per customer"),
    ]
    rows = [
        [cohort["cohort"], cohort["size"], n, engaged, paid, revenue]
        for cohort in report["cohorts"]
        for n, (engaged, paid, revenue) in enumerate(
            zip(cohort["engaged"], cohort["paid"], cohort["revenue_per_customer"], strict=True)
        )
    ]
    return header, rows


def _trend_csv(user: Any, form: FunnelFilterForm) -> tuple[list[Any], Iterable[Sequence[Any]]]:
    rows = selectors.trend_report(
        user=user, filters=form.filters(), interval=form.switch("interval")
    )
    header = [gettext("Period"), *(label for _key, label in TREND_SERIES)]
    return header, [[row["period"], *(row[key] for key, _label in TREND_SERIES)] for row in rows]


def _due_csv(user: Any, form: FunnelFilterForm) -> tuple[list[Any], Iterable[Sequence[Any]]]:
    header = [
        gettext("Customer ID"),
        gettext("Customer"),
        gettext("Store"),
        gettext("Owner"),
        gettext("Paid orders"),
        gettext("Last purchase"),
        gettext("Median interval (days)"),
        gettext("Next purchase expected"),
    ]

    def rows() -> Iterator[list[Any]]:
        # Streamed in chunks: the list may hold every repeat buyer of the corp.
        for row in _due_qs(user, form).iterator(chunk_size=2000):
            interval = row.purchase_interval
            yield [
                row.customer_id,
                row.customer.name,
                row.store.name if row.store else None,
                row.owner.name if row.owner else None,
                row.paid_orders,
                _local(row.last_paid_at),
                None if interval is None else round(interval.total_seconds() / 86_400, 2),
                _local(row.next_purchase_at),
            ]

    return header, rows()


def _local(value: Any) -> str | None:
    return None if value is None else timezone.localtime(value).strftime("%Y-%m-%d %H:%M")


EXPORTS: dict[str, Callable[[Any, FunnelFilterForm], tuple[list[Any], Iterable[Sequence[Any]]]]] = {
    "funnel": _funnel_csv,
    "channels": _channels_csv,
    "cohorts": _cohorts_csv,
    "trend": _trend_csv,
    "repurchase-due": _due_csv,
}


# dashboard_view is typed for HttpResponse; a streamed response is as good to it.
@dashboard_view()  # type: ignore[arg-type]
@require_GET
def funnel_export(request: HttpRequest, report: str) -> HttpResponseBase:
    if report not in EXPORTS:
        raise Http404("No such report.")
    # A file needs no menus: four queries saved.
    form = _filter_form(request, menus=False)
    if not form.is_valid():
        lines = [
            f"{name}: {' '.join(str(e) for e in errors)}" for name, errors in form.errors.items()
        ]
        return HttpResponse(
            "\n".join(lines) + "\n", status=400, content_type="text/plain; charset=utf-8"
        )
    header, rows = EXPORTS[report](request.user, form)
    filters = form.filters()
    filename = f"funnel-{report}-{filters.start.isoformat()}-{filters.end.isoformat()}.csv"
    content_type = "text/csv; charset=utf-8"
    response: HttpResponseBase
    if report == "repurchase-due":
        response = StreamingHttpResponse(_lines(header, rows), content_type=content_type)
    else:
        response = HttpResponse("".join(_lines(header, rows)), content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
