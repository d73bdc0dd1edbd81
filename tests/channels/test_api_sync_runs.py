"""REST API v1: WeCom sync runs. POST starts a run and enqueues its task after commit;
operators and API clients only; the list keeps its query budget."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from channels import tasks
from channels.models import SyncRun, SyncStatus
from tests.conftest import World, api_client_for

pytestmark = pytest.mark.django_db

RUNS = "/api/v1/sync-runs/"


def finished_run(**fields: Any) -> SyncRun:
    started = timezone.now() - timedelta(minutes=5)
    values: dict[str, Any] = {
        "status": SyncStatus.SUCCEEDED,
        "started_at": started,
        "finished_at": started + timedelta(seconds=90),
        "pages": 12,
        "http_calls": 15,
        "relationships": 1100,
        "created": 3,
        "updated": 4,
        "deleted": 5,
        "wecom_follows": 1100,
        "active_follows": 1100,
        "checkpoint": {"phase": "done"},
        "errors": [{"errcode": 45009, "errmsg": "api freq out of limit", "transient": True}],
        **fields,
    }
    return SyncRun.objects.create(**values)


def test_retrieve_has_every_figure_and_the_reconciliation(api_client: APIClient) -> None:
    run = finished_run(active_follows=1099)
    data = api_client.get(f"{RUNS}{run.pk}/").json()
    assert data["status"] == "succeeded" and data["phase"] == "done"
    assert data["duration_seconds"] == 90
    assert (data["pages"], data["http_calls"], data["relationships"]) == (12, 15, 1100)
    assert (data["created"], data["updated"], data["deleted"]) == (3, 4, 5)
    assert (data["wecom_follows"], data["active_follows"], data["in_step"]) == (1100, 1099, False)
    assert data["errors"][0]["errcode"] == 45009


def test_running_run_has_no_reconciliation_yet(api_client: APIClient) -> None:
    run = SyncRun.objects.create()
    data = api_client.get(f"{RUNS}{run.pk}/").json()
    assert data["in_step"] is None and data["duration_seconds"] is None
    assert data["phase"] == "staff"


def test_list_newest_first_and_filter_by_status(api_client: APIClient) -> None:
    old = finished_run()
    failed = finished_run(status=SyncStatus.FAILED)
    assert [r["id"] for r in api_client.get(RUNS).json()["results"]] == [failed.pk, old.pk]
    only = api_client.get(RUNS, {"status": "failed"}).json()["results"]
    assert [r["id"] for r in only] == [failed.pk]
    assert api_client.get(RUNS, {"status": "exploded"}).status_code == 400


def test_post_starts_a_run_and_enqueues_it_after_commit(
    api_client: APIClient, django_capture_on_commit_callbacks: Any
) -> None:
    with mock.patch.object(tasks.wecom_sync, "delay") as delay:
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            response = api_client.post(RUNS)
        assert response.status_code == 202
        run = SyncRun.objects.get()
        assert response.json()["id"] == run.pk
        assert response.json()["status"] == "running"
        delay.assert_not_called()
        assert len(callbacks) == 1
        callbacks[0]()
        delay.assert_called_once_with(run.pk)


def test_post_while_running_answers_the_running_run(
    api_client: APIClient, django_capture_on_commit_callbacks: Any
) -> None:
    running = SyncRun.objects.create()
    with (
        mock.patch.object(tasks.wecom_sync, "delay") as delay,
        django_capture_on_commit_callbacks(execute=True),
    ):
        response = api_client.post(RUNS)
    assert response.status_code == 202
    assert response.json()["id"] == running.pk
    assert SyncRun.objects.count() == 1
    # Enqueued again: harmless (the lease lets one worker run it) and resumes a dead one.
    delay.assert_called_once_with(running.pk)


def test_operators_may_start_a_sync(operator_user: Any) -> None:
    with mock.patch.object(tasks.wecom_sync, "delay"):
        assert api_client_for(operator_user).post(RUNS).status_code == 202


def test_store_people_may_not_read_or_start_syncs(world: World) -> None:
    run = finished_run()
    for staff in (world.manager_a, world.clerk_a):
        client = api_client_for(staff.user)
        assert client.get(RUNS).status_code == 403
        assert client.get(f"{RUNS}{run.pk}/").status_code == 403
        assert client.post(RUNS).status_code == 403
    assert SyncRun.objects.count() == 1


def test_unknown_run_is_404(api_client: APIClient) -> None:
    assert api_client.get(f"{RUNS}999999/").status_code == 404
    assert api_client.get(f"{RUNS}abc/").status_code == 404


def test_list_budget_does_not_grow(
    api_client: APIClient, django_assert_max_num_queries: Any
) -> None:
    counts = []
    for rows in (3, 30):
        while SyncRun.objects.count() < rows:
            finished_run()
        with django_assert_max_num_queries(5) as queries:
            response = api_client.get(RUNS, {"page_size": 100})
        assert len(response.json()["results"]) == rows
        counts.append(len(queries))
    assert counts[0] == counts[1]
