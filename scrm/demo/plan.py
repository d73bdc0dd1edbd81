"""The demo brand as data: a deterministic plan, written by ``scrm.demo.seed``."""


# The Chinese demo text uses full-width punctuation, which is correct there, not a typo.
# ruff: noqa: RUF001

from __future__ import annotations

import random
import zoneinfo
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar

from django.utils import timezone

from channels.models import ChannelKind
from customers.models import (
    ActivityKind,
    ActivitySource,
    Gender,
    OrderStatus,
    ProductRole,
)
from scrm.roles import Role

DEFAULT_SEED = 2026
DEFAULT_CUSTOMERS = 2000
DEMO_PASSWORD = "scrm-demo-2026"
API_CLIENT_USERNAME = "demo-integration"
OPERATOR_USERID = "demo-operator"
# The demo brand is Chinese: hours of day are laid out in its local time.
LOCAL_TZ = zoneinfo.ZoneInfo("Asia/Shanghai")
HISTORY_DAYS = 180
BATCH = 1000

T = TypeVar("T")


# --- The plan --------------------------------------------------------------------------


@dataclass(frozen=True)
class StoreSpec:
    code: str
    slug: str
    name: str
    city: str
    address: str


@dataclass(frozen=True)
class StaffSpec:
    userid: str
    username: str
    name: str
    mobile: str
    store_code: str | None
    role: str


@dataclass(frozen=True)
class ChannelSpec:
    name: str
    kind: str
    cost: Decimal
    state: str
    description: str


@dataclass(frozen=True)
class CustomerSpec:
    external_id: str
    name: str
    gender: int
    phone: str
    birthday: date | None
    owner: str  # staff userid
    store_code: str
    channel: str  # channel name
    acquired_at: datetime
    referred_by: str | None  # external_id of an earlier customer
    lost_at: datetime | None


@dataclass(frozen=True)
class FollowSpec:
    customer: str
    staff: str
    added_at: datetime
    state: str
    deleted_at: datetime | None


@dataclass(frozen=True)
class OrderSpec:
    external_id: str
    customer: str
    amount: Decimal
    paid_at: datetime
    status: str
    refunded_at: datetime | None
    product_role: str
    product_name: str
    store_code: str
    staff: str


@dataclass(frozen=True)
class ActivitySpec:
    key: str
    customer: str
    kind: str
    occurred_at: datetime
    source: str
    staff: str | None
    payload: dict[str, Any]


@dataclass(frozen=True)
class TagSpec:
    customer: str
    group: str
    tag: str
    staff: str


@dataclass(frozen=True)
class NoteSpec:
    customer: str
    staff: str
    body: str


@dataclass(frozen=True)
class DemoPlan:
    seed: int
    anchor: datetime
    stores: tuple[StoreSpec, ...]
    staff: tuple[StaffSpec, ...]
    channels: tuple[ChannelSpec, ...]
    tag_groups: tuple[tuple[str, tuple[str, ...]], ...]
    customers: tuple[CustomerSpec, ...]
    follows: tuple[FollowSpec, ...]
    orders: tuple[OrderSpec, ...]
    activities: tuple[ActivitySpec, ...]
    tags: tuple[TagSpec, ...]
    notes: tuple[NoteSpec, ...]


STORES = (
    StoreSpec("demo-store-sh", "sh", "上海静安嘉里中心店", "上海", "静安区南京西路1515号"),
    StoreSpec("demo-store-bj", "bj", "北京三里屯太古里店", "北京", "朝阳区三里屯路19号"),
    StoreSpec("demo-store-gz", "gz", "广州天河城店", "广州", "天河区天河路208号"),
    StoreSpec("demo-store-cd", "cd", "成都远洋太古里店", "成都", "锦江区中纱帽街8号"),
    StoreSpec("demo-store-hz", "hz", "杭州湖滨银泰店", "杭州", "上城区延安路258号"),
)
STORE_WEIGHTS = (30, 22, 18, 16, 14)
CLERKS_PER_STORE = (4, 4, 4, 4, 3)

