"""Dashboard URLs for customers, included under ``/customers/`` with namespace ``customers``."""

from django.urls import path

from customers import views

app_name = "customers"

urlpatterns = [
    path("", views.customer_list, name="list"),
    path("<int:pk>/", views.customer_detail_view, name="detail"),
    path("<int:pk>/notes/", views.customer_note_create, name="note_create"),
]
