"""Every write to the channels tables. Keyword-only and typed, like ``customers.services``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from channels.models import Channel

CHANNEL_FIELDS = ("name", "kind", "cost", "description", "is_active")


def _check(data: Mapping[str, Any], *, exclude_pk: int | None = None) -> None:
    unknown = set(data) - set(CHANNEL_FIELDS)
    if unknown:
        raise TypeError(f"unknown channel fields: {sorted(unknown)}")
    name = data.get("name")
    if name is not None:
        taken = Channel.objects.filter(name=name)
        if exclude_pk is not None:
            taken = taken.exclude(pk=exclude_pk)
        if taken.exists():
            raise ValidationError({"name": "Another channel already has this name."})


@transaction.atomic
def channel_create(*, data: Mapping[str, Any]) -> Channel:
    """Create a traffic channel from validated field values (``CHANNEL_FIELDS``)."""
    _check(data)
    return Channel.objects.create(**data)


@transaction.atomic
def channel_update(*, channel: Channel, data: Mapping[str, Any]) -> list[str]:
    """Apply changed field values; returns the names of the fields that really changed
    (none on a replay, so ``updated_at`` only moves when something did)."""
    _check(data, exclude_pk=channel.pk)
    changed = [name for name, value in data.items() if getattr(channel, name) != value]
    for name in changed:
        setattr(channel, name, data[name])
    if changed:
        channel.save(update_fields=[*changed, "updated_at"])
    return changed
