"""``manage.py wecom_simulator``: run the local WeCom simulator in the foreground.

``make run`` starts it next to the web server and points WECOM_API_BASE at the printed
URL; credentials default to settings.WECOM_* so the app's token calls and callback
decryption just work. The first line printed is the API base URL.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from argparse import ArgumentParser
from pathlib import Path
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from channels.wecom.simulator import Simulator
from channels.wecom.simulator.state import ContactWay


def _csv(raw: str | None) -> tuple[str, ...] | None:
    return tuple(item.strip() for item in raw.split(",") if item.strip()) if raw else None


def restore_contact_ways(sim: Simulator, ways: list[dict[str, Any]]) -> tuple[int, list[str]]:
    """Register contact ways a previous run created (the app's channel codes), under their
    own config_ids, as a real corp would still have them. Returns (restored, skipped ids).

    The simulator keeps its corp in memory only; without this, every code the app saved
    would answer 41044 ("no such contact way") after a restart. Ways naming a userid this
    corp does not have are skipped. The simulator's id counter is moved past anything an
    earlier run can have minted, so a new way never takes a restored one's config_id.
    """
    st = sim.state
    restored, skipped = 0, []
    with st.lock:
        for item in ways:
            config_id = str(item.get("config_id") or "")
            users = [str(u) for u in item.get("user") or ()]
            if not config_id or not users or any(u not in sim.dataset.user_index for u in users):
                skipped.append(config_id)
                continue
            scene = int(item.get("scene") or 2)
            st.contact_ways[config_id] = ContactWay(
                config_id=config_id,
                type=int(item.get("type") or (1 if len(users) == 1 else 2)),
                scene=scene,
                create_time=int(item.get("create_time") or st.clock()),
                style=item.get("style"),
                remark=str(item.get("remark") or ""),
                skip_verify=bool(item.get("skip_verify", True)),
                state=str(item.get("state") or ""),
                user=users,
                qr_code=f"{sim.base_url}qr/{config_id}.png" if scene == 2 else "",
            )
            restored += 1
        # Minted ids hash (seed, a counter): an earlier run with the same seed minted the
        # same sequence from 1, so start this run's counter where no earlier one reached.
        st._id_seq = max(st._id_seq, int(time.time()))
    return restored, skipped


class Command(BaseCommand):
    help = "Run the WeCom-compatible simulator (API + control plane + callbacks) on 127.0.0.1."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8900, help="0 picks a free port")
        parser.add_argument("--contacts", type=int, default=1000, help="external contacts")
        parser.add_argument(
            "--staff",
            type=int,
            default=None,
            help="follow users (default 10; --staff-ids sets it)",
        )
        parser.add_argument(
            "--staff-ids",
            default=None,
            help="comma-separated userids of the follow users (default staff0001, staff0002, ...)",
        )
        parser.add_argument(
            "--idle-staff",
            type=int,
            default=None,
            help="follow users without customers (default 1 when there are 2 or more)",
        )
        parser.add_argument(
            "--relationships", type=int, default=None, help="exact (customer, staff) pairs"
        )
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument(
            "--now",
            type=int,
            default=None,
            help="the corp's 'now' in epoch seconds: follows are dated in the year before it "
            "(default: today's midnight, China time)",
        )
        parser.add_argument(
            "--contact-ways",
            type=Path,
            default=None,
            help="JSON list of contact ways to restore under their config_ids "
            "(config_id, user, state, remark, type, scene, skip_verify)",
        )
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
        staff_ids = _csv(opts["staff_ids"])
        if staff_ids and opts["staff"] is not None and opts["staff"] != len(staff_ids):
            raise CommandError(f"--staff {opts['staff']} but {len(staff_ids)} --staff-ids")
        ways: list[dict[str, Any]] = []
        if opts["contact_ways"] is not None:
            try:
                ways = json.loads(opts["contact_ways"].read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise CommandError(f"cannot read --contact-ways: {exc}") from exc
            if not isinstance(ways, list) or not all(isinstance(w, dict) for w in ways):
                raise CommandError("--contact-ways must hold a JSON list of objects")
        try:
            sim = Simulator(
                contacts=opts["contacts"],
                staff=opts["staff"] if opts["staff"] is not None else 10,
                staff_ids=staff_ids,
                idle_staff=opts["idle_staff"],
                relationships=opts["relationships"],
                seed=opts["seed"],
                now=opts["now"],
                states=_csv(opts["states"]),
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
        try:
            restored, skipped = restore_contact_ways(sim, ways) if ways else (0, [])
        except (TypeError, ValueError) as exc:
            sim.stop()
            raise CommandError(f"bad contact way in --contact-ways: {exc}") from exc
        stats = sim.stats()
        self.stdout.write(api_base)
        self.stdout.write(
            f"WeCom simulator: corp {sim.corp_id}, {stats['staff']} staff, "
            f"{stats['contacts']} contacts, {stats['relationships']} relationships "
            f"(seed {opts['seed']}, ready in {time.monotonic() - started:.1f}s); "
            f"control plane at {sim.base_url}__sim__/"
        )
        if ways:
            self.stdout.write(f"restored {restored} contact ways (channel codes)")
        if skipped:
            self.stdout.write(
                f"skipped {len(skipped)} contact ways naming unknown staff: {', '.join(skipped)}"
            )
        if sim.callback_url:
            self.stdout.write(f"callbacks go to {sim.callback_url}")
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
