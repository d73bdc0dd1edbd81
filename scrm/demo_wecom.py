"""The demo's WeCom side: the simulator ``make run`` starts, and the set-up once it is up.

``make run`` (``manage.py runstack``) runs the WeCom simulator as one more process of the
stack, unless ``WECOM_API_BASE`` is set (a real corp). Its corp is built to fit the demo:

* its follow users are the demo's store managers and clerks (``demo-sh-clerk1``, ...), so
  synced customers land on staff who have logins and stores;
* its generated follows carry the states of the demo's channel codes, so a sync
  attributes them to the demo's channels;
* it is dated from the demo's anchor, so a sync on a later day finds nothing changed;
* it is handed the app's active channel codes at start (:func:`contact_ways_export`), so
  the codes created by an earlier run keep their config_ids, QR codes and scans;
* it POSTs signed callbacks to the web server's ``/wecom/callback/``.

Once the web answers, the stack runs ``manage.py demo_wecom`` once: it creates the demo
channels' codes through ``channels.services.channel_code_create`` (so they exist in WeCom
with QR codes; codes that exist are left alone), then queues a full sync for the worker
and reports its figures when it has finished.
"""

# The Chinese welcome text uses full-width punctuation, which is correct there.
# ruff: noqa: RUF001

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.db import DatabaseError, transaction
from django.utils import timezone

from channels import services as channel_services
from channels.models import Channel, ChannelCode, SyncRun, SyncStatus
from customers.models import Staff, Store
from scrm.demo import STORES, demo_code_channels, demo_wecom_userids
from scrm.stack import SimulatorSpec

logger = logging.getLogger(__name__)

OFFICIAL_API_HOST = "qyapi.weixin.qq.com"
DEFAULT_SIMULATOR_PORT = 8900
DEFAULT_SIMULATOR_CONTACTS = 3000
SIMULATOR_SEED = 2026
WELCOME_TEXT = (
    "{name}，您好！我是{staff}🌸 欢迎加入我们的会员服务。"
    "新客专享：到店出示这条消息，即可领取玫瑰精华体验装一份。"
)


def is_official_api(api_base: str) -> bool:
    """Whether ``api_base`` is the real WeCom (not a simulator)."""
    return urlsplit(api_base).hostname == OFFICIAL_API_HOST


def simulator_base_url(api_base: str) -> str:
    """The simulator's root (its control plane is under ``__sim__/``) from its API base."""
    return api_base.removesuffix("/").removesuffix("cgi-bin") or api_base


# --- Before the stack starts: the simulator's corp -------------------------------------


def simulator_staff_ids() -> list[str]:
    """The demo's follow users, clerks first: the simulator gives its first staff the most
    customers (a real corp has star sellers), and those should be clerks, not managers."""
    userids = demo_wecom_userids()
    return sorted(userids, key=lambda u: u.endswith("-manager"))


def demo_anchor_epoch() -> int | None:
    """The demo's anchor (see ``scrm.demo.demo_anchor``) in epoch seconds, or None when
    the demo is not seeded (or the database not migrated)."""
    try:
        first = (
            Store.objects.filter(code=STORES[0].code).values_list("created_at", flat=True).first()
        )
    except DatabaseError:
        return None
    return int(first.timestamp()) if first else None


def contact_ways_export() -> list[dict[str, Any]]:
    """The app's active channel codes as the contact ways WeCom holds for them, for the
    simulator to restore (``wecom_simulator --contact-ways``). Empty when the database is
    not migrated yet."""
    try:
        codes = list(
            ChannelCode.objects.filter(is_active=True, config_id__isnull=False)
            .prefetch_related("staff")
            .order_by("id")
        )
    except DatabaseError:
        return []
    ways = []
    for code in codes:
        users = sorted(str(s.wecom_userid) for s in code.staff.all() if s.wecom_userid)
        if not code.config_id or not users:
            continue
        # The fields channel_code_create sends (see channels.services._code_create).
        ways.append(
            {
                "config_id": code.config_id,
                "type": 1 if len(users) == 1 else 2,
                "scene": 2,
                "style": 1,
                "remark": code.name[: channel_services.REMARK_MAX_LENGTH],
                "state": code.state,
                "skip_verify": code.skip_verify,
                "user": users,
                "create_time": int(code.created_at.timestamp()),
            }
        )
    return ways


