"""The touchpoint log and to-dos in the API: row-level visibility, filters, query budgets,
the to-do list's contents and order, and done/snooze."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, cast

import pytest
from django.utils import timezone

from campaigns.models import SkipReason, Touchpoint, TouchpointKind, TouchpointStatus
from tests.campaigns.factories import (
    EnrollmentFactory,
    TouchpointFactory,
    current_version,
    sop_with_steps,
)
from tests.conftest import World, api_client_for

pytestmark = pytest.mark.django_db


def touchpoint(world_customer: Any, sop: Any = None, **kwargs: Any) -> Touchpoint:
    sop = sop or sop_with_steps(steps=1)
    version = current_version(sop)
    return cast(
        Touchpoint,
        TouchpointFactory(
            enrollment=EnrollmentFactory(version=version, customer=world_customer),
            step=version.steps.first(),
            **kwargs,
        ),
    )


def test_staff_of_store_b_cannot_see_store_a_touchpoints(world: World) -> None:
    a = touchpoint(world.customer_a)
    b = touchpoint(world.customer_b)
    client = api_client_for(world.clerk_b.user)
    ids = [row["id"] for row in client.get("/api/v1/touchpoints/").json()["results"]]
    assert ids == [b.pk]
    assert client.get(f"/api/v1/touchpoints/{a.pk}/").status_code == 404
    assert client.post(f"/api/v1/touchpoints/{a.pk}/done/").status_code == 404
    manager = api_client_for(world.manager_a.user)
    ids = [row["id"] for row in manager.get("/api/v1/touchpoints/").json()["results"]]
    assert ids == [a.pk]


def test_the_log_filters_by_status_reason_sop_and_due_range(
    operator_user: Any, world: World
) -> None:
    now = timezone.now()
    sop = sop_with_steps(steps=1)
    skipped = touchpoint(
        world.customer_a,
        sop,
        status=TouchpointStatus.SKIPPED,
        skip_reason=SkipReason.QUOTA,
        due_at=now - timedelta(days=1),
    )
    touchpoint(world.customer_b, sop, due_at=now + timedelta(days=1))
    other = touchpoint(world.customer_a2, due_at=now)
    client = api_client_for(operator_user)

    def ids(query: str) -> list[int]:
        response = client.get(f"/api/v1/touchpoints/?{query}")
        assert response.status_code == 200, response.json()
        return [row["id"] for row in response.json()["results"]]

    assert ids("status=skipped&skip_reason=quota") == [skipped.pk]
    assert ids(f"sop={other.sop_id}") == [other.pk]
    before = (now - timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    assert ids(f"due_before={before}") == [skipped.pk]
    bad = client.get("/api/v1/touchpoints/?status=nope")
    assert bad.status_code == 400
    assert "status" in bad.json()["error"]["fields"]


def test_list_endpoints_have_a_fixed_query_budget(
    operator_user: Any, world: World, django_assert_max_num_queries: Any
) -> None:
    client = api_client_for(operator_user)
    sop = sop_with_steps(steps=1)
    for n in (2, 12):
        while Touchpoint.objects.count() < n:
            touchpoint(world.customer_a, sop)
        for url in (
            "/api/v1/touchpoints/",
            "/api/v1/sops/",
            "/api/v1/contents/",
            "/api/v1/campaigns/",
            "/api/v1/coupons/",
            "/api/v1/coupon-batches/",
        ):
            with django_assert_max_num_queries(6):
                assert client.get(url).status_code == 200, url
    todo_client = api_client_for(world.clerk_a.user)
    with django_assert_max_num_queries(8):
        assert todo_client.get("/api/v1/todos/").status_code == 200


def test_todos_are_mine_overdue_first_with_the_message(world: World) -> None:
    now = timezone.now()
    sop = sop_with_steps(steps=1)
    later = touchpoint(
        world.customer_a,
        sop,
        kind=TouchpointKind.TODO,
        status=TouchpointStatus.TODO,
        staff=world.clerk_a,
        due_at=now - timedelta(minutes=5),
        rendered_text="Later",
    )
    overdue = touchpoint(
        world.customer_a,
        sop_with_steps(steps=1),
        status=TouchpointStatus.CREATED,
        staff=world.clerk_a,
        due_at=now - timedelta(days=2),
        rendered_text="Confirm me",
    )
    snoozed = touchpoint(
        world.customer_a,
        sop_with_steps(steps=1),
        kind=TouchpointKind.TODO,
        status=TouchpointStatus.TODO,
        staff=world.clerk_a,
        due_at=now - timedelta(days=3),
        snoozed_until=now + timedelta(hours=3),
    )
    touchpoint(world.customer_a2, sop, status=TouchpointStatus.TODO, staff=world.clerk_a2)
    touchpoint(world.customer_a, sop_with_steps(steps=1), staff=world.clerk_a)  # pending
    rows = api_client_for(world.clerk_a.user).get("/api/v1/todos/").json()
    assert [r["id"] for r in rows] == [overdue.pk, later.pk, snoozed.pk]
    assert rows[0]["message"] == "Confirm me"
    assert rows[0]["overdue"] is True
    # Operators have no staff row: no to-dos of their own.
    assert api_client_for(world.manager_a.user).get("/api/v1/todos/").json() == []


def test_done_marks_my_todo_and_a_colleague_cannot(world: World) -> None:
    todo = touchpoint(
        world.customer_a,
        kind=TouchpointKind.TODO,
        status=TouchpointStatus.TODO,
        staff=world.clerk_a,
    )
    # clerk_a2 sees customer_a only if they follow them: make them see it.
    from tests.factories import FollowFactory

    FollowFactory(customer=world.customer_a, staff=world.clerk_a2)
    colleague = api_client_for(world.clerk_a2.user)
    assert colleague.post(f"/api/v1/touchpoints/{todo.pk}/done/").status_code == 403
    response = api_client_for(world.clerk_a.user).post(f"/api/v1/touchpoints/{todo.pk}/done/")
    assert response.status_code == 200
    assert response.json()["status"] == "done"
    # A touchpoint that is not waiting cannot be marked done: 400, not 500.
    sent = touchpoint(world.customer_a, status=TouchpointStatus.SENT, staff=world.clerk_a)
    again = api_client_for(world.clerk_a.user).post(f"/api/v1/touchpoints/{sent.pk}/done/")
    assert again.status_code == 400
    assert "status" in again.json()["error"]["fields"]


def test_snooze_needs_a_future_time(world: World) -> None:
    todo = touchpoint(
        world.customer_a,
        kind=TouchpointKind.TODO,
        status=TouchpointStatus.TODO,
        staff=world.clerk_a,
    )
    client = api_client_for(world.clerk_a.user)
    past = client.post(
        f"/api/v1/touchpoints/{todo.pk}/snooze/", {"until": "2020-01-01T10:00:00+08:00"}
    )
    assert past.status_code == 400
    until = (timezone.now() + timedelta(hours=5)).isoformat()
    ok = client.post(f"/api/v1/touchpoints/{todo.pk}/snooze/", {"until": until}, format="json")
    assert ok.status_code == 200, ok.json()
    assert ok.json()["snoozed_until"] is not None
