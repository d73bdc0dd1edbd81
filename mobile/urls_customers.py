"""Mobile URLs of my customers and the customer card (see mobile/urls.py).

Every URL with a customer id fetches it through the card's access helper: 404 for a
customer the user may not see (tests/mobile/test_permissions.py walks this list).
"""

from django.urls import URLPattern, path

from mobile.views import card, customers

urlpatterns: list[URLPattern] = [
    path("customers/", customers.customer_list, name="customers"),
    path("customers/<int:pk>/", card.card, name="card"),
    path("customers/<int:pk>/timeline/", card.card_timeline_view, name="card_timeline"),
    path("customers/<int:pk>/tags/add/", card.card_tag_add, name="card_tag_add"),
    path("customers/<int:pk>/tags/remove/", card.card_tag_remove, name="card_tag_remove"),
    path("customers/<int:pk>/notes/", card.card_note_add, name="card_note_add"),
    path("customers/<int:pk>/order/", card.card_order, name="card_order"),
    path("customers/<int:pk>/referral/", card.card_referral, name="card_referral"),
]
