"""The customer timeline (activities) and notes."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone

from customers.hooks import Fact, announce
from customers.models import Activity, ActivityKind, ActivitySource, Customer, Note, Staff
from customers.services._bulk_sql import COPY_NULL, copy_text, insert_rows
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
            _KEY_JSON.encode(
                [
                    self.customer_id,
                    self.kind,
                    # UTC, so that one instant gives one key whichever door and offset
                    # it came in by (an API client's +08:00, WeCom's epoch seconds).
                    self.occurred_at.astimezone(UTC).isoformat(),
                    self.source,
                    self.payload,
                ]
            ).encode()
        ).hexdigest()
        return f"auto:{digest}"


# json.dumps(..., sort_keys=True, default=str, ensure_ascii=False) builds this encoder on
# every call: one instance gives the same text (the stored keys) in a third less time.
_KEY_JSON = json.JSONEncoder(sort_keys=True, default=str, ensure_ascii=False)


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
    if connection.vendor == "postgresql":
        return _record_pg(rows, keys, result)
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


_STAGE = "_stage_activities"
_COLUMNS = "customer_id, kind, occurred_at, source, staff_id, payload, idempotency_key, created_at"


def _record_pg(
    rows: Sequence[ActivityInput], keys: list[str], result: UpsertResult
) -> UpsertResult:
    """``activities_record`` on PostgreSQL: one COPY and one INSERT ... ON CONFLICT DO
    NOTHING RETURNING, which tells the new rows from the stored ones by the unique index
    itself (no look-up of the keys before, nor of the new ids after: two index searches
    per row saved), with the COPY text written here (the generic helper's per-value
    conversions cost 60 µs a row)."""
    first: dict[str, ActivityInput] = {}
    for row, key in zip(rows, keys, strict=True):
        first.setdefault(key, row)
    created_at = timezone.now().isoformat()
    dump = _PAYLOAD_JSON.encode
    text = "".join(
        f"{int(row.customer_id)}\t{copy_text(row.kind)}\t"
        f"{_aware(row.occurred_at).isoformat()}\t{copy_text(row.source)}\t"
        f"{COPY_NULL if row.staff_id is None else int(row.staff_id)}\t"
        f"{copy_text(dump(dict(row.payload)))}\t"
        f"{copy_text(key)}\t{created_at}\n"
        for key, row in first.items()
    )
    new: dict[str, tuple[int, int, str]] = {}
    with connection.cursor() as wrapper, connection.wrap_database_errors:
        # The raw psycopg2 cursor: COPY (and no per-statement overhead of Django's wrapper).
        cursor = wrapper.cursor
        # One staging table per session, emptied after each use (and at COMMIT): a
        # TRUNCATE would give it a new file, a CREATE new catalog rows, every time.
        cursor.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {_STAGE} ON COMMIT DELETE ROWS AS "
            f"SELECT {_COLUMNS} FROM {Activity._meta.db_table} WITH NO DATA"
        )
        cursor.copy_expert(f"COPY {_STAGE} ({_COLUMNS}) FROM STDIN", io.StringIO(text))
        # ON CONFLICT on the key alone: an event already stored, or stored by a
        # concurrent import of the same key meanwhile, is left as it is.
        cursor.execute(
            f"INSERT INTO {Activity._meta.db_table} ({_COLUMNS}) SELECT {_COLUMNS} "
            f"FROM {_STAGE} ON CONFLICT (idempotency_key) DO NOTHING "
            "RETURNING idempotency_key, id, customer_id, kind"
        )
        new = {key: (id_, customer, kind) for key, id_, customer, kind in cursor.fetchall()}
        cursor.execute(f"DELETE FROM {_STAGE}")
        ids = {key: value[0] for key, value in new.items()}
        stored = [key for key in first if key not in new]
        if stored:
            cursor.execute(
                f"SELECT idempotency_key, id FROM {Activity._meta.db_table} "
                "WHERE idempotency_key = ANY(%s)",
                [stored],
            )
            ids.update(cursor.fetchall())
    seen: set[str] = set()
    for key in keys:
        result.outcomes.append("created" if key in new and key not in seen else "unchanged")
        seen.add(key)
    result.ids = [ids[k] for k in keys]
    announce(
        {customer for _id, customer, _kind in new.values()},
        Fact.ACTIVITY,
        activity_kinds={kind for _id, _customer, kind in new.values()},
        activity_ids=[id_ for id_, _customer, _kind in new.values()],
    )
    return result


def _aware(at: datetime) -> datetime:
    """As Django stores a naive datetime: in the current time zone (and warns)."""
    return at if at.tzinfo is not None else timezone.make_aware(at)


# The payload as the JSON field would store it (DjangoJSONEncoder is not needed: the
# inputs are JSON values already, validated by the API or built by our own writers).
_PAYLOAD_JSON = json.JSONEncoder(ensure_ascii=False)


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
