"""Reads that belong to no single app: the integration accounts and their tokens."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import QuerySet
from django.http import Http404

from scrm.roles import INTEGRATION_GROUP


def api_client_list() -> QuerySet[Any]:
    """Integration users with their token (if any) joined in, by username."""
    return (
        get_user_model()
        .objects.filter(groups__name=INTEGRATION_GROUP)
        .select_related("auth_token")
        .order_by("username", "pk")
    )


def api_client_get(*, pk: Any) -> Any:
    """One integration user, or Http404 (a user id outside the group is not an API client)."""
    try:
        return api_client_list().get(pk=int(pk))
    except (get_user_model().DoesNotExist, TypeError, ValueError):
        raise Http404("No such API client.") from None
