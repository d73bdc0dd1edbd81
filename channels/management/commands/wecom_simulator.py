"""``manage.py wecom_simulator``: run the local WeCom simulator in the foreground.

``make run`` starts it next to the web server and points WECOM_API_BASE at the printed
URL; credentials default to settings.WECOM_* so the app's token calls and callback
decryption just work.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from argparse import ArgumentParser
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from channels.wecom.simulator import Simulator


class Command(BaseCommand):
    help = "Run the WeCom-compatible simulator (API + control plane + callbacks) on 127.0.0.1."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8900, help="0 picks a free port")
        parser.add_argument("--contacts", type=int, default=1000, help="external contacts")
        parser.add_argument("--staff", type=int, default=10, help="follow users")
        parser.add_argument(
            "--relationships", type=int, default=None, help="exact (customer, staff) pairs"
        )
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument(
            "--states",
            default=None,
            help="comma-separated channel states of the generated follows (each ≤ 30 chars)",
        )
        parser.add_argument("--corp-id", default=settings.WECOM_CORP_ID)
        parser.add_argument("--secret", default=settings.WECOM_SECRET)
        parser.add_argument("--token", default=settings.WECOM_TOKEN)
        parser.add_argument("--aes-key", default=settings.WECOM_AES_KEY)
        parser.add_argument("--callback-url", default=None, help="where to POST events")
        parser.add_argument(
            "--welcome-ttl", type=float, default=20.0, help="welcome code lifetime (s)"
        )
        parser.add_argument("--token-ttl", type=int, default=7200, help="access_token lifetime (s)")

    def handle(self, *args: Any, **opts: Any) -> None:
        started = time.monotonic()
        try:
            sim = Simulator(
                contacts=opts["contacts"],
                staff=opts["staff"],
                relationships=opts["relationships"],
                seed=opts["seed"],
                states=tuple(opts["states"].split(",")) if opts["states"] else None,
                corp_id=opts["corp_id"],
                secret=opts["secret"],
                token=opts["token"],
                aes_key=opts["aes_key"],
                callback_url=opts["callback_url"],
                welcome_ttl=opts["welcome_ttl"],
                token_ttl=opts["token_ttl"],
                host=opts["host"],
                port=opts["port"],
            )
            api_base = sim.start()
        except (ValueError, OSError) as exc:
            raise CommandError(f"cannot start the WeCom simulator: {exc}") from exc
        stats = sim.stats()
        self.stdout.write(api_base)
        self.stdout.write(
            f"WeCom simulator: corp {sim.corp_id}, {stats['staff']} staff, "
            f"{stats['contacts']} contacts, {stats['relationships']} relationships "
            f"(seed {opts['seed']}, ready in {time.monotonic() - started:.1f}s); "
            f"control plane at {sim.base_url}__sim__/"
        )
        sys.stdout.flush()

        stop = threading.Event()

        def _on_signal(signum: int, frame: FrameType | None) -> None:
            stop.set()

        signal.signal(signal.SIGINT, _on_signal)
        signal.signal(signal.SIGTERM, _on_signal)
        try:
            while not stop.wait(0.5):
                pass
        finally:
            sim.stop()
            self.stdout.write("WeCom simulator stopped.")
