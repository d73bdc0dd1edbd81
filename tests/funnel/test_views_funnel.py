"""The funnel dashboard page (/funnel/) and its CSV exports."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from funnel.services import milestones_refresh
from tests.conftest import World, loads_remote_assets
from tests.factories import CustomerFactory, OrderFactory, UserFactory
from tests.funnel.helpers import PARALLEL_EXTRA
from tests.funnel.support import FunnelWorld, make_funnel_world

PAGE = "/funnel/"
HTMX = {"HTTP_HX_REQUEST": "true", "HTTP_HX_TARGET": "funnel-results"}


@pytest.fixture
def fw(world: World) -> FunnelWorld:
    return make_funnel_world(world)


def client_for(user: Any, language: str = "en") -> Client:
    client = Client(HTTP_ACCEPT_LANGUAGE=language)
    client.force_login(user)
    return client


def stage_counts(html: str) -> dict[str, str]:
    """Stage -> the count cell's text, read from the stage table's rows."""
    counts = {}
    for chunk in html.split('<tr data-stage="')[1:]:
        stage = chunk.split('"', 1)[0]
        counts[stage] = chunk.split('class="num count">', 1)[1].split("<", 1)[0]
    return counts


def csv_rows(response: Any) -> list[list[str]]:
    raw = b"".join(response.streaming_content) if response.streaming else response.content
    text = raw.decode("utf-8")
    assert text.startswith("\ufeff"), "Excel needs the BOM to read UTF-8"
    return list(csv.reader(io.StringIO(text[1:])))


# --- The page --------------------------------------------------------------------------


def test_page_renders_every_panel(fw: FunnelWorld, operator_user: Any) -> None:
    response = client_for(operator_user).get(PAGE, fw.query())
    assert response.status_code == 200
    html = response.content.decode()
    assert stage_counts(html) == {
        "acquisition": "4",
        "activation": "2",
        "retention": "1",
        "revenue": "1",
        "referral": "1",
        "repurchase": "1",
    }
    for marker in (
        'id="funnel-chart"',
        'id="funnel-chart-data"',
        'id="funnel-channels"',
        'id="funnel-cohorts"',
        'id="trend-chart-data"',
        "vendor/chartjs/chart.umd.min.js",
        'hx-push-url="true"',
        "广告 Ads",
        "How the stages are counted",
        "message_received",  # the activation kinds, from the settings
    ):
        assert marker in html, marker
    # Every script and style is served by us (a CSRF token may spell "cdn" by chance).
    assert not loads_remote_assets(html)


def test_default_range_is_the_last_90_days(fw: FunnelWorld, operator_user: Any) -> None:
    html = client_for(operator_user).get(PAGE).content.decode()
    tomorrow = timezone.localdate() + timedelta(days=1)
    assert f'name="end" value="{tomorrow.isoformat()}"' in html
    assert f'name="start" value="{(tomorrow - timedelta(days=90)).isoformat()}"' in html


def test_htmx_gets_only_the_results_and_a_full_load_the_same(
    fw: FunnelWorld, operator_user: Any
) -> None:
    client = client_for(operator_user)
    query = fw.query(store=fw.world.store_a.pk)
    partial = client.get(PAGE, query, **HTMX)
    assert partial.status_code == 200
    assert "<html" not in partial.content.decode()
    assert 'id="funnel-filters"' not in partial.content.decode()
    assert "HX-Request" in partial["Vary"]
    full = client.get(PAGE, query)
    assert "<html" in full.content.decode()
    assert stage_counts(partial.content.decode()) == stage_counts(full.content.decode())
    assert stage_counts(full.content.decode())["acquisition"] == "3"


def test_selected_filters_survive_a_reload(fw: FunnelWorld, operator_user: Any) -> None:
    html = client_for(operator_user).get(PAGE, fw.query(channel=fw.ads.pk, window_days=5))
    text = html.content.decode()
    assert f'<option value="{fw.ads.pk}" selected>' in text
    assert 'name="window_days" value="5"' in text


def test_heat_map_and_trend_switches(fw: FunnelWorld, operator_user: Any) -> None:
    client = client_for(operator_user)
    html = client.get(PAGE, fw.query(period="month", metric="paid", interval="month"))
    text = html.content.decode()
    assert "Monthly cohorts" in text
    assert "Share of the cohort who paid" in text
    # The March cohort: half of its four customers paid in period 0.
    assert "50.0%" in text
    assert "background-color: rgba(" in text


def test_invalid_filters_are_explained_not_a_500(fw: FunnelWorld, operator_user: Any) -> None:
    client = client_for(operator_user)
    response = client.get(PAGE, {"start": "2026-04-01", "end": "2026-03-01", "window_days": "0"})
    assert response.status_code == 200
    html = response.content.decode()
    assert 'role="alert"' in html
    assert "Must be after the start date." in html
    assert 'id="funnel-stages"' not in html
    # htmx gets the explanation in the results area too.
    partial = client.get(PAGE, {"start": "x"}, **HTMX)
    assert 'role="alert"' in partial.content.decode()


def test_manager_sees_their_store_and_no_channel_cost(fw: FunnelWorld) -> None:
    html = client_for(fw.world.manager_a.user).get(PAGE, fw.query()).content.decode()
    assert stage_counts(html)["acquisition"] == "3"
    # Menus offer only what they may see.
    assert f'<option value="{fw.world.store_a.pk}">Store A</option>' in html
    assert "Store B" not in html
    assert "Clerk B" not in html
    # A channel's cost is corp-wide: dividing it by one store's customers would mislead.
    assert "Cost per acquired customer" not in html


def test_operator_sees_channel_cost(fw: FunnelWorld, operator_user: Any) -> None:
    html = client_for(operator_user).get(PAGE, fw.query()).content.decode()
    assert "Cost per acquired customer" in html
    assert "500.00" in html


def test_page_is_chinese_by_default(fw: FunnelWorld, operator_user: Any) -> None:
    html = client_for(operator_user, language="zh-hans").get(PAGE, fw.query()).content.decode()
    assert "漏斗" in html
    assert "获客" in html  # Stage.ACQUISITION
    assert "复购" in html


def test_nav_links_to_the_funnel_for_every_dashboard_role(fw: FunnelWorld) -> None:
    html = client_for(fw.world.clerk_a.user).get("/customers/").content.decode()
    assert f'href="{PAGE}"' in html


def test_user_content_is_escaped(world: World, operator_user: Any) -> None:
    now = timezone.now()
    customer = CustomerFactory(
        name="<script>alert(1)</script>", store=world.store_a, acquired_at=now - timedelta(200)
    )
    for days in (30, 60):
        OrderFactory(customer=customer, paid_at=now - timedelta(days=days))
    milestones_refresh()
    html = client_for(operator_user).get(PAGE).content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html  # in the due list
    assert "<script>alert(1)" not in html


def test_anonymous_goes_to_login(db: Any) -> None:
    response = Client().get(PAGE)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")
    htmx = Client().get(PAGE, **HTMX)
    assert htmx["HX-Redirect"].startswith("/accounts/login/")


def test_api_clients_cannot_use_the_page(integration_user: Any) -> None:
    assert client_for(integration_user).get(PAGE).status_code == 403


def test_roleless_user_gets_403(db: Any) -> None:
    assert client_for(UserFactory(username="nobody")).get(PAGE).status_code == 403


def test_page_query_budget(
    fw: FunnelWorld, django_assert_max_num_queries: Any, operator_user: Any
) -> None:
    client = client_for(operator_user)
    # Session and user (2), four filter menus, then the reports' aggregates: funnel 1,
    # channels 2, cohorts 2, trend 5, due list 1. Never one per customer or per row.
    with django_assert_max_num_queries(17 + PARALLEL_EXTRA):
        assert client.get(PAGE, fw.query()).status_code == 200


def test_manager_page_query_budget(fw: FunnelWorld, django_assert_max_num_queries: Any) -> None:
    client = client_for(fw.world.manager_a.user)
    with django_assert_max_num_queries(18 + PARALLEL_EXTRA):
        assert client.get(PAGE, fw.query(tag=fw.vip.pk), **HTMX).status_code == 200


# --- CSV -------------------------------------------------------------------------------


def export(client: Client, report: str, query: dict[str, Any]) -> Any:
    return client.get(f"{PAGE}export/{report}.csv", query)


def test_funnel_csv(fw: FunnelWorld, operator_user: Any) -> None:
    response = export(client_for(operator_user), "funnel", fw.query())
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == (
        'attachment; filename="funnel-funnel-2026-03-01-2026-04-01.csv"'
    )
    rows = csv_rows(response)
    assert rows[0] == ["Stage", "Customers", "Rate from previous", "Rate from acquisition"]
    assert rows[1] == ["Acquisition", "4", "1.0", "1.0"]
    assert rows[2] == ["Activation", "2", "0.5", "0.5"]
    assert rows[-1] == ["Repurchase", "1", "0.5", ""]


def test_funnel_csv_in_chinese(fw: FunnelWorld, operator_user: Any) -> None:
    rows = csv_rows(export(client_for(operator_user, "zh-hans"), "funnel", fw.query()))
    assert rows[1][0] == "获客"


def test_channels_csv(fw: FunnelWorld, operator_user: Any) -> None:
    rows = csv_rows(export(client_for(operator_user), "channels", fw.query()))
    header, *body = rows
    assert header[0] == "Channel"
    assert header[-1] == "Cost per acquired customer"
    by_name = {row[0]: dict(zip(header, row, strict=True)) for row in body}
    assert by_name["门店 Stores"]["Acquired"] == "2"
    assert by_name["门店 Stores"]["Revenue amount"] == "198.00"
    assert by_name["广告 Ads"]["Cost per acquired customer"] == "500.00"


def test_channels_csv_of_a_manager_has_no_cost(fw: FunnelWorld) -> None:
    header = csv_rows(export(client_for(fw.world.manager_a.user), "channels", fw.query()))[0]
    assert "Cost" not in header


def test_cohorts_csv(fw: FunnelWorld, operator_user: Any) -> None:
    query = fw.query(period="month")
    header, *body = csv_rows(export(client_for(operator_user), "cohorts", query))
    assert header == ["Cohort", "Customers", "Period", "Engaged", "Paid", "Revenue per customer"]
    assert len(body) == 12  # one March cohort x 12 periods
    assert body[0][:3] == ["2026-03-01", "4", "0"]
    assert body[0][4] == "0.5"
    assert body[0][5] == "74.25"


def test_trend_csv(fw: FunnelWorld, operator_user: Any) -> None:
    query = fw.query(interval="month")
    rows = csv_rows(export(client_for(operator_user), "trend", query))
    assert rows == [
        [
            "Period",
            "New customers",
            "Activations",
            "First purchases",
            "Repurchases",
            "Referrals",
            "Lost customers",
        ],
        ["2026-03-01", "4", "2", "2", "1", "1", "0"],
    ]


def test_due_csv_is_streamed_and_neutralises_formulas(world: World, operator_user: Any) -> None:
    now = timezone.now()
    names = ["王小姐", '=HYPERLINK("http://x")', "@SUM(A1)"]
    for name in names:
        customer: Any = CustomerFactory(
            name=name, store=world.store_a, acquired_at=now - timedelta(days=200)
        )
        for days in (30, 60):
            OrderFactory(customer=customer, paid_at=now - timedelta(days=days))
    milestones_refresh()
    response = export(client_for(operator_user), "repurchase-due", {})
    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Disposition"].startswith('attachment; filename="funnel-repurchase-due')
    header, *body = csv_rows(response)
    assert header[:2] == ["Customer ID", "Customer"]
    assert sorted(row[1] for row in body) == sorted(
        ["王小姐", '\'=HYPERLINK("http://x")', "'@SUM(A1)"]
    )
    assert all(row[2] == "Store A" and row[4] == "2" and row[6] == "30.0" for row in body)


def test_export_with_bad_filters_is_a_400(db: Any, operator_user: Any) -> None:
    response = export(client_for(operator_user), "funnel", {"start": "2026-03-01", "end": "x"})
    assert response.status_code == 400
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert "end:" in response.content.decode()


def test_unknown_export_is_404(db: Any, operator_user: Any) -> None:
    assert export(client_for(operator_user), "customers", {}).status_code == 404


def test_export_needs_login(db: Any) -> None:
    assert Client().get(f"{PAGE}export/funnel.csv").status_code == 302


@pytest.mark.parametrize(
    ("report", "budget"),
    [
        ("funnel", 3),
        ("channels", 4),
        ("cohorts", 4 + PARALLEL_EXTRA),
        ("trend", 7),
        ("repurchase-due", 3),
    ],
)
def test_export_query_budgets(
    fw: FunnelWorld,
    operator_user: Any,
    django_assert_max_num_queries: Any,
    report: str,
    budget: int,
) -> None:
    client = client_for(operator_user)
    # Session and user (2) + the report's aggregates (a file builds no filter menus).
    with django_assert_max_num_queries(budget):
        response = export(client, report, fw.query())
        if response.streaming:
            b"".join(response.streaming_content)
        assert response.status_code == 200


def test_only_the_missing_end_of_the_range_is_filled(db: Any) -> None:
    from django.http import QueryDict

    from funnel.forms import with_default_range

    tomorrow = timezone.localdate() + timedelta(days=1)
    from_start = with_default_range(QueryDict("start=2026-01-01"))
    assert (from_start["start"], from_start["end"]) == ("2026-01-01", tomorrow.isoformat())
    before_end = with_default_range(QueryDict("end=2026-04-01"))
    assert (before_end["start"], before_end["end"]) == ("2026-01-01", "2026-04-01")
    # A bad end keeps its own error; the start still gets a sensible default.
    bad_end = with_default_range(QueryDict("end=soon"))
    assert bad_end["end"] == "soon"
    assert bad_end["start"] == (tomorrow - timedelta(days=90)).isoformat()
