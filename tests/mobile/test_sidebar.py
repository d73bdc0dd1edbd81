"""The WeCom chat sidebar: /m/sidebar/ signs wx.agentConfig for its own URL (against the
simulator), and /m/sidebar/contact/<external_userid>/ opens the card of a customer the
user may see, 404 for anyone else's."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from urllib.parse import urlencode

import pytest
from django.test import Client
from django.urls import reverse

from channels.wecom.simulator import Simulator
from customers.models import Customer
from tests.channels.wecom_support import running_agent_sim
from tests.conftest import PASSWORD, World
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

SIDEBAR = "/m/sidebar/"


@pytest.fixture
def sim(settings) -> Iterator[Simulator]:
    with running_agent_sim(settings) as running:
        yield running


@pytest.fixture
def wecom_ids(world: World) -> World:
    for n, customer in enumerate((world.customer_a, world.customer_a2, world.customer_b)):
        customer.external_userid = f"wmSidebar{n}"
        customer.save(update_fields=["external_userid"])
    return world


def client_for(username: str) -> Client:
    client = Client()
    assert client.login(username=username, password=PASSWORD)
    return client


def contact_url(customer: Customer) -> str:
    return reverse("m:sidebar_contact", args=[customer.external_userid])


def agent_config(html: str) -> dict | None:
    match = re.search(r'<script id="m-agent-config" type="application/json">(.*?)</script>', html)
    assert match, "the page carries the signed agentConfig"
    return json.loads(match.group(1))


def test_sidebar_urls_are_where_wecom_is_configured_to_open_them() -> None:
    assert reverse("m:sidebar") == SIDEBAR
    assert reverse("m:sidebar_contact", args=["wmAbc-_9"]) == "/m/sidebar/contact/wmAbc-_9/"


@pytest.mark.parametrize("path", [SIDEBAR, "/m/sidebar/contact/wmSidebar0/"])
def test_anonymous_users_sign_in_through_wecom_oauth_and_come_back(client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"] == f"/m/login/wecom/?{urlencode({'next': path})}"


def test_users_without_a_staff_facing_role_are_refused(db) -> None:
    UserFactory(username="nobody")
    assert client_for("nobody").get(SIDEBAR).status_code == 403


def test_sidebar_signs_agent_config_for_its_exact_url(world: World, sim: Simulator) -> None:
    response = client_for("clerk_a").get(SIDEBAR, {"from": "chat"})
    assert response.status_code == 200
    config = agent_config(response.content.decode())
    assert config is not None
    assert config["corpid"] == sim.corp_id and config["agentid"] == "1000002"
    ticket = sim.state.tickets["agent_config"][0]
    signed = (
        f"jsapi_ticket={ticket}&noncestr={config['nonceStr']}"
        f"&timestamp={config['timestamp']}&url=http://testserver/m/sidebar/?from=chat"
    )
    assert config["signature"] == hashlib.sha1(signed.encode()).hexdigest()


def test_sidebar_loads_the_wecom_sdk_and_explains_itself_without_it(
    world: World, sim: Simulator
) -> None:
    html = client_for("clerk_a").get(SIDEBAR).content.decode()
    assert "https://res.wx.qq.com/open/js/jweixin-1.2.0.js" in html
    assert "https://open.work.weixin.qq.com/wwopen/js/jwxwork-1.0.0.js" in html
    assert "m-sidebar.js" in html
    # The "outside WeCom" message is visible until the script decides otherwise.
    assert 'data-state="outside" data-testid="sidebar-outside">' in html
    assert html.index("jweixin-1.2.0.js") < html.index("jwxwork-1.0.0.js")
    assert html.index("jwxwork-1.0.0.js") < html.index("m-sidebar.js")


def test_sidebar_still_renders_when_wecom_refuses_the_ticket(
    world: World, sim: Simulator, caplog
) -> None:
    sim.inject(60011, path="ticket/get")
    response = client_for("clerk_a").get(SIDEBAR)
    assert response.status_code == 200
    assert agent_config(response.content.decode()) is None
    assert "could not sign the WeCom agentConfig" in caplog.text


def test_the_ticket_is_fetched_once_for_many_opens(world: World, sim: Simulator) -> None:
    client = client_for("clerk_a")
    for _ in range(3):
        assert client.get(SIDEBAR).status_code == 200
    assert sim.counters()["paths"]["ticket/get"] == 1


def test_sidebar_page_query_budget(
    world: World, sim: Simulator, django_assert_max_num_queries
) -> None:
    client = client_for("clerk_a")
    client.get(SIDEBAR)  # the ticket is cached now
    # session, user, staff profile (role): nothing grows with the customer count.
    with django_assert_max_num_queries(4):
        assert client.get(SIDEBAR).status_code == 200


def test_contact_of_a_followed_customer_opens_its_card(wecom_ids: World) -> None:
    response = client_for("clerk_a").get(contact_url(wecom_ids.customer_a))
    assert response.status_code == 302
    assert response["Location"] == f"/m/customers/{wecom_ids.customer_a.pk}/?sidebar=1"


def test_contact_of_an_owned_customer_opens_its_card(wecom_ids: World) -> None:
    wecom_ids.customer_a2.owner = wecom_ids.clerk_a
    wecom_ids.customer_a2.save(update_fields=["owner"])
    response = client_for("clerk_a").get(contact_url(wecom_ids.customer_a2))
    assert response["Location"] == f"/m/customers/{wecom_ids.customer_a2.pk}/?sidebar=1"


@pytest.mark.parametrize(
    ("username", "customer"),
    [
        ("clerk_a", "customer_b"),  # another store's customer
        ("clerk_a", "customer_a2"),  # same store, followed by a colleague
        ("clerk_b", "customer_a"),
        ("manager_a", "customer_b"),  # a manager sees their store only
    ],
)
def test_contact_the_user_may_not_see_is_404(
    wecom_ids: World, username: str, customer: str
) -> None:
    response = client_for(username).get(contact_url(getattr(wecom_ids, customer)))
    assert response.status_code == 404


def test_unknown_contact_is_404(wecom_ids: World) -> None:
    assert client_for("clerk_a").get("/m/sidebar/contact/wmNobody/").status_code == 404


def test_a_manager_opens_any_customer_of_the_store(wecom_ids: World) -> None:
    response = client_for("manager_a").get(contact_url(wecom_ids.customer_a2))
    assert response["Location"] == f"/m/customers/{wecom_ids.customer_a2.pk}/?sidebar=1"


def test_contact_lookup_query_budget(wecom_ids: World, django_assert_max_num_queries) -> None:
    client = client_for("clerk_a")
    with django_assert_max_num_queries(4):
        assert client.get(contact_url(wecom_ids.customer_a)).status_code == 302


def test_sidebar_pages_take_get_only(wecom_ids: World) -> None:
    client = client_for("clerk_a")
    assert client.post(SIDEBAR).status_code == 405
    assert client.post(contact_url(wecom_ids.customer_a)).status_code == 405
