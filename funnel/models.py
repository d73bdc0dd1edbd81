"""The AARRR funnel's derived tables: one milestone row per customer, and stage history.

Both are derived from the raw facts in ``customers`` (customers, activities, orders,
referrals) by ``funnel.services.milestones_refresh``, which every write path reaches through
``customers.hooks.facts_changed``; ``manage.py rebuild_funnel`` recomputes them from scratch
with the same SQL. Never write these tables anywhere else.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _


class Stage(models.IntegerChoices):
    """The AARRR stages in order. A customer is at stage k when milestones 1..k are all
    reached, in any order; every customer has reached acquisition."""

    ACQUISITION = 1, _("Acquisition")
    ACTIVATION = 2, _("Activation")
    RETENTION = 3, _("Retention")
    REVENUE = 4, _("Revenue")
    REFERRAL = 5, _("Referral")


#: Field of :class:`Milestones` holding when each stage was reached (the latest of its
#: milestone and the previous stages' ones), in stage order.
REACHED_FIELDS = {
    Stage.ACQUISITION: "acquired_at",
    Stage.ACTIVATION: "reached_activation_at",
    Stage.RETENTION: "reached_retention_at",
    Stage.REVENUE: "reached_revenue_at",
    Stage.REFERRAL: "reached_referral_at",
}


class Milestones(models.Model):
    """A customer's five milestone times (null until reached), the stage they make, and
    copies of the customer's report dimensions so that a report scans this table alone.

    ``engaged_weeks`` / ``engaged_months`` are bit sets: bit n is set when the customer had
    an engagement activity in period n after acquisition (periods of 7 or 30 days counted
    from ``acquired_at``; n < 62). The cohort report counts bits instead of reading the
    activity table.
    """

    # The three funnel tables are derived from the customers' facts and keep no database
    # foreign key to the customer: Django's delete removes their rows (on_delete is applied
    # by the ORM), a full refresh drops rows whose customer is gone, and the key was
    # checked per written row (a deferred check per new customer of a sync, one per
    # stage change of an ingest) and re-validated by a join per table in a rebuild.
    customer = models.OneToOneField(
        "customers.Customer",
        on_delete=models.CASCADE,
        primary_key=True,
        related_name="milestones",
        verbose_name=_("customer"),
        db_constraint=False,  # see above
    )
    # Copies of the customer's dimensions (kept in step by the same refresh). The three
    # keys below have no database constraint: each copies the customer's own column,
    # which its foreign key already checks, in the statement that writes the row, so a
    # constraint here could only fail where the customer's would; but it would cost a
    # deferred check per written row at COMMIT (three per new customer: a WeCom sync
    # creates thousands per flush, a rebuild a million). Django's own delete still sets
    # them to NULL (on_delete is applied by the ORM, not by the database).
    acquired_at = models.DateTimeField(_("acquired at"))
    channel = models.ForeignKey(
        "channels.Channel",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,  # (channel, acquired_at) below serves it
        db_constraint=False,  # see above
    )
    store = models.ForeignKey(
        "customers.Store",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,  # (store, acquired_at) below serves it
        db_constraint=False,  # see above
    )
    owner = models.ForeignKey(
        "customers.Staff",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        db_index=False,  # (owner, acquired_at) below serves it
        db_constraint=False,  # see above
    )
    is_referred = models.BooleanField(_("referred"), default=False)
    lost_at = models.DateTimeField(_("lost at"), null=True, blank=True)
    # The milestones themselves.
    activated_at = models.DateTimeField(_("activated at"), null=True, blank=True)
    retained_at = models.DateTimeField(_("retained at"), null=True, blank=True)
    revenue_at = models.DateTimeField(_("first purchase at"), null=True, blank=True)
    repurchase_at = models.DateTimeField(_("repurchase at"), null=True, blank=True)
    referral_at = models.DateTimeField(_("first referral at"), null=True, blank=True)
    # When each stage was reached, and the current stage.
    reached_activation_at = models.DateTimeField(null=True, blank=True)
    reached_retention_at = models.DateTimeField(null=True, blank=True)
    reached_revenue_at = models.DateTimeField(null=True, blank=True)
    reached_referral_at = models.DateTimeField(null=True, blank=True)
    stage = models.PositiveSmallIntegerField(
        _("stage"), choices=Stage.choices, default=Stage.ACQUISITION
    )
    engaged_weeks = models.BigIntegerField(default=0)
    engaged_months = models.BigIntegerField(default=0)
    # The repurchase cycle: paid orders, the last one, and the median interval between
    # them (to the whole second); the next purchase is expected one interval after the last.
    paid_orders = models.PositiveIntegerField(_("paid orders"), default=0)
    last_paid_at = models.DateTimeField(_("last purchase at"), null=True, blank=True)
    purchase_interval = models.DurationField(
        _("median interval between purchases"), null=True, blank=True
    )

    class Meta:
        db_table = "funnel_milestones"
        verbose_name = _("funnel milestones")
        verbose_name_plural = _("funnel milestones")
        indexes = [
            # No column that new activities change is in an index (the engagement bits
            # were included here for the cohort grid), so that folding them in is a HOT
            # update: the row rewritten in its page, no index touched (the table's
            # fillfactor, migration 0007, leaves the room). The cohort grid reads the bits
            # from the rows instead (funnel.selectors.cohort_report).
            models.Index(fields=["acquired_at"], name="milestones_cohort_idx"),
            # Partial, as the customer's indexes of the same columns: the report filters
            # name a channel, a store or a staff member; the channel report's row of
            # customers without a channel is grouped from the cohort, not read here.
            models.Index(
                fields=["channel", "acquired_at"],
                name="milestones_channel_idx",
                condition=Q(channel__isnull=False),
            ),
            models.Index(
                fields=["store", "acquired_at"],
                name="milestones_store_idx",
                condition=Q(store__isnull=False),
            ),
            models.Index(
                fields=["owner", "acquired_at"],
                name="milestones_owner_idx",
                condition=Q(owner__isnull=False),
            ),
            models.Index(
                fields=["store", "last_paid_at"],
                name="milestones_repeat_idx",
                condition=Q(purchase_interval__isnull=False),
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(stage__gte=1, stage__lte=5), name="milestones_stage_range"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.customer_id}: {Stage(self.stage).label}"


class StageChange(models.Model):
    """A change of a customer's current stage. A rise of several stages at once is kept
    as one row per stage entered, each at the time that stage was reached, so the history
    reads the same whether facts arrived one by one or in a bulk import (or a rebuild).
    A fall (a refunded order) is one row at the time it was noticed. The history starts
    at acquisition: entering stage 1 is the customer's creation, not a row here."""

    customer = models.ForeignKey(
        "customers.Customer",
        on_delete=models.CASCADE,
        related_name="stage_changes",
        verbose_name=_("customer"),
        db_index=False,  # (customer, at) below serves it
        db_constraint=False,  # derived: see Milestones.customer
    )
    from_stage = models.PositiveSmallIntegerField(_("from"), choices=Stage.choices)
    to_stage = models.PositiveSmallIntegerField(_("to"), choices=Stage.choices)
    at = models.DateTimeField(_("at"))
    recorded_at = models.DateTimeField(_("recorded at"), default=timezone.now)

    class Meta:
        ordering = ["at", "id"]
        verbose_name = _("stage change")
        verbose_name_plural = _("stage changes")
        indexes = [
            models.Index(fields=["customer", "at"], name="stagechange_customer_idx"),
            models.Index(fields=["to_stage", "at"], name="stagechange_entered_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=~Q(from_stage=models.F("to_stage")), name="stagechange_is_change"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.customer_id}: {self.from_stage} → {self.to_stage} @ {self.at:%Y-%m-%d}"


class PaidPeriod(models.Model):
    """What a customer paid in one period after acquisition: the cohort grid's revenue.

    One row per customer, period length (7 or 30 days) and period n (days
    [n * days, (n + 1) * days) after ``acquired_at``, n < 62) in which the customer has
    a paid order: their paid amount in it. Derived from the paid orders by the same
    refresh as :class:`Milestones`, with a copy of the acquisition time, so that the
    cohort grid reads payers (one row each) and revenue by cohort and period from this
    narrow table alone instead of joining a million orders to their customers.

    Keyed by what it is of, (customer, days, n): a surrogate id would be one more index
    and one more value to draw from a sequence per row, for rows nothing refers to (a
    rebuild writes 1.5 million of them).
    """

    pk = models.CompositePrimaryKey("customer", "days", "n")
    customer = models.ForeignKey(
        "customers.Customer",
        on_delete=models.CASCADE,
        related_name="+",
        db_index=False,  # the primary key serves it
        db_constraint=False,  # derived: see Milestones.customer
    )
    acquired_at = models.DateTimeField(_("acquired at"))
    days = models.PositiveSmallIntegerField(_("period length in days"))
    n = models.PositiveSmallIntegerField(_("period since acquisition"))
    amount = models.DecimalField(_("amount"), max_digits=16, decimal_places=2)

    class Meta:
        db_table = "funnel_paidperiod"
        verbose_name = _("paid period")
        verbose_name_plural = _("paid periods")
        indexes = [
            # The cohort grid: an index-only scan of a year of cohorts (PostgreSQL).
            models.Index(
                fields=["days", "acquired_at"],
                include=["n", "amount"],
                name="paidperiod_cohort_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.customer_id}: {self.n} x {self.days} d: {self.amount}"
