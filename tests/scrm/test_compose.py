"""docker-compose.yml and the Dockerfile, checked by reading them (no Docker engine here)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
APP_SERVICES = ("web", "worker", "beat")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _command(service: dict[str, Any]) -> str:
    command = service["command"]
    return command if isinstance(command, str) else " ".join(command)


def test_compose_has_the_five_services(compose: dict[str, Any]) -> None:
    assert {"postgres", "redis", "web", "worker", "beat"} <= set(compose["services"])


def test_web_worker_and_beat_share_one_environment(compose: dict[str, Any]) -> None:
    services = compose["services"]
    envs = [services[name]["environment"] for name in APP_SERVICES]
    assert envs[0] == envs[1] == envs[2]
    assert {"DATABASE_URL", "REDIS_URL", "SECRET_KEY", "ALLOWED_HOSTS", "DEBUG"} <= set(envs[0])
    assert envs[0]["DEBUG"] == "0"
    assert "@postgres:5432/" in envs[0]["DATABASE_URL"]
    assert envs[0]["REDIS_URL"].startswith("redis://redis:")
    # The same optional .env (WECOM_* and the rest) reaches all three.
    env_files = [services[name]["env_file"] for name in APP_SERVICES]
    assert env_files[0] == env_files[1] == env_files[2]


def test_no_secret_is_written_in_compose(compose: dict[str, Any]) -> None:
    env = compose["services"]["web"]["environment"]
    assert re.fullmatch(r"\$\{SECRET_KEY:\?.+\}", env["SECRET_KEY"])
    assert "${POSTGRES_PASSWORD:?" in env["DATABASE_URL"]
    assert (
        "${POSTGRES_PASSWORD:?"
        in compose["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"]
    )


def test_every_app_variable_is_one_settings_reads(compose: dict[str, Any]) -> None:
    settings_source = (ROOT / "scrm" / "settings.py").read_text(encoding="utf-8")
    for name in compose["services"]["web"]["environment"]:
        assert f'"{name}"' in settings_source, f"{name} is not read by scrm/settings.py"


def test_web_migrates_collects_static_and_runs_gunicorn(compose: dict[str, Any]) -> None:
    command = _command(compose["services"]["web"])
    assert "manage.py migrate" in command
    assert "manage.py collectstatic" in command
    assert "gunicorn scrm.wsgi:application" in command
    assert command.index("migrate") < command.index("gunicorn")


def test_worker_and_beat_run_celery(compose: dict[str, Any]) -> None:
    assert "celery -A scrm worker" in _command(compose["services"]["worker"])
    assert "celery -A scrm beat" in _command(compose["services"]["beat"])


def test_app_services_wait_for_healthy_postgres_and_redis(compose: dict[str, Any]) -> None:
    for name in APP_SERVICES:
        depends = compose["services"][name]["depends_on"]
        assert depends["postgres"]["condition"] == "service_healthy"
        assert depends["redis"]["condition"] == "service_healthy"
    assert "healthcheck" in compose["services"]["postgres"]
    assert "healthcheck" in compose["services"]["redis"]


def test_postgres_spaces_its_checkpoints_for_bulk_writes(compose: dict[str, Any]) -> None:
    command = compose["services"]["postgres"]["command"]
    assert command[0] == "postgres"
    settings = dict(arg.split("=", 1) for arg in command[2::2])
    assert command[1::2] == ["-c"] * len(settings)
    assert settings["max_wal_size"] == "${POSTGRES_MAX_WAL_SIZE:-8GB}"
    assert settings["checkpoint_timeout"] == "${POSTGRES_CHECKPOINT_TIMEOUT:-15min}"


def test_postgres_gets_more_than_the_stock_128_mb_of_shared_buffers(
    compose: dict[str, Any],
) -> None:
    postgres = compose["services"]["postgres"]
    command = postgres["command"]
    assert "shared_buffers=${POSTGRES_SHARED_BUFFERS:-2GB}" in command
    # Docker gives a container 64 MB of /dev/shm; parallel workers share memory there.
    assert postgres["shm_size"] == "${POSTGRES_SHM_SIZE:-1gb}"


def test_the_bench_server_takes_the_compose_settings_with_their_defaults() -> None:
    from bench.pgserver import compose_settings

    assert compose_settings() == {
        "shared_buffers": "2GB",
        "max_wal_size": "8GB",
        "checkpoint_timeout": "15min",
    }


def test_dockerfile_runs_as_a_user_and_holds_no_secret() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.11", dockerfile, re.MULTILINE)
    assert re.search(r"^USER (?!root)\w+", dockerfile, re.MULTILINE)
    assert "SECRET_KEY" not in dockerfile
    assert ".env" in (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
