"""Mobile URLs of one area (see mobile/urls.py)."""

from django.urls import URLPattern

urlpatterns: list[URLPattern] = []
