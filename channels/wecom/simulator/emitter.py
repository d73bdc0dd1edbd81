"""Build, encrypt, sign and deliver WeCom callbacks like WeCom's own servers do.

Event XML follows WECOM.md §2.5-2.7 field for field (CDATA for strings, bare integers
for CreateTime/JoinScene/...), is encrypted with the corp's token/AES key/CorpID through
:mod:`channels.wecom.crypto`, wrapped as ``<xml><ToUserName/><Encrypt/><AgentID/></xml>``
and POSTed with ``msg_signature``/``timestamp``/``nonce`` in the query string. The
``forge_signature``/``wrong_corp_id``/``bad_base64`` switches produce the broken
deliveries a callback view must refuse, each failing in exactly one way.
"""

from __future__ import annotations

import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

from channels.wecom.crypto import WXBizMsgCrypt

# No proxy: an http_proxy in the environment must not capture deliveries to localhost.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))

Field = tuple[str, "str | int | list[str] | None"]


def cdata(value: str) -> str:
    # "]]>" cannot appear inside CDATA; split it across two sections.
    return "<![CDATA[" + value.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def build_xml(fields: Iterable[Field]) -> str:
    """``<xml>`` with one child per field: str in CDATA, int bare, list as <Item>s."""
    parts = ["<xml>"]
    for name, value in fields:
        if value is None:
            continue
        if isinstance(value, bool):
            value = int(value)
        if isinstance(value, int):
            parts.append(f"<{name}>{value}</{name}>")
        elif isinstance(value, list):
            items = "".join(f"<Item>{cdata(str(v))}</Item>" for v in value)
            parts.append(f"<{name}>{items}</{name}>")
        else:
            parts.append(f"<{name}>{cdata(str(value))}</{name}>")
    parts.append("</xml>")
    return "".join(parts)


def _envelope(corp_id: str, event: str, create_time: int | None) -> list[Field]:
    return [
        ("ToUserName", corp_id),
        ("FromUserName", "sys"),
        ("CreateTime", int(time.time()) if create_time is None else create_time),
        ("MsgType", "event"),
        ("Event", event),
    ]


CONTACT_CHANGE_TYPES = frozenset(
    {
        "add_external_contact",
        "add_half_external_contact",
        "edit_external_contact",
        "del_external_contact",
        "del_follow_user",
        "transfer_fail",
        "msg_audit_approved",
    }
)


def change_external_contact_xml(
    corp_id: str,
    change_type: str,
    userid: str,
    external_userid: str,
    *,
    state: str | None = None,
    welcome_code: str | None = None,
    source: str | None = None,
    fail_reason: str | None = None,
    create_time: int | None = None,
) -> str:
    """change_external_contact (DOC/92130): fields and their order per ChangeType."""
    if change_type not in CONTACT_CHANGE_TYPES:
        raise ValueError(f"unknown ChangeType {change_type!r}")
    fields = _envelope(corp_id, "change_external_contact", create_time)
    fields.append(("ChangeType", change_type))
    if change_type == "transfer_fail":
        # FailReason precedes UserID in the doc example; UserID is the takeover member.
        fields.append(("FailReason", fail_reason or "customer_refused"))
    fields += [("UserID", userid), ("ExternalUserID", external_userid)]
    if change_type in ("add_external_contact", "add_half_external_contact"):
        fields += [("State", state or None), ("WelcomeCode", welcome_code or None)]
    elif change_type == "msg_audit_approved":
        fields.append(("WelcomeCode", welcome_code or None))
    elif change_type == "del_external_contact":
        fields.append(("Source", source or None))
    return build_xml(fields)


def change_external_tag_xml(
    corp_id: str,
    change_type: str,
    tag_id: str,
    *,
    tag_type: str = "tag",
    strategy_id: int | None = None,
    create_time: int | None = None,
) -> str:
    """change_external_tag: create/update/delete/shuffle of a tag or tag_group."""
    if change_type not in ("create", "update", "delete", "shuffle"):
        raise ValueError(f"unknown ChangeType {change_type!r}")
    fields = _envelope(corp_id, "change_external_tag", create_time)
    fields += [
        ("Id", tag_id),
        ("TagType", tag_type),
        ("ChangeType", change_type),
        ("StrategyId", strategy_id),
    ]
    return build_xml(fields)


def change_external_chat_xml(
    corp_id: str,
    chat_id: str,
    change_type: str,
    *,
    update_detail: str | None = None,
    join_scene: int | None = None,
    quit_scene: int | None = None,
    members: list[str] | None = None,
    last_mem_ver: str | None = None,
    cur_mem_ver: str | None = None,
    create_time: int | None = None,
) -> str:
    """change_external_chat: create/dismiss carry only ChatId; update carries details."""
    if change_type not in ("create", "update", "dismiss"):
        raise ValueError(f"unknown ChangeType {change_type!r}")
    fields = _envelope(corp_id, "change_external_chat", create_time)
    fields += [("ChatId", chat_id), ("ChangeType", change_type)]
    if change_type == "update":
        fields.append(("UpdateDetail", update_detail or "add_member"))
        if members is not None:
            fields += [
                ("JoinScene", join_scene if join_scene is not None else 0),
                ("QuitScene", quit_scene if quit_scene is not None else 0),
                ("MemChangeCnt", len(members)),
                ("MemChangeList", members),
                ("LastMemVer", last_mem_ver),
                ("CurMemVer", cur_mem_ver),
            ]
    return build_xml(fields)


