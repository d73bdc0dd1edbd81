"""Writing the demo plan through the services, idempotently."""


# The Chinese demo text uses full-width punctuation, which is correct there, not a typo.

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.db import DatabaseError, transaction
from django.utils import timezone
from rest_framework.authtoken.models import Token

from channels import services as channel_services
from channels.models import Channel
from customers import services as customer_services
from customers.models import (
    Activity,
    ActivitySource,
    Customer,
    CustomerTag,
    Follow,
    Note,
    Order,
    Staff,
    Store,
    Tag,
    TagGroup,
)
from scrm import services as scrm_services
from scrm.demo.campaigns import demo_campaigns_seed
from scrm.demo.plan import (
    API_CLIENT_USERNAME,
    BATCH,
    DEFAULT_CUSTOMERS,
    DEFAULT_SEED,
    DEMO_PASSWORD,
    OPERATOR_USERID,
    STORES,
    ChannelSpec,
    T,
    demo_plan,
)
from scrm.roles import Role

# --- Writing the plan ------------------------------------------------------------------


@dataclass(frozen=True)
class DemoLogin:
    username: str
    role: str
    store: str


@dataclass
class DemoReport:
    """What :func:`demo_seed` left in the database, for the command to print."""

    anchor: datetime
    seconds: float
    password: str
    logins: list[DemoLogin]
    api_username: str
    api_token: str
    counts: dict[str, int]
    created: dict[str, int]


def _chunks(items: Sequence[T], size: int = BATCH) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def demo_anchor() -> datetime:
    """The demo's "now": the first seed's time, so that re-seeding never moves the data."""
    first = Store.objects.filter(code=STORES[0].code).values_list("created_at", flat=True).first()
    return (first or timezone.now()).replace(microsecond=0)


def _demo_user(username: str, name: str, password_hash: str, *, operator: bool) -> Any:
    # Logins are django.contrib.auth's table, which has no service of ours: the demo sets
    # exactly the fields it owns, and only when they differ, to stay idempotent.
    user_model = get_user_model()
    wanted = {
        "first_name": name,
        "password": password_hash,
        "is_staff": operator,
        "is_superuser": operator,
        "is_active": True,
    }
    user = user_model.objects.filter(username=username).first()
    if user is None:
        return user_model.objects.create(username=username, **wanted)
    changed = [k for k, v in wanted.items() if getattr(user, k) != v]
    for key in changed:
        setattr(user, key, wanted[key])
    if changed:
        user.save(update_fields=changed)
    return user


def _channel_upsert(spec: ChannelSpec) -> tuple[Channel, str]:
    """Channels are keyed by their unique name; channels.services has create and update."""
    data = {"kind": spec.kind, "cost": spec.cost, "description": spec.description}
    channel = Channel.objects.filter(name=spec.name).first()
    if channel is None:
        return channel_services.channel_create(data={"name": spec.name, **data}), "created"
    changed = channel_services.channel_update(channel=channel, data=data)
    return channel, ("updated" if changed else "unchanged")


def _api_token() -> tuple[str, str]:
    user = get_user_model().objects.filter(username=API_CLIENT_USERNAME).first()
    if user is None:
        _user, token = scrm_services.api_client_create(username=API_CLIENT_USERNAME)
        return API_CLIENT_USERNAME, token.key
    existing = Token.objects.filter(user=user).first()
    if existing is not None:
        return API_CLIENT_USERNAME, existing.key
    return API_CLIENT_USERNAME, scrm_services.api_token_rotate(user=user).key


def _count(created: dict[str, int], name: str, outcomes: Sequence[str]) -> None:
    created[name] = created.get(name, 0) + sum(1 for o in outcomes if o == "created")


