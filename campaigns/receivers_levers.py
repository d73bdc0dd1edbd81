"""Member points follow the facts: a paid order earns points, its refund takes them back,
a referral earns the referrer points.

Connected to ``customers.hooks.facts_changed`` by :func:`connect` (called from the
campaigns AppConfig.ready), so points are right whichever door the order or referral came
in by, and are committed or rolled back with it (receivers run inside the writer's
transaction). Each credit has an idempotency key (``order:<id>``, ``refund:<id>``,
``referral:<referee id>``), so a fact announced twice credits once. Work is set-based:
one ``INSERT ... SELECT`` per kind of credit and chunk of announced customers, whatever
the number of orders (a 5,000-order import costs three statements, not one per row).

Known limits: an order refunded and later paid again is not credited a second time; a
referral later removed or moved keeps the referrer's points (a person can adjust them).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Any

from django.conf import settings
from django.db import connection
from django.utils import timezone

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


def _whole_yuan(column: str) -> str:
    # PostgreSQL's CAST(numeric AS integer) rounds; the points are for *whole* yuan, so
    # floor first. SQLite's CAST truncates, which is the floor of a non-negative amount.
    if connection.vendor == "postgresql":
        return f"FLOOR({column})::integer"
    return f"CAST({column} AS INTEGER)"


def _insert(sql: str, params: list[Any], ids: list[int]) -> int:
    """Run one ``INSERT ... SELECT`` for a chunk of customer ids (``{ids}``, the last
    placeholders of ``sql``); returns rows written.
    ``ON CONFLICT (idempotency_key) DO NOTHING``: a concurrent writer announcing the same
    fact wins quietly."""
    if connection.vendor == "postgresql":
        # The ids as one array literal, joined as a set. A sync announces its flushes'
        # 2,500 new customers here: 8.7 ms a call with a placeholder per id, about as
        # much with ``= ANY`` of the list psycopg2 sends as ARRAY[...], 1.3 ms this way,
        # for a statement that usually finds nothing to credit.
        members = "SELECT unnest(%s::bigint[])"
        args: list[Any] = [*params, "{" + ",".join(map(str, ids)) + "}"]
    else:
        members = ", ".join(["%s"] * len(ids))
        args = [*params, *ids]
    with connection.cursor() as cursor:
        cursor.execute(sql.format(ids=members), args)
        return max(cursor.rowcount, 0)


_ENTRY = PointsEntry._meta.db_table
_ORDER = Order._meta.db_table
_CUSTOMER = Customer._meta.db_table
_COLUMNS = "customer_id, delta, reason, order_id, note, idempotency_key, created_at"


def points_credit_orders(*, customer_ids: Iterable[int]) -> int:
    """Credit paid orders of these customers not yet credited, and reverse the credit of
    refunded ones. Returns the number of entries written. Two statements per chunk of
    customers, whatever the number of orders."""
    now = timezone.now()
    credit = f"""
        INSERT INTO {_ENTRY} ({_COLUMNS})
        SELECT o.customer_id, {_whole_yuan("o.amount")} * %s, %s, o.id,
               SUBSTR(o.external_id, 1, 255), 'order:' || o.id, %s
        FROM {_ORDER} o
        WHERE o.status = %s
          AND NOT EXISTS (
              SELECT 1 FROM {_ENTRY} p WHERE p.order_id = o.id AND p.reason = %s)
          AND o.customer_id IN ({{ids}})
        ON CONFLICT (idempotency_key) DO NOTHING"""
    # The reversal copies the credit entry (not the order's current customer or amount),
    # so a refund takes back exactly what was given, from whom it was given.
    reverse = f"""
        INSERT INTO {_ENTRY} ({_COLUMNS})
        SELECT p.customer_id, -p.delta, %s, p.order_id,
               'refund of order ' || p.order_id, 'refund:' || p.order_id, %s
        FROM {_ENTRY} p JOIN {_ORDER} o ON o.id = p.order_id
        WHERE p.reason = %s AND o.status = %s
          AND NOT EXISTS (
              SELECT 1 FROM {_ENTRY} r WHERE r.order_id = p.order_id AND r.reason = %s)
          AND p.customer_id IN ({{ids}})
        ON CONFLICT (idempotency_key) DO NOTHING"""
    per_yuan = int(settings.POINTS_PER_YUAN)
    written = 0
    for ids in _chunks(customer_ids):
        written += _insert(
            credit,
            [per_yuan, PointsReason.ORDER, now, OrderStatus.PAID, PointsReason.ORDER],
            ids,
        )
        written += _insert(
            reverse,
            [
                PointsReason.REFUND,
                now,
                PointsReason.ORDER,
                OrderStatus.REFUNDED,
                PointsReason.REFUND,
            ],
            ids,
        )
    return written


def points_credit_referrals(*, customer_ids: Iterable[int]) -> int:
    """Credit the referrer of each of these customers that has one, once per referee."""
    per_referral = int(settings.POINTS_PER_REFERRAL)
    if per_referral == 0:
        return 0
    sql = f"""
        INSERT INTO {_ENTRY} ({_COLUMNS})
        SELECT c.referred_by_id, %s, %s, NULL, 'referred customer ' || c.id,
               'referral:' || c.id, %s
        FROM {_CUSTOMER} c
        WHERE c.referred_by_id IS NOT NULL AND c.id IN ({{ids}})
        ON CONFLICT (idempotency_key) DO NOTHING"""
    now = timezone.now()
    return sum(
        _insert(sql, [per_referral, PointsReason.REFERRAL, now], ids)
        for ids in _chunks(customer_ids)
    )


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
