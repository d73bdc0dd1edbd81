"""Reads of the phone pages, one module per area (``today``, ``customers``, ...); the
sign-in lookup lives here because it belongs to no page."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model

from customers.models import Staff


def staff_user_for_wecom_userid(userid: str) -> Any | None:
    """The active user linked to the active staff member with this WeCom userid, or None.

    Both must be active: a deactivated staff row (someone who left) must not get in
    through WeCom even while their user account still exists, nor the reverse.
    """
    staff = (
        Staff.objects.select_related("user")
        .filter(wecom_userid=userid, is_active=True, user__isnull=False, user__is_active=True)
        .first()
    )
    if staff is None:
        return None
    user: Any = staff.user
    assert isinstance(user, get_user_model())
    return user
