"""The customer card (/m/customers/<id>/) and its actions: tags, notes, a purchase, the
referral code.

Every URL here takes a customer id and fetches it through
``mobile.selectors.customers.card_customer_get`` (``customer_get_for_user`` underneath)
before reading anything else, so a customer the user may not see is a 404, for a GET and
a POST alike. Each action is a plain POST form with CSRF that works without JavaScript
(redirect back to the card, or the card again with the form's messages and HTTP 400);
htmx enhances it by swapping only the section that changed (and, out of band, the
sections that follow from it: the stage after a purchase, the timeline after a tag).
htmx responses are 200 even with form errors, because htmx 2 does not swap 4xx answers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.translation import gettext
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from campaigns.services.levers import points_balance
from channels.services import referral_code_for
from channels.wecom.errors import WeComError
from customers.models import ActivitySource, Customer
from customers.selectors import staff_of
from customers.services import (
    OrderInput,
    customer_tag_add,
    customer_tag_remove,
    note_create,
    orders_upsert,
)
from mobile.forms_customers import CardNoteForm, OrderRecordForm, TagChoiceForm
from mobile.selectors.customers import (
    CARD_TIMELINE,
    TIMELINE_MORE,
    card_customer_get,
    card_notes,
    card_orders,
    card_referral_code,
    card_stage,
    card_tags,
    card_timeline,
    card_touchpoints,
    customer_card,
)
from mobile.views.auth import mobile_view
from scrm.dashboard import vary_on_htmx
from scrm.roles import masks_phones

#: Section name -> its partial template (the root element's id is ``card-<name>``).
SECTIONS = {
    "stage": "m/_card_stage.html",
    # The profile's stage and points badges (a purchase moves both).
    "badges": "m/_card_badges.html",
    "tags": "m/_card_tags.html",
    "notes": "m/_card_notes.html",
    "orders": "m/_card_orders.html",
    "timeline": "m/_card_timeline.html",
    "touchpoints": "m/_card_touchpoints.html",
    "referral": "m/_card_referral.html",
}


def _section_data(section: str, user: Any, customer: Customer) -> dict[str, Any]:
    """The context one section needs, read fresh (after a write)."""
    loaders: dict[str, Callable[[], dict[str, Any]]] = {
        "stage": lambda: {"stage": card_stage(customer)},
        "badges": lambda: {"stage": card_stage(customer), "points": points_balance(customer.pk)},
        "tags": lambda: {"tags": card_tags(user, customer)},
        "notes": lambda: {"notes": card_notes(customer)},
        "orders": lambda: {"orders": card_orders(customer)},
        "timeline": lambda: {"timeline": card_timeline(customer)},
        "touchpoints": lambda: {"touchpoints": card_touchpoints(customer)},
        "referral": lambda: {
            "referral_code": card_referral_code(customer),
            "points": points_balance(customer.pk),
        },
    }
    return loaders[section]()


def _base_context(request: HttpRequest, customer: Customer) -> dict[str, Any]:
    return {
        "customer": customer,
        "mask_phones": masks_phones(request.user),
        "m_tab": "customers",
        "sidebar": request.GET.get("sidebar") == "1",
    }


def _forms(customer: Customer, user: Any, **bound: Any) -> dict[str, Any]:
    """Fresh forms for every action, with the bound (invalid) one in its place."""
    return {
        "tag_form": bound.get("tag_form") or TagChoiceForm(user=user),
        "note_form": bound.get("note_form") or CardNoteForm(),
        "order_form": bound.get("order_form") or OrderRecordForm(customer=customer),
    }


def _render_card(
    request: HttpRequest,
    customer: Customer,
    *,
    status: int = 200,
    timeline_limit: int = CARD_TIMELINE,
    order_open: bool = False,
    referral_error: str = "",
    **bound: Any,
) -> HttpResponse:
    user: Any = request.user
    card = customer_card(user, customer, timeline_limit=timeline_limit)
    context = {
        **_base_context(request, customer),
        **_forms(customer, user, **bound),
        "card": card,
        "stage": card.stage,
        "tags": card.tags,
        "notes": card.notes,
        "orders": card.orders,
        "timeline": card.timeline,
        "timeline_more": timeline_limit < TIMELINE_MORE and len(card.timeline) >= timeline_limit,
        "touchpoints": card.touchpoints,
        "referral_code": card.referral_code,
        "referral_error": referral_error,
        "points": card.points,
        "order_open": order_open or "order_form" in bound,
    }
    return vary_on_htmx(render(request, "m/card.html", context, status=status))


def _sections(
    request: HttpRequest,
    customer: Customer,
    main: str,
    *,
    oob: Sequence[str] = (),
    flash: str = "",
    extra: dict[str, Any] | None = None,
    **bound: Any,
) -> HttpResponse:
    """The ``main`` section for htmx's swap, then ``oob`` sections swapped out of band."""
    user: Any = request.user
    base = {**_base_context(request, customer), **_forms(customer, user, **bound)}
    parts = [
        render_to_string(
            SECTIONS[main],
            {**base, **_section_data(main, user, customer), **(extra or {}), "flash": flash},
            request=request,
        )
    ]
    for name in oob:
        context = {**base, **_section_data(name, user, customer), "oob": True}
        parts.append(render_to_string(SECTIONS[name], context, request=request))
    return vary_on_htmx(HttpResponse("".join(parts)))


def _back_to(customer: Customer, section: str) -> HttpResponseRedirect:
    return HttpResponseRedirect(f"{reverse('m:card', args=[customer.pk])}#card-{section}")


