"""cgi-bin handlers for 「联系我」 contact ways, welcome messages and mass messages.

Shapes and error codes per WECOM.md §1.7-1.9: ``state`` ≤ 30 chars, 41037-41044 for
contact-way parameter errors, ``qr_code`` only for scene 2, welcome codes one-shot with a
20 s TTL (41050/41051), and at most one mass message per customer per day (send_result
status 3 for the rest).
"""

from __future__ import annotations

import hashlib
from typing import Any

from channels.wecom.simulator.api import (
    Request,
    Route,
    clamp_limit,
    decode_cursor,
    encode_cursor,
    req_int,
    req_list,
    req_str,
)
from channels.wecom.simulator.data import DAY
from channels.wecom.simulator.errors import ApiError
from channels.wecom.simulator.state import ContactWay, MsgTemplate, SimState

MAX_STATE = 30
MAX_CONTACT_WAYS = 500_000
MAX_TEXT_BYTES = 4000
MAX_ATTACHMENTS = 9
ATTACHMENT_TYPES = frozenset({"image", "link", "miniprogram", "video", "file"})


def cst_day(ts: float) -> int:
    """The China-time day number: WeCom's "per day" limits roll over at 00:00 UTC+8."""
    return int(ts + 8 * 3600) // DAY


# -- 「联系我」 ----------------------------------------------------------------------------


def _validate_way_users(state: SimState, way_type: int, users: list[str], party: list[int]) -> None:
    for u in users:
        state.staff_index(u)  # 40003 for an unknown member
    if way_type == 1 and (len(users) != 1 or party):
        # Single-member codes take exactly one userid and no departments.
        raise ApiError(41041, "type 1 needs exactly one user")
    if way_type == 2 and not users and not party:
        raise ApiError(40058, "user and party may not both be empty")
    if len(users) > 100:
        raise ApiError(41041, "at most 100 members per contact way")


def _way_state(req: Request) -> str:
    value = req_str(req, "state", required=False)
    if len(value) > MAX_STATE:
        raise ApiError(40058, f"state is longer than {MAX_STATE} characters")
    return value


def _way_style(req: Request) -> int | None:
    style = req_int(req, "style")
    if style is not None and not 1 <= style <= 4:
        raise ApiError(41042)
    return style


def add_contact_way(state: SimState, req: Request) -> dict[str, Any]:
    way_type = req_int(req, "type")
    if way_type is None:
        raise ApiError(41037)
    scene = req_int(req, "scene")
    if scene is None:
        raise ApiError(41038)
    if way_type not in (1, 2):
        raise ApiError(41039)
    if scene not in (1, 2):
        raise ApiError(41040)
    style = _way_style(req)
    way_state = _way_state(req)
    users = [str(u) for u in req_list(req, "user")]
    party = [int(p) for p in req_list(req, "party")]
    _validate_way_users(state, way_type, users, party)
    is_temp = bool(req.body.get("is_temp", False))
    if is_temp and way_type != 1:
        raise ApiError(40058, "temporary contact ways are single-member only")
    if len(state.contact_ways) >= MAX_CONTACT_WAYS:
        raise ApiError(41045)
    config_id = hashlib.md5(state.new_id("contact_way").encode()).hexdigest()
    way = ContactWay(
        config_id=config_id,
        type=way_type,
        scene=scene,
        create_time=int(state.clock()),
        style=style,
        remark=req_str(req, "remark", required=False),
        skip_verify=bool(req.body.get("skip_verify", True)),
        state=way_state,
        user=users,
        party=party,
        is_temp=is_temp,
        expires_in=req_int(req, "expires_in", 7 * DAY) if is_temp else None,
        chat_expires_in=req_int(req, "chat_expires_in", DAY) if is_temp else None,
        unionid=req_str(req, "unionid", required=False),
        is_exclusive=bool(req.body.get("is_exclusive", False)),
        conclusions=req.body.get("conclusions") if is_temp else None,
        # Only QR-code ways (scene 2) get a qr_code URL; it serves a real PNG.
        qr_code=f"{state.public_base}qr/{config_id}.png" if scene == 2 else "",
    )
    state.contact_ways[config_id] = way
    out: dict[str, Any] = {"config_id": config_id}
    if way.qr_code:
        out["qr_code"] = way.qr_code
    return out


def _get_way(state: SimState, req: Request) -> ContactWay:
    config_id = req_str(req, "config_id", required=False)
    if not config_id:
        raise ApiError(41043)
    way = state.contact_ways.get(config_id)
    if way is None:
        raise ApiError(41044)
    return way


