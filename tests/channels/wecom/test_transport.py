"""The keep-alive transport under wechatpy (``channels.wecom.transport``): connections are
reused and a closed one is replaced without a failed call, encoded answers are decoded,
failures are requests' exceptions, and a proxy in the environment keeps requests."""

from __future__ import annotations

import gzip
import http.client
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests

from channels.wecom.client import _transport
from channels.wecom.errors import WeComTransientError
from channels.wecom.transport import Transport, _decoded, _still_open
from tests.channels.wecom_support import QuietHandler, new_client, serving


@dataclass
class Server:
    base: str
    #: client ports seen, one per request: the same port again is a reused connection
    ports: list[int] = field(default_factory=list)
    #: (status, headers, body) of the next answers; then a plain JSON ok
    answers: list[tuple[int, dict[str, str], bytes]] = field(default_factory=list)
    #: close each connection after answering, without saying so (a server's idle timeout)
    drop_after_answer: bool = False
    delay: float = 0.0


@pytest.fixture
def server() -> Iterator[Server]:
    state: Server
    answered = threading.Event()

    class Handler(QuietHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            state.ports.append(self.client_address[1])
            if state.delay:
                answered.wait(state.delay)
            if state.answers:
                status, headers, body = state.answers.pop(0)
            else:
                status, headers, body = 200, {}, b'{"errcode": 0, "errmsg": "ok"}'
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
            if state.drop_after_answer:
                self.close_connection = True

        do_GET = do_POST = _answer

    with serving(Handler) as httpd:
        state = Server(base=f"http://127.0.0.1:{httpd.server_port}/cgi-bin/")
        yield state
        answered.set()  # a delayed answer still pending must not hold the shutdown up


def test_connections_are_kept_alive(server: Server) -> None:
    transport = Transport(server.base)
    for _ in range(5):
        answer = transport.request("POST", server.base + "x", data=b"{}", timeout=5)
        assert answer.status_code == 200 and answer.json()["errcode"] == 0
    assert len(server.ports) == 5
    assert len(set(server.ports)) == 1


def test_a_connection_the_server_closed_is_replaced_before_sending(server: Server) -> None:
    transport = Transport(server.base)
    server.drop_after_answer = True
    for _ in range(3):
        # The server hung up after each answer (an idle timeout); the next call, once the
        # close has arrived, must not be sent on the dead connection.
        assert transport.request("GET", server.base + "x", timeout=5).status_code == 200
        time.sleep(0.2)
    assert len(set(server.ports)) == 3


def test_threads_share_the_pool(server: Server) -> None:
    transport = Transport(server.base)
    errors: list[BaseException] = []

    def calls() -> None:
        try:
            for _ in range(20):
                assert transport.request("GET", server.base + "x", timeout=5).status_code == 200
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=calls) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(server.ports) == 80
    assert len(set(server.ports)) <= 4  # at most one connection per thread at a time


@pytest.mark.parametrize(
    ("coding", "encode"),
    [
        ("gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("deflate", lambda b: zlib.compress(b)[2:-4]),  # raw deflate, no zlib header
        ("identity", lambda b: b),
    ],
)
def test_encoded_answers_are_decoded(server: Server, coding: str, encode: Any) -> None:
    body = '{"errcode": 0, "name": "张三"}'.encode()
    server.answers = [(200, {"Content-Encoding": coding}, encode(body))]
    client = new_client(server.base)
    client.tokens.cache.set(client.tokens.key, "TOKEN1")
    assert client.get("externalcontact/get") == {"errcode": 0, "name": "张三"}


def test_a_body_that_does_not_decode_is_transient(server: Server) -> None:
    server.answers = [(200, {"Content-Encoding": "gzip"}, b"not gzip")]
    client = new_client(server.base)
    client.tokens.cache.set(client.tokens.key, "TOKEN1")
    with pytest.raises(WeComTransientError, match="network error"):
        client.get("externalcontact/get")
    # The connection was dropped with the bad answer; the next call goes through.
    assert client.get("externalcontact/get")["errcode"] == 0


def test_a_slow_answer_times_out_as_requests_does(server: Server) -> None:
    server.delay = 2
    with pytest.raises(requests.Timeout):
        Transport(server.base).request("GET", server.base + "x", timeout=0.2)


def test_a_refused_connection_is_a_connection_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    base = f"http://127.0.0.1:{port}/cgi-bin/"
    with pytest.raises(requests.ConnectionError):
        Transport(base).request("GET", base + "x", timeout=2)


def test_an_error_status_raises_requests_http_error(server: Server) -> None:
    server.answers = [(502, {}, b"bad gateway")]
    answer = Transport(server.base).request("GET", server.base + "x", timeout=5)
    with pytest.raises(requests.HTTPError) as raised:
        answer.raise_for_status()
    assert raised.value.response is answer
    assert "502 Server Error" in str(raised.value)


def test_only_the_api_host_is_spoken_to(server: Server) -> None:
    with pytest.raises(ValueError, match="not on"):
        Transport(server.base).request("GET", "http://example.com/x", timeout=1)
    with pytest.raises(ValueError, match="not an http"):
        Transport("ftp://example.com/")


def test_tls_verifies_the_server_as_requests_does() -> None:
    transport = Transport("https://qyapi.weixin.qq.com/cgi-bin/")
    assert transport.port == 443
    assert transport._tls is not None
    assert transport._tls.verify_mode == ssl.CERT_REQUIRED
    assert transport._tls.check_hostname


def test_a_proxy_in_the_environment_keeps_requests(monkeypatch) -> None:
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:3128")
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:3128")
    assert isinstance(_transport("http://wecom.invalid/cgi-bin/"), requests.Session)
    monkeypatch.setenv("NO_PROXY", "wecom.invalid")
    monkeypatch.setenv("no_proxy", "wecom.invalid")
    assert isinstance(_transport("http://wecom.invalid/cgi-bin/"), Transport)


def test_an_empty_encoded_body_is_empty() -> None:
    assert _decoded(b"", "gzip") == b""
    assert _decoded(b"", "deflate") == b""


def test_a_closed_peer_is_seen_on_an_idle_connection() -> None:
    ours, theirs = socket.socketpair()
    conn = http.client.HTTPConnection("127.0.0.1")
    conn.sock = ours
    try:
        assert _still_open(conn)
        theirs.close()
        assert not _still_open(conn)
    finally:
        ours.close()
