"""Celery tasks of the channels app: thin wrappers that take ids and call a service."""

from __future__ import annotations

import logging

from celery import shared_task

from channels.models import SyncRun
from channels.wecom.errors import TRANSIENT_ERRORS
from channels.wecom.events import event_process, events_requeue_stuck
from channels.wecom.sync import sync_run_execute, sync_run_start

logger = logging.getLogger(__name__)


@shared_task(
    name="channels.wecom_sync",
    autoretry_for=TRANSIENT_ERRORS,
    retry_backoff=5,
    retry_backoff_max=300,
    retry_jitter=True,
    max_retries=12,
    ignore_result=True,
)
def wecom_sync(run_id: int | None = None) -> int | None:
    """Run (or resume) a full WeCom sync. A transient WeCom error ends this attempt with
    the checkpoint saved; the retry resumes from it rather than starting over."""
    if run_id is None:
        run_id = sync_run_start().pk
    try:
        return sync_run_execute(run_id=run_id).pk
    except SyncRun.DoesNotExist:
        logger.warning("wecom_sync: run %s is gone", run_id)
        return None


# --- WeCom callback events (see channels.wecom.events) ------------------------------


@shared_task(
    name="channels.process_wecom_event",
    autoretry_for=TRANSIENT_ERRORS,
    retry_backoff=2,
    retry_backoff_max=120,
    retry_jitter=True,
    max_retries=8,
    ignore_result=True,
)
def process_wecom_event(event_id: int) -> str | None:
    """Process one recorded WeCom callback event. Claiming makes a duplicate delivery a
    no-op; a transient WeCom error leaves the event pending and is retried with backoff
    (the requeue sweeper picks it up if the retries run out)."""
    return event_process(event_id=event_id)


@shared_task(name="channels.requeue_wecom_events", ignore_result=True)
def requeue_wecom_events() -> int:
    """Beat, every minute: re-enqueue events whose processing was lost (never ran, or
    its worker died), so that no recorded event is left unprocessed."""
    ids = events_requeue_stuck()
    for event_id in ids:
        process_wecom_event.delay(event_id)
    if ids:
        logger.info("re-enqueued %s stuck WeCom events", len(ids))
    return len(ids)
