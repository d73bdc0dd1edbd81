"""cgi-bin handlers for tokens, members, customers, follows and corp tags.

Each handler takes the state and the parsed request and returns the success payload
(the server prepends ``errcode: 0, errmsg: "ok"``) or raises :class:`ApiError`. Shapes
follow WECOM.md §1.1-1.6 exactly, including the quirks (84061 with ``[]`` for a member
without customers, ``tag_group`` as an object from add_corp_tag but an array from
get_corp_tag_list, one batch row per (customer, follower) pair with ``tag_id`` only).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from channels.wecom.simulator.data import FollowData, TagDef, TagGroupDef
from channels.wecom.simulator.errors import ApiError
from channels.wecom.simulator.state import SimState


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    body: dict[str, Any]
    ip: str = "127.0.0.1"
    #: Work to run after the response is sent (the next-page prefetch).
    after: Callable[[], None] | None = None

    def param(self, name: str) -> Any:
        """A parameter from the JSON body, else from the query string."""
        value = self.body.get(name)
        return self.query.get(name) if value is None else value


class RawJSON(str):
    """A complete, already serialized success body (the batch fast path)."""


Handler = Callable[[SimState, Request], "dict[str, Any] | RawJSON"]


@dataclass(frozen=True)
class Route:
    handler: Handler
    post: bool = False  # POST-only endpoints answer 43002 to a GET
    locked: bool = True  # False: the handler takes the state lock itself


# -- parameter helpers ------------------------------------------------------------------


def req_str(req: Request, name: str, *, required: bool = True) -> str:
    value = req.param(name)
    if value is None or value == "":
        if required:
            raise ApiError(40058, f"missing {name}")
        return ""
    if not isinstance(value, str | int):
        raise ApiError(40058, f"{name} must be a string")
    return str(value)


def req_list(req: Request, name: str, *, max_len: int | None = None) -> list[Any]:
    value = req.body.get(name)
    if value is None:
        return []
    if not isinstance(value, list):
        raise ApiError(40058, f"{name} must be a list")
    if max_len is not None and len(value) > max_len:
        raise ApiError(40058, f"{name} holds more than {max_len} items")
    return value


def req_int(req: Request, name: str, default: int | None = None) -> int | None:
    value = req.param(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ApiError(40058, f"{name} must be an integer") from None


def clamp_limit(req: Request, default: int, maximum: int) -> int:
    """WeCom's "默认值N, 超过最大值时取最大值": defaults and clamps instead of failing."""
    limit = req_int(req, "limit", default) or default
    return max(1, min(limit, maximum))


# -- opaque cursors ---------------------------------------------------------------------


def encode_cursor(state: SimState, bind: str, *numbers: int) -> str:
    """An opaque, tamper-evident cursor like WeCom's 43-char base64 ones.

    ``bind`` ties it to the request (the userid_list, the msgid ...) so a cursor reused
    with another request is refused instead of silently skipping rows.
    """
    payload = struct.pack(f">{len(numbers)}Q", *numbers)
    mac = hashlib.blake2b(
        payload + bind.encode(), key=str(state.dataset.seed).encode(), digest_size=16
    ).digest()
    return base64.urlsafe_b64encode(payload + mac).rstrip(b"=").decode("ascii")


def decode_cursor(state: SimState, cursor: str, bind: str, count: int) -> tuple[int, ...]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except ValueError:
        raise ApiError(40058, "invalid cursor") from None
    if len(raw) != 8 * count + 16:
        raise ApiError(40058, "invalid cursor")
    numbers = struct.unpack(f">{count}Q", raw[: 8 * count])
    if encode_cursor(state, bind, *numbers) != cursor.rstrip("="):
        raise ApiError(40058, "invalid cursor")
    return numbers


# -- token and members ------------------------------------------------------------------


