"""Dashboard forms over the campaigns services. Filtering uses ``campaigns.filters`` (the
same FilterSets as the API). The forms only parse: the services validate the rules and
their ``ValidationError`` field messages are put back on the form's fields."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from decimal import Decimal
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
    DiscountKind,
    InFlightPolicy,
    QuietAction,
    StepAction,
    TriggerKind,
)
from campaigns.services.levers import COUPON_BATCH_FIELDS
from channels.models import Channel
from customers.models import Staff, Store, Tag
from funnel.models import Stage


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
        name = SERVICE_FIELD_ALIASES.get(key) or (match["field"] if match else key)
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


# --- Coupon batches --------------------------------------------------------------------


class CouponBatchForm(_Form):
    name = forms.CharField(label=_("Name"), max_length=128)
    campaign = forms.ModelChoiceField(
        label=_("Campaign"), queryset=Campaign.objects.all(), required=False, empty_label=_("None")
    )
    discount_kind = forms.ChoiceField(label=_("Discount"), choices=DiscountKind.choices)
    value = forms.DecimalField(label=_("Value"), max_digits=10, decimal_places=2, min_value=0)
    min_spend = forms.DecimalField(
        label=_("Minimum spend"),
        max_digits=10,
        decimal_places=2,
        min_value=0,
        initial=0,
        required=False,
    )
    valid_days = forms.IntegerField(label=_("Valid for (days)"), min_value=1, initial=30)
    total_limit = forms.IntegerField(label=_("Issue at most"), min_value=1, required=False)
    is_active = forms.BooleanField(label=_("Active"), required=False, initial=True)

    FIELDS = COUPON_BATCH_FIELDS

    @classmethod
    def initial_for(cls, batch: CouponBatch) -> dict[str, Any]:
        return {f: getattr(batch, f) for f in cls.FIELDS}

    def clean_min_spend(self) -> Decimal:
        # Empty means no minimum.
        return self.cleaned_data.get("min_spend") or Decimal(0)


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
    # The trigger's settings, one control each (the one matching the trigger is used).
    trigger_channels = forms.ModelMultipleChoiceField(
        label=_("Through these channels"),
        queryset=Channel.objects.all(),
        required=False,
        help_text=_("Became a contact: none selected means any channel."),
    )
    trigger_stage = forms.TypedChoiceField(
        label=_("Entered the stage"),
        required=False,
        coerce=int,
        empty_value=None,
        choices=[("", "—"), *[(s.value, s.label) for s in Stage if s != Stage.ACQUISITION]],
    )
    trigger_tag = forms.ModelChoiceField(
        label=_("Tag added"), queryset=Tag.objects.all(), required=False, empty_label="—"
    )
    trigger_days_before = forms.IntegerField(
        label=_("Days before the birthday"), min_value=0, max_value=30, required=False
    )
    # The audience: every filter optional; none means every active customer.
    aud_tags_any = forms.ModelMultipleChoiceField(
        label=_("Has any of these tags"), queryset=Tag.objects.all(), required=False
    )
    aud_tags_none = forms.ModelMultipleChoiceField(
        label=_("Has none of these tags"), queryset=Tag.objects.all(), required=False
    )
    aud_stages = forms.TypedMultipleChoiceField(
        label=_("At stage"), coerce=int, choices=Stage.choices, required=False
    )
    aud_channels = forms.ModelMultipleChoiceField(
        label=_("Source channel"), queryset=Channel.objects.all(), required=False
    )
    aud_stores = forms.ModelMultipleChoiceField(
        label=_("Store"), queryset=Store.objects.all(), required=False
    )
    aud_staff = forms.ModelMultipleChoiceField(
        label=_("Staff member (owner or follower)"),
        queryset=Staff.objects.filter(is_active=True),
        required=False,
    )
    aud_acquired_from = forms.DateField(
        label=_("Acquired from"), required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    aud_acquired_to = forms.DateField(
        label=_("Acquired until"), required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    aud_active_within_days = forms.IntegerField(
        label=_("Active within (days)"), min_value=1, max_value=3650, required=False
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
        # The audience section opens by itself when a filter is set.
        values = self.data if self.is_bound else self.initial
        self.audience_used = any(
            values.get(name) for name in self.fields if name.startswith("aud_")
        )
        if live:
            self.fields["in_flight"].required = True
        else:
            del self.fields["in_flight"]

    def service_data(self) -> dict[str, Any]:
        data = {k: v for k, v in self.cleaned_data.items() if not k.startswith(_GROUPED)}
        data["campaign"] = data["campaign"].pk if data.get("campaign") else None
        data["trigger_config"] = self._trigger_config()
        data["audience"] = self._audience()
        return data

    def _trigger_config(self) -> dict[str, Any]:
        d = self.cleaned_data
        kind = d.get("trigger_kind")
        if kind == TriggerKind.CONTACT_ADDED:
            channels = [c.pk for c in d.get("trigger_channels") or []]
            return {"channel_ids": channels} if channels else {}
        if kind == TriggerKind.STAGE_ENTERED:
            return {"stage": d.get("trigger_stage")}
        if kind == TriggerKind.TAG_ADDED:
            tag = d.get("trigger_tag")
            return {"tag_id": tag.pk if tag else None}
        if kind == TriggerKind.DATE_FIELD:
            return {"field": "birthday", "days_before": d.get("trigger_days_before") or 0}
        return {}

    def _audience(self) -> dict[str, Any]:
        d = self.cleaned_data
        out: dict[str, Any] = {}
        for key, name in _AUDIENCE_IDS.items():
            ids = [obj.pk for obj in d.get(name) or []]
            if ids:
                out[key] = ids
        if d.get("aud_stages"):
            out["stages"] = list(d["aud_stages"])
        for key in ("acquired_from", "acquired_to"):
            if d.get(f"aud_{key}"):
                out[key] = d[f"aud_{key}"].isoformat()
        if d.get("aud_active_within_days"):
            out["active_within_days"] = d["aud_active_within_days"]
        return out

    @staticmethod
    def initial_from(data: Mapping[str, Any]) -> dict[str, Any]:
        """Form fields from the services' definition (``sop_as_data``)."""
        grouped = ("steps", "trigger_config", "audience")
        initial = {k: v for k, v in data.items() if k not in grouped}
        config = data.get("trigger_config") or {}
        initial.update(
            trigger_channels=config.get("channel_ids", []),
            trigger_stage=config.get("stage"),
            trigger_tag=config.get("tag_id"),
            trigger_days_before=config.get("days_before"),
        )
        audience = data.get("audience") or {}
        for key, name in _AUDIENCE_IDS.items():
            initial[name] = audience.get(key, [])
        initial["aud_stages"] = audience.get("stages", [])
        initial["aud_acquired_from"] = audience.get("acquired_from")
        initial["aud_acquired_to"] = audience.get("acquired_to")
        initial["aud_active_within_days"] = audience.get("active_within_days")
        return initial


