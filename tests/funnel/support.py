"""A small funnel world for the API, view and browser tests of the reports.

Customers are made with the factories (which bypass the write services and so the
``facts_changed`` announcement), then the milestones are rebuilt with the one refresh
service, exactly as ``manage.py rebuild_funnel`` would.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from django.utils import timezone

from channels.models import Channel
from customers.models import Customer, Tag
from funnel.services import milestones_refresh
from tests.conftest import World
from tests.factories import (
    ActivityFactory,
    ChannelFactory,
    CustomerFactory,
    CustomerTagFactory,
    FollowFactory,
    OrderFactory,
    TagFactory,
)

#: Every test customer is acquired on or after this day, and the reports ask for
#: [START, END): fixed dates, so no test depends on when it runs.
START = date(2026, 3, 1)
END = date(2026, 4, 1)


def at(day: date, hour: int = 12) -> datetime:
    """Noon (or ``hour``) of ``day`` in the corp's time zone."""
    return timezone.make_aware(datetime(day.year, day.month, day.day, hour))


@dataclass
class FunnelWorld:
    world: World
    ads: Channel
    stores_channel: Channel
    vip: Tag
    # Store A: acquired, activated, retained, bought twice, referred someone.
    champion: Customer
    # Store A: acquired and activated only.
    activated: Customer
    # Store B: bought once, from ads.
    buyer_b: Customer
    # Store A: acquired outside the range.
    outsider: Customer

    def query(self, **extra: Any) -> dict[str, Any]:
        return {"start": START.isoformat(), "end": END.isoformat(), **extra}


def make_funnel_world(world: World) -> FunnelWorld:
    ads = ChannelFactory(name="广告 Ads")
    stores_channel = ChannelFactory(name="门店 Stores")
    vip = TagFactory(name="VIP")
    day = START + timedelta(days=2)

    champion = world.customer_a
    Customer.objects.filter(pk=champion.pk).update(
        acquired_at=at(day), source_channel=stores_channel, owner=world.clerk_a
    )
    ActivityFactory(customer=champion, kind="message_received", occurred_at=at(day, 14))
    ActivityFactory(customer=champion, kind="message_received", occurred_at=at(day + timedelta(9)))
    OrderFactory(customer=champion, paid_at=at(day + timedelta(10)), store=world.store_a)
    OrderFactory(customer=champion, paid_at=at(day + timedelta(20)), store=world.store_a)
    CustomerTagFactory(customer=champion, tag=vip)
    # The referee is acquired through the champion, in range too.
    CustomerFactory(
        name="Referee",
        store=world.store_a,
        referred_by=champion,
        acquired_at=at(day + timedelta(12)),
        source_channel=stores_channel,
    )

    activated = world.customer_a2
    Customer.objects.filter(pk=activated.pk).update(
        acquired_at=at(day + timedelta(1)), source_channel=ads
    )
    ActivityFactory(customer=activated, kind="coupon_claimed", occurred_at=at(day + timedelta(1)))

    buyer_b = world.customer_b
    Customer.objects.filter(pk=buyer_b.pk).update(acquired_at=at(day), source_channel=ads)
    OrderFactory(customer=buyer_b, paid_at=at(day + timedelta(3)), store=world.store_b)

    outsider = CustomerFactory(name="Outsider", store=world.store_a, acquired_at=at(END, 1))
    FollowFactory(customer=outsider, staff=world.clerk_a)

    milestones_refresh()
    for customer in (champion, activated, buyer_b):
        customer.refresh_from_db()
    return FunnelWorld(world, ads, stores_channel, vip, champion, activated, buyer_b, outsider)
