"""The WeCom JS-SDK ``agentConfig`` signature, for pages opened inside the WeCom client
(the chat sidebar, /m/sidebar/).

``wx.agentConfig`` needs the app's jsapi ticket (``ticket/get?type=agent_config``, not the
corp's ``get_jsapi_ticket``, which only signs ``wx.config``). The ticket lives 7,200 s and
WeCom limits how often it may be fetched, so it is kept in the shared cache per corp and
app secret (like the access token in :mod:`channels.wecom.client`), dropped a few minutes
before WeCom's expiry, and refreshed under a cache lock: a burst of sidebar opens makes
one ``ticket/get`` call, not one per request.
"""

from __future__ import annotations

import secrets
import time
from typing import Any
from urllib.parse import urldefrag

from django.conf import settings
from django.core.cache import cache
from wechatpy.utils import WeChatSigner

from channels.wecom.client import WeComConfig, get_client
from channels.wecom.errors import WeComTransientError

#: Drop the cached ticket this long before WeCom's expiry, so no page signs with a ticket
#: that dies while the user is on it.
EARLY_REFRESH = 300
LOCK_TIMEOUT = 15


def _keys() -> tuple[str, str]:
    prefix = WeComConfig.from_settings().key_prefix
    return f"{prefix}:agent-ticket", f"{prefix}:agent-ticket-lock"


def _fetch(key: str) -> str:
    result = get_client().get("ticket/get", {"type": "agent_config"})
    ticket = str(result["ticket"])
    expires_in = int(result.get("expires_in") or 7200)
    cache.set(key, ticket, timeout=max(60, expires_in - EARLY_REFRESH))
    return ticket


def agent_config_ticket() -> str:
    """The app's agent_config jsapi ticket, from the cache or fetched once for everyone."""
    key, lock_key = _keys()
    ticket = cache.get(key)
    if ticket:
        return str(ticket)
    deadline = time.monotonic() + LOCK_TIMEOUT
    while time.monotonic() < deadline:
        # cache.add is atomic in Redis (SET NX): exactly one process fetches.
        if cache.add(lock_key, "1", timeout=LOCK_TIMEOUT):
            try:
                ticket = cache.get(key)
                return str(ticket) if ticket else _fetch(key)
            finally:
                cache.delete(lock_key)
        time.sleep(0.05)
        ticket = cache.get(key)
        if ticket:
            return str(ticket)
    raise WeComTransientError(None, "timed out waiting for the jsapi ticket lock")


def jsapi_signature(*, ticket: str, nonce: str, timestamp: int, url: str) -> str:
    """sha1 of ``jsapi_ticket=..&noncestr=..&timestamp=..&url=..`` (WeCom JS-SDK doc,
    签名算法). wechatpy's ``WeChatJSAPI.get_jsapi_signature`` does exactly this with
    ``WeChatSigner``, which sorts the ``key=value`` strings: the keys' first letters
    (j, n, t, u) give the documented order. It is called here directly because wechatpy's
    helper is a method of an API object bound to a client we do not expose."""
    signer = WeChatSigner(delimiter=b"&")
    signer.add_data(
        f"noncestr={nonce}", f"jsapi_ticket={ticket}", f"timestamp={timestamp}", f"url={url}"
    )
    return str(signer.signature)


def agent_config_signature(
    *, url: str, now: int | None = None, nonce: str | None = None
) -> dict[str, Any]:
    """What ``wx.agentConfig`` takes (besides ``jsApiList`` and callbacks) for the page at
    ``url``. The fragment is not part of the signed URL (the JS-SDK signs
    ``location.href.split('#')[0]``); the query string is."""
    timestamp = int(time.time()) if now is None else int(now)
    nonce_str = nonce if nonce is not None else secrets.token_hex(8)
    page_url = urldefrag(url).url
    return {
        "corpid": settings.WECOM_CORP_ID,
        "agentid": str(settings.WECOM_AGENT_ID),
        "timestamp": timestamp,
        "nonceStr": nonce_str,
        "signature": jsapi_signature(
            ticket=agent_config_ticket(), nonce=nonce_str, timestamp=timestamp, url=page_url
        ),
    }
