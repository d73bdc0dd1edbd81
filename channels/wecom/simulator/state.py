"""The simulator's mutable state: tokens, error injection, counters and the corp's data.

The generated :class:`~.data.Dataset` is never modified; everything that changes lives in
overlays here (added/deleted follows, edited follows, tags, contact ways, ...), so a
reset is instant even for a million relationships. One re-entrant lock guards it all:
handlers are short and the GIL serialises them anyway.
"""

from __future__ import annotations

import copy
import dataclasses
import secrets
import threading
import time
from array import array
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from channels.wecom.simulator.data import Dataset, FollowData, TagDef, TagGroupDef
from channels.wecom.simulator.errors import ApiError

DEFAULT_TOKEN_TTL = 7200
#: WeCom: a welcome code is valid for 20 s and usable once (DOC/92137).
DEFAULT_WELCOME_TTL = 20.0
OAUTH_CODE_TTL = 300.0


@dataclass
class InjectRule:
    """Answer the next ``remaining`` calls to ``path`` with an error, a 5xx or a delay."""

    id: int
    path: str | None = None
    errcode: int | None = None
    http_status: int | None = None
    delay_ms: int = 0
    remaining: int | None = 1  # None: until cleared

    def matches(self, path: str) -> bool:
        if self.path is None:
            return path != "gettoken"  # "any API" should not break token fetching
        if self.path.endswith("*"):
            return path.startswith(self.path[:-1])
        return path == self.path.strip("/")

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class ContactWay:
    config_id: str
    type: int
    scene: int
    create_time: int
    style: int | None = None
    remark: str = ""
    skip_verify: bool = True
    state: str = ""
    user: list[str] = field(default_factory=list)
    party: list[int] = field(default_factory=list)
    is_temp: bool = False
    expires_in: int | None = None
    chat_expires_in: int | None = None
    unionid: str = ""
    is_exclusive: bool = False
    conclusions: dict[str, Any] | None = None
    qr_code: str = ""


@dataclass
class WelcomeCode:
    code: str
    contact: int
    staff: int
    issued_at: float
    used: bool = False


@dataclass
class MsgTemplate:
    msgid: str
    chat_type: str
    create_time: int
    body: dict[str, Any]
    #: sender userid -> recipients (external_userid or chat_id)
    recipients: dict[str, list[str]]
    #: sender userid -> send_time once the member confirmed in the client
    sent: dict[str, int] = field(default_factory=dict)
    #: (sender, recipient) -> send_result status (1 sent, 2 not a friend, 3 daily limit)
    results: dict[tuple[str, str], int] = field(default_factory=dict)


@dataclass
class Transfer:
    kind: str  # "onjob" | "resigned"
    handover: int
    takeover: int
    contact: int
    created: int
    status: int = 2  # 1 done, 2 waiting, 3 refused, 4 takeover over limit
    takeover_time: int = 0