def _is_htmx(request: HttpRequest) -> bool:
    htmx: Any = getattr(request, "htmx", None)
    return bool(htmx) and not htmx.history_restore_request


# --- Pages -----------------------------------------------------------------------------


@mobile_view()
@require_GET
def card(request: HttpRequest, pk: int) -> HttpResponse:
    customer = card_customer_get(request.user, pk)
    return _render_card(request, customer)


@mobile_view()
@require_GET
def card_timeline_view(request: HttpRequest, pk: int) -> HttpResponse:
    """The longer timeline: the section for htmx's "show more", else the whole card."""
    customer = card_customer_get(request.user, pk)
    if _is_htmx(request):
        context = {
            **_base_context(request, customer),
            "timeline": card_timeline(customer, limit=TIMELINE_MORE),
            "timeline_more": False,
        }
        return vary_on_htmx(render(request, SECTIONS["timeline"], context))
    return _render_card(request, customer, timeline_limit=TIMELINE_MORE)


# --- Actions ---------------------------------------------------------------------------


def _tag_change(request: HttpRequest, pk: int, *, add: bool) -> HttpResponse:
    user: Any = request.user
    # Permission first: another store's customer is a 404 before the form is even read.
    customer = card_customer_get(user, pk)
    form = TagChoiceForm(request.POST, user=user)
    if not form.is_valid():
        if _is_htmx(request):
            return _sections(request, customer, "tags", tag_form=form)
        return _render_card(request, customer, status=400, tag_form=form)
    tag = form.cleaned_data["tag"]
    service = customer_tag_add if add else customer_tag_remove
    changed = service(
        customer=customer, tag=tag, staff=staff_of(user), source=ActivitySource.MOBILE
    )
    if add:
        text = gettext("Tag added.") if changed else gettext("The customer already has this tag.")
    else:
        text = (
            gettext("Tag removed.") if changed else gettext("The customer did not have this tag.")
        )
    if _is_htmx(request):
        return _sections(request, customer, "tags", oob=["timeline"], flash=text)
    messages.success(request, text)
    return _back_to(customer, "tags")


@mobile_view()
@require_POST
def card_tag_add(request: HttpRequest, pk: int) -> HttpResponse:
    return _tag_change(request, pk, add=True)


@mobile_view()
@require_POST
def card_tag_remove(request: HttpRequest, pk: int) -> HttpResponse:
    return _tag_change(request, pk, add=False)


@mobile_view()
@require_POST
def card_note_add(request: HttpRequest, pk: int) -> HttpResponse:
    user: Any = request.user
    customer = card_customer_get(user, pk)
    form = CardNoteForm(request.POST)
    if form.is_valid():
        try:
            note_create(
                customer=customer,
                author=user,
                body=form.cleaned_data["body"],
                source=ActivitySource.MOBILE,
            )
        except ValidationError as exc:
            form.add_error(None, exc)
    if form.errors:
        if _is_htmx(request):
            return _sections(request, customer, "notes", note_form=form)
        return _render_card(request, customer, status=400, note_form=form)
    text = gettext("Note added.")
    if _is_htmx(request):
        return _sections(request, customer, "notes", oob=["timeline"], flash=text)
    messages.success(request, text)
    return _back_to(customer, "notes")


@mobile_view()
@require_http_methods(["GET", "POST"])
def card_order(request: HttpRequest, pk: int) -> HttpResponse:
    """GET: the card with the purchase form open (htmx: a fresh form in the orders
    section). POST: record the purchase; the funnel follows at once (the orders service
    announces the fact and the milestones refresh in the same transaction)."""
    user: Any = request.user
    customer = card_customer_get(user, pk)
    if request.method == "GET":
        if _is_htmx(request):
            return _sections(request, customer, "orders", extra={"order_open": True})
        return _render_card(request, customer, order_open=True)
    form = OrderRecordForm(request.POST, customer=customer)
    if not form.is_valid():
        if _is_htmx(request):
            return _sections(
                request, customer, "orders", order_form=form, extra={"order_open": True}
            )
        return _render_card(request, customer, status=400, order_form=form)
    data = form.cleaned_data
    staff = staff_of(user)
    orders_upsert(
        rows=[
            OrderInput(
                external_id=data["key"],
                customer_id=customer.pk,
                amount=data["amount"],
                paid_at=data["paid_at"],
                product_role=data["product_role"],
                product_name=data["product_name"],
                store_id=staff.store_id if staff is not None else None,
                staff_id=staff.pk if staff is not None else None,
            )
        ]
    )
    text = gettext("Purchase recorded.")
    if _is_htmx(request):
        return _sections(
            request,
            customer,
            "orders",
            oob=["stage", "badges", "timeline", "touchpoints", "referral"],
            flash=text,
        )
    messages.success(request, text)
    return _back_to(customer, "orders")


@mobile_view()
@require_POST
def card_referral(request: HttpRequest, pk: int) -> HttpResponse:
    """Show (creating on first use) the customer's referral code. A POST because the
    first call creates a WeCom contact way and a row."""
    customer = card_customer_get(request.user, pk)
    error = ""
    try:
        referral_code_for(customer=customer)
    except ValidationError as exc:
        error = " ".join(exc.messages)
    except WeComError:
        # Network or WeCom trouble: nothing was stored; the clerk can simply try again.
        error = gettext("WeCom did not answer; please try again in a moment.")
    if _is_htmx(request):
        return _sections(request, customer, "referral", extra={"referral_error": error})
    if error:
        return _render_card(request, customer, status=400, referral_error=error)
    return _back_to(customer, "referral")
