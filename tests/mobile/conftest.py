"""Shared fixtures of the mobile pages' tests: a signed-in test client per persona.

``m_client(user)`` (a Staff or a user) returns a Django test client logged in as that
user, e.g. ``m_client(world.clerk_a).get("/m/")``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from customers.models import Staff


@pytest.fixture
def m_client(db: Any) -> Callable[[Any], Client]:
    def make(who: Any) -> Client:
        user = who.user if isinstance(who, Staff) else who
        client = Client()
        client.force_login(user)
        return client

    return make
