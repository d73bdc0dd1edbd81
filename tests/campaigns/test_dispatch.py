"""The dispatcher against the WeCom simulator (in-process): claims and leases, grouping
into message tasks, every skip reason, retries, and the reconciler after a lost answer."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from datetime import timedelta
from typing import Any, cast

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from campaigns.models import (
    Content,
    Enrollment,
    EnrollmentStatus,
    MessageTask,
    MessageTaskStatus,
    QuietAction,
    SkipReason,
    Sop,
    SopStatus,
    SopStep,
    SopVersion,
    StepAction,
    Touchpoint,
    TouchpointKind,
    TouchpointStatus,
)
from campaigns.services.dispatch import dispatch_batch, dispatch_until_idle, message_tasks_reconcile
from campaigns.services.quota import quota_consume, quota_used
from channels.wecom.simulator import Simulator
from customers.models import Customer, CustomerStatus, CustomerTag, Follow, Staff
from tests.campaigns.factories import ContentFactory, SopFactory, SopStepFactory, SopVersionFactory
from tests.channels.wecom_support import running_wecom
from tests.factories import OrderFactory, StoreFactory, TagFactory

pytestmark = pytest.mark.django_db


# --- a corp the simulator knows, and due touchpoints ---------------------------------


def corp(sim: Simulator, *, customers: int, staff: int = 1) -> dict[Staff, list[Customer]]:
    """Staff and customers mirroring the simulator's relationships: each customer once,
    owned and followed by one of the first ``staff`` members."""
    store = StoreFactory(name="徐汇店")
    pairs = list(sim.relationships())
    by_staff: dict[str, int] = {}
    for _eid, userid in pairs:
        by_staff[userid] = by_staff.get(userid, 0) + 1
    wanted = sorted(by_staff, key=lambda u: -by_staff[u])[:staff]
    members = {
        u: Staff.objects.create(wecom_userid=u, name=f"导购{u}", store=store) for u in wanted
    }
    out: dict[Staff, list[Customer]] = {s: [] for s in members.values()}
    seen: set[str] = set()
    for eid, userid in pairs:
        member = members.get(userid)
        if member is None or eid in seen or len(out[member]) >= customers:
            continue
        seen.add(eid)
        customer = Customer.objects.create(
            external_userid=eid, name=f"客户{len(seen)}", owner=member, store=store
        )
        Follow.objects.create(customer=customer, staff=member, added_at=timezone.now())
        out[member].append(customer)
    assert all(len(c) == customers for c in out.values()), "the simulator has too few contacts"
    return out


def active_sop(
    *, content: Content | None = None, action: str = StepAction.WECOM_MESSAGE, **version: Any
) -> tuple[Sop, SopStep]:
    sop = cast(Sop, SopFactory(status=SopStatus.ACTIVE))
    v = cast(SopVersion, SopVersionFactory(sop=sop, **version))
    step = cast(
        SopStep,
        SopStepFactory(
            version=v,
            position=0,
            action=action,
            content=content,
            **({} if action != StepAction.ADD_TAG else {"tag": TagFactory()}),
        ),
    )
    sop.current_version = v
    sop.save(update_fields=["current_version"])
    return sop, step


def due(
    customers: Sequence[Customer],
    step: SopStep,
    *,
    due_at: Any = None,
    kind: str = TouchpointKind.WECOM_MESSAGE,
) -> list[Touchpoint]:
    """One enrolment and one due touchpoint per customer (set-based, like enrolment)."""
    at = due_at or timezone.now() - timedelta(seconds=5)
    sop = step.version.sop
    enrollments = Enrollment.objects.bulk_create(
        [
            Enrollment(
                sop=sop,
                version=step.version,
                customer=c,
                trigger_key=f"manual:{step.pk}",
                trigger_at=at,
            )
            for c in customers
        ]
    )
    return Touchpoint.objects.bulk_create(
        [
            Touchpoint(enrollment=e, step=step, sop=sop, customer=e.customer, kind=kind, due_at=at)
            for e in enrollments
        ]
    )


def statuses(touchpoints: Sequence[Touchpoint]) -> dict[str, int]:
    out: dict[str, int] = {}
    for status in Touchpoint.objects.filter(id__in=[t.pk for t in touchpoints]).values_list(
        "status", flat=True
    ):
        out[status] = out.get(status, 0) + 1
    return out


def received(sim: Simulator) -> dict[str, int]:
    """external_userid -> how many message tasks WeCom holds for them."""
    counts: dict[str, int] = {}
    for template in sim.state.templates.values():
        for recipients in template.recipients.values():
            for eid in recipients:
                counts[eid] = counts.get(eid, 0) + 1
    return counts


def wait_for_templates(sim: Simulator, n: int) -> None:
    """The simulator finishes a delayed call after our client gave up on it."""
    deadline = time.monotonic() + 5
    while len(sim.state.templates) < n:
        assert time.monotonic() < deadline, "the simulator never created the task"
        time.sleep(0.05)


@pytest.fixture
def wecom(db, settings, django_capture_on_commit_callbacks) -> Iterator[Simulator]:
    with running_wecom(
        settings, django_capture_on_commit_callbacks, contacts=500, staff=3, seed=5
    ) as w:
        settings.WECOM_MESSAGE_QUOTA = "month"
        settings.SOP_MAX_ATTEMPTS = 3
        yield w.sim


# --- grouping --------------------------------------------------------------------------


def test_a_content_without_customer_values_is_one_call_for_a_hundred_customers(wecom) -> None:
    ((staff, customers),) = corp(wecom, customers=100).items()
    _sop, step = active_sop(content=ContentFactory(text="{store}本周上新, 来自{staff}"))
    touchpoints = due(customers, step)

    with CaptureQueriesContext(connection) as queries:
        result = dispatch_batch(worker="t")

    assert (result.claimed, result.created, result.tasks, result.calls) == (100, 100, 1, 1)
    assert len(queries) <= 40  # bounded: the same for 100 rows as for 1,000
    task = MessageTask.objects.get()
    assert task.status == MessageTaskStatus.CREATED and task.msgid
    assert task.body == {"text": {"content": f"徐汇店本周上新, 来自{staff.name}"}}
    assert statuses(touchpoints) == {TouchpointStatus.CREATED: 100}
    assert Touchpoint.objects.filter(dispatched_at__isnull=True).count() == 0
    assert len(wecom.state.templates) == 1
    assert received(wecom) == {c.external_userid: 1 for c in customers}
    assert quota_used(customer_ids=[c.pk for c in customers], at=timezone.now()) == {
        c.pk: 1 for c in customers
    }


def test_the_queries_of_a_batch_do_not_grow_with_its_size(wecom) -> None:
    ((_staff, customers),) = corp(wecom, customers=110).items()
    counts = []
    for text, group in (("ten", customers[:10]), ("a hundred", customers[10:])):
        _sop, step = active_sop(content=ContentFactory(text=text))
        due(group, step)
        with CaptureQueriesContext(connection) as queries:
            assert dispatch_batch(worker="t").created == len(group)
        counts.append(len(queries))
    assert counts[0] == counts[1]


def test_a_content_with_the_name_is_one_call_per_customer(wecom) -> None:
    ((_staff, customers),) = corp(wecom, customers=100).items()
    _sop, step = active_sop(content=ContentFactory(text="{name}, 您好"))
    due(customers, step)

    result = dispatch_batch(worker="t")

    assert (result.created, result.tasks, result.calls) == (100, 100, 100)
    bodies = {t["text"]["content"] for t in MessageTask.objects.values_list("body", flat=True)}
    assert bodies == {f"{c.name}, 您好" for c in customers}
    assert received(wecom) == {c.external_userid: 1 for c in customers}


def test_each_sender_gets_their_own_task(wecom) -> None:
    world = corp(wecom, customers=20, staff=2)
    assert len(world) == 2
    _sop, step = active_sop(content=ContentFactory(text="周末活动"))
    for customers in world.values():
        due(customers, step)

    result = dispatch_batch(worker="t")

    assert (result.created, result.tasks) == (40, 2)
    assert sorted(MessageTask.objects.values_list("recipients", flat=True)) == [20, 20]
    senders = {t.sender_id for t in MessageTask.objects.all()}
    assert senders == {s.pk for s in world}


# --- quota -----------------------------------------------------------------------------


def test_quota_skips_the_touchpoint_and_reports_it(wecom, settings) -> None:
    settings.WECOM_MESSAGE_QUOTA = "day"
    ((_staff, customers),) = corp(wecom, customers=3).items()
    _sop, step = active_sop(content=ContentFactory(text="hi"))
    spent = customers[0]
    assert quota_consume(customer_ids=[spent.pk], at=timezone.now()) == {spent.pk}
    touchpoints = due(customers, step)

    result = dispatch_batch(worker="t")

    over = Touchpoint.objects.get(customer=spent)
    assert (over.status, over.skip_reason) == (TouchpointStatus.SKIPPED, SkipReason.QUOTA)
    assert result.over_quota == [over.pk]
    assert result.skipped[SkipReason.QUOTA] == 1
    assert statuses(touchpoints) == {TouchpointStatus.CREATED: 2, TouchpointStatus.SKIPPED: 1}
    assert spent.external_userid not in received(wecom)


# --- claims and leases -----------------------------------------------------------------


def test_an_expired_lease_is_claimed_again_and_a_live_one_is_not(wecom) -> None:
    ((_staff, customers),) = corp(wecom, customers=3).items()
    _sop, step = active_sop(content=ContentFactory(text="hi"))
    dead, alive, future = due(customers, step)
    now = timezone.now()
    Touchpoint.objects.filter(pk=dead.pk).update(
        status=TouchpointStatus.CLAIMED,
        claimed_by="dead#1",
        lease_until=now - timedelta(seconds=1),
        attempts=1,
    )
    Touchpoint.objects.filter(pk=alive.pk).update(
        status=TouchpointStatus.CLAIMED,
        claimed_by="alive#1",
        lease_until=now + timedelta(seconds=60),
        attempts=1,
    )
    Touchpoint.objects.filter(pk=future.pk).update(due_at=now + timedelta(minutes=5))

    result = dispatch_batch(worker="t")

    assert (result.claimed, result.created) == (1, 1)
    dead.refresh_from_db()
    alive.refresh_from_db()
    assert (dead.status, dead.attempts) == (TouchpointStatus.CREATED, 2)
    assert (alive.status, alive.claimed_by) == (TouchpointStatus.CLAIMED, "alive#1")
    assert Touchpoint.objects.get(pk=future.pk).status == TouchpointStatus.PENDING


def test_a_claimed_row_of_a_calling_task_is_left_to_the_reconciler(wecom) -> None:
    ((staff, customers),) = corp(wecom, customers=1).items()
    _sop, step = active_sop(content=ContentFactory(text="hi"))
    (tp,) = due(customers, step)
    past = timezone.now() - timedelta(seconds=1)
    task = MessageTask.objects.create(
        sender=staff, body={"text": {"content": "hi"}}, body_hash="x", lease_until=past
    )
    Touchpoint.objects.filter(pk=tp.pk).update(
        status=TouchpointStatus.CLAIMED, lease_until=past, task=task
    )

    assert dispatch_batch(worker="t").claimed == 0


def test_dispatch_until_idle_drains_every_batch(wecom, settings) -> None:
    settings.SOP_DISPATCH_BATCH = 7
    ((_staff, customers),) = corp(wecom, customers=30).items()
    _sop, step = active_sop(content=ContentFactory(text="hi"))
    touchpoints = due(customers, step)

    result = dispatch_until_idle(worker="t", budget_seconds=30)

    assert (result.claimed, result.created, result.tasks) == (30, 30, 5)
    assert statuses(touchpoints) == {TouchpointStatus.CREATED: 30}


# --- the checks ------------------------------------------------------------------------


def test_a_paused_sop_releases_its_touchpoints_unchanged_and_archived_skips(wecom) -> None:
    ((_staff, customers),) = corp(wecom, customers=2).items()
    sop_p, step_p = active_sop(content=ContentFactory(text="p"))
    sop_a, step_a = active_sop(content=ContentFactory(text="a"))
    (paused,) = due(customers[:1], step_p)
    (archived,) = due(customers[1:], step_a)
    # Paused between the claim and the checks (the claim itself passes paused SOPs over).
    claimed_rows = __import__("campaigns.services._claim", fromlist=["x"]).touchpoints_claim(
        token="w#1", now=timezone.now(), limit=10
    )
    Sop.objects.filter(pk=sop_p.pk).update(status=SopStatus.PAUSED)
    Sop.objects.filter(pk=sop_a.pk).update(status=SopStatus.ARCHIVED)
    from campaigns.services.dispatch import DispatchResult, _process

    result = DispatchResult(claimed=len(claimed_rows))
    _process(claimed_rows, token="w#1", now=timezone.now(), result=result)

    paused.refresh_from_db()
    archived.refresh_from_db()
    assert (paused.status, paused.attempts, paused.claimed_by) == (TouchpointStatus.PENDING, 0, "")
    assert (archived.status, archived.skip_reason) == (TouchpointStatus.SKIPPED, SkipReason.PAUSED)
    # Later batches pass the paused SOP's due row over instead of spinning on it.
    assert dispatch_batch(worker="t").claimed == 0


def test_lost_customers_and_exit_conditions_exit(wecom) -> None:
    ((_staff, customers),) = corp(wecom, customers=3).items()
    _sop, step = active_sop(content=ContentFactory(text="hi"), exit_on_purchase=True)
    lost, buyer, stays = due(customers, step)
    Customer.objects.filter(pk=lost.customer_id).update(
        status=CustomerStatus.LOST, lost_at=timezone.now()
    )
    OrderFactory(customer=buyer.customer, paid_at=timezone.now() - timedelta(seconds=1))

    result = dispatch_batch(worker="t")

    assert result.skipped[SkipReason.EXITED] == 2
    for tp in (lost, buyer):
        tp.refresh_from_db()
        assert (tp.status, tp.skip_reason) == (TouchpointStatus.SKIPPED, SkipReason.EXITED)
    assert Touchpoint.objects.get(pk=stays.pk).status == TouchpointStatus.CREATED
    assert Enrollment.objects.get(pk=buyer.enrollment_id).status == "exited"


def test_the_sender_is_the_owner_while_a_contact_else_the_latest_follower(wecom) -> None:
    world = corp(wecom, customers=2, staff=2)
    (owner, mine), (other, _theirs) = world.items()
    _sop, step = active_sop(content=ContentFactory(text="hi"))
    still, moved = due(mine, step)
    Follow.objects.filter(customer=moved.customer, staff=owner).update(deleted_at=timezone.now())
    Follow.objects.create(customer=moved.customer, staff=other, added_at=timezone.now())

    dispatch_batch(worker="t")

    assert Touchpoint.objects.get(pk=still.pk).staff_id == owner.pk
    moved.refresh_from_db()
    assert moved.staff_id == other.pk
    eid = moved.customer.external_userid
    if (eid, other.wecom_userid) in set(wecom.relationships()):
        assert moved.status == TouchpointStatus.CREATED
    else:  # WeCom does not know that follow: fail_list, and the quota unit comes back
        assert (moved.status, moved.skip_reason) == (
            TouchpointStatus.SKIPPED,
            SkipReason.NOT_CONTACT,
        )
        assert quota_used(customer_ids=[moved.customer_id], at=timezone.now()) == {
            moved.customer_id: 0
        }


def test_no_active_follower_is_not_a_contact(wecom) -> None:
    ((_staff, customers),) = corp(wecom, customers=1).items()
    _sop, step = active_sop(content=ContentFactory(text="hi"))
    (tp,) = due(customers, step)
    Follow.objects.filter(customer=tp.customer).update(deleted_at=timezone.now())

    assert dispatch_batch(worker="t").skipped[SkipReason.NOT_CONTACT] == 1
    tp.refresh_from_db()
    assert (tp.status, tp.skip_reason) == (TouchpointStatus.SKIPPED, SkipReason.NOT_CONTACT)
    assert wecom.state.templates == {}


def _all_day_quiet() -> dict[str, Any]:
    # Quiet from one minute ago to one minute before now tomorrow-ish: always quiet now.
    local_now = timezone.localtime()
    start = (local_now - timedelta(minutes=1)).time().replace(second=0, microsecond=0)
    end = (local_now + timedelta(minutes=30)).time().replace(second=0, microsecond=0)
    return {"quiet_start": start, "quiet_end": end}


def test_quiet_hours_defer_to_their_end_or_skip(wecom) -> None:
    ((_staff, customers),) = corp(wecom, customers=2).items()
    quiet = _all_day_quiet()
    _s1, defer_step = active_sop(
        content=ContentFactory(text="d"), quiet_action=QuietAction.DEFER, **quiet
    )
    _s2, skip_step = active_sop(
        content=ContentFactory(text="s"), quiet_action=QuietAction.SKIP, **quiet
    )
    (deferred,) = due(customers[:1], defer_step)
    (skipped,) = due(customers[1:], skip_step)

    result = dispatch_batch(worker="t")

    assert (result.deferred, result.skipped[SkipReason.QUIET_HOURS]) == (1, 1)
    deferred.refresh_from_db()
    skipped.refresh_from_db()
    assert (deferred.status, deferred.attempts) == (TouchpointStatus.PENDING, 0)
    assert timezone.localtime(deferred.due_at).time().replace(second=0) == quiet["quiet_end"]
    assert deferred.due_at > timezone.now()
    assert (skipped.status, skipped.skip_reason) == (
        TouchpointStatus.SKIPPED,
        SkipReason.QUIET_HOURS,
    )
    assert wecom.state.templates == {}


def test_quiet_hours_across_midnight_do_not_hold_a_daytime_send(wecom) -> None:
    ((_staff, customers),) = corp(wecom, customers=1).items()
    local_now = timezone.localtime()
    start = (local_now + timedelta(hours=2)).time().replace(second=0, microsecond=0)
    end = (local_now + timedelta(hours=3)).time().replace(second=0, microsecond=0)
    _sop, step = active_sop(content=ContentFactory(text="hi"), quiet_start=start, quiet_end=end)
    due(customers, step)
    assert dispatch_batch(worker="t").created == 1


def test_the_frequency_cap_counts_messages_of_every_sop(wecom) -> None:
    ((_staff, customers),) = corp(wecom, customers=2).items()
    _s0, earlier_step = active_sop(content=ContentFactory(text="earlier"))
    (earlier,) = due(customers[:1], earlier_step)
    Touchpoint.objects.filter(pk=earlier.pk).update(
        status=TouchpointStatus.SENT, dispatched_at=timezone.now() - timedelta(days=1)
    )
    _s1, capped_step = active_sop(content=ContentFactory(text="capped"), cap_count=1, cap_days=7)
    capped, free = due(customers, capped_step)

    result = dispatch_batch(worker="t")

    assert result.skipped[SkipReason.FREQUENCY_CAP] == 1
    capped.refresh_from_db()
    assert (capped.status, capped.skip_reason) == (
        TouchpointStatus.SKIPPED,
        SkipReason.FREQUENCY_CAP,
    )
    assert Touchpoint.objects.get(pk=free.pk).status == TouchpointStatus.CREATED


def test_a_todo_gets_the_instruction_and_rendered_text_and_a_tag_is_added(wecom) -> None:
    ((staff, customers),) = corp(wecom, customers=2).items()
    _s1, todo_step = active_sop(
        content=ContentFactory(text="{name}, 新品到店"), action=StepAction.TODO
    )
    SopStep.objects.filter(pk=todo_step.pk).update(instruction="打电话邀约")
    todo_step.refresh_from_db()
    _s2, tag_step = active_sop(content=None, action=StepAction.ADD_TAG)
    (todo,) = due(customers[:1], todo_step, kind=TouchpointKind.TODO)
    (tag,) = due(customers[1:], tag_step, kind=TouchpointKind.ADD_TAG)

    result = dispatch_batch(worker="t")

    assert (result.todo, result.done) == (1, 1)
    todo.refresh_from_db()
    assert todo.status == TouchpointStatus.TODO and todo.staff_id == staff.pk
    assert todo.rendered_text == f"打电话邀约\n\n{customers[0].name}, 新品到店"
    tag.refresh_from_db()
    assert tag.status == TouchpointStatus.DONE
    assert CustomerTag.objects.filter(customer=customers[1], tag=tag_step.tag).exists()
    assert wecom.state.templates == {}


def test_an_enrolment_completes_when_its_last_step_is_dispatched(wecom) -> None:
    ((_staff, customers),) = corp(wecom, customers=2).items()
    sop, first = active_sop(content=ContentFactory(text="day 0"))
    later = SopStepFactory(version=first.version, position=1, content=ContentFactory())
    (now_tp,) = due(customers[:1], first)
    Touchpoint.objects.create(
        enrollment=now_tp.enrollment,
        step=later,
        sop=sop,
        customer=customers[0],
        kind=TouchpointKind.WECOM_MESSAGE,
        due_at=timezone.now() + timedelta(days=3),
    )
    (single,) = due(customers[1:], first)

    dispatch_batch(worker="t")

    now_tp.enrollment.refresh_from_db()
    single.enrollment.refresh_from_db()
    assert now_tp.enrollment.status == EnrollmentStatus.ACTIVE  # day 3 is still ahead
    assert single.enrollment.status == EnrollmentStatus.COMPLETED


# --- WeCom errors ----------------------------------------------------------------------


def test_a_busy_wecom_is_retried_with_backoff_then_failed(wecom) -> None:
    ((_staff, customers),) = corp(wecom, customers=2).items()
    _sop, step = active_sop(content=ContentFactory(text="hi"))
    touchpoints = due(customers, step)
    wecom.inject(45009, path="externalcontact/add_msg_template", count=None)

    before = timezone.now()
    result = dispatch_batch(worker="t")
    assert (result.retried, result.created) == (2, 0)
    first = Touchpoint.objects.get(pk=touchpoints[0].pk)
    assert (first.status, first.attempts, first.task_id) == (TouchpointStatus.PENDING, 1, None)
    assert before + timedelta(seconds=29) < first.due_at < timezone.now() + timedelta(seconds=31)
    assert MessageTask.objects.get().status == MessageTaskStatus.FAILED
    assert quota_used(customer_ids=[first.customer_id], at=before) == {first.customer_id: 0}

    # The second attempt backs off twice as long; the third (SOP_MAX_ATTEMPTS) fails.
    later = timezone.now() + timedelta(seconds=31)
    dispatch_batch(worker="t", now=later)
    second = Touchpoint.objects.get(pk=first.pk)
    assert (second.status, second.attempts) == (TouchpointStatus.PENDING, 2)
    assert second.due_at > timezone.now() + timedelta(seconds=55)
    dispatch_batch(worker="t", now=later + timedelta(seconds=61))
    assert statuses(touchpoints) == {TouchpointStatus.FAILED: 2}
    assert "45009" in Touchpoint.objects.get(pk=first.pk).error
    assert wecom.state.templates == {}


def test_a_permanent_error_fails_with_its_text(wecom) -> None:
    ((_staff, customers),) = corp(wecom, customers=1).items()
    _sop, step = active_sop(content=ContentFactory(text="hi"))
    (tp,) = due(customers, step)
    wecom.inject(48002, path="externalcontact/add_msg_template")

    assert dispatch_batch(worker="t").failed == 1
    tp.refresh_from_db()
    assert tp.status == TouchpointStatus.FAILED and "48002" in tp.error
    assert MessageTask.objects.get().status == MessageTaskStatus.FAILED


def test_a_lost_answer_is_adopted_from_wecom_and_never_sent_twice(wecom, settings) -> None:
    settings.WECOM_TIMEOUT = 1
    ((_staff, customers),) = corp(wecom, customers=5).items()
    _sop, step = active_sop(content=ContentFactory(text="只发一次"))
    touchpoints = due(customers, step)
    # WeCom creates the task, but its answer comes after our timeout.
    wecom.inject(path="externalcontact/add_msg_template", delay_ms=1500)

    result = dispatch_batch(worker="t")
    assert (result.uncertain, result.created) == (5, 0)
    task = MessageTask.objects.get()
    assert task.status == MessageTaskStatus.CALLING
    assert statuses(touchpoints) == {TouchpointStatus.CLAIMED: 5}
    # Nothing else may take those rows while the task is undecided.
    assert dispatch_batch(worker="t", now=timezone.now() + timedelta(hours=1)).claimed == 0

    assert message_tasks_reconcile(now=timezone.now()) == 0  # the lease still holds
    wait_for_templates(wecom, 1)
    assert message_tasks_reconcile(now=timezone.now() + timedelta(hours=1)) == 1

    task.refresh_from_db()
    (template,) = wecom.state.templates.values()
    assert (task.status, task.msgid) == (MessageTaskStatus.CREATED, template.msgid)
    assert statuses(touchpoints) == {TouchpointStatus.CREATED: 5}
    assert dispatch_batch(worker="t", now=timezone.now() + timedelta(hours=2)).claimed == 0
    assert received(wecom) == {c.external_userid: 1 for c in customers}


def test_a_call_that_never_reached_wecom_is_released_and_sent_once(wecom) -> None:
    ((_staff, customers),) = corp(wecom, customers=3).items()
    _sop, step = active_sop(content=ContentFactory(text="重试"))
    touchpoints = due(customers, step)
    wecom.inject(path="externalcontact/add_msg_template", http_status=502)

    assert dispatch_batch(worker="t").uncertain == 3
    assert message_tasks_reconcile(now=timezone.now() + timedelta(hours=1)) == 1

    assert MessageTask.objects.get().status == MessageTaskStatus.FAILED
    rows = Touchpoint.objects.filter(id__in=[t.pk for t in touchpoints])
    assert {(t.status, t.attempts, t.task_id) for t in rows} == {
        (TouchpointStatus.PENDING, 1, None)
    }
    assert quota_used(customer_ids=[customers[0].pk], at=timezone.now()) == {customers[0].pk: 0}

    result = dispatch_batch(worker="t")
    assert result.created == 3
    assert received(wecom) == {c.external_userid: 1 for c in customers}


def test_two_tasks_with_one_body_adopt_only_their_own_message(wecom, settings) -> None:
    """Same sender, same text, different customers: the reconciler matches recipients."""
    settings.WECOM_TIMEOUT = 1
    ((_staff, customers),) = corp(wecom, customers=4).items()
    _sop, step = active_sop(content=ContentFactory(text="同一条"))
    first = due(customers[:2], step)
    wecom.inject(path="externalcontact/add_msg_template", http_status=502)
    dispatch_batch(worker="t")  # never reached WeCom
    second = due(customers[2:], step, due_at=timezone.now())
    wecom.inject(path="externalcontact/add_msg_template", delay_ms=1500)
    dispatch_batch(worker="t")  # reached WeCom, answer lost
    wait_for_templates(wecom, 1)

    assert message_tasks_reconcile(now=timezone.now() + timedelta(hours=1)) == 2

    assert statuses(first) == {TouchpointStatus.PENDING: 2}
    assert statuses(second) == {TouchpointStatus.CREATED: 2}
    assert MessageTask.objects.filter(status=MessageTaskStatus.CREATED).count() == 1
