"""Persona fixtures shared by every test: an operator, a manager and a clerk of store A,
a clerk of store B, and an API client; plus customers each of them should (not) see."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from django.contrib.auth.models import Group
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from customers.models import Customer, Staff, Store
from scrm.roles import INTEGRATION_GROUP, Role
from tests.factories import CustomerFactory, FollowFactory, StaffFactory, StoreFactory, UserFactory

PASSWORD = "pass-1234-word"

#: A ``src`` or ``href`` that points at another host (``//host`` or ``http(s)://host``).
_REMOTE_ASSET = re.compile(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""")


def loads_remote_assets(html: str) -> bool:
    """Whether a page loads anything from another host (our assets are vendored)."""
    return _REMOTE_ASSET.search(html) is not None


@dataclass
class World:
    store_a: Store
    store_b: Store
    manager_a: Staff
    clerk_a: Staff
    clerk_a2: Staff
    clerk_b: Staff
    customer_a: Customer  # followed by clerk_a
    customer_a2: Customer  # followed by clerk_a2, same store
    customer_b: Customer  # followed by clerk_b


@pytest.fixture
def operator_user(db):
    return UserFactory(username="operator", is_superuser=True, is_staff=True)


@pytest.fixture
def world(db) -> World:
    store_a = StoreFactory(code="A", name="Store A")
    store_b = StoreFactory(code="B", name="Store B")
    manager_a = StaffFactory(
        name="Manager A", store=store_a, role=Role.MANAGER, user=UserFactory(username="manager_a")
    )
    clerk_a = StaffFactory(name="Clerk A", store=store_a, user=UserFactory(username="clerk_a"))
    clerk_a2 = StaffFactory(name="Clerk A2", store=store_a, user=UserFactory(username="clerk_a2"))
    clerk_b = StaffFactory(name="Clerk B", store=store_b, user=UserFactory(username="clerk_b"))
    customer_a = CustomerFactory(name="Alice A", store=store_a)
    customer_a2 = CustomerFactory(name="Anna A2", store=store_a)
    customer_b = CustomerFactory(name="Bob B", store=store_b)
    FollowFactory(customer=customer_a, staff=clerk_a)
    FollowFactory(customer=customer_a2, staff=clerk_a2)
    FollowFactory(customer=customer_b, staff=clerk_b)
    return World(
        store_a, store_b, manager_a, clerk_a, clerk_a2, clerk_b, customer_a, customer_a2, customer_b
    )


@pytest.fixture
def integration_user(db):
    user = UserFactory(username="mall-integration")
    group, _ = Group.objects.get_or_create(name=INTEGRATION_GROUP)
    user.groups.add(group)
    return user


@pytest.fixture
def api_client(integration_user) -> APIClient:
    """An integration authenticated by token, as the mall or POS would be."""
    token, _ = Token.objects.get_or_create(user=integration_user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


def api_client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user=user)
    return client


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # PBKDF2 is deliberately slow; tests create many users and need no brute-force cost.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
