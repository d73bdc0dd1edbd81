"""The customer detail page and its note form."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from customers.models import Activity, ActivityKind, ActivitySource, Note
from tests.conftest import World
from tests.factories import (
    ActivityFactory,
    CustomerTagFactory,
    FollowFactory,
    NoteFactory,
    OrderFactory,
    TagFactory,
)

HTMX = {"HTTP_HX_REQUEST": "true", "HTTP_HX_TARGET": "customer-activity"}


def client_for(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def detail_url(customer: Any) -> str:
    return reverse("customers:detail", args=[customer.pk])


def note_url(customer: Any) -> str:
    return reverse("customers:note_create", args=[customer.pk])


def test_detail_shows_profile_follows_orders_notes_and_timeline(
    world: World, operator_user: Any
) -> None:
    customer = world.customer_a
    CustomerTagFactory(customer=customer, tag=TagFactory(name="Rose lover"))
    FollowFactory(
        customer=customer,
        staff=world.clerk_a2,
        remark="Ms. Li",
        state="flyer-2024",
        deleted_at=timezone.now(),
    )
    OrderFactory(customer=customer, amount="128.50", product_name="Rose serum")
    NoteFactory(customer=customer, body="Prefers evening calls.")
    ActivityFactory(customer=customer, kind=ActivityKind.MEMBER_JOINED)
    response = client_for(operator_user).get(detail_url(customer))
    html = response.content.decode()
    assert response.status_code == 200
    for text in (
        "Alice A",
        "Rose lover",
        "Clerk A2",
        "Ms. Li",
        "flyer-2024",
        "128.50",
        "Rose serum",
        "Prefers evening calls.",
    ):
        assert text in html
    assert response.context["timeline"][0].label == ActivityKind.MEMBER_JOINED.label


def test_timeline_is_newest_first_and_bounded(
    world: World, operator_user: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("customers.views.DETAIL_ROWS", 3)
    now = timezone.now()
    for days in range(5):
        ActivityFactory(customer=world.customer_a, occurred_at=now - timedelta(days=days))
    timeline = client_for(operator_user).get(detail_url(world.customer_a)).context["timeline"]
    times = [entry.activity.occurred_at for entry in timeline]
    assert len(times) == 3
    assert times == sorted(times, reverse=True)


def test_unknown_activity_kind_is_shown_as_recorded(world: World, operator_user: Any) -> None:
    ActivityFactory(customer=world.customer_a, kind="pos_survey_answered")
    html = client_for(operator_user).get(detail_url(world.customer_a)).content.decode()
    assert "pos_survey_answered" in html


def test_store_staff_get_404_on_another_stores_customer(world: World) -> None:
    response = client_for(world.clerk_a.user).get(detail_url(world.customer_b))
    assert response.status_code == 404


def test_manager_opens_a_customer_of_their_store(world: World) -> None:
    response = client_for(world.manager_a.user).get(detail_url(world.customer_a2))
    assert response.status_code == 200


def test_phone_is_masked_on_detail_for_store_staff(world: World) -> None:
    world.customer_a.phone = "13900001234"
    world.customer_a.save()
    html = client_for(world.clerk_a.user).get(detail_url(world.customer_a)).content.decode()
    assert "139****1234" in html
    assert "13900001234" not in html


def test_note_form_creates_a_note_and_a_timeline_activity(world: World) -> None:
    client = client_for(world.clerk_a.user)
    response = client.post(note_url(world.customer_a), {"body": "Asked about refills."}, **HTMX)
    assert response.status_code == 200
    note = Note.objects.get(customer=world.customer_a)
    assert note.body == "Asked about refills."
    assert note.author == world.clerk_a.user
    activity = Activity.objects.get(customer=world.customer_a, kind=ActivityKind.NOTE_ADDED)
    assert activity.source == ActivitySource.DASHBOARD
    assert activity.staff == world.clerk_a
    html = response.content.decode()
    # htmx swaps only the notes and timeline: no page around them.
    assert "<html" not in html
    assert "Asked about refills." in html
    assert response.context["timeline"][0].label == ActivityKind.NOTE_ADDED.label


def test_note_form_without_htmx_redirects_back_to_the_customer(world: World) -> None:
    client = client_for(world.clerk_a.user)
    response = client.post(note_url(world.customer_a), {"body": "Called back."})
    assert response.status_code == 302
    assert response["Location"] == detail_url(world.customer_a)
    assert Note.objects.filter(customer=world.customer_a, body="Called back.").exists()


def test_empty_note_is_refused_with_a_message(world: World) -> None:
    client = client_for(world.clerk_a.user)
    response = client.post(note_url(world.customer_a), {"body": "   "}, **HTMX)
    assert response.status_code == 200
    assert response.context["note_form"].errors
    assert not Note.objects.exists()


def test_store_staff_cannot_post_a_note_to_another_stores_customer(world: World) -> None:
    client = client_for(world.clerk_a.user)
    response = client.post(note_url(world.customer_b), {"body": "Sneaky."}, **HTMX)
    assert response.status_code == 404
    assert not Note.objects.exists()
    assert not Activity.objects.exists()


def test_note_form_needs_post(world: World) -> None:
    response = client_for(world.clerk_a.user).get(note_url(world.customer_a))
    assert response.status_code == 405


def test_note_post_without_csrf_token_is_refused(world: World) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(world.clerk_a.user)
    response = client.post(note_url(world.customer_a), {"body": "No token."})
    assert response.status_code == 403
    assert not Note.objects.exists()


def test_page_carries_the_csrf_token_for_htmx(world: World) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(world.clerk_a.user)
    page = client.get(detail_url(world.customer_a))
    token = page.context["csrf_token"]
    assert f'hx-headers=\'{{"X-CSRFToken": "{token}"}}\'' in page.content.decode()
    response = client.post(
        note_url(world.customer_a), {"body": "With token."}, HTTP_X_CSRFTOKEN=str(token), **HTMX
    )
    assert response.status_code == 200
    assert Note.objects.filter(body="With token.").exists()


def _fill(customer: Any, rows: int) -> None:
    for i in range(rows):
        OrderFactory(customer=customer)
        NoteFactory(customer=customer, author=None)
        ActivityFactory(customer=customer, kind=ActivityKind.ORDER_PAID)
        CustomerTagFactory(customer=customer)
        if i % 3 == 0:
            FollowFactory(customer=customer)


@pytest.mark.parametrize("rows", [3, 30])
def test_detail_query_count_does_not_grow_with_rows(
    rows: int, world: World, operator_user: Any, django_assert_max_num_queries: Any
) -> None:
    _fill(world.customer_a, rows)
    client = client_for(operator_user)
    with django_assert_max_num_queries(12):
        response = client.get(detail_url(world.customer_a))
    assert len(response.context["orders"]) == rows


def test_detail_query_count_is_the_same_for_3_and_30_rows(world: World, operator_user: Any) -> None:
    client = client_for(operator_user)
    counts = []
    for customer, rows in ((world.customer_a, 3), (world.customer_b, 30)):
        _fill(customer, rows)
        with CaptureQueriesContext(connection) as queries:
            client.get(detail_url(customer))
        counts.append(len(queries.captured_queries))
    assert counts[0] == counts[1]
