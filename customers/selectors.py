"""Reads of the core tables, always scoped to what the asking user may see.

Row-level permission lives here, in querysets: a view or viewset starts from
``customer_visible_qs(user)`` (or ``customer_get_for_user``) and never from
``Customer.objects``. Another store's customer is then simply not found (404), in the
dashboard, the API and the mobile pages alike.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from django.core.exceptions import ObjectDoesNotExist
from django.db.models import Exists, Model, OuterRef, Prefetch, Q, QuerySet
from django.http import Http404

from customers.models import (
    Activity,
    ActivityKind,
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
from scrm.roles import Role, role_of, sees_everything

_M = TypeVar("_M", bound=Model)


def staff_of(user: Any) -> Staff | None:
    """The active Staff row linked to ``user``, if any."""
    if role_of(user) in (Role.MANAGER, Role.STAFF):
        staff: Staff = user.staff_profile
        return staff
    return None


def visible_to(qs: QuerySet[_M], user: Any, *, customer: str = "pk") -> QuerySet[_M]:
    """Narrow ``qs`` to the customers ``user`` may see.

    ``qs`` is customers, or rows that carry a customer's ``store_id`` and ``owner_id``
    (the funnel's milestones copy them) with the customer's id in the field ``customer``.
    Operators and API clients see everyone; a store manager sees the customers of their
    store (by the customer's store, or an active follow by a staff member of the store);
    store staff see the customers they own or actively follow. Anyone else sees nothing.
    """
    role = role_of(user)
    if role in (Role.OPERATOR, Role.INTEGRATION):
        return qs
    staff = staff_of(user)
    if staff is None:
        return qs.none()
    if role == Role.MANAGER:
        if staff.store_id is None:
            return qs.none()
        store_follow = Follow.objects.filter(
            customer_id=OuterRef(customer), staff__store_id=staff.store_id, deleted_at__isnull=True
        )
        return qs.filter(Q(store_id=staff.store_id) | Exists(store_follow))
    own_follow = Follow.objects.filter(
        customer_id=OuterRef(customer), staff_id=staff.pk, deleted_at__isnull=True
    )
    return qs.filter(Q(owner_id=staff.pk) | Exists(own_follow))


def customer_visible_qs(user: Any) -> QuerySet[Customer]:
    """Customers ``user`` may see (see :func:`visible_to`)."""
    return visible_to(Customer.objects.all(), user)


def customer_get_for_user(user: Any, pk: Any) -> Customer:
    """Fetch one customer the user may see, or raise Http404 (never 403: no leak of ids)."""
    try:
        return customer_visible_qs(user).get(pk=int(pk))
    except (Customer.DoesNotExist, TypeError, ValueError):
        raise Http404("No such customer.") from None


def customer_id_by_external_userid_for_user(user: Any, external_userid: str) -> int:
    """The id of the WeCom contact ``external_userid`` among the customers ``user`` may
    see; 404 otherwise (an invisible contact is answered exactly like an unknown one)."""
    pk = (
        customer_visible_qs(user)
        .filter(external_userid=external_userid)
        .values_list("pk", flat=True)
        .first()
    )
    if pk is None:
        raise Http404("No such customer.")
    return int(pk)


def customer_list_qs(user: Any) -> QuerySet[Customer]:
    """The customer list's base queryset, with what each row shows joined in one query."""
    return customer_visible_qs(user).select_related("owner", "store", "source_channel")


def customer_detail(user: Any, pk: Any) -> Customer:
    """One customer with profile relations loaded for the detail page / API."""
    customer = customer_get_for_user(user, pk)
    customer = (
        Customer.objects.select_related("owner", "store", "source_channel", "referred_by")
        .prefetch_related(
            Prefetch("follows", queryset=Follow.objects.select_related("staff", "staff__store")),
            Prefetch("tag_links", queryset=CustomerTag.objects.select_related("tag__group")),
        )
        .get(pk=customer.pk)
    )
    return customer


def order_visible_qs(user: Any) -> QuerySet[Order]:
    # Those who see every customer get no "customer IN (SELECT id FROM customer)" filter:
    # it adds nothing but a scan of the customer table to every order query.
    if sees_everything(user):
        return Order.objects.all()
    return Order.objects.filter(customer__in=customer_visible_qs(user))


def activity_visible_qs(user: Any) -> QuerySet[Activity]:
    if sees_everything(user):
        return Activity.objects.all()
    return Activity.objects.filter(customer__in=customer_visible_qs(user))


def note_visible_qs(user: Any) -> QuerySet[Note]:
    if sees_everything(user):
        return Note.objects.all()
    return Note.objects.filter(customer__in=customer_visible_qs(user))


def order_get_for_user(user: Any, pk: Any) -> Order:
    try:
        return order_visible_qs(user).get(pk=int(pk))
    except (Order.DoesNotExist, TypeError, ValueError):
        raise Http404("No such order.") from None


def staff_visible_qs(user: Any) -> QuerySet[Staff]:
    """Operators and API clients see all staff; store people see their store's staff."""
    role = role_of(user)
    qs = Staff.objects.select_related("store", "user")
    if role in (Role.OPERATOR, Role.INTEGRATION):
        return qs
    staff = staff_of(user)
    if staff is None:
        return qs.none()
    if staff.store_id is None:
        return qs.filter(pk=staff.pk)
    return qs.filter(store_id=staff.store_id)


def store_visible_qs(user: Any) -> QuerySet[Store]:
    role = role_of(user)
    if role in (Role.OPERATOR, Role.INTEGRATION):
        return Store.objects.all()
    staff = staff_of(user)
    if staff is None or staff.store_id is None:
        return Store.objects.none()
    return Store.objects.filter(pk=staff.store_id)


def tag_visible_qs(user: Any) -> QuerySet[Tag]:
    """Tags are corp-wide vocabulary: anyone with a role may read them."""
    if role_of(user) is None:
        return Tag.objects.none()
    return Tag.objects.select_related("group")


def tag_group_visible_qs(user: Any) -> QuerySet[TagGroup]:
    if role_of(user) is None:
        return TagGroup.objects.none()
    return TagGroup.objects.prefetch_related("tags")


def customer_timeline(customer: Customer, *, limit: int = 100) -> list[Activity]:
    return list(
        Activity.objects.filter(customer=customer)
        .select_related("staff")
        .order_by("-occurred_at", "-id")[:limit]
    )


def _payload_summary(payload: Mapping[str, Any]) -> str:
    """One short line from an activity's payload, from the keys our own writers use."""
    if not isinstance(payload, Mapping):
        return ""
    for key in ("text", "tag", "title", "product_name", "name", "url"):
        value = payload.get(key)
        if value:
            return str(value)[:200]
    return ""


@dataclass(frozen=True)
class TimelineEntry:
    """An activity as a timeline shows it: a label for its kind and a one-line summary."""

    activity: Activity
    label: str
    summary: str


def timeline_entries(activities: Iterable[Activity]) -> list[TimelineEntry]:
    labels = dict(ActivityKind.choices)
    return [
        TimelineEntry(
            activity=activity,
            # Integrations may record kinds we do not know: show them as they came.
            label=str(labels.get(activity.kind, activity.kind)),
            summary=_payload_summary(activity.payload),
        )
        for activity in activities
    ]


def customer_orders(customer: Customer, *, limit: int = 50) -> list[Order]:
    """The customer's latest orders, newest first, bounded for a detail page."""
    return list(
        Order.objects.filter(customer=customer)
        .select_related("store")
        .order_by("-paid_at", "-id")[:limit]
    )


def customer_notes(customer: Customer, *, limit: int = 50) -> list[Note]:
    """The customer's latest notes with their authors, newest first, bounded."""
    return list(
        Note.objects.filter(customer=customer)
        .select_related("author")
        .order_by("-created_at", "-id")[:limit]
    )


def channel_options(user: Any) -> list[tuple[int, str]]:
    """(id, name) of every channel, for a filter's choices.

    Channels are corp-wide vocabulary like tags, so anyone with a role may read them. The
    model is reached through ``Customer.source_channel`` so that ``customers`` still
    imports nothing from ``channels``.
    """
    if role_of(user) is None:
        return []
    channel_model = Customer._meta.get_field("source_channel").related_model
    assert channel_model is not None and not isinstance(channel_model, str)
    return list(channel_model._default_manager.order_by("name", "pk").values_list("pk", "name"))


# --- One access helper per model, and bulk look-ups for imports -------------------------


def _get_or_404(qs: QuerySet[_M], pk: Any, what: str) -> _M:
    try:
        return qs.get(pk=int(pk))
    except (ObjectDoesNotExist, TypeError, ValueError, OverflowError):
        raise Http404(f"No such {what}.") from None


def activity_get_for_user(user: Any, pk: Any) -> Activity:
    """One timeline event of a customer the user may see, or Http404."""
    return _get_or_404(activity_visible_qs(user), pk, "activity")


def note_get_for_user(user: Any, pk: Any) -> Note:
    """One note on a customer the user may see, or Http404."""
    return _get_or_404(note_visible_qs(user).select_related("author"), pk, "note")


def staff_get_for_user(user: Any, pk: Any) -> Staff:
    return _get_or_404(staff_visible_qs(user), pk, "staff member")


def store_get_for_user(user: Any, pk: Any) -> Store:
    return _get_or_404(store_visible_qs(user), pk, "store")


def tag_get_for_user(user: Any, pk: Any) -> Tag:
    return _get_or_404(tag_visible_qs(user), pk, "tag")


def tag_group_get_for_user(user: Any, pk: Any) -> TagGroup:
    return _get_or_404(tag_group_visible_qs(user), pk, "tag group")


def order_customer_ids_by_external_id(external_ids: Iterable[str]) -> dict[str, int]:
    """Stored orders' customer ids by order external_id, in one query.

    An import uses it to refuse rewriting an order that belongs to a customer the caller
    may not see (a store clerk replaying another store's order id).
    """
    keys = {k for k in external_ids if k}
    if not keys:
        return {}
    return dict(
        Order.objects.filter(external_id__in=keys).values_list("external_id", "customer_id")
    )


def activity_customer_ids_by_key(keys: Iterable[str]) -> dict[str, int]:
    """Stored activities' customer ids by idempotency key, in one query (to detect a key
    reused for another customer, which would otherwise be silently reported unchanged)."""
    wanted = {k for k in keys if k}
    if not wanted:
        return {}
    return dict(
        Activity.objects.filter(idempotency_key__in=wanted).values_list(
            "idempotency_key", "customer_id"
        )
    )
