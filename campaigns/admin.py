"""Django admin, read-only: a back-office view of what the SOP engine did (touchpoints,
WeCom message tasks, enrolments, quota, coupons, points) for support questions.

Nothing here writes: SOP versions are immutable once published, a touchpoint's status
belongs to the dispatcher and the ledgers are sums of their lines, so every change goes
through the dashboard or the API, whose services keep those rules.
"""

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from campaigns import models


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(models.Touchpoint)
class TouchpointAdmin(ReadOnlyAdmin):
    list_display = ("id", "sop", "customer", "kind", "status", "skip_reason", "due_at")
    list_filter = ("status", "kind", "skip_reason")
    search_fields = ("customer__name", "customer__external_userid", "task__msgid")
    list_select_related = ("sop", "customer")
    date_hierarchy = "due_at"


@admin.register(models.MessageTask)
class MessageTaskAdmin(ReadOnlyAdmin):
    list_display = ("id", "msgid", "sender", "status", "recipients", "called_at", "confirmed_at")
    list_filter = ("status",)
    search_fields = ("msgid", "sender__wecom_userid")
    list_select_related = ("sender",)


@admin.register(models.Enrollment)
class EnrollmentAdmin(ReadOnlyAdmin):
    list_display = ("id", "sop", "customer", "trigger_key", "status", "exit_reason", "enrolled_at")
    list_filter = ("status", "exit_reason")
    search_fields = ("customer__name", "trigger_key")
    list_select_related = ("sop", "customer")


@admin.register(models.QuotaUsage)
class QuotaUsageAdmin(ReadOnlyAdmin):
    list_display = ("customer", "period_start", "used")
    search_fields = ("customer__name",)
    list_select_related = ("customer",)


@admin.register(models.Coupon)
class CouponAdmin(ReadOnlyAdmin):
    list_display = ("code", "batch", "customer", "issued_at", "expires_at", "redeemed_at")
    search_fields = ("code", "customer__name")
    list_select_related = ("batch", "customer")


@admin.register(models.PointsEntry)
class PointsEntryAdmin(ReadOnlyAdmin):
    list_display = ("customer", "delta", "reason", "idempotency_key", "created_at")
    list_filter = ("reason",)
    search_fields = ("customer__name", "idempotency_key")
    list_select_related = ("customer",)
