"""Template context shared by every dashboard page."""

from typing import Any

from django.http import HttpRequest

from scrm.roles import role_of


def navigation(request: HttpRequest) -> dict[str, Any]:
    return {"scrm_role": role_of(getattr(request, "user", None))}
