"""Deterministic corp data for the WeCom simulator, generated lazily from a seed.

A benchmark corp has 1,000,000 relationships; materialising them as dicts would cost
gigabytes. Only the *shape* is precomputed: for each staff member an ``array('I')`` of
the contact indexes they follow (a few bytes per relationship), built from a pure
function ``followers(i)``. Every contact and follow field is a pure function of
``(seed, index)`` computed when a page is served, so the same seed always serves the
same corp, byte for byte, however it is paged.
"""

from __future__ import annotations

import hashlib
import json
import time
from array import array
from binascii import b2a_base64
from collections.abc import Container
from dataclasses import dataclass, field
from functools import lru_cache
from math import gcd
from typing import Any

MASK64 = (1 << 64) - 1
ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
DAY = 86_400
YEAR = 365 * DAY

SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡"
    "余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯"
    "龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
)
GIVEN = (
    "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华玉萍红娥玲芬燕彩春菊兰凤洁"
    "梅琳素云莲真环雪荣爱妹霞香月莺媛艳瑞凡佳嘉琼勤珍贞莉桂娣叶璧璐娅琦晶妍茜秋珊莎锦"
    "黛青倩婷姣婉娴瑾颖露瑶怡婵雁蓓纨仪荷丹蓉眉君琴蕊薇菁梦岚苑婕馨瑗琰韵融园艺咏卿聪"
    "澜纯毓悦昭冰爽琬茗羽希宁欣飘育滢馥筠柔竹霭凝晓欢霄枫芸菲寒伊亚宜可姬舒影荔枝思丽"
)
EMOJI = ("🌸", "😊", "🍀", "⭐", "🐱", "🌙", "☀️", "🎈", "💎", "🍓")
LATIN_NICKS = ("Lily", "Tony", "Coco", "Kevin", "Amy", "Jason", "Vivian", "Leo", "Mia", "Ken")
NICK_SUFFIX = ("同学", "小姐姐", "老师", "先生", "女士", "")
POSITIONS = ("采购经理", "店长", "市场总监", "运营", "Manager", "Engineer", "HR")
CORPS = (
    ("腾讯", "腾讯科技有限公司"),
    ("星河", "星河零售集团有限公司"),
    ("云朵", "上海云朵电子商务有限公司"),
    ("蓝海", "深圳蓝海贸易有限公司"),
)
DESCRIPTIONS = (
    "对接采购事务",
    "老客户介绍",
    "门店到访",
    "直播间咨询",
    "采购问题咨询",
    "会员日活动",
)
PERSONAL_TAGS = ("老客户", "意向强", "价格敏感", "需回访")
#: Channel states of the generated 「联系我」 codes (each ≤ 30 chars, the WeCom limit).
DEFAULT_STATES = (
    "store_sh_01",
    "store_bj_02",
    "poster_2024",
    "live_618",
    "mall_checkout",
    "ads_douyin",
    "referral",
)
#: Corp tag groups of a fresh corp: (group name, tag names).
DEFAULT_TAG_GROUPS = (
    ("客户等级", ("A类客户", "B类客户", "C类客户")),
    ("兴趣偏好", ("护肤", "彩妆", "香水", "母婴")),
    ("客户来源", ("门店", "商城", "直播")),
    ("生命周期", ("新客", "活跃", "沉睡", "流失")),
)
EXTERNAL_PROFILE_JSON = '{"external_attr":[{"type":0,"name":"会员等级","text":{"value":"金卡"}}]}'
#: add_way without a state, weighted (WECOM.md §1.4 来源定义).
ADD_WAYS = (0, 1, 1, 2, 2, 3, 4, 5, 6, 6, 201, 202)
#: add_ways where the member added the customer, so oper_userid is the member.
MEMBER_INITIATED = frozenset({2, 5, 6, 9})


def _assert_json_safe(*tables: Any) -> None:
    # batch_row_text() pastes these strings into JSON unescaped; keep them escape-free.
    for table in tables:
        for item in table:
            for text in item if isinstance(item, tuple) else (item,):
                if any(c in text for c in '"\\') or any(ord(c) < 32 for c in text):
                    raise AssertionError(f"{text!r} needs JSON escaping")


