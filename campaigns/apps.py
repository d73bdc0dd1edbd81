import importlib.util

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class CampaignsConfig(AppConfig):
    name = "campaigns"
    verbose_name = _("Campaigns")

    def ready(self) -> None:
        from campaigns import receivers
        from customers.hooks import facts_changed

        # Connected after the funnel's receiver (funnel precedes campaigns in
        # INSTALLED_APPS, and receivers run in connection order): stage triggers and
        # stage exits read the StageChange rows and milestones it writes.
        facts_changed.connect(receivers.facts_changed_sops, dispatch_uid="campaigns-sops")
        # The levers' receivers (points per order, refund, referral), when present.
        if importlib.util.find_spec("campaigns.receivers_levers") is not None:
            from campaigns import receivers_levers

            receivers_levers.connect()
