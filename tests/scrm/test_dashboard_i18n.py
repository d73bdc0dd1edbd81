"""The dashboard speaks Chinese by default and English on request."""

from __future__ import annotations

from typing import Any

from django.test import Client
from django.urls import reverse

from tests.conftest import World

LIST = "/customers/"


def client_for(user: Any, **defaults: Any) -> Client:
    client = Client(**defaults)
    client.force_login(user)
    return client


def test_dashboard_is_chinese_by_default(world: World) -> None:
    html = client_for(world.clerk_a.user).get(LIST).content.decode()
    assert '<html lang="zh-hans"' in html
    assert "客户" in html
    assert "退出登录" in html


def test_login_page_is_chinese_by_default(db: Any) -> None:
    html = Client().get(reverse("login")).content.decode()
    assert "登录" in html


def test_accept_language_en_gives_english(world: World) -> None:
    client = client_for(world.clerk_a.user, HTTP_ACCEPT_LANGUAGE="en")
    html = client.get(LIST).content.decode()
    assert '<html lang="en"' in html
    assert "Customers" in html
    assert "Log out" in html
    assert "客户" not in html


def test_set_language_switches_to_english_and_back(world: World) -> None:
    client = client_for(world.clerk_a.user)
    response = client.post(reverse("set_language"), {"language": "en", "next": LIST})
    assert response.status_code == 302
    assert response["Location"] == LIST
    assert "Log out" in client.get(LIST).content.decode()
    client.post(reverse("set_language"), {"language": "zh-hans", "next": LIST})
    assert "退出登录" in client.get(LIST).content.decode()


def test_model_choices_are_translated(world: World, operator_user: Any) -> None:
    detail = reverse("customers:detail", args=[world.customer_a.pk])
    html = client_for(operator_user).get(detail).content.decode()
    assert "活跃" in html  # CustomerStatus.ACTIVE
    assert "运营" in html  # Role.OPERATOR in the header
    english = client_for(operator_user, HTTP_ACCEPT_LANGUAGE="en").get(detail).content.decode()
    assert "Active" in english


def test_language_switcher_posts_to_set_language_with_csrf(world: World) -> None:
    html = client_for(world.clerk_a.user).get(LIST).content.decode()
    assert f'action="{reverse("set_language")}" method="post"' in html
    assert 'name="csrfmiddlewaretoken"' in html
