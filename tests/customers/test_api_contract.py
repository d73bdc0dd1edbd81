"""REST API v1 as a contract: authentication, the one error shape, no 500 for any input,
the token command, the OpenAPI document and its docs page."""

from __future__ import annotations

import base64
import re
from io import StringIO
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from customers.models import Customer
from scrm.roles import INTEGRATION_GROUP, Role, role_of
from tests.conftest import World, api_client_for, loads_remote_assets
from tests.factories import CustomerFactory, TagFactory, UserFactory

pytestmark = pytest.mark.django_db


def assert_error_shape(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.content[:500]
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    assert isinstance(body["error"]["code"], str)
    assert isinstance(body["error"]["message"], str)
    return dict(body["error"])


# --- Authentication --------------------------------------------------------------------


def test_token_authenticates_an_integration(api_client: APIClient, world: World) -> None:
    response = api_client.get("/api/v1/customers/")
    assert response.status_code == 200


def test_missing_token_is_401_in_the_error_shape(db: Any) -> None:
    response = APIClient().get("/api/v1/customers/")
    error = assert_error_shape(response, 401)
    assert error["code"] == "not_authenticated"
    assert response["WWW-Authenticate"] == "Token"


@pytest.mark.parametrize(
    "header", ["Token nope", "Token", "Token a b", "Bearer x", "Token caf\xe9"]
)
def test_bad_token_is_401(db: Any, header: str) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    response = client.get("/api/v1/orders/")
    assert_error_shape(response, 401)


def test_session_login_works_for_reads(world: World) -> None:
    client = APIClient()
    assert client.login(username="clerk_a", password="pass-1234-word")
    assert client.get("/api/v1/customers/").status_code == 200


def test_session_writes_need_csrf(world: World) -> None:
    client = APIClient(enforce_csrf_checks=True)
    client.login(username="clerk_a", password="pass-1234-word")
    response = client.post(
        "/api/v1/notes/", {"customer": world.customer_a.pk, "body": "x"}, format="json"
    )
    assert_error_shape(response, 403)


def test_inactive_user_token_is_refused(integration_user: Any, api_client: APIClient) -> None:
    integration_user.is_active = False
    integration_user.save()
    assert_error_shape(api_client.get("/api/v1/customers/"), 401)


# --- create_api_token ------------------------------------------------------------------


def run_command(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("create_api_token", *args, stdout=out, stderr=err)
    return out.getvalue().strip(), err.getvalue().strip()


def test_command_prints_only_the_key_and_is_stable(integration_user: Any) -> None:
    key, _err = run_command(integration_user.username)
    assert re.fullmatch(r"[0-9a-f]{40}", key)
    assert Token.objects.get(user=integration_user).key == key
    again, _err = run_command(integration_user.username)
    assert again == key


def test_command_rotate_replaces_the_key(integration_user: Any) -> None:
    key, _err = run_command(integration_user.username)
    rotated, _err = run_command(integration_user.username, "--rotate")
    assert rotated != key
    assert not Token.objects.filter(key=key).exists()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {rotated}")
    assert client.get("/api/v1/customers/").status_code == 200


def test_command_unknown_user_is_a_clear_error(db: Any) -> None:
    with pytest.raises(CommandError, match="--create"):
        run_command("ghost")
    assert not User.objects.filter(username="ghost").exists()


def test_command_create_makes_an_integration_user(db: Any) -> None:
    key, err = run_command("pos", "--create")
    user = User.objects.get(username="pos")
    assert user.groups.filter(name=INTEGRATION_GROUP).exists()
    assert not user.has_usable_password()
    assert role_of(user) == Role.INTEGRATION
    assert Token.objects.get(user=user).key == key
    assert "pos" in err
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.get("/api/v1/customers/").status_code == 200


def test_command_create_refuses_a_bad_username(db: Any) -> None:
    with pytest.raises(CommandError):
        run_command("has space", "--create")


def test_command_warns_about_a_user_without_role(db: Any) -> None:
    UserFactory(username="plain")
    key, err = run_command("plain")
    assert key
    assert "no role" in err


def test_command_refuses_an_inactive_user(db: Any) -> None:
    UserFactory(username="gone", is_active=False)
    with pytest.raises(CommandError, match="inactive"):
        run_command("gone")


# --- Schema and docs -------------------------------------------------------------------


def test_schema_is_an_openapi_3_document(db: Any) -> None:
    response = APIClient().get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    for path in (
        "/api/v1/customers/",
        "/api/v1/customers/{id}/tags/",
        "/api/v1/orders/bulk/",
        "/api/v1/activities/bulk/",
        "/api/v1/notes/",
        "/api/v1/tags/",
        "/api/v1/tag-groups/",
        "/api/v1/staff/",
        "/api/v1/stores/",
        "/api/v1/channels/",
    ):
        assert path in schema["paths"], path
    assert "Error" in schema["components"]["schemas"]
    assert "tokenAuth" in schema["components"]["securitySchemes"]


def test_swagger_page_uses_only_local_assets(db: Any) -> None:
    response = APIClient().get("/api/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "swagger-ui" in html
    assert not loads_remote_assets(html), html


# --- Nothing answers 500 ---------------------------------------------------------------


def test_non_json_body_is_400(api_client: APIClient) -> None:
    response = api_client.post(
        "/api/v1/customers/", data="{not json", content_type="application/json"
    )
    assert assert_error_shape(response, 400)["code"] == "parse_error"


def test_unsupported_media_type_is_415(api_client: APIClient) -> None:
    response = api_client.post("/api/v1/customers/", data="hi", content_type="text/plain")
    assert_error_shape(response, 415)


def test_deeply_nested_json_is_400(api_client: APIClient) -> None:
    body = "[" * 100_000 + "]" * 100_000
    response = api_client.post("/api/v1/orders/bulk/", data=body, content_type="application/json")
    assert_error_shape(response, 400)


def test_lone_surrogate_is_400(api_client: APIClient) -> None:
    response = api_client.post(
        "/api/v1/customers/", data='{"name": "\\ud800"}', content_type="application/json"
    )
    assert_error_shape(response, 400)
    assert not Customer.objects.exists()


def test_huge_integer_literal_is_400(api_client: APIClient) -> None:
    response = api_client.post(
        "/api/v1/orders/", data='{"amount": ' + "9" * 5000 + "}", content_type="application/json"
    )
    assert_error_shape(response, 400)


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/customers/",
        "/api/v1/orders/",
        "/api/v1/activities/",
        "/api/v1/notes/",
        "/api/v1/tags/",
        "/api/v1/tag-groups/",
        "/api/v1/staff/",
        "/api/v1/stores/",
        "/api/v1/channels/",
        "/api/v1/orders/bulk/",
        "/api/v1/activities/bulk/",
    ],
)
@pytest.mark.parametrize(
    "body", [[], [1, 2], "text", 12, None, {"name": {"a": 1}}, {"customer": [1]}, {"x": 1e308}]
)
def test_garbage_bodies_are_400_not_500(api_client: APIClient, path: str, body: Any) -> None:
    response = api_client.post(path, body, format="json")
    assert_error_shape(response, 400)


@pytest.mark.parametrize(
    "body",
    [
        {"name": "x", "birthday": "1990-02-30"},
        {"name": "x", "birthday": "0000-01-01"},
        {"name": "x", "acquired_at": "9999-12-31T23:59:59-12:00"},
        {"name": "x", "acquired_at": "0001-01-01T00:00:00+14:00"},
        {"name": "x", "gender": True},
        {"name": "x", "gender": 7},
        {"name": "x", "owner": 1.5},
        {"name": "x", "owner": -1},
        {"name": "x", "referred_by": {"id": 1}},
        {"name": "x", "avatar": "not a url"},
        {"name": "x" * 129},
        {"name": "nul\x00byte"},
        {"name": "x", "external_id": ["a"]},
    ],
)
def test_garbage_customer_fields_are_400(api_client: APIClient, body: dict[str, Any]) -> None:
    assert_error_shape(api_client.post("/api/v1/customers/", body, format="json"), 400)


@pytest.mark.parametrize(
    "query",
    [
        {"acquired_after": "yesterday"},
        {"store": "abc"},
        {"owner": str(10**30)},
        {"tag": "-1"},
        {"staff": "1.5"},
        {"status": "gone"},
        {"gender": "x"},
        {"ordering": "password"},
        {"q": "nul\x00"},
    ],
)
def test_garbage_customer_filters_are_400(api_client: APIClient, query: dict[str, str]) -> None:
    assert_error_shape(api_client.get("/api/v1/customers/", query), 400)


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("/api/v1/customers/", {"channel": str(10**30)}),
        ("/api/v1/customers/", {"channel": "1e400"}),
        ("/api/v1/orders/", {"customer": str(10**30)}),
        ("/api/v1/orders/", {"page_size": "abc"}),
        ("/api/v1/orders/", {"page_size": str(10**30)}),
        ("/api/v1/activities/", {"customer": "-5"}),
        ("/api/v1/notes/", {"customer": str(10**30)}),
    ],
)
def test_odd_numeric_filters_answer_200_or_400(
    api_client: APIClient, path: str, query: dict[str, str]
) -> None:
    response = api_client.get(path, query)
    assert response.status_code in (200, 400), response.content[:300]
    if response.status_code == 400:
        assert_error_shape(response, 400)