def gettoken(state: SimState, req: Request) -> dict[str, Any]:
    token, expires_in = state.get_token(
        req.query.get("corpid", ""), req.query.get("corpsecret", "")
    )
    return {"access_token": token, "expires_in": expires_in}


def get_follow_user_list(state: SimState, req: Request) -> dict[str, Any]:
    ids = state.dataset.staff_ids
    return {"follow_user": [u for s, u in enumerate(ids) if s not in state.resigned]}


def user_get(state: SimState, req: Request) -> dict[str, Any]:
    s = state.dataset.user_index.get(req_str(req, "userid"))
    if s is None or s in state.resigned:
        raise ApiError(60111)
    ds = state.dataset
    return {
        "userid": ds.staff_ids[s],
        "name": ds.staff_names[s],
        "department": [1 + s % 5],
        "position": "导购" if s else "店长",
        "mobile": f"139{s:08d}",
        "gender": str(1 + s % 2),
        "avatar": f"{state.public_base}avatar/{ds.staff_ids[s]}.png",
        "status": 1,
        "main_department": 1 + s % 5,
    }


# -- customers --------------------------------------------------------------------------


def follow_info(state: SimState, fd: FollowData) -> dict[str, Any]:
    """batch/get_by_user's follow_info: tag ids only, no personal tags."""
    out: dict[str, Any] = {
        "userid": fd.userid,
        "remark": fd.remark,
        "description": fd.description,
        "createtime": fd.createtime,
        "tag_id": state.live_tags(fd.tag_ids),
        "remark_mobiles": fd.remark_mobiles,
        "oper_userid": fd.oper_userid,
        "add_way": fd.add_way,
    }
    if fd.remark_corp_name:
        out["remark_corp_name"] = fd.remark_corp_name
    # state appears only when the customer came in through a 「联系我」 with a state.
    if fd.state:
        out["state"] = fd.state
    return out


def follow_user(state: SimState, fd: FollowData) -> dict[str, Any]:
    """externalcontact/get's follow_user entry: full tag objects, personal tags too."""
    tags: list[dict[str, Any]] = []
    for tid in fd.tag_ids:
        t = state.tags.get(tid)
        if t is not None:
            group = state.groups[t.group_id]
            tags.append(
                {"group_name": group.group_name, "tag_name": t.name, "tag_id": t.id, "type": 1}
            )
    for name in fd.personal_tags:
        tags.append({"group_name": "", "tag_name": name, "type": 2})
    out: dict[str, Any] = {
        "userid": fd.userid,
        "remark": fd.remark,
        "description": fd.description,
        "createtime": fd.createtime,
        "tags": tags,
        "remark_mobiles": fd.remark_mobiles,
        "oper_userid": fd.oper_userid,
        "add_way": fd.add_way,
    }
    if fd.remark_corp_name:
        out["remark_corp_name"] = fd.remark_corp_name
    if fd.state:
        out["state"] = fd.state
    return out


def contact_list(state: SimState, req: Request) -> dict[str, Any]:
    s = state.staff_index(req_str(req, "userid"))
    ids = [state.eid(i) for i in state.user_contacts(s)]
    if not ids:
        # Real quirk: a member with no customers is an error, not an empty list.
        raise ApiError(84061)
    return {"external_userid": ids}


#: "当客户在企业内的跟进人超过500人时需要使用cursor参数进行分页获取"
GET_PAGE = 500


def contact_get(state: SimState, req: Request) -> dict[str, Any]:
    eid = req_str(req, "external_userid")
    i = state.contact_index(eid)
    if i is None:
        raise ApiError(40096)
    followers = state.followers_of(i)
    if not followers:
        raise ApiError(84061)
    start = 0
    cursor = req.query.get("cursor") or req.body.get("cursor") or ""
    if cursor:
        (start,) = decode_cursor(state, cursor, eid, 1)
    page = followers[start : start + GET_PAGE]
    out: dict[str, Any] = {
        "external_contact": state.contact_json(i),
        "follow_user": [follow_user(state, state.follow_data(i, s)) for s in page],
    }
    if start + GET_PAGE < len(followers):
        out["next_cursor"] = encode_cursor(state, eid, start + GET_PAGE)
    return out


