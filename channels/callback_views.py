"""The WeCom callback endpoint: an interface only (parse, call one service, answer).

CSRF-exempt because WeCom cannot send a CSRF token: the message signature, checked by
``channels.wecom.callbacks``, is the authentication.
"""

from __future__ import annotations

import logging

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from channels.wecom.callbacks import (
    MAX_BODY_BYTES,
    CallbackRejected,
    callback_receive,
    describe,
    url_verify,
)

logger = logging.getLogger(__name__)


def _refuse(request: HttpRequest, exc: CallbackRejected) -> HttpResponse:
    params = request.GET.dict()
    logger.warning(
        "WeCom callback %s refused (%s %s): %s from %s",
        request.method,
        exc.status,
        exc.reason,
        describe(params),
        request.META.get("REMOTE_ADDR", "?"),
    )
    return HttpResponse(exc.reason, status=exc.status, content_type="text/plain; charset=utf-8")


@csrf_exempt
@require_http_methods(["GET", "POST"])
def wecom_callback(request: HttpRequest) -> HttpResponse:
    """GET: URL verification, answered with the bare plaintext (no quotes, BOM or
    newline: WECOM.md §2.1). POST: an event, answered 200 with an empty body once it is
    recorded."""
    try:
        if request.method == "GET":
            plaintext = url_verify(params=request.GET.dict())
            return HttpResponse(plaintext, content_type="text/plain; charset=utf-8")
        # Refuse by the declared length before reading anything into memory.
        try:
            declared = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            declared = 0
        if declared > MAX_BODY_BYTES:
            raise CallbackRejected(413, "body too large")
        callback_receive(body=request.body, params=request.GET.dict())
    except CallbackRejected as exc:
        return _refuse(request, exc)
    return HttpResponse(b"", content_type="text/plain; charset=utf-8")
