"""Celery tasks of the channels app: thin wrappers that take ids and call a service."""

from __future__ import annotations

import logging

from celery import shared_task

from channels.models import SyncRun
from channels.wecom.errors import TRANSIENT_ERRORS
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
