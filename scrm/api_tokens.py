"""The operators' "API tokens" page: integration accounts and their DRF tokens.

A new or rotated key is shown once, in the response to the POST that made it. It is never
put in a flash message or the session, because the default message storage is a cookie.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_GET, require_POST

from scrm.dashboard import dashboard_view, is_htmx_for, vary_on_htmx
from scrm.roles import Role
from scrm.selectors import api_client_get, api_client_list
from scrm.services import api_client_create, api_token_revoke, api_token_rotate

HTMX_TARGET = "api-clients"
operators_only = dashboard_view(roles={Role.OPERATOR})


class ApiClientCreateForm(forms.Form):
    username = forms.CharField(
        label=_("Name of the integration"),
        max_length=150,
        validators=[UnicodeUsernameValidator()],
        help_text=_("For example mall or pos. Letters, digits and @ . + - _ only."),
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Labels sit above the inputs, so no trailing colon.
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)


def _render(
    request: HttpRequest,
    *,
    form: ApiClientCreateForm | None = None,
    revealed: dict[str, Any] | None = None,
) -> HttpResponse:
    context: dict[str, Any] = {
        "clients": api_client_list(),
        "form": form or ApiClientCreateForm(),
        "revealed": revealed,
    }
    context["partial"] = is_htmx_for(request, HTMX_TARGET)
    template = "scrm/_api_clients.html" if context["partial"] else "scrm/api_tokens.html"
    return vary_on_htmx(render(request, template, context))


@operators_only
@require_GET
def api_tokens(request: HttpRequest) -> HttpResponse:
    return _render(request)


@operators_only
@require_POST
def api_client_create_view(request: HttpRequest) -> HttpResponse:
    form = ApiClientCreateForm(request.POST)
    if not form.is_valid():
        return _render(request, form=form)
    try:
        user, token = api_client_create(username=form.cleaned_data["username"])
    except ValidationError as exc:
        form.add_error(None, exc)
        return _render(request, form=form)
    return _render(request, revealed={"user": user, "key": token.key})


@operators_only
@require_POST
def api_token_rotate_view(request: HttpRequest, user_id: int) -> HttpResponse:
    user = api_client_get(pk=user_id)
    token = api_token_rotate(user=user)
    return _render(request, revealed={"user": user, "key": token.key})


@operators_only
@require_POST
def api_token_revoke_view(request: HttpRequest, user_id: int) -> HttpResponse:
    user = api_client_get(pk=user_id)
    if api_token_revoke(user=user):
        messages.success(
            request, gettext("The token of %(name)s was revoked.") % {"name": user.username}
        )
    if is_htmx_for(request, HTMX_TARGET):
        return _render(request)
    # No secret on this page, so the usual redirect-after-POST is safe here.
    return redirect("api_tokens")
