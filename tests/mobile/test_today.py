"""The Today page: the staff member's open to-dos (overdue first, snoozed hidden), done and
snooze over htmx, customers due for repurchase, new contacts of the last 24 hours, the
counts, and a query budget that does not grow with the customers."""

from __future__ import annotations

import zoneinfo
from datetime import datetime, timedelta
from typing import Any, cast

import pytest
from django.test import Client
from django.utils import timezone

from campaigns.models import Touchpoint, TouchpointKind, TouchpointStatus
from customers.models import Activity, Customer, Follow, Staff
from mobile.views.today import snooze_until
from tests.campaigns.factories import (
    EnrollmentFactory,
    TouchpointFactory,
    current_version,
    sop_with_steps,
)
from tests.conftest import World
from tests.factories import CustomerFactory, FollowFactory
from tests.funnel.helpers import pay

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _english(settings: Any) -> None:
    # Messages are asserted in English; the default language (zh-hans) would translate them.
    settings.LANGUAGE_CODE = "en"


HTMX = {"HX-Request": "true", "HX-Target": "todo-1", "HX-Current-URL": "http://testserver/m/"}


def todo(
    customer: Customer, staff: Staff, *, due: timedelta = timedelta(0), **kwargs: Any
) -> Touchpoint:
    """An open to-do of ``staff`` about ``customer``, due ``due`` from now (negative: past)."""
    version = current_version(sop_with_steps(steps=1))
    kwargs.setdefault("kind", TouchpointKind.TODO)
    kwargs.setdefault("status", TouchpointStatus.TODO)
    return cast(
        Touchpoint,
        TouchpointFactory(
            enrollment=EnrollmentFactory(version=version, customer=customer),
            step=version.steps.first(),
            staff=staff,
            due_at=timezone.now() + due,
            **kwargs,
        ),
    )


def todo_ids(response: Any) -> list[int]:
    return [t.pk for t in response.context["today"].todos]


def test_today_lists_my_open_todos_overdue_first_with_the_message(
    world: World, m_client: Any
) -> None:
    recent = todo(world.customer_a, world.clerk_a, due=-timedelta(minutes=5), rendered_text="Hi")
    oldest = todo(
        world.customer_a,
        world.clerk_a,
        due=-timedelta(days=2),
        kind=TouchpointKind.WECOM_MESSAGE,
        status=TouchpointStatus.CREATED,
        rendered_text="您好 {春季新品} 到店了",
    )
    todo(
        world.customer_a,
        world.clerk_a,
        due=-timedelta(days=3),
        snoozed_until=timezone.now() + timedelta(hours=2),
    )  # snoozed: hidden until then
    todo(world.customer_a, world.clerk_a, status=TouchpointStatus.DONE)  # closed
    todo(world.customer_a, world.clerk_a, status=TouchpointStatus.PENDING)  # not yet due
    todo(world.customer_a2, world.clerk_a2)  # a colleague's

    response = m_client(world.clerk_a).get("/m/")
    assert response.status_code == 200
    assert todo_ids(response) == [oldest.pk, recent.pk]
    counts = response.context["today"].counts
    assert (counts.todos, counts.wecom_tasks) == (1, 1)
    html = response.content.decode()
    assert "您好 {春季新品} 到店了" in html
    assert f'data-copy="#todo-message-{oldest.pk}"' in html
    assert f'href="/m/customers/{world.customer_a.pk}/"' in html
    assert f"/m/todos/{recent.pk}/done/" in html
    # A WeCom task is confirmed in WeCom: it cannot be snoozed, only marked sent.
    assert f"/m/todos/{recent.pk}/snooze/" in html
    assert f"/m/todos/{oldest.pk}/snooze/" not in html


def test_a_snoozed_todo_comes_back_once_its_time_has_passed(world: World, m_client: Any) -> None:
    back = todo(
        world.customer_a, world.clerk_a, snoozed_until=timezone.now() - timedelta(minutes=1)
    )
    assert todo_ids(m_client(world.clerk_a).get("/m/")) == [back.pk]


def test_done_over_htmx_removes_the_row_updates_the_counts_and_records_the_timeline(
    world: World, m_client: Any
) -> None:
    one = todo(world.customer_a, world.clerk_a, due=-timedelta(hours=1))
    other = todo(world.customer_a, world.clerk_a)
    client = m_client(world.clerk_a)
    response = client.post(f"/m/todos/{one.pk}/done/", headers=HTMX)
    assert response.status_code == 200
    html = response.content.decode()
    # The body is only the counts, out-of-band: the targeted row is replaced by nothing.
    assert 'id="today-counts" hx-swap-oob="true"' in html
    assert "todo-" not in html
    assert response.context["counts"].todos == 1
    one.refresh_from_db()
    assert one.status == TouchpointStatus.DONE
    assert one.done_by_id == world.clerk_a.user_id
    assert Activity.objects.filter(
        customer=world.customer_a, idempotency_key=f"touchpoint:{one.pk}"
    ).exists()
    assert todo_ids(client.get("/m/")) == [other.pk]


