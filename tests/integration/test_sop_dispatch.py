"""Two real worker processes dispatching one due set on PostgreSQL + Redis: every
touchpoint reaches WeCom exactly once; then one worker is killed with SIGKILL in the middle
of a batch, and after its leases expire nothing is lost and nothing is doubled.

The workers get a simulator of this module's own (2,500 contacts; the session's corp is
too small), small batches and a 10 s lease, and each its own queue, so that both surely
take part. "Received" is read from the simulator's own state: the message tasks WeCom
holds per customer.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any, cast

import pytest
from django.core.cache import cache
from django.utils import timezone

from campaigns.models import (
    Enrollment,
    MessageTask,
    MessageTaskStatus,
    Sop,
    SopStatus,
    SopStep,
    Touchpoint,
    TouchpointKind,
    TouchpointStatus,
)
from campaigns.services.dispatch import message_tasks_reconcile
from campaigns.tasks import SLOT_TTL_SECONDS, dispatch, slot_key
from channels.wecom.simulator import Simulator
from customers.models import Customer, Follow, Staff, Store
from tests.campaigns.factories import ContentFactory, SopFactory, SopStepFactory, SopVersionFactory
from tests.integration.conftest import (
    WECOM_AES_KEY,
    WECOM_SECRET,
    WECOM_TOKEN,
    Worker,
    _test_database_url,
    start_worker,
    wecom_env,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

WORKER_SETTINGS = {
    "SOP_LEASE_SECONDS": "10",
    "SOP_DISPATCH_BATCH": "100",
    "SOP_DISPATCHERS": "2",
    "WECOM_TIMEOUT": "3",
}


@pytest.fixture(scope="module")
def sop_sim(_integration_services: None) -> Iterator[Simulator]:
    sim = Simulator(
        contacts=2500,
        staff=8,
        seed=23,
        corp_id=f"wwsop{uuid.uuid4().hex[:13]}",
        secret=WECOM_SECRET,
        token=WECOM_TOKEN,
        aes_key=WECOM_AES_KEY,
    )
    sim.start()
    try:
        yield sim
    finally:
        sim.stop()


def _start_worker(queue: str, database_url: str, sim: Simulator, var_dir: str) -> Worker:
    return start_worker(
        queue=queue,
        database_url=database_url,
        var_dir=var_dir,
        env={**wecom_env(sim), **WORKER_SETTINGS},
        extra_args=("--prefetch-multiplier", "1"),
    )


@pytest.fixture
def workers(
    _integration_services: None,
    django_db_setup: None,
    django_db_blocker: Any,
    tmp_path_factory: pytest.TempPathFactory,
    sop_sim: Simulator,
    settings: Any,
) -> Iterator[list[Worker]]:
    """Two worker processes, each on a queue of its own; this process points at the
    module's simulator too (it runs the reconciler between rounds)."""
    sop_sim.reset()
    sop_sim.clear_injections()
    cache.delete_many([slot_key(0), slot_key(1)])
    for name, value in {**wecom_env(sop_sim), **WORKER_SETTINGS}.items():
        setattr(settings, name, int(value) if value.isdigit() else value)
    with django_db_blocker.unblock():
        database_url = _test_database_url()
    base = f"scrm-sop-{uuid.uuid4().hex[:10]}"
    started = [
        _start_worker(f"{base}-{n}", database_url, sop_sim, str(tmp_path_factory.mktemp("var")))
        for n in "ab"
    ]
    try:
        for w in started:
            w.wait_ready(timeout=60)
        yield started
    finally:
        for w in started:
            w.stop()
        cache.delete_many([slot_key(0), slot_key(1)])


def _corp(sim: Simulator, customers: int) -> list[Customer]:
    """Customers the simulator knows, each owned and followed by one member."""
    store = Store.objects.create(code=f"it-{uuid.uuid4().hex[:6]}", name="Integration")
    staff = {
        u: Staff.objects.create(wecom_userid=u, name=u, store=store) for u in sim.dataset.staff_ids
    }
    rows: list[Customer] = []
    owners: list[Staff] = []
    seen: set[str] = set()
    for eid, userid in sim.relationships():
        if eid in seen:
            continue
        seen.add(eid)
        rows.append(Customer(external_userid=eid, name=f"c{len(rows)}", owner=staff[userid]))
        owners.append(staff[userid])
        if len(rows) == customers:
            break
    assert len(rows) == customers
    made = Customer.objects.bulk_create(rows)
    Follow.objects.bulk_create(
        Follow(customer=c, staff=s, added_at=timezone.now())
        for c, s in zip(made, owners, strict=True)
    )
    return made


