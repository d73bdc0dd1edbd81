"""REST API v1 (mounted at /api/v1/). Resources and their rules: see each viewset, and
the OpenAPI document at /api/schema/ (browsable at /api/docs/)."""

from django.urls import include, path
from rest_framework.routers import DefaultRouter

from campaigns.api.content import CampaignViewSet, ContentViewSet
from campaigns.api.levers import CouponBatchViewSet, CouponViewSet
from campaigns.api.sops import SopViewSet
from campaigns.api.touchpoints import TodoViewSet, TouchpointViewSet
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
router.register("contents", ContentViewSet, basename="content")
router.register("sops", SopViewSet, basename="sop")
router.register("campaigns", CampaignViewSet, basename="campaign")
router.register("touchpoints", TouchpointViewSet, basename="touchpoint")
router.register("todos", TodoViewSet, basename="todo")
router.register("coupon-batches", CouponBatchViewSet, basename="coupon-batch")
router.register("coupons", CouponViewSet, basename="coupon")

urlpatterns = [
    *router.urls,
    # The funnel's reports are not resources of a model: plain views, read-only.
    path("", include("funnel.api")),
    # A customer's member points (balance, ledger, spend).
    path("", include("campaigns.api.levers")),
]
