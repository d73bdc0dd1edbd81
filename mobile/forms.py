"""Forms of the phone pages' core: sign-in and snooze."""

from __future__ import annotations

from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from scrm.dashboard import DashboardAuthenticationForm


class MobileAuthenticationForm(DashboardAuthenticationForm):
    """The dashboard's sign-in form (it refuses accounts without a staff-facing role),
    with phone-friendly inputs: no auto-capitalised or auto-corrected username."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["username"].widget.attrs.update(
            {"autocapitalize": "none", "autocorrect": "off", "spellcheck": "false"}
        )


class SnoozeForm(forms.Form):
    """Snooze a to-do: for an hour, or until tomorrow 09:00 in the corp's time zone."""

    HOUR = "1h"
    TOMORROW = "tomorrow"
    until = forms.ChoiceField(choices=[(HOUR, _("1 hour")), (TOMORROW, _("Tomorrow 09:00"))])
