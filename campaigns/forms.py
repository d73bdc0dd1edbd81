"""Dashboard forms over the campaigns services. Filtering uses ``campaigns.filters`` (the
same FilterSets as the API). The forms only parse: the services validate the rules and
their ``ValidationError`` field messages are put back on the form's fields."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from campaigns.models import (
    Campaign,
    CampaignGoal,
    CampaignStatus,
    Content,
    CouponBatch,
    InFlightPolicy,
    QuietAction,
    StepAction,
    TriggerKind,
)
from customers.models import Tag


class _Form(forms.Form):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Labels sit above the inputs, so no trailing colon.
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)


class JSONTextField(forms.CharField):
    """A JSON object or list typed in a textarea (trigger settings, audience, attachments)."""

    def __init__(self, *, expect: type = dict, **kwargs: Any) -> None:
        self.expect = expect
        kwargs.setdefault("required", False)
        kwargs.setdefault("widget", forms.Textarea(attrs={"rows": 3, "spellcheck": "false"}))
        super().__init__(**kwargs)

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, dict | list):
            return json.dumps(value, ensure_ascii=False)
        return value

    def to_python(self, value: Any) -> Any:
        text = (super().to_python(value) or "").strip()
        if not text:
            return self.expect()
        try:
            parsed = json.loads(text)
        except ValueError:
            raise ValidationError(_("Enter valid JSON.")) from None
        if not isinstance(parsed, self.expect):
            raise ValidationError(
                _("Enter a JSON object.") if self.expect is dict else _("Enter a JSON list.")
            )
        return parsed


#: "attachments[2].msgtype" -> "attachments"; "steps[1].content" -> ("steps", 1, "content").
_INDEXED = re.compile(r"^(?P<field>\w+)\[(?P<index>\d+)\](?:\.(?P<sub>\w+))?$")


def apply_service_errors(
    exc: ValidationError, form: forms.Form, formset: forms.BaseFormSet | None = None
) -> None:
    """Put a service's field messages on the form (and the steps formset): an unknown
    field, or a message about the whole, goes to the form's non-field errors."""
    if not hasattr(exc, "error_dict"):
        form.add_error(None, exc.messages)
        return
    for key, messages in exc.message_dict.items():
        match = _INDEXED.match(key)
        if match and formset is not None and match["field"] == "steps":
            index = int(match["index"])
            sub = match["sub"]
            if index < len(formset.forms):
                step_form = formset.forms[index]
                if sub and sub in step_form.fields:
                    step_form.add_error(sub, messages)
                else:
                    step_form.add_error(None, messages)
                continue
        name = match["field"] if match else key
        if name == "steps" and formset is not None:
            formset._non_form_errors = formset.error_class(  # type: ignore[attr-defined]
                [*formset.non_form_errors(), *messages]
            )
            continue
        if name in form.fields:
            form.add_error(name, [f"{key}: {m}" if match else m for m in messages])
        else:
            form.add_error(None, [f"{key}: {m}" for m in messages])


# --- Content ---------------------------------------------------------------------------


class ContentForm(_Form):
    name = forms.CharField(label=_("Name"), max_length=128)
    text = forms.CharField(
        label=_("Text"),
        required=False,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 6}),
        help_text=_("Variables: {name} {staff} {store} {coupon}."),
    )
    attachments = JSONTextField(
        expect=list,
        label=_("Attachments (WeCom JSON)"),
        help_text=_(
            'Up to 9, e.g. [{"msgtype": "link", "link": {"title": "…", "url": "https://…"}}].'
        ),
    )
    coupon_batch = forms.ModelChoiceField(
        label=_("Coupon batch"),
        queryset=CouponBatch.objects.filter(is_active=True),
        required=False,
        empty_label=_("None"),
        help_text=_("Where {coupon} codes come from."),
    )

    @staticmethod
    def initial_for(content: Content) -> dict[str, Any]:
        return {
            "name": content.name,
            "text": content.text,
            "attachments": content.attachments,
            "coupon_batch": content.coupon_batch_id,
        }


class ContentPreviewForm(_Form):
    """The live preview's input: the text being typed (never saved)."""

    text = forms.CharField(required=False, strip=False, max_length=20_000)
    attachments = JSONTextField(expect=list)


# --- Campaigns -------------------------------------------------------------------------


class CampaignForm(_Form):
    name = forms.CharField(label=_("Name"), max_length=128)
    description = forms.CharField(
        label=_("Description"), required=False, widget=forms.Textarea(attrs={"rows": 2})
    )
    goal = forms.ChoiceField(label=_("Goal"), choices=CampaignGoal.choices)
    goal_days = forms.IntegerField(
        label=_("Conversion window (days)"), min_value=1, max_value=365, initial=30
    )
    holdout_percent = forms.IntegerField(
        label=_("Holdout (%)"),
        min_value=0,
        max_value=50,
        initial=10,
        help_text=_("This share of the audience receives nothing: the control group."),
    )
    status = forms.ChoiceField(label=_("Status"), choices=CampaignStatus.choices)

    @staticmethod
    def initial_for(campaign: Campaign) -> dict[str, Any]:
        return {
            f: getattr(campaign, f)
            for f in ("name", "description", "goal", "goal_days", "holdout_percent", "status")
        }


# --- SOPs ------------------------------------------------------------------------------


