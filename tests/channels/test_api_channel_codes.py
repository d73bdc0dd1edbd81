"""REST API v1: channel codes (CRUD through the services, QR redirect, referral codes)
against the simulator, channel stats, roles and query budgets."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from rest_framework.test import APIClient

from channels.models import ChannelCode, ChannelKind
from channels.wecom.client import get_client
from channels.wecom.simulator import Simulator
from customers.models import Staff
from tests.channels.wecom_support import point_app_at
from tests.conftest import World, api_client_for
from tests.factories import (
    ChannelFactory,
    CustomerFactory,
    FollowFactory,
    StaffFactory,
    TagFactory,
)

pytestmark = pytest.mark.django_db

CODES = "/api/v1/channel-codes/"


@pytest.fixture
def sim(settings: Any) -> Iterator[Simulator]:
    with Simulator(contacts=20, staff=4, seed=17) as running:
        point_app_at(settings, running)
        yield running


@pytest.fixture
def members(sim: Simulator, world: World) -> list[Staff]:
    """Two WeCom members in store A (next to the world's clerks) and one in store B."""
    ids = sim.dataset.staff_ids
    staff: list[Any] = [
        StaffFactory(wecom_userid=ids[0], store=world.store_a),
        StaffFactory(wecom_userid=ids[1], store=world.store_a),
        StaffFactory(wecom_userid=ids[2], store=world.store_b),
    ]
    return staff


def make_code(channel: Any, state: str, *staff: Any, qr: str = "") -> ChannelCode:
    code = ChannelCode.objects.create(
        channel=channel, name=f"code {state}", state=state, qr_code=qr
    )
    code.staff.set(staff)
    return code


# --- Create ----------------------------------------------------------------------------


def test_create_makes_the_contact_way_and_answers_the_code(
    api_client: APIClient, sim: Simulator, members: list[Staff]
) -> None:
    channel = ChannelFactory()
    tag = TagFactory()
    body = {
        "channel": channel.pk,
        "name": "商场海报",
        "staff": [members[0].pk, members[1].pk],
        "state": "mall_poster",
        "skip_verify": False,
        "welcome_text": "欢迎光临",
        "welcome_attachments": [{"msgtype": "link", "link": {"title": "t", "url": "https://x"}}],
        "auto_tags": [tag.pk],
    }
    response = api_client.post(CODES, body, format="json")
    assert response.status_code == 201, response.json()
    data = response.json()
    assert data["state"] == "mall_poster"
    assert data["config_id"] and data["qr_code"].startswith(sim.base_url)
    assert sorted(data["staff"]) == sorted([members[0].pk, members[1].pk])
    assert data["auto_tags"] == [tag.pk]
    assert data["welcome_text"] == "欢迎光临"
    assert data["referrer"] is None and data["is_active"] is True
    wecom = get_client().get_contact_way(data["config_id"])
    assert wecom["state"] == "mall_poster"
    assert sorted(wecom["user"]) == sorted(
        [str(members[0].wecom_userid), str(members[1].wecom_userid)]
    )


def test_blank_state_is_generated(
    api_client: APIClient, sim: Simulator, members: list[Staff]
) -> None:
    body = {"channel": ChannelFactory().pk, "name": "n", "staff": [members[0].pk]}
    data = api_client.post(CODES, body, format="json").json()
    assert 1 <= len(data["state"]) <= 30


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"state": "s" * 31}, "state"),
        ({"state": "bad state"}, "state"),
        ({"state": "ref-1"}, "state"),
        ({"staff": []}, "staff"),
        ({"staff": [999999]}, "staff"),
        ({"auto_tags": [999999]}, "auto_tags"),
        ({"channel": 999999}, "channel"),
        ({"welcome_attachments": [{"msgtype": "gif"}]}, "welcome_attachments"),
    ],
)
def test_invalid_bodies_are_400_naming_the_field_and_make_no_way(
    api_client: APIClient, sim: Simulator, members: list[Staff], change: dict[str, Any], field: str
) -> None:
    body = {"channel": ChannelFactory().pk, "name": "n", "staff": [members[0].pk], **change}
    response = api_client.post(CODES, body, format="json")
    assert response.status_code == 400, response.json()
    assert field in response.json()["error"]["fields"]
    assert sim.stats()["contact_ways"] == 0
    assert not ChannelCode.objects.exists()