def test_out_of_range_id_filter_is_400_naming_it(api_client: APIClient) -> None:
    error = assert_error_shape(api_client.get("/api/v1/orders/", {"customer": "1e30"}), 400)
    assert "customer" in error["fields"]


def forged_cursor(position: str) -> str:
    return base64.b64encode(f"o=0&r=0&p={position}".encode()).decode()


@pytest.mark.parametrize("path", ["/api/v1/tags/", "/api/v1/customers/", "/api/v1/orders/"])
@pytest.mark.parametrize("cursor", ["garbage", forged_cursor("abc"), forged_cursor("%00")])
def test_bad_cursors_are_404_in_the_error_shape(
    api_client: APIClient, path: str, cursor: str
) -> None:
    TagFactory()
    CustomerFactory()
    response = api_client.get(path, {"cursor": cursor})
    assert assert_error_shape(response, 404)["code"] == "not_found"


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/customers/abc/",
        f"/api/v1/customers/{10**30}/",
        "/api/v1/customers/-1/",
        "/api/v1/orders/1e3/",
        "/api/v1/activities/0/",
        "/api/v1/notes/%20/",
        "/api/v1/staff/999999/",
        "/api/v1/stores/x/",
        "/api/v1/tags/1.0/",
        "/api/v1/tag-groups/99/",
        "/api/v1/nothing-here/",
    ],
)
def test_unknown_ids_are_404(api_client: APIClient, path: str) -> None:
    response = api_client.get(path)
    assert response.status_code == 404
    if path.startswith(("/api/v1/nothing",)):
        return  # outside any view: Django's own 404
    assert_error_shape(response, 404)


