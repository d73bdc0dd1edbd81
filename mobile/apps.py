from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class MobileConfig(AppConfig):
    """Store staff's mobile pages under /m/ (and the WeCom chat sidebar): views and
    templates only, over the same services and selectors as the dashboard and the API."""

    name = "mobile"
    verbose_name = _("Mobile pages")
