"""The WeCom chat sidebar (/m/sidebar/): the customer card of the contact being chatted
with.

WeCom opens the page in its webview beside a chat. The page signs ``wx.agentConfig``
for its own URL (server side, with the app's jsapi ticket); its script then asks the
client for the current contact (``getCurExternalContact``) and goes to
/m/sidebar/contact/<external_userid>/, which resolves the customer among those the user
may see and redirects to the mobile customer card.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import NoReverseMatch, reverse
from django.utils.http import urlencode
from django.views.decorators.http import require_GET

from channels.wecom.errors import WeComError
from channels.wecom.jsapi import agent_config_signature
from customers.selectors import customer_id_by_external_userid_for_user
from mobile.views.auth import mobile_view

logger = logging.getLogger(__name__)

ViewFunc = Callable[..., HttpResponse]


def _path(name: str, fallback: str, *args: Any) -> str:
    # The login and card pages are other areas' (mobile/urls_core.py, urls_customers.py);
    # their documented paths stand in while a name is missing.
    try:
        return reverse(name, args=args)
    except NoReverseMatch:
        return fallback


#: Signed-in staff, managers and operators only; anyone else signs in through WeCom OAuth
#: (/m/login/wecom/?next=...): inside the WeCom client that is silent, no password typed
#: in a sidebar.
sidebar_view = mobile_view(login="m:login_wecom")


@require_GET
@sidebar_view
def sidebar(request: HttpRequest) -> HttpResponse:
    config: dict[str, Any] | None
    try:
        # The exact URL WeCom loaded (query included): the JS-SDK checks the signature
        # against location.href without its fragment.
        config = agent_config_signature(url=request.build_absolute_uri())
    except WeComError:
        # WeCom down or misconfigured: the page still explains itself instead of a 500.
        logger.exception("could not sign the WeCom agentConfig for the sidebar")
        config = None
    contact_url = reverse("m:sidebar_contact", args=["__external_userid__"])
    return render(
        request,
        "m/sidebar.html",
        {
            "agent_config": config,
            "contact_url": contact_url,
            "customers_url": _path("m:customers", "/m/customers/"),
        },
    )


@require_GET
@sidebar_view
def sidebar_contact(request: HttpRequest, external_userid: str) -> HttpResponse:
    pk = customer_id_by_external_userid_for_user(request.user, external_userid)
    card = _path("m:card", f"/m/customers/{pk}/", pk)
    return HttpResponseRedirect(f"{card}?{urlencode({'sidebar': 1})}")