class SopForm(_Form):
    name = forms.CharField(label=_("Name"), max_length=128)
    description = forms.CharField(
        label=_("Description"), required=False, widget=forms.Textarea(attrs={"rows": 2})
    )
    campaign = forms.ModelChoiceField(
        label=_("Campaign"), queryset=Campaign.objects.all(), required=False, empty_label=_("None")
    )
    trigger_kind = forms.ChoiceField(label=_("Trigger"), choices=TriggerKind.choices)
    trigger_config = JSONTextField(
        label=_("Trigger settings (JSON)"),
        help_text=_(
            'Became a contact: {"channel_ids": [1, 2]} (empty: any channel). Entered a '
            'stage: {"stage": 4}. Tag added: {"tag_id": 7}. A date: {"field": "birthday", '
            '"days_before": 3}. Due for repurchase, manual: {}.'
        ),
    )
    audience = JSONTextField(
        label=_("Audience (JSON)"),
        help_text=_(
            "Any of: tags_any, tags_none, stages, channel_ids, store_ids, staff_ids (lists of "
            "ids), acquired_from, acquired_to (dates), active_within_days. Empty: every "
            "active customer."
        ),
    )
    quiet_start = forms.TimeField(
        label=_("Quiet hours from"),
        required=False,
        widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
    )
    quiet_end = forms.TimeField(
        label=_("Quiet hours until"),
        required=False,
        widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
    )
    quiet_action = forms.ChoiceField(label=_("In quiet hours"), choices=QuietAction.choices)
    cap_count = forms.IntegerField(label=_("Frequency cap (messages)"), min_value=1, required=False)
    cap_days = forms.IntegerField(label=_("Cap window (days)"), min_value=1, required=False)
    exit_on_purchase = forms.BooleanField(label=_("Exit when the customer buys"), required=False)
    exit_on_lost = forms.BooleanField(
        label=_("Exit when the customer is lost"), required=False, initial=True
    )
    exit_stage = forms.TypedChoiceField(
        label=_("Exit on reaching stage"),
        required=False,
        coerce=int,
        empty_value=None,
        choices=[
            ("", _("None")),
            (2, _("Activation")),
            (3, _("Retention")),
            (4, _("Revenue")),
            (5, _("Referral")),
        ],
    )
    in_flight = forms.ChoiceField(
        label=_("Customers already in flight"),
        choices=InFlightPolicy.choices,
        initial=InFlightPolicy.KEEP,
        widget=forms.RadioSelect,
        required=False,
    )

    def __init__(self, *args: Any, live: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Editing an active or paused SOP publishes a version: the in-flight choice is
        #: then required and shown; a draft has nobody in flight.
        self.live = live
        if live:
            self.fields["in_flight"].required = True
        else:
            del self.fields["in_flight"]

    def service_data(self) -> dict[str, Any]:
        data = dict(self.cleaned_data)
        data["campaign"] = data["campaign"].pk if data.get("campaign") else None
        return data


class StepForm(_Form):
    offset_days = forms.IntegerField(label=_("Day"), min_value=0, max_value=3650, initial=0)
    at_time = forms.TimeField(
        label=_("At"),
        required=False,
        widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
        help_text=_("Empty: minutes after the trigger."),
    )
    offset_minutes = forms.IntegerField(
        label=_("Minutes after"), min_value=0, max_value=60 * 24 * 365, initial=0, required=False
    )
    action = forms.ChoiceField(label=_("Action"), choices=StepAction.choices)
    content = forms.ModelChoiceField(
        label=_("Content"),
        queryset=Content.objects.filter(is_archived=False),
        required=False,
        empty_label=_("None"),
    )
    tag = forms.ModelChoiceField(
        label=_("Tag"), queryset=Tag.objects.all(), required=False, empty_label=_("None")
    )
    instruction = forms.CharField(label=_("To-do instruction"), max_length=255, required=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # An archived content still used by this SOP stays selectable on its own steps.
        initial_content = self.initial.get("content")
        if initial_content:
            self.fields["content"].queryset = Content.objects.filter(  # type: ignore[attr-defined]
                is_archived=False
            ) | Content.objects.filter(pk=initial_content)

    def service_data(self) -> dict[str, Any]:
        data = dict(self.cleaned_data)
        data.pop("DELETE", None)
        data["content"] = data["content"].pk if data.get("content") else None
        data["tag"] = data["tag"].pk if data.get("tag") else None
        data["offset_minutes"] = data.get("offset_minutes") or 0
        return data


StepFormSet = forms.formset_factory(StepForm, extra=0, can_delete=True, min_num=1, max_num=50)


def steps_service_data(formset: forms.BaseFormSet) -> list[dict[str, Any]]:
    """The kept steps in order (deleted and untouched blank extra forms dropped)."""
    steps = []
    for form in formset.forms:
        if not form.has_changed() and not form.initial:
            continue
        if formset.can_delete and form.cleaned_data.get("DELETE"):
            continue
        steps.append(form.service_data())
    return steps


def sop_initial(data: Mapping[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The editor's initial values from ``selectors.touchpoints.sop_as_data``."""
    initial = {k: v for k, v in data.items() if k != "steps"}
    initial["in_flight"] = InFlightPolicy.KEEP
    return initial, list(data.get("steps", []))


class PreviewForm(_Form):
    window_days = forms.IntegerField(
        label=_("Days"), min_value=1, max_value=90, initial=7, required=False
    )