def demo_simulator_spec(
    *,
    port: int = DEFAULT_SIMULATOR_PORT,
    contacts: int = DEFAULT_SIMULATOR_CONTACTS,
    callback_url: str,
    var_dir: Path | None = None,
) -> SimulatorSpec:
    """The simulator ``make run`` starts: the demo's staff and channel states, dated from
    the demo's anchor, with the app's channel codes to restore. Reads the database (and
    writes the codes to a file under ``var_dir``); the caller closes the connection."""
    ways = contact_ways_export()
    path = None
    if ways:
        folder = (var_dir or Path(settings.VAR_DIR)) / "wecom-simulator"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "contact-ways.json"
        path.write_text(json.dumps(ways, ensure_ascii=False, indent=1), encoding="utf-8")
    return SimulatorSpec(
        port=port,
        contacts=contacts,
        staff_ids=simulator_staff_ids(),
        states=[c.state for c in demo_code_channels()],
        callback_url=callback_url,
        seed=SIMULATOR_SEED,
        now=demo_anchor_epoch(),
        contact_ways=path,
    )


# --- After the stack is up: channel codes and the first sync ---------------------------


class DemoNotSeeded(Exception):
    """The demo's staff or channels are not in the database (run ``seed_demo``)."""


@dataclass
class CodesReport:
    created: list[ChannelCode] = field(default_factory=list)
    existing: list[ChannelCode] = field(default_factory=list)


def _demo_staff() -> list[Staff]:
    userids = demo_wecom_userids()
    try:
        staff = list(
            Staff.objects.filter(wecom_userid__in=userids, is_active=True).order_by("wecom_userid")
        )
    except DatabaseError as exc:
        raise DemoNotSeeded(f"the database is not ready: {exc}") from exc
    if len(staff) != len(userids):
        raise DemoNotSeeded(f"{len(staff)} of the demo's {len(userids)} staff members exist")
    return staff


def demo_codes_ensure(*, welcome_text: str = WELCOME_TEXT) -> CodesReport:
    """Give each demo channel its channel code (state ``demo-chNN``), created in WeCom
    through ``channel_code_create``; a code that exists (active or not) is left as it is,
    so running this again creates nothing. Calls WeCom: not inside a transaction."""
    staff = _demo_staff()
    report = CodesReport()
    for spec in demo_code_channels():
        existing = ChannelCode.objects.filter(state=spec.state).first()
        if existing is not None:
            report.existing.append(existing)
            continue
        channel = Channel.objects.filter(name=spec.name).first()
        if channel is None:
            raise DemoNotSeeded(f"the demo channel {spec.name!r} does not exist")
        report.created.append(
            channel_services.channel_code_create(
                channel=channel,
                name=f"{spec.name} · 二维码",
                staff=staff,
                state=spec.state,
                welcome_text=welcome_text,
            )
        )
    return report


def demo_sync_start() -> SyncRun:
    """Queue a full sync for the worker (or get the one running), after commit."""
    with transaction.atomic():
        return channel_services.sync_request()


def demo_sync_wait(
    *,
    run_id: int,
    timeout: float,
    poll: float = 0.5,
    sleep: Callable[[float], None] = time.sleep,
) -> SyncRun | None:
    """Wait for sync ``run_id`` to finish; the run, or None after ``timeout`` seconds.

    A run left behind by a stack that was stopped mid-sync is resumed by the worker once
    its lease is stale; its task may be gone with the old worker, so it is queued again.
    """
    from channels import tasks

    deadline = time.monotonic() + timeout
    requeued_at: float | None = None
    stale = timedelta(seconds=settings.WECOM_SYNC_LEASE_SECONDS + 5)
    while True:
        run = SyncRun.objects.filter(pk=run_id).first()
        if run is None or run.status != SyncStatus.RUNNING:
            return run
        now = time.monotonic()
        if now > deadline:
            return None
        lease_gone = timezone.now() - run.heartbeat_at > stale
        if lease_gone and (requeued_at is None or now - requeued_at > stale.total_seconds()):
            logger.info("sync #%s has not progressed for %s; queueing it again", run_id, stale)
            tasks.wecom_sync.delay(run_id)
            requeued_at = now
        sleep(poll)
