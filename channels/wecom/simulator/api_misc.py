"""cgi-bin handlers for customer groups, inheritance, behaviour data, OAuth and JS-SDK.

Shapes per WECOM.md §1.10-1.12; OAuth (``auth/getuserinfo``) and the JS-SDK tickets are
here so the mobile pages can be demoed and tested without the real WeCom.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from channels.wecom.simulator.api import (
    Request,
    Route,
    decode_cursor,
    encode_cursor,
    req_int,
    req_list,
    req_str,
)
from channels.wecom.simulator.api_business import cst_day
from channels.wecom.simulator.data import DAY, mix64
from channels.wecom.simulator.errors import ApiError
from channels.wecom.simulator.state import SimState, Transfer

# -- customer groups --------------------------------------------------------------------


def chat_status(state: SimState, chat: dict[str, Any]) -> int:
    """0 normal, 1 owner resigned (awaiting inheritance), 2 in progress, 3 inherited."""
    if chat["status"] == 0 and state.dataset.user_index.get(chat["owner"]) in state.resigned:
        return 1
    return int(chat["status"])


def member_version(chat: dict[str, Any]) -> str:
    ids = ",".join(sorted(m["userid"] for m in chat["member_list"]))
    return hashlib.md5(ids.encode()).hexdigest()


def groupchat_list(state: SimState, req: Request) -> dict[str, Any]:
    limit = req_int(req, "limit")
    if limit is None or not 1 <= limit <= 1000:
        raise ApiError(40058, "limit is required, 1-1000")
    status_filter = req_int(req, "status_filter", 0) or 0
    owner_filter = req.body.get("owner_filter") or {}
    owners = owner_filter.get("userid_list") if isinstance(owner_filter, dict) else None
    if owners is not None and len(owners) > 100:
        raise ApiError(40058, "owner_filter.userid_list holds at most 100 userids")
    if not owners and len(state.dataset.staff_ids) - len(state.resigned) > 1000:
        # Without owner_filter, a corp with > 1000 visible members gets 81017.
        raise ApiError(81017)
    chats = [
        c
        for c in state.chats.values()
        if (not owners or c["owner"] in owners)
        and (status_filter == 0 or chat_status(state, c) == status_filter)
    ]
    bind = f"{status_filter}:{','.join(owners or [])}"
    cursor = req_str(req, "cursor", required=False)
    (offset,) = decode_cursor(state, cursor, bind, 1) if cursor else (0,)
    page = chats[offset : offset + limit]
    more = offset + limit < len(chats)
    return {
        "group_chat_list": [
            {"chat_id": c["chat_id"], "status": chat_status(state, c)} for c in page
        ],
        "next_cursor": encode_cursor(state, bind, offset + limit) if more else "",
    }


def groupchat_get(state: SimState, req: Request) -> dict[str, Any]:
    chat = state.chats.get(req_str(req, "chat_id"))
    if chat is None:
        raise ApiError(90501)
    need_name = req_int(req, "need_name", 0) == 1
    members = []
    for m in chat["member_list"]:
        row = {k: v for k, v in m.items() if k != "name" or need_name}
        members.append(row)
    return {
        "group_chat": {
            "chat_id": chat["chat_id"],
            "name": chat["name"],
            "owner": chat["owner"],
            "create_time": chat["create_time"],
            "notice": chat["notice"],
            "member_list": members,
            "admin_list": chat["admin_list"],
            "member_version": member_version(chat),
        }
    }


# -- inheritance ------------------------------------------------------------------------

TRANSFER_WINDOW = 90 * DAY


def _transfer_one(state: SimState, kind: str, handover: int, takeover: int, eid: str) -> int:
    """Start one transfer; returns the per-customer errcode (0 = the 24 h clock started)."""
    if kind == "resigned" and handover not in state.resigned:
        return 40097
    i = state.contact_index(eid)
    if i is None or not state.is_follow(i, handover):
        return 40096
    now = int(state.clock())
    mine = [t for t in state.transfers if t.contact == i]
    if any(t.status == 2 for t in mine):
        return 40129
    # Each customer can be transferred at most twice in 90 days.
    if sum(1 for t in mine if now - t.created < TRANSFER_WINDOW) >= 2:
        return 40128
    state.transfers.append(Transfer(kind, handover, takeover, i, now))
    return 0


def _transfer_customers(state: SimState, req: Request, kind: str) -> dict[str, Any]:
    handover = state.staff_index(req_str(req, "handover_userid"))
    takeover = state.staff_index(req_str(req, "takeover_userid"))
    if takeover in state.resigned:
        raise ApiError(40003, "takeover_userid has resigned")
    eids = [str(e) for e in req_list(req, "external_userid", max_len=100)]
    if not eids:
        raise ApiError(40058, "external_userid is required")
    if len(req_str(req, "transfer_success_msg", required=False)) > 200:
        raise ApiError(40058, "transfer_success_msg is at most 200 characters")
    return {
        "customer": [
            {"external_userid": e, "errcode": _transfer_one(state, kind, handover, takeover, e)}
            for e in eids
        ]
    }


def transfer_customer(state: SimState, req: Request) -> dict[str, Any]:
    return _transfer_customers(state, req, "onjob")


def resigned_transfer_customer(state: SimState, req: Request) -> dict[str, Any]:
    return _transfer_customers(state, req, "resigned")


def transfer_legacy(state: SimState, req: Request) -> dict[str, Any]:
    """The deprecated single-customer ``externalcontact/transfer`` (wechatpy's transfer())."""
    handover = state.staff_index(req_str(req, "handover_userid"))
    takeover = state.staff_index(req_str(req, "takeover_userid"))
    code = _transfer_one(state, "onjob", handover, takeover, req_str(req, "external_userid"))
    if code:
        raise ApiError(code)
    return {}


def _transfer_result(state: SimState, req: Request, kind: str) -> dict[str, Any]:
    handover = state.staff_index(req_str(req, "handover_userid"))
    takeover = state.staff_index(req_str(req, "takeover_userid"))
    rows = [
        t
        for t in state.transfers
        if t.kind == kind and t.handover == handover and t.takeover == takeover
    ]
    bind = f"{kind}:{handover}:{takeover}"
    cursor = req_str(req, "cursor", required=False)
    (offset,) = decode_cursor(state, cursor, bind, 1) if cursor else (0,)
    page = rows[offset : offset + 1000]
    more = offset + 1000 < len(rows)
    return {
        "customer": [
            {
                "external_userid": state.eid(t.contact),
                "status": t.status,
                "takeover_time": t.takeover_time,
            }
            for t in page
        ],
        "next_cursor": encode_cursor(state, bind, offset + 1000) if more else "",
    }


def transfer_result(state: SimState, req: Request) -> dict[str, Any]:
    return _transfer_result(state, req, "onjob")


def resigned_transfer_result(state: SimState, req: Request) -> dict[str, Any]:
    return _transfer_result(state, req, "resigned")


def get_unassigned_list(state: SimState, req: Request) -> dict[str, Any]:
    page_size = req_int(req, "page_size", 1000) or 1000
    page_size = max(1, min(page_size, 1000))
    cursor = req_str(req, "cursor", required=False)
    if cursor:
        (offset,) = decode_cursor(state, cursor, "unassigned", 1)
    else:
        offset = (req_int(req, "page_id", 0) or 0) * page_size
        if offset >= 50_000:
            # page_id * page_size only works below 50000; beyond that use cursor.
            raise ApiError(40058, "page_id * page_size must stay below 50000, use cursor")
    pending = {(t.handover, t.contact) for t in state.transfers if t.status in (1, 2)}
    info = []
    for s in sorted(state.resigned):
        for i in state.user_contacts(s):
            if (s, i) not in pending:
                info.append((s, i))
    page = info[offset : offset + page_size]
    is_last = offset + page_size >= len(info)
    ids = state.dataset.staff_ids
    return {
        "info": [
            {
                "handover_userid": ids[s],
                "external_userid": state.eid(i),
                "dimission_time": state.resigned[s],
            }
            for s, i in page
        ],
        "is_last": is_last,
        "next_cursor": "" if is_last else encode_cursor(state, "unassigned", offset + page_size),
    }


# -- behaviour data ---------------------------------------------------------------------


def get_user_behavior_data(state: SimState, req: Request) -> dict[str, Any]:
    userids = [str(u) for u in req_list(req, "userid", max_len=100)]
    parties = [int(p) for p in req_list(req, "partyid", max_len=100)]
    if not userids and not parties:
        raise ApiError(40058, "userid and partyid may not both be empty")
    staff = {state.staff_index(u) for u in userids}
    staff |= {s for s in range(len(state.dataset.staff_ids)) if 1 + s % 5 in parties}
    start, end = req_int(req, "start_time"), req_int(req, "end_time")
    if start is None or end is None:
        raise ApiError(40058, "start_time and end_time are required")
    now = int(state.clock())
    first, last = cst_day(start), cst_day(end)
    if last < first or last - first + 1 > 30:
        raise ApiError(40058, "the span is at most 30 days")
    if first < cst_day(now) - 180:
        raise ApiError(40058, "only the last 180 days are available")
    out = []
    for day in range(first, last + 1):
        totals = {
            "chat_cnt": 0,
            "message_cnt": 0,
            "negative_feedback_cnt": 0,
            "new_apply_cnt": 0,
            "new_contact_cnt": 0,
        }
        replies, reply_time = 0.0, 0
        for s in staff:
            h = mix64(state.dataset.seed * 1_000_003 + day * 65_537 + s)
            chats = h % 40
            totals["chat_cnt"] += chats
            totals["message_cnt"] += chats * (1 + (h >> 8) % 4)
            totals["negative_feedback_cnt"] += 1 if (h >> 16) % 50 == 0 else 0
            totals["new_apply_cnt"] += (h >> 20) % 8
            totals["new_contact_cnt"] += (h >> 24) % 6
            replies += 50 + (h >> 28) % 51
            reply_time += 1 + (h >> 36) % 30
        row: dict[str, Any] = {"stat_time": day * DAY - 8 * 3600, **totals}
        if totals["chat_cnt"] and staff:
            # reply_percentage is a float; both fields appear only when there was a chat.
            row["reply_percentage"] = round(replies / len(staff), 2)
            row["avg_reply_time"] = reply_time // len(staff)
        out.append(row)
    return {"behavior_data": out}


# -- OAuth and JS-SDK -------------------------------------------------------------------


def _take_oauth_code(state: SimState, req: Request) -> str:
    code = req_str(req, "code", required=False)
    entry = state.oauth_codes.pop(code, None) if code else None
    # Codes are one-shot and live 5 minutes.
    if entry is None or entry[1] < state.clock():
        raise ApiError(40029)
    return entry[0]


def _user_ticket() -> str:
    return secrets.token_urlsafe(48)


def auth_getuserinfo(state: SimState, req: Request) -> dict[str, Any]:
    who = _take_oauth_code(state, req)
    if who in state.dataset.user_index:
        return {"userid": who, "user_ticket": _user_ticket(), "expires_in": 1800}
    # A non-member (a customer opening the page): openid and external_userid instead.
    return {"openid": "o" + hashlib.md5(who.encode()).hexdigest()[:27], "external_userid": who}


def user_getuserinfo(state: SimState, req: Request) -> dict[str, Any]:
    """The legacy OAuth endpoint wechatpy 1.8.18's ``oauth.get_user_info`` calls."""
    who = _take_oauth_code(state, req)
    if who in state.dataset.user_index:
        return {"UserId": who, "DeviceId": "", "user_ticket": _user_ticket(), "expires_in": 1800}
    return {"OpenId": "o" + hashlib.md5(who.encode()).hexdigest()[:27], "DeviceId": ""}


def get_jsapi_ticket(state: SimState, req: Request) -> dict[str, Any]:
    ticket, expires_in = state.ticket("jsapi")
    return {"ticket": ticket, "expires_in": expires_in}


def ticket_get(state: SimState, req: Request) -> dict[str, Any]:
    if req.query.get("type") != "agent_config":
        raise ApiError(40058, "type must be agent_config")
    ticket, expires_in = state.ticket("agent_config")
    return {"ticket": ticket, "expires_in": expires_in}


ROUTES: dict[str, Route] = {
    "externalcontact/groupchat/list": Route(groupchat_list, post=True),
    "externalcontact/groupchat/get": Route(groupchat_get, post=True),
    "externalcontact/transfer_customer": Route(transfer_customer, post=True),
    "externalcontact/transfer_result": Route(transfer_result, post=True),
    "externalcontact/resigned/transfer_customer": Route(resigned_transfer_customer, post=True),
    "externalcontact/resigned/transfer_result": Route(resigned_transfer_result, post=True),
    "externalcontact/transfer": Route(transfer_legacy, post=True),
    "externalcontact/get_unassigned_list": Route(get_unassigned_list, post=True),
    "externalcontact/get_user_behavior_data": Route(get_user_behavior_data, post=True),
    "auth/getuserinfo": Route(auth_getuserinfo),
    "user/getuserinfo": Route(user_getuserinfo),
    "get_jsapi_ticket": Route(get_jsapi_ticket),
    "ticket/get": Route(ticket_get),
}
