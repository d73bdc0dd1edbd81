"""``manage.py demo_wecom``: the demo's channel codes in WeCom, then a full sync.

``make run`` runs it once the web server answers (see ``scrm.demo_wecom``). Idempotent:
codes that exist are kept; the sync is the running one if there is one.
"""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

from channels.models import SyncStatus
from channels.wecom.errors import WeComError
from customers.models import Customer
from scrm.demo_wecom import (
    DemoNotSeeded,
    demo_codes_ensure,
    demo_sync_start,
    demo_sync_wait,
    is_official_api,
    simulator_base_url,
)
from scrm.stack import wait_http_ok


class Command(BaseCommand):
    help = (
        "Create the demo channels' codes in WeCom (the simulator) and run a full sync in "
        "the worker. Idempotent: existing codes are kept."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--site", default="http://127.0.0.1:8000/", help="the web server, for the links"
        )
        parser.add_argument(
            "--wait",
            type=float,
            default=600,
            help="seconds to wait for the sync to finish (0: queue it and return)",
        )
        parser.add_argument(
            "--real-corp",
            action="store_true",
            help="allow creating the demo codes in the real WeCom (WECOM_API_BASE is official)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        site: str = options["site"].rstrip("/") + "/"
        api_base = settings.WECOM_API_BASE
        if is_official_api(api_base):
            if not options["real_corp"]:
                raise CommandError(
                    f"WECOM_API_BASE is the real WeCom ({api_base}): the demo's codes would be "
                    "created in your corp. Point it at the simulator, or pass --real-corp."
                )
        elif not wait_http_ok(simulator_base_url(api_base) + "__sim__/health", timeout=60):
            raise CommandError(f"the WeCom simulator at {api_base} does not answer")

        try:
            codes = demo_codes_ensure()
        except DemoNotSeeded as exc:
            self.stdout.write(f"WeCom demo set-up skipped: {exc} (run `manage.py seed_demo`).")
            return
        except (ValidationError, WeComError) as exc:
            raise CommandError(f"could not create the demo's channel codes: {exc}") from exc
        total = len(codes.created) + len(codes.existing)
        self.stdout.write(
            f"WeCom: {total} channel codes ({len(codes.created)} created, "
            f"{len(codes.existing)} already there), QR codes on {site}channels/"
        )

        started = time.monotonic()
        run = demo_sync_start()
        self.stdout.write(f"WeCom sync #{run.pk} queued for the worker; progress on {site}sync/")
        if options["wait"] <= 0:
            return
        finished = demo_sync_wait(run_id=run.pk, timeout=options["wait"])
        seconds = time.monotonic() - started
        if finished is None:
            self.stdout.write(
                f"WeCom sync #{run.pk} still running after {seconds:.0f} s; see {site}sync/"
            )
        elif finished.status != SyncStatus.SUCCEEDED:
            errors = finished.errors[-1:] if finished.errors else ""
            raise CommandError(f"WeCom sync #{run.pk} {finished.status}: {errors}; see {site}sync/")
        else:
            synced = Customer.objects.filter(external_userid__isnull=False).count()
            self.stdout.write(
                self.style.SUCCESS(
                    f"WeCom sync #{run.pk} succeeded in {seconds:.1f} s: {synced:,} WeCom "
                    f"customers; follows WeCom {finished.wecom_follows or 0:,} vs ours "
                    f"{finished.active_follows or 0:,} ({site}sync/)"
                )
            )
        if not is_official_api(api_base):
            sim = simulator_base_url(api_base)
            self.stdout.write(
                f"Try a scan: curl -X POST {sim}__sim__/contacts/add "
                '-d \'{"userid": "demo-sh-clerk1", "state": "demo-ch01"}\''
            )
        connections.close_all()
