"""The SOP engine's Celery tasks, run eagerly with .apply(): slots that never pile up
messages, dispatch under a slot lock, polling and trigger scans."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import cache
from django.db import connection

from campaigns import tasks
from campaigns.models import MessageTaskStatus, TouchpointStatus
from channels.wecom.simulator import Simulator
from tests.campaigns.factories import ContentFactory
from tests.campaigns.test_dispatch import active_sop, corp, due
from tests.channels.wecom_support import running_wecom

pytestmark = pytest.mark.django_db


@pytest.fixture
def wecom(db, settings, django_capture_on_commit_callbacks) -> Iterator[Simulator]:
    with running_wecom(
        settings, django_capture_on_commit_callbacks, contacts=200, staff=2, seed=5
    ) as w:
        yield w.sim


def test_the_tick_enqueues_one_dispatch_per_free_slot_and_none_while_busy(
    wecom, monkeypatch, settings
) -> None:
    sent: list[tuple[Any, ...]] = []
    monkeypatch.setattr(tasks.dispatch, "delay", lambda *args: sent.append(args))

    slots = 1 if connection.vendor == "sqlite" else settings.SOP_DISPATCHERS
    assert tasks.dispatch_tick.apply().get() == tasks.dispatcher_slots() == slots
    assert tasks.dispatch_tick.apply().get() == 0  # every slot is still queued
    assert sorted(slot for slot, _token in sent) == list(range(slots))
    for slot, token in sent:
        assert cache.get(tasks.slot_key(slot)) == token


def test_dispatch_runs_under_the_slot_lock_and_frees_it(wecom) -> None:
    ((_staff, customers),) = corp(wecom, customers=5).items()
    _sop, step = active_sop(content=ContentFactory(text="hi"))
    touchpoints = due(customers, step)

    result = tasks.dispatch.apply(args=[0]).get()

    assert (result["claimed"], result["created"], result["tasks"]) == (5, 5, 1)
    assert cache.get(tasks.slot_key(0)) is None
    assert {t.status for t in type(touchpoints[0]).objects.all()} == {TouchpointStatus.CREATED}


def test_a_busy_slot_is_not_run_twice(wecom) -> None:
    cache.set(tasks.slot_key(0), "someone-else", 60)
    assert tasks.dispatch.apply(args=[0]).get() == {"skipped": "slot busy"}
    assert tasks.dispatch.apply(args=[0, "mine"]).get() == {"skipped": "slot taken over"}
    assert cache.get(tasks.slot_key(0)) == "someone-else"


def test_poll_message_tasks_records_confirmations(wecom) -> None:
    ((_staff, customers),) = corp(wecom, customers=2).items()
    _sop, step = active_sop(content=ContentFactory(text="hi"))
    due(customers, step)
    tasks.dispatch.apply(args=[0])

    assert tasks.poll_message_tasks.apply().get() == 1

    from campaigns.models import MessageTask, Touchpoint

    assert MessageTask.objects.get().status == MessageTaskStatus.SENT
    assert set(Touchpoint.objects.values_list("status", flat=True)) == {TouchpointStatus.SENT}


def test_scan_triggers_enrols_todays_birthdays(db) -> None:
    from django.utils import timezone

    from campaigns.models import Enrollment, TriggerKind
    from campaigns.services.schedule import corp_tz
    from tests.campaigns.factories import sop_with_steps
    from tests.factories import CustomerFactory

    today = timezone.now().astimezone(corp_tz()).date()
    sop = sop_with_steps(
        trigger_kind=TriggerKind.DATE_FIELD,
        trigger_config={"field": "birthday", "days_before": 0},
    )
    # Feb 29 birthdays are celebrated on Feb 28 in other years: avoid that edge here.
    born = today.replace(year=1992) if (today.month, today.day) != (2, 29) else today
    celebrated = CustomerFactory(birthday=born)
    CustomerFactory(birthday=None)
    assert tasks.scan_triggers.apply().get() == 1
    assert list(Enrollment.objects.filter(sop=sop).values_list("customer_id", flat=True)) == [
        celebrated.pk
    ]
    assert tasks.scan_triggers.apply().get() == 0  # idempotent: same trigger occurrence
