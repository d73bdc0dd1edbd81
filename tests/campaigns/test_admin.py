"""The campaigns admin is a read-only back-office view of what the engine did."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from tests.campaigns.factories import TouchpointFactory

pytestmark = pytest.mark.django_db

PAGES = [
    "touchpoint",
    "messagetask",
    "enrollment",
    "quotausage",
    "coupon",
    "pointsentry",
]


@pytest.mark.parametrize("model", PAGES)
def test_admin_lists_the_engines_rows_but_cannot_write_them(operator_user: Any, model: str) -> None:
    TouchpointFactory()
    client = Client()
    client.force_login(operator_user)
    assert client.get(f"/admin/campaigns/{model}/").status_code == 200
    assert client.get(f"/admin/campaigns/{model}/add/").status_code == 403
