"""Cross-app API helpers: the one error shape, cursor pagination, and the parser,
permissions and fields every app's API shares (the viewset base is in ``scrm.api_views``).

Every API error, whatever raised it, answers::

    {"error": {"code": "invalid", "message": "…", "fields": {"amount": ["…"]}}}

and bulk endpoints add ``"rows": [{"row": 3, "fields": {...}}]``. Clients branch on
``code`` and show ``message``; ``fields`` names what to fix.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DatabaseError
from django.db.models import Model, QuerySet
from django.http import Http404
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django_filters import OrderingFilter
from rest_framework import exceptions, permissions, serializers, status
from rest_framework.pagination import CursorPagination
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework.views import exception_handler as drf_exception_handler

from scrm.roles import role_of, sees_everything

logger = logging.getLogger(__name__)


class DefaultCursorPagination(CursorPagination):
    """Cursor pagination: stable under inserts and no ``COUNT(*)`` of a large table.

    The order is, first match wins: the ``ordering`` filter of the view's FilterSet (the
    same parameter the dashboard list uses), the view's ``cursor_ordering``, ``-id``. An
    ``id`` tiebreak is always appended so that the order is total. The cursor's position
    is the first ordering field; rows that tie on it are told apart by DRF's in-cursor
    offset, so ordering by a field with many ties (``name``) stays correct but a page deep
    inside a large tie costs an offset scan.
    """

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500
    ordering = "-id"

    def paginate_queryset(
        self, queryset: QuerySet[Any], request: Request, view: Any = None
    ) -> list[Any] | None:
        try:
            return super().paginate_queryset(queryset, request, view)
        except (ValueError, TypeError, OverflowError, DjangoValidationError):
            # A forged cursor whose position does not fit the ordering field ("abc" for
            # an id, a NUL byte PostgreSQL refuses) fails while filtering: still a bad
            # cursor, not a 500.
            if request.query_params.get(self.cursor_query_param):
                raise exceptions.NotFound(self.invalid_cursor_message) from None
            raise

    def get_ordering(self, request: Request, queryset: QuerySet[Any], view: Any) -> tuple[str, ...]:
        ordering = _filterset_ordering(request, view) or tuple(
            getattr(view, "cursor_ordering", ()) or (type(self).ordering,)
        )
        return with_id_tiebreak(ordering)


def with_id_tiebreak(ordering: Sequence[str]) -> tuple[str, ...]:
    names = {field.lstrip("-") for field in ordering}
    if names & {"id", "pk"}:
        return tuple(ordering)
    tiebreak = "-id" if ordering and ordering[0].startswith("-") else "id"
    return (*ordering, tiebreak)


def _filterset_ordering(request: Request, view: Any) -> tuple[str, ...]:
    filterset_class = getattr(view, "filterset_class", None)
    ordering_filter = filterset_class.base_filters.get("ordering") if filterset_class else None
    if not isinstance(ordering_filter, OrderingFilter):
        return ()
    raw = request.query_params.get("ordering", "")
    # The FilterSet has already rejected unknown values with a 400; skip them defensively.
    return tuple(
        ordering_filter.get_ordering_value(param)
        for param in (p.strip() for p in raw.split(","))
        if param and param.lstrip("-") in ordering_filter.param_map
    )


def error_body(
    code: str,
    message: str,
    *,
    fields: dict[str, Any] | None = None,
    rows: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if fields:
        error["fields"] = fields
    if rows is not None:
        error["rows"] = rows
    return {"error": error}


def _as_field_dict(detail: Any) -> dict[str, Any]:
    if isinstance(detail, dict):
        return {str(k): v for k, v in detail.items()}
    if isinstance(detail, list):
        return {"non_field_errors": detail}
    return {"non_field_errors": [detail]}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, DjangoValidationError):
        detail = (
            exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        )
        exc = exceptions.ValidationError(detail=detail)
    elif isinstance(exc, Http404):
        # The selectors' messages ("No such customer.") say what was not found.
        exc = exceptions.NotFound(str(exc) or None)
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()

    response = drf_exception_handler(exc, context)
    if response is None:
        if isinstance(exc, DatabaseError):
            # A constraint the serializer could not foresee (a race on a unique key):
            # the transaction rolled back, so nothing was half-written. Say so, not 500.
            logger.warning("database error in API request: %s", exc)
            return Response(
                error_body("conflict", "The request conflicts with stored data; retry it."),
                status=status.HTTP_409_CONFLICT,
            )
        return None

    if isinstance(exc, exceptions.ValidationError):
        data = response.data
        # Both keys, so that a plain field called "rows" (a bulk body that is not a list)
        # is reported as a field, not mistaken for per-row errors.
        if isinstance(data, dict) and "rows" in data and "message" in data:
            response.data = error_body("invalid", str(data["message"]), rows=data["rows"])
        else:
            message = getattr(exc, "message", None) or "The request has invalid fields."
            response.data = error_body("invalid", str(message), fields=_as_field_dict(data))
        return response

    exc_detail = getattr(exc, "detail", None)
    code = getattr(exc, "default_code", "error")
    if isinstance(exc_detail, exceptions.ErrorDetail):
        code = exc_detail.code or code
    message = str(exc_detail) if exc_detail is not None else str(exc)
    response.data = error_body(str(code), message)
    return response


# --- Errors raised by API code ---------------------------------------------------------


class InvalidRequest(exceptions.ValidationError):
    """A 400 whose top-level ``message`` says what is wrong (e.g. naming a limit)."""

    def __init__(self, message: str, fields: dict[str, Any]) -> None:
        super().__init__(fields)
        self.message = message


class RowsInvalid(exceptions.ValidationError):
    """A 400 for a bulk body: ``rows`` is ``[{"row": index, "fields": {...}}]``.

    The detail is set as given: DRF would otherwise turn the integer row indexes into
    strings.
    """

    def __init__(self, message: str, rows: list[dict[str, Any]]) -> None:
        self.detail = {"message": message, "rows": rows}  # type: ignore[dict-item]


# --- Parsing ---------------------------------------------------------------------------


class StrictJSONParser(JSONParser):
    """JSON, refusing with a 400 what would otherwise fail later with a 500: nesting deep
    enough to exhaust the recursion limit, and lone surrogates ("\\ud800"), which no
    database can store as UTF-8."""

    def parse(
        self,
        stream: Any,
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        try:
            data = super().parse(stream, media_type, parser_context)
            json.dumps(data, ensure_ascii=False).encode("utf-8")
        except RecursionError:
            raise exceptions.ParseError("JSON parse error - nested too deeply.") from None
        except UnicodeEncodeError:
            raise exceptions.ParseError(
                "JSON parse error - invalid unicode (a lone surrogate)."
            ) from None
        return data


#: The parsers of every API v1 view (JSON first; forms for quick curl calls).
API_PARSERS = [StrictJSONParser, FormParser, MultiPartParser]


# --- Permissions -----------------------------------------------------------------------

NO_ROLE_MESSAGE = "Your account has no role in this SCRM; ask an operator to give it one."
WRITE_DENIED_MESSAGE = "Only operators and API clients may change this."


class HasRole(permissions.BasePermission):
    """Any user with a role. Row-level scoping is done by the querysets, not here."""

    def has_permission(self, request: Request, view: APIView) -> bool:
        if not getattr(request.user, "is_authenticated", False):
            return False  # DRF answers 401 with the WWW-Authenticate challenge
        if role_of(request.user) is None:
            raise exceptions.PermissionDenied(NO_ROLE_MESSAGE)
        return True


class ReadOnlyUnlessSeesEverything(HasRole):
    """Reading needs a role; writing needs operator or API client."""

    message = WRITE_DENIED_MESSAGE

    def has_permission(self, request: Request, view: APIView) -> bool:
        if not super().has_permission(request, view):
            return False
        return request.method in permissions.SAFE_METHODS or sees_everything(request.user)


# --- Fields ----------------------------------------------------------------------------

#: Largest id a bigint primary key can hold; larger numbers are "not found", not a crash.
MAX_ID = 2**63 - 1


def id_field(**kwargs: Any) -> serializers.IntegerField:
    """An id given by value (bulk rows): resolved later in one query, never per row."""
    return serializers.IntegerField(min_value=1, max_value=MAX_ID, **kwargs)


class AwareDateTimeField(serializers.DateTimeField):
    """ISO-8601 with an explicit offset: a naive time is ambiguous, so it is refused."""

    default_error_messages = {
        "naive": "Include a time zone offset, e.g. 2024-05-01T10:00:00+08:00.",
    }

    def to_internal_value(self, value: Any) -> datetime:
        parsed: datetime | None = value if isinstance(value, datetime) else None
        if isinstance(value, str):
            try:
                parsed = parse_datetime(value.strip())
            except ValueError:
                parsed = None  # the parent reports the invalid value
        if parsed is not None and timezone.is_naive(parsed):
            self.fail("naive")
        result: datetime = super().to_internal_value(value)
        return result


class VisiblePrimaryKeyRelatedField(serializers.PrimaryKeyRelatedField):
    """A related id that must be one of the rows the requesting user may see.

    ``visible(user)`` is a ``*_visible_qs`` selector, so an id the user may not see is
    reported exactly like an unknown one. ``queryset`` names the model for the schema.
    """

    def __init__(self, *, visible: Callable[[Any], QuerySet[Any]], **kwargs: Any) -> None:
        self.visible = visible
        super().__init__(**kwargs)

    def get_queryset(self) -> QuerySet[Any]:
        request = self.context.get("request")
        return self.visible(getattr(request, "user", None))

    def to_internal_value(self, data: Any) -> Model:
        # JSON true/1.5 would otherwise match id 1 (bool and float pass int()).
        if isinstance(data, bool) or not isinstance(data, int | str):
            self.fail("incorrect_type", data_type=type(data).__name__)
        if isinstance(data, str):
            if not data.strip().isdigit():
                self.fail("incorrect_type", data_type="str")
            data = int(data)
        if not 1 <= data <= MAX_ID:
            self.fail("does_not_exist", pk_value=data)
        result: Model = super().to_internal_value(data)
        return result
