"""Mobile URLs of the WeCom chat sidebar (see mobile/urls.py)."""

from django.urls import URLPattern, path

from mobile.views import sidebar

urlpatterns: list[URLPattern] = [
    path("sidebar/", sidebar.sidebar, name="sidebar"),
    # external_userid is WeCom's opaque id (wm/wo + base64-like characters, up to 64).
    path(
        "sidebar/contact/<str:external_userid>/",
        sidebar.sidebar_contact,
        name="sidebar_contact",
    ),
]