def batch_rows(
    state: SimState, users: list[int], pos: int, off: int, limit: int
) -> tuple[list[str], int, int]:
    """Up to ``limit`` rows (JSON text each) from (pos, off) on; returns the new position.

    Unedited generated rows take the text fast path; anything the simulator changed
    goes through dicts and json.dumps, so both paths serve the same shapes.
    """
    rows: list[str] = []
    deleted, contact_over, follow_over = state.deleted, state.contact_over, state.follow_over
    slot, dataset = state.slot, state.dataset
    avatar_base = state.public_base + "avatar/"
    live_tags = state.tags if state.deleted_tags else None
    while pos < len(users) and len(rows) < limit:
        s = users[pos]
        while len(rows) < limit:
            i = slot(s, off)
            if i is None:
                break
            off += 1
            if deleted and (i, s) in deleted:
                continue
            if i in contact_over or (i, s) in follow_over:
                contact = state.contact_json(i)
                fd = state.follow_data(i, s, contact["external_userid"])
                row = {"external_contact": contact, "follow_info": follow_info(state, fd)}
                rows.append(json.dumps(row, ensure_ascii=False, separators=(",", ":")))
            else:
                rows.append(dataset.batch_row_text(i, s, avatar_base, live_tags))
        if slot(s, off) is None:
            pos, off = pos + 1, 0
    return rows, pos, off


#: Pages rendered ahead, per simulator (a few concurrent syncs' worth).
PAGE_CACHE_SIZE = 64
Start = tuple[int, int]


def render_page(
    state: SimState, users: list[int], bind: str, start: Start, limit: int
) -> tuple[str, Start | None]:
    """The success body for one page, and where the next page starts (None: last)."""
    rows, pos, off = batch_rows(state, users, *start, limit)
    # An empty next_cursor ("") marks the last page.
    more = pos < len(users)
    next_cursor = encode_cursor(state, bind, pos, off) if more else ""
    body = (
        '{"errcode":0,"errmsg":"ok","external_contact_list":['
        + ",".join(rows)
        + f'],"next_cursor":"{next_cursor}"}}'
    )
    return body, (pos, off) if more else None


def prefetch_page(state: SimState, users: list[int], bind: str, start: Start, limit: int) -> None:
    """Render the page a paging client will ask for next, while it digests this one.

    A cursor client cannot overlap its requests, so the simulator overlaps for it: this
    runs after the response is sent, in parallel with the client's own work (another
    process), and the benchmark's floor becomes max(server, client), not their sum.
    """
    key = (bind, *start, limit)
    with state.lock:
        if key not in state.page_cache:
            state.page_cache[key] = (state.version, *render_page(state, users, bind, start, limit))
            while len(state.page_cache) > PAGE_CACHE_SIZE:
                state.page_cache.popitem(last=False)


def batch_get_by_user(state: SimState, req: Request) -> RawJSON:
    userids = req_list(req, "userid_list", max_len=100)
    if not userids:
        raise ApiError(40058, "userid_list is required")
    users = list(dict.fromkeys(state.staff_index(str(u)) for u in userids))
    limit = clamp_limit(req, 50, 100)
    bind = ",".join(map(str, users))
    cursor = req_str(req, "cursor", required=False)
    pos, off = decode_cursor(state, cursor, bind, 2) if cursor else (0, 0)
    cached = state.page_cache.pop((bind, pos, off, limit), None)
    if cached is not None and cached[0] == state.version:
        body, following = cached[1], cached[2]
    else:
        body, following = render_page(state, users, bind, (pos, off), limit)
    if following is not None:
        req.after = functools.partial(prefetch_page, state, users, bind, following, limit)
    return RawJSON(body)


