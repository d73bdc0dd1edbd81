"""Member points follow the facts: a paid order earns points, its refund takes them back,
a referral earns the referrer points.

Connected to ``customers.hooks.facts_changed`` by :func:`connect` (called from the
campaigns AppConfig.ready), so points are right whichever door the order or referral came
in by, and are committed or rolled back with it (receivers run inside the writer's
transaction). Each credit has an idempotency key (``order:<id>``, ``refund:<id>``,
``referral:<referee id>``), so a fact announced twice credits once. Work is set-based:
one query finds what is due for all the announced customers, one INSERT writes it, and
nothing is written when nothing is due.

Known limits: an order refunded and later paid again is not credited a second time; a
referral later removed or moved keeps the referrer's points (a person can adjust them).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Any

from django.conf import settings
from django.db.models import CharField, Exists, OuterRef, Value
from django.db.models.functions import Cast, Concat

from campaigns.models import PointsEntry, PointsReason
from customers.hooks import Fact, facts_changed
from customers.models import Customer, Order, OrderStatus

_DISPATCH_UID = "campaigns-levers-points"
#: Customer ids per query (SQLite's variable limit; bounded statements on PostgreSQL).
_CHUNK = 5_000


def _chunks(ids: Iterable[int], size: int = _CHUNK) -> Iterator[list[int]]:
    iterator = iter(sorted(ids))
    while chunk := list(islice(iterator, size)):
        yield chunk


def order_points(amount: Any) -> int:
    """Points earned by an order of ``amount`` yuan: whole yuan times POINTS_PER_YUAN."""
    return math.floor(amount) * int(settings.POINTS_PER_YUAN)


def points_credit_orders(*, customer_ids: Iterable[int]) -> int:
    """Credit paid orders of these customers not yet credited, and reverse the credit of
    refunded ones. Returns the number of entries written."""
    written = 0
    for ids in _chunks(customer_ids):
        credited = PointsEntry.objects.filter(order_id=OuterRef("pk"), reason=PointsReason.ORDER)
        due = Order.objects.filter(customer_id__in=ids, status=OrderStatus.PAID).filter(
            ~Exists(credited)
        )
        rows = [
            PointsEntry(
                customer_id=customer_id,
                delta=order_points(amount),
                reason=PointsReason.ORDER,
                order_id=order_id,
                note=external_id[:255],
                idempotency_key=f"order:{order_id}",
            )
            for order_id, customer_id, amount, external_id in due.values_list(
                "id", "customer_id", "amount", "external_id"
            )
        ]
        # A credit reversed from the entry itself (not the order's current customer or
        # amount), so the refund takes back exactly what was given, from whom it was given.
        refunded = Order.objects.filter(pk=OuterRef("order_id"), status=OrderStatus.REFUNDED)
        reversed_ = PointsEntry.objects.filter(
            order_id=OuterRef("order_id"), reason=PointsReason.REFUND
        )
        to_reverse = PointsEntry.objects.filter(
            customer_id__in=ids, reason=PointsReason.ORDER
        ).filter(Exists(refunded), ~Exists(reversed_))
        rows += [
            PointsEntry(
                customer_id=customer_id,
                delta=-delta,
                reason=PointsReason.REFUND,
                order_id=order_id,
                note=f"refund of order {order_id}",
                idempotency_key=f"refund:{order_id}",
            )
            for customer_id, delta, order_id in to_reverse.values_list(
                "customer_id", "delta", "order_id"
            )
        ]
        if rows:
            # ignore_conflicts: a concurrent writer announcing the same order wins quietly.
            PointsEntry.objects.bulk_create(rows, ignore_conflicts=True)
            written += len(rows)
    return written


def points_credit_referrals(*, customer_ids: Iterable[int]) -> int:
    """Credit the referrer of each of these customers that has one, once per referee."""
    per_referral = int(settings.POINTS_PER_REFERRAL)
    if per_referral == 0:
        return 0
    written = 0
    for ids in _chunks(customer_ids):
        credited = PointsEntry.objects.filter(
            reason=PointsReason.REFERRAL, idempotency_key=OuterRef("key")
        )
        due = (
            Customer.objects.filter(pk__in=ids, referred_by__isnull=False)
            .alias(key=_referral_key())
            .filter(~Exists(credited))
        )
        rows = [
            PointsEntry(
                customer_id=referrer_id,
                delta=per_referral,
                reason=PointsReason.REFERRAL,
                note=f"referred customer {referee_id}",
                idempotency_key=f"referral:{referee_id}",
            )
            for referee_id, referrer_id in due.values_list("pk", "referred_by_id")
        ]
        if rows:
            PointsEntry.objects.bulk_create(rows, ignore_conflicts=True)
            written += len(rows)
    return written


def _referral_key() -> Concat:
    return Concat(Value("referral:"), Cast("pk", output_field=CharField()))


def facts_changed_points(
    sender: Any,
    *,
    customer_ids: frozenset[int],
    facts: frozenset[Fact],
    **kwargs: Any,
) -> None:
    if Fact.ORDER in facts:
        points_credit_orders(customer_ids=customer_ids)
    if facts & {Fact.REFERRAL, Fact.CUSTOMER}:
        points_credit_referrals(customer_ids=customer_ids)


def connect() -> None:
    """Subscribe the points ledger to the facts (idempotent: one dispatch_uid)."""
    facts_changed.connect(facts_changed_points, dispatch_uid=_DISPATCH_UID)
