"""``manage.py runstack``: web server, Celery worker and beat in one foreground command."""

from __future__ import annotations

import sys
import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import connections

from scrm.demo import demo_login_hint
from scrm.stack import Stack, default_processes, wait_http_ok


class Command(BaseCommand):
    help = (
        "Run the whole product: gunicorn (web), a Celery worker and Celery beat, with "
        "prefixed output. Ctrl-C stops all of them; if one dies, the others are stopped."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--bind", default="127.0.0.1:8000", help="host:port of the web server")
        parser.add_argument("--web-workers", type=int, default=2, help="gunicorn workers")
        parser.add_argument("--concurrency", type=int, default=2, help="Celery worker processes")

    def handle(self, *args: Any, **options: Any) -> None:
        bind: str = options["bind"]
        url = f"http://{bind}/"
        hint = demo_login_hint()
        # The supervisor only forks and waits; it must not hold a database connection
        # (an open SQLite reader in WAL mode keeps the log from being checkpointed).
        connections.close_all()

        def announce_when_up(stack: Stack) -> None:
            def probe() -> None:
                if wait_http_ok(f"{url}healthz", timeout=180, stop=stack.stop_event):
                    extra = f" ({hint})" if hint else ""
                    stack.say("stack", f"SCRM is up at {url}{extra}; Ctrl-C stops everything")
                elif not stack.stopping:
                    stack.say("stack", f"{url}healthz did not answer within 180 s")

            threading.Thread(target=probe, name="healthz-probe", daemon=True).start()

        specs = default_processes(
            bind=bind, web_workers=options["web_workers"], concurrency=options["concurrency"]
        )
        code = Stack(specs, out=sys.stdout, on_started=announce_when_up).run()
        if code:
            raise SystemExit(code)
