"""My channel code: the staff member's QR codes to show at the counter, with today's adds."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from mobile.selectors.code import my_codes
from mobile.views.auth import mobile_view


@mobile_view()
@require_GET
def my_code(request: HttpRequest) -> HttpResponse:
    return render(request, "m/code.html", {"mine": my_codes(request.user), "m_tab": "code"})
