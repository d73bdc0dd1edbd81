"""Fixtures for the WeCom simulator tests: a running simulator, a wechatpy client pointed
at it (WECOM.md §3.1), and a tiny callback receiver that decrypts with our crypto and
with wechatpy's."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from wechatpy.enterprise import WeChatClient
from wechatpy.enterprise.crypto import WeChatCrypto

from channels.wecom.crypto import WeComCryptoError, WXBizMsgCrypt
from channels.wecom.simulator import Simulator

CORP_ID = "wwtestcorp000001"
SECRET = "test-contact-secret-000000000000000000000"
TOKEN = "testtoken"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"


def make_client(sim: Simulator, **kwargs: Any) -> WeChatClient:
    """wechatpy's client, with gettoken fixed to use the simulator too (its base URL
    override alone still sends gettoken to the real host)."""

    class LocalWeComClient(WeChatClient):
        API_BASE_URL = sim.api_base

        def fetch_access_token(self) -> dict[str, Any]:
            return self._fetch_access_token(
                url=self.API_BASE_URL + "gettoken",
                params={"corpid": self.corp_id, "corpsecret": self.secret},
            )

    return LocalWeComClient(sim.corp_id, sim.secret, **kwargs)


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(
        contacts=300,
        staff=6,
        seed=11,
        corp_id=CORP_ID,
        secret=SECRET,
        token=TOKEN,
        aes_key=AES_KEY,
        welcome_ttl=1.0,
    ) as running:
        yield running


@pytest.fixture
def client(sim: Simulator) -> WeChatClient:
    return make_client(sim)


@pytest.fixture
def http() -> Iterator[requests.Session]:
    session = requests.Session()
    session.trust_env = False  # never route 127.0.0.1 through an environment proxy
    yield session
    session.close()


@dataclass
class Received:
    method: str
    query: dict[str, str]
    body: str
    ours: str | None = None
    ours_error: str | None = None
    wechatpy: str | None = None
    wechatpy_error: str | None = None


@dataclass
class Receiver:
    url: str
    requests: list[Received] = field(default_factory=list)
    event: threading.Event = field(default_factory=threading.Event)

    def wait(self, count: int = 1, timeout: float = 5.0) -> list[Received]:
        for _ in range(int(timeout * 100)):
            if len(self.requests) >= count:
                break
            self.event.wait(0.01)
        return self.requests


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A callback endpoint on 127.0.0.1: answers like a correct callback view."""
    ours = WXBizMsgCrypt(TOKEN, AES_KEY, CORP_ID)
    theirs = WeChatCrypto(TOKEN, AES_KEY, CORP_ID)
    log: list[Received] = []
    done = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _answer(self, status: int, text: str) -> None:
            body = text.encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _record(self, method: str, body: str) -> Received:
            query = {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}
            rec = Received(method, query, body)
            sig, ts, nonce = (query.get(k, "") for k in ("msg_signature", "timestamp", "nonce"))
            try:
                if method == "GET":
                    rec.ours = ours.verify_url(sig, ts, nonce, query.get("echostr", ""))
                else:
                    rec.ours = ours.decrypt_message(body, sig, ts, nonce)
            except WeComCryptoError as exc:
                rec.ours_error = type(exc).__name__
            try:
                if method == "GET":
                    rec.wechatpy = theirs.check_signature(sig, ts, nonce, query.get("echostr", ""))
                else:
                    rec.wechatpy = theirs.decrypt_message(body, sig, ts, nonce)
            except Exception as exc:  # wechatpy raises several unrelated types
                rec.wechatpy_error = type(exc).__name__
            log.append(rec)
            done.set()
            return rec

        def do_GET(self) -> None:
            rec = self._record("GET", "")
            if rec.ours is None:
                self._answer(400, rec.ours_error or "error")
            else:
                self._answer(200, rec.ours)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            rec = self._record("POST", self.rfile.read(length).decode())
            self._answer(400 if rec.ours is None else 200, rec.ours_error or "")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield Receiver(f"http://127.0.0.1:{server.server_address[1]}/wecom/callback", log, done)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
