"""Dashboard URLs of the funnel, included at /funnel/ with namespace ``funnel``."""

from django.urls import path

from funnel import views

app_name = "funnel"

urlpatterns = [
    path("", views.funnel_dashboard, name="dashboard"),
    path(
        "export/<slug:report>.csv",
        views.funnel_export,
        name="export",
    ),
]
