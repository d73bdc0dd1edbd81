"""The customers list page: who sees what, filters in the URL, htmx partials, budget."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from customers.models import CustomerStatus
from tests.conftest import World
from tests.factories import (
    ChannelFactory,
    CustomerFactory,
    CustomerTagFactory,
    FollowFactory,
    StaffFactory,
    TagFactory,
)

LIST = reverse("customers:list")
HTMX = {"HTTP_HX_REQUEST": "true", "HTTP_HX_TARGET": "customer-results"}


def client_for(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def names(response: Any) -> list[str]:
    return [c.name for c in response.context["page"].rows]


def test_operator_sees_every_customer(world: World, operator_user: Any) -> None:
    response = client_for(operator_user).get(LIST)
    assert response.status_code == 200
    assert sorted(names(response)) == ["Alice A", "Anna A2", "Bob B"]


def test_manager_sees_only_their_stores_customers(world: World) -> None:
    response = client_for(world.manager_a.user).get(LIST)
    assert sorted(names(response)) == ["Alice A", "Anna A2"]
    assert "Bob B" not in response.content.decode()


def test_clerk_sees_only_the_customers_they_serve(world: World) -> None:
    response = client_for(world.clerk_a.user).get(LIST)
    assert names(response) == ["Alice A"]


def test_store_filter_offers_only_the_users_store(world: World) -> None:
    response = client_for(world.clerk_a.user).get(LIST)
    html = response.content.decode()
    assert f'value="{world.store_a.pk}"' in html
    assert "Store B" not in html


def test_clerk_cannot_name_another_store_in_a_filter(world: World) -> None:
    response = client_for(world.clerk_a.user).get(LIST, {"store": world.store_b.pk})
    # The invalid choice is ignored (and reported), never used to widen the result.
    assert names(response) == ["Alice A"]
    assert response.context["filter"].errors


def test_search_narrows_by_name_and_phone(world: World, operator_user: Any) -> None:
    client = client_for(operator_user)
    assert names(client.get(LIST, {"q": "alice"})) == ["Alice A"]
    assert names(client.get(LIST, {"q": world.customer_b.phone})) == ["Bob B"]


def test_filters_narrow_the_list(world: World, operator_user: Any) -> None:
    channel = ChannelFactory(name="Flyers")
    tag = TagFactory(name="VIP")
    lost = CustomerFactory(
        name="Lucy Lost",
        store=world.store_b,
        status=CustomerStatus.LOST,
        lost_at=timezone.now(),
        source_channel=channel,
        owner=world.clerk_b,
    )
    CustomerTagFactory(customer=lost, tag=tag)
    FollowFactory(customer=lost, staff=world.clerk_a2)
    client = client_for(operator_user)
    assert names(client.get(LIST, {"status": "lost"})) == ["Lucy Lost"]
    assert sorted(names(client.get(LIST, {"store": world.store_b.pk}))) == ["Bob B", "Lucy Lost"]
    assert names(client.get(LIST, {"owner": world.clerk_b.pk})) == ["Lucy Lost"]
    assert sorted(names(client.get(LIST, {"staff": world.clerk_a2.pk}))) == [
        "Anna A2",
        "Lucy Lost",
    ]
    assert names(client.get(LIST, {"channel": channel.pk})) == ["Lucy Lost"]
    assert names(client.get(LIST, {"tag": tag.pk})) == ["Lucy Lost"]


def test_acquired_date_range_is_read_in_the_configured_time_zone(
    world: World, operator_user: Any
) -> None:
    # 2024-03-01 02:00 in Shanghai is still February 29th in UTC.
    late = CustomerFactory(name="Late", acquired_at=datetime(2024, 2, 29, 18, 0, tzinfo=UTC))
    client = client_for(operator_user)
    response = client.get(LIST, {"acquired_after": "2024-03-01", "acquired_before": "2024-03-02"})
    assert names(response) == [late.name]
    assert "2024-03-01 02:00" in response.content.decode()


def test_sorting_by_name_both_ways(world: World, operator_user: Any) -> None:
    client = client_for(operator_user)
    assert names(client.get(LIST, {"ordering": "name"})) == ["Alice A", "Anna A2", "Bob B"]
    assert names(client.get(LIST, {"ordering": "-name"})) == ["Bob B", "Anna A2", "Alice A"]


def test_filter_state_round_trips_through_the_url(world: World, operator_user: Any) -> None:
    client = client_for(operator_user)
    params = {"q": "A", "store": str(world.store_a.pk), "ordering": "-name"}
    response = client.get(LIST, params)
    html = response.content.decode()
    # The form shows the state it came from, so the next change keeps it.
    assert 'name="q" id="id_q" value="A"' in html
    assert f'<option value="{world.store_a.pk}" selected>' in html
    assert '<option value="-name" selected>' in html
    assert names(response) == ["Anna A2", "Alice A"]
    # A full-page load and the htmx swap of the same URL show the same rows.
    partial = client.get(LIST, params, **HTMX)
    assert names(partial) == names(response)


def test_htmx_request_gets_only_the_results_partial(world: World, operator_user: Any) -> None:
    client = client_for(operator_user)
    response = client.get(LIST, {"q": "Bob"}, **HTMX)
    html = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in html
    assert 'id="customer-results"' not in html
    assert "Bob B" in html
    assert "HX-Request" in response["Vary"]
    full = client.get(LIST, {"q": "Bob"})
    assert "<html" in full.content.decode()


def test_htmx_history_restore_gets_the_full_page(world: World, operator_user: Any) -> None:
    response = client_for(operator_user).get(
        LIST, {"q": "Bob"}, HTTP_HX_HISTORY_RESTORE_REQUEST="true", **HTMX
    )
    assert "<html" in response.content.decode()


def test_pagination_keeps_filters_and_knows_the_next_page_without_counting(
    world: World, operator_user: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("customers.views.PAGE_SIZE", 2)
    client = client_for(operator_user)
    with CaptureQueriesContext(connection) as queries:
        first = client.get(LIST, {"ordering": "name"})
    assert names(first) == ["Alice A", "Anna A2"]
    assert first.context["page"].has_next
    assert "?ordering=name&amp;page=2" in first.content.decode()
    customer_counts = [q["sql"] for q in queries.captured_queries if "COUNT(" in q["sql"].upper()]
    assert not [sql for sql in customer_counts if '"customers_customer"' in sql]
    second = client.get(LIST, {"ordering": "name", "page": "2"})
    assert names(second) == ["Bob B"]
    assert not second.context["page"].has_next
    assert second.context["page"].has_previous


def test_nonsense_page_number_means_the_first_page(world: World, operator_user: Any) -> None:
    response = client_for(operator_user).get(LIST, {"page": "zebra"})
    assert response.context["page"].number == 1


def test_phone_is_masked_for_store_staff(world: World) -> None:
    world.customer_a.phone = "13800000001"
    world.customer_a.save()
    html = client_for(world.clerk_a.user).get(LIST).content.decode()
    assert "138****0001" in html
    assert "13800000001" not in html


def test_phone_is_shown_in_full_to_managers_and_operators(world: World, operator_user: Any) -> None:
    world.customer_a.phone = "13800000001"
    world.customer_a.save()
    for user in (operator_user, world.manager_a.user):
        assert "13800000001" in client_for(user).get(LIST).content.decode()


def test_acquired_at_is_shown_in_the_configured_time_zone(world: World, operator_user: Any) -> None:
    world.customer_a.acquired_at = datetime(2024, 1, 1, 16, 30, tzinfo=UTC)
    world.customer_a.save()
    html = client_for(operator_user).get(LIST).content.decode()
    assert "2024-01-02 00:30" in html  # Asia/Shanghai is UTC+8


def _make_customers(count: int) -> None:
    """Customers each with their own owner and store, a channel and two tags: every
    column the list shows has a related row, so a missing join would show up as N+1."""
    channel = ChannelFactory()
    tags = [TagFactory(), TagFactory()]
    for _ in range(count):
        owner = StaffFactory()
        customer = CustomerFactory(owner=owner, store=owner.store, source_channel=channel)
        for tag in tags:
            CustomerTagFactory(customer=customer, tag=tag)


@pytest.mark.parametrize("rows", [3, 30])
def test_list_query_count_does_not_grow_with_rows(
    rows: int, operator_user: Any, django_assert_max_num_queries: Any
) -> None:
    _make_customers(rows)
    client = client_for(operator_user)
    client.get(LIST)  # warm the session and the role cache paths
    with django_assert_max_num_queries(12):
        response = client.get(LIST)
    assert len(response.context["page"].rows) == rows


def test_list_query_count_is_the_same_for_3_and_30_rows(operator_user: Any) -> None:
    client = client_for(operator_user)
    counts = []
    for rows in (3, 27):
        _make_customers(rows)
        with CaptureQueriesContext(connection) as queries:
            client.get(LIST)
        counts.append(len(queries.captured_queries))
    assert counts[0] == counts[1]


def test_store_staff_list_has_a_query_budget(
    world: World, django_assert_max_num_queries: Any
) -> None:
    for _ in range(20):
        FollowFactory(customer=CustomerFactory(store=world.store_a), staff=world.clerk_a)
    client = client_for(world.clerk_a.user)
    with django_assert_max_num_queries(12):
        response = client.get(LIST)
    assert len(response.context["page"].rows) == 21


def test_recently_acquired_customers_come_first_by_default(
    world: World, operator_user: Any
) -> None:
    newest = CustomerFactory(name="Newest", acquired_at=timezone.now() - timedelta(minutes=1))
    assert names(client_for(operator_user).get(LIST))[0] == newest.name
