"""A seeded random world written through the real write services, in several rounds, so
that the milestones are whatever incremental maintenance made of it.

It aims at the definitions' corners: activities of every kind (system ones included)
before and after acquisition and exactly on period and retention boundaries, paid and
refunded orders (some refunded later, some paid at the same instant), referrals whose
referee came first, acquisitions at midnight in the corp's time zone, WeCom contacts with
follows that end (and so customers lost), tags, several stores, staff and channels.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from django.utils import timezone

from channels.models import Channel, ChannelKind
from channels.services import channel_create
from customers.models import ActivityKind, Customer, Follow, OrderStatus, Staff, Store, Tag
from customers.services import (
    ActivityInput,
    ContactInput,
    FollowInput,
    OrderInput,
    activities_record,
    contacts_upsert,
    customer_create,
    customer_mark_lost,
    customer_tag_add,
    customer_update,
    follows_mark_deleted,
    follows_upsert,
    orders_upsert,
    staff_create,
    store_upsert,
    tag_group_upsert,
    tag_upsert,
)
from scrm.roles import Role
from tests.factories import UserFactory

#: Customers are acquired from this day on, over ``SPAN_DAYS`` days.
FIRST_DAY = date(2026, 1, 1)
SPAN_DAYS = 180
KINDS = [*ActivityKind.values, "custom_kind"]
US = timedelta(microseconds=1)


@dataclass
class RandomWorld:
    stores: list[Store]
    staff: list[Staff]
    channels: list[Channel]
    tags: list[Tag]
    customers: list[Customer]
    manager: Any  # a User: the manager of stores[0]


def _local(day: date, at: time = time.min) -> datetime:
    return timezone.make_aware(datetime.combine(day, at))


def _acquired(rng: random.Random) -> datetime:
    day = FIRST_DAY + timedelta(days=rng.randrange(SPAN_DAYS))
    draw = rng.random()
    if draw < 0.1:
        return _local(day)  # local midnight: the first instant of a cohort
    if draw < 0.15:
        return _local(day, time(23, 59, 59, 999_999))  # the last instant of a day
    return _local(day) + timedelta(seconds=rng.randrange(86_400), microseconds=rng.randrange(10**6))


def _activity_offset(rng: random.Random) -> timedelta:
    draw = rng.random()
    if draw < 0.1:
        return timedelta(days=7)  # exactly the retention threshold: retained
    if draw < 0.15:
        return timedelta(days=7) - US  # a microsecond short of it: not retained
    if draw < 0.25:
        return timedelta(days=7 * rng.randrange(21))  # on a week period's first instant
    if draw < 0.35:
        return timedelta(days=30 * rng.randrange(1, 9)) - US  # a month period's last instant
    if draw < 0.5:
        return -timedelta(seconds=rng.randrange(1, 5 * 86_400))  # before acquisition
    return timedelta(microseconds=rng.randrange(-10 * 86_400 * 10**6, 200 * 86_400 * 10**6))


def build_random_world(seed: int, size: int = 150) -> RandomWorld:
    rng = random.Random(seed)
    stores = [store_upsert(code=f"RND{i}", data={"name": f"Random store {i}"})[0] for i in range(3)]
    staff = [
        staff_create(
            data={"name": f"Random staff {i}", "wecom_userid": f"rnd{i}", "store": stores[i % 3]}
        )
        for i in range(6)
    ]
    manager = UserFactory(username="random-manager")
    staff_create(
        data={"name": "Random manager", "store": stores[0], "role": Role.MANAGER, "user": manager}
    )
    channels = [
        channel_create(
            data={
                "name": f"Random channel {i}",
                "kind": ChannelKind.ADS,
                "cost": Decimal(rng.randrange(0, 500_000)) / 100,
            }
        )
        for i in range(4)
    ]
    group, _ = tag_group_upsert(name="Random")
    tags = [tag_upsert(group=group, name=f"Random tag {i}")[0] for i in range(3)]

    def maybe(values: list[Any], chance: float = 0.8) -> Any:
        return rng.choice(values) if rng.random() < chance else None

    # Round 1: customers one by one (API-like), some referred by an earlier one.
    customers: list[Customer] = []
    for i in range(size * 2 // 3):
        referrer = maybe(customers, 0.25) if customers else None
        customers.append(
            customer_create(
                data={
                    "name": f"Random {i}",
                    "external_id": f"rnd-{i}",
                    "acquired_at": _acquired(rng),
                    "source_channel_id": maybe([c.pk for c in channels]),
                    "store_id": maybe([s.pk for s in stores]),
                    "owner_id": maybe([s.pk for s in staff], 0.6),
                    "referred_by_id": referrer.pk if referrer else None,
                }
            )
        )
    # Round 2: WeCom contacts in one bulk upsert, then their follows.
    contacts = [
        ContactInput(
            external_userid=f"wm-rnd-{i}",
            name=f"WeCom {i}",
            acquired_at=_acquired(rng),
            source_channel_id=maybe([c.pk for c in channels]),
            referred_by_id=c.pk if (c := maybe(customers, 0.2)) else None,
            owner_id=maybe([s.pk for s in staff]),
            store_id=maybe([s.pk for s in stores]),
        )
        for i in range(size - len(customers))
    ]
    by_key = contacts_upsert(rows=contacts).by_key
    customers.extend(Customer.objects.filter(pk__in=by_key.values()).order_by("pk"))
    follows = []
    for customer in customers:
        if customer.external_userid or rng.random() < 0.3:
            for member in rng.sample(staff, rng.randint(1, 2)):
                follows.append(
                    FollowInput(
                        customer_id=customer.pk, staff_id=member.pk, added_at=customer.acquired_at
                    )
                )
    follows_upsert(rows=follows)

    # Round 3: activities in three bulk batches, in no particular order.
    activities = [
        ActivityInput(
            customer_id=customer.pk,
            kind=rng.choice(KINDS),
            occurred_at=customer.acquired_at + _activity_offset(rng),
            payload={"n": n},
        )
        for customer in customers
        for n in range(rng.randrange(9))
    ]
    rng.shuffle(activities)
    third = len(activities) // 3
    for batch in (activities[:third], activities[third : 2 * third], activities[2 * third :]):
        activities_record(rows=batch)

    # Round 4: orders in two batches (some refunded from the start), then late refunds.
    orders: list[OrderInput] = []
    for customer in customers:
        if rng.random() < 0.45:
            continue
        paid_at = None
        for _ in range(rng.randint(1, 4)):
            if paid_at is None or rng.random() > 0.1:  # else: the same instant as before
                offset = rng.randrange(-5 * 86_400 * 10**6, 300 * 86_400 * 10**6)
                paid_at = customer.acquired_at + timedelta(microseconds=offset)
            refunded = rng.random() < 0.2
            orders.append(
                OrderInput(
                    external_id=f"rnd-order-{len(orders)}",
                    customer_id=customer.pk,
                    amount=Decimal(rng.randrange(0, 500_000)) / 100,
                    paid_at=paid_at,
                    status=OrderStatus.REFUNDED if refunded else OrderStatus.PAID,
                    refunded_at=paid_at + timedelta(days=1) if refunded else None,
                )
            )
    half = len(orders) // 2
    orders_upsert(rows=orders[:half])
    orders_upsert(rows=orders[half:])
    late = [o for o in orders if o.status == OrderStatus.PAID and rng.random() < 0.15]
    orders_upsert(
        rows=[
            OrderInput(
                **{
                    **o.__dict__,
                    "status": OrderStatus.REFUNDED,
                    "refunded_at": o.paid_at + timedelta(days=3),
                }
            )
            for o in late
        ]
    )

    # Round 5: referrals told late, whose referee was acquired before the referrer.
    for customer in rng.sample(customers, 15):
        customer.refresh_from_db()
        later = [c for c in customers if c.acquired_at > customer.acquired_at]
        if customer.referred_by_id is None and later:
            customer_update(customer=customer, data={"referred_by_id": rng.choice(later).pk})

    # Round 6: tags, customers marked lost, and WeCom follows that end (lost if all do).
    for customer in rng.sample(customers, 40):
        customer_tag_add(customer=customer, tag=rng.choice(tags), source="dashboard")
    for customer in rng.sample(customers, 10):
        customer_mark_lost(
            customer=customer,
            at=customer.acquired_at + timedelta(days=rng.randrange(1, 90), seconds=1),
        )
    ended = [
        f.pk
        for f in Follow.objects.filter(customer__in=customers).order_by("pk")
        if rng.random() < 0.3
    ]
    follows_mark_deleted(
        follow_ids=ended, at=_local(FIRST_DAY + timedelta(days=200)), source="wecom"
    )
    return RandomWorld(stores, staff, channels, tags, customers, manager)