def test_writes_to_unknown_ids_are_404(api_client: APIClient) -> None:
    assert_error_shape(api_client.patch("/api/v1/customers/abc/", {"name": "x"}), 404)
    assert_error_shape(api_client.post(f"/api/v1/customers/{10**30}/tags/", {"tag": 1}), 404)
    assert_error_shape(api_client.delete("/api/v1/staff/0/"), 404)


@pytest.mark.parametrize(
    "path",
    ["/api/v1/customers/", "/api/v1/orders/bulk/", "/api/v1/customers/1/", "/api/v1/stores/"],
)
def test_options_requests_answer(api_client: APIClient, path: str, world: World) -> None:
    response = api_client.options(path)
    assert response.status_code in (200, 404)


def test_method_not_allowed_is_405_in_the_error_shape(api_client: APIClient) -> None:
    assert_error_shape(api_client.delete("/api/v1/orders/1/"), 405)
    assert_error_shape(api_client.get("/api/v1/orders/bulk/"), 405)


def test_form_encoded_writes_work_too(api_client: APIClient) -> None:
    response = api_client.post("/api/v1/customers/", {"name": "Form", "external_id": "f1"})
    assert response.status_code == 201
    assert_error_shape(api_client.post("/api/v1/orders/bulk/", {"rows": "x"}), 400)


def test_clerk_sees_nothing_through_a_foreign_filter(world: World) -> None:
    response = api_client_for(world.clerk_a.user).get(
        "/api/v1/orders/", {"customer": world.customer_b.pk}
    )
    assert response.json()["results"] == []


def test_schema_generates_without_warnings(tmp_path: Any) -> None:
    # The same check as `manage.py spectacular --validate --fail-on-warn` in CI.
    call_command(
        "spectacular",
        "--validate",
        "--fail-on-warn",
        "--file",
        str(tmp_path / "schema.yaml"),
        stdout=StringIO(),
        stderr=StringIO(),
    )
    assert (tmp_path / "schema.yaml").read_text().startswith("openapi: 3.")
