"""Enrolment: audience, touchpoint rows, quiet hours, idempotency, holdout, query budget."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from campaigns.models import (
    Enrollment,
    EnrollmentStatus,
    Sop,
    SopStatus,
    StepAction,
    Touchpoint,
    TouchpointKind,
    TouchpointStatus,
    TriggerKind,
)
from campaigns.selectors.audience import audience_qs
from campaigns.services.enrollment import sop_enroll, sop_enroll_segment, trigger_occurrences
from campaigns.services.schedule import corp_tz, step_due_at
from campaigns.services.sops import sop_activate, sop_create, sop_pause
from customers.models import Customer, CustomerStatus
from funnel.models import Milestones
from tests.campaigns.factories import CampaignFactory, ContentFactory
from tests.factories import (
    ActivityFactory,
    ChannelFactory,
    CustomerFactory,
    CustomerTagFactory,
    FollowFactory,
    StaffFactory,
    StoreFactory,
    TagFactory,
)

pytestmark = pytest.mark.django_db


def message_step(**kwargs: Any) -> dict[str, Any]:
    return {"action": StepAction.WECOM_MESSAGE, "content": ContentFactory().pk, **kwargs}


def make_sop(
    *,
    trigger_kind: str = TriggerKind.MANUAL,
    trigger_config: Mapping[str, Any] | None = None,
    steps: Sequence[Mapping[str, Any]] | None = None,
    activate: bool = True,
    **data: Any,
) -> Sop:
    """An SOP made and activated through the real services."""
    sop = sop_create(
        data={
            "name": "Welcome",
            "trigger_kind": trigger_kind,
            "trigger_config": dict(trigger_config or {}),
            "steps": list(steps) if steps is not None else [message_step()],
            **data,
        },
        user=None,
    )
    if activate:
        sop = sop_activate(sop=sop, user=None)
    return sop


def audience_ids(**audience: Any) -> set[int]:
    sop = make_sop(audience=audience, activate=False)
    assert sop.current_version is not None
    return set(audience_qs(sop.current_version).values_list("id", flat=True))


class TestManualEnrolment:
    def test_the_audience_is_enrolled_with_one_touchpoint_per_step(self) -> None:
        customers = CustomerFactory.create_batch(3)
        CustomerFactory(status=CustomerStatus.LOST, lost_at=timezone.now())
        sop = make_sop(
            steps=[
                message_step(offset_days=0),
                {"action": StepAction.TODO, "instruction": "Call them", "offset_days": 3},
                {"action": StepAction.ADD_TAG, "tag": TagFactory().pk, "offset_minutes": 30},
            ]
        )
        result = sop_enroll_segment(sop=sop, user=None)
        assert (result.enrolled, result.holdout, result.touchpoints) == (3, 0, 9)
        enrollments = Enrollment.objects.filter(sop=sop)
        assert {e.customer_id for e in enrollments} == {c.pk for c in customers}
        assert len({e.trigger_key for e in enrollments}) == 1
        assert enrollments[0].trigger_key.startswith("manual:")
        rows = Touchpoint.objects.filter(sop=sop)
        assert rows.count() == 9
        assert {r.status for r in rows} == {TouchpointStatus.PENDING}
        assert {r.kind for r in rows} == {
            TouchpointKind.WECOM_MESSAGE,
            TouchpointKind.TODO,
            TouchpointKind.ADD_TAG,
        }
        for row in rows.select_related("enrollment", "step"):
            assert row.customer_id == row.enrollment.customer_id
            assert row.due_at == step_due_at(step=row.step, trigger_at=row.enrollment.trigger_at)

    def test_enrolling_the_same_occurrences_twice_enrols_once(self) -> None:
        customers = CustomerFactory.create_batch(2)
        sop = make_sop()
        now = timezone.now()
        rows = [(c.pk, "acquired", now) for c in customers]
        first = sop_enroll(sop=sop, rows=rows)
        second = sop_enroll(sop=sop, rows=rows)
        assert (first.enrolled, first.touchpoints, first.skipped) == (2, 2, 0)
        assert (second.enrolled, second.touchpoints, second.skipped) == (0, 0, 2)
        assert Enrollment.objects.filter(sop=sop).count() == 2
        assert Touchpoint.objects.filter(sop=sop).count() == 2

    def test_rows_outside_the_audience_are_skipped(self) -> None:
        tag = TagFactory()
        inside = CustomerFactory()
        CustomerTagFactory(customer=inside, tag=tag)
        outside = CustomerFactory()
        sop = make_sop(audience={"tags_any": [tag.pk]})
        now = timezone.now()
        result = sop_enroll(sop=sop, rows=[(inside.pk, "k", now), (outside.pk, "k", now)])
        assert (result.enrolled, result.skipped) == (1, 1)
        assert list(Enrollment.objects.values_list("customer_id", flat=True)) == [inside.pk]

    def test_a_paused_or_draft_sop_enrols_nobody(self) -> None:
        customer = CustomerFactory()
        draft = make_sop(activate=False)
        paused = sop_pause(sop=make_sop())
        now = timezone.now()
        for sop in (draft, paused):
            result = sop_enroll(sop=sop, rows=[(customer.pk, "k", now)])
            assert (result.enrolled, result.skipped) == (0, 1)
        assert paused.status == SopStatus.PAUSED
        assert not Enrollment.objects.exists()

    def test_quiet_hours_defer_moves_the_due_time_to_their_end(self) -> None:
        customer = CustomerFactory()
        sop = make_sop(
            steps=[message_step(offset_days=1, at_time="23:00")],
            quiet_start="22:00",
            quiet_end="08:00",
            quiet_action="defer",
        )
        trigger = datetime(2026, 3, 1, 12, 0, tzinfo=corp_tz())
        sop_enroll(sop=sop, rows=[(customer.pk, "k", trigger)])
        touchpoint = Touchpoint.objects.get()
        assert touchpoint.due_at == datetime(2026, 3, 3, 8, 0, tzinfo=corp_tz())

    def test_quiet_hours_skip_leaves_the_due_time_for_the_dispatcher_to_skip(self) -> None:
        customer = CustomerFactory()
        sop = make_sop(
            steps=[message_step(offset_days=1, at_time="23:00")],
            quiet_start="22:00",
            quiet_end="08:00",
            quiet_action="skip",
        )
        trigger = datetime(2026, 3, 1, 12, 0, tzinfo=corp_tz())
        sop_enroll(sop=sop, rows=[(customer.pk, "k", trigger)])
        touchpoint = Touchpoint.objects.get()
        assert touchpoint.due_at == datetime(2026, 3, 2, 23, 0, tzinfo=corp_tz())
        assert touchpoint.status == TouchpointStatus.PENDING

    def test_manual_occurrences_are_the_audience_now(self) -> None:
        customers = CustomerFactory.create_batch(2)
        sop = make_sop()
        assert sop.current_version is not None
        rows = trigger_occurrences(version=sop.current_version, since=timezone.now())
        assert {r[0] for r in rows} == {c.pk for c in customers}
        assert len({r[1] for r in rows}) == 1

    def test_query_count_does_not_grow_from_500_to_5000_customers(self) -> None:
        counts = {}
        for size in (500, 5_000):
            store = StoreFactory()
            Customer.objects.bulk_create(
                Customer(name=f"c{i}", external_id=f"bulk-{size}-{i}", store=store)
                for i in range(size)
            )
            sop = make_sop(
                audience={"store_ids": [store.pk]},
                steps=[message_step(), message_step(offset_days=3)],
            )
            with CaptureQueriesContext(connection) as queries:
                result = sop_enroll_segment(sop=sop, user=None)
            assert (result.enrolled, result.touchpoints) == (size, 2 * size)
            assert Touchpoint.objects.filter(sop=sop).count() == 2 * size
            counts[size] = len(queries)
        # The steps, the audience chunk, one INSERT of the enrolments, one of their
        # touchpoints, and the savepoint pair, whatever the size.
        assert counts[500] == counts[5_000] <= 6


class TestAudience:
    def test_tags_any_and_tags_none(self) -> None:
        vip, blocked = TagFactory(), TagFactory()
        a, b, c = CustomerFactory.create_batch(3)
        CustomerTagFactory(customer=a, tag=vip)
        CustomerTagFactory(customer=b, tag=vip)
        CustomerTagFactory(customer=b, tag=blocked)
        assert audience_ids(tags_any=[vip.pk]) == {a.pk, b.pk}
        assert audience_ids(tags_none=[blocked.pk]) == {a.pk, c.pk}
        assert audience_ids(tags_any=[vip.pk], tags_none=[blocked.pk]) == {a.pk}

    def test_stages(self) -> None:
        a, b = CustomerFactory.create_batch(2)
        never = CustomerFactory()  # no milestones row yet: at acquisition
        for customer, stage in ((a, 2), (b, 4)):
            Milestones.objects.create(
                customer=customer, acquired_at=customer.acquired_at, stage=stage
            )
        assert audience_ids(stages=[4, 5]) == {b.pk}
        assert audience_ids(stages=[1, 2]) == {a.pk, never.pk}

    def test_channel_store_and_staff(self) -> None:
        channel, store = ChannelFactory(), StoreFactory()
        staff = StaffFactory()
        by_channel = CustomerFactory(source_channel=channel)
        in_store = CustomerFactory(store=store)
        owned = CustomerFactory(owner=staff)
        followed = CustomerFactory()
        FollowFactory(customer=followed, staff=staff)
        unfollowed = CustomerFactory()
        FollowFactory(customer=unfollowed, staff=staff, deleted_at=timezone.now())
        assert audience_ids(channel_ids=[channel.pk]) == {by_channel.pk}
        assert audience_ids(store_ids=[store.pk]) == {in_store.pk}
        assert audience_ids(staff_ids=[staff.pk]) == {owned.pk, followed.pk}

    def test_acquired_between_is_inclusive_local_days(self) -> None:
        tz = corp_tz()
        before = CustomerFactory(acquired_at=datetime(2026, 2, 28, 23, 59, tzinfo=tz))
        first = CustomerFactory(acquired_at=datetime(2026, 3, 1, 0, 0, tzinfo=tz))
        last = CustomerFactory(acquired_at=datetime(2026, 3, 31, 23, 59, tzinfo=tz))
        after = CustomerFactory(acquired_at=datetime(2026, 4, 1, 0, 0, tzinfo=tz))
        assert audience_ids(acquired_from="2026-03-01", acquired_to="2026-03-31") == {
            first.pk,
            last.pk,
        }
        assert audience_ids(acquired_to="2026-02-28") >= {before.pk}
        assert after.pk in audience_ids(acquired_from="2026-04-01")
        assert before.pk not in audience_ids(acquired_from="2026-04-01")

    def test_active_within_days_ignores_system_activities(self) -> None:
        engaged, system_only, long_ago = CustomerFactory.create_batch(3)
        now = timezone.now()
        ActivityFactory(customer=engaged, kind="message_received", occurred_at=now)
        ActivityFactory(customer=system_only, kind="touchpoint_sent", occurred_at=now)
        ActivityFactory(
            customer=long_ago, kind="message_received", occurred_at=now - timedelta(days=40)
        )
        assert audience_ids(active_within_days=30) == {engaged.pk}

    def test_lost_customers_are_never_in_an_audience(self) -> None:
        active = CustomerFactory()
        CustomerFactory(status=CustomerStatus.LOST, lost_at=timezone.now())
        assert audience_ids() == {active.pk}

    def test_the_audience_is_one_query(self, django_assert_num_queries: Any) -> None:
        tag, staff = TagFactory(), StaffFactory()
        sop = make_sop(
            audience={
                "tags_any": [tag.pk],
                "tags_none": [tag.pk],
                "stages": [1, 2],
                "staff_ids": [staff.pk],
                "active_within_days": 7,
                "acquired_from": date(2026, 1, 1).isoformat(),
            },
            activate=False,
        )
        assert sop.current_version is not None
        with django_assert_num_queries(1):
            list(audience_qs(sop.current_version))


class TestCampaignHoldout:
    """Last: the campaign module belongs to another helper."""

    def test_holdout_enrolments_get_no_touchpoints(self) -> None:
        from campaigns.models import CampaignMember
        from campaigns.services.campaigns import is_holdout

        campaign = CampaignFactory(holdout_percent=50)
        customers = CustomerFactory.create_batch(60)
        sop = make_sop(campaign=campaign.pk, steps=[message_step(), message_step(offset_days=1)])
        result = sop_enroll_segment(sop=sop, user=None)
        held = {
            c.pk for c in customers if is_holdout(salt=campaign.salt, customer_id=c.pk, percent=50)
        }
        assert 0 < len(held) < 60
        assert result.holdout == len(held)
        assert result.enrolled == 60 - len(held)
        holdout = Enrollment.objects.filter(sop=sop, status=EnrollmentStatus.HOLDOUT)
        assert set(holdout.values_list("customer_id", flat=True)) == held
        assert not Touchpoint.objects.filter(enrollment__in=holdout).exists()
        assert Touchpoint.objects.filter(sop=sop, campaign=campaign).count() == 2 * (60 - len(held))
        assert (
            set(
                CampaignMember.objects.filter(campaign=campaign, is_holdout=True).values_list(
                    "customer_id", flat=True
                )
            )
            == held
        )
