"""What the bulk endpoints (and the one-row creates built on them) share.

A bulk body is validated in two passes so that 1,000 rows never cost 1,000 queries:

1. each row by a plain Serializer that touches no database;
2. every reference the rows make (customers, stores, staff, existing keys) resolved in
   one query per kind of reference.

Errors of both passes are collected per row and answered together, and nothing is stored
unless every row is valid.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import serializers, status
from rest_framework.decorators import action
from rest_framework.exceptions import ErrorDetail
from rest_framework.request import Request
from rest_framework.response import Response

from customers.selectors import customer_visible_qs
from customers.services import UpsertResult, customer_ids_by_external_id
from scrm.api import InvalidRequest, RowsInvalid, id_field
from scrm.roles import sees_everything

Row = dict[str, Any]


def bulk_rows(data: Any) -> list[Any]:
    """The rows of a bulk body (a JSON list, or ``{"rows": [...]}``), within the limit."""
    rows = data.get("rows") if isinstance(data, dict) else data
    if not isinstance(rows, list):
        raise InvalidRequest(
            'Send a JSON list of rows, or an object {"rows": [...]}.',
            {"rows": ["Expected a list of rows."]},
        )
    limit: int = settings.API_BULK_MAX_ROWS
    if not rows:
        raise InvalidRequest("The body has no rows.", {"rows": ["Send at least one row."]})
    if len(rows) > limit:
        raise InvalidRequest(
            f"Too many rows: {len(rows)}. At most {limit} rows per request "
            "(API_BULK_MAX_ROWS); split the import into batches.",
            {"rows": [f"At most {limit} rows per request."]},
        )
    return rows


class RowErrors:
    """Field errors by 0-based row index, from either pass."""

    def __init__(self) -> None:
        self.by_row: dict[int, dict[str, list[Any]]] = {}

    def add(self, index: int, field: str, message: str) -> None:
        self.by_row.setdefault(index, {}).setdefault(field, []).append(
            ErrorDetail(message, code="invalid")
        )

    def add_detail(self, index: int, detail: Any) -> None:
        if not isinstance(detail, dict):
            detail = {"non_field_errors": detail if isinstance(detail, list) else [detail]}
        for field, messages in detail.items():
            items = messages if isinstance(messages, list) else [messages]
            self.by_row.setdefault(index, {}).setdefault(str(field), []).extend(items)

    def __contains__(self, index: int) -> bool:
        return index in self.by_row

    def raise_for_rows(self, total: int) -> None:
        """The bulk answer: 400 with ``rows`` naming each bad row and its fields."""
        if self.by_row:
            raise RowsInvalid(
                f"{len(self.by_row)} of {total} rows are invalid; nothing was stored.",
                [{"row": i, "fields": fields} for i, fields in sorted(self.by_row.items())],
            )

    def raise_for_single(self) -> None:
        """The one-row answer: the usual 400 with ``fields``."""
        if 0 in self.by_row:
            raise serializers.ValidationError(self.by_row[0])


def validate_rows(
    serializer_class: type[serializers.Serializer], rows: list[Any], context: dict[str, Any]
) -> tuple[list[Row | None], RowErrors]:
    """Pass 1: each row through one shared serializer instance (no per-row field copies,
    no queries). Returns the validated rows (None where invalid) and their errors."""
    child = serializer_class(context=context)
    errors = RowErrors()
    validated: list[Row | None] = []
    for index, row in enumerate(rows):
        try:
            validated.append(dict(child.run_validation(row)))
        except serializers.ValidationError as exc:
            validated.append(None)
            errors.add_detail(index, exc.detail)
    return validated, errors


class CustomerRefSerializer(serializers.Serializer):
    """A row's customer: by ``customer`` (id) or ``customer_external_id``, exactly one."""

    customer = id_field(required=False, help_text="Customer id.")
    customer_external_id = serializers.CharField(
        max_length=128, required=False, help_text="The customer's external_id (your key)."
    )

    def validate(self, attrs: Row) -> Row:
        given = [name for name in ("customer", "customer_external_id") if attrs.get(name)]
        if len(given) != 1:
            raise serializers.ValidationError(
                {"customer": ["Give exactly one of customer (id) or customer_external_id."]}
            )
        return attrs


