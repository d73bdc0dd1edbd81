"""Display helpers for customer pages."""

from __future__ import annotations

from django import template

register = template.Library()


@register.filter
def mask_phone(phone: str | None, mask: bool = True) -> str:
    """``13800000001`` -> ``138****0001`` when ``mask`` is true.

    Store staff see masked numbers: a clerk's screen is often in view of other customers,
    and a full list of phone numbers is what a leaving employee would take along.
    """
    phone = phone or ""
    if not mask or not phone:
        return phone
    if len(phone) >= 8:
        return f"{phone[:3]}****{phone[-4:]}"
    # Too short to keep both ends without revealing most of it.
    return phone[:1] + "*" * (len(phone) - 1)
