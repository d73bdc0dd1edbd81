"""REST API v1 (mounted at /api/v1/). Resources and their rules: see each viewset, and
the OpenAPI document at /api/schema/ (browsable at /api/docs/)."""

from django.urls import include, path
from rest_framework.routers import DefaultRouter

from channels.api import ChannelCodeViewSet, ChannelViewSet, SyncRunViewSet
from customers.api import (
    ActivityViewSet,
    CustomerViewSet,
    NoteViewSet,
    OrderViewSet,
    StaffViewSet,
    StoreViewSet,
    TagGroupViewSet,
    TagViewSet,
)

app_name = "api"

router = DefaultRouter()
router.register("customers", CustomerViewSet, basename="customer")
router.register("orders", OrderViewSet, basename="order")
router.register("activities", ActivityViewSet, basename="activity")
router.register("notes", NoteViewSet, basename="note")
router.register("tags", TagViewSet, basename="tag")
router.register("tag-groups", TagGroupViewSet, basename="tag-group")
router.register("staff", StaffViewSet, basename="staff")
router.register("stores", StoreViewSet, basename="store")
router.register("channels", ChannelViewSet, basename="channel")
router.register("channel-codes", ChannelCodeViewSet, basename="channel-code")
router.register("sync-runs", SyncRunViewSet, basename="sync-run")

urlpatterns = [
    *router.urls,
    # The funnel's reports are not resources of a model: plain views, read-only.
    path("", include("funnel.api")),
]