def test_duplicate_state_is_400(
    api_client: APIClient, sim: Simulator, members: list[Staff]
) -> None:
    channel = ChannelFactory()
    body = {"channel": channel.pk, "name": "n", "staff": [members[0].pk], "state": "dup"}
    assert api_client.post(CODES, body, format="json").status_code == 201
    response = api_client.post(CODES, body, format="json")
    assert response.status_code == 400
    assert "state" in response.json()["error"]["fields"]
    assert sim.stats()["contact_ways"] == 1


def test_wecom_refusal_is_400_on_the_field(
    api_client: APIClient, sim: Simulator, members: list[Staff]
) -> None:
    sim.inject(41041, path="externalcontact/add_contact_way")
    body = {"channel": ChannelFactory().pk, "name": "n", "staff": [members[0].pk, members[1].pk]}
    response = api_client.post(CODES, body, format="json")
    assert response.status_code == 400
    assert "41041" in str(response.json()["error"]["fields"]["staff"])
    assert not ChannelCode.objects.exists()


def test_wecom_busy_is_503(api_client: APIClient, sim: Simulator, members: list[Staff]) -> None:
    sim.inject(45009, path="externalcontact/add_contact_way", count=None)
    body = {"channel": ChannelFactory().pk, "name": "n", "staff": [members[0].pk]}
    response = api_client.post(CODES, body, format="json")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "wecom_unavailable"
    assert not ChannelCode.objects.exists()


# --- Update, delete, QR ----------------------------------------------------------------


def test_patch_reaches_wecom(api_client: APIClient, sim: Simulator, members: list[Staff]) -> None:
    body = {"channel": ChannelFactory().pk, "name": "n", "staff": [members[0].pk, members[1].pk]}
    created = api_client.post(CODES, body, format="json").json()
    url = f"{CODES}{created['id']}/"
    response = api_client.patch(
        url, {"staff": [members[1].pk], "skip_verify": False, "name": "renamed"}, format="json"
    )
    assert response.status_code == 200, response.json()
    assert response.json()["staff"] == [members[1].pk]
    wecom = get_client().get_contact_way(created["config_id"])
    assert wecom["user"] == [members[1].wecom_userid]
    assert (wecom["skip_verify"], wecom["remark"]) == (False, "renamed")
    assert api_client.patch(url, {"referrer": None}, format="json").status_code == 400


def test_put_replaces_the_whole_code(
    api_client: APIClient, sim: Simulator, members: list[Staff]
) -> None:
    channel = ChannelFactory()
    body = {
        "channel": channel.pk,
        "name": "n",
        "staff": [members[0].pk],
        "welcome_text": "hello",
        "auto_tags": [TagFactory().pk],
    }
    created = api_client.post(CODES, body, format="json").json()
    replacement = {"channel": channel.pk, "name": "m", "staff": [members[0].pk]}
    data = api_client.put(f"{CODES}{created['id']}/", replacement, format="json").json()
    assert (data["name"], data["welcome_text"], data["auto_tags"]) == ("m", "", [])
    assert data["state"] == created["state"], "a PUT without state keeps it"


def test_delete_deactivates_and_deletes_the_way(
    api_client: APIClient, sim: Simulator, members: list[Staff]
) -> None:
    body = {"channel": ChannelFactory().pk, "name": "n", "staff": [members[0].pk]}
    created = api_client.post(CODES, body, format="json").json()
    url = f"{CODES}{created['id']}/"
    assert api_client.delete(url).status_code == 204
    assert sim.stats()["contact_ways"] == 0
    assert api_client.get(url).json()["is_active"] is False
    assert api_client.delete(url).status_code == 204, "idempotent"
    assert api_client.patch(url, {"name": "x"}, format="json").status_code == 400


def test_qr_redirects_to_the_image(api_client: APIClient) -> None:
    channel = ChannelFactory()
    code = make_code(channel, "q1", StaffFactory(), qr="https://wework.qpic.cn/qr/abc.png")
    response = api_client.get(f"{CODES}{code.pk}/qr/")
    assert response.status_code == 302
    assert response["Location"] == "https://wework.qpic.cn/qr/abc.png"
    bare = make_code(channel, "q2", StaffFactory())
    response = api_client.get(f"{CODES}{bare.pk}/qr/")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert api_client.get(f"{CODES}999999/qr/").status_code == 404


