"""Traffic channels: where customers come from, and what each channel costs.

Channel codes (WeCom contact ways) and the WeCom integration live in ``channels.wecom``.
"""

from __future__ import annotations

from decimal import Decimal

from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from customers.models import Timestamped


class ChannelKind(models.TextChoices):
    STORE = "store", _("Self-operated store")
    ONLINE_MALL = "online_mall", _("Online mall")
    ECOMMERCE = "ecommerce", _("E-commerce")
    PARTNER = "partner", _("Partner channel")
    ADS = "ads", _("Ads")
    SELF_MEDIA = "self_media", _("Self-media")
    OFFLINE_PUSH = "offline_push", _("Offline push")
    REFERRAL = "referral", _("Old customers' referral")
    PERSONAL_WECHAT = "personal_wechat", _("Personal WeChat")
    OTHER = "other", _("Other")


class Channel(Timestamped):
    """A traffic channel. ``cost`` is what the channel cost over its life, for CAC."""

    name = models.CharField(_("name"), max_length=128, unique=True)
    kind = models.CharField(_("kind"), max_length=16, choices=ChannelKind.choices)
    cost = models.DecimalField(
        _("cost"),
        max_digits=14,
        decimal_places=2,
        default=Decimal("0"),
        validators=[MinValueValidator(Decimal("0"))],
    )
    description = models.TextField(_("description"), blank=True)
    is_active = models.BooleanField(_("active"), default=True)

    class Meta:
        ordering = ["name", "id"]
        verbose_name = _("channel")
        verbose_name_plural = _("channels")
        constraints = [
            models.CheckConstraint(condition=Q(cost__gte=0), name="channel_cost_not_negative"),
        ]

    def __str__(self) -> str:
        return self.name


