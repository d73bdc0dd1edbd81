"""GET /api/v1/funnel/: the contract, each filter, row-level scoping and bad input."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from tests.conftest import World, api_client_for
from tests.funnel.support import END, START, FunnelWorld, make_funnel_world

URL = "/api/v1/funnel/"
STAGES = ["acquisition", "activation", "retention", "revenue", "referral"]


@pytest.fixture
def fw(world: World) -> FunnelWorld:
    return make_funnel_world(world)


def counts(body: dict[str, Any]) -> list[int]:
    return [stage["count"] for stage in body["stages"]]


def test_funnel_answers_the_issue_contract(fw: FunnelWorld, api_client: APIClient) -> None:
    response = api_client.get(URL, fw.query())
    assert response.status_code == 200
    body = response.json()
    assert [s["stage"] for s in body["stages"]] == STAGES
    for stage in body["stages"]:
        assert {"stage", "count", "rate_from_previous", "rate_from_first"} <= set(stage)
    assert {"count", "rate"} <= set(body["repurchase"])
    # champion (all five), activated (2), buyer_b (acquired, bought), referee (acquired).
    assert counts(body) == [4, 2, 1, 1, 1]
    assert body["stages"][0]["rate_from_previous"] == 1.0
    assert body["stages"][1]["rate_from_previous"] == 0.5
    assert body["stages"][2]["rate_from_first"] == 0.25
    assert body["repurchase"] == {"count": 1, "rate": 0.5, "first_purchases": 2}
    assert body["filters"] == {"start": START.isoformat(), "end": END.isoformat()}


def test_empty_cohort_has_null_rates(fw: FunnelWorld, api_client: APIClient) -> None:
    body = api_client.get(URL, {"start": "2020-01-01", "end": "2020-02-01"}).json()
    assert counts(body) == [0] * 5
    assert all(stage["rate_from_previous"] is None for stage in body["stages"])
    assert body["repurchase"]["rate"] is None


@pytest.mark.parametrize(
    ("param", "expected"),
    [
        ("channel", [2, 1, 0, 0, 0]),  # ads: activated, buyer_b
        ("store", [3, 2, 1, 1, 1]),  # store A: champion, activated, referee
        ("staff", [1, 1, 1, 1, 1]),  # clerk_a owns the champion
        ("tag", [1, 1, 1, 1, 1]),  # VIP: the champion
    ],
)
def test_each_filter_narrows_the_cohort(
    fw: FunnelWorld, api_client: APIClient, param: str, expected: list[int]
) -> None:
    value = {
        "channel": fw.ads.pk,
        "store": fw.world.store_a.pk,
        "staff": fw.world.clerk_a.pk,
        "tag": fw.vip.pk,
    }[param]
    body = api_client.get(URL, fw.query(**{param: value})).json()
    assert counts(body) == expected
    assert body["filters"][param] == str(value)


def test_window_days_counts_only_milestones_reached_in_time(
    fw: FunnelWorld, api_client: APIClient
) -> None:
    # The champion's retention came on day 9, the first purchase on day 10: a window of
    # 5 days keeps only the activations (same-day) and buyer_b's purchase (day 3).
    body = api_client.get(URL, fw.query(window_days=5)).json()
    assert counts(body) == [4, 2, 0, 0, 0]
    assert body["repurchase"]["first_purchases"] == 1


def test_manager_sees_only_their_store(fw: FunnelWorld) -> None:
    client = api_client_for(fw.world.manager_a.user)
    body = client.get(URL, fw.query()).json()
    assert counts(body) == [3, 2, 1, 1, 1]
    # Asking for the other store gives nothing of it, not a leak.
    other = client.get(URL, fw.query(store=fw.world.store_b.pk)).json()
    assert counts(other) == [0] * 5


def test_clerk_sees_only_their_customers(fw: FunnelWorld) -> None:
    body = api_client_for(fw.world.clerk_b.user).get(URL, fw.query()).json()
    # buyer_b bought but never engaged: stage 1 only; the purchase still counts below.
    assert counts(body) == [1, 0, 0, 0, 0]
    assert body["repurchase"]["first_purchases"] == 1


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"start": "2026-13-01", "end": "2026-04-01"}, "start"),
        ({"start": "yesterday", "end": "2026-04-01"}, "start"),
        ({"start": "2026-03-01"}, "end"),
        ({"start": "2026-03-01", "end": "2026-03-01"}, "end"),  # end must be after start
        ({"start": "2026-03-01", "end": "2026-02-01"}, "end"),
        ({"start": "2026-03-01", "end": "2026-04-01", "window_days": "0"}, "window_days"),
        ({"start": "2026-03-01", "end": "2026-04-01", "window_days": "x"}, "window_days"),
        ({"start": "2026-03-01", "end": "2026-04-01", "channel": "ads"}, "channel"),
        ({"start": "2026-03-01", "end": "2026-04-01", "store": str(2**70)}, "store"),
        ({"start": "0001-01-01", "end": "9999-12-31"}, "end"),  # a span too long
    ],
)
def test_bad_input_is_a_400_naming_the_field(
    db: Any, api_client: APIClient, params: dict[str, str], field: str
) -> None:
    response = api_client.get(URL, params)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert error["message"]
    assert field in error["fields"], error
    assert all(isinstance(m, str) and m for m in error["fields"][field])


def test_every_bad_field_is_reported_at_once(db: Any, api_client: APIClient) -> None:
    response = api_client.get(URL, {"start": "x", "end": "y", "window_days": "0"})
    assert set(response.json()["error"]["fields"]) == {"start", "end", "window_days"}


def test_messages_follow_the_request_language(db: Any, api_client: APIClient) -> None:
    params = {"start": "2026-03-01", "end": "2026-03-01"}
    english = api_client.get(URL, params, HTTP_ACCEPT_LANGUAGE="en").json()
    assert english["error"]["fields"]["end"] == ["Must be after the start date."]


def test_anonymous_is_401_and_roleless_is_403(db: Any) -> None:
    from tests.factories import UserFactory

    assert APIClient().get(URL, {"start": "2026-03-01", "end": "2026-04-01"}).status_code == 401
    response = api_client_for(UserFactory(username="nobody")).get(URL)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"


def test_funnel_is_read_only(db: Any, api_client: APIClient) -> None:
    assert api_client.post(URL, {}).status_code == 405


def test_funnel_query_budget(
    fw: FunnelWorld, django_assert_max_num_queries: Any, api_client: APIClient
) -> None:
    # Token, the staff-profile and group checks of the role, and ONE aggregate for the funnel.
    with django_assert_max_num_queries(4):
        assert api_client.get(URL, fw.query(store=fw.world.store_a.pk)).status_code == 200


def test_manager_funnel_is_one_aggregate_query(fw: FunnelWorld) -> None:
    client = api_client_for(fw.world.manager_a.user)
    with CaptureQueriesContext(connection) as queries:
        assert client.get(URL, fw.query(tag=fw.vip.pk)).status_code == 200
    report_queries = [q for q in queries if "funnel_milestones" in q["sql"]]
    assert len(report_queries) == 1
