"""SOPs, campaigns and the touchpoints they schedule.

The engine in one paragraph: an SOP (``Sop``) has versions (``SopVersion``) that hold its
behaviour: trigger, audience, steps, quiet hours, frequency cap and exit conditions.
Enrolling a customer writes an ``Enrollment`` and one ``Touchpoint`` per step with its
``due_at``; the touchpoints live in the table (never in the broker), and a dispatcher
claims the due ones in batches (``SELECT ... FOR UPDATE SKIP LOCKED`` with a lease), groups
them by sender and rendered message into WeCom message tasks (``MessageTask``: one
``add_msg_template`` call serving many customers), and records each outcome. The unique
(enrollment, step) constraint is what proves a touchpoint is never scheduled twice;
``MessageTask`` is recorded before the WeCom call, so a call whose answer was lost is
reconciled against WeCom's own list rather than repeated.

Campaigns group SOPs toward a goal and hold out a stable random share of the audience
(``CampaignMember.is_holdout``). The levers (coupons, member points) are here too.
"""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from customers.models import Timestamped

# --- content ---------------------------------------------------------------------------


class ContentKind(models.TextChoices):
    TEXT = "text", _("Text")
    IMAGE = "image", _("Image")
    LINK = "link", _("Link")
    MINIPROGRAM = "miniprogram", _("Mini-program card")


