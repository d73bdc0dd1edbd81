"""Cross-app pieces of the server-rendered dashboard: who may enter, the login form, the
htmx "partial or full page" decision and offset pagination without ``COUNT(*)``.

Every dashboard view is wrapped in :func:`dashboard_view`; row-level permission still
lives in the selectors, this only decides whether the user may use the dashboard at all.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from functools import wraps
from typing import Any, Generic, TypeVar

from django import forms
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.views import LoginView, redirect_to_login
from django.core.exceptions import PermissionDenied
from django.db.models import Model, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils.cache import patch_vary_headers
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _
from django_htmx.http import HttpResponseClientRedirect

from scrm.roles import Role, role_of

#: Integration users (API clients) are machines: they get the API, never the dashboard.
DASHBOARD_ROLES: frozenset[Role] = frozenset({Role.OPERATOR, Role.MANAGER, Role.STAFF})

ViewFunc = Callable[..., HttpResponse]
M = TypeVar("M", bound=Model)


_DENIED = _("Your account cannot use this page.")


def _dashboard_login_url(next_path: str) -> str:
    return str(redirect_to_login(next_path)["Location"])


def dashboard_view(
    *,
    roles: Collection[Role] = DASHBOARD_ROLES,
    login_url: Callable[[str], str] = _dashboard_login_url,
    denied: str | Promise = _DENIED,
) -> Callable[[ViewFunc], ViewFunc]:
    """Let in only signed-in users whose role is in ``roles``.

    Anonymous users go to ``login_url(<this page>)`` (the dashboard's login page unless
    told otherwise: the phone pages have their own); an htmx request gets
    ``HX-Redirect`` instead, because a plain redirect would swap the login page into the
    middle of the page. A signed-in user without a fitting role gets the 403 page (which
    offers a logout) saying ``denied``, not a redirect to login, which would loop.
    """

    def decorator(view: ViewFunc) -> ViewFunc:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not request.user.is_authenticated:
                htmx = getattr(request, "htmx", None)
                if htmx:
                    back_to = htmx.current_url_abs_path or request.get_full_path()
                    return HttpResponseClientRedirect(login_url(back_to))
                return redirect(login_url(request.get_full_path()))
            if role_of(request.user) not in roles:
                raise PermissionDenied(denied)
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


def is_htmx_for(request: HttpRequest, target: str) -> bool:
    """Whether this is an htmx request that swaps only the element ``#target``.

    A history-restore request (htmx's cache missed on Back) wants the whole page.
    """
    htmx = getattr(request, "htmx", None)
    if not htmx:
        return False
    return not htmx.history_restore_request and htmx.target == target


def vary_on_htmx(response: HttpResponse) -> HttpResponse:
    """The same URL answers a partial or a full page: caches must keep them apart."""
    patch_vary_headers(response, ("HX-Request", "HX-Target"))
    return response


class DashboardAuthenticationForm(AuthenticationForm):
    """The login form, refusing accounts that have no dashboard role.

    Refusing at login (rather than after) tells an API client's account or a user whose
    staff row was deactivated why they cannot get in.
    """

    error_messages = {
        **AuthenticationForm.error_messages,
        "no_role": _(
            "This account has no role in the dashboard. Ask an operator to link it to a "
            "staff member."
        ),
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Labels sit above the inputs, so no trailing colon.
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)

    def confirm_login_allowed(self, user: Any) -> None:
        super().confirm_login_allowed(user)
        if role_of(user) not in DASHBOARD_ROLES:
            raise forms.ValidationError(self.error_messages["no_role"], code="no_role")


class DashboardLoginView(LoginView):
    template_name = "registration/login.html"
    authentication_form = DashboardAuthenticationForm


@dataclass(frozen=True)
class OffsetPage(Generic[M]):
    """One page of rows, knowing only whether a next page exists (never the total)."""

    rows: Sequence[M]
    number: int
    page_size: int
    has_next: bool

    @property
    def has_previous(self) -> bool:
        return self.number > 1

    @property
    def next_number(self) -> int:
        return self.number + 1

    @property
    def previous_number(self) -> int:
        return self.number - 1

    @property
    def start_index(self) -> int:
        return (self.number - 1) * self.page_size + 1 if self.rows else 0

    @property
    def end_index(self) -> int:
        return (self.number - 1) * self.page_size + len(self.rows)


def parse_page_number(raw: str | None, *, maximum: int = 10_000) -> int:
    """A page number from the URL; nonsense means page 1, and deep offsets are capped
    because ``OFFSET`` grows linear in the rows the database must skip."""
    try:
        number = int(raw or 1)
    except ValueError:
        return 1
    return min(max(number, 1), maximum)


def offset_paginate(qs: QuerySet[M], *, number: int, page_size: int) -> OffsetPage[M]:
    """Fetch page ``number`` with one query of ``page_size + 1`` rows.

    The extra row says whether there is a next page, so no ``COUNT(*)`` runs over a
    table that may hold millions of customers. ``qs`` must have a total ordering (end it
    with the primary key), or rows could repeat or vanish between pages.
    """
    offset = (number - 1) * page_size
    rows = list(qs[offset : offset + page_size + 1])
    return OffsetPage(
        rows=rows[:page_size], number=number, page_size=page_size, has_next=len(rows) > page_size
    )
