"""REST API v1 of the core: serializers validate, a service writes, a selector reads.

One module per resource; ``bulk`` holds what the bulk imports share. The URL map is
``scrm.api_urls``.
"""

from customers.api.activities import ActivityViewSet
from customers.api.customers import CustomerViewSet
from customers.api.notes import NoteViewSet
from customers.api.orders import OrderViewSet
from customers.api.people import StaffViewSet, StoreViewSet
from customers.api.tags import TagGroupViewSet, TagViewSet

__all__ = [
    "ActivityViewSet",
    "CustomerViewSet",
    "NoteViewSet",
    "OrderViewSet",
    "StaffViewSet",
    "StoreViewSet",
    "TagGroupViewSet",
    "TagViewSet",
]
