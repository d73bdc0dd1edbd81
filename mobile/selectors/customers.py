"""Reads behind the mobile "My customers" list and the customer card.

Who may see which customer is decided by ``customers.selectors`` (``customer_visible_qs``,
``customer_get_for_user``); this module only shapes what a phone screen shows. The list is
one query for its rows: what each row shows (stage, last order, next step, last activity)
is annotated by correlated subqueries, so 1,000 customers cost what 10 do; only the page's
next-step labels are fetched by one more query over at most a page of ids.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import (
    Exists,
    F,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
)
from django.db.models.functions import Coalesce, Replace
from django.utils import timezone
from django.utils.translation import gettext

from campaigns.models import Touchpoint, TouchpointStatus
from campaigns.services.levers import points_balance
from channels.models import ChannelCode
from customers.models import (
    Activity,
    Customer,
    CustomerTag,
    Follow,
    Note,
    Order,
    OrderStatus,
    Tag,
)
from customers.selectors import (
    TimelineEntry,
    customer_detail,
    customer_notes,
    customer_orders,
    customer_timeline,
    customer_visible_qs,
    tag_visible_qs,
    timeline_entries,
)
from funnel.models import Milestones, Stage, StageChange

# --- The list --------------------------------------------------------------------------

#: Sort keys offered by the list, each ending with the primary key so that offset pages
#: over a non-unique key (a name, a day without orders) never repeat or skip a row.
SORTS: dict[str, tuple[Any, ...]] = {
    "recent": (F("last_activity_at").desc(nulls_last=True), F("pk").desc()),
    "name": (F("name").asc(), F("pk").asc()),
    "last_order": (F("last_order_at").desc(nulls_last=True), F("pk").desc()),
    "next_step": (F("next_due_at").asc(nulls_last=True), F("pk").asc()),
    "newest": (F("acquired_at").desc(), F("pk").desc()),
}
DEFAULT_SORT = "recent"
#: "activity" filter values: within N days, or none for 30 days and more.
ACTIVITY_WITHIN = {"7": 7, "30": 30, "90": 90}
ACTIVITY_IDLE = "idle30"
IDLE_DAYS = 30
# Characters people type inside a phone number; a query of digits and these is a phone.
_PHONE_QUERY = re.compile(r"^[\d\s+\-()]+$")
_PHONE_SEPARATORS = (" ", "-")


@dataclass(frozen=True, kw_only=True)
class CustomerListFilters:
    """The list's parsed query string (invalid values were already dropped)."""

    q: str = ""
    stage: int | None = None
    tag: Tag | None = None
    channel: int | None = None
    activity: str = ""
    sort: str = DEFAULT_SORT


def _engagement() -> QuerySet[Activity]:
    """The customer's own activity: what the system or staff write (sync, sent touchpoints,
    tags, notes: FUNNEL_SYSTEM_KINDS) says nothing of whether the customer is active."""
    return Activity.objects.exclude(kind__in=settings.FUNNEL_SYSTEM_KINDS)


def _pending_touchpoints() -> QuerySet[Touchpoint]:
    # The (customer, due_at) index serves the per-customer "first due" subquery.
    return Touchpoint.objects.filter(
        customer_id=OuterRef("pk"), status=TouchpointStatus.PENDING
    ).order_by("due_at", "id")


def my_customers_qs(user: Any) -> QuerySet[Customer]:
    """The customers ``user`` may see, each with what a list row shows.

    ``stage`` (1 when the funnel has no row yet), ``last_order_at`` / ``last_order_amount``
    (the latest paid order), ``next_due_at`` / ``next_touchpoint_id`` (the earliest pending
    touchpoint) and ``last_activity_at`` are correlated subqueries of one statement.
    """
    paid = Order.objects.filter(customer_id=OuterRef("pk"), status=OrderStatus.PAID).order_by(
        "-paid_at", "-id"
    )
    pending = _pending_touchpoints()
    # The (customer, -occurred_at) index answers this with one index probe per customer.
    last_activity = (
        _engagement()
        .filter(customer_id=OuterRef("pk"))
        .order_by("-occurred_at", "-id")
        .values("occurred_at")[:1]
    )
    stage = Milestones.objects.filter(customer_id=OuterRef("pk")).values("stage")[:1]
    return customer_visible_qs(user).annotate(
        stage=Coalesce(Subquery(stage, output_field=IntegerField()), Value(int(Stage.ACQUISITION))),
        last_order_at=Subquery(paid.values("paid_at")[:1]),
        last_order_amount=Subquery(paid.values("amount")[:1]),
        next_due_at=Subquery(pending.values("due_at")[:1]),
        next_touchpoint_id=Subquery(pending.values("pk")[:1]),
        last_activity_at=Subquery(last_activity),
    )


