"""Celery tasks of the core: thin wrappers that take ids and primitives and call a service.

Enqueue them after commit (``record_activity.delay_on_commit(...)``), so the worker never
looks for a row the request has not committed yet.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from celery import shared_task
from django.utils import timezone

from customers.models import ActivitySource, Customer, Staff
from customers.services import ActivityInput, activities_record

logger = logging.getLogger(__name__)


@shared_task(name="customers.record_activity", ignore_result=False)
def record_activity(
    customer_id: int,
    kind: str,
    occurred_at: str,
    source: str = ActivitySource.SYSTEM,
    staff_id: int | None = None,
    payload: dict[str, Any] | None = None,
    idempotency_key: str = "",
) -> str:
    """Record one timeline event off the request path (a WeCom callback must answer
    within seconds; an import may queue thousands).

    ``occurred_at`` is ISO 8601 (JSON has no datetime). Idempotent: the event is keyed by
    ``idempotency_key`` (or by its content when empty), so a redelivered message stores
    nothing new. A customer deleted meanwhile is logged and skipped, not retried: the
    event has nobody to belong to. Returns ``created``, ``unchanged`` or ``missing``.
    """
    if not Customer.objects.filter(pk=customer_id).exists():
        logger.warning("record_activity: customer %s does not exist; %s dropped", customer_id, kind)
        return "missing"
    if staff_id is not None and not Staff.objects.filter(pk=staff_id).exists():
        # The event still happened to the customer; only the attribution is lost.
        logger.warning("record_activity: staff %s does not exist; recorded without", staff_id)
        staff_id = None
    at = datetime.fromisoformat(occurred_at)
    if timezone.is_naive(at):
        at = timezone.make_aware(at, timezone.get_default_timezone())
    result = activities_record(
        rows=[
            ActivityInput(
                customer_id=customer_id,
                kind=kind,
                occurred_at=at,
                source=source,
                staff_id=staff_id,
                payload=payload or {},
                idempotency_key=idempotency_key,
            )
        ]
    )
    return result.outcomes[0]
