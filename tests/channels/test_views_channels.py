"""Dashboard pages for channels, channel codes and WeCom sync runs: operators only,
figures, the create-code form against the simulator, Sync now, and query budgets."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any
from unittest import mock

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from channels import tasks
from channels.models import ChannelCode, SyncRun, SyncStatus
from channels.wecom.simulator import Simulator
from customers.models import Staff
from tests.channels.wecom_support import point_app_at
from tests.conftest import World
from tests.factories import (
    ChannelFactory,
    CustomerFactory,
    FollowFactory,
    StaffFactory,
    TagFactory,
)

pytestmark = pytest.mark.django_db

LIST = reverse("channels:list")
SYNC = reverse("channels:sync")


def client_for(user: Any, **defaults: Any) -> Client:
    client = Client(**defaults)
    client.force_login(user)
    return client


@pytest.fixture
def sim(settings: Any) -> Iterator[Simulator]:
    with Simulator(contacts=20, staff=4, seed=11) as running:
        point_app_at(settings, running)
        yield running


@pytest.fixture
def members(sim: Simulator) -> list[Staff]:
    return [StaffFactory(wecom_userid=userid) for userid in sim.dataset.staff_ids[:2]]


def make_code(channel: Any, state: str, *staff: Staff, qr: str = "") -> ChannelCode:
    code = ChannelCode.objects.create(
        channel=channel, name=f"code {state}", state=state, qr_code=qr, config_id=None
    )
    code.staff.set(staff)
    return code


# --- Who may enter ---------------------------------------------------------------------


@pytest.mark.parametrize("url_name", ["channels:list", "channels:sync"])
def test_store_people_get_403(world: World, url_name: str) -> None:
    for staff in (world.manager_a, world.clerk_a):
        assert client_for(staff.user).get(reverse(url_name)).status_code == 403


def test_store_people_cannot_open_a_channel_or_write(world: World) -> None:
    channel = ChannelFactory()
    client = client_for(world.manager_a.user)
    assert client.get(reverse("channels:detail", args=[channel.pk])).status_code == 403
    assert client.post(reverse("channels:code_create", args=[channel.pk])).status_code == 403
    assert client.post(reverse("channels:sync_start")).status_code == 403
    assert not SyncRun.objects.exists()


def test_anonymous_is_sent_to_login(db: Any) -> None:
    response = Client().get(LIST)
    assert response.status_code == 302
    assert reverse("login") in response["Location"]


def test_api_client_account_gets_no_dashboard(integration_user: Any) -> None:
    assert client_for(integration_user).get(SYNC).status_code == 403


def test_unknown_channel_is_404(operator_user: Any) -> None:
    assert (
        client_for(operator_user).get(reverse("channels:detail", args=[999999])).status_code == 404
    )


def test_navigation_shows_channels_and_sync_to_operators_only(
    world: World, operator_user: Any
) -> None:
    html = client_for(operator_user).get(LIST).content.decode()
    assert f'href="{LIST}" aria-current="page"' in html
    assert f'href="{SYNC}"' in html
    clerk = client_for(world.clerk_a.user).get(reverse("customers:list")).content.decode()
    assert LIST not in clerk and SYNC not in clerk


# --- Channels list and detail ----------------------------------------------------------


def test_list_shows_figures_per_channel(operator_user: Any) -> None:
    now = timezone.now()
    ads = ChannelFactory(name="抖音广告", cost=Decimal("1000.00"))
    ChannelFactory(name="Empty", cost=Decimal("50.00"))
    for days in (1, 2, 40):
        CustomerFactory(source_channel=ads, acquired_at=now - timedelta(days=days))
    make_code(ads, "a1")
    client = client_for(operator_user, HTTP_ACCEPT_LANGUAGE="en")
    response = client.get(LIST)
    rows = {row.channel.name: row for row in response.context["rows"]}
    assert rows["抖音广告"].acquired == 3
    assert rows["抖音广告"].cost_per_customer == Decimal("333.33")
    assert rows["抖音广告"].codes_count == 1
    assert rows["Empty"].cost_per_customer is None
    html = response.content.decode()
    assert "333.33" in html and "Customers acquired" in html
    # The period narrows the figures: acquired in the last 10 days.
    start = (now - timedelta(days=10)).date().isoformat()
    rows = {r.channel.name: r for r in client.get(LIST, {"start": start}).context["rows"]}
    assert rows["抖音广告"].acquired == 2
    assert rows["抖音广告"].cost_per_customer == Decimal("500.00")


def test_list_filters_by_kind_with_the_api_filterset(operator_user: Any) -> None:
    ChannelFactory(name="Ads", kind="ads")
    ChannelFactory(name="Store", kind="store")
    response = client_for(operator_user).get(LIST, {"kind": "store"})
    assert [r.channel.name for r in response.context["rows"]] == ["Store"]


def test_list_filters_by_active_and_keeps_the_choice(operator_user: Any) -> None:
    ChannelFactory(name="On")
    ChannelFactory(name="Off", is_active=False)
    response = client_for(operator_user).get(LIST, {"is_active": "false"})
    assert [r.channel.name for r in response.context["rows"]] == ["Off"]
    assert '<option value="false" selected>' in response.content.decode()
    everything = client_for(operator_user).get(LIST, {"is_active": "unknown"})
    assert len(everything.context["rows"]) == 2


def test_list_is_chinese_by_default(operator_user: Any) -> None:
    ChannelFactory()
    html = client_for(operator_user).get(LIST).content.decode()
    assert "渠道" in html and "获客成本" in html
    assert "类型:" not in html and "---------" not in html, "the filter form is dressed"


def test_detail_shows_codes_with_qr_and_per_staff_figures(operator_user: Any) -> None:
    channel = ChannelFactory()
    alice, bob = StaffFactory(name="Alice"), StaffFactory(name="Bob")
    code = make_code(channel, "poster1", alice, bob, qr="https://wework.qpic.cn/qr/1.png")
    for staff in (alice, alice, bob):
        FollowFactory(staff=staff, state="poster1")
    response = client_for(operator_user).get(reverse("channels:detail", args=[channel.pk]))
    assert response.status_code == 200
    html = response.content.decode()
    assert 'src="https://wework.qpic.cn/qr/1.png"' in html
    assert 'download="poster1.png"' in html
    (row,) = response.context["code_rows"]
    assert (row.code.pk, row.follows, row.customers) == (code.pk, 3, 3)
    assert {s.name: s.customers for s in row.staff} == {"Alice": 2, "Bob": 1}
    assert {s.name: s.customers for s in response.context["figures"].staff} == {
        "Alice": 2,
        "Bob": 1,
    }
    assert 'name="staff"' in html, "operators get the create form"


# --- Creating and deactivating codes ---------------------------------------------------


def test_operator_creates_a_code_through_the_form(
    operator_user: Any, sim: Simulator, members: list[Staff]
) -> None:
    channel = ChannelFactory()
    tag = TagFactory()
    url = reverse("channels:code_create", args=[channel.pk])
    body = {
        "name": "门店海报",
        "staff": [m.pk for m in members],
        "state": "store_poster",
        "skip_verify": "on",
        "welcome_text": "欢迎",
        "auto_tags": [tag.pk],
    }
    response = client_for(operator_user).post(url, body)
    assert response.status_code == 302
    code = ChannelCode.objects.get(state="store_poster")
    assert code.config_id and code.qr_code
    assert set(code.staff.all()) == set(members)
    assert sim.stats()["contact_ways"] == 1


def test_htmx_create_answers_a_client_redirect(
    operator_user: Any, sim: Simulator, members: list[Staff]
) -> None:
    channel = ChannelFactory()
    url = reverse("channels:code_create", args=[channel.pk])
    response = client_for(operator_user).post(
        url,
        {"name": "n", "staff": [members[0].pk]},
        HTTP_HX_REQUEST="true",
        HTTP_HX_TARGET="code-form",
    )
    assert response.status_code == 200
    assert response["HX-Redirect"] == reverse("channels:detail", args=[channel.pk])
    assert ChannelCode.objects.filter(channel=channel).count() == 1


def test_bad_state_shows_the_error_and_calls_no_wecom(
    operator_user: Any, sim: Simulator, members: list[Staff]
) -> None:
    channel = ChannelFactory()
    url = reverse("channels:code_create", args=[channel.pk])
    client = client_for(operator_user, HTTP_ACCEPT_LANGUAGE="en")
    body = {"name": "n", "staff": [members[0].pk], "state": "bad state!"}
    response = client.post(url, body)
    assert response.status_code == 400
    assert "letters, digits" in response.content.decode()
    partial = client.post(url, body, HTTP_HX_REQUEST="true", HTTP_HX_TARGET="code-form")
    assert partial.status_code == 200
    assert "<html" not in partial.content.decode()
    assert "letters, digits" in partial.content.decode()
    assert not ChannelCode.objects.exists()
    assert sim.stats()["contact_ways"] == 0


def test_wecom_refusal_shows_on_the_form(
    operator_user: Any, sim: Simulator, members: list[Staff]
) -> None:
    channel = ChannelFactory()
    sim.inject(41041, path="externalcontact/add_contact_way")
    response = client_for(operator_user).post(
        reverse("channels:code_create", args=[channel.pk]),
        {"name": "n", "staff": [m.pk for m in members]},
    )
    assert response.status_code == 400
    assert "41041" in response.content.decode()
    assert not ChannelCode.objects.exists()


def test_wecom_busy_shows_a_retry_message(
    operator_user: Any, sim: Simulator, members: list[Staff]
) -> None:
    channel = ChannelFactory()
    sim.inject(-1, path="externalcontact/add_contact_way")
    response = client_for(operator_user, HTTP_ACCEPT_LANGUAGE="en").post(
        reverse("channels:code_create", args=[channel.pk]),
        {"name": "n", "staff": [members[0].pk]},
    )
    assert response.status_code == 400
    assert "WeCom is busy" in response.content.decode()


def test_deactivate_button_deactivates(
    operator_user: Any, sim: Simulator, members: list[Staff]
) -> None:
    channel = ChannelFactory()
    client = client_for(operator_user)
    client.post(
        reverse("channels:code_create", args=[channel.pk]), {"name": "n", "staff": [members[0].pk]}
    )
    code = ChannelCode.objects.get()
    response = client.post(reverse("channels:code_deactivate", args=[code.pk]))
    assert response.status_code == 302
    code.refresh_from_db()
    assert code.is_active is False
    assert sim.stats()["contact_ways"] == 0


def test_write_views_refuse_get(operator_user: Any) -> None:
    client = client_for(operator_user)
    assert client.get(reverse("channels:sync_start")).status_code == 405


# --- Sync runs -------------------------------------------------------------------------


def make_runs(n: int) -> None:
    now = timezone.now()
    for i in range(n):
        SyncRun.objects.create(
            status=SyncStatus.SUCCEEDED if i % 3 else SyncStatus.FAILED,
            started_at=now - timedelta(hours=i + 1),
            finished_at=now - timedelta(hours=i + 1) + timedelta(seconds=42),
            pages=10,
            http_calls=13,
            relationships=950,
            created=5,
            updated=2,
            deleted=1,
            wecom_follows=950,
            active_follows=950 if i % 2 else 949,
            errors=[
                {"errcode": 45009, "errmsg": f"api freq out of limit {j}", "transient": True}
                for j in range(5)
            ],
        )


def test_sync_page_shows_figures_and_reconciliation(operator_user: Any) -> None:
    make_runs(2)
    html = client_for(operator_user, HTTP_ACCEPT_LANGUAGE="en").get(SYNC).content.decode()
    assert "WeCom 950 vs ours 950" in html and "in step" in html
    assert "WeCom 950 vs ours 949" in html and "out of step" in html
    assert "api freq out of limit 4" in html
    assert "api freq out of limit 1" not in html, "only the last few errors"
    assert "0:00:42" in html
    assert f'method="post" action="{reverse("channels:sync_start")}"' in html
    assert 'name="csrfmiddlewaretoken"' in html


def test_sync_page_polls_while_a_run_is_going(operator_user: Any) -> None:
    client = client_for(operator_user)
    assert 'hx-trigger="every 5s"' not in client.get(SYNC).content.decode()
    SyncRun.objects.create()
    assert 'hx-trigger="every 5s"' in client.get(SYNC).content.decode()
    partial = client.get(SYNC, HTTP_HX_REQUEST="true", HTTP_HX_TARGET="sync-runs")
    assert "<html" not in partial.content.decode()


def test_sync_now_starts_a_run_and_enqueues_after_commit(
    operator_user: Any, django_capture_on_commit_callbacks: Any
) -> None:
    client = client_for(operator_user)
    with mock.patch.object(tasks.wecom_sync, "delay") as delay:
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            response = client.post(reverse("channels:sync_start"))
        assert response.status_code == 302
        run = SyncRun.objects.get()
        assert run.status == SyncStatus.RUNNING
        delay.assert_not_called()  # not before the commit
        assert len(callbacks) == 1
        callbacks[0]()
        delay.assert_called_once_with(run.pk)


# --- Query budgets ---------------------------------------------------------------------


def _maker(page: str) -> Callable[[int], str]:
    """Adds n rows to what the page lists and answers the page's URL."""
    channel = ChannelFactory()

    def channels(n: int) -> str:
        for _ in range(n):
            other = ChannelFactory()
            CustomerFactory(source_channel=other)
            make_code(other, uuid.uuid4().hex[:12], StaffFactory())
        return LIST

    def codes(n: int) -> str:
        for _ in range(n):
            state = uuid.uuid4().hex[:12]
            make_code(channel, state, StaffFactory(), StaffFactory())
            FollowFactory(state=state)
        return reverse("channels:detail", args=[channel.pk])

    def runs(n: int) -> str:
        make_runs(n)
        return SYNC

    return {"list": channels, "detail": codes, "sync": runs}[page]


@pytest.mark.parametrize("page", ["list", "detail", "sync"])
def test_pages_cost_the_same_queries_for_3_and_30_rows(operator_user: Any, page: str) -> None:
    make = _maker(page)
    client = client_for(operator_user)
    counts = []
    done = 0
    for rows in (3, 30):
        url = make(rows - done)
        done = rows
        with CaptureQueriesContext(connection) as queries:
            response = client.get(url)
        assert response.status_code == 200
        counts.append(len(queries))
    assert counts[0] == counts[1], counts
    assert counts[1] <= 16