def _phone_digits(q: str) -> str:
    return re.sub(r"\D", "", q) if _PHONE_QUERY.match(q) else ""


def _search(qs: QuerySet[Customer], q: str, *, masked: bool) -> QuerySet[Customer]:
    q = q.strip()
    if not q:
        return qs
    # A remark is the staff member's own name for the contact in WeCom: clerks search by
    # it first. Any follow of the customer counts (the card shows them all).
    remark = Follow.objects.filter(customer_id=OuterRef("pk"), remark__icontains=q)
    condition: Q = Q(name__icontains=q) | Q(Exists(remark))
    digits = _phone_digits(q)
    if len(digits) >= 3:
        phone = Replace(Replace(F("phone"), Value(" "), Value("")), Value("-"), Value(""))
        qs = qs.alias(phone_digits=phone)
        if masked:
            # A clerk sees 138****0001: matching on middle digits would reveal them one
            # search at a time, so only the whole number or what the mask shows matches.
            condition |= Q(phone_digits=digits)
            if len(digits) <= 4:
                condition |= Q(phone_digits__endswith=digits)
            if len(digits) <= 3:
                condition |= Q(phone_digits__startswith=digits)
        else:
            condition |= Q(phone_digits__contains=digits)
    return qs.filter(condition)


def my_customers_filtered(
    user: Any, filters: CustomerListFilters, *, masked: bool, now: datetime | None = None
) -> QuerySet[Customer]:
    """``my_customers_qs`` narrowed by ``filters`` and in a total order."""
    now = now or timezone.now()
    qs = _search(my_customers_qs(user), filters.q, masked=masked)
    if filters.stage is not None:
        qs = qs.filter(stage=filters.stage)  # type: ignore[misc]  # the annotation
    if filters.tag is not None:
        qs = qs.filter(
            Exists(CustomerTag.objects.filter(customer_id=OuterRef("pk"), tag=filters.tag))
        )
    if filters.channel is not None:
        qs = qs.filter(source_channel_id=filters.channel)
    if filters.activity in ACTIVITY_WITHIN:
        since = now - timedelta(days=ACTIVITY_WITHIN[filters.activity])
        qs = qs.filter(
            Exists(_engagement().filter(customer_id=OuterRef("pk"), occurred_at__gte=since))
        )
    elif filters.activity == ACTIVITY_IDLE:
        since = now - timedelta(days=IDLE_DAYS)
        qs = qs.filter(
            ~Exists(_engagement().filter(customer_id=OuterRef("pk"), occurred_at__gte=since))
        )
    return qs.order_by(*SORTS.get(filters.sort, SORTS[DEFAULT_SORT]))


def step_label(touchpoint: Touchpoint) -> str:
    """What a touchpoint asks for, in a few words: the to-do's instruction, else the
    content's name, else the kind of step."""
    step = touchpoint.step
    if step.instruction:
        return step.instruction
    if step.content_id is not None and step.content is not None:
        return step.content.name
    return str(touchpoint.get_kind_display())


def next_steps(rows: Sequence[Customer]) -> dict[int, Touchpoint]:
    """The next touchpoint of each row (by its annotated id), in one query for the page."""
    ids = [tp for tp in (getattr(row, "next_touchpoint_id", None) for row in rows) if tp]
    if not ids:
        return {}
    touchpoints = Touchpoint.objects.filter(pk__in=ids).select_related(
        "sop", "step", "step__content"
    )
    return {tp.customer_id: tp for tp in touchpoints}


# --- The card --------------------------------------------------------------------------

CARD_NOTES = 20
CARD_ORDERS = 10
CARD_TIMELINE = 30
TIMELINE_MORE = 100
CARD_TOUCHPOINTS = 5


def card_customer_get(user: Any, pk: Any) -> Customer:
    """The mobile access helper: the customer with profile relations, or Http404 when
    ``user`` may not see them (``customers.selectors.customer_get_for_user`` decides)."""
    return customer_detail(user, pk)


@dataclass
class StageSection:
    stage: int
    label: str
    history: list[StageChange]
    revenue_at: datetime | None = None
    paid_orders: int = 0


