"""The core of the SCRM: who the customers are, who serves them, and what happened.

Every other app (channels, funnel, campaigns) builds on these tables; this module imports
none of them. ``Customer.source_channel`` points at ``channels.Channel`` by name only, so
the dependency stays one-way at the Python level.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from scrm.roles import Role


class Timestamped(models.Model):
    """When a row was created and last changed (``updated_at`` is bumped only by writes
    that change something: the services write nothing for an unchanged row)."""

    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        abstract = True


class Store(Timestamped):
    """A physical or online store; staff belong to one, customers are served by one."""

    code = models.CharField(_("code"), max_length=64, unique=True)
    name = models.CharField(_("name"), max_length=128)
    city = models.CharField(_("city"), max_length=64, blank=True)
    address = models.CharField(_("address"), max_length=255, blank=True)
    is_active = models.BooleanField(_("active"), default=True)

    class Meta:
        ordering = ["name", "id"]
        verbose_name = _("store")
        verbose_name_plural = _("stores")

    def __str__(self) -> str:
        return self.name


class Staff(Timestamped):
    """A staff member: a WeCom member (``wecom_userid``) and/or a user of this system.

    WeCom sync creates staff before anyone has a login, so ``user`` is optional; the role
    decides what the linked user may see (see ``scrm.roles``).
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="staff_profile",
        verbose_name=_("login"),
    )
    wecom_userid = models.CharField(
        _("WeCom userid"), max_length=64, null=True, blank=True, unique=True
    )
    name = models.CharField(_("name"), max_length=128)
    mobile = models.CharField(_("mobile"), max_length=32, blank=True)
    store = models.ForeignKey(
        Store,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="staff",
        verbose_name=_("store"),
    )
    role = models.CharField(_("role"), max_length=16, choices=Role.choices, default=Role.STAFF)
    is_active = models.BooleanField(_("active"), default=True)

    class Meta:
        ordering = ["name", "id"]
        verbose_name = _("staff member")
        verbose_name_plural = _("staff")
        constraints = [
            models.CheckConstraint(
                condition=~Q(role=Role.INTEGRATION), name="staff_role_not_integration"
            ),
            models.CheckConstraint(
                condition=Q(role=Role.OPERATOR) | ~Q(role=Role.MANAGER) | Q(store__isnull=False),
                name="staff_manager_has_store",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Gender(models.IntegerChoices):
    UNKNOWN = 0, _("Unknown")
    MALE = 1, _("Male")
    FEMALE = 2, _("Female")


class CustomerStatus(models.TextChoices):
    ACTIVE = "active", _("Active")
    LOST = "lost", _("Lost")


class Customer(Timestamped):
    """A customer: a WeCom external contact, an imported record, or both.

    ``external_userid`` (WeCom) and ``external_id`` (the integration's own key) are each
    unique when present; either is the upsert key for its source. ``acquired_at`` is the
    acquisition milestone of the funnel; ``referred_by`` records fission.
    """

    # Plain UNIQUE on a nullable column (NULLs never collide, in PostgreSQL and SQLite), not a
    # partial index, so that bulk upserts can use ON CONFLICT (external_userid) directly.
    # Services store NULL, never "", for an absent key.
    external_userid = models.CharField(
        _("WeCom external_userid"), max_length=64, null=True, blank=True, unique=True
    )
    external_id = models.CharField(
        _("integration id"), max_length=128, null=True, blank=True, unique=True
    )
    unionid = models.CharField(_("unionid"), max_length=64, blank=True)
    name = models.CharField(_("name"), max_length=128)
    avatar = models.URLField(_("avatar"), max_length=500, blank=True)
    gender = models.PositiveSmallIntegerField(
        _("gender"), choices=Gender.choices, default=Gender.UNKNOWN
    )
    phone = models.CharField(_("phone"), max_length=32, blank=True)
    birthday = models.DateField(_("birthday"), null=True, blank=True)
    owner = models.ForeignKey(
        Staff,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="owned_customers",
        verbose_name=_("owner"),
        db_index=False,  # (owner, acquired_at) below serves it
    )
    store = models.ForeignKey(
        Store,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="customers",
        verbose_name=_("store"),
        db_index=False,  # (store, acquired_at) below serves it
    )
    source_channel = models.ForeignKey(
        "channels.Channel",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="customers",
        verbose_name=_("source channel"),
        db_index=False,  # (source_channel, acquired_at) below serves it
    )
    acquired_at = models.DateTimeField(_("acquired at"), default=timezone.now, db_index=True)
    referred_by = models.ForeignKey(
        "self",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="referrals",
        verbose_name=_("referred by"),
        db_index=False,  # the partial index below serves it
    )
    status = models.CharField(
        _("status"), max_length=8, choices=CustomerStatus.choices, default=CustomerStatus.ACTIVE
    )
    lost_at = models.DateTimeField(_("lost at"), null=True, blank=True)
    tags: models.ManyToManyField[Tag, CustomerTag] = models.ManyToManyField(
        "Tag", through="CustomerTag", related_name="customers", verbose_name=_("tags")
    )

    class Meta:
        ordering = ["-acquired_at", "-id"]
        verbose_name = _("customer")
        verbose_name_plural = _("customers")
        constraints = [
            models.CheckConstraint(
                condition=~Q(external_userid="") & ~Q(external_id=""),
                name="customer_keys_null_not_empty",
            ),
            models.CheckConstraint(
                condition=Q(status=CustomerStatus.ACTIVE, lost_at__isnull=True)
                | Q(status=CustomerStatus.LOST, lost_at__isnull=False),
                name="customer_lost_at_matches_status",
            ),
            models.CheckConstraint(
                condition=~Q(referred_by=models.F("id")), name="customer_not_self_referred"
            ),
        ]
        # Partial: every query these serve names a store, an owner or a channel (an
        # equality, which PostgreSQL and SQLite both know excludes NULL), and a customer
        # without one would be an entry at a random place (NULL, acquired_at) that nothing
        # reads. A corp's first WeCom sync writes customers with neither store nor channel
        # (its staff have no store, it has no channel code yet): two random index writes
        # fewer per customer written. Most customers were referred by nobody, so the
        # referrals' index leaves out NULL as well (what reads it asks for one referrer's
        # referrals, or for the referred). It carries the referee's acquisition time
        # (PostgreSQL's INCLUDE; SQLite ignores it): a funnel refresh of everyone takes each
        # referrer's first referral from it by an index-only scan instead of reading the
        # 50,000 referees' rows at random (128-615 ms at a million customers, against 21).
        indexes = [
            models.Index(
                fields=["store", "-acquired_at"],
                name="customer_store_acq_idx",
                condition=Q(store__isnull=False),
            ),
            models.Index(
                fields=["owner", "-acquired_at"],
                name="customer_owner_acq_idx",
                condition=Q(owner__isnull=False),
            ),
            models.Index(
                fields=["source_channel", "acquired_at"],
                name="customer_channel_acq_idx",
                condition=Q(source_channel__isnull=False),
            ),
            models.Index(
                fields=["referred_by"],
                include=["acquired_at"],
                name="customer_referred_by_idx",
                condition=Q(referred_by__isnull=False),
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Follow(models.Model):
    """A staff member having a customer as a WeCom contact (one row per pair).

    ``state`` is the channel-code state the customer added through (channel attribution
    per touch). A relationship that ended keeps its row with ``deleted_at`` set, so the
    history of who served whom survives.
    """

    customer = models.ForeignKey(
        Customer,
        on_delete=models.CASCADE,
        related_name="follows",
        verbose_name=_("customer"),
        db_index=False,  # the unique (customer, staff) index serves it
    )
    staff = models.ForeignKey(
        Staff,
        on_delete=models.CASCADE,
        related_name="follows",
        verbose_name=_("staff member"),
        db_index=False,  # (staff, deleted_at) below serves it
    )
    remark = models.CharField(_("remark"), max_length=128, blank=True)
    description = models.CharField(_("description"), max_length=255, blank=True)
    remark_mobiles = models.JSONField(_("remark mobiles"), default=list, blank=True)
    added_at = models.DateTimeField(_("added at"), default=timezone.now)
    add_way = models.PositiveSmallIntegerField(_("add way"), default=0)
    state = models.CharField(_("channel state"), max_length=64, blank=True)
    oper_userid = models.CharField(_("operator userid"), max_length=64, blank=True)
    #: The platform's tags on this follow (our Tag ids). WeCom tags belong to a follow, so
    #: a customer carries a WeCom tag while any active follow does (see CustomerTag).
    tag_ids = models.JSONField(_("tags on this follow"), default=list, blank=True)
    #: Fingerprint of the platform record last applied; a sync skips an unchanged row.
    sync_digest = models.CharField(_("sync digest"), max_length=32, blank=True)
    deleted_at = models.DateTimeField(_("deleted at"), null=True, blank=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        ordering = ["added_at", "id"]
        verbose_name = _("follow")
        verbose_name_plural = _("follows")
        constraints = [
            models.UniqueConstraint(fields=["customer", "staff"], name="follow_unique_pair"),
        ]
        indexes = [
            models.Index(fields=["staff", "deleted_at"], name="follow_staff_active_idx"),
            models.Index(fields=["state"], name="follow_state_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.staff} → {self.customer}"

    @property
    def is_active(self) -> bool:
        return self.deleted_at is None


class TagSource(models.TextChoices):
    WECOM = "wecom", _("WeCom corp tag")
    LOCAL = "local", _("Local tag")


class TagGroup(Timestamped):
    """A group of tags: a mirror of a WeCom corp tag group, or a local-only group."""

    name = models.CharField(_("name"), max_length=64)
    wecom_group_id = models.CharField(
        _("WeCom group id"), max_length=64, null=True, blank=True, unique=True
    )
    source = models.CharField(
        _("source"), max_length=8, choices=TagSource.choices, default=TagSource.LOCAL
    )
    order = models.PositiveBigIntegerField(_("order"), default=0)

    class Meta:
        # WeCom sorts a larger ``order`` first.
        ordering = ["-order", "name", "id"]
        verbose_name = _("tag group")
        verbose_name_plural = _("tag groups")
        constraints = [
            models.UniqueConstraint(fields=["source", "name"], name="taggroup_unique_name"),
        ]

    def __str__(self) -> str:
        return self.name


class Tag(Timestamped):
    """A customer tag inside a group (WeCom corp tag or local)."""

    group = models.ForeignKey(
        TagGroup, on_delete=models.CASCADE, related_name="tags", verbose_name=_("group")
    )
    name = models.CharField(_("name"), max_length=64)
    wecom_tag_id = models.CharField(
        _("WeCom tag id"), max_length=64, null=True, blank=True, unique=True
    )
    order = models.PositiveBigIntegerField(_("order"), default=0)

    class Meta:
        ordering = ["-order", "name", "id"]
        verbose_name = _("tag")
        verbose_name_plural = _("tags")
        constraints = [
            models.UniqueConstraint(fields=["group", "name"], name="tag_unique_name_in_group"),
        ]

    def __str__(self) -> str:
        return self.name


class CustomerTag(models.Model):
    """A tag on a customer; ``staff`` is who put it there when known (WeCom tags per follow)."""

    # Each index costs every insert of a sync; the two composite ones serve both keys.
    customer = models.ForeignKey(
        Customer, on_delete=models.CASCADE, related_name="tag_links", db_index=False
    )
    tag = models.ForeignKey(
        Tag, on_delete=models.CASCADE, related_name="customer_links", db_index=False
    )
    # Who put the tag there: an attribution, not a fact the link depends on. No database
    # key: a sync writes a link per WeCom tag of each follow (a deferred check each at
    # COMMIT), and deleting a staff member would have scanned every link for it (the
    # column has no index). Django's delete still sets it to NULL.
    staff = models.ForeignKey(
        Staff,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    class Meta:
        verbose_name = _("customer tag")
        verbose_name_plural = _("customer tags")
        constraints = [
            models.UniqueConstraint(fields=["customer", "tag"], name="customertag_unique"),
        ]
        indexes = [models.Index(fields=["tag", "customer"], name="customertag_tag_idx")]

    def __str__(self) -> str:
        return f"{self.customer_id}#{self.tag_id}"


class OrderStatus(models.TextChoices):
    PAID = "paid", _("Paid")
    REFUNDED = "refunded", _("Refunded")


class ProductRole(models.TextChoices):
    """The role a product plays in the brand's line-up (operators' vocabulary)."""

    DRAINAGE = "drainage", _("Drainage (traffic) product")
    MARKETING = "marketing", _("Marketing product")
    PROFIT = "profit", _("Profit product")
    BRAND = "brand", _("Brand product")
    EXPANSION = "expansion", _("Expansion product")


class Order(Timestamped):
    """A purchase. Only paid orders count for revenue; a refunded order never does.

    ``amount`` is a Decimal in the order's currency (never a float).
    """

    external_id = models.CharField(_("integration id"), max_length=128, unique=True)
    customer = models.ForeignKey(
        Customer,
        on_delete=models.PROTECT,
        related_name="orders",
        verbose_name=_("customer"),
        db_index=False,  # (customer, status, paid_at) below serves it
    )
    amount = models.DecimalField(
        _("amount"),
        max_digits=12,
        decimal_places=2,
        validators=[MinValueValidator(Decimal("0"))],
    )
    currency = models.CharField(_("currency"), max_length=3, default="CNY")
    paid_at = models.DateTimeField(_("paid at"))
    status = models.CharField(
        _("status"), max_length=8, choices=OrderStatus.choices, default=OrderStatus.PAID
    )
    refunded_at = models.DateTimeField(_("refunded at"), null=True, blank=True)
    product_role = models.CharField(
        _("product role"), max_length=16, choices=ProductRole.choices, blank=True
    )
    product_name = models.CharField(_("product"), max_length=255, blank=True)
    store = models.ForeignKey(
        Store, on_delete=models.SET_NULL, null=True, blank=True, related_name="orders"
    )
    staff = models.ForeignKey(
        Staff, on_delete=models.SET_NULL, null=True, blank=True, related_name="orders"
    )

    class Meta:
        ordering = ["-paid_at", "-id"]
        verbose_name = _("order")
        verbose_name_plural = _("orders")
        constraints = [
            models.CheckConstraint(condition=Q(amount__gte=0), name="order_amount_not_negative"),
        ]
        indexes = [
            # ``id`` and ``amount`` ride along (PostgreSQL) so that a funnel rebuild reads
            # the paid orders from this index alone, in customer and time order: no heap,
            # no full sort (funnel.services._sql: _fresh_sql, _fresh_paid_sql).
            models.Index(
                fields=["customer", "status", "paid_at"],
                include=["id", "amount"],
                name="order_customer_paid_idx",
            ),
            models.Index(fields=["paid_at"], name="order_paid_at_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.external_id} {self.amount} {self.currency}"


class ActivityKind(models.TextChoices):
    """Known timeline kinds. The field accepts others (integrations may add their own)."""

    CONTACT_ADDED = "contact_added", _("Added as a contact")
    CONTACT_DELETED = "contact_deleted", _("Contact deleted")
    MESSAGE_RECEIVED = "message_received", _("Message received")
    MESSAGE_SENT = "message_sent", _("Message sent")
    MEMBER_JOINED = "member_joined", _("Joined the membership")
    COUPON_CLAIMED = "coupon_claimed", _("Claimed a coupon")
    COUPON_REDEEMED = "coupon_redeemed", _("Redeemed a coupon")
    FORM_SUBMITTED = "form_submitted", _("Submitted a form")
    PAGE_VIEWED = "page_viewed", _("Viewed a page")
    STORE_VISIT = "store_visit", _("Visited a store")
    ORDER_PAID = "order_paid", _("Paid an order")
    ORDER_REFUNDED = "order_refunded", _("Order refunded")
    NOTE_ADDED = "note_added", _("Note added")
    TAG_ADDED = "tag_added", _("Tag added")
    TAG_REMOVED = "tag_removed", _("Tag removed")
    TOUCHPOINT_SENT = "touchpoint_sent", _("Touchpoint sent")
    TOUCHPOINT_DONE = "touchpoint_done", _("To-do done by the staff member")
    WELCOME_SENT = "welcome_sent", _("Welcome message sent")
    REFERRED = "referred", _("Referred a customer")


class ActivitySource(models.TextChoices):
    API = "api", _("API")
    WECOM = "wecom", _("WeCom")
    DASHBOARD = "dashboard", _("Dashboard")
    MOBILE = "mobile", _("Mobile")
    SYSTEM = "system", _("System")
    IMPORT = "import", _("Import")


class Activity(models.Model):
    """One event on a customer's timeline.

    ``idempotency_key`` is unique: replaying an import or a WeCom callback with the same
    key stores the event once.
    """

    customer = models.ForeignKey(
        Customer,
        on_delete=models.CASCADE,
        related_name="activities",
        verbose_name=_("customer"),
        db_index=False,  # (customer, occurred_at) below serves it
    )
    kind = models.CharField(_("kind"), max_length=32)
    occurred_at = models.DateTimeField(_("occurred at"), default=timezone.now)
    source = models.CharField(
        _("source"), max_length=16, choices=ActivitySource.choices, default=ActivitySource.API
    )
    staff = models.ForeignKey(
        Staff, on_delete=models.SET_NULL, null=True, blank=True, related_name="activities"
    )
    payload = models.JSONField(_("payload"), default=dict, blank=True)
    idempotency_key = models.CharField(_("idempotency key"), max_length=191, unique=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    class Meta:
        ordering = ["-occurred_at", "-id"]
        verbose_name = _("activity")
        verbose_name_plural = _("activities")
        indexes = [
            # ``kind`` rides along (PostgreSQL) so that a funnel rebuild reads a customer's
            # activities from this index alone, in customer order: no heap, no sort, and
            # merge joins to the customers (funnel.services._sql._fresh_sql).
            models.Index(
                fields=["customer", "-occurred_at"],
                include=["kind"],
                name="activity_customer_time_idx",
            ),
            models.Index(fields=["kind", "occurred_at"], name="activity_kind_time_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} @ {self.occurred_at:%Y-%m-%d %H:%M}"


class Note(models.Model):
    """A free-text note about a customer, written by a user of the dashboard or mobile pages."""

    customer = models.ForeignKey(
        Customer,
        on_delete=models.CASCADE,
        related_name="notes",
        verbose_name=_("customer"),
        db_index=False,  # (customer, created_at) below serves it
    )
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("author"),
    )
    body = models.TextField(_("text"), max_length=5000)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = _("note")
        verbose_name_plural = _("notes")
        indexes = [models.Index(fields=["customer", "-created_at"], name="note_customer_idx")]

    def __str__(self) -> str:
        return self.body[:40]
