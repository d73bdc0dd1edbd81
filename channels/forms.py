"""Dashboard forms over the channels services. Filtering uses ``channels.filters`` (the
same FilterSets and period form as the API)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.db.models import QuerySet
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from channels.services import STATE_MAX_LENGTH
from customers.models import Staff, Tag
from customers.selectors import staff_visible_qs, tag_visible_qs


class StaffChoiceField(forms.ModelMultipleChoiceField):
    def label_from_instance(self, obj: Any) -> str:
        # Two clerks may share a name; the store tells them apart.
        return f"{obj.name} · {obj.store.name}" if obj.store_id else str(obj.name)


class TagChoiceField(forms.ModelMultipleChoiceField):
    def label_from_instance(self, obj: Any) -> str:
        return f"{obj.group.name} / {obj.name}"


def code_staff_choices(user: Any) -> QuerySet[Staff]:
    """Only active staff with a WeCom userid can be on a contact way."""
    return staff_visible_qs(user).filter(is_active=True, wecom_userid__isnull=False)


class ChannelCodeForm(forms.Form):
    # "Name" alone is translated as a person's name (姓名); a code's name is 名称.
    name = forms.CharField(label=pgettext_lazy("thing", "Name"), max_length=128)
    staff = StaffChoiceField(
        label=_("Staff"),
        queryset=Staff.objects.none(),
        help_text=_("One staff member makes a single-member code; up to 100."),
        widget=forms.SelectMultiple(attrs={"size": 6}),
    )
    state = forms.CharField(
        label=_("State"),
        max_length=STATE_MAX_LENGTH,
        required=False,
        help_text=_("Optional; letters, digits, “_” and “-”, at most 30. Generated when blank."),
    )
    skip_verify = forms.BooleanField(
        label=_("Add without verification"), required=False, initial=True
    )
    welcome_text = forms.CharField(
        label=_("Welcome message"),
        required=False,
        max_length=4000,
        widget=forms.Textarea(attrs={"rows": 3}),
    )
    auto_tags = TagChoiceField(
        label=_("Tags added on join"),
        queryset=Tag.objects.none(),
        required=False,
        widget=forms.SelectMultiple(attrs={"size": 4}),
    )

    def __init__(self, *args: Any, user: Any, **kwargs: Any) -> None:
        # Labels sit above the inputs, so no trailing colon.
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)
        # Offered (and accepted) only what the user may see, like the filters.
        self.fields["staff"].queryset = code_staff_choices(user)  # type: ignore[attr-defined]
        self.fields["auto_tags"].queryset = tag_visible_qs(user)  # type: ignore[attr-defined]


def dress_channel_filter_form(form: forms.Form) -> None:
    """Adapt ChannelFilter's form for people: "Any" instead of dashes and "Unknown",
    no trailing colons. Field names and validation stay the FilterSet's own, so the
    dashboard and the API read the same URLs."""
    form.label_suffix = ""
    kind = form.fields["kind"]
    # The choice iterator still points at the class-level field; rebuild the choices.
    options = [(v, label) for v, label in kind.choices if v != ""]  # type: ignore[attr-defined]
    kind.empty_label = None  # type: ignore[attr-defined]
    kind.choices = [("", _("Any")), *options]  # type: ignore[attr-defined]
    # NullBooleanSelect maps True/False/None to "true"/"false"/"unknown" both ways, so the
    # chosen option stays selected and the URL reads like the API's (?is_active=true).
    active = forms.NullBooleanSelect()
    active.choices = [
        ("unknown", _("Any")),
        ("true", pgettext_lazy("switch", "Active")),
        ("false", pgettext_lazy("switch", "Inactive")),
    ]
    form.fields["is_active"].widget = active