def card_stage(customer: Customer) -> StageSection:
    """The current stage and its history (funnel ``StageChange`` rows, oldest first)."""
    milestone = (
        Milestones.objects.filter(customer_id=customer.pk)
        .values("stage", "revenue_at", "paid_orders")
        .first()
    )
    stage = int(milestone["stage"]) if milestone else int(Stage.ACQUISITION)
    history = list(StageChange.objects.filter(customer_id=customer.pk).order_by("at", "id"))
    return StageSection(
        stage=stage,
        label=str(Stage(stage).label),
        history=history,
        revenue_at=milestone["revenue_at"] if milestone else None,
        paid_orders=int(milestone["paid_orders"]) if milestone else 0,
    )


@dataclass
class TagsSection:
    links: list[CustomerTag]
    #: (group name, [(tag id, tag name)]) of the tags the customer does not have yet.
    options: list[tuple[str, list[tuple[int, str]]]] = field(default_factory=list)


def card_tags(user: Any, customer: Customer) -> TagsSection:
    """The customer's tags and the picker's choices (the visible tags not on them)."""
    links = list(
        CustomerTag.objects.filter(customer_id=customer.pk)
        .select_related("tag__group")
        .order_by("tag__group__name", "tag__name", "tag_id")
    )
    have = {link.tag_id for link in links}
    groups: dict[str, list[tuple[int, str]]] = {}
    for tag in tag_visible_qs(user).order_by("group__name", "group_id", "name", "id"):
        if tag.pk not in have:
            groups.setdefault(tag.group.name, []).append((tag.pk, tag.name))
    return TagsSection(links=links, options=list(groups.items()))


def card_notes(customer: Customer) -> list[Note]:
    return customer_notes(customer, limit=CARD_NOTES)


def card_orders(customer: Customer) -> list[Order]:
    return customer_orders(customer, limit=CARD_ORDERS)


def card_timeline(customer: Customer, *, limit: int = CARD_TIMELINE) -> list[TimelineEntry]:
    return timeline_entries(customer_timeline(customer, limit=limit))


@dataclass(frozen=True)
class UpcomingTouchpoint:
    touchpoint: Touchpoint
    label: str


def card_touchpoints(customer: Customer) -> list[UpcomingTouchpoint]:
    """The customer's next pending touchpoints (the customer was checked by the caller)."""
    touchpoints = (
        Touchpoint.objects.filter(customer_id=customer.pk, status=TouchpointStatus.PENDING)
        .select_related("sop", "step", "step__content")
        .order_by("due_at", "id")[:CARD_TOUCHPOINTS]
    )
    return [UpcomingTouchpoint(tp, step_label(tp)) for tp in touchpoints]


def card_referral_code(customer: Customer) -> ChannelCode | None:
    """The customer's active referral code if one exists. Never creates one: a GET must
    not write (``channels.services.referral_code_for`` creates it on an explicit POST)."""
    return (
        ChannelCode.objects.filter(referrer_id=customer.pk, is_active=True).order_by("id").first()
    )


@dataclass
class CustomerCard:
    customer: Customer
    stage: StageSection
    tags: TagsSection
    notes: list[Note]
    orders: list[Order]
    timeline: list[TimelineEntry]
    touchpoints: list[UpcomingTouchpoint]
    referral_code: ChannelCode | None
    points: int
    own_remark: str = ""


def _own_remark(customer: Customer, user: Any) -> str:
    # The follows were prefetched by customer_detail: no query.
    for follow in customer.follows.all():
        if follow.deleted_at is None and follow.staff.user_id == getattr(user, "pk", None):
            return follow.remark
    return ""


def customer_card(
    user: Any, customer: Customer, *, timeline_limit: int = CARD_TIMELINE
) -> CustomerCard:
    """Every section of the card for a customer fetched by :func:`card_customer_get`:
    a fixed number of queries, whatever the number of orders, notes or activities."""
    return CustomerCard(
        customer=customer,
        stage=card_stage(customer),
        tags=card_tags(user, customer),
        notes=card_notes(customer),
        orders=card_orders(customer),
        timeline=card_timeline(customer, limit=timeline_limit),
        touchpoints=card_touchpoints(customer),
        referral_code=card_referral_code(customer),
        points=points_balance(customer.pk),
        own_remark=_own_remark(customer, user),
    )


def stage_label(stage: int) -> str:
    try:
        return str(Stage(stage).label)
    except ValueError:
        return gettext("Unknown")
