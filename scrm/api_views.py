"""What every API v1 viewset shares: the base class and the schema of the error shape.

Kept apart from ``scrm.api`` because that module is loaded by DRF's settings while
``rest_framework.generics`` is still importing (it names the pagination class), so it
cannot import viewsets or drf-spectacular's AutoSchema itself.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, TypeVar

from django.db.models import Model, QuerySet
from django_filters import NumberFilter
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.openapi import AutoSchema
from rest_framework import serializers, viewsets
from rest_framework.request import Request

from scrm.api import API_PARSERS, MAX_ID, HasRole

_M = TypeVar("_M", bound=Model)


# --- Filtering -------------------------------------------------------------------------


class ApiFilterBackend(DjangoFilterBackend):
    """django-filter, plus a bound on numeric filters.

    A NumberFilter on an id (``?customer=1e30``) passes a Decimal that the database
    driver cannot convert (SQLite's OverflowError, PostgreSQL's "bigint out of range"):
    refuse it as a 400 naming the parameter instead.
    """

    def filter_queryset(self, request: Request, queryset: QuerySet[Any], view: Any) -> Any:
        filterset = self.get_filterset(request, queryset, view)
        if filterset is None:
            return queryset
        if not filterset.is_valid():
            return super().filter_queryset(request, queryset, view)  # raises the 400
        errors = {
            name: [f"Enter a number between -{MAX_ID} and {MAX_ID}."]
            for name, filter_ in filterset.filters.items()
            if isinstance(filter_, NumberFilter)
            and isinstance(value := filterset.form.cleaned_data.get(name), Decimal)
            and abs(value) > MAX_ID
        }
        if errors:
            raise serializers.ValidationError(errors)
        return filterset.qs


# --- Schema ----------------------------------------------------------------------------


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Stable machine code: invalid, not_found, ...")
    message = serializers.CharField(help_text="A sentence for a person.")
    # The metaclass moves declared fields off the class, so this does not shadow .fields.
    fields = serializers.DictField(  # type: ignore[assignment]
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="Field name -> messages.",
    )
    rows = serializers.ListField(
        child=serializers.DictField(),
        required=False,
        help_text='Bulk bodies: [{"row": 0-based index, "fields": {...}}].',
    )


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()


class ScrmAutoSchema(AutoSchema):
    """Documents the one error shape on every operation, next to its success answer."""

    def _get_response_bodies(self, direction: Any = "response") -> dict[str, Any]:
        responses: dict[str, Any] = super()._get_response_bodies(direction)
        codes = ["401", "403"]
        if self.method != "GET" or self._is_list_view():
            codes.append("400")
        if "{" in self.path:
            codes.append("404")
        for code in codes:
            responses.setdefault(
                code, self._get_response_for_code(ErrorSerializer, code, direction=direction)
            )
        return responses


class ScrmViewSet(viewsets.GenericViewSet[_M]):
    """Base of every API v1 viewset: role required, the error shape in the schema.

    Rows are fetched with the ``*_get_for_user`` selectors (404 for what the user may not
    see), never with ``get_object``'s bare lookup.
    """

    schema = ScrmAutoSchema()
    parser_classes = API_PARSERS
    filter_backends = [ApiFilterBackend]
    permission_classes = [HasRole]
    #: The cursor order when the request's FilterSet asks for none (an id tiebreak is added).
    cursor_ordering: tuple[str, ...] = ("-id",)
