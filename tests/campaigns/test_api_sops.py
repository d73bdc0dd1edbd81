"""The SOP API: create with nested steps, validation 400s naming the field, updating an
active SOP publishes a version and reports the customers in flight, actions, roles."""

from __future__ import annotations

from typing import Any

import pytest

from campaigns.models import Enrollment, EnrollmentStatus, Sop, SopStatus, Touchpoint
from tests.campaigns.factories import ContentFactory, SopFactory
from tests.conftest import World, api_client_for

pytestmark = pytest.mark.django_db


def sop_body(content_id: int, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "Welcome",
        "trigger_kind": "manual",
        "steps": [
            {
                "offset_days": 0,
                "at_time": "10:00",
                "action": "wecom_message",
                "content": content_id,
            },
            {"offset_days": 3, "action": "todo", "instruction": "Call them"},
        ],
    }
    body.update(overrides)
    return body


def test_operator_creates_a_draft_sop_with_its_steps(operator_user: Any) -> None:
    content = ContentFactory()
    client = api_client_for(operator_user)
    response = client.post("/api/v1/sops/", sop_body(content.pk), format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["status"] == "draft"
    assert body["version"]["number"] == 1
    assert [s["action"] for s in body["version"]["steps"]] == ["wecom_message", "todo"]
    assert body["version"]["steps"][0]["content"] == content.pk
    assert body["enrolled"] == 0


def test_a_message_step_without_content_is_a_400_naming_the_step(operator_user: Any) -> None:
    client = api_client_for(operator_user)
    body = sop_body(1)
    body["steps"][0]["content"] = None
    response = client.post("/api/v1/sops/", body, format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert any(key.startswith("steps") for key in error["fields"]), error
    assert not Sop.objects.exists()


def test_a_bad_shape_is_a_400_with_field_messages(operator_user: Any) -> None:
    client = api_client_for(operator_user)
    response = client.post(
        "/api/v1/sops/", {"name": "", "trigger_kind": "nope", "steps": []}, format="json"
    )
    assert response.status_code == 400
    fields = response.json()["error"]["fields"]
    assert {"name", "trigger_kind", "steps"} <= set(fields)


def test_updating_an_active_sop_publishes_a_version_and_reports_in_flight(
    operator_user: Any, world: World
) -> None:
    content = ContentFactory()
    client = api_client_for(operator_user)
    sop_id = client.post("/api/v1/sops/", sop_body(content.pk), format="json").json()["id"]
    assert client.post(f"/api/v1/sops/{sop_id}/activate/").json()["status"] == "active"
    enrolled = client.post(f"/api/v1/sops/{sop_id}/enrol/").json()
    assert enrolled["enrolled"] == 3  # the three persona customers
    assert Touchpoint.objects.filter(sop_id=sop_id).count() == 6

    response = client.patch(
        f"/api/v1/sops/{sop_id}/", {"exit_on_purchase": True, "in_flight": "stop"}, format="json"
    )
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["version"] == 2
    assert body["published"] is True
    assert body["in_flight"]["policy"] == "stop"
    assert body["in_flight"]["customers"] == 3
    assert body["in_flight"]["stopped"] == 3
    assert not Enrollment.objects.filter(sop_id=sop_id, status=EnrollmentStatus.ACTIVE).exists()

    versions = client.get(f"/api/v1/sops/{sop_id}/versions/").json()
    assert [v["number"] for v in versions] == [2, 1]


def test_put_replaces_the_steps_then_pause_and_archive(operator_user: Any) -> None:
    client = api_client_for(operator_user)
    content = ContentFactory()
    sop_id = client.post("/api/v1/sops/", sop_body(content.pk), format="json").json()["id"]
    body = sop_body(content.pk, name="Renamed")
    body["steps"] = body["steps"][:1]
    response = client.put(f"/api/v1/sops/{sop_id}/", body, format="json")
    assert response.status_code == 200, response.json()
    # A draft is edited in place: still version 1, nobody in flight.
    assert response.json()["version"] == 1
    assert response.json()["published"] is False
    assert len(response.json()["sop"]["version"]["steps"]) == 1
    sop = Sop.objects.get(pk=sop_id)
    client.post(f"/api/v1/sops/{sop.pk}/activate/")
    assert client.post(f"/api/v1/sops/{sop.pk}/pause/").json()["status"] == "paused"
    assert client.post(f"/api/v1/sops/{sop.pk}/archive/").json()["status"] == "archived"


def test_staff_and_managers_read_sops_but_cannot_write_them(world: World) -> None:
    content = ContentFactory()
    sop = SopFactory(status=SopStatus.DRAFT)
    for staff in (world.clerk_a, world.manager_a):
        client = api_client_for(staff.user)
        assert client.get("/api/v1/sops/").status_code == 200
        assert client.get(f"/api/v1/sops/{sop.pk}/").status_code == 200
        assert client.post("/api/v1/sops/", sop_body(content.pk), format="json").status_code == 403
        assert client.post(f"/api/v1/sops/{sop.pk}/activate/").status_code == 403
        assert client.post(f"/api/v1/sops/{sop.pk}/enrol/").status_code == 403
        assert client.get(f"/api/v1/sops/{sop.pk}/preview/").status_code == 403


def test_an_unknown_sop_is_a_404(operator_user: Any) -> None:
    client = api_client_for(operator_user)
    assert client.get("/api/v1/sops/999999/").status_code == 404
    assert client.get("/api/v1/sops/99999999999999999999/").status_code == 404


def test_the_sop_list_costs_the_same_for_3_and_12_sops(
    operator_user: Any, django_assert_max_num_queries: Any
) -> None:
    from tests.campaigns.factories import sop_with_steps

    client = api_client_for(operator_user)
    for n in (3, 12):
        while Sop.objects.count() < n:
            sop_with_steps(steps=2)
        with django_assert_max_num_queries(6):
            response = client.get("/api/v1/sops/")
        assert len(response.json()["results"]) == n
