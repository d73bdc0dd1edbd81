"""Template context shared by every dashboard page."""

from typing import Any

from django.http import HttpRequest

from scrm.dashboard import DASHBOARD_ROLES
from scrm.roles import Role, role_of


def navigation(request: HttpRequest) -> dict[str, Any]:
    """The user's role and which navigation entries exist for them.

    Links are shown only for pages the user may open; the pages check again themselves,
    because hiding a link is not a permission.
    """
    user = getattr(request, "user", None)
    role = role_of(user)
    return {
        "scrm_role": role,
        "scrm_can_use_dashboard": role in DASHBOARD_ROLES,
        "scrm_is_operator": role == Role.OPERATOR,
        # The admin is for back-office fixes by superusers; it also needs is_staff to open.
        "scrm_shows_admin": bool(
            getattr(user, "is_superuser", False) and getattr(user, "is_staff", False)
        ),
    }
