"""Customers: created and updated one by one (API, dashboard) or in bulk from a messaging
platform (WeCom contacts, keyed by ``external_userid``), and their active/lost status."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from customers.hooks import Fact, announce
from customers.models import Customer, CustomerStatus, Follow
from customers.services._upsert import save_changes, upsert_many

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
    changed = save_changes(customer, data)
    if not changed:
        return []
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


# --- Contacts from a messaging platform -------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ContactInput:
    """A customer as the platform describes it. ``acquired_at`` is the earliest add time
    seen for it; ``source_channel_id`` / ``referred_by_id`` are first-touch attribution,
    and ``owner_id`` / ``store_id`` the staff member who added it first and their store;
    those four are applied only where the customer has none yet."""

    external_userid: str
    name: str
    avatar: str = ""
    gender: int = 0
    unionid: str = ""
    acquired_at: datetime
    source_channel_id: int | None = None
    referred_by_id: int | None = None
    owner_id: int | None = None
    store_id: int | None = None


@dataclass
class ContactsResult:
    by_key: dict[str, int] = field(default_factory=dict)
    created: int = 0
    updated: int = 0
    changed_ids: set[int] = field(default_factory=set)


_PROFILE = ("name", "avatar", "gender", "unionid")
#: Filled from the platform only where the customer has no value yet.
_FILL_ONLY = ("source_channel_id", "owner_id", "store_id")
_CONTACT_FIELDS = (*_PROFILE, "acquired_at", "referred_by_id", *_FILL_ONLY)


def _new_contact(row: ContactInput) -> dict[str, Any]:
    return {
        **{name: getattr(row, name) for name in _PROFILE},
        "acquired_at": row.acquired_at,
        "referred_by_id": row.referred_by_id,
        **{name: getattr(row, name) for name in _FILL_ONLY},
    }


def _contact_changes(stored: Mapping[str, Any], row: ContactInput) -> dict[str, Any]:
    """The values to apply to a known customer: the profile as the platform has it now;
    the acquisition time only moves earlier; attribution only fills what is empty."""
    values: dict[str, Any] = {name: getattr(row, name) for name in _PROFILE}
    if row.acquired_at < stored["acquired_at"]:
        values["acquired_at"] = row.acquired_at
    for name in _FILL_ONLY:
        if stored[name] is None and getattr(row, name) is not None:
            values[name] = getattr(row, name)
    if (
        stored["referred_by_id"] is None
        and row.referred_by_id is not None
        and row.referred_by_id != stored["id"]
    ):
        values["referred_by_id"] = row.referred_by_id
    return values


@transaction.atomic
def contacts_upsert(*, rows: Sequence[ContactInput]) -> ContactsResult:
    """Create or update customers by ``external_userid`` in a few queries, all or nothing.

    A row repeated in the batch keeps the earliest ``acquired_at``. Unchanged customers
    are not written (a re-sync with no change writes nothing).
    """
    merged: dict[str, ContactInput] = {}
    for row in rows:
        earlier = merged.get(row.external_userid)
        if earlier is not None and earlier.acquired_at < row.acquired_at:
            row = replace(row, acquired_at=earlier.acquired_at)
        merged[row.external_userid] = row
    if not merged:
        return ContactsResult()
    existing = {
        str(c["external_userid"]): c
        for c in Customer.objects.select_for_update()
        .filter(external_userid__in=list(merged))
        .values("id", "external_userid", *_CONTACT_FIELDS)
    }
    upserted, changed = upsert_many(
        Customer,
        rows=[(key, {"external_userid": key, **_new_contact(row)}) for key, row in merged.items()],
        existing=existing,
        adjust=lambda stored, _values: _contact_changes(stored, merged[stored["external_userid"]]),
    )
    result = ContactsResult(
        by_key=dict(zip(merged, upserted.ids, strict=True)),
        created=upserted.created,
        updated=upserted.updated,
        changed_ids={c["id"] for c in changed},
    )
    referrers = {c["referred_by_id"] for c in changed if c.get("referred_by_id")}
    facts = [Fact.CUSTOMER]
    if referrers:
        facts.append(Fact.REFERRAL)
    created_ids = {
        pk
        for pk, outcome in zip(upserted.ids, upserted.outcomes, strict=True)
        if outcome == "created"
    }
    announce(result.changed_ids | referrers, *facts, created_ids=created_ids)
    return result


@transaction.atomic
def customers_refresh_status(*, customer_ids: Iterable[int], at: datetime) -> tuple[int, int]:
    """Among these customers, a platform contact who deleted every staff member is lost
    (with the time); one with an active follow again is active. Only customers that have
    had follows are concerned. Returns (lost, reactivated)."""
    ids = list(customer_ids)
    if not ids:
        return 0, 0
    active_follow = Follow.objects.filter(customer=OuterRef("pk"), deleted_at__isnull=True)
    any_follow = Follow.objects.filter(customer=OuterRef("pk"))
    base = Customer.objects.filter(pk__in=ids, external_userid__isnull=False)
    to_lose = list(
        base.filter(
            Exists(any_follow), ~Exists(active_follow), status=CustomerStatus.ACTIVE
        ).values_list("pk", flat=True)
    )
    to_revive = list(
        base.filter(Exists(active_follow), status=CustomerStatus.LOST).values_list("pk", flat=True)
    )
    if to_lose:
        Customer.objects.filter(pk__in=to_lose).update(
            status=CustomerStatus.LOST, lost_at=at, updated_at=timezone.now()
        )
    if to_revive:
        Customer.objects.filter(pk__in=to_revive).update(
            status=CustomerStatus.ACTIVE, lost_at=None, updated_at=timezone.now()
        )
    announce({*to_lose, *to_revive}, Fact.CUSTOMER)
    return len(to_lose), len(to_revive)
