"""The integration suite: real PostgreSQL, real Redis and a real Celery worker process.

``make test`` runs it in its second pass, with ``DATABASE_URL=$TEST_DATABASE_URL`` and
``REDIS_URL=$TEST_REDIS_URL``. Without those services it is skipped with the reason, except
under CI (``CI=true``) or ``SCRM_REQUIRE_SERVICES=1``, where a missing service is a failure:
a green CI must mean that the worker path really ran.

The worker is started once per session against pytest-django's *test* database (it is a
separate process, so it must be told that database's name) and consumes a queue named for
this session only, so a stale message from an aborted run, or another worker on the same
Redis, never meets these tests. Tests use ``django_db(transaction=True)``: the worker can
only see committed rows.

A WeCom simulator runs in this process for the whole session (``wecom_simulator``), and
the worker is started pointed at it (``WECOM_API_BASE`` and the corp's credentials, a corp
id of this session's own so no token cached by an earlier run is ever offered); the
``wecom`` fixture points this process's settings at it too and resets its corp.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis
from celery.backends.redis import RedisBackend
from celery.result import AsyncResult
from django.conf import settings
from django.db import connection

from channels.wecom.simulator import Simulator
from scrm.celery import app as celery_app

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def services_required() -> bool:
    """CI, or a developer who asked for it, must not get a green run without the services."""
    return (
        os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}
        or os.environ.get("SCRM_REQUIRE_SERVICES", "").strip() == "1"
    )


def missing_services() -> str | None:
    """Why this process cannot run the integration suite, or None when it can."""
    test_db, test_redis = os.environ.get("TEST_DATABASE_URL"), os.environ.get("TEST_REDIS_URL")
    if not test_db or not test_redis:
        return (
            "TEST_DATABASE_URL and TEST_REDIS_URL are not set: the integration suite needs a "
            "real PostgreSQL and Redis (e.g. TEST_DATABASE_URL=postgres://postgres@127.0.0.1:"
            "5432/scrm TEST_REDIS_URL=redis://127.0.0.1:6379/1 make test)"
        )
    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        return (
            "DATABASE_URL is not PostgreSQL in this run: run the suite through `make test`, "
            "which sets DATABASE_URL=$TEST_DATABASE_URL and REDIS_URL=$TEST_REDIS_URL"
        )
    if not str(settings.CELERY_BROKER_URL).startswith(("redis://", "rediss://")):
        return f"the Celery broker is {settings.CELERY_BROKER_URL!r}, not Redis (set REDIS_URL)"
    return None


@pytest.fixture(scope="session", autouse=True)
def _integration_services() -> None:
    problem = missing_services()
    if problem is None:
        # Configured, so an unreachable Redis is a failure, said at once rather than as a
        # worker that never becomes ready.
        try:
            redis.Redis.from_url(_redis_url(), socket_connect_timeout=3).ping()
        except redis.RedisError as exc:
            pytest.fail(f"Redis at {_redis_url()} is unreachable: {exc}")
        return
    if services_required():
        pytest.fail(f"integration services required (CI or SCRM_REQUIRE_SERVICES=1): {problem}")
    pytest.skip(problem)


def _redis_url() -> str:
    # The run's Redis (TEST_REDIS_URL, a database number of its own), which the test
    # process also uses as its broker: both sides must meet on the same one.
    return str(settings.CELERY_BROKER_URL)


class Worker:
    """A ``celery worker`` subprocess and everything it printed."""

    def __init__(self, process: subprocess.Popen[str], queue: str, redis_url: str) -> None:
        self.process = process
        self.queue = queue
        self.backend = RedisBackend(app=celery_app, url=redis_url)
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._lock:
                self._lines.append(line)
            if " ready." in line:
                self._ready.set()

    def output(self) -> str:
        with self._lock:
            return "".join(self._lines)

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.2):
            if self.process.poll() is not None:
                raise RuntimeError(f"celery worker exited early:\n{self.output()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"celery worker not ready after {timeout} s:\n{self.output()}")

    def result(self, task_id: str, timeout: float = 30) -> Any:
        """The task's return value, as the worker stored it in Redis (then removed)."""
        result: AsyncResult[Any] = AsyncResult(task_id, app=celery_app, backend=self.backend)
        try:
            return result.get(timeout=timeout)
        finally:
            result.forget()

    def wait_for(self, probe: Callable[[], T | None], timeout: float = 30) -> T:
        """Poll ``probe`` (a database read) until it returns something."""
        deadline = time.monotonic() + timeout
        while True:
            found = probe()
            if found is not None:
                return found
            if self.process.poll() is not None:
                raise AssertionError(f"celery worker died:\n{self.output()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"nothing after {timeout} s; worker said:\n{self.output()}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # warm shutdown: finish the task in hand
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self._reader.join(timeout=5)
        if self.process.stdout is not None:
            self.process.stdout.close()
        # The session's queue leaves binding keys in Redis; nobody will use them again.
        for key in self.backend.client.scan_iter(match=f"*{self.queue}*"):
            self.backend.client.delete(key)
        self.backend.client.close()


def _test_database_url() -> str:
    # pytest-django has created the test database (test_<name>) and renamed it in the
    # connection settings; the worker gets the same server and credentials, that name.
    parts = urlsplit(os.environ["TEST_DATABASE_URL"])
    return urlunsplit(parts._replace(path="/" + str(connection.settings_dict["NAME"])))


#: The simulated corp's credentials (the corp id gets a per-session suffix).
WECOM_SECRET = "integration-secret-000000000000000000000"
WECOM_TOKEN = "integrationtoken"
WECOM_AES_KEY = "IntegrationKey0123456789abcdefghijklmnopqrs"


@pytest.fixture(scope="session")
def wecom_simulator(_integration_services: None) -> Iterator[Simulator]:
    """A small WeCom corp served from this process for the whole session: 4 staff, 60
    customers, exactly 100 relationships. Tests reset it (see ``wecom``)."""
    sim = Simulator(
        contacts=60,
        staff=4,
        relationships=100,
        seed=11,
        corp_id=f"wwit{uuid.uuid4().hex[:14]}",
        secret=WECOM_SECRET,
        token=WECOM_TOKEN,
        aes_key=WECOM_AES_KEY,
    )
    sim.start()
    try:
        yield sim
    finally:
        sim.stop()


def wecom_env(sim: Simulator) -> dict[str, str]:
    """The settings' environment variables that point a process at ``sim``."""
    return {
        "WECOM_API_BASE": sim.api_base,
        "WECOM_CORP_ID": sim.corp_id,
        "WECOM_SECRET": sim.secret,
        "WECOM_TOKEN": sim.token,
        "WECOM_AES_KEY": sim.aes_key,
    }


@pytest.fixture
def wecom(wecom_simulator: Simulator, settings: Any) -> Simulator:
    """The session's simulator, back to its generated corp, with this process's settings
    pointed at it exactly as the worker's environment is."""
    wecom_simulator.reset()
    wecom_simulator.clear_injections()
    for name, value in wecom_env(wecom_simulator).items():
        setattr(settings, name, value)
    return wecom_simulator


def start_worker(
    *,
    queue: str,
    database_url: str,
    var_dir: str,
    env: dict[str, str],
    extra_args: tuple[str, ...] = (),
) -> Worker:
    """Start a real worker process on ``database_url`` consuming ``queue`` (not yet ready:
    call ``wait_ready``). ``env`` adds to the services' variables (WeCom, settings)."""
    redis_url = _redis_url()
    full_env = {
        **os.environ,
        "DEBUG": "1",
        "DATABASE_URL": database_url,
        "DATABASE_CONN_MAX_AGE": "0",
        "REDIS_URL": redis_url,
        "CELERY_BROKER_URL": redis_url,
        "CELERY_RESULT_BACKEND": redis_url,
        "SCRM_VAR_DIR": var_dir,
        "PYTHONUNBUFFERED": "1",
        **env,
    }
    argv = [
        sys.executable, "-m", "celery", "-A", "scrm", "worker",
        "--pool", "solo",
        "--loglevel", "INFO",
        "--queues", queue,
        "--hostname", f"{queue}@%h",
        "--without-gossip", "--without-mingle", "--without-heartbeat",
        *extra_args,
    ]  # fmt: skip
    process = subprocess.Popen(
        argv,
        cwd=ROOT,
        env=full_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        start_new_session=True,
    )
    return Worker(process, queue, redis_url)


@pytest.fixture(scope="session")
def celery_worker(
    _integration_services: None,
    django_db_setup: None,
    django_db_blocker: Any,
    tmp_path_factory: pytest.TempPathFactory,
    wecom_simulator: Simulator,
) -> Iterator[Worker]:
    """A real worker process on the test database, consuming this session's own queue.

    Depends on ``django_db_setup`` so that it is torn down first: PostgreSQL refuses to
    drop the test database while the worker is still connected to it.
    """
    with django_db_blocker.unblock():
        database_url = _test_database_url()
    queue = f"scrm-it-{uuid.uuid4().hex[:12]}"
    worker = start_worker(
        queue=queue,
        database_url=database_url,
        var_dir=str(tmp_path_factory.mktemp("worker-var")),
        env=wecom_env(wecom_simulator),
    )
    # Tasks sent by this process go to the session's queue (routing reads this setting
    # at send time); restored afterwards so nothing else in the session is affected.
    previous_queue = celery_app.conf.task_default_queue
    celery_app.conf.task_default_queue = queue
    try:
        worker.wait_ready(timeout=60)
        yield worker
    finally:
        celery_app.conf.task_default_queue = previous_queue
        worker.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Show the worker's log under a failing test: that is where the cause usually is."""
    report = yield
    worker = getattr(item, "funcargs", {}).get("celery_worker")
    if report.failed and isinstance(worker, Worker):
        report.sections.append(("celery worker output", worker.output() or "(nothing)"))
    return report