@dataclass
class Delivery:
    """What the callback receiver answered (status None: it could not be reached)."""

    url: str
    status: int | None
    body: str
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status == 200

    def as_dict(self) -> dict[str, object]:
        return {"url": self.url, "status": self.status, "body": self.body, "error": self.error}


def _with_query(url: str, query: str) -> str:
    parts = urlsplit(url)
    joined = f"{parts.query}&{query}" if parts.query else query
    return urlunsplit((parts.scheme, parts.netloc, parts.path, joined, parts.fragment))


class CallbackEmitter:
    """Encrypts events for one corp and delivers them to a callback URL."""

    def __init__(
        self,
        *,
        corp_id: str,
        token: str,
        aes_key: str,
        agent_id: str = "1000002",
        timeout: float = 5.0,
    ) -> None:
        self.corp_id = corp_id
        self.crypto = WXBizMsgCrypt(token, aes_key, corp_id)
        self.agent_id = agent_id
        # WeCom gives a receiver 5 s before it gives up (and retries).
        self.timeout = timeout

    def seal(
        self,
        xml: str,
        *,
        forge_signature: bool = False,
        wrong_corp_id: bool = False,
        bad_base64: bool = False,
        timestamp: str | None = None,
        nonce: str | None = None,
    ) -> tuple[str, dict[str, str]]:
        """The POST body and the query parameters for one event."""
        ts = timestamp or str(int(time.time()))
        nonce = nonce or str(secrets.randbelow(10**10))
        if bad_base64:
            encrypted = "not*base64*" + secrets.token_hex(8)
        else:
            rid = self.corp_id + "-wrong" if wrong_corp_id else None
            encrypted = self.crypto.encrypt(xml, receive_id=rid)
        # Broken payloads are still correctly signed so each case fails in one way only.
        signature = self.crypto.sign(ts, nonce, encrypted)
        if forge_signature:
            signature = ("0" if signature[0] != "0" else "1") + signature[1:]
        body = (
            f"<xml><ToUserName>{cdata(self.corp_id)}</ToUserName>"
            f"<Encrypt>{cdata(encrypted)}</Encrypt>"
            f"<AgentID>{cdata(self.agent_id)}</AgentID></xml>"
        )
        return body, {"msg_signature": signature, "timestamp": ts, "nonce": nonce}

    def post(
        self,
        url: str,
        xml: str,
        *,
        forge_signature: bool = False,
        wrong_corp_id: bool = False,
        bad_base64: bool = False,
    ) -> Delivery:
        """Encrypt ``xml`` and POST it to ``url``; never raises for HTTP or network errors."""
        body, params = self.seal(
            xml, forge_signature=forge_signature, wrong_corp_id=wrong_corp_id, bad_base64=bad_base64
        )
        target = _with_query(url, urlencode(params))
        request = urllib.request.Request(
            target,
            data=body.encode("utf-8"),
            method="POST",
            headers={"Content-Type": "text/xml; charset=utf-8"},
        )
        return self._send(url, request)

    def verify_url(
        self,
        url: str,
        echostr_plain: str | None = None,
        *,
        forge_signature: bool = False,
        wrong_corp_id: bool = False,
        bad_base64: bool = False,
    ) -> tuple[Delivery, str]:
        """The URL-verification GET; returns the delivery and the plaintext expected back."""
        plain = echostr_plain or str(secrets.randbelow(10**19))
        ts, nonce = str(int(time.time())), str(secrets.randbelow(10**10))
        if bad_base64:
            echostr = "not*base64*" + secrets.token_hex(8)
        else:
            rid = self.corp_id + "-wrong" if wrong_corp_id else None
            echostr = self.crypto.encrypt(plain, receive_id=rid)
        signature = self.crypto.sign(ts, nonce, echostr)
        if forge_signature:
            signature = ("0" if signature[0] != "0" else "1") + signature[1:]
        # echostr must be fully percent-encoded, or "+" arrives as a space (WECOM.md §2.1).
        query = (
            f"msg_signature={signature}&timestamp={ts}&nonce={nonce}"
            f"&echostr={quote(echostr, safe='')}"
        )
        request = urllib.request.Request(_with_query(url, query), method="GET")
        return self._send(url, request), plain

    def _send(self, url: str, request: urllib.request.Request) -> Delivery:
        try:
            with _OPENER.open(request, timeout=self.timeout) as response:
                return Delivery(url, response.status, response.read().decode("utf-8", "replace"))
        except urllib.error.HTTPError as exc:
            return Delivery(url, exc.code, exc.read().decode("utf-8", "replace"))
        except (urllib.error.URLError, OSError) as exc:
            return Delivery(url, None, "", error=str(exc))