def remark(state: SimState, req: Request) -> dict[str, Any]:
    s = state.staff_index(req_str(req, "userid"))
    i = state.contact_index(req_str(req, "external_userid"))
    if i is None or not state.is_follow(i, s):
        raise ApiError(84061)
    changes: dict[str, Any] = {}
    for key, attr in (
        ("remark", "remark"),
        ("description", "description"),
        ("remark_company", "remark_corp_name"),
    ):
        if key in req.body:
            changes[attr] = str(req.body[key] or "")
    if "remark_mobiles" in req.body:
        changes["remark_mobiles"] = [str(m) for m in req_list(req, "remark_mobiles", max_len=5)]
    state.edit_follow(i, s, **changes)
    return {}


# -- corp tags --------------------------------------------------------------------------


def _sorted_groups(groups: list[TagGroupDef]) -> list[TagGroupDef]:
    # "order: a larger value sorts first"
    return sorted(groups, key=lambda g: -g.order)


def _sorted_tags(tags: list[TagDef]) -> list[TagDef]:
    return sorted(tags, key=lambda t: -t.order)


def get_corp_tag_list(state: SimState, req: Request) -> dict[str, Any]:
    tag_ids = [str(t) for t in req_list(req, "tag_id")]
    group_ids = [str(g) for g in req_list(req, "group_id")]
    out: list[dict[str, Any]] = []
    if group_ids:  # if both are given, tag_id is ignored
        for gid in group_ids:
            g = state.groups.get(gid) or state.deleted_groups.get(gid)
            if g is not None:
                out.append(state.group_json(g, _sorted_tags(g.tags), with_deleted=True))
    elif tag_ids:
        by_group: dict[str, list[TagDef]] = {}
        for tid in tag_ids:
            t = state.tags.get(tid) or state.deleted_tags.get(tid)
            if t is not None:
                by_group.setdefault(t.group_id, []).append(t)
        for gid, tags in by_group.items():
            g = state.groups.get(gid) or state.deleted_groups[gid]
            out.append(state.group_json(g, _sorted_tags(tags), with_deleted=True))
    else:
        for g in _sorted_groups(list(state.groups.values())):
            out.append(state.group_json(g, _sorted_tags(g.tags)))
    return {"tag_group": out}


def add_corp_tag(state: SimState, req: Request) -> dict[str, Any]:
    specs = req_list(req, "tag")
    if not specs:
        raise ApiError(40058, "a tag group may not be empty")
    group_id = req_str(req, "group_id", required=False)
    group_name = req_str(req, "group_name", required=False)
    now = int(state.clock())
    if group_id:
        group = state.groups.get(group_id)
        if group is None:
            raise ApiError(40068, f"group_id {group_id}")
    elif group_name:
        group = next((g for g in state.groups.values() if g.group_name == group_name), None)
        if group is None:
            group = TagGroupDef(
                state.new_id("group"), group_name, now, req_int(req, "order", 0) or 0
            )
            state.groups[group.group_id] = group
    else:
        raise ApiError(40058, "group_id or group_name is required")
    if len(state.tags) + len(specs) > 3000:
        raise ApiError(40058, "at most 3000 tags per corp")
    returned: list[TagDef] = []
    for spec in specs:
        name = str(spec.get("name", "")) if isinstance(spec, dict) else ""
        if not name or len(name) > 30:
            raise ApiError(40058, "tag name must be 1-30 characters")
        existing = next((t for t in group.tags if t.name == name), None)
        if existing is None:  # duplicate names inside a group are created only once
            order = int(spec.get("order") or 0)
            existing = TagDef(state.new_id("tag"), name, group.group_id, now, order)
            group.tags.append(existing)
            state.tags[existing.id] = existing
        if existing not in returned:
            returned.append(existing)
    # tag_group is an object here, an array in get_corp_tag_list.
    return {"tag_group": state.group_json(group, returned)}


