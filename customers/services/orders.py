"""Orders: upserted by the integration's ``external_id``, one or thousands at a time."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.utils import timezone

from customers.hooks import Fact, announce
from customers.models import Order, OrderStatus
from customers.services._upsert import UpsertResult, upsert_many


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


_ORDER_FIELDS = [f.name for f in fields(OrderInput)]


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
    replaying a 1,000-row import costs a few queries and changes nothing. A later row
    with the same external_id as an earlier one in the same batch wins.
    """
    if not rows:
        return UpsertResult()
    keys = {row.external_id for row in rows}
    existing = {
        o["external_id"]: o
        for o in Order.objects.select_for_update()
        .filter(external_id__in=keys)
        .values("id", *_ORDER_FIELDS)
    }
    previous_customer = {key: order["customer_id"] for key, order in existing.items()}
    keyed = []
    for row in rows:
        values = _order_values(row)
        order = existing.get(row.external_id)
        if (
            order is not None
            and row.status == OrderStatus.REFUNDED
            and row.refunded_at is None
            and order["refunded_at"] is not None
        ):
            # A refund reported without its time is stamped once; stamping "now" again
            # would make every replay of a refunded order an update.
            values["refunded_at"] = order["refunded_at"]
        keyed.append((row.external_id, values))
    result, changed = upsert_many(Order, rows=keyed, existing=existing)
    # An order moved to another customer changes both customers' facts.
    touched = {o["customer_id"] for o in changed} | {
        previous_customer[o["external_id"]]
        for o in changed
        if o["external_id"] in previous_customer
    }
    announce(touched, Fact.ORDER)
    return result