_assert_json_safe(SURNAMES, GIVEN, EMOJI, LATIN_NICKS, NICK_SUFFIX, POSITIONS, CORPS, DESCRIPTIONS)


@lru_cache(maxsize=4096)
def json_str(text: str) -> str:
    """A JSON string literal (UTF-8, not \\u-escaped, as WeCom sends)."""
    return json.dumps(text, ensure_ascii=False)


def mix64(x: int) -> int:
    """splitmix64 finaliser: a cheap, well-spread 64-bit hash of an integer."""
    x = (x + 0x9E3779B97F4A7C15) & MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK64
    return x ^ (x >> 31)


_B64_TO_ALNUM = bytes.maketrans(b"+/", b"Qn")


def alnum(value: int, length: int) -> str:
    """Up to 22 alphanumeric characters derived from ``value`` (WeCom ids look like this).

    blake2b + base64 in C is several times faster than a Python base-62 loop, and ids
    are minted for every row served.
    """
    digest = hashlib.blake2b((value & MASK64).to_bytes(8, "little"), digest_size=16).digest()
    return b2a_base64(digest, newline=False)[:length].translate(_B64_TO_ALNUM).decode("ascii")


def _seed_key(seed: int, label: str) -> int:
    digest = hashlib.blake2b(f"{seed}:{label}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


M32 = 0xFFFFFFFF


class IdCodec:
    """external_userid <-> contact index, reversible without a 1M-entry dict.

    ``"wm" + 8 hex (a keyed bijection of the 32-bit index) + 22 alnum check chars``: the
    ids look random and unordered (so a sync cannot lean on their order), are 32 chars
    like real ones, decode back to the index in O(1), and made-up ids fail the check.
    """

    def __init__(self, seed: int) -> None:
        k = _seed_key(seed, "eid")
        self._mul1 = (k & M32) | 1  # odd multipliers are invertible mod 2**32
        self._mul2 = ((k >> 32) & M32) | 1
        self._inv1 = pow(self._mul1, -1, 1 << 32)
        self._inv2 = pow(self._mul2, -1, 1 << 32)
        self._add = _seed_key(seed, "eid-add") & M32
        self._tag = _seed_key(seed, "eid-tag")

    def _permute(self, i: int) -> int:
        p = (i * self._mul1 + self._add) & M32
        p ^= p >> 16  # xorshift by half the width is its own inverse
        return (p * self._mul2) & M32

    def _unpermute(self, p: int) -> int:
        p = (p * self._inv2) & M32
        p ^= p >> 16
        return ((p - self._add) * self._inv1) & M32

    def encode(self, index: int) -> str:
        p = (index * self._mul1 + self._add) & M32  # _permute, inlined for the hot path
        p ^= p >> 16
        p = (p * self._mul2) & M32
        return f"wm{p:08x}{alnum(self._tag ^ p, 22)}"

    def decode(self, external_userid: str) -> int | None:
        if len(external_userid) != 32 or not external_userid.startswith("wm"):
            return None
        try:
            p = int(external_userid[2:10], 16)
        except ValueError:
            return None
        if external_userid[2:10] != f"{p:08x}" or external_userid[10:] != alnum(self._tag ^ p, 22):
            return None
        return self._unpermute(p)


@dataclass(frozen=True)
class DataSpec:
    """What corp to generate. Same spec, same corp."""

    seed: int = 1
    contacts: int = 1000
    staff: int = 10
    #: Exact number of (customer, follower) pairs, in [contacts, 3 * contacts]; None
    #: draws 1-3 followers per customer (about 1.65 per customer on average).
    relationships: int | None = None
    #: Staff with customer contact enabled but no customers (list answers 84061 for
    #: them). None means 1 when there are at least 2 staff.
    idle_staff: int | None = None
    #: Customer group chats to generate. None means min(20, 2 * active staff).
    groups: int | None = None
    states: tuple[str, ...] = DEFAULT_STATES
    #: Anchor for createtime ("the last year" before it). None: today's midnight (UTC+8),
    #: so one day's runs serve identical data.
    now: int | None = None
    #: The share of follows carrying a channel state, in percent.
    state_percent: int = 60
    #: The follow users' userids (``staff`` of them); None: "staff0001", "staff0002", ...
    #: The demo passes its own staff's userids so that synced contacts land on them.
    staff_ids: tuple[str, ...] | None = None


@dataclass
class TagDef:
    id: str
    name: str
    group_id: str
    create_time: int
    order: int


@dataclass
class TagGroupDef:
    group_id: str
    group_name: str
    create_time: int
    order: int
    tags: list[TagDef] = field(default_factory=list)


class Dataset:
    """The generated corp: staff, tag groups, group chats and the follow graph."""

    def __init__(self, spec: DataSpec) -> None:
        if spec.contacts < 0 or spec.staff < 1:
            raise ValueError("need contacts >= 0 and staff >= 1")
        if any(len(s) > 30 for s in spec.states):
            raise ValueError("a contact-way state is at most 30 characters")
        self.spec = spec
        self.seed = spec.seed
        self.codec = IdCodec(spec.seed)
        self.now = spec.now if spec.now is not None else _today_midnight_cst()
        idle = spec.idle_staff if spec.idle_staff is not None else (1 if spec.staff >= 2 else 0)
        if not 0 <= idle < spec.staff:
            raise ValueError("idle_staff must leave at least one active staff member")
        self.active_staff = spec.staff - idle
        self.staff_ids = _staff_ids(spec)
        staff_key = _seed_key(self.seed, "staff")
        self.staff_names = [self._person_name(mix64(staff_key + n), n) for n in range(spec.staff)]
        self.user_index = {u: n for n, u in enumerate(self.staff_ids)}
        self._k_contact = _seed_key(self.seed, "contact")
        self._k_follow = _seed_key(self.seed, "follow")
        self._k_graph = _seed_key(self.seed, "graph")
        self._states = spec.states
        self._state_percent = spec.state_percent
        self._setup_relationship_target()
        self.tag_groups = self._make_tag_groups()
        self.initial_tag_ids = [t.id for g in self.tag_groups for t in g.tags]
        self.user_contacts = self._build_graph()
        self.relationship_count = sum(len(a) for a in self.user_contacts)
        self.group_chats = self._make_group_chats()

    # -- the follow graph ------------------------------------------------------------

    def _setup_relationship_target(self) -> None:
        n, a = self.spec.contacts, self.active_staff
        target = self.spec.relationships
        self._extra: int | None = None
        if target is None:
            return
        cap = n * min(3, a)
        if not n <= target <= cap:
            raise ValueError(f"relationships must be within [{n}, {cap}] for these sizes")
        self._extra = target - n
        # An affine bijection of [0, n) spreads the "who gets an extra follower" pattern
        # so it does not line up with contact order.
        mult = (self._k_graph % max(n, 1)) | 1
        while n and gcd(mult, n) != 1:
            mult += 2
        self._perm_mult, self._perm_add = mult, (self._k_graph >> 20) % max(n, 1)

    def follower_count(self, i: int, h: int) -> int:
        a = self.active_staff
        if self._extra is None:
            r = h & 0xFF  # 50% one follower, 35% two, 15% three
            k = 1 if r < 128 else (2 if r < 218 else 3)
        else:
            n = self.spec.contacts
            j = (i * self._perm_mult + self._perm_add) % n
            k = 1 + (j + 1) * self._extra // n - j * self._extra // n
        return min(k, a)

    def followers(self, i: int) -> list[int]:
        """The staff indexes following generated contact ``i`` (primary first)."""
        if i >= self.spec.contacts:
            return []
        h = mix64(self._k_graph ^ i)
        a = self.active_staff
        k = self.follower_count(i, h)
        u = ((h >> 8) & 0xFFFFFF) / 0x1000000
        # Half the primaries are skewed toward the first staff, so loads are unequal
        # (a real corp has star sellers), which exercises uneven paging.
        s0 = int(a * (u * u if h & 0x100000000 else u))
        if k == 1:
            return [s0]
        d1 = 1 + (h >> 33) % (a - 1)
        out = [s0, (s0 + d1) % a]
        if k == 3:
            d2 = 1 + (h >> 45) % (a - 1)
            if d2 == d1:
                d2 = d1 % (a - 1) + 1
            out.append((s0 + d2) % a)
        return out

    def _build_graph(self) -> list[array[int]]:
        lists: list[array[int]] = [array("I") for _ in self.staff_ids]
        appenders = [lst.append for lst in lists]
        followers = self.followers
        for i in range(self.spec.contacts):
            for s in followers(i):
                appenders[s](i)
        return lists

    # -- contacts and follows --------------------------------------------------------

    def _person_name(self, h: int, salt: int) -> str:
        h = mix64(h ^ salt)
        name = SURNAMES[h % len(SURNAMES)] + GIVEN[(h >> 8) % len(GIVEN)]
        if (h >> 16) & 1:
            name += GIVEN[(h >> 24) % len(GIVEN)]
        return name

    def external_userid(self, i: int) -> str:
        return self.codec.encode(i)

    def _contact_parts(self, i: int) -> tuple[str, str, int, int, str, int]:
        """(external_userid, name, type, gender, unionid or "", hash) of contact ``i``."""
        h = mix64(self._k_contact ^ i)
        eid = self.codec.encode(i)
        roll = (h >> 40) & 0xFF
        if roll < 13:  # about 5%: a latin WeChat nickname
            name = LATIN_NICKS[h % len(LATIN_NICKS)] + NICK_SUFFIX[(h >> 8) % len(NICK_SUFFIX)]
        else:
            n = mix64(h ^ i)  # inlined _person_name: this runs for every row served
            name = SURNAMES[n % len(SURNAMES)] + GIVEN[(n >> 8) % len(GIVEN)]
            if (n >> 16) & 1:
                name += GIVEN[(n >> 24) % len(GIVEN)]
        if 13 <= roll < 36:  # about 9%: WeChat nicknames carry emoji
            name = name + EMOJI[(h >> 12) % len(EMOJI)]
        g = (h >> 48) % 20
        ctype = 2 if (h >> 53) % 100 < 15 else 1
        # About 80% are bound to the corp's WeChat developer id. The unionid is derived
        # from the id's hash tail: unique per contact, and no extra hashing.
        unionid = "o" + eid[31:9:-1] + eid[2:7] if (h >> 60) < 13 else ""
        return eid, name, ctype, 0 if g < 2 else (1 if g < 11 else 2), unionid, h

    def contact(self, i: int, avatar_base: str) -> dict[str, Any]:
        """external_contact of contact ``i`` (WECOM.md §1.4; type-2 fields only for type 2)."""
        eid, name, ctype, gender, unionid, h = self._contact_parts(i)
        out: dict[str, Any] = {
            "external_userid": eid,
            "name": name,
            "avatar": f"{avatar_base}{eid}.png",
            "type": ctype,
            "gender": gender,
        }
        if unionid:
            out["unionid"] = unionid
        if ctype == 2:
            short, full = CORPS[(h >> 20) % len(CORPS)]
            out["position"] = POSITIONS[(h >> 24) % len(POSITIONS)]
            out["corp_name"] = short
            out["corp_full_name"] = full
            out["external_profile"] = json.loads(EXTERNAL_PROFILE_JSON)
        return out

    def batch_row_text(
        self, i: int, s: int, avatar_base: str, live_tags: Container[str] | None
    ) -> str:
        """One batch/get_by_user row of a generated, unedited follow, as JSON text.

        The fast path of the sync benchmark: the same content as ``contact()`` plus
        ``follow_info`` built as dicts and json.dumps'ed, at about a third of the cost.
        It is only correct because every generated string comes from the tables above
        (checked JSON-safe at import) or is JSON-escaped here. ``live_tags`` filters
        tag ids once tags have been deleted (None: none were).
        """
        eid, name, ctype, gender, unionid, h = self._contact_parts(i)
        parts = [
            f'{{"external_contact":{{"external_userid":"{eid}","name":"{name}",'
            f'"avatar":"{avatar_base}{eid}.png","type":{ctype},"gender":{gender}'
        ]
        if unionid:
            parts.append(f',"unionid":"{unionid}"')
        if ctype == 2:
            short, full = CORPS[(h >> 20) % len(CORPS)]
            parts.append(
                f',"position":"{POSITIONS[(h >> 24) % len(POSITIONS)]}","corp_name":"{short}",'
                f'"corp_full_name":"{full}","external_profile":{EXTERNAL_PROFILE_JSON}'
            )
        fd = self.follow(i, s, eid)
        tags = fd.tag_ids if live_tags is None else [t for t in fd.tag_ids if t in live_tags]
        tag_text = ",".join(f'"{t}"' for t in tags)
        mobiles = ",".join(f'"{m}"' for m in fd.remark_mobiles)
        parts.append(
            f'}},"follow_info":{{"userid":"{fd.userid}","remark":"{fd.remark}",'
            f'"description":"{fd.description}","createtime":{fd.createtime},'
            f'"tag_id":[{tag_text}],"remark_mobiles":[{mobiles}],'
            f'"oper_userid":"{fd.oper_userid}","add_way":{fd.add_way}'
        )
        if fd.remark_corp_name:
            parts.append(f',"remark_corp_name":"{fd.remark_corp_name}"')
        if fd.state:
            parts.append(f',"state":{json_str(fd.state)}')
        parts.append("}}")
        return "".join(parts)

    def follow(self, i: int, s: int, eid: str | None = None) -> FollowData:
        """The generated follow of contact ``i`` by staff ``s`` (``eid``: its id, if known)."""
        h = mix64(self._k_follow ^ (i << 20) ^ s)
        # A second, cheaper scramble (multiply-xorshift) instead of another mix64 call:
        # this runs for every row served.
        h2 = ((h * 0xD6E8FEB86659FD93) & MASK64) ^ (h >> 29)
        states = self._states
        state = ""
        if states and h % 100 < self._state_percent:
            state = states[(h >> 8) % len(states)]
        add_way = 1 if state else ADD_WAYS[(h >> 12) % len(ADD_WAYS)]
        if add_way in MEMBER_INITIATED:
            oper = self.staff_ids[s]
        elif add_way in (201, 202):
            oper = self.staff_ids[0]  # the admin who shared/assigned
        else:
            oper = eid or self.codec.encode(i)
        tags: list[str] = []
        ntags = (h >> 16) % 4
        pool = self.initial_tag_ids
        if pool:
            for j in range(ntags):
                tid = pool[(h2 >> (j * 8)) % len(pool)]
                if tid not in tags:
                    tags.append(tid)
        r = (h >> 24) % 100
        remark = ""
        if r < 30:
            remark = SURNAMES[(h2 >> 40) % len(SURNAMES)] + ("先生" if r % 2 else "女士")
        mobiles = [f"13{(h2 >> 20) % 1_000_000_000:09d}"] if (h >> 32) % 4 == 0 else []
        # Positional: measurably cheaper than keywords on the hot path (field order!).
        return FollowData(
            self.staff_ids[s],
            remark,
            DESCRIPTIONS[(h >> 36) % len(DESCRIPTIONS)] if (h >> 44) % 7 == 0 else "",
            self.now - 1 - (h2 % YEAR),
            tags,
            [PERSONAL_TAGS[(h >> 48) % len(PERSONAL_TAGS)]] if (h >> 52) % 10 == 0 else [],
            "星河零售" if (h >> 56) % 10 == 0 else "",
            mobiles,
            oper,
            add_way,
            state,
        )

    # -- tags and group chats --------------------------------------------------------

    def tag_id(self, label: str) -> str:
        """A stable "et..." id (32 chars like the real ones) for a tag or tag group."""
        k = _seed_key(self.seed, label)
        return "et" + alnum(mix64(k), 15) + alnum(mix64(k ^ 0xABCDEF), 15)

    def _make_tag_groups(self) -> list[TagGroupDef]:
        groups = []
        created = self.now - YEAR - 30 * DAY
        for gi, (gname, names) in enumerate(DEFAULT_TAG_GROUPS):
            gid = self.tag_id(f"group:{gi}")
            group = TagGroupDef(gid, gname, created, len(DEFAULT_TAG_GROUPS) - gi)
            for ti, tname in enumerate(names):
                group.tags.append(
                    TagDef(self.tag_id(f"tag:{gi}:{ti}"), tname, gid, created, len(names) - ti)
                )
            groups.append(group)
        return groups

    def _make_group_chats(self) -> list[dict[str, Any]]:
        a = self.active_staff
        count = self.spec.groups if self.spec.groups is not None else min(20, 2 * a)
        chats = []
        for g in range(count):
            h = mix64(_seed_key(self.seed, "chat") ^ g)
            owner_idx = g % a
            owner = self.staff_ids[owner_idx]
            created = self.now - 1 - (h % YEAR)
            members: list[dict[str, Any]] = [
                {
                    "userid": owner,
                    "type": 1,
                    "join_time": created,
                    "join_scene": 1,
                    "group_nickname": "",
                    "name": self.staff_names[owner_idx],
                }
            ]
            if a > 1:
                other = (owner_idx + 1 + (h >> 8) % (a - 1)) % a
                members.append(
                    {
                        "userid": self.staff_ids[other],
                        "type": 1,
                        "join_time": created + 60,
                        "join_scene": 1,
                        "invitor": {"userid": owner},
                        "group_nickname": "",
                        "name": self.staff_names[other],
                    }
                )
            pool = self.user_contacts[owner_idx]
            for j in range(min(len(pool), 3 + (h >> 16) % 23)):
                ci = pool[(j * 7 + (h >> 24)) % len(pool)]
                eid = self.codec.encode(ci)
                if any(m["userid"] == eid for m in members):
                    continue
                c = self.contact(ci, "")
                scene = 3 if (h >> j) & 1 else 1
                member: dict[str, Any] = {
                    "userid": eid,
                    "type": 2,
                    "join_time": created + 3600 * (j + 1),
                    "join_scene": scene,
                    "group_nickname": "",
                    "name": c["name"],
                }
                if "unionid" in c:
                    member["unionid"] = c["unionid"]
                if scene == 1:
                    member["invitor"] = {"userid": owner}
                elif self.spec.states:
                    member["state"] = self.spec.states[j % len(self.spec.states)]
                members.append(member)
            chats.append(
                {
                    "chat_id": "wr" + alnum(mix64(h ^ 0x77), 30),
                    "name": f"{self.staff_names[owner_idx]}的客户群{g + 1}",
                    "owner": owner,
                    "create_time": created,
                    "notice": "文明沟通 拒绝广告" if g % 2 == 0 else "",
                    "member_list": members,
                    "admin_list": [{"userid": members[1]["userid"]}] if len(members) > 1 else [],
                    "status": 0,
                }
            )
        return chats


@dataclass(slots=True)
class FollowData:
    """One (customer, staff) relationship, as WeCom reports it."""

    userid: str
    remark: str = ""
    description: str = ""
    createtime: int = 0
    tag_ids: list[str] = field(default_factory=list)
    personal_tags: list[str] = field(default_factory=list)
    remark_corp_name: str = ""
    remark_mobiles: list[str] = field(default_factory=list)
    oper_userid: str = ""
    add_way: int = 0
    state: str = ""


def _staff_ids(spec: DataSpec) -> list[str]:
    if spec.staff_ids is None:
        width = max(4, len(str(spec.staff)))
        return [f"staff{n:0{width}d}" for n in range(1, spec.staff + 1)]
    ids = list(spec.staff_ids)
    if len(ids) != spec.staff:
        raise ValueError(f"{len(ids)} staff userids given for {spec.staff} staff")
    if len(set(ids)) != len(ids):
        raise ValueError("staff userids must be unique")
    for userid in ids:
        # WeCom userids are 1-64 characters; batch_row_text() pastes them into JSON
        # unescaped, so they must need no escaping either.
        if not 0 < len(userid) <= 64 or any(c in userid for c in '"\\') or not userid.isprintable():
            raise ValueError(f"{userid!r} is not a usable WeCom userid")
        if len(userid) == 32 and userid.startswith("wm"):
            raise ValueError(f"{userid!r} looks like an external_userid")
    return ids


def _today_midnight_cst() -> int:
    # WeCom's "day" (1 mass message per customer per day, stat_time) is China time.
    cst = int(time.time()) + 8 * 3600
    return cst - cst % DAY - 8 * 3600