class Content(Timestamped):
    """A reusable message: text with variables (``{name}``, ``{staff}``, ``{store}``,
    ``{coupon}``) and up to nine attachments in WeCom's ``attachments`` format.

    ``kind`` is derived from the attachments by the service (the first one's type, or
    text). ``coupon_batch`` is the batch a ``{coupon}`` variable issues codes from.
    """

    name = models.CharField(_("name"), max_length=128)
    kind = models.CharField(
        _("kind"), max_length=16, choices=ContentKind.choices, default=ContentKind.TEXT
    )
    text = models.TextField(_("text"), max_length=4000, blank=True)
    attachments = models.JSONField(_("attachments"), default=list, blank=True)
    coupon_batch = models.ForeignKey(
        "CouponBatch",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="contents",
        verbose_name=_("coupon batch"),
    )
    is_archived = models.BooleanField(_("archived"), default=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["name", "id"]
        verbose_name = _("content")
        verbose_name_plural = _("contents")

    def __str__(self) -> str:
        return self.name


# --- campaigns -------------------------------------------------------------------------


class CampaignGoal(models.TextChoices):
    """What counts as a conversion: a funnel milestone reached (or a paid order made)
    within ``goal_days`` of enrolment."""

    ACTIVATION = "activation", _("Activation")
    RETENTION = "retention", _("Retention")
    FIRST_PURCHASE = "first_purchase", _("First purchase")
    REPURCHASE = "repurchase", _("Repurchase")
    REFERRAL = "referral", _("Referral")
    PURCHASE = "purchase", _("Any paid order")


class CampaignStatus(models.TextChoices):
    DRAFT = "draft", _("Draft")
    ACTIVE = "active", _("Active")
    ENDED = "ended", _("Ended")


class Campaign(Timestamped):
    """A goal and the SOPs and mass sends working toward it.

    ``holdout_percent`` of the customers enrolled into any of its SOPs are held out (they
    receive nothing); which ones is decided once per customer from ``salt`` (stable, and
    random across customers), so the report can compare converted vs the holdout.
    """

    name = models.CharField(_("name"), max_length=128)
    description = models.TextField(_("description"), blank=True)
    goal = models.CharField(
        _("goal"), max_length=16, choices=CampaignGoal.choices, default=CampaignGoal.PURCHASE
    )
    goal_days = models.PositiveIntegerField(
        _("conversion window (days)"),
        default=30,
        validators=[MinValueValidator(1), MaxValueValidator(365)],
    )
    holdout_percent = models.PositiveSmallIntegerField(
        _("holdout (%)"), default=10, validators=[MaxValueValidator(50)]
    )
    salt = models.CharField(_("holdout salt"), max_length=32, editable=False)
    status = models.CharField(
        _("status"), max_length=8, choices=CampaignStatus.choices, default=CampaignStatus.DRAFT
    )
    starts_at = models.DateTimeField(_("starts at"), null=True, blank=True)
    ends_at = models.DateTimeField(_("ends at"), null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = _("campaign")
        verbose_name_plural = _("campaigns")
        constraints = [
            models.CheckConstraint(
                condition=Q(holdout_percent__lte=50), name="campaign_holdout_at_most_half"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class CampaignMember(models.Model):
    """A customer in a campaign: in the treatment group or held out (decided once)."""

    campaign = models.ForeignKey(
        Campaign, on_delete=models.CASCADE, related_name="members", db_index=False
    )
    customer = models.ForeignKey(
        "customers.Customer", on_delete=models.CASCADE, related_name="campaign_memberships"
    )
    is_holdout = models.BooleanField(_("held out"))
    enrolled_at = models.DateTimeField(_("enrolled at"), default=timezone.now)

    class Meta:
        verbose_name = _("campaign member")
        verbose_name_plural = _("campaign members")
        constraints = [
            models.UniqueConstraint(fields=["campaign", "customer"], name="campaignmember_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.campaign_id}:{self.customer_id}"


# --- SOPs ------------------------------------------------------------------------------


class SopStatus(models.TextChoices):
    DRAFT = "draft", _("Draft")
    ACTIVE = "active", _("Active")
    PAUSED = "paused", _("Paused")
    ARCHIVED = "archived", _("Archived")


class TriggerKind(models.TextChoices):
    CONTACT_ADDED = "contact_added", _("Became a contact")
    STAGE_ENTERED = "stage_entered", _("Entered a funnel stage")
    TAG_ADDED = "tag_added", _("Tag added")
    REPURCHASE_DUE = "repurchase_due", _("Due for repurchase")
    DATE_FIELD = "date_field", _("A date (birthday)")
    MANUAL = "manual", _("Manual enrolment of a segment")


class QuietAction(models.TextChoices):
    DEFER = "defer", _("Send when quiet hours end")
    SKIP = "skip", _("Skip the touchpoint")


class InFlightPolicy(models.TextChoices):
    """What a new version does to customers enrolled on the previous one."""

    KEEP = "keep", _("Finish on the version they started")
    MIGRATE = "migrate", _("Move their pending steps to the new version")
    STOP = "stop", _("Stop them (pending steps are skipped)")


class Sop(Timestamped):
    """A standard operating procedure. Its behaviour is its ``current_version``; editing
    an active SOP publishes a new version (see ``InFlightPolicy``)."""

    name = models.CharField(_("name"), max_length=128)
    description = models.TextField(_("description"), blank=True)
    campaign = models.ForeignKey(
        Campaign,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="sops",
        verbose_name=_("campaign"),
    )
    status = models.CharField(
        _("status"), max_length=8, choices=SopStatus.choices, default=SopStatus.DRAFT
    )
    current_version = models.ForeignKey(
        "SopVersion",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("current version"),
    )
    #: Event triggers only enrol for events at or after this time, so activating a
    #: "became a contact" SOP never welcomes the contacts of the past years.
    activated_at = models.DateTimeField(_("activated at"), null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["name", "id"]
        verbose_name = _("SOP")
        verbose_name_plural = _("SOPs")
        indexes = [models.Index(fields=["status"], name="sop_status_idx")]

    def __str__(self) -> str:
        return self.name


class SopVersion(models.Model):
    """One version of an SOP's behaviour; immutable once published.

    ``trigger_config`` by trigger kind: contact_added ``{"channel_ids": [...]}`` (empty:
    any channel); stage_entered ``{"stage": 2..5}``; tag_added ``{"tag_id": n}``;
    repurchase_due ``{}``; date_field ``{"field": "birthday", "days_before": n}``; manual
    ``{}``. ``audience`` (every key optional): ``tags_any``, ``tags_none`` (tag ids),
    ``stages``, ``channel_ids``, ``store_ids``, ``staff_ids``, ``acquired_from``,
    ``acquired_to`` (ISO dates), ``active_within_days``.
    """

    sop = models.ForeignKey(Sop, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField(_("version"))
    trigger_kind = models.CharField(_("trigger"), max_length=16, choices=TriggerKind.choices)
    trigger_config = models.JSONField(_("trigger settings"), default=dict, blank=True)
    audience = models.JSONField(_("audience"), default=dict, blank=True)
    quiet_start = models.TimeField(_("quiet hours from"), null=True, blank=True)
    quiet_end = models.TimeField(_("quiet hours until"), null=True, blank=True)
    quiet_action = models.CharField(
        _("in quiet hours"), max_length=8, choices=QuietAction.choices, default=QuietAction.DEFER
    )
    #: At most ``cap_count`` WeCom messages to one customer in any ``cap_days`` days (all
    #: SOPs together); null: no cap beyond WeCom's quota.
    cap_count = models.PositiveSmallIntegerField(_("frequency cap"), null=True, blank=True)
    cap_days = models.PositiveSmallIntegerField(_("cap window (days)"), null=True, blank=True)
    exit_on_purchase = models.BooleanField(_("exit when the customer buys"), default=False)
    exit_on_lost = models.BooleanField(_("exit when the customer is lost"), default=True)
    exit_stage = models.PositiveSmallIntegerField(
        _("exit on reaching stage"), null=True, blank=True
    )
    in_flight = models.CharField(
        _("customers already in flight"),
        max_length=8,
        choices=InFlightPolicy.choices,
        default=InFlightPolicy.KEEP,
    )
    published_at = models.DateTimeField(_("published at"), null=True, blank=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["sop", "-number"]
        verbose_name = _("SOP version")
        verbose_name_plural = _("SOP versions")
        constraints = [
            models.UniqueConstraint(fields=["sop", "number"], name="sopversion_unique_number"),
            models.CheckConstraint(
                condition=(Q(cap_count__isnull=True) & Q(cap_days__isnull=True))
                | (Q(cap_count__gte=1) & Q(cap_days__gte=1)),
                name="sopversion_cap_complete",
            ),
            models.CheckConstraint(
                condition=(Q(quiet_start__isnull=True) & Q(quiet_end__isnull=True))
                | (Q(quiet_start__isnull=False) & Q(quiet_end__isnull=False)),
                name="sopversion_quiet_complete",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.sop_id} v{self.number}"


class StepAction(models.TextChoices):
    WECOM_MESSAGE = "wecom_message", _("WeCom message task for the owning staff member")
    TODO = "todo", _("Staff to-do")
    ADD_TAG = "add_tag", _("Add a tag")


class SopStep(models.Model):
    """A step of an SOP version: when (``offset_days`` after the trigger at ``at_time``
    in the corp's time zone, or ``offset_days`` days plus ``offset_minutes`` after the
    trigger when ``at_time`` is empty) and what."""

    version = models.ForeignKey(SopVersion, on_delete=models.CASCADE, related_name="steps")
    position = models.PositiveSmallIntegerField(_("position"))
    offset_days = models.PositiveIntegerField(
        _("day"), default=0, validators=[MaxValueValidator(3650)]
    )
    at_time = models.TimeField(_("time of day"), null=True, blank=True)
    offset_minutes = models.PositiveIntegerField(
        _("minutes after"), default=0, validators=[MaxValueValidator(60 * 24 * 365)]
    )
    action = models.CharField(_("action"), max_length=16, choices=StepAction.choices)
    content = models.ForeignKey(
        Content, on_delete=models.PROTECT, null=True, blank=True, related_name="steps"
    )
    tag = models.ForeignKey(
        "customers.Tag", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    instruction = models.CharField(_("to-do instruction"), max_length=255, blank=True)

    class Meta:
        ordering = ["version", "position"]
        verbose_name = _("SOP step")
        verbose_name_plural = _("SOP steps")
        constraints = [
            models.UniqueConstraint(fields=["version", "position"], name="sopstep_unique_position"),
            models.CheckConstraint(
                condition=~Q(action="wecom_message") | Q(content__isnull=False),
                name="sopstep_message_has_content",
            ),
            models.CheckConstraint(
                condition=~Q(action="add_tag") | Q(tag__isnull=False),
                name="sopstep_add_tag_has_tag",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.version} #{self.position}"


class EnrollmentStatus(models.TextChoices):
    ACTIVE = "active", _("In flight")
    COMPLETED = "completed", _("Completed")
    EXITED = "exited", _("Exited")
    HOLDOUT = "holdout", _("Held out")


class Enrollment(models.Model):
    """A customer's run through an SOP, for one trigger occurrence.

    ``trigger_key`` names the occurrence (``acquired``, ``stage:4``, ``birthday:2026``,
    ``due:2026-11-01``, ``manual:<batch>``): enrolling the same occurrence twice is a
    no-op by the unique constraint, which is what makes triggers safe to re-scan.
    """

    sop = models.ForeignKey(Sop, on_delete=models.CASCADE, related_name="enrollments")
    version = models.ForeignKey(SopVersion, on_delete=models.PROTECT, related_name="enrollments")
    customer = models.ForeignKey(
        "customers.Customer", on_delete=models.CASCADE, related_name="enrollments"
    )
    campaign = models.ForeignKey(
        Campaign, on_delete=models.SET_NULL, null=True, blank=True, related_name="enrollments"
    )
    trigger_key = models.CharField(_("trigger occurrence"), max_length=64)
    trigger_at = models.DateTimeField(_("triggered at"))
    enrolled_at = models.DateTimeField(_("enrolled at"), default=timezone.now)
    status = models.CharField(
        _("status"),
        max_length=10,
        choices=EnrollmentStatus.choices,
        default=EnrollmentStatus.ACTIVE,
    )
    exit_reason = models.CharField(_("exit reason"), max_length=32, blank=True)
    exited_at = models.DateTimeField(_("exited at"), null=True, blank=True)

    class Meta:
        ordering = ["-enrolled_at", "-id"]
        verbose_name = _("enrolment")
        verbose_name_plural = _("enrolments")
        constraints = [
            models.UniqueConstraint(
                fields=["sop", "customer", "trigger_key"], name="enrollment_once_per_trigger"
            ),
        ]
        indexes = [
            models.Index(fields=["customer", "status"], name="enrollment_customer_idx"),
            models.Index(fields=["sop", "status"], name="enrollment_sop_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.sop_id}:{self.customer_id}:{self.trigger_key}"


class TouchpointKind(models.TextChoices):
    WECOM_MESSAGE = "wecom_message", _("WeCom message")
    TODO = "todo", _("Staff to-do")
    ADD_TAG = "add_tag", _("Add a tag")


class TouchpointStatus(models.TextChoices):
    PENDING = "pending", _("Scheduled")
    CLAIMED = "claimed", _("Being dispatched")
    CREATED = "created", _("Created in WeCom, awaiting the staff member")
    SENT = "sent", _("Sent")
    TODO = "todo", _("To-do for the staff member")
    DONE = "done", _("Done")
    SKIPPED = "skipped", _("Skipped")
    FAILED = "failed", _("Failed")


class SkipReason(models.TextChoices):
    QUOTA = "quota", _("The customer's message quota is used up")
    WECOM_LIMIT = "wecom_limit", _("WeCom refused: already received a mass message today")
    QUIET_HOURS = "quiet_hours", _("Quiet hours")
    FREQUENCY_CAP = "frequency_cap", _("Frequency cap")
    EXITED = "exited", _("The customer exited the SOP")
    NOT_CONTACT = "not_contact", _("No longer a contact of any staff member")
    NO_SENDER = "no_sender", _("No staff member to send or do it")
    SUPERSEDED = "superseded", _("Replaced by a newer SOP version")
    PAUSED = "paused", _("The SOP was archived")
    EXPIRED = "expired", _("Not confirmed by the staff member in time")


#: Statuses after which nothing more happens to a touchpoint.
FINAL_STATUSES = (
    TouchpointStatus.SENT,
    TouchpointStatus.DONE,
    TouchpointStatus.SKIPPED,
    TouchpointStatus.FAILED,
)


class MessageTaskStatus(models.TextChoices):
    CALLING = "calling", _("Calling WeCom")
    CREATED = "created", _("Awaiting the staff member's confirmation")
    SENT = "sent", _("Confirmed and sent")
    FAILED = "failed", _("Failed")
    EXPIRED = "expired", _("Never confirmed")


class MessageTask(models.Model):
    """One ``add_msg_template`` call: a sender, a rendered body, many customers.

    The row is committed with ``status=calling`` *before* the call, so a worker that dies
    between WeCom's answer and our record leaves evidence: the reconciler finds the msgid
    in ``get_groupmsg_list_v2`` by sender and body instead of sending again.
    """

    sender = models.ForeignKey(
        "customers.Staff", on_delete=models.PROTECT, related_name="message_tasks"
    )
    body = models.JSONField(_("message"), default=dict)
    body_hash = models.CharField(_("message hash"), max_length=64)
    status = models.CharField(
        _("status"),
        max_length=8,
        choices=MessageTaskStatus.choices,
        default=MessageTaskStatus.CALLING,
    )
    msgid = models.CharField(_("WeCom msgid"), max_length=128, null=True, blank=True, unique=True)
    recipients = models.PositiveIntegerField(_("recipients"), default=0)
    claimed_by = models.CharField(_("claimed by"), max_length=64, blank=True)
    lease_until = models.DateTimeField(_("lease until"), null=True, blank=True)
    called_at = models.DateTimeField(_("called at"), default=timezone.now)
    created_at = models.DateTimeField(_("created in WeCom at"), null=True, blank=True)
    confirmed_at = models.DateTimeField(_("confirmed at"), null=True, blank=True)
    checked_at = models.DateTimeField(_("results checked at"), null=True, blank=True)
    error = models.CharField(_("error"), max_length=255, blank=True)

    class Meta:
        ordering = ["-called_at", "-id"]
        verbose_name = _("WeCom message task")
        verbose_name_plural = _("WeCom message tasks")
        indexes = [
            models.Index(
                fields=["status", "checked_at"],
                name="msgtask_open_idx",
                condition=Q(status__in=["calling", "created"]),
            ),
        ]

    def __str__(self) -> str:
        return self.msgid or f"task {self.pk}"


class Touchpoint(models.Model):
    """One scheduled step for one customer: due at ``due_at``, then claimed, dispatched
    and recorded. The unique (enrollment, step) constraint proves it exists once."""

    enrollment = models.ForeignKey(
        Enrollment, on_delete=models.CASCADE, related_name="touchpoints", db_index=False
    )
    step = models.ForeignKey(SopStep, on_delete=models.PROTECT, related_name="touchpoints")
    sop = models.ForeignKey(Sop, on_delete=models.CASCADE, related_name="touchpoints")
    campaign = models.ForeignKey(
        Campaign, on_delete=models.SET_NULL, null=True, blank=True, related_name="touchpoints"
    )
    customer = models.ForeignKey(
        "customers.Customer",
        on_delete=models.CASCADE,
        related_name="touchpoints",
        db_index=False,  # (customer, due_at) below serves it
    )
    #: The sender of a WeCom message, or who the to-do is for (resolved at dispatch: the
    #: owner while still a contact, else the latest active follower).
    staff = models.ForeignKey(
        "customers.Staff",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="touchpoints",
        db_index=False,  # (staff, status) below serves it
    )
    kind = models.CharField(_("kind"), max_length=16, choices=TouchpointKind.choices)
    due_at = models.DateTimeField(_("due at"))
    status = models.CharField(
        _("status"),
        max_length=8,
        choices=TouchpointStatus.choices,
        default=TouchpointStatus.PENDING,
    )
    skip_reason = models.CharField(
        _("skipped because"), max_length=16, choices=SkipReason.choices, blank=True
    )
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    claimed_by = models.CharField(_("claimed by"), max_length=64, blank=True)
    lease_until = models.DateTimeField(_("lease until"), null=True, blank=True)
    task = models.ForeignKey(
        MessageTask,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="touchpoints",
    )
    rendered_text = models.TextField(_("message"), blank=True)
    rendered_attachments = models.JSONField(_("attachments"), default=list, blank=True)
    dispatched_at = models.DateTimeField(_("dispatched at"), null=True, blank=True)
    sent_at = models.DateTimeField(_("sent at"), null=True, blank=True)
    done_at = models.DateTimeField(_("done at"), null=True, blank=True)
    done_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    snoozed_until = models.DateTimeField(_("snoozed until"), null=True, blank=True)
    error = models.CharField(_("error"), max_length=255, blank=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        ordering = ["due_at", "id"]
        verbose_name = _("touchpoint")
        verbose_name_plural = _("touchpoints")
        constraints = [
            models.UniqueConstraint(fields=["enrollment", "step"], name="touchpoint_once_per_step"),
            models.CheckConstraint(
                condition=~Q(status="skipped") | ~Q(skip_reason=""),
                name="touchpoint_skip_has_reason",
            ),
        ]
        indexes = [
            # The dispatcher's claim: due pending rows in due order, and expired leases.
            models.Index(
                fields=["due_at"], name="touchpoint_due_idx", condition=Q(status="pending")
            ),
            models.Index(
                fields=["lease_until"],
                name="touchpoint_lease_idx",
                condition=Q(status="claimed"),
            ),
            models.Index(fields=["customer", "due_at"], name="touchpoint_customer_idx"),
            models.Index(fields=["staff", "status", "due_at"], name="touchpoint_staff_idx"),
            models.Index(fields=["sop", "status"], name="touchpoint_sop_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.customer_id} @ {self.due_at:%Y-%m-%d %H:%M}"


class QuotaUsage(models.Model):
    """Enterprise messages a customer received in one quota period (WECOM.md §1.9: by
    default as many per month as the month has days; admins may set 7 a week or 1 a day;
    ``settings.WECOM_MESSAGE_QUOTA``). A touchpoint that would exceed it is skipped."""

    customer = models.ForeignKey(
        "customers.Customer", on_delete=models.CASCADE, related_name="+", db_index=False
    )
    period_start = models.DateField(_("period start"))
    used = models.PositiveIntegerField(_("used"), default=0)

    class Meta:
        verbose_name = _("message quota usage")
        verbose_name_plural = _("message quota usage")
        constraints = [
            models.UniqueConstraint(fields=["customer", "period_start"], name="quota_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.customer_id} {self.period_start}: {self.used}"


# --- levers: coupons and points --------------------------------------------------------


class DiscountKind(models.TextChoices):
    AMOUNT = "amount", _("Amount off")
    PERCENT = "percent", _("Percent off")


class CouponBatch(Timestamped):
    """A kind of coupon; codes are issued per customer (``Coupon``)."""

    name = models.CharField(_("name"), max_length=128)
    campaign = models.ForeignKey(
        Campaign, on_delete=models.SET_NULL, null=True, blank=True, related_name="coupon_batches"
    )
    discount_kind = models.CharField(
        _("discount"), max_length=8, choices=DiscountKind.choices, default=DiscountKind.AMOUNT
    )
    value = models.DecimalField(
        _("value"), max_digits=10, decimal_places=2, validators=[MinValueValidator(0)]
    )
    min_spend = models.DecimalField(_("minimum spend"), max_digits=10, decimal_places=2, default=0)
    valid_days = models.PositiveIntegerField(_("valid for (days)"), default=30)
    total_limit = models.PositiveIntegerField(_("issue at most"), null=True, blank=True)
    is_active = models.BooleanField(_("active"), default=True)

    class Meta:
        ordering = ["name", "id"]
        verbose_name = _("coupon batch")
        verbose_name_plural = _("coupon batches")

    def __str__(self) -> str:
        return self.name


class Coupon(models.Model):
    """A coupon code issued to one customer; redeemed through one paid order."""

    batch = models.ForeignKey(CouponBatch, on_delete=models.PROTECT, related_name="coupons")
    customer = models.ForeignKey(
        "customers.Customer", on_delete=models.CASCADE, related_name="coupons"
    )
    code = models.CharField(_("code"), max_length=32, unique=True)
    touchpoint = models.OneToOneField(
        Touchpoint, on_delete=models.SET_NULL, null=True, blank=True, related_name="coupon"
    )
    issued_at = models.DateTimeField(_("issued at"), default=timezone.now)
    expires_at = models.DateTimeField(_("expires at"))
    redeemed_at = models.DateTimeField(_("redeemed at"), null=True, blank=True)
    order = models.OneToOneField(
        "customers.Order",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="coupon",
    )

    class Meta:
        ordering = ["-issued_at", "-id"]
        verbose_name = _("coupon")
        verbose_name_plural = _("coupons")
        constraints = [
            models.CheckConstraint(
                condition=Q(redeemed_at__isnull=True, order__isnull=True)
                | Q(redeemed_at__isnull=False, order__isnull=False),
                name="coupon_redeemed_with_order",
            ),
        ]

    def __str__(self) -> str:
        return self.code


class PointsReason(models.TextChoices):
    ORDER = "order", _("Earned by an order")
    REFUND = "refund", _("Order refunded")
    REFERRAL = "referral", _("Earned by a referral")
    SPEND = "spend", _("Spent")
    ADJUST = "adjust", _("Adjusted")


class PointsEntry(models.Model):
    """One line of a customer's member points ledger; the balance is the sum.

    ``idempotency_key`` (``order:<id>``, ``refund:<id>``, ``referral:<id>``, or the
    caller's) makes earning follow the facts exactly once however often they are replayed.
    """

    customer = models.ForeignKey(
        "customers.Customer", on_delete=models.CASCADE, related_name="points", db_index=False
    )
    delta = models.IntegerField(_("points"))
    reason = models.CharField(_("reason"), max_length=8, choices=PointsReason.choices)
    order = models.ForeignKey(
        "customers.Order", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    note = models.CharField(_("note"), max_length=255, blank=True)
    idempotency_key = models.CharField(_("idempotency key"), max_length=191, unique=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = _("points entry")
        verbose_name_plural = _("points entries")
        indexes = [models.Index(fields=["customer", "-created_at"], name="points_customer_idx")]

    def __str__(self) -> str:
        return f"{self.customer_id} {self.delta:+d}"
