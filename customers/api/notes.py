"""Notes on customers: list (by customer), detail, write."""

from __future__ import annotations

from typing import Any

import django_filters
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from customers import services
from customers.models import ActivitySource, Customer, Note
from customers.selectors import customer_visible_qs, note_get_for_user, note_visible_qs
from scrm.api import VisiblePrimaryKeyRelatedField
from scrm.api_views import ScrmViewSet


class NoteFilter(django_filters.FilterSet):
    # A plain number, not a choice of customers: "no such customer" and "not yours" must
    # both simply match nothing.
    customer = django_filters.NumberFilter(field_name="customer_id")

    class Meta:
        model = Note
        fields: list[str] = []


class NoteSerializer(serializers.ModelSerializer[Note]):
    author_name = serializers.CharField(source="author.username", read_only=True, default=None)

    class Meta:
        model = Note
        fields = ["id", "customer", "author", "author_name", "body", "created_at"]
        read_only_fields = fields


class NoteWriteSerializer(serializers.Serializer):
    customer = VisiblePrimaryKeyRelatedField(
        visible=customer_visible_qs, queryset=Customer.objects.all()
    )
    body = serializers.CharField(max_length=5000)


@extend_schema(tags=["notes"])
class NoteViewSet(mixins.ListModelMixin, ScrmViewSet[Note]):
    """Notes on the customers the caller may see; anyone who sees a customer may add one.
    The author is the caller."""

    filterset_class = NoteFilter
    cursor_ordering = ("-created_at", "-id")

    def get_queryset(self) -> QuerySet[Note]:
        return note_visible_qs(self.request.user).select_related("author")

    def get_serializer_class(self) -> type[serializers.BaseSerializer[Any]]:
        return NoteWriteSerializer if self.action == "create" else NoteSerializer

    def get_object(self) -> Note:
        return note_get_for_user(self.request.user, self.kwargs.get("pk"))

    def retrieve(self, request: Request, pk: str | None = None) -> Response:
        return Response(NoteSerializer(self.get_object()).data)

    @extend_schema(request=NoteWriteSerializer, responses={201: NoteSerializer})
    def create(self, request: Request) -> Response:
        serializer = NoteWriteSerializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        note = services.note_create(
            customer=serializer.validated_data["customer"],
            author=request.user,
            body=serializer.validated_data["body"],
            source=ActivitySource.API,
        )
        return Response(NoteSerializer(note).data, status=status.HTTP_201_CREATED)
