"""Dashboard URLs for campaigns, included under ``/campaigns/`` with namespace ``campaigns``."""

from django.urls import path

from campaigns import views

app_name = "campaigns"

urlpatterns = [
    path("", views.campaign_list, name="campaign_list"),
    path("new/", views.campaign_edit, name="campaign_create"),
    path("<int:pk>/", views.campaign_detail, name="campaign_detail"),
    path("<int:pk>/edit/", views.campaign_edit, name="campaign_edit"),
    path("coupons/", views.coupon_list, name="coupons"),
    path("coupons/new/", views.coupon_edit, name="coupon_create"),
    path("coupons/<int:pk>/edit/", views.coupon_edit, name="coupon_edit"),
    path("content/", views.content_list, name="content_list"),
    path("content/new/", views.content_edit, name="content_create"),
    path("content/preview/", views.content_preview, name="content_preview"),
    path("content/<int:pk>/edit/", views.content_edit, name="content_edit"),
    path("content/<int:pk>/archive/", views.content_archive, name="content_archive"),
    path("sops/", views.sop_list, name="sops"),
    path("sops/new/", views.sop_edit, name="sop_create"),
    path("sops/<int:pk>/", views.sop_detail, name="sop_detail"),
    path("sops/<int:pk>/edit/", views.sop_edit, name="sop_edit"),
    path("sops/<int:pk>/preview/", views.sop_preview_page, name="sop_preview"),
    path("sops/<int:pk>/preview.csv", views.sop_preview_csv, name="sop_preview_csv"),
    # One URL per action (POST, CSRF-checked), so an unknown action is a 404.
    *[
        path(f"sops/<int:pk>/{action}/", views.sop_action, {"action": action}, name=f"sop_{action}")
        for action in views.SOP_ACTIONS
    ],
    path("touchpoints/", views.touchpoint_log, name="touchpoints"),
    path("todos/", views.todo_list, name="todos"),
    path("todos/<int:pk>/done/", views.todo_done, name="todo_done"),
    path("todos/<int:pk>/snooze/", views.todo_snooze, name="todo_snooze"),
]
