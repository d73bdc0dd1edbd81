"""The HTTP transport under wechatpy: what it needs of a ``requests.Session`` (``request``
and ``get``), on keep-alive ``http.client`` connections.

A full sync makes one call per 100 relationships, and requests + urllib3 spent about
1.1 ms of the worker's CPU on each (preparing the request, merging session settings,
hooks, adapters, header objects): at a million relationships, 11 CPU-seconds of a
process that writes on two threads under one GIL. Through this transport a page costs
the client 0.6-0.8 ms instead of 1.8-1.9 ms, the page's JSON included (a bare
``http.client`` loop: 0.5-0.7 ms), for the same request: method, URL, query, body and
headers (``tests/channels/wecom/test_client.py`` compares them with plain wechatpy's).

It speaks to the API host directly. With a proxy in the environment, the client keeps a
``requests.Session`` instead (``WeComClient``): tunnels and proxy authentication are
requests' business. Failures raise requests' exceptions, so that wechatpy and the client
classify them as before: ``requests.ConnectionError`` / ``Timeout`` (transient), and
``requests.HTTPError`` from ``Response.raise_for_status`` for a 4xx/5xx answer.
"""

from __future__ import annotations

import http.client
import select
import ssl
import threading
import zlib
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit

import certifi
import orjson
import requests
import requests.utils

#: Idle connections kept per transport: calls in flight are capped by the rate limiter
#: (5 by default), so more than that would only be connections nobody reuses.
MAX_IDLE = 8

Connection = http.client.HTTPConnection


class Response:
    """The part of ``requests.Response`` that wechatpy and the client read."""

    request = None  # requests.HTTPError looks for it

    def __init__(self, url: str, status_code: int, reason: str, headers: Any, content: bytes):
        self.url = url
        self.status_code = status_code
        self.reason = reason
        self.headers = headers
        self.content = content

    def json(self) -> Any:
        """As ``requests.Response.json``, so that this stands in for one wherever an answer
        is read so. Our client reads ``content`` with ``client._decode`` instead, and
        replaces wechatpy's token fetch, the one wechatpy path that calls this."""
        try:
            return orjson.loads(self.content)
        except orjson.JSONDecodeError as exc:
            raise ValueError(str(exc)) from exc

    def raise_for_status(self) -> None:
        if 400 <= self.status_code < 600:
            kind = "Client" if self.status_code < 500 else "Server"
            raise requests.HTTPError(
                f"{self.status_code} {kind} Error: {self.reason} for url: {self.url}",
                response=self,
            )


class Transport:
    """Keep-alive connections to one API host, shared by threads (a small pool)."""

    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        tls = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if tls else 80)
        # requests verifies against certifi's bundle (trust_env is off in the client).
        self._tls = ssl.create_default_context(cafile=certifi.where()) if tls else None
        # Exactly the headers requests sends, in its order.
        self.headers = dict(requests.utils.default_headers())
        self._idle: list[Connection] = []
        self._lock = threading.Lock()

    def get(self, url: str, params: Mapping[str, Any] | None = None, **kwargs: Any) -> Response:
        return self.request("GET", url, params=params, **kwargs)

    def request(
        self,
        method: str,
        url: str,
        params: Mapping[str, Any] | None = None,
        data: bytes | str | None = None,
        timeout: float | None = None,
    ) -> Response:
        method = method.upper()
        target = self._target(url, params)
        body = data.encode("utf-8") if isinstance(data, str) else data
        headers = dict(self.headers)
        if body is not None or method in ("POST", "PUT", "PATCH"):
            headers["Content-Length"] = str(len(body or b""))
        conn = self._take(timeout)
        try:
            conn.request(method, target, body=body, headers=headers)
            answer = conn.getresponse()
            content = _decoded(answer.read(), answer.getheader("Content-Encoding"))
        except TimeoutError as exc:
            conn.close()
            raise requests.Timeout(f"{method} {url}: timed out") from exc
        except zlib.error as exc:
            conn.close()
            raise requests.exceptions.ContentDecodingError(f"{method} {url}: {exc}") from exc
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise requests.ConnectionError(f"{method} {url}: {exc!r}") from exc
        if answer.will_close:
            conn.close()
        else:
            self._give_back(conn)
        return Response(url, answer.status, answer.reason, answer.headers, content)

    # --- connections ---------------------------------------------------------------------

    def _target(self, url: str, params: Mapping[str, Any] | None) -> str:
        parts = urlsplit(url)
        if parts.hostname != self.host or (parts.port or self.port) != self.port:
            raise ValueError(f"{url} is not on {self.host}:{self.port}")
        target = parts.path or "/"
        # As requests encodes params: None values left out, sequences repeated.
        query = urlencode([(k, v) for k, v in (params or {}).items() if v is not None], doseq=True)
        query = "&".join(q for q in (parts.query, query) if q)
        return f"{target}?{query}" if query else target

    def _take(self, timeout: float | None) -> Connection:
        while True:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                break
            if _still_open(conn):
                conn.timeout = timeout
                if conn.sock is not None:
                    conn.sock.settimeout(timeout)
                return conn
            conn.close()  # the server closed it while idle: never send on it
        if self._tls is not None:
            return http.client.HTTPSConnection(
                self.host, self.port, timeout=timeout, context=self._tls
            )
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)

    def _give_back(self, conn: Connection) -> None:
        with self._lock:
            if len(self._idle) < MAX_IDLE:
                self._idle.append(conn)
                return
        conn.close()


def _still_open(conn: Connection) -> bool:
    """An idle keep-alive connection is usable while its socket has nothing to read: a
    readable idle socket is the server's close (or stray bytes), as urllib3 checks. With
    poll where there is one: select refuses descriptors past 1024, which would drop every
    connection of a process with many files open."""
    sock = conn.sock
    if sock is None:
        return False
    try:
        if hasattr(select, "poll"):
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            return not poller.poll(0)
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return False
    return not readable


def _decoded(content: bytes, encoding: str | None) -> bytes:
    """The body without its Content-Encoding (requests advertises gzip and deflate)."""
    coding = (encoding or "").strip().lower()
    if coding in ("", "identity") or not content:  # an empty body has nothing to decode
        return content
    if coding in ("gzip", "x-gzip"):
        return zlib.decompress(content, 16 + zlib.MAX_WBITS)
    if coding == "deflate":
        # Servers send zlib-wrapped or raw deflate under this name; urllib3 takes both.
        try:
            return zlib.decompress(content)
        except zlib.error:
            return zlib.decompress(content, -zlib.MAX_WBITS)
    raise http.client.HTTPException(f"unsupported Content-Encoding {encoding!r}")