def way_json(way: ContactWay) -> dict[str, Any]:
    out: dict[str, Any] = {
        "config_id": way.config_id,
        "type": way.type,
        "scene": way.scene,
        "remark": way.remark,
        "skip_verify": way.skip_verify,
        "state": way.state,
        "user": list(way.user),
        "party": list(way.party),
        "is_temp": way.is_temp,
    }
    if way.style is not None:
        out["style"] = way.style
    if way.qr_code:
        out["qr_code"] = way.qr_code
    if way.is_temp:
        out["expires_in"] = way.expires_in
        out["chat_expires_in"] = way.chat_expires_in
        if way.conclusions:
            out["conclusions"] = way.conclusions
    if way.unionid:
        out["unionid"] = way.unionid
        out["is_exclusive"] = way.is_exclusive
    return out


def get_contact_way(state: SimState, req: Request) -> dict[str, Any]:
    # contact_way is an object (wechatpy's 2.x fixture wrongly makes it an array).
    return {"contact_way": way_json(_get_way(state, req))}


def list_contact_way(state: SimState, req: Request) -> dict[str, Any]:
    now = int(state.clock())
    end = req_int(req, "end_time", now) or now
    start = req_int(req, "start_time", end - 90 * DAY) or 0
    limit = clamp_limit(req, 100, 1000)
    bind = f"{start}:{end}"
    cursor = req_str(req, "cursor", required=False)
    (offset,) = decode_cursor(state, cursor, bind, 1) if cursor else (0,)
    # Temporary (is_temp) ways are never listed.
    ways = [
        w for w in state.contact_ways.values() if not w.is_temp and start <= w.create_time <= end
    ]
    page = ways[offset : offset + limit]
    more = offset + limit < len(ways)
    return {
        "contact_way": [{"config_id": w.config_id} for w in page],
        "next_cursor": encode_cursor(state, bind, offset + limit) if more else "",
    }


def update_contact_way(state: SimState, req: Request) -> dict[str, Any]:
    way = _get_way(state, req)
    style = _way_style(req)
    if "state" in req.body:
        way.state = _way_state(req)
    users = [str(u) for u in req_list(req, "user")] if "user" in req.body else way.user
    party = [int(p) for p in req_list(req, "party")] if "party" in req.body else way.party
    _validate_way_users(state, way.type, users, party)
    # user and party overwrite the previous lists.
    way.user, way.party = users, party
    if style is not None:
        way.style = style
    if "remark" in req.body:
        way.remark = req_str(req, "remark", required=False)
    if "skip_verify" in req.body:
        way.skip_verify = bool(req.body["skip_verify"])
    for key in ("expires_in", "chat_expires_in"):
        if way.is_temp and key in req.body:
            setattr(way, key, req_int(req, key))
    if way.is_temp and "conclusions" in req.body:
        way.conclusions = req.body["conclusions"]
    return {}


def del_contact_way(state: SimState, req: Request) -> dict[str, Any]:
    way = _get_way(state, req)
    del state.contact_ways[way.config_id]
    return {}


def close_temp_chat(state: SimState, req: Request) -> dict[str, Any]:
    state.staff_index(req_str(req, "userid"))
    if state.contact_index(req_str(req, "external_userid")) is None:
        raise ApiError(40096)
    return {}


# -- message content --------------------------------------------------------------------


def validate_content(req: Request) -> None:
    """text ≤ 4000 bytes, ≤ 9 attachments, not both empty (DOC/92137, DOC/92135)."""
    text = req.body.get("text") or {}
    content = text.get("content", "") if isinstance(text, dict) else ""
    attachments = req_list(req, "attachments")
    if not content and not attachments:
        raise ApiError(44004, "text and attachments may not both be empty")
    if len(str(content).encode("utf-8")) > MAX_TEXT_BYTES:
        raise ApiError(45002, f"text is longer than {MAX_TEXT_BYTES} bytes")
    if len(attachments) > MAX_ATTACHMENTS:
        raise ApiError(40058, f"at most {MAX_ATTACHMENTS} attachments")
    for item in attachments:
        kind = item.get("msgtype") if isinstance(item, dict) else None
        if kind not in ATTACHMENT_TYPES or not isinstance(item.get(kind), dict):
            raise ApiError(40058, "invalid attachment")


