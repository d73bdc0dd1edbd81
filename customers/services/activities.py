"""The customer timeline (activities) and notes."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from customers.hooks import Fact, announce
from customers.models import Activity, ActivityKind, ActivitySource, Customer, Note, Staff
from customers.services._bulk_sql import insert_rows
from customers.services._upsert import UpsertResult


@dataclass(frozen=True, kw_only=True)
class ActivityInput:
    """One validated timeline event. Without a key, one is derived from its content, so
    that replaying the same event is still recognised."""

    customer_id: int
    kind: str
    occurred_at: datetime
    source: str = ActivitySource.API
    staff_id: int | None = None
    payload: Mapping[str, Any] = field(default_factory=dict)
    idempotency_key: str = ""

    def key(self) -> str:
        if self.idempotency_key:
            return self.idempotency_key
        digest = hashlib.sha256(
            json.dumps(
                [
                    self.customer_id,
                    self.kind,
                    # UTC, so that one instant gives one key whichever door and offset
                    # it came in by (an API client's +08:00, WeCom's epoch seconds).
                    self.occurred_at.astimezone(UTC).isoformat(),
                    self.source,
                    self.payload,
                ],
                sort_keys=True,
                default=str,
                ensure_ascii=False,
            ).encode()
        ).hexdigest()
        return f"auto:{digest}"


@transaction.atomic
def activities_record(*, rows: Sequence[ActivityInput]) -> UpsertResult:
    """Store timeline events once each, keyed by idempotency key, all or nothing.

    Activities are facts: an event whose key is already stored is reported ``unchanged``
    and never rewritten.
    """
    result = UpsertResult()
    if not rows:
        return result
    keys = [row.key() for row in rows]
    existing = dict(
        Activity.objects.filter(idempotency_key__in=set(keys)).values_list("idempotency_key", "id")
    )
    new: dict[str, dict[str, Any]] = {}
    for row, key in zip(rows, keys, strict=True):
        if key in existing or key in new:
            result.outcomes.append("unchanged")
            continue
        new[key] = {
            "customer_id": row.customer_id,
            "kind": row.kind,
            "occurred_at": row.occurred_at,
            "source": row.source,
            "staff_id": row.staff_id,
            "payload": dict(row.payload),
            "idempotency_key": key,
        }
        result.outcomes.append("created")
    # ignore_conflicts covers a concurrent import of the same keys; re-read the ids after.
    insert_rows(Activity, rows=list(new.values()), ignore_conflicts=True, returning=False)
    if new:
        existing.update(
            Activity.objects.filter(idempotency_key__in=list(new)).values_list(
                "idempotency_key", "id"
            )
        )
    result.ids = [existing[k] for k in keys]
    # The new rows' ids let the funnel fold in just them. After a concurrent import of the
    # same key the id is that import's row, committed and identical: folding it in again
    # changes nothing.
    announce(
        {a["customer_id"] for a in new.values()},
        Fact.ACTIVITY,
        activity_kinds={a["kind"] for a in new.values()},
        activity_ids=[existing[k] for k in new],
    )
    return result


def activity_record(
    *,
    customer: Customer,
    kind: str,
    occurred_at: datetime | None = None,
    source: str = ActivitySource.SYSTEM,
    staff: Staff | None = None,
    payload: Mapping[str, Any] | None = None,
    idempotency_key: str = "",
) -> Activity:
    """Record one event (see :func:`activities_record`) and return the stored row."""
    result = activities_record(
        rows=[
            ActivityInput(
                customer_id=customer.pk,
                kind=kind,
                occurred_at=occurred_at or timezone.now(),
                source=source,
                staff_id=staff.pk if staff else None,
                payload=payload or {},
                idempotency_key=idempotency_key,
            )
        ]
    )
    return Activity.objects.get(pk=result.ids[0])


@transaction.atomic
def note_create(*, customer: Customer, author: Any, body: str, source: str) -> Note:
    body = body.strip()
    if not body:
        raise ValidationError({"body": "A note cannot be empty."})
    note = Note.objects.create(customer=customer, author=author, body=body)
    activities_record(
        rows=[
            ActivityInput(
                customer_id=customer.pk,
                kind=ActivityKind.NOTE_ADDED,
                occurred_at=note.created_at,
                source=source,
                staff_id=getattr(getattr(author, "staff_profile", None), "pk", None),
                payload={"note_id": note.pk, "text": body[:200]},
                idempotency_key=f"note:{note.pk}",
            )
        ]
    )
    return note
