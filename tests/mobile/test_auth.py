"""Sign-in on the phone pages: password, ``next`` safety, log out, and WeCom OAuth
against the in-process simulator (a member, a replayed code, a non-member, a member
without a linked account, a forged state)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
from django.test import Client

from channels.wecom.simulator import Simulator
from customers.models import Staff
from tests.channels.wecom_support import make_sim, point_app_at
from tests.conftest import PASSWORD, World
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _english(settings: Any) -> None:
    # Messages are asserted in English; the default language (zh-hans) would translate them.
    settings.LANGUAGE_CODE = "en"


def messages_of(response: Any) -> list[str]:
    return [str(m) for m in response.context["messages"]]


# --- password -----------------------------------------------------------------------


def test_staff_signs_in_with_password_and_lands_on_today(world: World) -> None:
    client = Client()
    response = client.post("/m/login/", {"username": "clerk_a", "password": PASSWORD})
    assert response.status_code == 302
    assert response["Location"] == "/m/"
    page = client.get("/m/")
    assert page.status_code == 200
    assert "Clerk A" in page.content.decode()  # the signed-in staff member's name


def test_wrong_password_shows_the_form_again_with_an_error(world: World) -> None:
    client = Client()
    response = client.post("/m/login/", {"username": "clerk_a", "password": "wrong"})
    assert response.status_code == 200
    assert response.context["form"].non_field_errors()
    assert "_auth_user_id" not in client.session


def test_an_account_without_a_staff_role_cannot_sign_in(db: Any) -> None:
    UserFactory(username="nobody")
    response = Client().post("/m/login/", {"username": "nobody", "password": PASSWORD})
    assert response.status_code == 200
    assert response.context["form"].errors


@pytest.mark.parametrize(
    ("next_url", "lands_on"),
    [
        ("/m/customers/12/", "/m/customers/12/"),
        ("/m/code/", "/m/code/"),
        ("https://evil.example/m/", "/m/"),
        ("//evil.example/m/", "/m/"),
        ("/customers/", "/m/"),  # the dashboard: not from the phone sign-in
        ("/m/../admin/", "/m/"),
        ("", "/m/"),
    ],
)
def test_next_is_honoured_only_for_mobile_pages_of_this_site(
    world: World, next_url: str, lands_on: str
) -> None:
    client = Client()
    response = client.post(
        "/m/login/", {"username": "clerk_a", "password": PASSWORD, "next": next_url}
    )
    assert response.status_code == 302
    assert response["Location"] == lands_on


def test_pages_redirect_anonymous_users_to_the_mobile_sign_in_with_next(db: Any) -> None:
    for url in ("/m/", "/m/code/"):
        response = Client().get(url)
        assert response.status_code == 302
        assert response["Location"] == f"/m/login/?next={url.replace('/', '%2F')}"


def test_an_htmx_request_of_an_anonymous_user_gets_a_client_redirect(db: Any) -> None:
    response = Client().post("/m/todos/1/done/", headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert response["HX-Redirect"].startswith("/m/login/?next=")


def test_a_signed_in_user_without_a_role_gets_403_not_a_login_loop(db: Any) -> None:
    client = Client()
    client.force_login(UserFactory(username="roleless"))
    assert client.get("/m/").status_code == 403


def test_logout_is_post_only(world: World, m_client: Any) -> None:
    client = m_client(world.clerk_a)
    assert client.get("/m/logout/").status_code == 405
    assert client.get("/m/").status_code == 200
    response = client.post("/m/logout/")
    assert response.status_code == 302
    assert response["Location"] == "/m/login/"
    assert client.get("/m/").status_code == 302


def test_the_sign_in_page_offers_wecom_and_a_language_switch(db: Any) -> None:
    html = Client().get("/m/login/").content.decode()
    assert 'name="viewport"' in html
    assert "/m/login/wecom/" in html
    assert 'action="/i18n/setlang/"' in html


# --- WeCom OAuth --------------------------------------------------------------------


@pytest.fixture
def sim(settings: Any) -> Iterator[Simulator]:
    with make_sim(contacts=5, staff=3) as simulator:
        point_app_at(settings, simulator)
        yield simulator


@pytest.fixture
def member(sim: Simulator, world: World) -> Staff:
    """clerk_a, linked to the simulator's first member."""
    userid = sorted(sim.dataset.staff_ids)[0]
    world.clerk_a.wecom_userid = userid
    world.clerk_a.save(update_fields=["wecom_userid"])
    return world.clerk_a


def start_oauth(client: Client, next_url: str = "") -> str:
    """Follow /m/login/wecom/ to the authorize page; returns the state it carries."""
    response = client.get("/m/login/wecom/" + (f"?next={next_url}" if next_url else ""))
    assert response.status_code == 302
    parts = urlsplit(response["Location"])
    assert parts.fragment == "wechat_redirect"
    query = parse_qs(parts.query)
    assert query["response_type"] == ["code"]
    assert query["scope"] == ["snsapi_base"]
    assert query["redirect_uri"] == ["http://testserver/m/login/wecom/"]
    return query["state"][0]


def test_wecom_oauth_redirects_to_the_official_authorize_url_in_production(
    settings: Any, db: Any
) -> None:
    settings.WECOM_API_BASE = "https://qyapi.weixin.qq.com/cgi-bin/"
    settings.WECOM_CORP_ID = "wwcorp123"
    client = Client()
    response = client.get("/m/login/wecom/")
    location = response["Location"]
    assert location.startswith(
        "https://open.weixin.qq.com/connect/oauth2/authorize?appid=wwcorp123&"
    )
    assert location.endswith("#wechat_redirect")
    state = parse_qs(urlsplit(location).query)["state"][0]
    assert len(state) >= 16
    assert client.session["m_wecom_oauth_state"] == state


