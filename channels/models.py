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


class Channel(models.Model):
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
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        ordering = ["name", "id"]
        verbose_name = _("channel")
        verbose_name_plural = _("channels")
        constraints = [
            models.CheckConstraint(condition=Q(cost__gte=0), name="channel_cost_not_negative"),
        ]

    def __str__(self) -> str:
        return self.name
