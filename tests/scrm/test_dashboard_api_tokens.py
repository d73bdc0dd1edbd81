"""The operators' API tokens page: integration accounts and their tokens."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse
from rest_framework.authtoken.models import Token

from scrm.roles import Role, role_of
from scrm.services import api_client_create, api_token_revoke, api_token_rotate
from tests.conftest import World

PAGE = "/settings/api-tokens/"
HTMX = {"HTTP_HX_REQUEST": "true", "HTTP_HX_TARGET": "api-clients"}


def client_for(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_operator_sees_integration_accounts_with_token_prefix_only(
    operator_user: Any, integration_user: Any
) -> None:
    token = Token.objects.create(user=integration_user)
    response = client_for(operator_user).get(PAGE)
    html = response.content.decode()
    assert response.status_code == 200
    assert reverse("api_tokens") == PAGE
    assert integration_user.username in html
    assert token.key[:6] in html
    assert token.key not in html


def test_operator_creates_an_integration_account_and_sees_its_token_once(
    operator_user: Any,
) -> None:
    client = client_for(operator_user)
    response = client.post(reverse("api_client_create"), {"username": "pos"}, **HTMX)
    assert response.status_code == 200
    user = get_user_model().objects.get(username="pos")
    assert role_of(user) == Role.INTEGRATION
    assert not user.has_usable_password()
    key = Token.objects.get(user=user).key
    assert key in response.content.decode()
    assert "<html" not in response.content.decode()
    assert key not in client.get(PAGE).content.decode()


def test_creating_a_duplicate_account_is_refused(operator_user: Any, integration_user: Any) -> None:
    response = client_for(operator_user).post(
        reverse("api_client_create"), {"username": integration_user.username.upper()}
    )
    assert response.status_code == 200
    assert response.context["form"].errors
    assert get_user_model().objects.filter(username__iexact=integration_user.username).count() == 1


def test_operator_rotates_a_token(operator_user: Any, integration_user: Any) -> None:
    old = Token.objects.create(user=integration_user).key
    response = client_for(operator_user).post(
        reverse("api_token_rotate", args=[integration_user.pk]), **HTMX
    )
    new = Token.objects.get(user=integration_user).key
    assert new != old
    assert new in response.content.decode()
    assert not Token.objects.filter(key=old).exists()


def test_operator_revokes_a_token(operator_user: Any, integration_user: Any) -> None:
    Token.objects.create(user=integration_user)
    response = client_for(operator_user).post(
        reverse("api_token_revoke", args=[integration_user.pk])
    )
    assert response.status_code == 302
    assert not Token.objects.filter(user=integration_user).exists()
    assert get_user_model().objects.filter(pk=integration_user.pk).exists()


def test_rotate_refuses_a_user_who_is_not_an_api_client(operator_user: Any, world: World) -> None:
    assert world.clerk_a.user is not None
    response = client_for(operator_user).post(
        reverse("api_token_rotate", args=[world.clerk_a.user.pk])
    )
    assert response.status_code == 404
    assert not Token.objects.filter(user=world.clerk_a.user).exists()


@pytest.mark.parametrize("persona", ["clerk_a", "manager_a"])
def test_store_people_cannot_open_or_use_the_api_tokens_page(
    world: World, integration_user: Any, persona: str
) -> None:
    client = client_for(getattr(world, persona).user)
    Token.objects.create(user=integration_user)
    assert client.get(PAGE).status_code == 403
    assert client.post(reverse("api_client_create"), {"username": "evil"}).status_code == 403
    rotate = reverse("api_token_rotate", args=[integration_user.pk])
    assert client.post(rotate).status_code == 403
    revoke = reverse("api_token_revoke", args=[integration_user.pk])
    assert client.post(revoke).status_code == 403
    assert not get_user_model().objects.filter(username="evil").exists()
    assert Token.objects.filter(user=integration_user).exists()


def test_services_issue_rotate_and_revoke(db: Any) -> None:
    user, token = api_client_create(username="warehouse")
    rotated = api_token_rotate(user=user)
    assert rotated.key != token.key
    assert api_token_revoke(user=user) is True
    assert api_token_revoke(user=user) is False
    # Rotating a client without a token issues one.
    assert api_token_rotate(user=user).user_id == user.pk