class ChannelCode(Timestamped):
    """A channel code: a WeCom "contact way" (联系我) whose ``state`` names where a
    customer came from. A customer who adds a staff member through it is attributed to
    ``channel``; a referral code also carries the referring customer (fission).
    """

    channel = models.ForeignKey(
        Channel, on_delete=models.PROTECT, related_name="codes", verbose_name=_("channel")
    )
    name = models.CharField(_("name"), max_length=128)
    # WeCom caps state at 30 characters (WECOM.md §1.7); unique so attribution is exact.
    state = models.CharField(_("state"), max_length=30, unique=True)
    staff = models.ManyToManyField(
        "customers.Staff", related_name="channel_codes", verbose_name=_("staff")
    )
    skip_verify = models.BooleanField(_("add without verification"), default=True)
    welcome_text = models.TextField(_("welcome message"), blank=True, max_length=4000)
    welcome_attachments = models.JSONField(_("welcome attachments"), default=list, blank=True)
    auto_tags = models.ManyToManyField(
        "customers.Tag", blank=True, related_name="+", verbose_name=_("tags added on join")
    )
    referrer = models.ForeignKey(
        "customers.Customer",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="referral_codes",
        verbose_name=_("referring customer"),
    )
    config_id = models.CharField(
        _("WeCom config_id"), max_length=64, null=True, blank=True, unique=True
    )
    qr_code = models.URLField(_("QR code URL"), max_length=500, blank=True)
    is_active = models.BooleanField(_("active"), default=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = _("channel code")
        verbose_name_plural = _("channel codes")

    def __str__(self) -> str:
        return f"{self.name} ({self.state})"


class SyncStatus(models.TextChoices):
    RUNNING = "running", _("Running")
    SUCCEEDED = "succeeded", _("Succeeded")
    FAILED = "failed", _("Failed")


class SyncRun(models.Model):
    """One full sync of WeCom contacts, with its checkpoint so a killed worker resumes
    where it stopped, and the figures operators read to trust the sync."""

    status = models.CharField(
        _("status"), max_length=16, choices=SyncStatus.choices, default=SyncStatus.RUNNING
    )
    started_at = models.DateTimeField(_("started at"), default=timezone.now)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)
    heartbeat_at = models.DateTimeField(_("last progress"), default=timezone.now)
    #: Who is executing the run now; a lease that stopped beating may be taken over.
    lease_token = models.CharField(_("lease"), max_length=64, blank=True)
    #: Where to resume: {"phase": ..., "batch": int, "cursor": str}.
    checkpoint = models.JSONField(_("checkpoint"), default=dict, blank=True)
    pages = models.PositiveIntegerField(_("pages"), default=0)
    http_calls = models.PositiveIntegerField(_("HTTP calls"), default=0)
    relationships = models.PositiveIntegerField(_("relationships read"), default=0)
    created = models.PositiveIntegerField(_("rows created"), default=0)
    updated = models.PositiveIntegerField(_("rows updated"), default=0)
    deleted = models.PositiveIntegerField(_("follows deleted"), default=0)
    errors = models.JSONField(_("errors"), default=list, blank=True)
    wecom_follows = models.PositiveIntegerField(_("WeCom follows"), null=True, blank=True)
    active_follows = models.PositiveIntegerField(_("our active follows"), null=True, blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        verbose_name = _("sync run")
        verbose_name_plural = _("sync runs")
        constraints = [
            # At most one running sync: two would fight over the same checkpoint.
            models.UniqueConstraint(
                fields=["status"],
                condition=Q(status="running"),
                name="syncrun_single_running",
            ),
        ]

    def __str__(self) -> str:
        return f"sync #{self.pk} {self.status}"

    @property
    def in_step(self) -> bool | None:
        """Whether our active follows equal WeCom's at the end of the run."""
        if self.wecom_follows is None or self.active_follows is None:
            return None
        return self.wecom_follows == self.active_follows


class SyncSeenFollow(models.Model):
    """Scratch: follows a sync run has seen in WeCom, so that the follows it did not see
    are marked deleted only after a complete pass, even across a resume."""

    pk = models.CompositePrimaryKey("run_id", "follow_id")
    # No index beyond the key, and no database constraint: this table takes a row per
    # unchanged relationship per run, and two deferred foreign-key checks per row were
    # most of an unchanged re-sync's commits. The rows are scratch, written only by the
    # sync for ids it has just read and deleted at the end of the run; deleting a run or
    # a follow through the ORM still cascades (Django's on_delete).
    run = models.ForeignKey(
        SyncRun, on_delete=models.CASCADE, related_name="+", db_index=False, db_constraint=False
    )
    follow = models.ForeignKey(
        "customers.Follow",
        on_delete=models.CASCADE,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )

    class Meta:
        verbose_name = _("seen follow")
        verbose_name_plural = _("seen follows")

    def __str__(self) -> str:
        return f"{self.run_id}:{self.follow_id}"


class SyncStagedContact(models.Model):
    """Scratch: the relationships a corp's first sync downloaded, held until the whole
    listing is in so that they can be applied grouped by customer (see
    ``channels.wecom.sync``, the ``apply`` phase). PostgreSQL only.

    The columns are the set-based path's stage (``contacts_pg.STAGE_FIELDS`` after its
    ``ord``), plus the run and the customer's ``bucket`` (the CRC-32 of its WeCom id,
    ``sync.bucket_of``): the apply phase reads the rows a range of buckets at a time, so
    every row of a customer comes in one chunk. The table is UNLOGGED (migration 0006):
    the rows are written once and read once, and a server crash that empties it is
    detected by the count the checkpoint keeps. No foreign key: the rows are checked when
    they are applied."""

    id = models.BigAutoField(primary_key=True)
    run_id = models.BigIntegerField()
    bucket = models.BigIntegerField()
    external_userid = models.TextField()
    name = models.TextField()
    avatar = models.TextField()
    gender = models.SmallIntegerField()
    unionid = models.TextField()
    staff_id = models.BigIntegerField()
    userid = models.TextField()
    added_at = models.DateTimeField()
    remark = models.TextField()
    description = models.TextField()
    remark_mobiles = models.JSONField()
    add_way = models.IntegerField()
    state = models.TextField()
    oper_userid = models.TextField()
    tag_ids = models.JSONField()
    source_channel_id = models.BigIntegerField(null=True)
    referred_by_id = models.BigIntegerField(null=True)
    sync_digest = models.TextField()

    class Meta:
        verbose_name = _("staged contact")
        verbose_name_plural = _("staged contacts")
        indexes = [models.Index(fields=["run_id", "bucket"], name="syncstaged_run_bucket")]

    def __str__(self) -> str:
        return f"{self.run_id}:{self.external_userid}"


class EventStatus(models.TextChoices):
    PENDING = "pending", _("Pending")
    PROCESSING = "processing", _("Processing")
    DONE = "done", _("Done")
    FAILED = "failed", _("Failed")
    IGNORED = "ignored", _("Ignored")


class WeComEvent(models.Model):
    """A callback event received from WeCom, recorded before it is processed.

    WeCom redelivers an event it got no answer for within 5 s, so ``dedupe_key`` is
    unique: a redelivered event is recorded once and processed once.
    """

    dedupe_key = models.CharField(_("dedupe key"), max_length=255, unique=True)
    event = models.CharField(_("event"), max_length=64)
    change_type = models.CharField(_("change type"), max_length=64, blank=True)
    payload = models.JSONField(_("payload"), default=dict)
    status = models.CharField(
        _("status"), max_length=16, choices=EventStatus.choices, default=EventStatus.PENDING
    )
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    error = models.TextField(_("error"), blank=True)
    received_at = models.DateTimeField(_("received at"), default=timezone.now)
    #: When a worker last took it: the sweeper tells a dead worker's event by this.
    claimed_at = models.DateTimeField(_("claimed at"), null=True, blank=True)
    processed_at = models.DateTimeField(_("processed at"), null=True, blank=True)

    class Meta:
        ordering = ["-received_at", "-id"]
        verbose_name = _("WeCom event")
        verbose_name_plural = _("WeCom events")
        indexes = [models.Index(fields=["status", "received_at"], name="wecomevent_status_idx")]

    def __str__(self) -> str:
        return f"{self.event}/{self.change_type} #{self.pk}"