# (name, kind, cost, buy probability): the probability makes channels differ down the
# funnel, which is what operators compare them by.
CHANNELS: tuple[tuple[str, str, str, int, float], ...] = (
    ("门店扫码", ChannelKind.STORE, "3000.00", 30, 0.62),
    ("官方商城", ChannelKind.ONLINE_MALL, "8000.00", 10, 0.55),
    ("天猫旗舰店包裹卡", ChannelKind.ECOMMERCE, "12000.00", 14, 0.50),
    ("健身房异业合作", ChannelKind.PARTNER, "5000.00", 6, 0.35),
    ("朋友圈广告", ChannelKind.ADS, "30000.00", 8, 0.28),
    ("抖音信息流", ChannelKind.ADS, "45000.00", 8, 0.25),
    ("小红书种草", ChannelKind.SELF_MEDIA, "15000.00", 10, 0.38),
    ("商圈地推", ChannelKind.OFFLINE_PUSH, "6000.00", 8, 0.30),
    ("老带新", ChannelKind.REFERRAL, "2000.00", 0, 0.58),
    ("个人微信迁移", ChannelKind.PERSONAL_WECHAT, "0.00", 6, 0.45),
)
REFERRAL_CHANNEL = "老带新"
STORE_CHANNEL = "门店扫码"

TAG_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("肤质", ("干性", "油性", "混合", "敏感")),
    ("兴趣", ("护肤", "彩妆", "香水", "身体护理")),
    ("会员等级", ("普通会员", "银卡会员", "金卡会员")),
)

PRODUCTS: dict[str, tuple[tuple[str, str], ...]] = {
    ProductRole.DRAINAGE: (("玫瑰精华体验装 5ml", "9.90"), ("氨基酸洁面 旅行装", "19.90")),
    ProductRole.MARKETING: (("修护面膜 5片装", "69.00"), ("限定节日礼盒", "199.00")),
    ProductRole.PROFIT: (("玫瑰精华液 30ml", "329.00"), ("抗初老眼霜 15g", "268.00")),
    ProductRole.BRAND: (("经典香水 50ml", "680.00"), ("臻奢面霜 50g", "899.00")),
    ProductRole.EXPANSION: (("香氛身体乳 250ml", "129.00"), ("丝绒口红", "220.00")),
}
FIRST_ORDER_ROLES: tuple[tuple[str, float], ...] = (
    (ProductRole.DRAINAGE, 45),
    (ProductRole.MARKETING, 25),
    (ProductRole.PROFIT, 20),
    (ProductRole.EXPANSION, 10),
)
REPEAT_ORDER_ROLES: tuple[tuple[str, float], ...] = (
    (ProductRole.PROFIT, 40),
    (ProductRole.BRAND, 15),
    (ProductRole.EXPANSION, 25),
    (ProductRole.MARKETING, 20),
)

SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁"
    "潘蒋蔡余杜叶程苏魏吕丁沈任姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱"
    "江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
)
# Given-name characters: female-leaning first, then male-leaning (the brand's customers
# are mostly women, its clerks a mix).
GIVEN_FEMALE = "婷娜静丽敏燕艳娟霞芳颖雪琳晶欣悦佳怡琪萱雨涵梦瑶思若诗可馨月彤妍璐菲蕾薇楠洁倩"
GIVEN_MALE = "伟强磊洋勇军杰涛明超辉刚健浩宇轩博文斌鹏飞俊峰凯"
NICKNAMES = ("Coco", "Vivian", "Lily", "Yuki", "Mia", "Grace", "Amy", "Tina", "小鹿", "阿May")
EMOJI = ("🌸", "✨", "🍓", "🌙", "🐱", "🌷", "💄", "🍑", "☀️", "🎀")
PHONE_PREFIXES = ("138", "139", "158", "186", "187", "136", "151", "188", "177", "199")

MESSAGES = (
    "请问玫瑰精华适合敏感肌吗？",
    "门店周末几点关门？",
    "上次买的面膜很好用，还有货吗",
    "优惠券怎么用呀",
    "想约个周六下午的皮肤检测",
    "香水有小样可以试吗",
    "快递到哪里了？",
    "谢谢小姐姐推荐😊",
    "会员积分可以换什么",
    "生日有礼物吗🎂",
)
PAGES = (
    "/mall/",
    "/mall/product/rose-serum",
    "/mall/product/eye-cream",
    "/mall/product/perfume-50ml",
    "/mall/member",
    "/mall/coupon/new",
    "/article/spring-skincare",
)
COUPONS = ("新客满199减30", "会员日9折券", "生日礼券50元", "复购满299减50")
FORMS = ("肤质测试问卷", "新品试用申请", "门店活动报名")
NOTES = (
    "敏感肌，推荐修护系列，不要推酸类产品。",
    "喜欢玫瑰香型，下次到店送小样。",
    "老客户介绍来的，注意维护关系。",
    "在意价格，适合推会员日活动。",
    "婚期在下个月，关注彩妆需求。",
    "对香水很感兴趣，约了周末试香。",
    "上次面霜过敏，已退款，需跟进安抚。",
    "公司团购潜在客户，可以聊企业礼盒。",
)


