"""WeCom's confirmations and send results recorded per touchpoint; the staff's own marks
(done, snooze) with their permissions."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone

from campaigns.models import (
    MessageTask,
    MessageTaskStatus,
    SkipReason,
    StepAction,
    Touchpoint,
    TouchpointKind,
    TouchpointStatus,
)
from campaigns.services.confirm import message_tasks_poll, touchpoint_done, touchpoint_snooze
from campaigns.services.dispatch import dispatch_batch
from campaigns.services.quota import quota_used
from channels.wecom.simulator import Simulator
from customers.models import Activity, ActivityKind, Staff
from scrm.roles import Role
from tests.campaigns.factories import ContentFactory
from tests.campaigns.test_dispatch import active_sop, corp, due
from tests.channels.wecom_support import running_wecom
from tests.factories import StaffFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def wecom(db, settings, django_capture_on_commit_callbacks) -> Iterator[Simulator]:
    with running_wecom(
        settings, django_capture_on_commit_callbacks, contacts=200, staff=2, seed=5
    ) as w:
        settings.WECOM_MESSAGE_QUOTA = "month"
        yield w.sim


def test_confirmed_messages_become_sent_with_a_timeline_activity(wecom) -> None:
    wecom.configure(groupmsg_auto_confirm=False)
    ((staff, customers),) = corp(wecom, customers=3).items()
    _sop, step = active_sop(content=ContentFactory(text="hi"))
    touchpoints = due(customers, step)
    dispatch_batch(worker="t")
    task = MessageTask.objects.get()

    assert message_tasks_poll() == 1  # not confirmed yet: nothing changes
    assert Touchpoint.objects.filter(status=TouchpointStatus.CREATED).count() == 3
    task.refresh_from_db()
    assert task.status == MessageTaskStatus.CREATED and task.checked_at is not None

    wecom.confirm_groupmsg(task.msgid)
    message_tasks_poll()
    message_tasks_poll()  # a second poll changes nothing

    task.refresh_from_db()
    assert task.status == MessageTaskStatus.SENT and task.confirmed_at is not None
    rows = Touchpoint.objects.filter(id__in=[t.pk for t in touchpoints])
    assert {(t.status, t.sent_at is not None) for t in rows} == {(TouchpointStatus.SENT, True)}
    activities = Activity.objects.filter(kind=ActivityKind.TOUCHPOINT_SENT)
    assert sorted(a.idempotency_key for a in activities) == sorted(
        f"touchpoint:{t.pk}" for t in touchpoints
    )
    assert {a.staff_id for a in activities} == {staff.pk}


def test_send_results_not_a_contact_and_wecom_daily_limit_are_skipped(wecom) -> None:
    wecom.configure(groupmsg_auto_confirm=False)
    ((staff, customers),) = corp(wecom, customers=3).items()
    gone, limited, fine = customers
    # limited already received a mass message today (another SOP, confirmed).
    _s0, earlier = active_sop(content=ContentFactory(text="earlier"))
    due([limited], earlier)
    dispatch_batch(worker="t")
    wecom.confirm_groupmsg(MessageTask.objects.get().msgid)
    _sop, step = active_sop(content=ContentFactory(text="later"))
    touchpoints = due(customers, step)
    dispatch_batch(worker="t")
    task = MessageTask.objects.get(body={"text": {"content": "later"}})
    wecom.delete_follow(staff.wecom_userid, gone.external_userid, emit=False)
    wecom.confirm_groupmsg(task.msgid)

    message_tasks_poll()

    by_customer = {
        t.customer_id: t for t in Touchpoint.objects.filter(id__in=[t.pk for t in touchpoints])
    }
    assert (by_customer[gone.pk].status, by_customer[gone.pk].skip_reason) == (
        TouchpointStatus.SKIPPED,
        SkipReason.NOT_CONTACT,
    )
    assert (by_customer[limited.pk].status, by_customer[limited.pk].skip_reason) == (
        TouchpointStatus.SKIPPED,
        SkipReason.WECOM_LIMIT,
    )
    assert by_customer[fine.pk].status == TouchpointStatus.SENT
    # The refused message's unit is given back: only the earlier one counts.
    assert quota_used(customer_ids=[limited.pk], at=timezone.now()) == {limited.pk: 1}
    task.refresh_from_db()
    assert task.status == MessageTaskStatus.SENT


def test_unconfirmed_tasks_expire_after_the_confirm_days(wecom, settings) -> None:
    settings.SOP_CONFIRM_DAYS = 3
    wecom.configure(groupmsg_auto_confirm=False)
    ((_staff, customers),) = corp(wecom, customers=2).items()
    _sop, step = active_sop(content=ContentFactory(text="hi"))
    due(customers, step)
    dispatch_batch(worker="t")

    message_tasks_poll(now=timezone.now() + timedelta(days=2))
    assert MessageTask.objects.get().status == MessageTaskStatus.CREATED
    message_tasks_poll(now=timezone.now() + timedelta(days=4))

    assert MessageTask.objects.get().status == MessageTaskStatus.EXPIRED
    assert set(Touchpoint.objects.values_list("status", "skip_reason")) == {
        (TouchpointStatus.SKIPPED, SkipReason.EXPIRED)
    }
    assert quota_used(customer_ids=[c.pk for c in customers], at=timezone.now()) == {
        c.pk: 0 for c in customers
    }


# --- to-dos: done and snooze -----------------------------------------------------------


@pytest.fixture
def todo(wecom) -> Touchpoint:
    ((_staff, customers),) = corp(wecom, customers=1).items()
    _sop, step = active_sop(content=None, action=StepAction.TODO)
    (tp,) = due(customers, step, kind=TouchpointKind.TODO)
    dispatch_batch(worker="t")
    tp.refresh_from_db()
    assert tp.status == TouchpointStatus.TODO
    return tp


def _login(staff: Staff | None = None, **kw) -> object:
    user = UserFactory(**kw)
    if staff is not None:
        Staff.objects.filter(pk=staff.pk).update(user=user)
    return user


def test_the_assigned_staff_member_marks_a_todo_done(todo) -> None:
    user = _login(todo.staff)

    assert touchpoint_done(touchpoint=todo, user=user) is True
    assert touchpoint_done(touchpoint=todo, user=user) is False

    assert (todo.status, todo.done_by_id) == (TouchpointStatus.DONE, user.pk)
    activity = Activity.objects.get(idempotency_key=f"touchpoint:{todo.pk}")
    assert activity.kind == "touchpoint_done"


def test_their_store_manager_and_an_operator_may_too_but_no_one_else(todo) -> None:
    assert todo.staff is not None
    manager = StaffFactory(role=Role.MANAGER, store=todo.staff.store)
    other_store_manager = StaffFactory(role=Role.MANAGER)
    colleague = StaffFactory(store=todo.staff.store)

    with pytest.raises(PermissionDenied):
        touchpoint_done(touchpoint=todo, user=_login(colleague))
    with pytest.raises(PermissionDenied):
        touchpoint_done(touchpoint=todo, user=_login(other_store_manager))
    assert touchpoint_done(touchpoint=todo, user=_login(manager)) is True
    todo.status = TouchpointStatus.TODO
    Touchpoint.objects.filter(pk=todo.pk).update(status=TouchpointStatus.TODO)
    assert touchpoint_done(touchpoint=todo, user=_login(is_superuser=True)) is True


def test_only_open_touchpoints_can_be_done(todo) -> None:
    Touchpoint.objects.filter(pk=todo.pk).update(
        status=TouchpointStatus.SKIPPED, skip_reason=SkipReason.EXITED
    )
    with pytest.raises(ValidationError):
        touchpoint_done(touchpoint=todo, user=_login(is_superuser=True))


def test_snooze_moves_a_todo_within_seven_days(todo) -> None:
    user = _login(todo.staff)
    until = timezone.now() + timedelta(days=2)

    touchpoint_snooze(touchpoint=todo, until=until, user=user)
    assert todo.snoozed_until == until

    for bad in (timezone.now() - timedelta(minutes=1), timezone.now() + timedelta(days=8)):
        with pytest.raises(ValidationError):
            touchpoint_snooze(touchpoint=todo, until=bad, user=user)
    with pytest.raises(PermissionDenied):
        touchpoint_snooze(touchpoint=todo, until=until, user=_login(StaffFactory()))


def test_snoozing_a_pending_touchpoint_delays_it_and_a_sent_one_cannot_be(wecom) -> None:
    ((_staff, customers),) = corp(wecom, customers=2).items()
    _sop, step = active_sop(content=ContentFactory(text="hi"))
    pending, sent = due(customers, step)
    Touchpoint.objects.filter(pk=sent.pk).update(status=TouchpointStatus.SENT)
    operator = _login(is_superuser=True)
    until = timezone.now() + timedelta(days=1)

    touchpoint_snooze(touchpoint=pending, until=until, user=operator)
    assert pending.due_at == until
    assert dispatch_batch(worker="t").claimed == 0
    with pytest.raises(ValidationError):
        touchpoint_snooze(touchpoint=sent, until=until, user=operator)
