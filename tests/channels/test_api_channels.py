"""REST API v1: traffic channels, and their services."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from rest_framework.test import APIClient

from channels.models import Channel
from channels.services import channel_create, channel_update
from tests.conftest import World, api_client_for
from tests.factories import ChannelFactory

pytestmark = pytest.mark.django_db

LIST = "/api/v1/channels/"


def test_channel_create_and_read(api_client: APIClient) -> None:
    response = api_client.post(
        LIST, {"name": "Douyin ads", "kind": "ads", "cost": "12000.50"}, format="json"
    )
    assert response.status_code == 201
    assert response.json()["cost"] == "12000.50"
    channel = Channel.objects.get(name="Douyin ads")
    assert channel.cost == Decimal("12000.50")
    assert api_client.get(f"{LIST}{channel.pk}/").json()["kind"] == "ads"


def test_channel_name_is_unique(api_client: APIClient) -> None:
    ChannelFactory(name="Flyers")
    response = api_client.post(LIST, {"name": "Flyers", "kind": "offline_push"}, format="json")
    assert response.status_code == 400
    assert "name" in response.json()["error"]["fields"]


@pytest.mark.parametrize(
    ("field", "value"),
    [("cost", "-1"), ("cost", "1.234"), ("cost", "lots"), ("kind", "tv"), ("name", "")],
)
def test_invalid_channel_fields_are_400(api_client: APIClient, field: str, value: Any) -> None:
    body = {"name": "c", "kind": "ads", field: value}
    response = api_client.post(LIST, body, format="json")
    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]


def test_channel_patch_and_delete_deactivates(api_client: APIClient) -> None:
    channel = ChannelFactory()
    response = api_client.patch(f"{LIST}{channel.pk}/", {"cost": 50}, format="json")
    assert response.json()["cost"] == "50.00"
    assert api_client.delete(f"{LIST}{channel.pk}/").status_code == 204
    channel.refresh_from_db()
    assert channel.is_active is False


def test_store_staff_read_channels_but_cannot_write(world: World) -> None:
    channel = ChannelFactory(name="Store QR")
    client = api_client_for(world.clerk_a.user)
    assert [c["name"] for c in client.get(LIST).json()["results"]] == ["Store QR"]
    assert client.post(LIST, {"name": "x", "kind": "ads"}, format="json").status_code == 403
    response = client.patch(f"{LIST}{channel.pk}/", {"cost": 1}, format="json")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"


def test_unknown_channel_is_404(api_client: APIClient) -> None:
    assert api_client.get(f"{LIST}999999/").status_code == 404
    assert api_client.get(f"{LIST}abc/").status_code == 404
    assert api_client.get(f"{LIST}{10**30}/").status_code == 404


def test_channel_update_reports_only_real_changes() -> None:
    channel = channel_create(data={"name": "Mall", "kind": "online_mall"})
    before = channel.updated_at
    assert channel_update(channel=channel, data={"name": "Mall", "kind": "online_mall"}) == []
    channel.refresh_from_db()
    assert channel.updated_at == before
    assert channel_update(channel=channel, data={"cost": Decimal("3")}) == ["cost"]


def test_channel_services_refuse_a_taken_name() -> None:
    channel_create(data={"name": "A", "kind": "ads"})
    other = channel_create(data={"name": "B", "kind": "ads"})
    with pytest.raises(ValidationError):
        channel_create(data={"name": "A", "kind": "ads"})
    with pytest.raises(ValidationError):
        channel_update(channel=other, data={"name": "A"})
