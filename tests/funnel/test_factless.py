"""A refresh of customers whose row needs nothing but the customer (no activity that
counts, no paid order, no referee; a stored row of stage 1 with nothing paid) rewrites
it in one statement on PostgreSQL (``_refresh_factless_pg``); the others take the full
refresh. Both must write exactly what the full refresh writes from nothing. Runs on
SQLite (where every customer takes the full refresh) and on PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection

import funnel.services._refresh
from customers.models import Activity, ActivityKind, Order, OrderStatus
from customers.services import customer_update
from funnel.models import Milestones, PaidPeriod, StageChange
from funnel.services import milestones_refresh
from tests.factories import ChannelFactory, StaffFactory, StoreFactory
from tests.funnel import reference
from tests.funnel.helpers import act, customer, funnel_state, local, milestones, pay

pytestmark = pytest.mark.django_db

DAY = timedelta(days=1)


@pytest.fixture
def full_refreshes(monkeypatch: pytest.MonkeyPatch) -> list[set[int]]:
    """The customers each call of the full refresh's writer was given."""
    calls: list[set[int]] = []
    original = funnel.services._refresh._refresh_through_temp

    def spy(cursor: Any, ids: list[int] | None, *args: Any, **kwargs: Any) -> None:
        calls.append(set(ids or ()))
        original(cursor, ids, *args, **kwargs)

    monkeypatch.setattr(funnel.services._refresh, "_refresh_through_temp", spy)
    return calls


def test_customers_with_only_their_own_row_are_rewritten_as_the_full_refresh_would(
    full_refreshes: list[set[int]],
) -> None:
    start = local(2026, 3, 1, 9)
    channel, store = ChannelFactory(), StoreFactory()
    staff = StaffFactory(store=store)
    # Nothing but the customer: a new acquisition time, channel, store and owner.
    moved = customer(start)
    # Engaged (stage 1, retention and bits set), then the activity removed by hand: the
    # row must lose them.
    forgotten = customer(start)
    act(forgotten, ActivityKind.PAGE_VIEWED, start + 8 * DAY)
    assert milestones(forgotten).retained_at is not None
    # Unchanged: covered, nothing written.
    still = customer(start)
    # Activated, then the activity removed: a fall of stage (2 to 1), the full refresh.
    fallen = customer(start)
    act(fallen, ActivityKind.MESSAGE_RECEIVED, start + DAY)
    assert milestones(fallen).stage == 2
    # Paid, then the order refunded by hand: paid periods to remove, the full refresh.
    refunded = customer(start)
    pay(refunded, start + 2 * DAY)
    assert PaidPeriod.objects.filter(customer=refunded).exists()
    # Has a fact that counts: the full refresh.
    engaged = customer(start)
    act(engaged, ActivityKind.PAGE_VIEWED, start + 3 * DAY)
    # Has a referee: the full refresh.
    referrer = customer(start)
    customer(start + DAY, referred_by_id=referrer.pk)

    customer_update(
        customer=moved,
        data={
            "acquired_at": start - 2 * DAY,
            "source_channel_id": channel.pk,
            "store_id": store.pk,
            "owner_id": staff.pk,
        },
    )
    Activity.objects.filter(customer__in=[forgotten, fallen]).delete()
    Order.objects.filter(customer=refunded).update(status=OrderStatus.REFUNDED)
    everyone = [c.pk for c in (moved, forgotten, still, fallen, refunded, engaged, referrer)]
    full_refreshes.clear()

    result = milestones_refresh(customer_ids=everyone, now=start + 30 * DAY)
    refreshed = funnel_state(everyone)

    if connection.vendor == "postgresql":
        assert full_refreshes == [{fallen.pk, refunded.pk, engaged.pk, referrer.pk}]
    else:
        assert full_refreshes == [set(everyone)]
    assert result.customers == len(everyone)
    # forgotten, fallen and refunded (customer_update refreshed moved's row already).
    assert result.changed == 3
    rows = {r["customer_id"]: r for r in refreshed[0]}
    assert rows[moved.pk]["acquired_at"] == start - 2 * DAY
    assert (rows[moved.pk]["channel_id"], rows[moved.pk]["store_id"]) == (channel.pk, store.pk)
    assert rows[moved.pk]["owner_id"] == staff.pk
    assert (rows[forgotten.pk]["retained_at"], rows[forgotten.pk]["engaged_weeks"]) == (None, 0)
    assert rows[fallen.pk]["stage"] == 1
    assert (fallen.pk, 2, 1) in {(c, f, t) for c, f, t, _at in refreshed[1]}
    assert not PaidPeriod.objects.filter(customer=refunded).exists()
    raw = reference.load_raw()
    assert refreshed[0] == [reference.milestone_row(raw[i]) for i in sorted(everyone)]

    # The full refresh of the same customers from nothing gives the same rows and periods
    # (the stage history differs by design: from nothing, only the stages entered).
    StageChange.objects.filter(customer__in=everyone).delete()
    PaidPeriod.objects.filter(customer__in=everyone).delete()
    Milestones.objects.filter(customer__in=everyone).delete()
    milestones_refresh(customer_ids=everyone, now=start + 30 * DAY)
    again = funnel_state(everyone)
    assert (again[0], again[2]) == (refreshed[0], refreshed[2])
