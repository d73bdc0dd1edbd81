"""Celery tasks of the SOP engine: thin wrappers around the dispatch and confirm services.

The beat tick never piles work into the broker: a dispatcher slot is a cache lock, taken
by the tick when it enqueues ``campaigns.dispatch`` and released by that task when its
time budget is spent, so a slot has at most one message queued or running. Touchpoints
live in the table (``due_at``), never as broker ETAs.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from typing import Any

from celery import shared_task
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.utils import timezone

from campaigns.services.confirm import message_tasks_poll
from campaigns.services.dispatch import dispatch_until_idle, message_tasks_reconcile
from campaigns.services.enrollment import triggers_scan
from channels.wecom.errors import TRANSIENT_ERRORS

logger = logging.getLogger(__name__)

#: A dispatch run's time budget; the next tick continues where it stopped.
DISPATCH_BUDGET_SECONDS = 20.0
#: A slot lock outlives a queued-but-lost message by at most this long.
SLOT_TTL_SECONDS = 90


def dispatcher_slots() -> int:
    """SQLite ignores SKIP LOCKED, so it gets exactly one dispatcher."""
    return 1 if connection.vendor == "sqlite" else settings.SOP_DISPATCHERS


def slot_key(slot: int) -> str:
    return f"campaigns:dispatch:slot:{slot}"


@shared_task(name="campaigns.dispatch_tick", ignore_result=True)
def dispatch_tick() -> int:
    """Beat, every SOP_TICK_SECONDS: reconcile stale WeCom calls, then enqueue one
    dispatch per free slot. Returns how many were enqueued."""
    try:
        message_tasks_reconcile(now=timezone.now())
    except Exception:  # the dispatch below must still run
        logger.exception("message_tasks_reconcile failed")
    queued = 0
    for slot in range(dispatcher_slots()):
        token = uuid.uuid4().hex
        if cache.add(slot_key(slot), token, timeout=SLOT_TTL_SECONDS):
            dispatch.delay(slot, token)
            queued += 1
    return queued


@shared_task(name="campaigns.dispatch", ignore_result=True)
def dispatch(slot: int = 0, token: str | None = None) -> dict[str, Any]:
    """Dispatch due touchpoints for up to DISPATCH_BUDGET_SECONDS in ``slot``."""
    key = slot_key(slot)
    if token is None:  # called directly, not by the tick: take the slot ourselves
        token = uuid.uuid4().hex
        if not cache.add(key, token, timeout=SLOT_TTL_SECONDS):
            return {"skipped": "slot busy"}
    elif cache.get(key) not in (None, token):
        return {"skipped": "slot taken over"}
    cache.set(key, token, timeout=SLOT_TTL_SECONDS)
    worker = f"{socket.gethostname()[:24]}:{os.getpid()}:{slot}"
    try:
        result = dispatch_until_idle(worker=worker, budget_seconds=DISPATCH_BUDGET_SECONDS)
    finally:
        if cache.get(key) == token:
            cache.delete(key)
    return {
        "claimed": result.claimed,
        "created": result.created,
        "tasks": result.tasks,
        "skipped": dict(result.skipped),
        "over_quota": len(result.over_quota),
        "failed": result.failed,
        "retried": result.retried,
    }


@shared_task(
    name="campaigns.poll_message_tasks",
    autoretry_for=TRANSIENT_ERRORS,
    retry_backoff=10,
    retry_backoff_max=300,
    retry_jitter=True,
    max_retries=5,
    ignore_result=True,
)
def poll_message_tasks() -> int:
    """Beat, every minute: WeCom's confirmations and send results of open tasks."""
    return message_tasks_poll()


@shared_task(
    name="campaigns.scan_triggers",
    autoretry_for=TRANSIENT_ERRORS,
    retry_backoff=30,
    retry_backoff_max=600,
    max_retries=5,
    ignore_result=True,
)
def scan_triggers() -> int:
    """Beat, hourly: date-field and repurchase-due triggers (idempotent)."""
    return triggers_scan(now=timezone.now())