def _weighted(rng: random.Random, options: Sequence[tuple[T, float]]) -> T:
    return rng.choices([o for o, _w in options], weights=[w for _o, w in options])[0]


def _chinese_name(rng: random.Random, gender: int | None = None) -> str:
    if gender is None:
        gender = rng.choice((Gender.FEMALE, Gender.MALE))
    pool = GIVEN_MALE if gender == Gender.MALE else GIVEN_FEMALE
    given = "".join(rng.choice(pool) for _ in range(rng.choice((1, 2, 2))))
    return rng.choice(SURNAMES) + given


def _customer_name(rng: random.Random, gender: int) -> str:
    roll = rng.random()
    if roll < 0.04 and gender != Gender.MALE:
        return rng.choice(NICKNAMES) + rng.choice(EMOJI)
    name = _chinese_name(rng, gender)
    if roll < 0.10:
        return name + rng.choice(EMOJI)
    return name


def _phone(rng: random.Random) -> str:
    return rng.choice(PHONE_PREFIXES) + f"{rng.randrange(10**8):08d}"


def _acquired_at(rng: random.Random, anchor: datetime) -> datetime:
    # The exponent skews towards recent days: the brand's private domain is growing.
    days_ago = int(HISTORY_DAYS * (1 - rng.random()) ** 1.4)
    day = (anchor.astimezone(LOCAL_TZ) - timedelta(days=days_ago)).date()
    hour = _weighted(rng, [(h, 3 if 11 <= h <= 21 else 1) for h in range(8, 23)])
    moment = datetime(day.year, day.month, day.day, hour, rng.randrange(60), rng.randrange(60))
    moment = moment.replace(tzinfo=LOCAL_TZ)
    if moment > anchor:
        moment -= timedelta(days=1)
    return moment


def _later(rng: random.Random, start: datetime, min_days: float, max_days: float) -> datetime:
    return start + timedelta(seconds=int(rng.uniform(min_days, max_days) * 86400))


def _staff_plan(rng: random.Random) -> list[StaffSpec]:
    staff = [
        StaffSpec(OPERATOR_USERID, "operator", "林运营", _phone(rng), None, Role.OPERATOR),
    ]
    for store, clerks in zip(STORES, CLERKS_PER_STORE, strict=True):
        staff.append(
            StaffSpec(
                f"demo-{store.slug}-manager",
                f"{store.slug}_manager",
                _chinese_name(rng),
                _phone(rng),
                store.code,
                Role.MANAGER,
            )
        )
        for n in range(1, clerks + 1):
            staff.append(
                StaffSpec(
                    f"demo-{store.slug}-clerk{n}",
                    f"{store.slug}_clerk{n}",
                    _chinese_name(rng),
                    _phone(rng),
                    store.code,
                    Role.STAFF,
                )
            )
    return staff


def demo_channel_specs() -> list[ChannelSpec]:
    """The demo's channels; ``state`` is the state of each one's WeCom channel code."""
    return [
        ChannelSpec(name, kind, Decimal(cost), f"demo-ch{i:02d}", f"演示渠道：{name}")
        for i, (name, kind, cost, _w, _p) in enumerate(CHANNELS, start=1)
    ]


def demo_code_channels() -> list[ChannelSpec]:
    """The channels that get a channel code (a 「联系我」 QR code) in the demo's WeCom: all
    but the referral channel, whose codes are each customer's own (``referral_code_for``)."""
    return [c for c in demo_channel_specs() if c.name != REFERRAL_CHANNEL]


def demo_wecom_userids() -> list[str]:
    """The WeCom userids of the demo's store managers and clerks: the follow users of the
    demo's WeCom corp (the operator serves no customers). They depend on no seed."""
    return [s.userid for s in _staff_plan(random.Random(DEFAULT_SEED)) if s.store_code]


@dataclass
class _Acc:
    """Mutable lists filled while planning, frozen into a :class:`DemoPlan` at the end."""

    customers: list[CustomerSpec] = field(default_factory=list)
    follows: list[FollowSpec] = field(default_factory=list)
    orders: list[OrderSpec] = field(default_factory=list)
    activities: list[ActivitySpec] = field(default_factory=list)
    tags: list[TagSpec] = field(default_factory=list)
    notes: list[NoteSpec] = field(default_factory=list)
    seen: Counter[tuple[str, str]] = field(default_factory=Counter)

    def activity(
        self,
        customer: str,
        kind: str,
        at: datetime,
        source: str,
        staff: str | None,
        payload: dict[str, Any],
    ) -> None:
        # The key numbers a customer's events of one kind, so it is stable across runs.
        self.seen[customer, kind] += 1
        key = f"demo:{customer}:{kind}:{self.seen[customer, kind]}"
        self.activities.append(ActivitySpec(key, customer, kind, at, source, staff, payload))


