"""The WeCom client: wechatpy underneath, with the parts wechatpy 1.8.18 gets wrong fixed.

What this adds over ``wechatpy.enterprise.WeChatClient`` (WECOM.md §3):

* every call, ``gettoken`` included, goes to ``settings.WECOM_API_BASE`` (wechatpy
  hard-codes the official host in ``fetch_access_token``), so the simulator works;
* the access token lives in the shared cache (Redis in production) and is refreshed under
  a lock, so fifty workers starting at once make one ``gettoken`` call, not fifty;
* a refused token (40014/42001) is refetched and the call retried once, instead of
  wechatpy's unbounded recursion;
* calls are limited client-side per API (10,000/min, 150,000/h, 5 in flight by default),
  so the corp is never locked out for an hour by its own sync;
* errors are classified (``channels.wecom.errors``) into transient and permanent;
* a full sync makes one call per 100 relationships, so wechatpy's per-call overhead was a
  third of the sync worker's CPU: wechatpy sends through our keep-alive transport
  (``channels.wecom.transport``: the same request on the wire, without requests'
  per-call machinery; a requests session when the environment names a proxy, resolved
  once instead of per call), and answers are read by orjson, with wechatpy's own reading
  for what orjson refuses.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
import requests
from django.conf import settings
from django.core.cache import BaseCache, cache
from wechatpy.enterprise import WeChatClient
from wechatpy.exceptions import WeChatClientException

from channels.wecom.errors import (
    CREDENTIAL_CODES,
    TOKEN_CODES,
    WeComError,
    WeComPermanentError,
    WeComRateLimited,
    WeComTokenError,
    WeComTransientError,
    classify,
)
from channels.wecom.transport import Response, Transport

logger = logging.getLogger(__name__)

#: The API a full sync pages through (its rate limit is the sync's, ``RateLimiter``).
BATCH_GET_BY_USER = "externalcontact/batch/get_by_user"


@dataclass(frozen=True)
class WeComConfig:
    corp_id: str
    secret: str
    api_base: str
    per_minute: int = 10_000
    per_hour: int = 150_000
    max_in_flight: int = 5
    timeout: float = 10.0

    @classmethod
    def from_settings(cls) -> WeComConfig:
        return cls(
            corp_id=settings.WECOM_CORP_ID,
            secret=settings.WECOM_SECRET,
            api_base=settings.WECOM_API_BASE,
            per_minute=settings.WECOM_RATE_PER_MINUTE,
            per_hour=settings.WECOM_RATE_PER_HOUR,
            max_in_flight=settings.WECOM_MAX_IN_FLIGHT,
            timeout=settings.WECOM_TIMEOUT,
        )

    @property
    def key_prefix(self) -> str:
        # Per (corp, secret): each WeCom app has its own token (WECOM.md §0, wechatpy #224).
        digest = hashlib.sha1(f"{self.corp_id}:{self.secret}".encode()).hexdigest()[:12]
        return f"wecom:{self.corp_id}:{digest}"


class TokenStore:
    """The access token in the shared cache, refreshed by one process at a time."""

    #: Refresh this long before WeCom's expiry, so no call carries a token about to die.
    EARLY_REFRESH = 300
    LOCK_TIMEOUT = 15

    def __init__(
        self, config: WeComConfig, http: Transport | requests.Session, store: BaseCache
    ) -> None:
        self.config = config
        self.http = http
        self.cache = store
        self.key = f"{config.key_prefix}:token"
        self.lock_key = f"{config.key_prefix}:token-lock"
        self.fetches = 0

    def get(self) -> str:
        token = self.cache.get(self.key)
        if token:
            return str(token)
        deadline = time.monotonic() + self.LOCK_TIMEOUT
        while time.monotonic() < deadline:
            # cache.add is atomic in Redis (SET NX): exactly one process wins the refresh.
            if self.cache.add(self.lock_key, "1", timeout=self.LOCK_TIMEOUT):
                try:
                    token = self.cache.get(self.key)
                    if not token:
                        token = self._fetch()
                    return str(token)
                finally:
                    self.cache.delete(self.lock_key)
            time.sleep(0.05)
            token = self.cache.get(self.key)
            if token:
                return str(token)
        raise WeComTransientError(None, "timed out waiting for the token refresh lock")

    def invalidate(self, token: str) -> None:
        """Drop ``token`` if it is still the cached one (another process may have already
        replaced it; deleting the new one would cost a needless gettoken)."""
        if self.cache.get(self.key) == token:
            self.cache.delete(self.key)

    def _fetch(self) -> str:
        url = self.config.api_base + "gettoken"
        params = {"corpid": self.config.corp_id, "corpsecret": self.config.secret}
        try:
            response = self.http.get(url, params=params, timeout=self.config.timeout)
        except requests.RequestException as exc:
            raise WeComTransientError(None, f"network error: {exc}", path="gettoken") from exc
        self.fetches += 1
        if response.status_code >= 500:
            raise WeComTransientError(None, f"HTTP {response.status_code}", path="gettoken")
        # Read as every other answer is (either transport's response).
        result = _decode(response.content)
        if not isinstance(result, dict):
            raise WeComTransientError(None, "gettoken answered non-JSON", path="gettoken")
        errcode = int(result.get("errcode", 0) or 0)
        if errcode:
            errmsg = str(result.get("errmsg", ""))
            if errcode in CREDENTIAL_CODES:
                raise WeComPermanentError(errcode, errmsg, path="gettoken")
            raise classify(errcode, errmsg, path="gettoken")
        token = str(result["access_token"])
        expires_in = int(result.get("expires_in") or 7200)
        self.cache.set(self.key, token, timeout=max(60, expires_in - self.EARLY_REFRESH))
        logger.info("fetched a WeCom access token (expires in %ss)", expires_in)
        return token


class RateLimiter:
    """Client-side limits per API path: calls per minute and per hour (fixed windows in the
    shared cache, so every worker counts against the same budget) and calls in flight.

    Over a window's budget the call waits for the next window when that is near (a minute
    window), and raises ``WeComRateLimited`` otherwise, for Celery to retry later.
    """

    IN_FLIGHT_TTL = 120  # a process that died holding a slot frees it within this time

    def __init__(self, config: WeComConfig, store: BaseCache) -> None:
        self.config = config
        self.cache = store
        self.prefix = f"{config.key_prefix}:rl"
        self._local = threading.BoundedSemaphore(config.max_in_flight)
        #: Seconds this limiter has made callers wait for a minute's budget.
        self.waited = 0.0
        #: path -> (minute, calls counted in it) as of this process's last call.
        self._counted: dict[str, tuple[int, int]] = {}

    def _count(self, key: str, timeout: int) -> int:
        self.cache.add(key, 0, timeout=timeout)
        try:
            return int(self.cache.incr(key))
        except ValueError:  # expired between add and incr
            self.cache.set(key, 1, timeout=timeout)
            return 1

    def _admit(self, path: str) -> None:
        while True:
            now = time.time()
            minute, hour = int(now // 60), int(now // 3600)
            per_hour = self._count(f"{self.prefix}:{path}:h:{hour}", 3700)
            if per_hour > self.config.per_hour:
                raise WeComRateLimited(
                    45009, f"client-side limit of {self.config.per_hour}/h reached", path=path
                )
            per_minute = self._count(f"{self.prefix}:{path}:m:{minute}", 70)
            self._counted[path] = (minute, per_minute)
            if per_minute <= self.config.per_minute:
                return
            wait = 60 - (now % 60)
            logger.warning("WeCom %s over %s/min; waiting %.1fs", path, per_minute, wait)
            time.sleep(wait + 0.01)
            self.waited += wait + 0.01

    def wait_ahead(self, path: str) -> float:
        """About how many seconds the next call to ``path`` will wait for a minute's
        budget (0: none), from this process's last call and without a round trip to the
        cache: other processes' calls since are not counted. A caller that has other work
        can do it first (a first sync applies what it downloaded)."""
        now = time.time()
        minute, counted = self._counted.get(path, (-1, 0))
        if minute != int(now // 60) or counted < self.config.per_minute:
            return 0.0
        return 60 - (now % 60)

    @contextlib.contextmanager
    def slot(self, path: str) -> Iterator[None]:
        self._admit(path)
        key = f"{self.prefix}:inflight"
        with self._local:
            deadline = time.monotonic() + 30
            while True:
                if self._count(key, self.IN_FLIGHT_TTL) <= self.config.max_in_flight:
                    break
                self.cache.decr(key)
                if time.monotonic() > deadline:
                    raise WeComRateLimited(None, "too many WeCom calls in flight", path=path)
                time.sleep(0.02)
            try:
                yield
            finally:
                with contextlib.suppress(ValueError):
                    self.cache.decr(key)


def _decode(content: bytes) -> Any:
    """An answer's JSON, as wechatpy reads it (``json.loads(content.decode("utf-8",
    "ignore"), strict=False)``), or None if it is not JSON. orjson reads a page about
    twice as fast; what it refuses and wechatpy's reading takes (control characters in
    strings, bytes that are not UTF-8, NaN, integers past 64 bits) goes the old way."""
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(content.decode("utf-8", "ignore"), strict=False)
    except ValueError:
        return None


class _WechatpyClient(WeChatClient):
    """wechatpy's client with our token source; its own retry is turned off (it recurses
    without bound on a server that keeps answering 42001)."""

    def __init__(self, config: WeComConfig, tokens: TokenStore) -> None:
        super().__init__(config.corp_id, config.secret, timeout=config.timeout, auto_retry=False)
        self.API_BASE_URL = config.api_base
        self._tokens = tokens

    @property
    def access_token(self) -> str:
        return self._tokens.get()

    def fetch_access_token(self) -> dict[str, Any]:
        token = self._tokens.get()
        return {"access_token": token}

    def _decode_result(self, res: Response | requests.Response) -> Any:
        # wechatpy's hook for reading an answer: the response itself when it is not JSON.
        result = _decode(res.content)
        return res if result is None else result


def _transport(api_base: str) -> Transport | requests.Session:
    """Our keep-alive transport to WeCom's host; a requests session when the environment
    names a proxy for it (looked up once: with trust_env on, requests redoes that, and
    looks for a netrc file on disk, on every call)."""
    proxies = requests.utils.get_environ_proxies(api_base)
    if not proxies:
        return Transport(api_base)
    session = requests.Session()
    session.proxies.update(proxies)
    session.trust_env = False
    return session


class WeComClient:
    """One corp's customer-contact API. Thread-safe; cheap to create (state is in the cache)."""

    def __init__(self, config: WeComConfig | None = None, *, store: BaseCache | None = None):
        self.config = config or WeComConfig.from_settings()
        store = store or cache
        self.http = _transport(self.config.api_base)
        self.tokens = TokenStore(self.config, self.http, store)
        self.limiter = RateLimiter(self.config, store)
        self._wechat = _WechatpyClient(self.config, self.tokens)
        self._wechat._http = self.http
        self.calls = 0

    # --- transport ---------------------------------------------------------------------

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return self._call("get", path, params=dict(params or {}))

    def post(self, path: str, data: Mapping[str, Any]) -> dict[str, Any]:
        return self._call("post", path, data=dict(data))

    def _call(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        params = dict(kwargs.pop("params", {}) or {})
        for attempt in (1, 2):
            token = self.tokens.get()
            try:
                with self.limiter.slot(path):
                    self.calls += 1
                    result = self._wechat._request(
                        method, path, params={**params, "access_token": token}, **kwargs
                    )
            except WeChatClientException as exc:
                error = self._translate(exc, path)
                if error.errcode in TOKEN_CODES and attempt == 1:
                    # WeCom may revoke a token early (WECOM.md §1.1): refetch, retry once.
                    self.tokens.invalidate(token)
                    continue
                if error.errcode in TOKEN_CODES:
                    raise WeComTokenError(error.errcode, error.errmsg, path=path) from exc
                raise error from exc
            except requests.RequestException as exc:
                raise WeComTransientError(None, f"network error: {exc}", path=path) from exc
            if not isinstance(result, dict):
                raise WeComTransientError(None, "WeCom answered non-JSON", path=path)
            return result
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _translate(exc: WeChatClientException, path: str) -> WeComError:
        if exc.errcode is None:
            status = getattr(getattr(exc, "response", None), "status_code", None)
            message = f"HTTP {status}" if status else "HTTP error"
            if status is not None and 400 <= status < 500:
                return WeComPermanentError(None, message, path=path)
            return WeComTransientError(None, message, path=path)
        return classify(int(exc.errcode), str(exc.errmsg), path=path)

    # --- customer contact --------------------------------------------------------------

    def follow_users(self) -> list[str]:
        result = self.get("externalcontact/get_follow_user_list")
        return [str(u) for u in result.get("follow_user", [])]

    def contacts_of(self, userid: str) -> list[str]:
        """external_userids of one member; a member with no customers gets 84061 + []
        (WECOM.md §1.3), which is an empty list, not an error."""
        try:
            result = self.get("externalcontact/list", {"userid": userid})
        except WeComError as exc:
            if exc.errcode == 84061:
                return []
            raise
        return [str(u) for u in result.get("external_userid", [])]

    def batch_get_by_user(
        self, userids: list[str], *, cursor: str = "", limit: int = 100
    ) -> dict[str, Any]:
        """One page of (customer, follower) pairs for up to 100 members (WECOM.md §1.5)."""
        if not 1 <= len(userids) <= 100:
            raise ValueError("batch/get_by_user takes 1 to 100 userids")
        return self.post(
            BATCH_GET_BY_USER,
            {"userid_list": userids, "cursor": cursor, "limit": min(limit, 100)},
        )

    def contact(self, external_userid: str) -> dict[str, Any]:
        """A customer with every follower, following ``next_cursor`` past 500 followers."""
        merged: dict[str, Any] = {}
        cursor = ""
        while True:
            params = {"external_userid": external_userid}
            if cursor:
                params["cursor"] = cursor
            page = self.get("externalcontact/get", params)
            if not merged:
                merged = {"external_contact": page.get("external_contact", {}), "follow_user": []}
            merged["follow_user"].extend(page.get("follow_user", []))
            cursor = str(page.get("next_cursor") or "")
            if not cursor:
                return merged

    def corp_tags(self) -> list[dict[str, Any]]:
        return list(self.post("externalcontact/get_corp_tag_list", {}).get("tag_group", []))

    def mark_tag(
        self, *, userid: str, external_userid: str, add: list[str], remove: list[str]
    ) -> None:
        self.post(
            "externalcontact/mark_tag",
            {
                "userid": userid,
                "external_userid": external_userid,
                "add_tag": add,
                "remove_tag": remove,
            },
        )

    def add_contact_way(self, body: Mapping[str, Any]) -> dict[str, Any]:
        return self.post("externalcontact/add_contact_way", body)

    def update_contact_way(self, body: Mapping[str, Any]) -> None:
        self.post("externalcontact/update_contact_way", body)

    def get_contact_way(self, config_id: str) -> dict[str, Any]:
        result = self.post("externalcontact/get_contact_way", {"config_id": config_id})
        return dict(result.get("contact_way", {}))

    def del_contact_way(self, config_id: str) -> None:
        self.post("externalcontact/del_contact_way", {"config_id": config_id})

    def send_welcome_msg(self, body: Mapping[str, Any]) -> None:
        self.post("externalcontact/send_welcome_msg", body)

    # --- OAuth (web sign-in inside WeCom) -----------------------------------------------

    def oauth_userinfo(self, code: str) -> dict[str, Any]:
        """Who opened the page: ``{"userid": ...}`` for a member of the corp, or
        ``{"openid": ..., "external_userid": ...}`` for anyone else. Codes are one-shot
        and live 5 minutes; a used or expired one answers 40029."""
        return self.get("auth/getuserinfo", {"code": code})

    # --- mass messages (WECOM.md §1.9) -------------------------------------------------

    def add_msg_template(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create a mass-message task; the answer holds ``msgid`` and ``fail_list``
        (customers that are not contacts of the sender). Nothing is sent until the
        member confirms in the client."""
        return self.post("externalcontact/add_msg_template", body)

    def groupmsg_list(
        self,
        *,
        start_time: int,
        end_time: int,
        creator: str = "",
        chat_type: str = "single",
        filter_type: int = 2,
        cursor: str = "",
        limit: int = 100,
    ) -> dict[str, Any]:
        """One page of ``get_groupmsg_list_v2`` (range at most a month; ``next_cursor``)."""
        body: dict[str, Any] = {
            "chat_type": chat_type,
            "start_time": start_time,
            "end_time": end_time,
            "filter_type": filter_type,
            "limit": min(limit, 100),
        }
        if creator:
            body["creator"] = creator
        if cursor:
            body["cursor"] = cursor
        return self.post("externalcontact/get_groupmsg_list_v2", body)

    def groupmsg_task(self, msgid: str, cursor: str = "", *, limit: int = 1000) -> dict[str, Any]:
        """One page of ``get_groupmsg_task``: each sender's status (2 = sent) and send_time."""
        body: dict[str, Any] = {"msgid": msgid, "limit": min(limit, 1000)}
        if cursor:
            body["cursor"] = cursor
        return self.post("externalcontact/get_groupmsg_task", body)

    def groupmsg_send_result(
        self, msgid: str, userid: str, cursor: str = "", *, limit: int = 1000
    ) -> dict[str, Any]:
        """One page of ``get_groupmsg_send_result`` for one sender: per customer status
        (0 unsent, 1 sent, 2 not a contact, 3 already received a mass message today)."""
        body: dict[str, Any] = {"msgid": msgid, "userid": userid, "limit": min(limit, 1000)}
        if cursor:
            body["cursor"] = cursor
        return self.post("externalcontact/get_groupmsg_send_result", body)


_default: WeComClient | None = None
_default_lock = threading.Lock()


def get_client() -> WeComClient:
    """The process-wide client for the configured corp (reuses its HTTP connections)."""
    global _default
    config = WeComConfig.from_settings()
    with _default_lock:
        if _default is None or _default.config != config:
            _default = WeComClient(config)
        return _default