def test_done_without_htmx_redirects_back_to_today(world: World, m_client: Any) -> None:
    one = todo(world.customer_a, world.clerk_a)
    response = m_client(world.clerk_a).post(f"/m/todos/{one.pk}/done/")
    assert response.status_code == 302
    assert response["Location"] == "/m/"
    one.refresh_from_db()
    assert one.status == TouchpointStatus.DONE


def test_a_wecom_task_marked_sent_is_done_too(world: World, m_client: Any) -> None:
    task = todo(
        world.customer_a,
        world.clerk_a,
        kind=TouchpointKind.WECOM_MESSAGE,
        status=TouchpointStatus.CREATED,
    )
    m_client(world.clerk_a).post(f"/m/todos/{task.pk}/done/", headers=HTMX)
    task.refresh_from_db()
    assert task.status == TouchpointStatus.DONE


def test_snooze_for_an_hour_hides_the_todo(world: World, m_client: Any) -> None:
    one = todo(world.customer_a, world.clerk_a)
    client = m_client(world.clerk_a)
    before = timezone.now()
    response = client.post(f"/m/todos/{one.pk}/snooze/", {"until": "1h"}, headers=HTMX)
    assert response.status_code == 200
    assert response.context["counts"].todos == 0
    one.refresh_from_db()
    assert one.status == TouchpointStatus.TODO
    assert one.snoozed_until is not None
    assert timedelta(minutes=59) < one.snoozed_until - before <= timedelta(hours=1, seconds=5)
    assert todo_ids(client.get("/m/")) == []


def test_snooze_until_tomorrow_means_nine_in_the_corps_time_zone(
    world: World, m_client: Any
) -> None:
    one = todo(world.customer_a, world.clerk_a)
    m_client(world.clerk_a).post(f"/m/todos/{one.pk}/snooze/", {"until": "tomorrow"})
    one.refresh_from_db()
    assert one.snoozed_until is not None
    local = one.snoozed_until.astimezone(zoneinfo.ZoneInfo("Asia/Shanghai"))
    today = timezone.now().astimezone(zoneinfo.ZoneInfo("Asia/Shanghai")).date()
    assert (local.date(), local.hour, local.minute) == (today + timedelta(days=1), 9, 0)


def test_snooze_until_tomorrow_near_midnight_utc_uses_the_shanghai_date() -> None:
    # 17:30 UTC is already 01:30 the next day in Shanghai: "tomorrow" is the day after.
    now = datetime(2026, 3, 1, 17, 30, tzinfo=zoneinfo.ZoneInfo("UTC"))
    until = snooze_until("tomorrow", now=now)
    shanghai = until.astimezone(zoneinfo.ZoneInfo("Asia/Shanghai"))
    assert (shanghai.year, shanghai.month, shanghai.day, shanghai.hour) == (2026, 3, 3, 9)


def test_a_bad_snooze_choice_changes_nothing(world: World, m_client: Any) -> None:
    one = todo(world.customer_a, world.clerk_a)
    response = m_client(world.clerk_a).post(f"/m/todos/{one.pk}/snooze/", {"until": "forever"})
    assert response.status_code == 302
    one.refresh_from_db()
    assert one.snoozed_until is None


def test_another_staff_members_todo_is_404_on_done_and_snooze(world: World, m_client: Any) -> None:
    theirs = todo(world.customer_a2, world.clerk_a2)
    foreign = todo(world.customer_b, world.clerk_b)
    # Even a manager of the store: the page's to-dos are one's own.
    for staff in (world.clerk_a, world.clerk_b, world.manager_a):
        client = m_client(staff)
        for tp in (theirs, foreign):
            if tp.staff_id == staff.pk:
                continue
            assert client.post(f"/m/todos/{tp.pk}/done/").status_code == 404
            assert client.post(f"/m/todos/{tp.pk}/snooze/", {"until": "1h"}).status_code == 404
    assert client.post("/m/todos/999999/done/").status_code == 404
    theirs.refresh_from_db()
    assert theirs.status == TouchpointStatus.TODO and theirs.snoozed_until is None


def test_done_and_snooze_are_post_only(world: World, m_client: Any) -> None:
    one = todo(world.customer_a, world.clerk_a)
    client = m_client(world.clerk_a)
    assert client.get(f"/m/todos/{one.pk}/done/").status_code == 405
    assert client.get(f"/m/todos/{one.pk}/snooze/").status_code == 405


