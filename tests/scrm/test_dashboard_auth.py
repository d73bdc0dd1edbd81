"""Who may enter the dashboard: login, logout, anonymous users, accounts without a role."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import Group
from django.test import Client
from django.urls import reverse

from scrm.roles import INTEGRATION_GROUP
from tests.conftest import PASSWORD, World
from tests.factories import UserFactory

LIST = "/customers/"


def client_for(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_login_works_and_redirects_to_the_customer_list(world: World) -> None:
    client = Client()
    response = client.post(reverse("login"), {"username": "clerk_a", "password": PASSWORD})
    assert response.status_code == 302
    assert response["Location"] == reverse("customers:list") == LIST
    assert client.get(LIST).status_code == 200


def test_login_honours_a_safe_next_url(world: World) -> None:
    detail = reverse("customers:detail", args=[world.customer_a.pk])
    response = Client().post(
        reverse("login"), {"username": "clerk_a", "password": PASSWORD, "next": detail}
    )
    assert response["Location"] == detail


def test_wrong_password_shows_the_form_again(world: World) -> None:
    response = Client().post(reverse("login"), {"username": "clerk_a", "password": "nope"})
    assert response.status_code == 200
    assert response.context["form"].errors


def test_login_page_renders(db: Any) -> None:
    response = Client().get(reverse("login"))
    assert response.status_code == 200
    assert 'name="password"' in response.content.decode()


def test_anonymous_user_is_redirected_to_login(world: World) -> None:
    for url in (
        LIST,
        reverse("customers:detail", args=[world.customer_a.pk]),
        reverse("api_tokens"),
    ):
        response = Client().get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("login") + "?next=")


def test_anonymous_htmx_request_is_sent_to_login_by_hx_redirect(db: Any) -> None:
    response = Client().get(
        LIST,
        {"q": "x"},
        HTTP_HX_REQUEST="true",
        HTTP_HX_CURRENT_URL="http://testserver/customers/?q=x",
    )
    assert response.status_code == 200
    assert response["HX-Redirect"].startswith(reverse("login") + "?next=")
    # Back to the page the user was on, not to the partial's URL.
    assert response["HX-Redirect"].endswith("next=/customers/%3Fq%3Dx")


def test_root_redirects_to_the_customer_list(operator_user: Any) -> None:
    response = client_for(operator_user).get("/")
    assert response.status_code == 302
    assert response["Location"] == LIST


def test_logout_needs_post_and_ends_the_session(operator_user: Any) -> None:
    client = client_for(operator_user)
    assert client.get(reverse("logout")).status_code == 405
    assert client.get(LIST).status_code == 200
    response = client.post(reverse("logout"))
    assert response.status_code == 302
    assert response["Location"] == reverse("login")
    assert client.get(LIST).status_code == 302


def test_user_without_a_role_cannot_log_in(db: Any) -> None:
    UserFactory(username="nobody")
    client = Client()
    response = client.post(reverse("login"), {"username": "nobody", "password": PASSWORD})
    assert response.status_code == 200
    assert "no_role" in [e.code for e in response.context["form"].non_field_errors().as_data()]
    assert client.get(LIST).status_code == 302


def test_integration_user_cannot_log_in_to_the_dashboard(integration_user: Any) -> None:
    integration_user.set_password(PASSWORD)
    integration_user.save()
    response = Client().post(
        reverse("login"), {"username": integration_user.username, "password": PASSWORD}
    )
    assert response.status_code == 200
    assert response.context["form"].non_field_errors()


def test_signed_in_user_without_a_role_gets_403_with_a_logout(db: Any) -> None:
    client = client_for(UserFactory(username="nobody"))
    response = client.get(LIST)
    assert response.status_code == 403
    html = response.content.decode()
    assert reverse("logout") in html
    assert f'href="{reverse("customers:list")}"' not in html  # no links they cannot use


def test_signed_in_integration_user_gets_403(integration_user: Any) -> None:
    response = client_for(integration_user).get(LIST)
    assert response.status_code == 403


def test_navigation_shows_only_pages_the_role_can_open(world: World, operator_user: Any) -> None:
    operator_html = client_for(operator_user).get(LIST).content.decode()
    assert reverse("api_tokens") in operator_html
    assert reverse("admin:index") in operator_html
    clerk_html = client_for(world.clerk_a.user).get(LIST).content.decode()
    assert reverse("customers:list") in clerk_html
    assert reverse("api_tokens") not in clerk_html
    assert reverse("admin:index") not in clerk_html


def test_operator_staff_member_sees_api_tokens_but_not_admin(world: World) -> None:
    from customers.models import Staff
    from scrm.roles import Role

    user: Any = UserFactory(username="ops_staff")
    Staff.objects.create(name="Ops", user=user, role=Role.OPERATOR)
    html = client_for(user).get(LIST).content.decode()
    assert reverse("api_tokens") in html
    assert reverse("admin:index") not in html  # not a superuser


def test_group_membership_alone_is_not_a_dashboard_role(db: Any) -> None:
    user = UserFactory(username="half-set-up")
    group, _ = Group.objects.get_or_create(name=INTEGRATION_GROUP)
    user.groups.add(group)
    assert client_for(user).get(reverse("api_tokens")).status_code == 403
