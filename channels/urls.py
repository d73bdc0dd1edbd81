"""Dashboard URLs for channels and WeCom sync runs, included at the site root with
namespace ``channels`` (``/channels/...`` and ``/sync/``)."""

from django.urls import path

from channels import views

app_name = "channels"

urlpatterns = [
    path("channels/", views.channel_list, name="list"),
    path("channels/<int:pk>/", views.channel_detail, name="detail"),
    path("channels/<int:pk>/codes/", views.code_create, name="code_create"),
    path("channels/codes/<int:pk>/deactivate/", views.code_deactivate, name="code_deactivate"),
    path("sync/", views.sync_list, name="sync"),
    path("sync/start/", views.sync_start, name="sync_start"),
]
