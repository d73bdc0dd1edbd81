"""``manage.py runstack``: web server, Celery worker, beat and (for the demo) the WeCom
simulator in one foreground command."""

from __future__ import annotations

import os
import sys
import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

from scrm.demo import demo_login_hint
from scrm.demo_wecom import DEFAULT_SIMULATOR_CONTACTS, DEFAULT_SIMULATOR_PORT, demo_simulator_spec
from scrm.stack import MANAGE_PY, ProcessSpec, SimulatorSpec, Stack, default_processes, wait_http_ok


def _env_int(name: str, default: int, *, minimum: int, maximum: int | None = None) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise CommandError(f"{name}={raw!r} is not a whole number.") from None
    if value < minimum or (maximum is not None and value > maximum):
        raise CommandError(f"{name}={value} must be between {minimum} and {maximum or 'more'}.")
    return value


def local_url(bind: str) -> str:
    """The web server's URL from this machine (a wildcard bind answers on 127.0.0.1)."""
    host, _sep, port = bind.rpartition(":")
    if host in ("", "0.0.0.0", "[::]", "::"):
        host = "127.0.0.1"
    return f"http://{host}:{port}/"


def simulator_wanted(*, disabled: bool) -> bool:
    """The demo's WeCom simulator runs unless WECOM_API_BASE is set (then the product
    talks to that corp, the real WeCom) or it was switched off."""
    return not disabled and not os.environ.get("WECOM_API_BASE", "").strip()


class Command(BaseCommand):
    help = (
        "Run the whole product: gunicorn (web), a Celery worker, Celery beat and, unless "
        "WECOM_API_BASE is set, the WeCom simulator with the demo's channel codes and a first "
        "sync; prefixed output. Ctrl-C stops all of them; if one dies, the others are stopped."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--bind", default="127.0.0.1:8000", help="host:port of the web server")
        parser.add_argument("--web-workers", type=int, default=2, help="gunicorn workers")
        parser.add_argument("--concurrency", type=int, default=2, help="Celery worker processes")
        parser.add_argument(
            "--simulator-port",
            type=int,
            default=None,
            help="WeCom simulator port "
            f"(env SCRM_SIMULATOR_PORT, default {DEFAULT_SIMULATOR_PORT})",
        )
        parser.add_argument(
            "--simulator-contacts",
            type=int,
            default=None,
            help="customers of the simulated corp "
            f"(env SCRM_SIMULATOR_CONTACTS, default {DEFAULT_SIMULATOR_CONTACTS})",
        )
        parser.add_argument(
            "--no-simulator",
            action="store_true",
            help="do not start the WeCom simulator (nor the demo's WeCom set-up)",
        )

    def _simulator(self, options: dict[str, Any], url: str) -> SimulatorSpec | None:
        if not simulator_wanted(disabled=options["no_simulator"]):
            return None
        port = options["simulator_port"]
        if port is None:
            port = _env_int("SCRM_SIMULATOR_PORT", DEFAULT_SIMULATOR_PORT, minimum=1, maximum=65535)
        contacts = options["simulator_contacts"]
        if contacts is None:
            contacts = _env_int("SCRM_SIMULATOR_CONTACTS", DEFAULT_SIMULATOR_CONTACTS, minimum=0)
        return demo_simulator_spec(
            port=port, contacts=contacts, callback_url=f"{url}wecom/callback/"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        bind: str = options["bind"]
        url = local_url(bind)
        hint = demo_login_hint()
        simulator = self._simulator(options, url)
        # The supervisor only forks and waits; it must not hold a database connection
        # (an open SQLite reader in WAL mode keeps the log from being checkpointed).
        connections.close_all()

        def announce_when_up(stack: Stack) -> None:
            def probe() -> None:
                if wait_http_ok(f"{url}healthz", timeout=180, stop=stack.stop_event):
                    extra = f" ({hint})" if hint else ""
                    stack.say("stack", f"SCRM is up at {url}{extra}; Ctrl-C stops everything")
                    if simulator is not None:
                        # Codes and a first sync: a helper of its own, so the web is never
                        # held up by it and its output is labelled.
                        stack.start_oneshot(
                            ProcessSpec(
                                "demo",
                                [sys.executable, str(MANAGE_PY), "demo_wecom", "--site", url],
                                {"WECOM_API_BASE": simulator.api_base},
                            )
                        )
                elif not stack.stopping:
                    stack.say("stack", f"{url}healthz did not answer within 180 s")

            threading.Thread(target=probe, name="healthz-probe", daemon=True).start()

        specs = default_processes(
            bind=bind,
            web_workers=options["web_workers"],
            concurrency=options["concurrency"],
            simulator=simulator,
        )
        stack = Stack(specs, out=sys.stdout, on_started=announce_when_up)
        if simulator is None:
            api_base = os.environ.get("WECOM_API_BASE", "").strip()
            if api_base:
                stack.say("stack", f"WeCom: WECOM_API_BASE={api_base} (no simulator)")
        else:
            stack.say(
                "stack",
                f"WeCom: simulator on {simulator.api_base} with the demo's "
                f"{len(simulator.staff_ids)} staff, callbacks to {simulator.callback_url}",
            )
        code = stack.run()
        if code:
            raise SystemExit(code)