class SimState:
    """All state of one simulated corp."""

    def __init__(
        self,
        dataset: Dataset,
        *,
        corp_id: str,
        secret: str,
        token_ttl: int = DEFAULT_TOKEN_TTL,
        welcome_ttl: float = DEFAULT_WELCOME_TTL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.dataset = dataset
        self.corp_id = corp_id
        self.secret = secret
        self.token_ttl = token_ttl
        self.welcome_ttl = welcome_ttl
        self.clock = clock
        self.lock = threading.RLock()
        self.public_base = "http://127.0.0.1/"
        #: Set False to make mass messages wait for a (simulated) member confirmation.
        self.groupmsg_auto_confirm = True
        #: Seconds mark_tag holds a customer "in flight"; tests raise it to provoke 45033.
        self.mark_tag_hold = 0.0
        #: Bumped by every change a batch page could show; prefetched pages keep the
        #: version they were rendered at and are served only while it is current.
        self.version = 0
        self.page_cache: OrderedDict[tuple[Any, ...], tuple[Any, ...]] = OrderedDict()
        self.tokens: dict[str, float] = {}
        self.current_token: str | None = None
        self.tickets: dict[str, tuple[str, float]] = {}
        self.rules: list[InjectRule] = []
        self._rule_seq = 0
        self.calls: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.reset()

    # -- lifecycle -------------------------------------------------------------------

    def reset(self) -> None:
        """Back to the generated corp; tokens survive (clients keep working)."""
        ds = self.dataset
        with self.lock:
            self.bump()
            self.added: dict[int, array[int]] = {}
            self.extra_followers: dict[int, list[int]] = {}
            self.deleted: set[tuple[int, int]] = set()
            self.follow_over: dict[tuple[int, int], FollowData] = {}
            self.contact_over: dict[int, dict[str, Any]] = {}
            self.custom_ids: dict[str, int] = {}
            self.custom_rev: dict[int, str] = {}
            self.next_contact = ds.spec.contacts
            self.resigned: dict[int, int] = {}
            self.groups: dict[str, TagGroupDef] = {
                g.group_id: copy.deepcopy(g) for g in ds.tag_groups
            }
            self.tags: dict[str, TagDef] = {t.id: t for g in self.groups.values() for t in g.tags}
            self.deleted_tags: dict[str, TagDef] = {}
            self.deleted_groups: dict[str, TagGroupDef] = {}
            self._id_seq = 0
            self.contact_ways: dict[str, ContactWay] = {}
            self.welcome_codes: dict[str, WelcomeCode] = {}
            self.welcome_sent: list[dict[str, Any]] = []
            self.templates: dict[str, MsgTemplate] = {}
            self.received_on: dict[tuple[str, int], str] = {}
            self.chats: dict[str, dict[str, Any]] = {
                c["chat_id"]: copy.deepcopy(c) for c in ds.group_chats
            }
            self.transfers: list[Transfer] = []
            self.oauth_codes: dict[str, tuple[str, float]] = {}
            self.tag_edits_in_flight: set[int] = set()
            self.rules = []
            self.calls.clear()
            self.errors.clear()

    def bump(self) -> None:
        with self.lock:
            self.version += 1
            self.page_cache.clear()

    def new_id(self, label: str) -> str:
        """A deterministic fresh id (same seed and same call order, same ids)."""
        self._id_seq += 1
        # A namespace of its own: "group:1" would collide with the generated groups' ids.
        return self.dataset.tag_id(f"minted:{label}:{self._id_seq}")

    # -- tokens ----------------------------------------------------------------------

    def get_token(self, corpid: str, secret: str) -> tuple[str, int]:
        if corpid != self.corp_id:
            raise ApiError(40013)
        if secret != self.secret:
            raise ApiError(40001)
        now = self.clock()
        with self.lock:
            tok = self.current_token
            # WeCom returns the same token for the whole lifetime (DOC/91039).
            if tok is not None and self.tokens.get(tok, 0) > now:
                return tok, int(self.tokens[tok] - now)
            tok = secrets.token_urlsafe(96)
            self.tokens[tok] = now + self.token_ttl
            self.current_token = tok
            return tok, self.token_ttl

    def check_token(self, token: str | None) -> None:
        if not token:
            raise ApiError(41001)
        expires = self.tokens.get(token)
        if expires is None:
            raise ApiError(40014)
        if expires <= self.clock():
            raise ApiError(42001)

    def expire_tokens(self) -> int:
        with self.lock:
            for tok in self.tokens:
                self.tokens[tok] = 0.0
            self.current_token = None
            self.tickets.clear()
            return len(self.tokens)

    def ticket(self, kind: str) -> tuple[str, int]:
        now = self.clock()
        with self.lock:
            cur = self.tickets.get(kind)
            if cur and cur[1] > now:
                return cur[0], int(cur[1] - now)
            value = secrets.token_urlsafe(64)
            self.tickets[kind] = (value, now + DEFAULT_TOKEN_TTL)
            return value, DEFAULT_TOKEN_TTL

    # -- injection and counters ------------------------------------------------------

    def add_rule(self, **kwargs: Any) -> InjectRule:
        with self.lock:
            self._rule_seq += 1
            rule = InjectRule(id=self._rule_seq, **kwargs)
            self.rules.append(rule)
            return rule

    def take_rule(self, path: str) -> InjectRule | None:
        """The first live rule matching ``path``, consuming one of its uses."""
        with self.lock:
            for rule in self.rules:
                if rule.matches(path):
                    if rule.remaining is not None:
                        rule.remaining -= 1
                        if rule.remaining <= 0:
                            self.rules.remove(rule)
                    return rule
        return None

    def count(self, path: str, errcode: int) -> None:
        with self.lock:
            self.calls[path] += 1
            if errcode:
                self.errors[path] += 1

    def counters(self) -> dict[str, Any]:
        with self.lock:
            return {
                "total": sum(self.calls.values()),
                "paths": dict(self.calls),
                "errors": dict(self.errors),
            }

    # -- contacts and the follow graph -----------------------------------------------

    def staff_index(self, userid: str) -> int:
        s = self.dataset.user_index.get(userid)
        if s is None:
            raise ApiError(40003, f"userid {userid!r}")
        return s

    def eid(self, i: int) -> str:
        return self.custom_rev.get(i) or self.dataset.codec.encode(i)

    def contact_index(self, external_userid: str) -> int | None:
        i = self.custom_ids.get(external_userid)
        if i is None:
            i = self.dataset.codec.decode(external_userid)
            if i is None or i >= self.next_contact or i in self.custom_rev:
                return None
        return i

    def followers_of(self, i: int) -> list[int]:
        out = self.dataset.followers(i) + self.extra_followers.get(i, [])
        if self.deleted:
            out = [s for s in out if (i, s) not in self.deleted]
        return out

    def is_follow(self, i: int, s: int) -> bool:
        return s in self.followers_of(i)

    def follow_data(self, i: int, s: int, eid: str | None = None) -> FollowData:
        fd = self.follow_over.get((i, s))
        return fd if fd is not None else self.dataset.follow(i, s, eid)

    def contact_json(self, i: int) -> dict[str, Any]:
        over = self.contact_over.get(i)
        if over is not None:
            return over
        return self.dataset.contact(i, self.public_base + "avatar/")

    def user_contacts(self, s: int) -> Iterator[int]:
        deleted = self.deleted
        for seq in (self.dataset.user_contacts[s], self.added.get(s, ())):
            for i in seq:
                if not deleted or (i, s) not in deleted:
                    yield i

    def slot(self, s: int, off: int) -> int | None:
        """The contact index at position ``off`` of staff ``s``'s follow list, if any."""
        base = self.dataset.user_contacts[s]
        if off < len(base):
            return base[off]
        extra = self.added.get(s)
        off -= len(base)
        if extra is not None and off < len(extra):
            return extra[off]
        return None

    def new_contact(
        self, *, name: str | None = None, external_userid: str | None = None, **fields: Any
    ) -> int:
        """A customer who was not in the generated data (a new scan, say)."""
        with self.lock:
            self.bump()
            i = self.next_contact
            self.next_contact += 1
            if external_userid:
                if self.contact_index(external_userid) is not None:
                    raise ValueError(f"external_userid {external_userid} already exists")
                if self.dataset.codec.decode(external_userid) is not None:
                    # It would also decode to a future generated index: two ids, one string.
                    raise ValueError(f"{external_userid} is reserved for generated contacts")
                self.custom_ids[external_userid] = i
                self.custom_rev[i] = external_userid
            contact = self.dataset.contact(i, self.public_base + "avatar/")
            if external_userid:
                contact["external_userid"] = external_userid
                contact["avatar"] = f"{self.public_base}avatar/{external_userid}.png"
            if name:
                contact["name"] = name
            contact.update(fields)
            self.contact_over[i] = contact
            return i

    def add_follow(self, i: int, s: int, data: FollowData) -> None:
        with self.lock:
            self.bump()
            self.follow_over[(i, s)] = data
            if (i, s) in self.deleted:
                # Re-adding keeps the old slot in the paging order.
                self.deleted.discard((i, s))
                return
            if s in self.dataset.followers(i) or s in self.extra_followers.get(i, []):
                return
            self.extra_followers.setdefault(i, []).append(s)
            self.added.setdefault(s, array("I")).append(i)

    def delete_follow(self, i: int, s: int) -> bool:
        with self.lock:
            if not self.is_follow(i, s):
                return False
            # Tombstone rather than remove: cursors are offsets into the follow lists,
            # and deleting from the middle would make a paging client skip rows.
            self.deleted.add((i, s))
            self.bump()
            return True

    def edit_follow(self, i: int, s: int, **changes: Any) -> FollowData:
        with self.lock:
            self.bump()
            fd = dataclasses.replace(self.follow_data(i, s), **changes)
            self.follow_over[(i, s)] = fd
            return fd

    # -- tags ------------------------------------------------------------------------

    def live_tags(self, tag_ids: list[str]) -> list[str]:
        tags = self.tags
        return [t for t in tag_ids if t in tags]

    @staticmethod
    def tag_json(t: TagDef, with_deleted: bool) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": t.id,
            "name": t.name,
            "create_time": t.create_time,
            "order": t.order,
        }
        if with_deleted:
            out["deleted"] = False
        return out

    def group_json(
        self, g: TagGroupDef, tags: list[TagDef] | None = None, with_deleted: bool = False
    ) -> dict[str, Any]:
        out: dict[str, Any] = {
            "group_id": g.group_id,
            "group_name": g.group_name,
            "create_time": g.create_time,
            "order": g.order,
        }
        if with_deleted:
            out["deleted"] = g.group_id in self.deleted_groups
        rows = []
        for t in g.tags if tags is None else tags:
            row = self.tag_json(t, with_deleted)
            if with_deleted:
                row["deleted"] = t.id in self.deleted_tags
            rows.append(row)
        out["tag"] = rows
        return out