def test_list_filters_by_channel_and_active(api_client: APIClient) -> None:
    one, two = ChannelFactory(), ChannelFactory()
    a = make_code(one, "a", StaffFactory())
    b = make_code(one, "b", StaffFactory())
    make_code(two, "c", StaffFactory())
    ChannelCode.objects.filter(pk=b.pk).update(is_active=False)

    def states(**query: Any) -> list[str]:
        return sorted(c["state"] for c in api_client.get(CODES, query).json()["results"])

    assert states(channel=one.pk) == ["a", "b"]
    assert states(channel=one.pk, is_active="true") == ["a"]
    assert states(is_active="false") == ["b"]
    assert states(staff=a.staff.get().pk) == ["a"]
    assert api_client.get(CODES, {"channel": "x"}).status_code == 400


# --- Referral codes --------------------------------------------------------------------


def test_referral_endpoint_is_idempotent(
    api_client: APIClient, sim: Simulator, members: list[Staff]
) -> None:
    customer = CustomerFactory(owner=members[0])
    first = api_client.post(f"{CODES}referral/", {"customer": customer.pk}, format="json")
    assert first.status_code == 200, first.json()
    again = api_client.post(f"{CODES}referral/", {"customer": customer.pk}, format="json")
    assert again.json()["id"] == first.json()["id"]
    assert first.json()["referrer"] == customer.pk
    assert ChannelCode.objects.get().channel.kind == ChannelKind.REFERRAL
    assert sim.stats()["contact_ways"] == 1


def test_referral_without_staff_is_400(api_client: APIClient, sim: Simulator) -> None:
    customer = CustomerFactory(owner=None)
    response = api_client.post(f"{CODES}referral/", {"customer": customer.pk}, format="json")
    assert response.status_code == 400
    assert "customer" in response.json()["error"]["fields"]


# --- Roles -----------------------------------------------------------------------------


def test_store_staff_read_only_their_stores_codes(world: World) -> None:
    channel = ChannelFactory()
    ours = make_code(channel, "ours", world.clerk_a2)  # a colleague's code, same store
    theirs = make_code(channel, "theirs", world.clerk_b)
    both = make_code(channel, "both", world.clerk_a, world.clerk_b)
    for user, visible in (
        (world.clerk_a.user, {"ours", "both"}),
        (world.manager_a.user, {"ours", "both"}),
        (world.clerk_b.user, {"theirs", "both"}),
    ):
        client = api_client_for(user)
        results = client.get(CODES).json()["results"]
        assert {c["state"] for c in results} == visible
    clerk_a = api_client_for(world.clerk_a.user)
    assert clerk_a.get(f"{CODES}{theirs.pk}/").status_code == 404
    assert clerk_a.get(f"{CODES}{theirs.pk}/qr/").status_code == 404
    assert clerk_a.get(f"{CODES}{ours.pk}/").status_code == 200
    assert clerk_a.get(f"{CODES}{both.pk}/").status_code == 200


def test_store_staff_cannot_write_codes(world: World) -> None:
    channel = ChannelFactory()
    code = make_code(channel, "mine", world.clerk_a)
    client = api_client_for(world.clerk_a.user)
    body = {"channel": channel.pk, "name": "n", "staff": [world.clerk_a.pk]}
    response = client.post(CODES, body, format="json")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"
    assert client.patch(f"{CODES}{code.pk}/", {"name": "x"}, format="json").status_code == 403
    assert client.delete(f"{CODES}{code.pk}/").status_code == 403
    customer = world.customer_a
    referral = client.post(f"{CODES}referral/", {"customer": customer.pk}, format="json")
    assert referral.status_code == 403
    assert ChannelCode.objects.get().is_active is True


def test_user_without_role_sees_nothing(db: Any) -> None:
    from tests.factories import UserFactory

    client = api_client_for(UserFactory(username="nobody"))
    assert client.get(CODES).status_code == 403


# --- Channel stats ---------------------------------------------------------------------


