"""Reads of the channels tables, scoped to what the asking user may see."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.http import Http404

from channels.models import Channel
from scrm.roles import role_of


def channel_visible_qs(user: Any) -> QuerySet[Channel]:
    """Channels are corp-wide vocabulary: anyone with a role may read them (a clerk shows
    a channel's code at the counter); nobody else sees any."""
    if role_of(user) is None:
        return Channel.objects.none()
    return Channel.objects.all()


def channel_get_for_user(user: Any, pk: Any) -> Channel:
    """One channel the user may see, or Http404."""
    try:
        return channel_visible_qs(user).get(pk=int(pk))
    except (Channel.DoesNotExist, TypeError, ValueError, OverflowError):
        raise Http404("No such channel.") from None
