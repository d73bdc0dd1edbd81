"""URLs of the server-rendered dashboard (mounted at the site root by ``scrm.urls``)."""

from django.contrib.auth.views import LogoutView
from django.urls import include, path
from django.views.generic import RedirectView

from scrm import api_tokens
from scrm.dashboard import DashboardLoginView

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="customers:list"), name="home"),
    path("accounts/login/", DashboardLoginView.as_view(), name="login"),
    # Django's LogoutView accepts POST only (CSRF-checked), so a link cannot log anyone out.
    path("accounts/logout/", LogoutView.as_view(), name="logout"),
    path("customers/", include("customers.urls")),
    path("funnel/", include("funnel.urls")),
    path("campaigns/", include("campaigns.urls")),
    # /channels/... and /sync/ (namespace "channels").
    path("", include("channels.urls")),
    path("settings/api-tokens/", api_tokens.api_tokens, name="api_tokens"),
    path(
        "settings/api-tokens/new/",
        api_tokens.api_client_create_view,
        name="api_client_create",
    ),
    path(
        "settings/api-tokens/<int:user_id>/rotate/",
        api_tokens.api_token_rotate_view,
        name="api_token_rotate",
    ),
    path(
        "settings/api-tokens/<int:user_id>/revoke/",
        api_tokens.api_token_revoke_view,
        name="api_token_revoke",
    ),
]
