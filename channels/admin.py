from django.contrib import admin

from channels.models import Channel


@admin.register(Channel)
class ChannelAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "cost", "is_active")
    list_filter = ("kind", "is_active")
    search_fields = ("name",)