def send_welcome_msg(state: SimState, req: Request) -> dict[str, Any]:
    code = req_str(req, "welcome_code", required=False)
    if not code:
        raise ApiError(41049)
    validate_content(req)
    wc = state.welcome_codes.get(code)
    if wc is None or state.clock() - wc.issued_at > state.welcome_ttl:
        raise ApiError(41050)
    if wc.used:
        # The first app to use the code wins; the others get 41051.
        raise ApiError(41051)
    wc.used = True
    state.welcome_sent.append(
        {
            "welcome_code": code,
            "external_userid": state.eid(wc.contact),
            "userid": state.dataset.staff_ids[wc.staff],
            "text": req.body.get("text"),
            "attachments": req.body.get("attachments", []),
            "time": int(state.clock()),
        }
    )
    return {}


# -- mass messages ----------------------------------------------------------------------


def add_msg_template(state: SimState, req: Request) -> dict[str, Any]:
    chat_type = req_str(req, "chat_type", required=False) or "single"
    if chat_type not in ("single", "group"):
        raise ApiError(40058, "chat_type is single or group")
    validate_content(req)
    sender = req_str(req, "sender", required=False)
    sender_idx = state.staff_index(sender) if sender else None
    eids = [str(e) for e in req_list(req, "external_userid", max_len=10_000)]
    recipients: dict[str, list[str]] = {}
    fail_list: list[str] = []
    if chat_type == "group":
        if sender_idx is None:
            raise ApiError(40058, "sender is required for chat_type group")
        chats = [c for c in state.chats.values() if c["owner"] == sender and c["status"] == 0]
        if chats:
            recipients[sender] = [c["chat_id"] for c in chats]
    elif eids:
        for eid in eids:
            i = state.contact_index(eid)
            followers = state.followers_of(i) if i is not None else []
            if sender_idx is not None:
                followers = [s for s in followers if s == sender_idx]
            if not followers:
                fail_list.append(eid)
                continue
            recipients.setdefault(state.dataset.staff_ids[followers[0]], []).append(eid)
    elif sender_idx is not None:
        # sender alone means "all of this member's customers"
        mine = [state.eid(i) for i in state.user_contacts(sender_idx)]
        if mine:
            recipients[sender] = mine
    else:
        raise ApiError(40058, "external_userid or sender is required")
    if not recipients:
        raise ApiError(41048)
    msgid = "msg" + state.new_id("msg")[2:]
    body = {k: req.body[k] for k in ("text", "attachments") if k in req.body}
    template = MsgTemplate(msgid, chat_type, int(state.clock()), body, recipients)
    state.templates[msgid] = template
    if state.groupmsg_auto_confirm:
        confirm_template(state, template, None)
    return {"fail_list": fail_list, "msgid": msgid}


def confirm_template(state: SimState, template: MsgTemplate, userid: str | None) -> int:
    """The member taps "send" in the client. Returns how many messages went out.

    Each customer (or group) receives at most one mass message per China-time day;
    later ones get send_result status 3, and customers no longer friends status 2.
    """
    now = int(state.clock())
    day = cst_day(now)
    sent = 0
    for sender, recipients in template.recipients.items():
        if sender in template.sent or (userid is not None and sender != userid):
            continue
        template.sent[sender] = now
        s = state.dataset.user_index[sender]
        for r in recipients:
            if template.chat_type == "single":
                i = state.contact_index(r)
                if i is None or not state.is_follow(i, s):
                    template.results[(sender, r)] = 2
                    continue
            key = (r, day)
            if key in state.received_on:
                template.results[(sender, r)] = 3
                continue
            state.received_on[key] = template.msgid
            template.results[(sender, r)] = 1
            sent += 1
    return sent


def _template(state: SimState, req: Request) -> MsgTemplate:
    msgid = req_str(req, "msgid")
    template = state.templates.get(msgid)
    if template is None:
        raise ApiError(40058, f"invalid msgid {msgid}")
    return template


