"""Django admin, for back-office fixes only; operators work in the dashboard."""

from django.contrib import admin

from customers import models


@admin.register(models.Store)
class StoreAdmin(admin.ModelAdmin):
    list_display = ("code", "name", "city", "is_active")
    search_fields = ("code", "name")


@admin.register(models.Staff)
class StaffAdmin(admin.ModelAdmin):
    list_display = ("name", "wecom_userid", "store", "role", "is_active")
    list_filter = ("role", "store", "is_active")
    search_fields = ("name", "wecom_userid")
    raw_id_fields = ("user",)


@admin.register(models.Customer)
class CustomerAdmin(admin.ModelAdmin):
    list_display = ("name", "external_id", "external_userid", "store", "status", "acquired_at")
    list_filter = ("status", "store")
    search_fields = ("name", "phone", "external_id", "external_userid")
    raw_id_fields = ("owner", "store", "source_channel", "referred_by")
    list_select_related = ("store",)


@admin.register(models.Follow)
class FollowAdmin(admin.ModelAdmin):
    list_display = ("customer", "staff", "added_at", "state", "deleted_at")
    raw_id_fields = ("customer", "staff")
    list_select_related = ("customer", "staff")


class TagInline(admin.TabularInline):
    model = models.Tag
    extra = 0


@admin.register(models.TagGroup)
class TagGroupAdmin(admin.ModelAdmin):
    list_display = ("name", "source", "wecom_group_id", "order")
    inlines = [TagInline]


@admin.register(models.Order)
class OrderAdmin(admin.ModelAdmin):
    list_display = ("external_id", "customer", "amount", "currency", "status", "paid_at")
    list_filter = ("status", "product_role")
    search_fields = ("external_id",)
    raw_id_fields = ("customer", "store", "staff")
    list_select_related = ("customer",)


@admin.register(models.Activity)
class ActivityAdmin(admin.ModelAdmin):
    list_display = ("customer", "kind", "source", "occurred_at")
    list_filter = ("kind", "source")
    raw_id_fields = ("customer", "staff")
    list_select_related = ("customer",)


@admin.register(models.Note)
class NoteAdmin(admin.ModelAdmin):
    list_display = ("customer", "author", "created_at")
    raw_id_fields = ("customer", "author")
