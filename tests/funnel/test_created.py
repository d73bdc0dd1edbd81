"""Customers created by the announcing transaction (``created_ids``) get their first
milestone row in one statement (``milestones_add_customers``) instead of the full
refresh: the rows, stage history and paid periods must be exactly what the full refresh
writes, for every shape a new customer can have. Runs on SQLite and, in the PostgreSQL
pass, on PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

import funnel.services._delta
from customers.hooks import Fact, announce
from customers.models import ActivityKind, Customer, CustomerStatus, OrderStatus
from funnel.models import Milestones, PaidPeriod, StageChange
from funnel.services import milestones_refresh
from tests.factories import (
    ActivityFactory,
    ChannelFactory,
    CustomerFactory,
    OrderFactory,
    StaffFactory,
    StoreFactory,
)
from tests.funnel import reference
from tests.funnel.helpers import customer, funnel_state, local

pytestmark = pytest.mark.django_db

DAY = timedelta(days=1)


@pytest.fixture
def full_refreshes(monkeypatch: pytest.MonkeyPatch) -> list[set[int]]:
    """The customers each fallback of the fast path refreshed in full."""
    calls: list[set[int]] = []
    original = funnel.services._delta.milestones_refresh

    def spy(**kwargs: Any) -> Any:
        calls.append(set(kwargs["customer_ids"]))
        return original(**kwargs)

    monkeypatch.setattr(funnel.services._delta, "milestones_refresh", spy)
    return calls


def test_new_customers_get_what_the_full_refresh_writes(full_refreshes: list[set[int]]) -> None:
    start = local(2026, 3, 1, 9)
    channel, store = ChannelFactory(), StoreFactory()
    staff = StaffFactory(store=store)
    # An existing customer (with a row) who refers one of the new ones.
    referrer = customer(start - 40 * DAY)
    assert Milestones.objects.filter(customer=referrer).exists()

    def new(**data: Any) -> Customer:
        data.setdefault("acquired_at", start + timedelta(hours=len(made), microseconds=7))
        c: Any = CustomerFactory(**data)
        made.append(c)
        return c

    made: list[Customer] = []
    # Created without the services (no announcement yet), as a sync flush does.
    plain = new(source_channel=channel, store=store, owner=staff)
    new(lost_at=start + 3 * DAY, status=CustomerStatus.LOST)
    new(referred_by=referrer)
    # A new referrer and the new customer they referred, in the same flush.
    parent = new()
    new(referred_by=parent, acquired_at=start + 2 * DAY)
    # System activities written in the same transaction move nothing.
    quiet = new()
    ActivityFactory(customer=quiet, kind=ActivityKind.CONTACT_ADDED, occurred_at=start + 9 * DAY)
    # Engagement (not activation) before the announcement: stage 1, retention and bits.
    engaged = new()
    ActivityFactory(customer=engaged, kind=ActivityKind.PAGE_VIEWED, occurred_at=start + 8 * DAY)
    # These cannot take the fast path: activated (a stage change), and a paid order (paid
    # periods, unless refunded: a refunded order counts for nothing).
    activated = new()
    ActivityFactory(customer=activated, kind=ActivityKind.MESSAGE_RECEIVED, occurred_at=start + DAY)
    payer = new()
    OrderFactory(customer=payer, paid_at=start + 2 * DAY, amount=Decimal("12.50"))
    refunded = new()
    OrderFactory(customer=refunded, paid_at=start + 2 * DAY, status=OrderStatus.REFUNDED)
    # Already has a row (refreshed earlier in the transaction), then more facts: the row
    # is recomputed, not kept.
    early = new()
    milestones_refresh(customer_ids=[early.pk])
    ActivityFactory(customer=early, kind=ActivityKind.MEMBER_JOINED, occurred_at=start + DAY)

    created = [c.pk for c in made]
    announce(
        [*created, referrer.pk, parent.pk],
        Fact.CUSTOMER,
        Fact.REFERRAL,
        created_ids=created,
    )
    # The plain first row is for customers with no fact yet (what a sync creates); a
    # referrer, an engaged, activated or paying customer, and one with a row already,
    # take the full refresh.
    assert full_refreshes == [{activated.pk, payer.pk, early.pk, parent.pk, engaged.pk}]
    everyone = [*created, referrer.pk]
    fast = funnel_state(everyone)

    # The full refresh of the same customers from nothing gives the same.
    StageChange.objects.filter(customer__in=everyone).delete()
    PaidPeriod.objects.filter(customer__in=everyone).delete()
    Milestones.objects.filter(customer__in=everyone).delete()
    milestones_refresh(customer_ids=everyone)
    assert funnel_state(everyone) == fast
    raw = reference.load_raw()
    assert fast[0] == [reference.milestone_row(raw[i]) for i in sorted(everyone)]
    # And what the definitions say, for the shapes the fast path took.
    rows = {r["customer_id"]: r for r in fast[0]}
    assert rows[plain.pk]["channel_id"] == channel.pk and rows[plain.pk]["owner_id"] == staff.pk
    assert rows[parent.pk]["referral_at"] == start + 2 * DAY
    assert rows[parent.pk]["stage"] == 1
    assert rows[referrer.pk]["referral_at"] == made[2].acquired_at
    assert rows[engaged.pk]["retained_at"] == start + 8 * DAY
    assert rows[engaged.pk]["engaged_weeks"] == 2
    assert rows[activated.pk]["stage"] == 2
    assert {(c, f, t) for c, f, t, _at in fast[1]} == {(activated.pk, 1, 2), (early.pk, 1, 2)}
    assert {p[0] for p in fast[2]} == {payer.pk}


def test_created_ids_are_only_ever_announced_customers(full_refreshes: list[set[int]]) -> None:
    c: Any = CustomerFactory(acquired_at=local(2026, 3, 1, 9))
    other: Any = CustomerFactory(acquired_at=local(2026, 3, 1, 9))
    announce([c.pk], Fact.CUSTOMER, created_ids=[c.pk, other.pk])
    assert Milestones.objects.filter(customer=c).exists()
    assert not Milestones.objects.filter(customer=other).exists()
    assert full_refreshes == []
