"""Who may see what.

Roles are enforced in querysets (see ``customers.selectors``), never by hiding links. The
role of a request's user is derived here, in one place, so that the dashboard, the API and
the mobile pages agree.
"""

from __future__ import annotations

from typing import Any, cast

from django.db import models
from django.utils.translation import gettext_lazy as _

INTEGRATION_GROUP = "api_clients"


class Role(models.TextChoices):
    OPERATOR = "operator", _("Operator")
    MANAGER = "manager", _("Store manager")
    STAFF = "staff", _("Store staff")
    INTEGRATION = "integration", _("API client")


def role_of(user: Any) -> Role | None:
    """The user's role, or None when the user may see nothing.

    Superusers are operators. A user linked to a Staff row has that staff member's role.
    A user in the ``api_clients`` group is an integration (all data, API only).
    """
    if user is None or not getattr(user, "is_authenticated", False) or not user.is_active:
        return None
    if user.is_superuser:
        return Role.OPERATOR
    # Cached on the user object: one request asks many times (every queryset, the nav).
    if "_scrm_role" in user.__dict__:
        return cast(Role | None, user.__dict__["_scrm_role"])
    role: Role | None = None
    staff = getattr(user, "staff_profile", None) if _has_staff(user) else None
    if staff is not None and staff.is_active:
        role = Role(staff.role)
    elif user.groups.filter(name=INTEGRATION_GROUP).exists():
        role = Role.INTEGRATION
    user._scrm_role = role
    return role


def _has_staff(user: Any) -> bool:
    from django.core.exceptions import ObjectDoesNotExist

    try:
        user.staff_profile  # noqa: B018 - the access itself tells whether the row exists
    except ObjectDoesNotExist:
        return False
    return True


def sees_everything(user: Any) -> bool:
    return role_of(user) in (Role.OPERATOR, Role.INTEGRATION)


def masks_phones(user: Any) -> bool:
    """Whether pages show this user customers' phone numbers masked.

    Managers and operators work with numbers (call-backs, imports); clerks only need to
    recognise a customer, so they see the masked form unless the brand lets them see
    numbers (``STAFF_SEES_PHONES``)."""
    from django.conf import settings

    return role_of(user) == Role.STAFF and not settings.STAFF_SEES_PHONES