def test_wecom_oauth_round_trip_through_the_simulators_authorize_page(
    sim: Simulator, member: Staff
) -> None:
    """The browser's path: our redirect -> WeCom's page -> back to us with code and state."""
    client = Client()
    authorize = client.get("/m/login/wecom/")["Location"]
    assert authorize.startswith(sim.base_url + "connect/oauth2/authorize?appid=" + sim.corp_id)
    # The simulator's page redirects at once with a code when told who opens it.
    url = authorize.split("#")[0] + "&" + urlencode({"userid": member.wecom_userid})
    back = requests.get(url, allow_redirects=False, timeout=10)
    assert back.status_code == 302
    parts = urlsplit(back.headers["Location"])
    assert parts.path == "/m/login/wecom/"
    response = client.get(parts.path + "?" + parts.query)
    assert response.status_code == 302
    assert response["Location"] == "/m/"
    assert int(client.session["_auth_user_id"]) == member.user_id


def test_wecom_oauth_signs_the_member_in_and_lands_on_today(sim: Simulator, member: Staff) -> None:
    client = Client()
    state = start_oauth(client)
    code = sim.mint_oauth_code(str(member.wecom_userid))
    response = client.get("/m/login/wecom/", {"code": code, "state": state})
    assert response.status_code == 302
    assert response["Location"] == "/m/"
    assert int(client.session["_auth_user_id"]) == member.user_id
    assert client.get("/m/").status_code == 200


def test_wecom_oauth_keeps_a_safe_next_across_the_round_trip(sim: Simulator, member: Staff) -> None:
    client = Client()
    state = start_oauth(client, "/m/code/")
    code = sim.mint_oauth_code(str(member.wecom_userid))
    response = client.get("/m/login/wecom/", {"code": code, "state": state})
    assert response["Location"] == "/m/code/"


def test_a_replayed_code_is_refused_with_a_message(sim: Simulator, member: Staff) -> None:
    code = sim.mint_oauth_code(str(member.wecom_userid))
    first = Client()
    first.get("/m/login/wecom/", {"code": code, "state": start_oauth(first)})
    assert "_auth_user_id" in first.session

    again = Client()
    state = start_oauth(again)
    response = again.get("/m/login/wecom/", {"code": code, "state": state}, follow=True)
    assert response.redirect_chain[-1][0] == "/m/login/"
    assert "_auth_user_id" not in again.session
    assert any("already used or expired" in m for m in messages_of(response))


def test_a_customer_opening_the_page_is_not_signed_in(sim: Simulator, member: Staff) -> None:
    external_userid = sim.dataset.external_userid(0)
    client = Client()
    state = start_oauth(client)
    code = sim.mint_oauth_code(external_userid)
    response = client.get("/m/login/wecom/", {"code": code, "state": state}, follow=True)
    assert response.redirect_chain[-1][0] == "/m/login/"
    assert "_auth_user_id" not in client.session
    assert any("Only members" in m for m in messages_of(response))


@pytest.mark.parametrize("why", ["no user", "inactive staff", "inactive user", "unknown member"])
def test_a_member_without_an_active_linked_account_is_not_signed_in(
    sim: Simulator, member: Staff, why: str
) -> None:
    userid = str(member.wecom_userid)
    if why == "no user":
        member.user = None
        member.save(update_fields=["user"])
    elif why == "inactive staff":
        member.is_active = False
        member.save(update_fields=["is_active"])
    elif why == "inactive user":
        assert member.user is not None
        member.user.is_active = False
        member.user.save(update_fields=["is_active"])
    else:
        userid = sorted(sim.dataset.staff_ids)[1]  # a member with no Staff row here
        assert not Staff.objects.filter(wecom_userid=userid).exists()
    client = Client()
    state = start_oauth(client)
    response = client.get(
        "/m/login/wecom/", {"code": sim.mint_oauth_code(userid), "state": state}, follow=True
    )
    assert response.redirect_chain[-1][0] == "/m/login/"
    assert "_auth_user_id" not in client.session
    assert any("not linked to an active staff account" in m for m in messages_of(response))


@pytest.mark.parametrize("state", ["forged", ""])
def test_a_bad_or_missing_state_is_refused_before_asking_wecom(
    sim: Simulator, member: Staff, state: str
) -> None:
    client = Client()
    start_oauth(client)
    code = sim.mint_oauth_code(str(member.wecom_userid))
    response = client.get("/m/login/wecom/", {"code": code, "state": state}, follow=True)
    assert response.redirect_chain[-1][0] == "/m/login/"
    assert "_auth_user_id" not in client.session
    assert any("expired or was not started here" in m for m in messages_of(response))
    # The code was not spent: WeCom was never asked.
    assert code in sim.state.oauth_codes


def test_a_callback_without_a_started_sign_in_is_refused(sim: Simulator, member: Staff) -> None:
    code = sim.mint_oauth_code(str(member.wecom_userid))
    response = Client().get("/m/login/wecom/", {"code": code, "state": "x"}, follow=True)
    assert response.redirect_chain[-1][0] == "/m/login/"


def test_a_wecom_outage_lands_on_the_sign_in_page_not_a_500(settings: Any, member: Staff) -> None:
    # Nothing listens here: the client's network error must become a message.
    settings.WECOM_API_BASE = "http://127.0.0.1:9/cgi-bin/"
    client = Client()
    state = start_oauth(client)
    response = client.get("/m/login/wecom/", {"code": "abc", "state": state}, follow=True)
    assert response.redirect_chain[-1][0] == "/m/login/"
    assert any("did not confirm who you are" in m for m in messages_of(response))
