"""Cross-app API helpers: the one error shape, and cursor pagination.

Every API error, whatever raised it, answers::

    {"error": {"code": "invalid", "message": "…", "fields": {"amount": ["…"]}}}

and bulk endpoints add ``"rows": [{"row": 3, "fields": {...}}]``. Clients branch on
``code`` and show ``message``; ``fields`` names what to fix.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DatabaseError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

logger = logging.getLogger(__name__)


class DefaultCursorPagination(CursorPagination):
    """Cursor pagination: stable under inserts and no ``COUNT(*)`` of a large table."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500
    ordering = "-id"


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
        exc = exceptions.NotFound()
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
        if isinstance(data, dict) and "rows" in data:
            response.data = error_body(
                "invalid",
                str(data.get("message", "Some rows are invalid; nothing was stored.")),
                rows=data["rows"],
            )
        else:
            response.data = error_body(
                "invalid", "The request has invalid fields.", fields=_as_field_dict(data)
            )
        return response

    exc_detail = getattr(exc, "detail", None)
    code = getattr(exc, "default_code", "error")
    if isinstance(exc_detail, exceptions.ErrorDetail):
        code = exc_detail.code or code
    message = str(exc_detail) if exc_detail is not None else str(exc)
    response.data = error_body(str(code), message)
    return response
