"""Every write to the core tables.

Interfaces (API, dashboard, mobile pages, WeCom sync, commands) parse their input and call
one of these functions; none of them writes a model directly. Each service is
keyword-only, runs in one transaction, and ends by announcing the facts it changed
(``customers.hooks.announce``) so that derived state follows.

Upserts are idempotent: replaying the same input writes nothing (no row, no
``updated_at`` bump) and reports the rows as unchanged.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework.authtoken.models import Token

from customers.hooks import Fact, announce
from customers.models import (
    Activity,
    ActivityKind,
    ActivitySource,
    Customer,
    CustomerTag,
    Follow,
    Note,
    Order,
    OrderStatus,
    Staff,
    Store,
    Tag,
    TagGroup,
    TagSource,
)


@dataclass
class UpsertResult:
    """What an upsert did, row by row in input order: ``created``/``updated``/``unchanged``."""

    outcomes: list[str] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)

    @property
    def created(self) -> int:
        return self.outcomes.count("created")

    @property
    def updated(self) -> int:
        return self.outcomes.count("updated")

    @property
    def unchanged(self) -> int:
        return self.outcomes.count("unchanged")


# --- Customers -------------------------------------------------------------------------

CUSTOMER_FIELDS = (
    "external_userid",
    "external_id",
    "unionid",
    "name",
    "avatar",
    "gender",
    "phone",
    "birthday",
    "owner_id",
    "store_id",
    "source_channel_id",
    "acquired_at",
    "referred_by_id",
)


def _customer_facts(changed: Iterable[str]) -> set[Fact]:
    facts = {Fact.CUSTOMER}
    if "referred_by_id" in changed or "acquired_at" in changed:
        facts.add(Fact.REFERRAL)
    return facts


def _normalized(data: Mapping[str, Any]) -> dict[str, Any]:
    unknown = set(data) - set(CUSTOMER_FIELDS)
    if unknown:
        raise TypeError(f"unknown customer fields: {sorted(unknown)}")
    values = dict(data)
    for key in ("external_id", "external_userid"):
        # The unique keys hold NULL, never "": two customers without a key must not collide.
        if key in values and not values[key]:
            values[key] = None
    return values


def _check_referrer(customer: Customer | None, referred_by_id: int | None) -> None:
    if referred_by_id is None:
        return
    if customer is not None and customer.pk == referred_by_id:
        raise ValidationError({"referred_by": "A customer cannot refer themselves."})


@transaction.atomic
def customer_create(*, data: Mapping[str, Any]) -> Customer:
    """Create a customer from already-validated field values (``CUSTOMER_FIELDS``)."""
    data = _normalized(data)
    customer = Customer.objects.create(**data)
    ids = {customer.pk}
    if customer.referred_by_id:
        ids.add(customer.referred_by_id)
    announce(ids, *_customer_facts(data))
    return customer


@transaction.atomic
def customer_update(*, customer: Customer, data: Mapping[str, Any]) -> list[str]:
    """Apply changed field values; returns the names of the fields that really changed."""
    data = _normalized(data)
    _check_referrer(customer, data.get("referred_by_id"))
    old_referrer = customer.referred_by_id
    changed = [name for name, value in data.items() if getattr(customer, name) != value]
    if not changed:
        return []
    for name in changed:
        setattr(customer, name, data[name])
    customer.save(update_fields=[*changed, "updated_at"])
    ids = {customer.pk}
    for referrer in (old_referrer, customer.referred_by_id):
        if referrer:
            ids.add(referrer)
    announce(ids, *_customer_facts(changed))
    return changed


def customer_upsert(*, key: str, data: Mapping[str, Any]) -> tuple[Customer, str]:
    """Create or update the customer whose ``key`` field (``external_id`` or
    ``external_userid``) equals ``data[key]``. Returns the customer and the outcome.

    A concurrent insert of the same key loses the race on the unique constraint; it then
    re-reads and updates, so two replays of one request never make two customers.
    """
    if key not in ("external_id", "external_userid") or not data.get(key):
        raise ValueError("customer_upsert needs a non-empty external_id or external_userid")
    for _attempt in range(2):
        existing = Customer.objects.filter(**{key: data[key]}).first()
        if existing is not None:
            changed = customer_update(customer=existing, data=data)
            return existing, ("updated" if changed else "unchanged")
        try:
            with transaction.atomic():
                return customer_create(data=data), "created"
        except IntegrityError:
            continue
    raise IntegrityError(f"could not upsert customer {key}={data[key]!r}")


@transaction.atomic
def customer_mark_lost(*, customer: Customer, at: datetime | None = None) -> bool:
    """Mark a customer lost (deleted every staff member). Returns whether it changed."""
    updated = Customer.objects.filter(pk=customer.pk, status="active").update(
        status="lost", lost_at=at or timezone.now(), updated_at=timezone.now()
    )
    if updated:
        customer.refresh_from_db(fields=["status", "lost_at", "updated_at"])
        announce([customer.pk], Fact.CUSTOMER)
    return bool(updated)


@transaction.atomic
def customer_mark_active(*, customer: Customer) -> bool:
    updated = Customer.objects.filter(pk=customer.pk, status="lost").update(
        status="active", lost_at=None, updated_at=timezone.now()
    )
    if updated:
        customer.refresh_from_db(fields=["status", "lost_at", "updated_at"])
        announce([customer.pk], Fact.CUSTOMER)
    return bool(updated)


def customer_ids_by_external_id(external_ids: Iterable[str]) -> dict[str, int]:
    """Map integration ids to customer ids in one query (for imports that reference them)."""
    keys = {k for k in external_ids if k}
    if not keys:
        return {}
    pairs = Customer.objects.filter(external_id__in=keys).values_list("external_id", "id")
    return {key: pk for key, pk in pairs if key}


# --- Orders ----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class OrderInput:
    """One validated order row."""

    external_id: str
    customer_id: int
    amount: Decimal
    paid_at: datetime
    currency: str = "CNY"
    status: str = OrderStatus.PAID
    refunded_at: datetime | None = None
    product_role: str = ""
    product_name: str = ""
    store_id: int | None = None
    staff_id: int | None = None


_ORDER_FIELDS = [f.name for f in fields(OrderInput) if f.name != "external_id"]


def _order_values(row: OrderInput) -> dict[str, Any]:
    values = {name: getattr(row, name) for name in _ORDER_FIELDS}
    if row.status == OrderStatus.REFUNDED and row.refunded_at is None:
        values["refunded_at"] = timezone.now()
    if row.status == OrderStatus.PAID:
        values["refunded_at"] = None
    return values


@transaction.atomic
def orders_upsert(*, rows: Sequence[OrderInput]) -> UpsertResult:
    """Create or update orders by ``external_id``, all or nothing.

    Existing rows are read in one query and only rows whose values differ are written, so
    replaying a 1,000-row import issues three queries and changes nothing. A later row
    with the same external_id as an earlier one in the same batch wins.
    """
    result = UpsertResult()
    if not rows:
        return result
    keys = [row.external_id for row in rows]
    existing = {
        o.external_id: o
        for o in Order.objects.select_for_update().filter(external_id__in=set(keys))
    }
    to_create: dict[str, Order] = {}
    to_update: dict[str, Order] = {}
    changed_fields: set[str] = set()
    touched: set[int] = set()
    for row in rows:
        values = _order_values(row)
        order = existing.get(row.external_id) or to_create.get(row.external_id)
        if (
            order is not None
            and row.status == OrderStatus.REFUNDED
            and row.refunded_at is None
            and order.refunded_at is not None
        ):
            # Keep the first-seen refund time: stamping "now" again would make every
            # replay of a refunded order an update.
            values["refunded_at"] = order.refunded_at
        if order is None:
            order = Order(external_id=row.external_id, **values)
            to_create[row.external_id] = order
            result.outcomes.append("created")
            touched.add(row.customer_id)
            continue
        diff = [name for name, value in values.items() if getattr(order, name) != value]
        if not diff:
            result.outcomes.append("unchanged")
            continue
        touched.update({order.customer_id, row.customer_id})
        for name in diff:
            setattr(order, name, values[name])
        changed_fields.update(diff)
        if row.external_id not in to_create:
            to_update[row.external_id] = order
        result.outcomes.append("updated")
    Order.objects.bulk_create(to_create.values(), batch_size=1000)
    if to_update:
        now = timezone.now()
        for order in to_update.values():
            order.updated_at = now
        Order.objects.bulk_update(
            to_update.values(), [*sorted(changed_fields), "updated_at"], batch_size=1000
        )
    by_key = {**existing, **to_create}
    result.ids = [by_key[k].pk for k in keys]
    announce(touched, Fact.ORDER)
    return result


# --- Activities ------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ActivityInput:
    """One validated timeline event. Without a key, one is derived from its content, so
    that replaying the same event is still recognised."""

    customer_id: int
    kind: str
    occurred_at: datetime
    source: str = ActivitySource.API
    staff_id: int | None = None
    payload: Mapping[str, Any] = field(default_factory=dict)
    idempotency_key: str = ""

    def key(self) -> str:
        if self.idempotency_key:
            return self.idempotency_key
        digest = hashlib.sha256(
            json.dumps(
                [
                    self.customer_id,
                    self.kind,
                    # UTC, so that one instant gives one key whichever door and offset
                    # it came in by (an API client's +08:00, WeCom's epoch seconds).
                    self.occurred_at.astimezone(UTC).isoformat(),
                    self.source,
                    self.payload,
                ],
                sort_keys=True,
                default=str,
                ensure_ascii=False,
            ).encode()
        ).hexdigest()
        return f"auto:{digest}"


@transaction.atomic
def activities_record(*, rows: Sequence[ActivityInput]) -> UpsertResult:
    """Store timeline events once each, keyed by idempotency key, all or nothing.

    Activities are facts: an event whose key is already stored is reported ``unchanged``
    and never rewritten.
    """
    result = UpsertResult()
    if not rows:
        return result
    keys = [row.key() for row in rows]
    existing = dict(
        Activity.objects.filter(idempotency_key__in=set(keys)).values_list("idempotency_key", "id")
    )
    new: dict[str, Activity] = {}
    for row, key in zip(rows, keys, strict=True):
        if key in existing or key in new:
            result.outcomes.append("unchanged")
            continue
        new[key] = Activity(
            customer_id=row.customer_id,
            kind=row.kind,
            occurred_at=row.occurred_at,
            source=row.source,
            staff_id=row.staff_id,
            payload=dict(row.payload),
            idempotency_key=key,
        )
        result.outcomes.append("created")
    # ignore_conflicts covers a concurrent import of the same keys; re-read the ids after.
    Activity.objects.bulk_create(new.values(), batch_size=1000, ignore_conflicts=True)
    if new:
        existing.update(
            Activity.objects.filter(idempotency_key__in=list(new)).values_list(
                "idempotency_key", "id"
            )
        )
    result.ids = [existing[k] for k in keys]
    announce({a.customer_id for a in new.values()}, Fact.ACTIVITY)
    return result


def activity_record(
    *,
    customer: Customer,
    kind: str,
    occurred_at: datetime | None = None,
    source: str = ActivitySource.SYSTEM,
    staff: Staff | None = None,
    payload: Mapping[str, Any] | None = None,
    idempotency_key: str = "",
) -> Activity:
    """Record one event (see :func:`activities_record`) and return the stored row."""
    result = activities_record(
        rows=[
            ActivityInput(
                customer_id=customer.pk,
                kind=kind,
                occurred_at=occurred_at or timezone.now(),
                source=source,
                staff_id=staff.pk if staff else None,
                payload=payload or {},
                idempotency_key=idempotency_key,
            )
        ]
    )
    return Activity.objects.get(pk=result.ids[0])


# --- Notes and tags --------------------------------------------------------------------


@transaction.atomic
def note_create(*, customer: Customer, author: Any, body: str, source: str) -> Note:
    body = body.strip()
    if not body:
        raise ValidationError({"body": "A note cannot be empty."})
    note = Note.objects.create(customer=customer, author=author, body=body)
    activities_record(
        rows=[
            ActivityInput(
                customer_id=customer.pk,
                kind=ActivityKind.NOTE_ADDED,
                occurred_at=note.created_at,
                source=source,
                staff_id=getattr(getattr(author, "staff_profile", None), "pk", None),
                payload={"note_id": note.pk, "text": body[:200]},
                idempotency_key=f"note:{note.pk}",
            )
        ]
    )
    return note


@transaction.atomic
def customer_tag_add(
    *, customer: Customer, tag: Tag, staff: Staff | None = None, source: str
) -> bool:
    """Tag a customer; returns False when the tag was already there."""
    _link, created = CustomerTag.objects.get_or_create(
        customer=customer, tag=tag, defaults={"staff": staff}
    )
    if created:
        activity_record(
            customer=customer,
            kind=ActivityKind.TAG_ADDED,
            source=source,
            staff=staff,
            payload={"tag_id": tag.pk, "tag": tag.name},
            idempotency_key=f"tag-add:{_link.pk}",
        )
        announce([customer.pk], Fact.TAG)
    return created


@transaction.atomic
def customer_tag_remove(
    *, customer: Customer, tag: Tag, staff: Staff | None = None, source: str
) -> bool:
    """Untag a customer; returns False when the tag was not there."""
    link = CustomerTag.objects.filter(customer=customer, tag=tag).first()
    if link is None:
        return False
    link_id = link.pk
    link.delete()
    activity_record(
        customer=customer,
        kind=ActivityKind.TAG_REMOVED,
        source=source,
        staff=staff,
        payload={"tag_id": tag.pk, "tag": tag.name},
        idempotency_key=f"tag-remove:{link_id}",
    )
    announce([customer.pk], Fact.TAG)
    return True


# --- Stores and staff ------------------------------------------------------------------


@transaction.atomic
def store_upsert(*, code: str, data: Mapping[str, Any]) -> tuple[Store, str]:
    store = Store.objects.select_for_update().filter(code=code).first()
    if store is None:
        return Store.objects.create(code=code, **data), "created"
    changed = [k for k, v in data.items() if getattr(store, k) != v]
    for name in changed:
        setattr(store, name, data[name])
    if changed:
        store.save(update_fields=[*changed, "updated_at"])
    return store, ("updated" if changed else "unchanged")


@transaction.atomic
def staff_upsert(*, wecom_userid: str, data: Mapping[str, Any]) -> tuple[Staff, str]:
    staff = Staff.objects.select_for_update().filter(wecom_userid=wecom_userid).first()
    if staff is None:
        return Staff.objects.create(wecom_userid=wecom_userid, **data), "created"
    changed = [k for k, v in data.items() if getattr(staff, k) != v]
    for name in changed:
        setattr(staff, name, data[name])
    if changed:
        staff.save(update_fields=[*changed, "updated_at"])
    return staff, ("updated" if changed else "unchanged")


# --- Follows and the tag catalogue -----------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class FollowInput:
    """One validated follow (staff member has the customer as a WeCom contact)."""

    customer_id: int
    staff_id: int
    added_at: datetime
    state: str = ""
    remark: str = ""
    description: str = ""
    add_way: int = 0
    oper_userid: str = ""
    deleted_at: datetime | None = None


_FOLLOW_FIELDS = [f.name for f in fields(FollowInput) if f.name not in ("customer_id", "staff_id")]


@transaction.atomic
def follows_upsert(*, rows: Sequence[FollowInput]) -> UpsertResult:
    """Create or update follows by (customer, staff), all or nothing.

    Like :func:`orders_upsert`: one read of the existing pairs, only differing rows are
    written, so a replayed sync changes nothing. A later row for the same pair wins.
    """
    result = UpsertResult()
    if not rows:
        return result
    pairs = [(row.customer_id, row.staff_id) for row in rows]
    existing = {
        (f.customer_id, f.staff_id): f
        for f in Follow.objects.select_for_update().filter(
            customer_id__in={c for c, _s in pairs}, staff_id__in={s for _c, s in pairs}
        )
    }
    to_create: dict[tuple[int, int], Follow] = {}
    to_update: dict[tuple[int, int], Follow] = {}
    changed_fields: set[str] = set()
    touched: set[int] = set()
    for row, pair in zip(rows, pairs, strict=True):
        values = {name: getattr(row, name) for name in _FOLLOW_FIELDS}
        follow = existing.get(pair) or to_create.get(pair)
        if follow is None:
            to_create[pair] = Follow(customer_id=row.customer_id, staff_id=row.staff_id, **values)
            result.outcomes.append("created")
            touched.add(row.customer_id)
            continue
        diff = [name for name, value in values.items() if getattr(follow, name) != value]
        if not diff:
            result.outcomes.append("unchanged")
            continue
        for name in diff:
            setattr(follow, name, values[name])
        changed_fields.update(diff)
        if pair not in to_create:
            to_update[pair] = follow
        touched.add(row.customer_id)
        result.outcomes.append("updated")
    Follow.objects.bulk_create(to_create.values(), batch_size=1000)
    if to_update:
        now = timezone.now()
        for follow in to_update.values():
            follow.updated_at = now
        Follow.objects.bulk_update(
            to_update.values(), [*sorted(changed_fields), "updated_at"], batch_size=1000
        )
    by_pair = {**existing, **to_create}
    result.ids = [by_pair[pair].pk for pair in pairs]
    announce(touched, Fact.FOLLOW)
    return result


@transaction.atomic
def tag_group_upsert(
    *, name: str, source: str = TagSource.LOCAL, data: Mapping[str, Any] | None = None
) -> tuple[TagGroup, str]:
    """Create or update the tag group ``name`` of ``source`` (``order``, ``wecom_group_id``)."""
    group = TagGroup.objects.select_for_update().filter(source=source, name=name).first()
    values = dict(data or {})
    if group is None:
        return TagGroup.objects.create(source=source, name=name, **values), "created"
    changed = [k for k, v in values.items() if getattr(group, k) != v]
    for key in changed:
        setattr(group, key, values[key])
    if changed:
        group.save(update_fields=[*changed, "updated_at"])
    return group, ("updated" if changed else "unchanged")


@transaction.atomic
def tag_upsert(
    *, group: TagGroup, name: str, data: Mapping[str, Any] | None = None
) -> tuple[Tag, str]:
    """Create or update the tag ``name`` in ``group`` (``order``, ``wecom_tag_id``)."""
    tag = Tag.objects.select_for_update().filter(group=group, name=name).first()
    values = dict(data or {})
    if tag is None:
        return Tag.objects.create(group=group, name=name, **values), "created"
    changed = [k for k, v in values.items() if getattr(tag, k) != v]
    for key in changed:
        setattr(tag, key, values[key])
    if changed:
        tag.save(update_fields=[*changed, "updated_at"])
    return tag, ("updated" if changed else "unchanged")


# --- Staff and stores (API and dashboard forms) ---------------------------------------


@transaction.atomic
def staff_create(*, data: Mapping[str, Any]) -> Staff:
    """Create a staff member from validated field values (for staff without a WeCom id;
    those with one go through :func:`staff_upsert`)."""
    return Staff.objects.create(**data)


@transaction.atomic
def staff_update(*, staff: Staff, data: Mapping[str, Any]) -> list[str]:
    """Apply changed field values; returns the names of the fields that really changed."""
    changed = [name for name, value in data.items() if getattr(staff, name) != value]
    for name in changed:
        setattr(staff, name, data[name])
    if changed:
        staff.save(update_fields=[*changed, "updated_at"])
    return changed


@transaction.atomic
def store_update(*, store: Store, data: Mapping[str, Any]) -> list[str]:
    """Apply changed field values (``code`` included); returns the fields that changed."""
    changed = [name for name, value in data.items() if getattr(store, name) != value]
    for name in changed:
        setattr(store, name, data[name])
    if changed:
        store.save(update_fields=[*changed, "updated_at"])
    return changed


# --- API clients -----------------------------------------------------------------------


@transaction.atomic
def api_token_issue(*, user: Any, rotate: bool = False) -> str:
    """The user's API token key, created when missing; ``rotate`` replaces the key, so
    the old one stops working at once.

    Unlike ``scrm.services.api_token_rotate`` (the dashboard's, for API clients only) this
    serves any active user, for the ``create_api_token`` command run by an administrator.
    """
    if rotate:
        Token.objects.filter(user=user).delete()
    token, _created = Token.objects.get_or_create(user=user)
    return str(token.key)
