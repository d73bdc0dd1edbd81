"""The one shape every upsert here shares: read what exists, write only what differs.

A replayed import or an unchanged re-sync must write nothing (no row, no ``updated_at``
bump), and a batch must cost a handful of queries whatever its size.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from django.db import models
from django.db.models import QuerySet
from django.utils import timezone

from customers.services._bulk_sql import insert_rows, update_rows

M = TypeVar("M", bound=models.Model)
K = TypeVar("K", bound=Hashable)


@dataclass
class UpsertResult:
    """What an upsert did, row by row in input order: ``created``/``updated``/``unchanged``."""

    outcomes: list[str] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)

    @property
    def created(self) -> int:
        return self.outcomes.count("created")

    @property
    def updated(self) -> int:
        return self.outcomes.count("updated")

    @property
    def unchanged(self) -> int:
        return self.outcomes.count("unchanged")


def _has_updated_at(model: type[models.Model]) -> bool:
    return any(f.name == "updated_at" for f in model._meta.concrete_fields)


def save_changes(obj: models.Model, values: Mapping[str, Any]) -> list[str]:
    """Set and save the fields of ``obj`` whose value differs; returns their names."""
    changed = [name for name, value in values.items() if getattr(obj, name) != value]
    for name in changed:
        setattr(obj, name, values[name])
    if changed:
        extra = ["updated_at"] if _has_updated_at(type(obj)) else []
        obj.save(update_fields=[*changed, *extra])
    return changed


def upsert_one(
    queryset: QuerySet[M], *, lookup: Mapping[str, Any], values: Mapping[str, Any]
) -> tuple[M, str]:
    """The row matching ``lookup`` (locked), created or brought up to ``values``.
    Call inside a transaction."""
    obj = queryset.select_for_update().filter(**lookup).first()
    if obj is None:
        return queryset.model._default_manager.create(**lookup, **values), "created"
    return obj, ("updated" if save_changes(obj, values) else "unchanged")


def upsert_many(
    model: type[M],
    *,
    rows: Sequence[tuple[K, dict[str, Any]]],
    existing: Mapping[K, dict[str, Any]],
    adjust: Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]] | None = None,
) -> tuple[UpsertResult, list[dict[str, Any]]]:
    """Apply ``(key, values)`` rows onto the ``existing`` rows by key; create the missing
    ones, write only the differing ones, in bulk. A later row for the same key wins.

    ``existing`` maps keys to the stored values as ``QuerySet.values("id", ...)`` gives
    them (read ``select_for_update``, inside the caller's transaction), with every field
    the rows may set. Plain dicts, not model instances: an unchanged re-sync of a million
    rows then builds no instance at all. ``values`` of a new row must include its key
    fields (attnames, e.g. ``customer_id``). ``adjust(stored, values)`` may rewrite the
    values for a stored row (to keep a first-seen time, say).

    Returns the result (ids in input order) and the current values (with ``id``) of the
    rows that were created or changed.
    """
    result = UpsertResult()
    created: dict[K, dict[str, Any]] = {}
    updated: dict[K, dict[str, Any]] = {}
    changed_fields: set[str] = set()
    for key, row_values in rows:
        current = created.get(key) or updated.get(key) or existing.get(key)
        if current is None:
            created[key] = dict(row_values)
            result.outcomes.append("created")
            continue
        values = adjust(current, row_values) if adjust and key not in created else row_values
        diff = {name: value for name, value in values.items() if current.get(name) != value}
        if not diff:
            result.outcomes.append("unchanged")
            continue
        current = {**current, **diff}
        changed_fields.update(diff)
        if key in created:
            created[key] = current
        else:
            updated[key] = current
        result.outcomes.append("updated")
    ids = insert_rows(model, rows=list(created.values()))
    for values, pk in zip(created.values(), ids, strict=True):
        values["id"] = pk
    if updated:
        fields = sorted(changed_fields)
        extra: dict[str, Any] = {}
        if _has_updated_at(model):
            extra["updated_at"] = timezone.now()
            fields.append("updated_at")
        for values in updated.values():
            values.update(extra)
        update_rows(model, rows=list(updated.values()), fields=fields)
    by_key = {**existing, **updated, **created}
    result.ids = [by_key[key]["id"] for key, _values in rows]
    return result, [*created.values(), *updated.values()]
