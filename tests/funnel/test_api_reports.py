"""The other report endpoints: cohorts, channels, trend, repurchase-due and one customer's
funnel. Each checks its contract, scoping, bad input (400 naming the field) and budget."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from io import StringIO
from typing import Any

import pytest
import yaml
from django.core.management import call_command
from django.utils import timezone
from rest_framework.test import APIClient

from customers.models import Customer
from funnel.services import milestones_refresh
from tests.conftest import World, api_client_for
from tests.factories import CustomerFactory, OrderFactory
from tests.funnel.helpers import PARALLEL_EXTRA
from tests.funnel.support import FunnelWorld, make_funnel_world

BASE = "/api/v1/funnel/"


@pytest.fixture
def fw(world: World) -> FunnelWorld:
    return make_funnel_world(world)


def due_customer(world: World, *, store: Any, name: str, days_ago: int = 30) -> Customer:
    """A repeat buyer every 30 days, last purchase ``days_ago``: due about now."""
    now = timezone.now()
    # factory_boy's stubs type the factory, not the instance it makes.
    customer: Any = CustomerFactory(name=name, store=store, acquired_at=now - timedelta(days=200))
    for gap in (days_ago, days_ago + 30, days_ago + 60):
        OrderFactory(customer=customer, paid_at=now - timedelta(days=gap), store=store)
    return customer


def assert_400(response: Any, *fields: str) -> None:
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert set(fields) <= set(error["fields"]), error
    for field in fields:
        assert all(isinstance(m, str) and m for m in error["fields"][field])


# --- Cohorts ---------------------------------------------------------------------------


def test_cohorts_contract(fw: FunnelWorld, api_client: APIClient) -> None:
    body = api_client.get(BASE + "cohorts/", fw.query(period="month", periods=3)).json()
    assert body["period"] == "month"
    assert body["periods"] == 3
    assert body["filters"]["start"] == "2026-03-01"
    [march] = body["cohorts"]
    assert march["cohort"] == "2026-03-01"
    assert march["size"] == 4
    for key in ("engaged", "paid", "revenue_per_customer"):
        assert len(march[key]) == 3
    # Period 0: the champion and buyer_b paid (2 of 4); revenue (99 + 99 + 99) / 4.
    assert march["paid"][0] == 0.5
    assert Decimal(march["revenue_per_customer"][0]) == Decimal("74.25")


def test_cohorts_default_to_weeks(fw: FunnelWorld, api_client: APIClient) -> None:
    body = api_client.get(BASE + "cohorts/", fw.query()).json()
    assert body["period"] == "week"
    assert body["periods"] == 12
    assert all(c["cohort"] >= "2026-02-23" for c in body["cohorts"])


@pytest.mark.parametrize(
    ("params", "field"),
    [({"period": "day"}, "period"), ({"periods": "0"}, "periods"), ({"periods": "63"}, "periods")],
)
def test_cohorts_bad_parameters(
    fw: FunnelWorld, api_client: APIClient, params: dict[str, str], field: str
) -> None:
    assert_400(api_client.get(BASE + "cohorts/", fw.query(**params)), field)


def test_cohorts_report_filter_and_own_errors_together(db: Any, api_client: APIClient) -> None:
    response = api_client.get(BASE + "cohorts/", {"start": "x", "period": "decade"})
    assert_400(response, "start", "end", "period")


# --- Channels --------------------------------------------------------------------------


def test_channels_contract(fw: FunnelWorld, api_client: APIClient) -> None:
    body = api_client.get(BASE + "channels/", fw.query()).json()
    rows = {row["channel"]: row for row in body["rows"]}
    assert set(rows) == {"广告 Ads", "门店 Stores"}
    stores = rows["门店 Stores"]
    assert stores["channel_id"] == fw.stores_channel.pk
    assert stores["acquired"] == 2  # the champion and the referee
    assert (stores["activation"], stores["retention"], stores["revenue"]) == (1, 1, 1)
    assert stores["referral"] == 1
    assert (stores["first_purchases"], stores["repurchases"]) == (1, 1)
    assert stores["repurchase_rate"] == 1.0
    assert Decimal(stores["revenue_amount"]) == Decimal("198.00")
    assert Decimal(stores["cost"]) == Decimal("1000.00")
    assert Decimal(stores["cost_per_acquired"]) == Decimal("500.00")


def test_channels_manager_sees_their_store_only(fw: FunnelWorld) -> None:
    body = api_client_for(fw.world.manager_a.user).get(BASE + "channels/", fw.query()).json()
    acquired = {row["channel"]: row["acquired"] for row in body["rows"]}
    assert acquired == {"门店 Stores": 2, "广告 Ads": 1}  # buyer_b (store B) is not counted
    # A channel's cost is corp-wide: not a store manager's to divide by their customers.
    assert {(row["cost"], row["cost_per_acquired"]) for row in body["rows"]} == {(None, None)}


def test_channels_bad_dates(db: Any, api_client: APIClient) -> None:
    params = {"start": "2026-04-01", "end": "2026-03-01"}
    assert_400(api_client.get(BASE + "channels/", params), "end")


# --- Trend -----------------------------------------------------------------------------


def test_trend_by_month(fw: FunnelWorld, api_client: APIClient) -> None:
    body = api_client.get(BASE + "trend/", fw.query(interval="month")).json()
    assert body["interval"] == "month"
    [march] = body["rows"]
    assert march["period"] == "2026-03-01"
    assert march["new_customers"] == 4
    assert march["activations"] == 2
    assert march["first_purchases"] == 2
    assert march["repurchases"] == 1
    assert march["referrals"] == 1


def test_trend_defaults_to_days(fw: FunnelWorld, api_client: APIClient) -> None:
    body = api_client.get(BASE + "trend/", fw.query()).json()
    assert body["interval"] == "day"
    assert len(body["rows"]) == 31
    assert sum(row["new_customers"] for row in body["rows"]) == 4


@pytest.mark.parametrize("interval", ["week", "hour", "DAY"])
def test_trend_unknown_interval_is_a_400(
    fw: FunnelWorld, api_client: APIClient, interval: str
) -> None:
    assert_400(api_client.get(BASE + "trend/", fw.query(interval=interval)), "interval")


# --- Repurchase due --------------------------------------------------------------------


def test_due_list_scoped_ordered_and_paginated(world: World) -> None:
    first = due_customer(world, store=world.store_a, name="Due A1", days_ago=33)
    second = due_customer(world, store=world.store_a, name="Due A2", days_ago=31)
    due_customer(world, store=world.store_b, name="Due B", days_ago=32)
    # Bought once: no cycle, never due.
    OrderFactory(customer=world.customer_a, paid_at=timezone.now() - timedelta(days=40))
    milestones_refresh()

    client = api_client_for(world.manager_a.user)
    page = client.get(BASE + "repurchase-due/", {"limit": 1}).json()
    assert [row["name"] for row in page["results"]] == ["Due A1"]
    row = page["results"][0]
    assert row["customer"] == first.pk
    assert row["store"] == world.store_a.pk
    assert row["store_name"] == "Store A"
    assert row["paid_orders"] == 3
    assert row["median_interval_days"] == 30.0
    assert row["next_purchase_at"]
    assert page["previous"] is None
    assert "offset=1" in page["next"]

    second_page = client.get(page["next"]).json()
    assert [r["customer"] for r in second_page["results"]] == [second.pk]
    assert second_page["next"] is None
    assert second_page["previous"] is not None


def test_due_list_filters(world: World, api_client: APIClient) -> None:
    due_customer(world, store=world.store_a, name="Due A")
    due_customer(world, store=world.store_b, name="Due B")
    milestones_refresh()
    every = api_client.get(BASE + "repurchase-due/").json()["results"]
    assert {r["name"] for r in every} == {"Due A", "Due B"}
    store_b = api_client.get(BASE + "repurchase-due/", {"store": world.store_b.pk}).json()
    assert [r["name"] for r in store_b["results"]] == ["Due B"]
    # Due in 30 days at the latest, as seen from 40 days ago: nobody yet.
    past = (timezone.localdate() - timedelta(days=40)).isoformat()
    early = api_client.get(BASE + "repurchase-due/", {"as_of": past, "within_days": 0}).json()
    assert early["results"] == []


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"within_days": "-1"}, "within_days"),
        ({"within_days": "367"}, "within_days"),
        ({"as_of": "2026-02-30"}, "as_of"),
        ({"limit": "0"}, "limit"),
        ({"limit": "501"}, "limit"),
        ({"offset": "-5"}, "offset"),
        ({"store": "x"}, "store"),
        ({"tag": str(2**64)}, "tag"),
    ],
)
def test_due_list_bad_parameters(
    db: Any, api_client: APIClient, params: dict[str, str], field: str
) -> None:
    assert_400(api_client.get(BASE + "repurchase-due/", params), field)


def test_due_list_query_budget(
    world: World, api_client: APIClient, django_assert_max_num_queries: Any
) -> None:
    for n in range(5):
        due_customer(world, store=world.store_a, name=f"Due {n}")
    milestones_refresh()
    # Token, role checks, and ONE query for the page (customer, store, owner joined).
    with django_assert_max_num_queries(4):
        body = api_client.get(BASE + "repurchase-due/").json()
    assert len(body["results"]) == 5


# --- One customer ----------------------------------------------------------------------


def test_customer_funnel(fw: FunnelWorld) -> None:
    client = api_client_for(fw.world.manager_a.user)
    body = client.get(f"{BASE}customers/{fw.champion.pk}/").json()
    assert body["customer"] == fw.champion.pk
    assert body["stage"] == "referral"
    for name in ("acquisition", "activation", "retention", "revenue", "repurchase", "referral"):
        assert body["milestones"][name] is not None, name
    assert body["reached"]["referral"] is not None
    assert [(c["from_stage"], c["to_stage"]) for c in body["history"]] == [
        ("acquisition", "activation"),
        ("activation", "retention"),
        ("retention", "revenue"),
        ("revenue", "referral"),
    ]
    cycle = body["repurchase_cycle"]
    assert cycle["paid_orders"] == 2
    assert cycle["median_interval_days"] == 10.0
    assert cycle["next_purchase_at"] is not None


def test_customer_funnel_of_a_new_customer(world: World, api_client: APIClient) -> None:
    body = api_client.get(f"{BASE}customers/{world.customer_b.pk}/").json()
    # Made by a factory without a refresh: no milestones yet, still a valid answer.
    assert body["customer"] == world.customer_b.pk
    assert body["history"] == []
    assert body["repurchase_cycle"]["paid_orders"] == 0


def test_other_stores_customer_is_404(fw: FunnelWorld) -> None:
    client = api_client_for(fw.world.manager_a.user)
    response = client.get(f"{BASE}customers/{fw.buyer_b.pk}/")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    # Exactly like an id that does not exist, or cannot.
    assert client.get(f"{BASE}customers/999999/").status_code == 404
    assert client.get(f"{BASE}customers/{2**64}/").status_code == 404


def test_customer_funnel_query_budget(
    fw: FunnelWorld, api_client: APIClient, django_assert_max_num_queries: Any
) -> None:
    with django_assert_max_num_queries(7):
        assert api_client.get(f"{BASE}customers/{fw.champion.pk}/").status_code == 200


# --- Every endpoint --------------------------------------------------------------------

ENDPOINTS = ["", "cohorts/", "channels/", "trend/"]


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_reports_need_start_and_end(db: Any, api_client: APIClient, endpoint: str) -> None:
    assert_400(api_client.get(BASE + endpoint), "start", "end")


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_reports_refuse_window_zero(fw: FunnelWorld, api_client: APIClient, endpoint: str) -> None:
    assert_400(api_client.get(BASE + endpoint, fw.query(window_days=0)), "window_days")


@pytest.mark.parametrize(
    ("endpoint", "budget"),
    [("", 4), ("cohorts/", 5 + PARALLEL_EXTRA), ("channels/", 5), ("trend/", 8)],
)
def test_report_query_budgets(
    fw: FunnelWorld,
    api_client: APIClient,
    django_assert_max_num_queries: Any,
    endpoint: str,
    budget: int,
) -> None:
    # Token and role checks (3), then the selector's few aggregate queries, whatever the
    # number of customers: never one per row.
    with django_assert_max_num_queries(budget):
        assert api_client.get(BASE + endpoint, fw.query(tag=fw.vip.pk)).status_code == 200


@pytest.mark.parametrize("endpoint", [*ENDPOINTS, "repurchase-due/", "customers/1/"])
def test_reports_need_a_role(db: Any, endpoint: str) -> None:
    assert APIClient().get(BASE + endpoint).status_code == 401


def test_schema_documents_the_funnel_endpoints(tmp_path: Any) -> None:
    target = tmp_path / "schema.yaml"
    call_command(
        "spectacular",
        "--validate",
        "--fail-on-warn",
        "--file",
        str(target),
        stdout=StringIO(),
        stderr=StringIO(),
    )
    paths = yaml.safe_load(target.read_text())["paths"]
    for endpoint in [*ENDPOINTS, "repurchase-due/", "customers/{customer_id}/"]:
        operation = paths[BASE + endpoint]["get"]
        assert "200" in operation["responses"]
        assert "401" in operation["responses"]
    assert "400" in paths[BASE]["get"]["responses"]
    assert "404" in paths[BASE + "customers/{customer_id}/"]["get"]["responses"]


def test_due_row_without_store_or_owner(db: Any, api_client: APIClient) -> None:
    now = timezone.now()
    customer: Any = CustomerFactory(name="Walk-in", acquired_at=now - timedelta(days=100))
    for days in (30, 60):
        OrderFactory(customer=customer, paid_at=now - timedelta(days=days))
    milestones_refresh()
    [row] = api_client.get(BASE + "repurchase-due/").json()["results"]
    assert (row["store"], row["store_name"], row["owner"], row["owner_name"]) == (
        None,
        None,
        None,
        None,
    )
