"""Sign-in for the phone pages: username + password, and WeCom OAuth for staff.

Also :func:`mobile_view`, the door every other /m/ page goes through: anonymous users go
to the mobile sign-in page (not the dashboard's), users without a staff-facing role get
the 403 page. Row-level permission stays in the selectors and access helpers.
"""

from __future__ import annotations

import functools
import logging
import secrets
from collections.abc import Callable, Collection
from urllib.parse import urlencode, urlsplit

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login as auth_login
from django.contrib.auth import logout as auth_logout
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_POST

from channels.wecom.client import get_client
from channels.wecom.errors import WeComError
from mobile.forms import MobileAuthenticationForm
from mobile.selectors import staff_user_for_wecom_userid
from scrm.dashboard import ViewFunc, dashboard_view
from scrm.roles import Role, role_of

logger = logging.getLogger(__name__)

#: Who may use the phone pages: the staff-facing roles (operators may look too).
MOBILE_ROLES: frozenset[Role] = frozenset({Role.STAFF, Role.MANAGER, Role.OPERATOR})

#: Where the OAuth nonce waits in the session between the redirect and the callback.
OAUTH_STATE_KEY = "m_wecom_oauth_state"
#: The safe ``next`` remembered across the WeCom round trip.
OAUTH_NEXT_KEY = "m_wecom_oauth_next"


def safe_next(request: HttpRequest, raw: str | None) -> str | None:
    """``raw`` if it is a same-host path under /m/, else None.

    Only /m/ pages: a clerk signed in on the phone should not be sent into the dashboard,
    and an absolute or scheme-relative URL (``//evil.example``) is an open redirect.
    """
    if not raw:
        return None
    if not url_has_allowed_host_and_scheme(
        raw, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return None
    # Only a path: "/m/..." (not "/m/../admin/", not "http://host/m/").
    mobile_root = reverse("m:today")
    if not raw.startswith(mobile_root) or "\\" in raw or "/../" in raw or raw.startswith("//"):
        return None
    return raw


OFFICIAL_API_HOST = "qyapi.weixin.qq.com"
OFFICIAL_AUTHORIZE_URL = "https://open.weixin.qq.com/connect/oauth2/authorize"


def oauth_authorize_url() -> str:
    """WeCom's OAuth authorize page.

    ``WECOM_OAUTH_AUTHORIZE_URL`` if set; else the official page when the API is the
    official host; else the API host's own ``/connect/oauth2/authorize``, which is where
    the WeCom simulator (demo, browser tests) serves its stand-in for the official page.
    """
    if settings.WECOM_OAUTH_AUTHORIZE_URL:
        return str(settings.WECOM_OAUTH_AUTHORIZE_URL)
    api = urlsplit(settings.WECOM_API_BASE)
    if api.hostname == OFFICIAL_API_HOST:
        return OFFICIAL_AUTHORIZE_URL
    return f"{api.scheme}://{api.netloc}/connect/oauth2/authorize"


def login_url_with_next(next_path: str, login: str = "m:login") -> str:
    return f"{reverse(login)}?{urlencode({'next': next_path})}"


def mobile_view(
    *, roles: Collection[Role] = MOBILE_ROLES, login: str = "m:login"
) -> Callable[[ViewFunc], ViewFunc]:
    """``dashboard_view`` for the phone pages: anonymous users go to the ``login`` page
    (/m/login/, or /m/login/wecom/ for pages that only open inside WeCom) with
    ?next=<this page>, users without a staff-facing role get the 403 page."""
    return dashboard_view(
        roles=roles,
        login_url=functools.partial(login_url_with_next, login=login),
        denied=gettext_lazy("Your account cannot use the staff pages."),
    )


@sensitive_post_parameters("password")
@csrf_protect
@never_cache
def login_view(request: HttpRequest) -> HttpResponse:
    """Username + password (Django's auth backends and its rate of failure messages)."""
    next_path = safe_next(request, request.POST.get("next") or request.GET.get("next"))
    if request.user.is_authenticated and role_of(request.user) in MOBILE_ROLES:
        return redirect(next_path or "m:today")
    form = MobileAuthenticationForm(request, data=request.POST or None)
    if request.method == "POST" and form.is_valid():
        auth_login(request, form.get_user())
        return redirect(next_path or "m:today")
    return render(
        request,
        "m/login.html",
        {"form": form, "next": next_path or "", "wecom_enabled": bool(settings.WECOM_CORP_ID)},
    )


@require_POST
def logout_view(request: HttpRequest) -> HttpResponse:
    """POST only (CSRF-checked), so that a link or an image cannot log anyone out."""
    auth_logout(request)
    return redirect("m:login")


def _login_failed(request: HttpRequest, message: str) -> HttpResponse:
    messages.error(request, message)
    return redirect("m:login")


@never_cache
def login_wecom_view(request: HttpRequest) -> HttpResponse:
    """WeCom OAuth (snsapi_base): inside WeCom the member is identified without a password.

    Without ``code``: send the browser to WeCom's authorize URL with a fresh nonce in
    ``state``. With ``code``: check the nonce (CSRF on the callback: someone else's code
    must not sign this browser in), trade the code for a userid and sign in the active
    staff member linked to an active user. Every failure lands on the sign-in page with a
    message, never a 500: the clerk can still type a password.
    """
    code = request.GET.get("code", "").strip()
    if not code:
        state = secrets.token_urlsafe(24)
        request.session[OAUTH_STATE_KEY] = state
        next_path = safe_next(request, request.GET.get("next"))
        if next_path:
            request.session[OAUTH_NEXT_KEY] = next_path
        else:
            request.session.pop(OAUTH_NEXT_KEY, None)
        callback = request.build_absolute_uri(reverse("m:login_wecom"))
        query = urlencode(
            {
                "appid": settings.WECOM_CORP_ID,
                "redirect_uri": callback,
                "response_type": "code",
                "scope": "snsapi_base",
                "state": state,
            }
        )
        # WeCom requires its parameters in this order and the #wechat_redirect fragment.
        return HttpResponseRedirect(f"{oauth_authorize_url()}?{query}#wechat_redirect")

    expected = request.session.pop(OAUTH_STATE_KEY, None)
    next_path = request.session.pop(OAUTH_NEXT_KEY, None)
    given = request.GET.get("state", "")
    if not expected or not secrets.compare_digest(str(expected), given):
        return _login_failed(
            request, _("The WeCom sign-in expired or was not started here. Please try again.")
        )
    try:
        answer = get_client().oauth_userinfo(code)
    except WeComError as exc:
        # 40029 is a used or expired code (a reload of the callback page does this).
        logger.warning("WeCom OAuth failed: %s", exc)
        if exc.errcode == 40029:
            return _login_failed(
                request, _("The WeCom sign-in link was already used or expired. Please try again.")
            )
        return _login_failed(request, _("WeCom did not confirm who you are. Please try again."))
    userid = str(answer.get("userid") or answer.get("UserId") or "")
    if not userid:
        # An external_userid / openid answer: a customer or a non-member opened the page.
        return _login_failed(request, _("Only members of the company's WeCom can sign in here."))
    user = staff_user_for_wecom_userid(userid)
    if user is None:
        return _login_failed(
            request,
            _(
                "Your WeCom account (%(userid)s) is not linked to an active staff account. "
                "Ask an operator to link it."
            )
            % {"userid": userid},
        )
    # The staff row names the user: no password backend authenticated this login.
    auth_login(request, user, backend=settings.AUTHENTICATION_BACKENDS[0])
    return redirect(safe_next(request, next_path) or "m:today")