@transaction.atomic
def demo_seed(
    *,
    seed: int = DEFAULT_SEED,
    customers: int = DEFAULT_CUSTOMERS,
    anchor: datetime | None = None,
) -> DemoReport:
    """Write the demo plan through the services; idempotent for the same seed and size.

    One transaction: on SQLite that is also what makes 20,000 writes take seconds, not
    minutes, and a failure leaves no half-seeded demo behind.
    """
    started = time.monotonic()
    plan = demo_plan(seed=seed, anchor=anchor or demo_anchor(), customers=customers)
    created: dict[str, int] = {}

    stores: dict[str, Store] = {}
    for store_spec in plan.stores:
        stores[store_spec.code], outcome = customer_services.store_upsert(
            code=store_spec.code,
            # created_at is the anchor: the next seed reads it back (see demo_anchor).
            data={
                "name": store_spec.name,
                "city": store_spec.city,
                "address": store_spec.address,
                "created_at": plan.anchor,
            },
        )
        _count(created, "stores", [outcome])

    # One hash for every demo login: PBKDF2 costs ~0.5 s by design, 25 of them would be
    # most of the seed's time. A fixed salt makes the hash comparable, hence idempotent.
    password_hash = make_password(DEMO_PASSWORD, salt=f"scrmdemo{seed}")
    staff: dict[str, Staff] = {}
    for member in plan.staff:
        is_operator = member.role == Role.OPERATOR
        user = _demo_user(member.username, member.name, password_hash, operator=is_operator)
        staff[member.userid], outcome = customer_services.staff_upsert(
            wecom_userid=member.userid,
            data={
                "name": member.name,
                "mobile": member.mobile,
                "store": stores[member.store_code] if member.store_code else None,
                "role": member.role,
                "user": user,
                "is_active": True,
            },
        )
        _count(created, "staff", [outcome])

    channels: dict[str, Channel] = {}
    for channel_spec in plan.channels:
        channels[channel_spec.name], outcome = _channel_upsert(channel_spec)
        _count(created, "channels", [outcome])

    tags: dict[tuple[str, str], Tag] = {}
    for order, (group_name, tag_names) in enumerate(reversed(plan.tag_groups), start=1):
        group, _outcome = customer_services.tag_group_upsert(
            name=group_name, data={"order": order * 100}
        )
        for tag_order, tag_name in enumerate(reversed(tag_names), start=1):
            tags[group_name, tag_name], outcome = customer_services.tag_upsert(
                group=group, name=tag_name, data={"order": tag_order}
            )
            _count(created, "tags", [outcome])

    by_ext: dict[str, Customer] = {}
    for spec in plan.customers:
        by_ext[spec.external_id], outcome = customer_services.customer_upsert(
            key="external_id",
            data={
                "external_id": spec.external_id,
                "name": spec.name,
                "gender": spec.gender,
                "phone": spec.phone,
                "birthday": spec.birthday,
                "owner_id": staff[spec.owner].pk,
                "store_id": stores[spec.store_code].pk,
                "source_channel_id": channels[spec.channel].pk,
                "acquired_at": spec.acquired_at,
                "referred_by_id": by_ext[spec.referred_by].pk if spec.referred_by else None,
            },
        )
        _count(created, "customers", [outcome])
        if spec.lost_at is not None:
            customer_services.customer_mark_lost(customer=by_ext[spec.external_id], at=spec.lost_at)

    for follow_batch in _chunks(plan.follows):
        result = customer_services.follows_upsert(
            rows=[
                customer_services.FollowInput(
                    customer_id=by_ext[f.customer].pk,
                    staff_id=staff[f.staff].pk,
                    added_at=f.added_at,
                    state=f.state,
                    deleted_at=f.deleted_at,
                )
                for f in follow_batch
            ]
        )
        _count(created, "follows", result.outcomes)

    for order_batch in _chunks(plan.orders):
        result = customer_services.orders_upsert(
            rows=[
                customer_services.OrderInput(
                    external_id=o.external_id,
                    customer_id=by_ext[o.customer].pk,
                    amount=o.amount,
                    paid_at=o.paid_at,
                    status=o.status,
                    refunded_at=o.refunded_at,
                    product_role=o.product_role,
                    product_name=o.product_name,
                    store_id=stores[o.store_code].pk,
                    staff_id=staff[o.staff].pk,
                )
                for o in order_batch
            ]
        )
        _count(created, "orders", result.outcomes)

    for activity_batch in _chunks(plan.activities):
        result = customer_services.activities_record(
            rows=[
                customer_services.ActivityInput(
                    customer_id=by_ext[a.customer].pk,
                    kind=a.kind,
                    occurred_at=a.occurred_at,
                    source=a.source,
                    staff_id=staff[a.staff].pk if a.staff else None,
                    payload=a.payload,
                    idempotency_key=a.key,
                )
                for a in activity_batch
            ]
        )
        _count(created, "activities", result.outcomes)

    added = 0
    for tag_spec in plan.tags:
        added += customer_services.customer_tag_add(
            customer=by_ext[tag_spec.customer],
            tag=tags[tag_spec.group, tag_spec.tag],
            staff=staff[tag_spec.staff],
            source=ActivitySource.MOBILE,
        )
    created["customer tags"] = added

    # note_create always adds a note (two notes may say the same thing), so a customer
    # who already has notes is left alone: that is what keeps a second seed from doubling.
    noted = set(
        Note.objects.filter(customer__external_id__in=[n.customer for n in plan.notes])
        .values_list("customer__external_id", flat=True)
        .distinct()
    )
    created["notes"] = 0
    for note_spec in plan.notes:
        if note_spec.customer in noted:
            continue
        customer_services.note_create(
            customer=by_ext[note_spec.customer],
            author=staff[note_spec.staff].user,
            body=note_spec.body,
            source=ActivitySource.MOBILE,
        )
        created["notes"] += 1

    operator = next(s for s in staff.values() if s.role == Role.OPERATOR).user
    created.update(demo_campaigns_seed(operator=operator))

    api_username, api_token = _api_token()
    store_names = {s.code: s.name for s in plan.stores}
    logins = [
        DemoLogin(m.username, m.role, store_names.get(m.store_code or "", "")) for m in plan.staff
    ]
    return DemoReport(
        anchor=plan.anchor,
        seconds=time.monotonic() - started,
        password=DEMO_PASSWORD,
        logins=logins,
        api_username=api_username,
        api_token=api_token,
        counts=demo_counts(),
        created=created,
    )


def demo_login_hint() -> str | None:
    """The demo's login hint when the demo is seeded in this database, else None."""
    try:
        seeded = Staff.objects.filter(wecom_userid=OPERATOR_USERID).exists()
    except DatabaseError:
        # Not migrated yet: the stack still starts (and /healthz answers) without it.
        return None
    return f"log in as operator / {DEMO_PASSWORD}" if seeded else None


def demo_counts() -> dict[str, int]:
    """Row counts of the tables the demo fills (all rows, demo or not)."""
    return {
        "stores": Store.objects.count(),
        "staff": Staff.objects.count(),
        "channels": Channel.objects.count(),
        "tag groups": TagGroup.objects.count(),
        "tags": Tag.objects.count(),
        "customers": Customer.objects.count(),
        "follows": Follow.objects.count(),
        "customer tags": CustomerTag.objects.count(),
        "orders": Order.objects.count(),
        "activities": Activity.objects.count(),
        "notes": Note.objects.count(),
    }