def _due(customers: list[Customer], text: str) -> SopStep:
    sop = SopFactory(status=SopStatus.ACTIVE)
    version = SopVersionFactory(sop=sop)
    step = SopStepFactory(version=version, position=0, content=ContentFactory(text=text))
    Sop.objects.filter(pk=sop.pk).update(current_version=version)
    at = timezone.now() - timedelta(seconds=2)
    enrollments = Enrollment.objects.bulk_create(
        Enrollment(sop=sop, version=version, customer=c, trigger_key="manual:it", trigger_at=at)
        for c in customers
    )
    Touchpoint.objects.bulk_create(
        Touchpoint(
            enrollment=e,
            step=step,
            sop=sop,
            customer=e.customer,
            kind=TouchpointKind.WECOM_MESSAGE,
            due_at=at,
        )
        for e in enrollments
    )
    return cast(SopStep, step)


def _received(sim: Simulator) -> dict[str, int]:
    with sim.state.lock:
        counts: dict[str, int] = {}
        for template in sim.state.templates.values():
            for recipients in template.recipients.values():
                for eid in recipients:
                    counts[eid] = counts.get(eid, 0) + 1
        return counts


def _open() -> int:
    return Touchpoint.objects.filter(
        status__in=[TouchpointStatus.PENDING, TouchpointStatus.CLAIMED]
    ).count()


def _drive(workers: list[Worker], *, timeout: float) -> None:
    """Keep both slots busy and reconcile, until nothing is pending or claimed."""
    deadline = time.monotonic() + timeout
    while _open():
        assert time.monotonic() < deadline, f"still open: {_open()}\n" + "\n".join(
            w.output()[-3000:] for w in workers
        )
        for slot, w in enumerate(workers):
            _enqueue(slot, w)
        message_tasks_reconcile(now=timezone.now())
        time.sleep(0.5)


def _enqueue(slot: int, worker: Worker) -> None:
    """What the beat tick does for a free slot, aimed at one worker's queue."""
    token = uuid.uuid4().hex
    if worker.process.poll() is None and cache.add(slot_key(slot), token, SLOT_TTL_SECONDS):
        dispatch.apply_async(args=[slot, token], queue=worker.queue)


def _assert_exactly_once(sim: Simulator, customers: list[Customer]) -> None:
    assert set(Touchpoint.objects.values_list("status", flat=True)) == {TouchpointStatus.CREATED}
    received = _received(sim)
    assert received == {c.external_userid: 1 for c in customers}
    msgids = set(
        MessageTask.objects.filter(status=MessageTaskStatus.CREATED).values_list("msgid", flat=True)
    )
    # Every WeCom task was adopted by exactly one of ours, and ours name only real ones.
    assert msgids == set(sim.state.templates)
    assert MessageTask.objects.filter(status=MessageTaskStatus.CALLING).count() == 0


def test_two_workers_dispatch_one_due_set_exactly_once(
    workers: list[Worker], sop_sim: Simulator
) -> None:
    customers = _corp(sop_sim, 2000)
    _due(customers, "本周会员日, 全场九折")

    started = time.monotonic()
    _drive(workers, timeout=60)

    _assert_exactly_once(sop_sim, customers)
    slots = {
        c.rsplit("#", 1)[0].rsplit(":", 1)[1]
        for c in MessageTask.objects.values_list("claimed_by", flat=True)
    }
    assert slots == {"0", "1"}, "both workers dispatched"
    assert time.monotonic() - started < 60


def test_a_worker_killed_mid_batch_loses_nothing_and_doubles_nothing(
    workers: list[Worker], sop_sim: Simulator
) -> None:
    customers = _corp(sop_sim, 1200)
    _due(customers, "限时优惠")
    # Slow calls, so that the kill lands inside a batch (between claim, call and record).
    sop_sim.inject(path="externalcontact/add_msg_template", delay_ms=250, count=None)
    victim, survivor = workers
    _enqueue(0, victim)
    _enqueue(1, survivor)

    def in_flight() -> bool | None:
        """The victim has sent some and holds a claimed batch right now: a batch takes
        about a second at 250 ms a call, the poll a few milliseconds, so the kill lands
        inside it (it had raced the gap between two batches before)."""
        mine = Touchpoint.objects.filter(claimed_by__contains=":0#")
        sent = mine.filter(status=TouchpointStatus.CREATED).count()
        holding = mine.filter(status=TouchpointStatus.CLAIMED).exists()
        return True if sent >= 50 and holding else None

    victim.wait_for(in_flight, timeout=40)

    os.killpg(victim.process.pid, signal.SIGKILL)
    victim.process.wait(timeout=10)
    stranded = Touchpoint.objects.filter(
        status=TouchpointStatus.CLAIMED, claimed_by__contains=":0#"
    ).count()
    sop_sim.clear_injections()

    _drive(workers, timeout=70)

    _assert_exactly_once(sop_sim, customers)
    assert stranded > 0, "the kill should have caught a batch in flight"
