"""The :class:`Simulator`: lifecycle, inspection, fault injection and the control plane.

Tests drive it in-process (``with Simulator(contacts=200) as sim: ...``); benchmarks and
``make run`` drive the same operations over HTTP under ``/__sim__/`` (see
:data:`CONTROL_ROUTES`). The data mutations and callback delivery live in
:mod:`~channels.wecom.simulator.actions`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from channels.wecom.simulator.actions import CorpActions
from channels.wecom.simulator.api import follow_user
from channels.wecom.simulator.data import DEFAULT_STATES, Dataset, DataSpec
from channels.wecom.simulator.emitter import CallbackEmitter
from channels.wecom.simulator.errors import ApiError
from channels.wecom.simulator.server import SimHTTPServer
from channels.wecom.simulator.state import DEFAULT_TOKEN_TTL, DEFAULT_WELCOME_TTL, SimState

#: Used when Django settings are not configured (a bare Python script).
FALLBACK_CREDENTIALS = {
    "corp_id": "wwdemocorp0000001",
    "secret": "demo-contact-secret-0000000000000000000000",
    "token": "demotoken",
    "aes_key": "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C",
}


def _default(name: str) -> str:
    """settings.WECOM_<NAME> when Django is configured, so callbacks decrypt in the app."""
    try:
        from django.conf import settings

        if settings.configured:
            return str(getattr(settings, f"WECOM_{name.upper()}", FALLBACK_CREDENTIALS[name]))
    except ImportError:  # pragma: no cover - Django is a dependency of this project
        pass
    return FALLBACK_CREDENTIALS[name]


class Simulator(CorpActions):
    """A WeCom-compatible server for one corp, plus its control plane.

    Mutations and callback delivery come from :class:`~.actions.CorpActions`.
    """

    def __init__(
        self,
        *,
        contacts: int = 1000,
        staff: int = 10,
        staff_ids: Sequence[str] | None = None,
        seed: int = 1,
        relationships: int | None = None,
        idle_staff: int | None = None,
        groups: int | None = None,
        states: tuple[str, ...] | None = None,
        now: int | None = None,
        corp_id: str | None = None,
        secret: str | None = None,
        token: str | None = None,
        aes_key: str | None = None,
        agent_id: str = "1000002",
        callback_url: str | None = None,
        token_ttl: int = DEFAULT_TOKEN_TTL,
        welcome_ttl: float = DEFAULT_WELCOME_TTL,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        spec = DataSpec(
            seed=seed,
            contacts=contacts,
            # Explicit userids (the demo's staff) set the count.
            staff=len(staff_ids) if staff_ids is not None else staff,
            staff_ids=tuple(staff_ids) if staff_ids is not None else None,
            relationships=relationships,
            idle_staff=idle_staff,
            groups=groups,
            now=now,
            states=tuple(states) if states is not None else DEFAULT_STATES,
        )
        self.dataset = Dataset(spec)
        self.corp_id = corp_id or _default("corp_id")
        self.secret = secret or _default("secret")
        self.token = token or _default("token")
        self.aes_key = aes_key or _default("aes_key")
        self.callback_url = callback_url
        self.emitter = CallbackEmitter(
            corp_id=self.corp_id, token=self.token, aes_key=self.aes_key, agent_id=agent_id
        )
        self.state = SimState(
            self.dataset,
            corp_id=self.corp_id,
            secret=self.secret,
            token_ttl=token_ttl,
            welcome_ttl=welcome_ttl,
        )
        self.host, self.port = host, port
        self._server: SimHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> str:
        """Bind (port 0 = ephemeral), serve in a daemon thread, return the API base URL."""
        if self._server is not None:
            return self.api_base
        self._server = SimHTTPServer((self.host, self.port), self)
        self.port = self._server.server_address[1]
        self.state.public_base = self.base_url
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"wecom-simulator:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self.api_base

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> Simulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    @property
    def api_base(self) -> str:
        """What WECOM_API_BASE should be: ``http://127.0.0.1:PORT/cgi-bin/``."""
        return self.base_url + "cgi-bin/"

    # -- inspection ------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        st = self.state
        with st.lock:
            live = (
                self.dataset.relationship_count
                + sum(len(a) for a in st.added.values())
                - len(st.deleted)
            )
            return {
                "api_base": self.api_base,
                "corp_id": self.corp_id,
                "seed": self.dataset.seed,
                "staff": len(self.dataset.staff_ids),
                "follow_users": len(self.dataset.staff_ids) - len(st.resigned),
                "contacts": st.next_contact,
                "relationships": live,
                "tags": len(st.tags),
                "contact_ways": len(st.contact_ways),
                "group_chats": len(st.chats),
                "callback_url": self.callback_url,
            }

    def relationships(self) -> Iterator[tuple[str, str]]:
        """Every live (external_userid, userid) pair, in the order batch paging serves them."""
        st = self.state
        for s, userid in enumerate(self.dataset.staff_ids):
            for i in st.user_contacts(s):
                yield st.eid(i), userid

    def contact(self, external_userid: str) -> dict[str, Any]:
        """The external_contact and its follows as the API would return them."""
        st = self.state
        with st.lock:
            i = self._contact(external_userid)
            return {
                "external_contact": st.contact_json(i),
                "follow_user": [follow_user(st, st.follow_data(i, s)) for s in st.followers_of(i)],
            }

    def welcome_messages(self) -> list[dict[str, Any]]:
        return list(self.state.welcome_sent)

    def counters(self) -> dict[str, Any]:
        return self.state.counters()

    # -- control: tokens, faults, config ---------------------------------------------

    def reset(self) -> dict[str, Any]:
        self.state.reset()
        return self.stats()

    def reset_counters(self) -> None:
        with self.state.lock:
            self.state.calls.clear()
            self.state.errors.clear()

    def expire_tokens(self) -> int:
        """Every issued token answers 42001 from now on; gettoken mints a new one."""
        return self.state.expire_tokens()

    def set_token_ttl(self, seconds: int) -> None:
        self.state.token_ttl = int(seconds)

    def inject(
        self,
        errcode: int | None = None,
        *,
        count: int | None = 1,
        path: str | None = None,
        http_status: int | None = None,
        delay_ms: int = 0,
    ) -> dict[str, Any]:
        """Answer the next ``count`` calls to ``path`` (None: any API but gettoken; a
        trailing ``*`` matches a prefix) with ``errcode``, an HTTP ``http_status`` or just
        a delay. ``count=None`` lasts until :meth:`clear_injections`."""
        if errcode is None and http_status is None and not delay_ms:
            raise ValueError("give errcode, http_status or delay_ms")
        if http_status is not None and not 400 <= http_status <= 599:
            raise ValueError("http_status must be 4xx/5xx")
        path = path.strip("/") if path else None
        if path and path.startswith("cgi-bin/"):
            path = path[len("cgi-bin/") :]
        rule = self.state.add_rule(
            path=path, errcode=errcode, http_status=http_status, delay_ms=delay_ms, remaining=count
        )
        return rule.as_dict()

    def injections(self) -> list[dict[str, Any]]:
        with self.state.lock:
            return [r.as_dict() for r in self.state.rules]

    def clear_injections(self) -> None:
        with self.state.lock:
            self.state.rules.clear()

    def configure(
        self,
        *,
        callback_url: str | None = None,
        welcome_ttl: float | None = None,
        token_ttl: int | None = None,
        groupmsg_auto_confirm: bool | None = None,
        mark_tag_hold_ms: int | None = None,
    ) -> dict[str, Any]:
        st = self.state
        if callback_url is not None:
            self.callback_url = callback_url or None
        if welcome_ttl is not None:
            st.welcome_ttl = float(welcome_ttl)
        if token_ttl is not None:
            st.token_ttl = int(token_ttl)
        if groupmsg_auto_confirm is not None:
            st.groupmsg_auto_confirm = bool(groupmsg_auto_confirm)
        if mark_tag_hold_ms is not None:
            st.mark_tag_hold = mark_tag_hold_ms / 1000
        return {
            "callback_url": self.callback_url,
            "welcome_ttl": st.welcome_ttl,
            "token_ttl": st.token_ttl,
            "groupmsg_auto_confirm": st.groupmsg_auto_confirm,
            "mark_tag_hold_ms": int(st.mark_tag_hold * 1000),
        }

    # -- the HTTP control plane ------------------------------------------------------

    def control_request(
        self, method: str, path: str, query: dict[str, str], raw: bytes
    ) -> tuple[int, dict[str, Any]]:
        """Serve ``/__sim__/<path>``: JSON in (body, or the query for GET), JSON out."""
        route = CONTROL_ROUTES.get(path)
        if route is None:
            return 404, {"ok": False, "error": f"no control endpoint {path!r}"}
        verb, attr = route
        if method != verb:
            return 405, {"ok": False, "error": f"use {verb}"}
        try:
            kwargs: Any = json.loads(raw) if raw.strip() else dict(query)
            if not isinstance(kwargs, dict):
                raise ValueError("the body must be a JSON object")
            result = getattr(self, attr)(**kwargs)
        except (TypeError, ValueError, KeyError, ApiError) as exc:
            return 400, {"ok": False, "error": str(exc)}
        if result is None:
            result = {}
        elif not isinstance(result, dict):
            result = {"result": result}
        return 200, {"ok": True, **result}

    def _control_health(self) -> dict[str, Any]:
        return self.stats()

    def _control_oauth_code(self, userid: str) -> dict[str, Any]:
        return {"code": self.mint_oauth_code(userid)}

    def _control_welcome_code(self, userid: str, external_userid: str) -> dict[str, Any]:
        return {"welcome_code": self.mint_welcome_code(userid, external_userid)}

    def _control_injections(self) -> dict[str, Any]:
        return {"rules": self.injections()}

    def _control_welcome_messages(self) -> dict[str, Any]:
        return {"messages": self.welcome_messages()}

    def _control_expire_tokens(self) -> dict[str, Any]:
        return {"expired": self.expire_tokens()}