def edit_corp_tag(state: SimState, req: Request) -> dict[str, Any]:
    tid = req_str(req, "id")
    name = req_str(req, "name", required=False)
    order = req_int(req, "order")
    target: TagDef | TagGroupDef | None = state.tags.get(tid) or state.groups.get(tid)
    if target is None:
        raise ApiError(40068, f"id {tid}")
    if name:
        if len(name) > 30:
            raise ApiError(40058, "name longer than 30 characters")
        if isinstance(target, TagDef):
            target.name = name
        else:
            target.group_name = name
    if order is not None:
        target.order = order
    return {}


def del_corp_tag(state: SimState, req: Request) -> dict[str, Any]:
    tag_ids = [str(t) for t in req_list(req, "tag_id")]
    group_ids = [str(g) for g in req_list(req, "group_id")]
    if not tag_ids and not group_ids:
        raise ApiError(40058, "tag_id and group_id may not both be empty")
    for tid in tag_ids:
        if tid not in state.tags:
            raise ApiError(40068, f"tag_id {tid}")
    for gid in group_ids:
        if gid not in state.groups:
            raise ApiError(40068, f"group_id {gid}")
    delete_tags(state, tag_ids, group_ids)
    return {}


def delete_tags(state: SimState, tag_ids: list[str], group_ids: list[str]) -> None:
    """Delete tags and groups; a group left without tags is deleted too."""
    for gid in group_ids:
        group = state.groups.get(gid)
        if group is not None:
            tag_ids.extend(t.id for t in group.tags)
    state.bump()  # deleted tags leave the batch rows' tag_id lists
    for tid in tag_ids:
        t = state.tags.pop(tid, None)
        if t is None:
            continue
        state.deleted_tags[tid] = t
        group = state.groups[t.group_id]
        group.tags.remove(t)
        if not group.tags:
            state.deleted_groups[group.group_id] = state.groups.pop(group.group_id)


def mark_tag(state: SimState, req: Request) -> dict[str, Any]:
    add = [str(t) for t in req_list(req, "add_tag")]
    remove = [str(t) for t in req_list(req, "remove_tag")]
    if not add and not remove:
        raise ApiError(40058, "add_tag and remove_tag may not both be empty")
    with state.lock:
        s = state.staff_index(req_str(req, "userid"))
        i = state.contact_index(req_str(req, "external_userid"))
        if i is None or not state.is_follow(i, s):
            raise ApiError(84061)
        for tid in add:
            if tid not in state.tags:
                raise ApiError(40068, f"tag_id {tid}")
        # Two concurrent tag edits of one customer give 45033 (official community answer).
        if i in state.tag_edits_in_flight:
            raise ApiError(45033)
        state.tag_edits_in_flight.add(i)
    try:
        if state.mark_tag_hold:
            time.sleep(state.mark_tag_hold)
        with state.lock:
            current = [t for t in state.follow_data(i, s).tag_ids if t not in remove]
            current += [t for t in add if t not in current]
            state.edit_follow(i, s, tag_ids=current)
    finally:
        with state.lock:
            state.tag_edits_in_flight.discard(i)
    return {}


ROUTES: dict[str, Route] = {
    "gettoken": Route(gettoken),
    "user/get": Route(user_get),
    "externalcontact/get_follow_user_list": Route(get_follow_user_list),
    "externalcontact/list": Route(contact_list),
    "externalcontact/get": Route(contact_get),
    "externalcontact/batch/get_by_user": Route(batch_get_by_user, post=True),
    "externalcontact/remark": Route(remark, post=True),
    "externalcontact/get_corp_tag_list": Route(get_corp_tag_list, post=True),
    "externalcontact/add_corp_tag": Route(add_corp_tag, post=True),
    "externalcontact/edit_corp_tag": Route(edit_corp_tag, post=True),
    "externalcontact/del_corp_tag": Route(del_corp_tag, post=True),
    "externalcontact/mark_tag": Route(mark_tag, post=True, locked=False),
}