#: Form fields that the services take grouped (trigger_config, audience), by prefix.
_GROUPED = ("trigger_channels", "trigger_stage", "trigger_tag", "trigger_days_before", "aud_")
#: Audience keys holding ids, and their form fields.
_AUDIENCE_IDS = {
    "tags_any": "aud_tags_any",
    "tags_none": "aud_tags_none",
    "channel_ids": "aud_channels",
    "store_ids": "aud_stores",
    "staff_ids": "aud_staff",
}
#: The services' error keys for grouped settings, and the form field that shows them.
SERVICE_FIELD_ALIASES = {
    "trigger_config.channel_ids": "trigger_channels",
    "trigger_config.stage": "trigger_stage",
    "trigger_config.tag_id": "trigger_tag",
    "trigger_config.days_before": "trigger_days_before",
    "trigger_config.field": "trigger_days_before",
    **{f"audience.{key}": name for key, name in _AUDIENCE_IDS.items()},
    "audience.stages": "aud_stages",
    "audience.acquired_from": "aud_acquired_from",
    "audience.acquired_to": "aud_acquired_to",
    "audience.active_within_days": "aud_active_within_days",
}


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
    initial = SopForm.initial_from(data)
    initial["in_flight"] = InFlightPolicy.KEEP
    return initial, list(data.get("steps", []))


class PreviewForm(_Form):
    window_days = forms.IntegerField(
        label=_("Days"), min_value=1, max_value=90, initial=7, required=False
    )