def demo_plan(
    *, seed: int = DEFAULT_SEED, anchor: datetime, customers: int = DEFAULT_CUSTOMERS
) -> DemoPlan:
    """Lay out the whole demo data set. Pure: no database, same input, same plan."""
    if timezone.is_naive(anchor):
        raise ValueError("anchor must be timezone-aware")
    anchor = anchor.replace(microsecond=0)
    rng = random.Random(seed)
    staff = _staff_plan(rng)
    sellers: dict[str, list[tuple[str, float]]] = {s.code: [] for s in STORES}
    for member in staff:
        if member.store_code:
            # Clerks serve most customers; the manager keeps a few regulars.
            sellers[member.store_code].append((member.userid, 1 if member.role == "manager" else 4))
    channels = demo_channel_specs()
    state_of = {c.name: c.state for c in channels}
    buy_rate = {name: p for name, _k, _c, _w, p in CHANNELS}
    source_weights = [(name, float(w)) for name, _k, _c, w, _p in CHANNELS if w]
    store_weights = [(s.code, float(w)) for s, w in zip(STORES, STORE_WEIGHTS, strict=True)]
    store_by_code = {s.code: s for s in STORES}

    moments = sorted(_acquired_at(rng, anchor) for _ in range(customers))
    acc = _Acc()
    for index, acquired_at in enumerate(moments, start=1):
        ext = f"demo-c-{index:05d}"
        store_code = _weighted(rng, store_weights)
        owner = _weighted(rng, sellers[store_code])
        referred_by = None
        if index > 20 and rng.random() < 0.08:
            referrer = acc.customers[rng.randrange(len(acc.customers))]
            referred_by = referrer.external_id
            channel = REFERRAL_CHANNEL
            acc.activity(
                referrer.external_id,
                ActivityKind.REFERRED,
                acquired_at,
                ActivitySource.WECOM,
                referrer.owner,
                {"referred": ext},
            )
        else:
            channel = _weighted(rng, source_weights)
        gender = _weighted(
            rng, [(Gender.FEMALE.value, 78), (Gender.MALE.value, 18), (Gender.UNKNOWN.value, 4)]
        )
        birthday = None
        if rng.random() < 0.75:
            year = anchor.year - rng.randint(18, 50)
            birthday = date(year, rng.randint(1, 12), rng.randint(1, 28))
        phone = _phone(rng) if rng.random() < 0.9 else ""
        name = _customer_name(rng, gender)

        # Follows: the owner through the channel's code, and sometimes colleagues.
        colleagues = [u for u, _w in sellers[store_code] if u != owner]
        followers = [owner, *rng.sample(colleagues, _weighted(rng, [(0, 55), (1, 35), (2, 10)]))]
        acc.activity(
            ext,
            ActivityKind.CONTACT_ADDED,
            acquired_at,
            ActivitySource.WECOM,
            owner,
            {"state": state_of[channel]},
        )

        # Engagement (activation and retention): members, coupons, messages, visits.
        member_at = None
        if rng.random() < 0.5:
            member_at = _later(rng, acquired_at, 0, 10)
            if member_at <= anchor:
                acc.activity(
                    ext,
                    ActivityKind.MEMBER_JOINED,
                    member_at,
                    ActivitySource.API,
                    None,
                    {"level": "普通会员"},
                )
            else:
                member_at = None
        for kind, chance, payload_of in (
            (ActivityKind.COUPON_CLAIMED, 0.35, lambda: {"coupon": rng.choice(COUPONS)}),
            (ActivityKind.FORM_SUBMITTED, 0.12, lambda: {"form": rng.choice(FORMS)}),
        ):
            if rng.random() < chance:
                at = _later(rng, acquired_at, 0, 20)
                if at <= anchor:
                    acc.activity(ext, kind, at, ActivitySource.API, None, payload_of())
        for _ in range(_weighted(rng, [(0, 25), (1, 25), (2, 20), (3, 15), (5, 10), (8, 5)])):
            at = _later(rng, acquired_at, 0, 120)
            if at <= anchor:
                acc.activity(
                    ext,
                    ActivityKind.MESSAGE_RECEIVED,
                    at,
                    ActivitySource.WECOM,
                    owner,
                    {"text": rng.choice(MESSAGES)},
                )
        for _ in range(rng.randrange(0, 5)):
            at = _later(rng, acquired_at, 0, 60)
            if at <= anchor:
                acc.activity(
                    ext,
                    ActivityKind.PAGE_VIEWED,
                    at,
                    ActivitySource.API,
                    None,
                    {"page": rng.choice(PAGES)},
                )
        visit_chance = 0.45 if channel == STORE_CHANNEL else 0.12
        if rng.random() < visit_chance:
            at = _later(rng, acquired_at, 1, 45)
            if at <= anchor:
                acc.activity(
                    ext,
                    ActivityKind.STORE_VISIT,
                    at,
                    ActivitySource.API,
                    owner,
                    {"store": store_by_code[store_code].name},
                )

        # Revenue: the first purchase, then repurchases at a refill rhythm.
        paid_count = 0
        if rng.random() < buy_rate[channel] + (0.15 if member_at else -0.05):
            paid_at = _later(rng, acquired_at, 0.1, rng.choice((3, 10, 30)))
            roles = FIRST_ORDER_ROLES
            repeats = _weighted(rng, [(0, 40), (1, 30), (2, 18), (3, 12)])
            for n in range(1 + repeats):
                if paid_at > anchor:
                    break
                role = _weighted(rng, roles)
                product, price = rng.choice(PRODUCTS[role])
                quantity = _weighted(rng, [(1, 85), (2, 12), (3, 3)])
                refunded = rng.random() < 0.04
                refunded_at = _later(rng, paid_at, 1, 7) if refunded else None
                if refunded_at is not None and refunded_at > anchor:
                    refunded, refunded_at = False, None
                acc.orders.append(
                    OrderSpec(
                        f"demo-o-{index:05d}-{n + 1}",
                        ext,
                        Decimal(price) * quantity,
                        paid_at,
                        OrderStatus.REFUNDED if refunded else OrderStatus.PAID,
                        refunded_at,
                        role,
                        product,
                        store_code,
                        owner,
                    )
                )
                paid_count += 0 if refunded else 1
                roles = REPEAT_ORDER_ROLES
                paid_at = _later(rng, paid_at, 20, 60)

        # Tags: skin type and interests as staff learn them; membership level by spend.
        if rng.random() < 0.7:
            acc.tags.append(TagSpec(ext, "肤质", rng.choice(TAG_GROUPS[0][1]), owner))
        if rng.random() < 0.5:
            for tag in rng.sample(TAG_GROUPS[1][1], rng.choice((1, 1, 2))):
                acc.tags.append(TagSpec(ext, "兴趣", tag, owner))
        if member_at is not None:
            level = ("普通会员", "普通会员", "银卡会员", "金卡会员")[min(paid_count, 3)]
            acc.tags.append(TagSpec(ext, "会员等级", level, owner))
        if rng.random() < 0.08:
            acc.notes.append(NoteSpec(ext, owner, rng.choice(NOTES)))

        # Some customers who never bought deleted their staff after a month or more.
        lost_at = None
        if paid_count == 0 and rng.random() < 0.06:
            candidate = _later(rng, acquired_at, 30, 90)
            if candidate <= anchor:
                lost_at = candidate
                acc.activity(
                    ext, ActivityKind.CONTACT_DELETED, lost_at, ActivitySource.WECOM, owner, {}
                )
        for n, userid in enumerate(followers):
            acc.follows.append(
                FollowSpec(
                    ext,
                    userid,
                    acquired_at if n == 0 else min(_later(rng, acquired_at, 0, 30), anchor),
                    state_of[channel] if n == 0 else "",
                    lost_at,
                )
            )
        acc.customers.append(
            CustomerSpec(
                ext,
                name,
                gender,
                phone,
                birthday,
                owner,
                store_code,
                channel,
                acquired_at,
                referred_by,
                lost_at,
            )
        )
    return DemoPlan(
        seed=seed,
        anchor=anchor,
        stores=STORES,
        staff=tuple(staff),
        channels=tuple(channels),
        tag_groups=TAG_GROUPS,
        customers=tuple(acc.customers),
        follows=tuple(acc.follows),
        orders=tuple(acc.orders),
        activities=tuple(acc.activities),
        tags=tuple(acc.tags),
        notes=tuple(acc.notes),
    )