def get_groupmsg_list_v2(state: SimState, req: Request) -> dict[str, Any]:
    chat_type = req_str(req, "chat_type")
    if chat_type not in ("single", "group"):
        raise ApiError(40058, "chat_type is single or group")
    start, end = req_int(req, "start_time"), req_int(req, "end_time")
    if start is None or end is None:
        raise ApiError(40058, "start_time and end_time are required")
    if end < start or end - start > 31 * DAY:
        raise ApiError(40058, "the time range is at most one month")
    creator = req_str(req, "creator", required=False)
    filter_type = req_int(req, "filter_type", 2)
    limit = clamp_limit(req, 50, 100)
    # API-created messages are corp messages (create_type 0), never personal ones.
    rows = [
        t
        for t in state.templates.values()
        if t.chat_type == chat_type
        and start <= t.create_time <= end
        and filter_type in (0, 2)
        and (not creator or creator in t.recipients)
    ]
    bind = f"{chat_type}:{start}:{end}:{creator}:{filter_type}"
    cursor = req_str(req, "cursor", required=False)
    (offset,) = decode_cursor(state, cursor, bind, 1) if cursor else (0,)
    page = rows[offset : offset + limit]
    out = []
    for t in page:
        # create_time is a string in the official example; creator is absent for API ones.
        row: dict[str, Any] = {
            "msgid": t.msgid,
            "create_time": str(t.create_time),
            "create_type": 0,
        }
        row.update(t.body)
        out.append(row)
    more = offset + limit < len(rows)
    return {
        "next_cursor": encode_cursor(state, bind, offset + limit) if more else "",
        "group_msg_list": out,
    }


def get_groupmsg_task(state: SimState, req: Request) -> dict[str, Any]:
    template = _template(state, req)
    limit = clamp_limit(req, 500, 1000)
    cursor = req_str(req, "cursor", required=False)
    (offset,) = decode_cursor(state, cursor, template.msgid, 1) if cursor else (0,)
    senders = list(template.recipients)
    tasks = []
    for sender in senders[offset : offset + limit]:
        # Task status: 0 not sent, 2 sent (the doc text; its example shows 1).
        task: dict[str, Any] = {"userid": sender, "status": 2 if sender in template.sent else 0}
        if sender in template.sent:
            task["send_time"] = template.sent[sender]
        tasks.append(task)
    more = offset + limit < len(senders)
    return {
        "next_cursor": encode_cursor(state, template.msgid, offset + limit) if more else "",
        "task_list": tasks,
    }


def _send_rows(state: SimState, template: MsgTemplate, sender: str) -> list[dict[str, Any]]:
    key = "external_userid" if template.chat_type == "single" else "chat_id"
    rows = []
    for r in template.recipients.get(sender, []):
        status = template.results.get((sender, r), 0)
        row: dict[str, Any] = {key: r, "userid": sender, "status": status}
        if status == 1:
            row["send_time"] = template.sent[sender]
        rows.append(row)
    return rows


def get_groupmsg_send_result(state: SimState, req: Request) -> dict[str, Any]:
    template = _template(state, req)
    sender = req_str(req, "userid")
    state.staff_index(sender)
    limit = clamp_limit(req, 500, 1000)
    bind = f"{template.msgid}:{sender}"
    cursor = req_str(req, "cursor", required=False)
    (offset,) = decode_cursor(state, cursor, bind, 1) if cursor else (0,)
    rows = _send_rows(state, template, sender)
    more = offset + limit < len(rows)
    return {
        "next_cursor": encode_cursor(state, bind, offset + limit) if more else "",
        "send_list": rows[offset : offset + limit],
    }


def get_group_msg_result(state: SimState, req: Request) -> dict[str, Any]:
    """The old, unpaged API (the only one wechatpy 1.8.18 wraps)."""
    template = _template(state, req)
    rows = [row for sender in template.recipients for row in _send_rows(state, template, sender)]
    return {"check_status": 1, "detail_list": rows}


ROUTES: dict[str, Route] = {
    "externalcontact/add_contact_way": Route(add_contact_way, post=True),
    "externalcontact/get_contact_way": Route(get_contact_way, post=True),
    "externalcontact/list_contact_way": Route(list_contact_way, post=True),
    "externalcontact/update_contact_way": Route(update_contact_way, post=True),
    "externalcontact/del_contact_way": Route(del_contact_way, post=True),
    "externalcontact/close_temp_chat": Route(close_temp_chat, post=True),
    "externalcontact/send_welcome_msg": Route(send_welcome_msg, post=True),
    "externalcontact/add_msg_template": Route(add_msg_template, post=True),
    "externalcontact/get_groupmsg_list_v2": Route(get_groupmsg_list_v2, post=True),
    "externalcontact/get_groupmsg_task": Route(get_groupmsg_task, post=True),
    "externalcontact/get_groupmsg_send_result": Route(get_groupmsg_send_result, post=True),
    "externalcontact/get_group_msg_result": Route(get_group_msg_result, post=True),
}
