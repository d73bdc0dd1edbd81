"""Dashboard forms over the customers services. Filtering uses ``customers.filters``
(the same FilterSet as the API), so only the sort labels and the note form live here."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

#: Sort options offered in the list's filter form: values of CustomerFilter's
#: ``ordering`` parameter, with labels an operator reads (the FilterSet's own labels are
#: derived from field names and would not be translated).
SORT_CHOICES = [
    ("-acquired_at", _("Newest acquired first")),
    ("acquired_at", _("Oldest acquired first")),
    ("name", _("Name, A to Z")),
    ("-name", _("Name, Z to A")),
    ("-updated_at", _("Recently updated")),
]


class NoteForm(forms.Form):
    body = forms.CharField(
        label=_("Note"),
        max_length=5000,
        widget=forms.Textarea(attrs={"rows": 3}),
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Labels sit above the inputs, so no trailing colon.
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)


def dress_filter_form(form: forms.Form, *, channel_choices: Iterable[tuple[int, str]]) -> None:
    """Adapt CustomerFilter's form for people: "Any" instead of dashes, a channel menu
    instead of a number box, date pickers. Field names and validation stay the
    FilterSet's own, so the dashboard and the API keep reading the same URLs.
    """
    for name in ("store", "owner", "staff", "tag"):
        form.fields[name].empty_label = _("Any")  # type: ignore[attr-defined]
    for name in ("status", "gender"):
        field = form.fields[name]
        # django-filter's choice iterator still points at the class-level field after the
        # form copied it, so the empty label is rebuilt here rather than relabelled.
        options = [(value, label) for value, label in field.choices if value != ""]  # type: ignore[attr-defined]
        field.empty_label = None  # type: ignore[attr-defined]
        field.choices = [("", _("Any")), *options]  # type: ignore[attr-defined]
    # Labels sit above the inputs: a trailing colon only adds noise (and reads oddly in
    # Chinese, which has its own full-width colon).
    form.label_suffix = ""
    form.fields["channel"].widget = forms.Select(choices=[("", _("Any")), *channel_choices])
    for name in ("acquired_after", "acquired_before"):
        # A plain date means midnight in the configured TIME_ZONE (IsoDateTimeField makes
        # a naive value aware in the current time zone).
        form.fields[name].widget = forms.DateInput(attrs={"type": "date"})
