"""URL map: dashboard pages, the REST API v1, its OpenAPI schema and docs, admin."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from scrm import views

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("api/v1/", include("scrm.api_urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("i18n/", include("django.conf.urls.i18n")),
    path("wecom/", include("channels.callback_urls")),
    # Store staff's phone pages and the WeCom chat sidebar.
    path("m/", include("mobile.urls")),
    path("", include("scrm.dashboard_urls")),
]
