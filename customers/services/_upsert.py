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
    existing: Mapping[K, M],
    adjust: Callable[[M, dict[str, Any]], dict[str, Any]] | None = None,
) -> tuple[UpsertResult, list[M]]:
    """Apply ``(key, values)`` rows onto ``existing`` instances by key; create the missing
    ones, write only the differing ones, in bulk. A later row for the same key wins.

    ``values`` of a new row must include its key fields. ``adjust(existing, values)`` may
    rewrite the values for an existing row (to keep a first-seen time, say). Returns the
    result (ids in input order) and the instances that were created or changed. Call
    inside a transaction, with ``existing`` read ``select_for_update``.
    """
    result = UpsertResult()
    to_create: dict[K, M] = {}
    to_update: dict[K, M] = {}
    changed_fields: set[str] = set()
    for key, row_values in rows:
        obj = to_create.get(key) or existing.get(key)
        if obj is None:
            to_create[key] = model(**row_values)
            result.outcomes.append("created")
            continue
        values = adjust(obj, row_values) if adjust and key not in to_create else row_values
        diff = [name for name, value in values.items() if getattr(obj, name) != value]
        if not diff:
            result.outcomes.append("unchanged")
            continue
        for name in diff:
            setattr(obj, name, values[name])
        changed_fields.update(diff)
        if key not in to_create:
            to_update[key] = obj
        result.outcomes.append("updated")
    model._default_manager.bulk_create(list(to_create.values()), batch_size=1000)
    if to_update:
        fields = sorted(changed_fields)
        if _has_updated_at(model):
            now = timezone.now()
            for obj in to_update.values():
                obj.updated_at = now  # type: ignore[attr-defined]
            fields.append("updated_at")
        model._default_manager.bulk_update(list(to_update.values()), fields, batch_size=1000)
    by_key = {**existing, **to_create}
    result.ids = [by_key[key].pk for key, _values in rows]
    return result, [*to_create.values(), *to_update.values()]
