"""Follows: which staff member has which customer as a contact, since when, through which
channel code; ended relationships keep their row with ``deleted_at``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

from django.db import transaction

from customers.hooks import Fact, announce
from customers.models import Activity, Follow
from customers.services._bulk_sql import insert_rows
from customers.services._upsert import UpsertResult, upsert_many
from customers.services.customers import customers_refresh_status
from customers.services.tags import customer_tags_sync


@dataclass(frozen=True, kw_only=True)
class FollowInput:
    """One validated follow (staff member has the customer as a WeCom contact)."""

    customer_id: int
    staff_id: int
    added_at: datetime
    state: str = ""
    remark: str = ""
    description: str = ""
    add_way: int = 0
    oper_userid: str = ""
    remark_mobiles: list[str] = field(default_factory=list)
    tag_ids: list[int] = field(default_factory=list)
    sync_digest: str = ""
    deleted_at: datetime | None = None


_FOLLOW_FIELDS = [f.name for f in fields(FollowInput)]


@transaction.atomic
def follows_upsert(*, rows: Sequence[FollowInput]) -> UpsertResult:
    """Create or update follows by (customer, staff), all or nothing.

    One read of the existing pairs, only differing rows are written, so a replayed sync
    changes nothing. A later row for the same pair wins.
    """
    if not rows:
        return UpsertResult()
    keyed = [
        ((row.customer_id, row.staff_id), {name: getattr(row, name) for name in _FOLLOW_FIELDS})
        for row in rows
    ]
    existing = {
        (f["customer_id"], f["staff_id"]): f
        for f in Follow.objects.select_for_update()
        .filter(
            customer_id__in={row.customer_id for row in rows},
            staff_id__in={row.staff_id for row in rows},
        )
        .values("id", *_FOLLOW_FIELDS)
    }
    result, changed = upsert_many(Follow, rows=keyed, existing=existing)
    announce({f["customer_id"] for f in changed}, Fact.FOLLOW)
    return result


@transaction.atomic
def follows_mark_deleted(
    *,
    follow_ids: Sequence[int],
    at: datetime,
    source: str,
    payload: Mapping[str, Any] | None = None,
) -> int:
    """End these relationships (keeping their rows) and put it on the timeline as
    ``contact_deleted`` (with ``payload``, e.g. how it ended). Returns how many ended."""
    if not follow_ids:
        return 0
    rows = list(
        Follow.objects.select_for_update()
        .filter(pk__in=list(follow_ids), deleted_at__isnull=True)
        .values_list("pk", "customer_id", "staff_id")
    )
    if not rows:
        return 0
    Follow.objects.filter(pk__in=[pk for pk, _c, _s in rows]).update(deleted_at=at, updated_at=at)
    stamp = int(at.timestamp())
    insert_rows(
        Activity,
        rows=[
            {
                "customer_id": customer_id,
                "kind": "contact_deleted",
                "occurred_at": at,
                "source": source,
                "staff_id": staff_id,
                "payload": {**(payload or {}), "follow_id": pk},
                "idempotency_key": f"follow:{pk}:deleted:{stamp}",
            }
            for pk, customer_id, staff_id in rows
        ],
        ignore_conflicts=True,
        returning=False,
    )
    customers = {c for _pk, c, _s in rows}
    customers_refresh_status(customer_ids=customers, at=at)
    customer_tags_sync(customer_ids=customers)
    announce(customers, Fact.FOLLOW, Fact.ACTIVITY, activity_kinds={"contact_deleted"})
    return len(rows)
