"""Fixtures and helpers shared by the WeCom callback and welcome tests (no tests here).

The app is pointed at a running simulator (API base, corp id, secret, callback token and
AES key), tokens go to a fresh LocMemCache, and events are POSTed through Django's test
client exactly as WeCom would send them: built with the simulator's XML helpers,
encrypted and signed by its emitter (our crypto underneath).
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlencode

from django.core.cache.backends.locmem import LocMemCache
from django.test import Client
from django.urls import reverse

from channels.models import WeComEvent
from channels.tasks import process_wecom_event
from channels.wecom.client import WeComClient, WeComConfig
from channels.wecom.simulator import Simulator
from channels.wecom.simulator.emitter import CallbackEmitter

CORP_ID = "wwcallbacks000001"
SECRET = "callback-test-secret-00000000000000000000"
TOKEN = "cbtesttoken"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"


@dataclass
class WeCom:
    """The simulator plus what a test needs to talk to our callback view."""

    sim: Simulator
    emitter: CallbackEmitter
    http: Client
    capture: Any  # pytest-django's django_capture_on_commit_callbacks

    @property
    def url(self) -> str:
        return reverse("wecom-callback")

    @property
    def staff(self) -> list[str]:
        return list(self.sim.dataset.staff_ids)

    def post_sealed(self, body: str, params: dict[str, str]) -> tuple[Any, list[Any]]:
        """POST a sealed body; returns the response and the on-commit callbacks it left."""
        with self.capture(execute=False) as callbacks:
            response = self.http.post(
                f"{self.url}?{urlencode(params)}", data=body, content_type="text/xml"
            )
        return response, list(callbacks)

    def post(self, xml: str, **seal: Any) -> Any:
        body, params = self.emitter.seal(xml, **seal)
        return self.post_sealed(body, params)[0]

    def deliver(self, xml: str) -> WeComEvent:
        """POST an event like WeCom does and return the row it recorded."""
        body, params = self.emitter.seal(xml)
        response, callbacks = self.post_sealed(body, params)
        assert response.status_code == 200, response.content
        assert response.content == b""
        assert len(callbacks) == 1, "a new event is enqueued once, after commit"
        return WeComEvent.objects.latest("pk")

    def process(self, event: WeComEvent) -> WeComEvent:
        """Run the processing task as a worker would (eagerly, retries included)."""
        process_wecom_event.apply(args=[event.pk])
        event.refresh_from_db()
        return event

    def handle(self, xml: str) -> WeComEvent:
        return self.process(self.deliver(xml))


def make_sim(**options: Any) -> Simulator:
    options.setdefault("contacts", 40)
    options.setdefault("staff", 4)
    options.setdefault("seed", 7)
    return Simulator(corp_id=CORP_ID, secret=SECRET, token=TOKEN, aes_key=AES_KEY, **options)


def point_app_at(settings: Any, sim: Simulator) -> None:
    """Point the app (get_client(), the callback view) at ``sim``'s corp, with a token
    cache of this test's own."""
    settings.WECOM_API_BASE = sim.api_base
    settings.WECOM_CORP_ID = sim.corp_id
    settings.WECOM_SECRET = sim.secret
    settings.WECOM_TOKEN = sim.token
    settings.WECOM_AES_KEY = sim.aes_key
    # Tokens and rate-limit counters of this test only (get_client() caches a client per
    # configuration, but its store is the default cache, resolved on each use).
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": f"wecom-{uuid.uuid4().hex}",
        }
    }


@contextlib.contextmanager
def running_agent_sim(settings: Any) -> Iterator[Simulator]:
    """A small simulator with the app pointed at it and an agent id: what the JS-SDK
    signature (jsapi, the chat sidebar) needs."""
    with make_sim(contacts=4, staff=1) as sim:
        point_app_at(settings, sim)
        settings.WECOM_AGENT_ID = "1000002"
        yield sim


@contextlib.contextmanager
def running_wecom(settings: Any, capture: Any, **sim_options: Any) -> Iterator[WeCom]:
    """A started simulator with the app pointed at it: the body of each test module's
    ``wecom`` fixture (fixtures imported across modules would shadow each other)."""
    with make_sim(**sim_options) as sim:
        point_app_at(settings, sim)
        yield WeCom(
            sim=sim,
            emitter=CallbackEmitter(corp_id=CORP_ID, token=TOKEN, aes_key=AES_KEY),
            http=Client(),
            capture=capture,
        )


def new_client(api_base: str, corp_id: str = "wwcorp", secret: str = "s3cret") -> WeComClient:
    """A client of this corp with a cache of its own (tokens and rate limits not shared
    with any other test)."""
    config = WeComConfig(corp_id=corp_id, secret=secret, api_base=api_base)
    return WeComClient(config, store=LocMemCache(f"client-{uuid.uuid4().hex}", {}))


def sim_client(sim: Simulator) -> WeComClient:
    """``new_client`` for the simulator's corp."""
    return new_client(sim.api_base, sim.corp_id, sim.secret)


class QuietHandler(BaseHTTPRequestHandler):
    """A keep-alive (HTTP/1.1) request handler that logs nothing."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass


@contextlib.contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[ThreadingHTTPServer]:
    """A threaded HTTP server with ``handler`` on a free port of 127.0.0.1, for the block."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
