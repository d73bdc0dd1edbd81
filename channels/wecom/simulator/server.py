"""The simulator's HTTP front: WeCom's ``/cgi-bin/`` API, the ``/__sim__/`` control plane,
and the images and OAuth page behind the URLs the API hands out.

Built on ``http.server`` with HTTP/1.1 keep-alive and Nagle disabled: a sync benchmark
pages through a million relationships over one connection, and per-request connection
setup or 40 ms delayed ACKs would dominate the measurement.
"""

from __future__ import annotations

import html
import json
import logging
import socket
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from channels.wecom.simulator import api, api_business, api_misc
from channels.wecom.simulator.api import RawJSON, Request, Route
from channels.wecom.simulator.errors import ApiError, error_body
from channels.wecom.simulator.images import avatar_png, qr_png

if TYPE_CHECKING:
    from channels.wecom.simulator.control import Simulator

logger = logging.getLogger(__name__)

ROUTES: dict[str, Route] = {**api.ROUTES, **api_business.ROUTES, **api_misc.ROUTES}
JSON_TYPE = "application/json; charset=UTF-8"
MAX_BODY = 8 * 1024 * 1024


class SimHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    # Each test binds an ephemeral port; reuse keeps restarts of `make run` painless.
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], sim: Simulator) -> None:
        self.sim = sim
        super().__init__(address, SimRequestHandler)


class SimRequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "WeComSimulator/1.0"
    disable_nagle_algorithm = True
    server: SimHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s " + format, self.client_address[0], *args)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    # -- plumbing --------------------------------------------------------------------

    def setup(self) -> None:
        super().setup()
        # A page of 100 contacts is ~40 KB; a send buffer that holds it whole lets the
        # response leave in one sendall instead of waiting on the client's reads.
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)

    def _send(self, status: int, body: bytes, content_type: str, **headers: str) -> None:
        # Status line, headers and body go out in one write: separate small writes cost
        # a wake-up each, which shows when a benchmark fetches thousands of pages.
        lines = [
            f"HTTP/1.1 {status} {self.responses.get(status, ('',))[0]}",
            f"Server: {self.server_version}",
            f"Date: {self.date_time_string()}",
            f"Content-Type: {content_type}",
            f"Content-Length: {len(body)}",
        ]
        lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.wfile.write(head + body)

    def _send_json(self, payload: dict[str, Any], status: int = 200) -> None:
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        self._send(status, body, JSON_TYPE)

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise ValueError("body too large")
        return self.rfile.read(length) if length > 0 else b""

    def _handle(self, method: str) -> None:
        url = urlsplit(self.path)
        query = dict(parse_qsl(url.query, keep_blank_values=True))
        try:
            raw = self._read_body()
        except ValueError:
            self.close_connection = True
            self._send(413, b"body too large", "text/plain")
            return
        path = url.path
        if path.startswith("/cgi-bin/"):
            self._api(method, path[len("/cgi-bin/") :].strip("/"), query, raw)
        elif path.startswith("/__sim__/"):
            status, payload = self.server.sim.control_request(
                method, path[len("/__sim__/") :].strip("/"), query, raw
            )
            self._send_json(payload, status)
        elif path.startswith("/qr/") and path.endswith(".png"):
            self._send(200, qr_png(path[4:-4]), "image/png", Cache_Control="max-age=86400")
        elif path.startswith("/avatar/") and path.endswith(".png"):
            self._send(200, avatar_png(path[8:-4]), "image/png", Cache_Control="max-age=86400")
        elif path == "/connect/oauth2/authorize":
            self._oauth_authorize(query)
        else:
            self._send(404, b"not found", "text/plain")

    # -- cgi-bin ---------------------------------------------------------------------

    def _api(self, method: str, name: str, query: dict[str, str], raw: bytes) -> None:
        state = self.server.sim.state
        ip = self.client_address[0]
        rule = state.take_rule(name)
        if rule is not None:
            if rule.delay_ms:
                time.sleep(rule.delay_ms / 1000)
            if rule.http_status:
                state.count(name, rule.http_status)
                # A gateway error page, not JSON: clients must survive both.
                text = f"<html><body><h1>{rule.http_status} Server Error</h1></body></html>"
                self._send(rule.http_status, text.encode(), "text/html")
                return
            if rule.errcode is not None:
                state.count(name, rule.errcode)
                # Same text as a real one: clients must not be able to tell the difference.
                self._send_json(error_body(rule.errcode, name, "", ip))
                return
        route = ROUTES.get(name)
        if route is None:
            state.count(name, 404)
            self._send(404, f"simulator: no API {name!r}".encode(), "text/plain")
            return
        try:
            if name != "gettoken":
                state.check_token(query.get("access_token"))
            body: Any = {}
            if raw.strip():
                # wechatpy sends no Content-Type: parse JSON whatever the header says.
                try:
                    body = json.loads(raw)
                except ValueError:
                    raise ApiError(47001) from None
                if not isinstance(body, dict):
                    raise ApiError(47001)
            if route.post and method != "POST":
                raise ApiError(43002)
            req = Request(method, name, query, body, ip)
            if route.locked:
                with state.lock:
                    payload = route.handler(state, req)
            else:
                payload = route.handler(state, req)
        except ApiError as exc:
            state.count(name, exc.errcode)
            self._send_json(error_body(exc.errcode, name, exc.detail, ip, **exc.extra))
            return
        except Exception:  # a simulator bug: answer like WeCom's "system busy", log it
            logger.error("simulator error on %s\n%s", name, traceback.format_exc())
            state.count(name, -1)
            self._send_json(error_body(-1, name, "simulator error", ip))
            return
        state.count(name, 0)
        if isinstance(payload, RawJSON):
            self._send(200, payload.encode("utf-8"), JSON_TYPE)
        else:
            self._send_json({"errcode": 0, "errmsg": "ok", **payload})
        if req.after is not None:
            try:
                req.after()
            except Exception:  # a failed prefetch only costs the next request its shortcut
                logger.error("simulator after-hook failed\n%s", traceback.format_exc())

    # -- OAuth -----------------------------------------------------------------------

    def _oauth_authorize(self, query: dict[str, str]) -> None:
        """Stand-in for open.weixin.qq.com's authorize page.

        With ``userid=`` (a simulator extension) it redirects at once with a fresh code;
        without, it shows a page to pick which staff member "opens" the link.
        """
        sim = self.server.sim
        redirect_uri = query.get("redirect_uri", "")
        if query.get("appid") != sim.corp_id or not redirect_uri.startswith(
            ("http://", "https://")
        ):
            self._send(400, b"invalid appid or redirect_uri", "text/plain")
            return
        userid = query.get("userid")
        if userid:
            code = sim.mint_oauth_code(userid)
            parts = urlsplit(redirect_uri)
            extra = urlencode({"code": code, "state": query.get("state", "")})
            joined = f"{parts.query}&{extra}" if parts.query else extra
            location = urlunsplit((parts.scheme, parts.netloc, parts.path, joined, ""))
            self._send(302, b"", "text/plain", Location=location)
            return
        links = []
        ids, names = sim.dataset.staff_ids, sim.dataset.staff_names
        for s in range(min(50, len(ids))):
            target = "?" + urlencode({**query, "userid": ids[s]})
            links.append(
                f'<li><a href="{html.escape(target)}">{html.escape(names[s])} ({ids[s]})</a></li>'
            )
        page = (
            "<!doctype html><meta charset=utf-8><title>WeCom simulator login</title>"
            "<h1>Open as which staff member?</h1><ul>" + "".join(links) + "</ul>"
        )
        self._send(200, page.encode(), "text/html; charset=utf-8")
