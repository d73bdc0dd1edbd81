"""Forms of the mobile customer list and card: parse and validate only; the views hand
the cleaned values to one service each."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django import forms
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from customers.models import Customer, ProductRole, Tag
from customers.selectors import order_customer_ids_by_external_id, tag_visible_qs
from funnel.models import Stage
from mobile.selectors.customers import (
    ACTIVITY_IDLE,
    DEFAULT_SORT,
    CustomerListFilters,
)

SORT_CHOICES = [
    ("recent", _("Recent contact")),
    ("name", _("Name")),
    ("last_order", _("Last order")),
    ("next_step", _("Next step due")),
    ("newest", _("Newest contacts")),
]
ACTIVITY_CHOICES = [
    ("", _("Any activity")),
    ("7", _("Active in 7 days")),
    ("30", _("Active in 30 days")),
    ("90", _("Active in 90 days")),
    (ACTIVITY_IDLE, _("No activity for 30+ days")),
]
#: Orders recorded on a phone get their own key space, so they never collide with (or
#: overwrite) an order of the mall or the POS.
MOBILE_ORDER_PREFIX = "m-"
_MOBILE_ORDER_KEY = re.compile(r"^m-[0-9a-f]{32}$")
#: A phone's clock may run a little ahead of the server's: "now" on the phone is not the
#: future.
CLOCK_SKEW = timedelta(minutes=5)


def new_order_key() -> str:
    return f"{MOBILE_ORDER_PREFIX}{uuid.uuid4().hex}"


class CustomerListForm(forms.Form):
    """The list's query string. Each field is optional; an invalid one is dropped rather
    than failing the whole list (a stale link still shows the customers)."""

    q = forms.CharField(required=False, max_length=100, label=_("Search"))
    stage = forms.TypedChoiceField(
        required=False,
        coerce=int,
        empty_value=None,
        choices=[("", _("Any stage")), *Stage.choices],
        label=_("Stage"),
    )
    tag = forms.ModelChoiceField(
        required=False, queryset=Tag.objects.none(), empty_label=_("Any tag"), label=_("Tag")
    )
    channel = forms.TypedChoiceField(
        required=False, coerce=int, empty_value=None, label=_("Channel")
    )
    activity = forms.ChoiceField(required=False, choices=ACTIVITY_CHOICES, label=_("Activity"))
    sort = forms.ChoiceField(required=False, choices=SORT_CHOICES, label=_("Sort"))

    def __init__(
        self, data: Any, *, user: Any, channel_choices: list[tuple[int, str]], **kwargs: Any
    ) -> None:
        super().__init__(data, **kwargs)
        tag_field = self.fields["tag"]
        assert isinstance(tag_field, forms.ModelChoiceField)
        tag_field.queryset = tag_visible_qs(user).order_by("group__name", "name", "id")
        channel_field = self.fields["channel"]
        assert isinstance(channel_field, forms.ChoiceField)
        channel_field.choices = [("", _("Any channel")), *channel_choices]

    def filters(self) -> CustomerListFilters:
        self.is_valid()
        data = {k: v for k, v in self.cleaned_data.items() if k not in self.errors}
        return CustomerListFilters(
            q=(data.get("q") or "").strip(),
            stage=data.get("stage"),
            tag=data.get("tag"),
            channel=data.get("channel"),
            activity=data.get("activity") or "",
            sort=data.get("sort") or DEFAULT_SORT,
        )

    def is_filtered(self) -> bool:
        """Whether any filter other than the sort narrows the list."""
        f = self.filters()
        return bool(f.q or f.stage or f.tag or f.channel or f.activity)


class TagChoiceForm(forms.Form):
    """One tag to add or remove, among the tags the user may see."""

    tag = forms.ModelChoiceField(
        queryset=Tag.objects.none(),
        label=_("Tag"),
        error_messages={
            "invalid_choice": _("Choose a tag from the list."),
            "required": _("Choose a tag."),
        },
    )

    def __init__(self, *args: Any, user: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        tag_field = self.fields["tag"]
        assert isinstance(tag_field, forms.ModelChoiceField)
        tag_field.queryset = tag_visible_qs(user)


class CardNoteForm(forms.Form):
    body = forms.CharField(
        label=_("Note"),
        max_length=5000,
        strip=True,
        widget=forms.Textarea(attrs={"rows": 3}),
        error_messages={"required": _("Write something first.")},
    )


class OrderRecordForm(forms.Form):
    """A purchase recorded at the counter.

    ``key`` is the order's external_id, generated when the form is shown: a second tap on
    "Save" (or a resend after a dropped connection) upserts the same order instead of
    recording the purchase twice.
    """

    key = forms.CharField(widget=forms.HiddenInput, max_length=34)
    amount = forms.DecimalField(
        label=_("Amount"),
        min_value=Decimal("0.01"),
        max_digits=12,
        decimal_places=2,
        widget=forms.NumberInput(attrs={"step": "0.01", "min": "0.01", "inputmode": "decimal"}),
    )
    product_role = forms.ChoiceField(
        label=_("Product role"),
        required=False,
        choices=[("", "—"), *ProductRole.choices],
    )
    product_name = forms.CharField(label=_("Product"), required=False, max_length=255)
    paid_at = forms.DateTimeField(
        label=_("Paid at"),
        input_formats=[
            "%Y-%m-%dT%H:%M",
            "%Y-%m-%dT%H:%M:%S",
            "%Y-%m-%d %H:%M",
            "%Y-%m-%d %H:%M:%S",
        ],
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )

    def __init__(self, *args: Any, customer: Customer, **kwargs: Any) -> None:
        self.customer = customer
        if not args or args[0] is None:
            # An unbound form: a fresh key, and "now" in the corp's time zone.
            kwargs.setdefault(
                "initial",
                {"key": new_order_key(), "paid_at": timezone.localtime().replace(second=0)},
            )
        super().__init__(*args, **kwargs)

    def clean_key(self) -> str:
        key: str = self.cleaned_data["key"]
        if not _MOBILE_ORDER_KEY.match(key):
            raise forms.ValidationError(_("The form expired; please enter the purchase again."))
        # The key comes from the browser: refuse one that names another customer's order
        # (an upsert would otherwise move that order to this customer).
        owner = order_customer_ids_by_external_id([key]).get(key)
        if owner is not None and owner != self.customer.pk:
            raise forms.ValidationError(_("The form expired; please enter the purchase again."))
        return key

    def clean_paid_at(self) -> Any:
        paid_at = self.cleaned_data["paid_at"]
        if paid_at > timezone.now() + CLOCK_SKEW:
            raise forms.ValidationError(_("The time of payment cannot be in the future."))
        return paid_at
