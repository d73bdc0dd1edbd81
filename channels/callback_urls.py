"""WeCom callback URLs, included under ``/wecom/`` by ``scrm.urls``."""

from django.urls import path

from channels.callback_views import wecom_callback

urlpatterns = [
    path("callback/", wecom_callback, name="wecom-callback"),
]
