"""Small writers for the funnel's unit tests, all through ``customers.services`` so that
the milestones are maintained by the real path (the ``facts_changed`` announcement)."""

from __future__ import annotations

import io
import itertools
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from customers.models import ActivitySource, Customer, OrderStatus
from customers.services import (
    ActivityInput,
    OrderInput,
    activities_record,
    customer_create,
    orders_upsert,
)
from funnel.models import Milestones, PaidPeriod, StageChange

_numbers = itertools.count(1)

#: Statements the cohort report adds on PostgreSQL for its parallel scan
#: (``funnel.selectors._parallel_scans``): the settings and their restoring, and in a
#: test, which runs in a transaction already, the savepoint of its own transaction and
#: its release.
PARALLEL_EXTRA = 4 if connection.vendor == "postgresql" else 0


def local(*args: int) -> datetime:
    """An aware datetime in the corp's time zone (Asia/Shanghai)."""
    return timezone.make_aware(datetime(*args))


def customer(acquired_at: datetime, **data: Any) -> Customer:
    n = next(_numbers)
    return customer_create(
        data={
            "name": f"Funnel {n}",
            "external_id": f"funnel-{n}",
            "acquired_at": acquired_at,
            **data,
        }
    )


def act(c: Customer, kind: str, at: datetime, **extra: Any) -> None:
    activities_record(
        rows=[
            ActivityInput(
                customer_id=c.pk,
                kind=kind,
                occurred_at=at,
                source=extra.pop("source", ActivitySource.API),
                payload={"n": next(_numbers)},
                **extra,
            )
        ]
    )


def pay(
    c: Customer,
    at: datetime,
    amount: str = "100.00",
    *,
    key: str | None = None,
    status: str = OrderStatus.PAID,
) -> str:
    """A paid (or refunded) order; returns its external id, for a later refund."""
    key = key or f"funnel-order-{next(_numbers)}"
    orders_upsert(
        rows=[
            OrderInput(
                external_id=key,
                customer_id=c.pk,
                amount=Decimal(amount),
                paid_at=at,
                status=status,
            )
        ]
    )
    return key


def refund(c: Customer, key: str, at: datetime, amount: str = "100.00") -> None:
    orders_upsert(
        rows=[
            OrderInput(
                external_id=key,
                customer_id=c.pk,
                amount=Decimal(amount),
                paid_at=at,
                status=OrderStatus.REFUNDED,
            )
        ]
    )


def milestones(c: Customer) -> Milestones:
    return Milestones.objects.get(customer=c)


def funnel_state(ids: list[int]) -> tuple[list[dict[str, Any]], list[tuple[Any, ...]], list[Any]]:
    """These customers' milestone rows, stage changes (without when they were recorded)
    and paid periods, in a stable order: what two ways of refreshing them must agree on."""
    columns = [f.attname for f in Milestones._meta.concrete_fields]
    rows = list(
        Milestones.objects.filter(customer__in=ids).order_by("customer_id").values(*columns)
    )
    changes = sorted(
        StageChange.objects.filter(customer__in=ids).values_list(
            "customer_id", "from_stage", "to_stage", "at"
        )
    )
    periods = sorted(
        PaidPeriod.objects.filter(customer__in=ids).values_list(
            "customer_id", "acquired_at", "days", "n", "amount"
        )
    )
    return rows, changes, periods


def rebuild(*args: str) -> str:
    """``rebuild_funnel`` with these arguments; returns what it printed."""
    out = io.StringIO()
    call_command("rebuild_funnel", *args, stdout=out)
    return out.getvalue()


def table_shape(table: str) -> tuple[Any, ...]:
    """``table`` as PostgreSQL's catalog has it: columns (types, NOT NULLs, collations,
    defaults), indexes, constraints, storage parameters, ACL and owner."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT a.attnum, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, "
            "a.attcollation, pg_get_expr(d.adbin, d.adrelid) FROM pg_attribute a "
            "LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
            "WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped "
            "ORDER BY 1",
            [table],
        )
        columns = cursor.fetchall()
        cursor.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s ORDER BY 1", [table]
        )
        indexes = cursor.fetchall()
        cursor.execute(
            "SELECT conname, contype, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = %s::regclass ORDER BY 1",
            [table],
        )
        constraints = cursor.fetchall()
        cursor.execute(
            "SELECT reloptions, relacl, pg_get_userbyid(relowner) FROM pg_class "
            "WHERE oid = %s::regclass",
            [table],
        )
        options, acl, owner = cursor.fetchone()
    return columns, indexes, constraints, options, acl, owner


def table_exists(table: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [table])
        return bool(cursor.fetchone()[0])
