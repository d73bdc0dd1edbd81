from __future__ import annotations

import math
from typing import Any

from django.apps import AppConfig
from django.db.backends.signals import connection_created
from django.utils.translation import gettext_lazy as _


class _MedianSeconds:
    """SQLite aggregate: the median of integer microseconds, floored to whole seconds
    (PostgreSQL's twin is ``date_trunc('second', percentile_cont(0.5) ...)``)."""

    def __init__(self) -> None:
        self.values: list[int] = []

    def step(self, value: int | None) -> None:
        if value is not None:
            self.values.append(value)

    def finalize(self) -> int | None:
        if not self.values:
            return None
        values = sorted(self.values)
        middle = len(values) // 2
        if len(values) % 2:
            median_us: float = values[middle]
        else:
            median_us = (values[middle - 1] + values[middle]) / 2
        return math.floor(median_us / 1_000_000)


def _register_sqlite_functions(sender: Any, connection: Any, **kwargs: Any) -> None:
    if connection.vendor == "sqlite":
        connection.connection.create_aggregate("scrm_median_seconds", 1, _MedianSeconds)


class FunnelConfig(AppConfig):
    name = "funnel"
    verbose_name = _("Funnel")

    def ready(self) -> None:
        from customers.hooks import facts_changed
        from funnel import receivers

        connection_created.connect(_register_sqlite_functions)
        facts_changed.connect(receivers.facts_changed_refresh, dispatch_uid="funnel-milestones")