def test_channel_stats(api_client: APIClient) -> None:
    now = timezone.now()
    channel = ChannelFactory(cost=Decimal("300.00"))
    alice, bob = StaffFactory(name="Alice"), StaffFactory(name="Bob")
    make_code(channel, "s1", alice)
    make_code(channel, "s2", bob)
    for days in (1, 2, 50):
        CustomerFactory(source_channel=channel, acquired_at=now - timedelta(days=days))
    customer = CustomerFactory()
    FollowFactory(customer=customer, staff=alice, state="s1")
    FollowFactory(customer=customer, staff=bob, state="s2")
    FollowFactory(staff=alice, state="s1", deleted_at=now)
    FollowFactory(staff=bob, state="unrelated")
    data = api_client.get(f"/api/v1/channels/{channel.pk}/stats/").json()
    assert data["customers_acquired"] == 3
    assert data["cost_per_customer"] == "100.00"
    assert (data["codes_count"], data["active_codes"]) == (2, 2)
    assert (data["follows"], data["customers"]) == (3, 2)
    assert {s["name"]: (s["follows"], s["customers"]) for s in data["staff"]} == {
        "Alice": (2, 2),
        "Bob": (1, 1),
    }
    codes = {c["state"]: c for c in data["codes"]}
    assert (codes["s1"]["follows"], codes["s1"]["active_follows"], codes["s1"]["customers"]) == (
        2,
        1,
        2,
    )
    assert codes["s2"]["staff"] == [{"staff": bob.pk, "name": "Bob", "follows": 1, "customers": 1}]
    assert data["codes_truncated"] is False
    start = (now - timedelta(days=10)).isoformat()
    recent = api_client.get(f"/api/v1/channels/{channel.pk}/stats/", {"start": start}).json()
    assert recent["customers_acquired"] == 2
    assert recent["cost_per_customer"] == "150.00"


def test_channel_stats_without_customers_has_no_cac(api_client: APIClient) -> None:
    channel = ChannelFactory()
    data = api_client.get(f"/api/v1/channels/{channel.pk}/stats/").json()
    assert data["customers_acquired"] == 0 and data["cost_per_customer"] is None


def test_channel_stats_refuses_a_bad_period_and_unknown_channels(api_client: APIClient) -> None:
    channel = ChannelFactory()
    url = f"/api/v1/channels/{channel.pk}/stats/"
    response = api_client.get(url, {"start": "2024-05-02", "end": "2024-05-01"})
    assert response.status_code == 400
    assert "end" in response.json()["error"]["fields"]
    assert api_client.get(url, {"start": "soon"}).status_code == 400
    assert api_client.get("/api/v1/channels/999999/stats/").status_code == 404


def test_channel_stats_are_for_operators_and_integrations(world: World, operator_user: Any) -> None:
    channel = ChannelFactory()
    url = f"/api/v1/channels/{channel.pk}/stats/"
    assert api_client_for(operator_user).get(url).status_code == 200
    for staff in (world.manager_a, world.clerk_a):
        assert api_client_for(staff.user).get(url).status_code == 403
    # They still read the channel itself.
    assert (
        api_client_for(world.clerk_a.user).get(f"/api/v1/channels/{channel.pk}/").status_code == 200
    )


# --- Query budgets ---------------------------------------------------------------------


@pytest.mark.parametrize("who", ["operator", "clerk"])
def test_codes_list_budget_does_not_grow(
    world: World, operator_user: Any, who: str, django_assert_max_num_queries: Any
) -> None:
    channel = ChannelFactory()
    user: Any = operator_user if who == "operator" else world.clerk_a.user
    counts = []
    for rows in (3, 30):
        while ChannelCode.objects.count() < rows:
            code = make_code(channel, uuid.uuid4().hex[:12], world.clerk_a, StaffFactory())
            code.auto_tags.add(TagFactory(), TagFactory())
        client = api_client_for(User.objects.get(pk=user.pk))
        with django_assert_max_num_queries(6) as queries:
            response = client.get(CODES, {"page_size": 100})
        assert len(response.json()["results"]) == rows
        counts.append(len(queries))
    assert counts[0] == counts[1]


def test_stats_budget_does_not_grow(
    api_client: APIClient, django_assert_max_num_queries: Any
) -> None:
    channel = ChannelFactory()
    counts = []
    for rows in (3, 30):
        while ChannelCode.objects.count() < rows:
            state = uuid.uuid4().hex[:12]
            make_code(channel, state, StaffFactory())
            FollowFactory(state=state)
            CustomerFactory(source_channel=channel)
        with django_assert_max_num_queries(10) as queries:
            data = api_client.get(f"/api/v1/channels/{channel.pk}/stats/").json()
        assert len(data["codes"]) == rows
        counts.append(len(queries))
    assert counts[0] == counts[1]