def resolve_customers(
    user: Any,
    rows: list[Row | None],
    errors: RowErrors,
    *,
    also_check: Iterable[int] = (),
) -> set[int]:
    """Pass 2 for customers: set ``row["customer_id"]`` on every valid row, in at most two
    queries (external ids, then visibility). An id the user may not see is reported like
    an unknown one. Returns the visible ids among the rows' and ``also_check``'s."""
    external_ids = {r["customer_external_id"] for r in rows if r and r.get("customer_external_id")}
    by_external_id = customer_ids_by_external_id(external_ids)
    wanted = {r["customer"] for r in rows if r and r.get("customer")} | set(also_check)
    if sees_everything(user):
        # Ids just read by external_id exist, and such a user sees every customer.
        visible = ids_in(customer_visible_qs(user), wanted) | set(by_external_id.values())
    else:
        visible = ids_in(customer_visible_qs(user), wanted | set(by_external_id.values()))
    for index, row in enumerate(rows):
        if row is None:
            continue
        if row.get("customer"):
            customer_id: int | None = row["customer"]
            field, shown = "customer", f"id {row['customer']}"
        else:
            customer_id = by_external_id.get(row["customer_external_id"])
            field, shown = "customer_external_id", repr(row["customer_external_id"])
        if customer_id is None or customer_id not in visible:
            errors.add(index, field, f"No customer with {shown}.")
            continue
        row["customer_id"] = customer_id
    return visible


def resolve_ids(
    rows: list[Row | None], field: str, visible_qs: QuerySet[Any], errors: RowErrors
) -> None:
    """Pass 2 for an optional id field (``store``, ``staff``): one query for all rows."""
    wanted = {r[field] for r in rows if r and r.get(field) is not None}
    found = ids_in(visible_qs, wanted)
    for index, row in enumerate(rows):
        if row and row.get(field) is not None and row[field] not in found:
            errors.add(index, field, f'Invalid pk "{row[field]}" - object does not exist.')


def ids_in(qs: QuerySet[Any], ids: set[int]) -> set[int]:
    if not ids:
        return set()
    return set(qs.filter(pk__in=ids).order_by().values_list("pk", flat=True))


def bulk_result(outcomes: Any) -> dict[str, Any]:
    return {
        "created": outcomes.created,
        "updated": outcomes.updated,
        "unchanged": outcomes.unchanged,
        "ids": outcomes.ids,
    }


class BulkResultSerializer(serializers.Serializer):
    created = serializers.IntegerField()
    updated = serializers.IntegerField()
    unchanged = serializers.IntegerField()
    ids = serializers.ListField(
        child=serializers.IntegerField(), help_text="Stored ids, in the order of the rows."
    )


class BulkWriteMixin:
    """``retrieve``, ``create`` (one row) and ``bulk`` for a resource written by a bulk
    service. A subclass sets its serializers and three functions: how rows are prepared
    (``prepare_rows(request, rows) -> (inputs, errors)``), the service that writes them
    (``write_rows(rows=inputs)``) and the access helper (``get_for_user(user, pk)``);
    its OpenAPI texts go in ``extend_schema_view`` on the subclass.

    The one-row create is the bulk path with one row, so both validate alike.
    """

    row_serializer_class: type[serializers.Serializer[Any]]
    read_serializer_class: type[serializers.Serializer[Any]]
    prepare_rows: Callable[[Request, list[Any]], tuple[list[Any], RowErrors]]
    write_rows: Callable[..., UpsertResult]
    get_for_user: Callable[[Any, Any], Any]
    kwargs: dict[str, Any]

    def get_serializer_class(self) -> type[serializers.BaseSerializer[Any]]:
        if getattr(self, "action", None) in ("create", "bulk"):
            return self.row_serializer_class
        return self.read_serializer_class

    def get_object(self) -> Any:
        request: Request = getattr(self, "request")  # noqa: B009 - set by the viewset
        return self.get_for_user(request.user, self.kwargs.get("pk"))

    def retrieve(self, request: Request, pk: str | None = None) -> Response:
        return Response(self.read_serializer_class(self.get_object()).data)

    def create(self, request: Request) -> Response:
        inputs, errors = self.prepare_rows(request, [request.data])
        errors.raise_for_single()
        result = self.write_rows(rows=inputs)
        code = status.HTTP_201_CREATED if result.created else status.HTTP_200_OK
        row = self.get_for_user(request.user, result.ids[0])
        return Response(self.read_serializer_class(row).data, status=code)

    @action(detail=False, methods=["post"])
    def bulk(self, request: Request) -> Response:
        rows = bulk_rows(request.data)
        inputs, errors = self.prepare_rows(request, rows)
        errors.raise_for_rows(len(rows))
        return Response(bulk_result(self.write_rows(rows=inputs)))


def bulk_write_schema(
    *,
    row: type[serializers.Serializer[Any]],
    read: type[serializers.Serializer[Any]],
    created: str,
    replayed: str,
    create_text: str,
    bulk_text: str,
) -> Callable[[type], type]:
    """The OpenAPI texts of a ``BulkWriteMixin`` viewset's ``create`` and ``bulk``."""
    return extend_schema_view(
        create=extend_schema(
            request=row,
            responses={
                200: OpenApiResponse(read, replayed),
                201: OpenApiResponse(read, created),
            },
            description=create_text,
        ),
        bulk=extend_schema(
            request=row(many=True),
            responses={200: BulkResultSerializer},
            description=bulk_text,
        ),
    )
