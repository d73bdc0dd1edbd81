"""Project-wide periodic tasks."""

import logging

from celery import shared_task
from django.core.cache import cache
from django.utils import timezone

logger = logging.getLogger(__name__)


@shared_task(name="scrm.tasks.heartbeat", ignore_result=True)
def heartbeat() -> str:
    """Record that a worker ran a beat tick, so the dashboard can show worker health."""
    now = timezone.now().isoformat()
    cache.set("scrm:worker-heartbeat", now, timeout=None)
    return now
