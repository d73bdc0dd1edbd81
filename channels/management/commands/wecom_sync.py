"""`python manage.py wecom_sync`: a full sync of WeCom contacts, in this process or queued."""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from channels.wecom.errors import WeComError
from channels.wecom.sync import sync_run_execute, sync_run_start


class Command(BaseCommand):
    help = "Sync staff, corp tags and external contacts from WeCom (resumes a running sync)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--queue",
            action="store_true",
            help="enqueue the sync for a Celery worker instead of running it here",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        run = sync_run_start()
        if options["queue"]:
            from channels.tasks import wecom_sync

            wecom_sync.delay(run.pk)
            self.stdout.write(f"sync #{run.pk} queued")
            return
        started = time.monotonic()
        try:
            run = sync_run_execute(run_id=run.pk)
        except WeComError as exc:
            raise CommandError(f"sync #{run.pk} stopped: {exc}") from exc
        seconds = time.monotonic() - started
        self.stdout.write(
            f"sync #{run.pk} {run.status} in {seconds:.1f}s: {run.relationships} relationships, "
            f"{run.pages} pages, {run.http_calls} HTTP calls, created {run.created}, "
            f"updated {run.updated}, deleted {run.deleted}; "
            f"WeCom follows {run.wecom_follows}, ours {run.active_follows}"
        )
        if run.status != "succeeded":
            raise CommandError(f"sync #{run.pk} ended {run.status}: {run.errors[-1:]}")