#: ``/__sim__/<path>`` -> (HTTP method, Simulator attribute). POST bodies are the kwargs.
CONTROL_ROUTES: dict[str, tuple[str, str]] = {
    "health": ("GET", "_control_health"),
    "counters": ("GET", "counters"),
    "counters/reset": ("POST", "reset_counters"),
    "reset": ("POST", "reset"),
    "config": ("POST", "configure"),
    "tokens/expire": ("POST", "_control_expire_tokens"),
    "tokens/ttl": ("POST", "set_token_ttl"),
    "inject": ("POST", "inject"),
    "inject/list": ("GET", "_control_injections"),
    "inject/clear": ("POST", "clear_injections"),
    "contacts/add": ("POST", "add_contact"),
    "contacts/get": ("GET", "contact"),
    "follows/delete": ("POST", "delete_follow"),
    "follows/edit": ("POST", "edit_follow"),
    "tags/create": ("POST", "create_tag"),
    "tags/update": ("POST", "update_tag"),
    "tags/delete": ("POST", "delete_tag"),
    "tags/shuffle": ("POST", "shuffle_tags"),
    "chats/event": ("POST", "chat_event"),
    "staff/resign": ("POST", "resign_staff"),
    "transfers/complete": ("POST", "complete_transfers"),
    "groupmsg/confirm": ("POST", "confirm_groupmsg"),
    "oauth/code": ("POST", "_control_oauth_code"),
    "welcome_code": ("POST", "_control_welcome_code"),
    "welcome_messages": ("GET", "_control_welcome_messages"),
    "callback/emit": ("POST", "emit_event"),
    "callback/verify": ("POST", "verify_callback"),
}
