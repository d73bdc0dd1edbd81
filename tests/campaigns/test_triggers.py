"""Each trigger kind through the real write services (``customers.services`` announcing
facts, the funnel's receiver, then ours), and the scanned triggers."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from campaigns import receivers
from campaigns.models import Enrollment, SopStatus, Touchpoint, TriggerKind
from campaigns.services.enrollment import trigger_occurrences, triggers_scan
from campaigns.services.schedule import corp_tz
from campaigns.services.sops import sop_activate, sop_pause
from customers.hooks import Fact, announce, facts_changed
from customers.models import ActivitySource
from customers.services import (
    FollowInput,
    customer_mark_lost,
    customer_tag_add,
    customer_update,
    follows_upsert,
)
from funnel import receivers as funnel_receivers
from tests.campaigns.test_enrollment import make_sop
from tests.factories import ChannelFactory, CustomerFactory, StaffFactory, TagFactory
from tests.funnel.helpers import act, customer, pay

pytestmark = pytest.mark.django_db


def keys(sop: Any) -> list[tuple[int, str]]:
    return sorted(Enrollment.objects.filter(sop=sop).values_list("customer_id", "trigger_key"))


class TestWiring:
    def test_the_funnel_receiver_runs_before_ours(self) -> None:
        live = [ref() for _key, ref, *_ in facts_changed.receivers]
        assert funnel_receivers.facts_changed_refresh in live
        assert receivers.facts_changed_sops in live
        assert live.index(funnel_receivers.facts_changed_refresh) < live.index(
            receivers.facts_changed_sops
        )

    def test_an_announcement_with_no_running_sop_costs_one_query(
        self, django_assert_max_num_queries: Any
    ) -> None:
        c = CustomerFactory()
        make_sop(trigger_kind=TriggerKind.CONTACT_ADDED, activate=False)  # a draft only
        with CaptureQueriesContext(connection) as queries:
            receivers.facts_changed_sops(
                sender=Fact, customer_ids=frozenset({c.pk}), facts=frozenset(Fact)
            )
        assert len(queries) <= 1
        with django_assert_max_num_queries(0):
            receivers.facts_changed_sops(
                sender=Fact,
                customer_ids=frozenset({c.pk}),
                facts=frozenset({Fact.ACTIVITY}),
                activity_kinds=frozenset({"touchpoint_sent"}),
            )


class TestContactAdded:
    def test_a_new_customer_is_enrolled_by_the_create_service(self) -> None:
        sop = make_sop(trigger_kind=TriggerKind.CONTACT_ADDED)
        c = customer(timezone.now())
        assert keys(sop) == [(c.pk, "acquired")]
        enrollment = Enrollment.objects.get(sop=sop)
        assert enrollment.trigger_at == c.acquired_at
        assert Touchpoint.objects.filter(enrollment=enrollment).count() == 1

    def test_a_follow_of_a_customer_acquired_after_activation_enrols_them(self) -> None:
        sop = make_sop(trigger_kind=TriggerKind.CONTACT_ADDED)
        # Written without an announcement, as a sync's first pass would leave it.
        c = CustomerFactory(acquired_at=timezone.now())
        follows_upsert(
            rows=[
                FollowInput(customer_id=c.pk, staff_id=StaffFactory().pk, added_at=timezone.now())
            ]
        )
        assert keys(sop) == [(c.pk, "acquired")]

    def test_contacts_acquired_before_activation_are_not_welcomed(self) -> None:
        sop = make_sop(trigger_kind=TriggerKind.CONTACT_ADDED)
        old = customer(timezone.now() - timedelta(days=400))
        follows_upsert(
            rows=[
                FollowInput(customer_id=old.pk, staff_id=StaffFactory().pk, added_at=timezone.now())
            ]
        )
        assert keys(sop) == []

    def test_only_the_configured_channels(self) -> None:
        wanted, other = ChannelFactory(), ChannelFactory()
        sop = make_sop(
            trigger_kind=TriggerKind.CONTACT_ADDED, trigger_config={"channel_ids": [wanted.pk]}
        )
        a = customer(timezone.now(), source_channel_id=wanted.pk)
        customer(timezone.now(), source_channel_id=other.pk)
        customer(timezone.now())
        assert keys(sop) == [(a.pk, "acquired")]

    def test_announcing_the_same_facts_twice_enrols_once(self) -> None:
        sop = make_sop(trigger_kind=TriggerKind.CONTACT_ADDED)
        c = customer(timezone.now())
        announce([c.pk], Fact.CUSTOMER, Fact.FOLLOW)
        customer_update(customer=c, data={"name": "Renamed"})
        assert Enrollment.objects.filter(sop=sop).count() == 1
        assert Touchpoint.objects.filter(sop=sop).count() == 1

    def test_a_paused_sop_enrols_nobody(self) -> None:
        sop = sop_pause(sop=make_sop(trigger_kind=TriggerKind.CONTACT_ADDED))
        customer(timezone.now())
        assert sop.status == SopStatus.PAUSED
        assert keys(sop) == []

    def test_a_lost_customer_is_outside_every_audience(self) -> None:
        sop = make_sop(trigger_kind=TriggerKind.CONTACT_ADDED)
        c = CustomerFactory(acquired_at=timezone.now())
        customer_mark_lost(customer=c)
        assert keys(sop) == []


class TestStageEntered:
    def test_reaching_activation_through_an_activity_enrols(self) -> None:
        sop = make_sop(trigger_kind=TriggerKind.STAGE_ENTERED, trigger_config={"stage": 2})
        c = customer(timezone.now() - timedelta(days=3))
        assert keys(sop) == []
        now = timezone.now()
        act(c, "message_received", now)
        local_day = now.astimezone(corp_tz()).date().isoformat()
        assert keys(sop) == [(c.pk, f"stage:2:{local_day}")]

    def test_reaching_revenue_through_an_order_enrols(self) -> None:
        sop = make_sop(trigger_kind=TriggerKind.STAGE_ENTERED, trigger_config={"stage": 4})
        now = timezone.now()
        c = customer(now - timedelta(days=30))
        act(c, "message_received", now - timedelta(days=29))
        act(c, "message_received", now - timedelta(days=10), source=ActivitySource.API)
        assert keys(sop) == []
        pay(c, now)
        enrollment = Enrollment.objects.get(sop=sop)
        assert enrollment.customer_id == c.pk
        assert enrollment.trigger_key.startswith("stage:4:")
        assert enrollment.trigger_at == now

    def test_a_stage_reached_before_activation_does_not_enrol(self) -> None:
        c = customer(timezone.now() - timedelta(days=3))
        act(c, "message_received", timezone.now() - timedelta(days=2))
        sop = make_sop(trigger_kind=TriggerKind.STAGE_ENTERED, trigger_config={"stage": 2})
        announce([c.pk], Fact.ACTIVITY)
        assert keys(sop) == []


class TestTagAdded:
    def test_adding_the_tag_enrols(self) -> None:
        tag, other = TagFactory(), TagFactory()
        sop = make_sop(trigger_kind=TriggerKind.TAG_ADDED, trigger_config={"tag_id": tag.pk})
        c = CustomerFactory()
        customer_tag_add(customer=c, tag=other, source=ActivitySource.DASHBOARD)
        assert keys(sop) == []
        customer_tag_add(customer=c, tag=tag, source=ActivitySource.DASHBOARD)
        day = timezone.now().astimezone(corp_tz()).date().isoformat()
        assert keys(sop) == [(c.pk, f"tag:{tag.pk}:{day}")]

    def test_a_tag_added_before_activation_does_not_enrol(self) -> None:
        tag = TagFactory()
        c = CustomerFactory()
        customer_tag_add(customer=c, tag=tag, source=ActivitySource.DASHBOARD)
        sop = make_sop(trigger_kind=TriggerKind.TAG_ADDED, trigger_config={"tag_id": tag.pk})
        announce([c.pk], Fact.TAG)
        assert keys(sop) == []

    def test_reactivating_after_a_pause_starts_from_the_resume(self) -> None:
        tag = TagFactory()
        sop = make_sop(trigger_kind=TriggerKind.TAG_ADDED, trigger_config={"tag_id": tag.pk})
        first = sop.activated_at
        sop_pause(sop=sop)
        c = CustomerFactory()
        customer_tag_add(customer=c, tag=tag, source=ActivitySource.DASHBOARD)  # while paused
        sop = sop_activate(sop=sop, user=None)
        assert first is not None and sop.activated_at is not None and sop.activated_at > first
        announce([c.pk], Fact.TAG)  # e.g. a later re-sync of the same tags
        assert keys(sop) == []


class TestRepurchaseDue:
    def test_a_due_repeat_buyer_is_enrolled_once_per_purchase(self) -> None:
        sop = make_sop(trigger_kind=TriggerKind.REPURCHASE_DUE)
        now = timezone.now()
        due = customer(now - timedelta(days=100))
        pay(due, now - timedelta(days=70))
        last = now - timedelta(days=40)
        pay(due, last)
        not_yet = customer(now - timedelta(days=100))
        pay(not_yet, now - timedelta(days=60))
        pay(not_yet, now - timedelta(days=5))
        assert triggers_scan(now=now) == 1
        assert triggers_scan(now=now + timedelta(hours=1)) == 0
        day = last.astimezone(corp_tz()).date().isoformat()
        assert keys(sop) == [(due.pk, f"due:{day}")]
        assert Enrollment.objects.get(sop=sop).trigger_at == now


class TestBirthday:
    def test_birthdays_days_before_are_enrolled_at_local_midnight(self) -> None:
        tz = corp_tz()
        now = datetime(2026, 6, 10, 9, 30, tzinfo=tz)
        sop = make_sop(
            trigger_kind=TriggerKind.DATE_FIELD,
            trigger_config={"field": "birthday", "days_before": 3},
        )
        birthday = CustomerFactory(birthday=date(1990, 6, 13))
        CustomerFactory(birthday=date(1990, 6, 10))
        CustomerFactory(birthday=None)
        assert triggers_scan(now=now) == 1
        assert triggers_scan(now=now + timedelta(hours=1)) == 0
        enrollment = Enrollment.objects.get(sop=sop)
        assert (enrollment.customer_id, enrollment.trigger_key) == (birthday.pk, "birthday:2026")
        assert enrollment.trigger_at == datetime.combine(date(2026, 6, 10), time.min, tzinfo=tz)

    def test_a_leap_day_birthday_is_celebrated_on_feb_28_in_a_common_year(self) -> None:
        tz = corp_tz()
        sop = make_sop(
            trigger_kind=TriggerKind.DATE_FIELD,
            trigger_config={"field": "birthday", "days_before": 0},
        )
        leap = CustomerFactory(birthday=date(2000, 2, 29))
        assert sop.current_version is not None
        common = trigger_occurrences(
            version=sop.current_version,
            since=timezone.now(),
            until=datetime(2027, 2, 28, 12, tzinfo=tz),
        )
        assert [(r[0], r[1]) for r in common] == [(leap.pk, "birthday:2027")]
        leap_year_28 = trigger_occurrences(
            version=sop.current_version,
            since=timezone.now(),
            until=datetime(2028, 2, 28, 12, tzinfo=tz),
        )
        assert leap_year_28 == []
        leap_year_29 = trigger_occurrences(
            version=sop.current_version,
            since=timezone.now(),
            until=datetime(2028, 2, 29, 12, tzinfo=tz),
        )
        assert [(r[0], r[1]) for r in leap_year_29] == [(leap.pk, "birthday:2028")]