def test_a_todo_done_twice_is_harmless(world: World, m_client: Any) -> None:
    one = todo(world.customer_a, world.clerk_a)
    client = m_client(world.clerk_a)
    client.post(f"/m/todos/{one.pk}/done/", headers=HTMX)
    # The row is gone from the list: a second tap (a stale page) is a 404, not a 500.
    assert client.post(f"/m/todos/{one.pk}/done/", headers=HTMX).status_code == 404


def test_new_contacts_are_my_visible_customers_of_the_last_24_hours_newest_first(
    world: World, m_client: Any
) -> None:
    now = timezone.now()
    older = FollowFactory(
        staff=world.clerk_a,
        customer=CustomerFactory(name="Older", acquired_at=now - timedelta(hours=20)),
    ).customer
    newest = FollowFactory(
        staff=world.clerk_a,
        customer=CustomerFactory(name="Newest", acquired_at=now - timedelta(minutes=3)),
    ).customer
    FollowFactory(
        staff=world.clerk_a, customer=CustomerFactory(acquired_at=now - timedelta(hours=25))
    )
    FollowFactory(staff=world.clerk_b, customer=CustomerFactory(acquired_at=now))  # not mine
    response = m_client(world.clerk_a).get("/m/")
    assert [c.pk for c in response.context["today"].new_contacts] == [newest.pk, older.pk]
    assert response.context["today"].counts.new_contacts == 2
    # A store manager sees the store's.
    manager = m_client(world.manager_a).get("/m/")
    assert {c.pk for c in manager.context["today"].new_contacts} == {newest.pk, older.pk}
    assert m_client(world.clerk_b).get("/m/").context["today"].counts.new_contacts == 1


def test_customers_due_for_repurchase_are_listed(world: World, m_client: Any) -> None:
    now = timezone.now()
    # Bought every 30 days, last 29 days ago: due tomorrow.
    for days in (89, 59, 29):
        pay(world.customer_a, now - timedelta(days=days))
    for days in (89, 59, 29):
        pay(world.customer_b, now - timedelta(days=days))  # store B: not visible to clerk_a
    response = m_client(world.clerk_a).get("/m/")
    rows = response.context["today"].repurchase_due
    assert [m.customer_id for m in rows] == [world.customer_a.pk]
    assert response.context["today"].counts.repurchase_due == 1
    assert "Alice A" in response.content.decode()


def test_an_operator_may_open_today_and_has_no_todos(operator_user: Any, world: World) -> None:
    client = Client()
    client.force_login(operator_user)
    todo(world.customer_a, world.clerk_a)
    response = client.get("/m/")
    assert response.status_code == 200
    assert response.context["today"].todos == []


def _many_customers(staff: Staff, n: int) -> None:
    """``n`` customers followed by ``staff``, half acquired within the last day."""
    now = timezone.now()
    start = Customer.objects.count()
    customers = Customer.objects.bulk_create(
        Customer(
            name=f"Bulk {start + i}",
            external_id=f"bulk-{start + i}",
            store=staff.store,
            acquired_at=now - timedelta(hours=(i % 48) + 1),
        )
        for i in range(n)
    )
    Follow.objects.bulk_create(
        Follow(customer=c, staff=staff, added_at=c.acquired_at) for c in customers
    )


def test_today_has_a_query_budget_independent_of_the_rows(
    world: World, m_client: Any, django_assert_max_num_queries: Any
) -> None:
    client = m_client(world.clerk_a)
    todo(world.customer_a, world.clerk_a, rendered_text="x")
    for days in (89, 59, 29):
        pay(world.customer_a, timezone.now() - timedelta(days=days))
    # Session, user, staff row; 4 counts (to-dos in one aggregate) and 3 lists.
    with django_assert_max_num_queries(9) as small:
        assert client.get("/m/").status_code == 200

    _many_customers(world.clerk_a, 1000)
    customers = list(Customer.objects.filter(name__startswith="Bulk")[:60])
    for c in customers:
        todo(c, world.clerk_a, rendered_text="hello")
    for c in customers[:25]:
        for days in (89, 59, 29):
            pay(c, timezone.now() - timedelta(days=days))
    with django_assert_max_num_queries(len(small.captured_queries)):
        response = client.get("/m/")
    assert response.status_code == 200
    today = response.context["today"]
    assert len(today.todos) == 50  # capped
    assert today.counts.todos == 61
    assert len(today.repurchase_due) == 20
    assert len(today.new_contacts) == 20
    # Paying backdates a customer's acquisition to the first order: count what is left.
    window = today.now - timedelta(hours=24)
    expected = Customer.objects.filter(name__startswith="Bulk", acquired_at__gt=window).count()
    assert expected > 400
    assert today.counts.new_contacts == expected
