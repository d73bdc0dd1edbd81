"""WeCom error answers: HTTP 200, an errcode, and an errmsg carrying a hint.

Clients must branch on ``errcode`` only (DOC/90313); the errmsg text imitates the real
one ("not external contact, hint: [...], from ip: ..., more info at ...") so that log
parsing and error display can be tested against something realistic.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

#: The English errmsg WeCom sends (or the closest known) for each errcode used here.
ERRMSG: dict[int, str] = {
    -1: "system busy",
    40001: "invalid credential",
    40003: "invalid userid",
    40013: "invalid corpid",
    40014: "invalid access_token",
    40029: "invalid code",
    40050: "chatid not found",
    40058: "invalid parameter",
    40068: "invalid tagid",
    40096: "invalid external userid",
    40097: "the user is not resigned",
    40128: "customer transfer too frequent",
    40129: "customer is transferring",
    41001: "access_token missing",
    41037: "missing contact way type",
    41038: "missing contact way scene",
    41039: "invalid contact way type",
    41040: "invalid contact way scene",
    41041: "contact way user count exceed limit",
    41042: "invalid contact way style",
    41043: "missing contact way config_id",
    41044: "invalid contact way config_id",
    41045: "contact way count exceed limit",
    41048: "no customer to send",
    41049: "missing welcome code",
    41050: "invalid welcome code",
    41051: "customer and user has started chatting",
    42001: "access_token expired",
    43002: "require POST method",
    44004: "empty content",
    45002: "content size out of limit",
    45009: "api freq out of limit",
    45033: "api concurrent out of limit",
    47001: "data format error",
    48002: "api forbidden",
    60111: "userid not found",
    81017: "request count exceed limit, please use owner_filter",
    84061: "not external contact",
    90501: "chat is not external group chat",
}

#: List fields WeCom still sends (empty) alongside an error on these paths (WECOM.md §0).
EMPTY_ON_ERROR: dict[str, dict[str, Any]] = {
    "externalcontact/list": {"external_userid": []},
    "externalcontact/get": {"follow_user": []},
    "externalcontact/get_follow_user_list": {"follow_user": []},
    "externalcontact/batch/get_by_user": {"external_contact_list": []},
}

_hint_seq = itertools.count(1)


class ApiError(Exception):
    """Raised by a handler; the server turns it into a WeCom error body."""

    def __init__(self, errcode: int, detail: str = "", **extra: Any) -> None:
        super().__init__(f"{errcode} {detail}")
        self.errcode = errcode
        self.detail = detail
        self.extra = extra


def errmsg(errcode: int, detail: str = "", ip: str = "127.0.0.1") -> str:
    base = ERRMSG.get(errcode, "error")
    if detail:
        base = f"{base}: {detail}"
    hint = f"{int(time.time())}{next(_hint_seq):013d}"
    return (
        f"{base}, hint: [{hint}], from ip: {ip}, "
        f"more info at https://open.work.weixin.qq.com/devtool/query?e={errcode}"
    )


def error_body(
    errcode: int, path: str, detail: str = "", ip: str = "127.0.0.1", **extra: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {"errcode": errcode, "errmsg": errmsg(errcode, detail, ip)}
    body.update(EMPTY_ON_ERROR.get(path, {}))
    body.update(extra)
    return body
