"""Exit conditions: bought, lost, reached a stage, through the real write services."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from campaigns.models import (
    Enrollment,
    EnrollmentStatus,
    SkipReason,
    Touchpoint,
    TouchpointStatus,
    TriggerKind,
)
from campaigns.services.enrollment import enrollments_exit_due, sop_enroll
from customers.services import customer_mark_lost
from tests.campaigns.test_enrollment import make_sop, message_step
from tests.funnel.helpers import act, customer, pay

pytestmark = pytest.mark.django_db


def three_steps() -> list[dict[str, Any]]:
    return [message_step(), message_step(offset_days=2), message_step(offset_days=5)]


def enrol(sop: Any, c: Any, at: Any = None) -> Enrollment:
    sop_enroll(sop=sop, rows=[(c.pk, "k", at or timezone.now() - timedelta(hours=1))])
    return Enrollment.objects.get(sop=sop, customer=c)


def first_sent(enrollment: Enrollment) -> Touchpoint:
    sent = Touchpoint.objects.filter(enrollment=enrollment).order_by("due_at").first()
    assert sent is not None
    Touchpoint.objects.filter(pk=sent.pk).update(status=TouchpointStatus.SENT)
    return sent


def assert_exited(enrollment: Enrollment, reason: str, sent: Touchpoint) -> None:
    enrollment.refresh_from_db()
    assert (enrollment.status, enrollment.exit_reason) == (EnrollmentStatus.EXITED, reason)
    assert enrollment.exited_at is not None
    rest = Touchpoint.objects.filter(enrollment=enrollment).exclude(pk=sent.pk)
    assert rest.count() == 2
    assert {(t.status, t.skip_reason) for t in rest} == {
        (TouchpointStatus.SKIPPED, SkipReason.EXITED)
    }
    assert Touchpoint.objects.get(pk=sent.pk).status == TouchpointStatus.SENT


class TestExits:
    def test_a_purchase_after_the_trigger_exits_when_configured(self) -> None:
        sop = make_sop(exit_on_purchase=True, steps=three_steps())
        c = customer(timezone.now() - timedelta(days=5))
        enrollment = enrol(sop, c)
        sent = first_sent(enrollment)
        pay(c, timezone.now())
        assert_exited(enrollment, "bought", sent)

    def test_a_purchase_does_not_exit_when_not_configured(self) -> None:
        sop = make_sop(exit_on_purchase=False, steps=three_steps())
        c = customer(timezone.now() - timedelta(days=5))
        enrollment = enrol(sop, c)
        pay(c, timezone.now())
        enrollment.refresh_from_db()
        assert enrollment.status == EnrollmentStatus.ACTIVE
        assert not Touchpoint.objects.filter(status=TouchpointStatus.SKIPPED).exists()

    def test_a_purchase_before_the_trigger_does_not_count(self) -> None:
        sop = make_sop(exit_on_purchase=True, steps=three_steps())
        c = customer(timezone.now() - timedelta(days=5))
        pay(c, timezone.now() - timedelta(days=2))
        enrollment = enrol(sop, c)
        assert enrollments_exit_due(enrollment_ids=[enrollment.pk], now=timezone.now()) == {}
        enrollment.refresh_from_db()
        assert enrollment.status == EnrollmentStatus.ACTIVE

    def test_a_lost_customer_exits(self) -> None:
        sop = make_sop(steps=three_steps())  # exit_on_lost defaults to True
        c = customer(timezone.now() - timedelta(days=5))
        enrollment = enrol(sop, c)
        sent = first_sent(enrollment)
        customer_mark_lost(customer=c)
        assert_exited(enrollment, "lost", sent)

    def test_reaching_the_exit_stage_exits(self) -> None:
        sop = make_sop(trigger_kind=TriggerKind.CONTACT_ADDED, exit_stage=2, steps=three_steps())
        c = customer(timezone.now())
        enrollment = Enrollment.objects.get(sop=sop, customer=c)
        sent = first_sent(enrollment)
        act(c, "message_received", timezone.now())  # activation: stage 2
        assert_exited(enrollment, "reached_stage", sent)

    def test_the_check_reports_each_reason_and_leaves_the_others(self) -> None:
        sop = make_sop(exit_on_purchase=True, exit_stage=2, steps=three_steps())
        lost, bought, stays = (customer(timezone.now() - timedelta(days=5)) for _ in range(3))
        enrolments = {c.pk: enrol(sop, c) for c in (lost, bought, stays)}
        # Write the facts without the receiver's help, then check explicitly.
        from customers.models import Customer, Order

        Customer.objects.filter(pk=lost.pk).update(status="lost", lost_at=timezone.now())
        Order.objects.create(external_id="o-1", customer=bought, amount=10, paid_at=timezone.now())
        reasons = enrollments_exit_due(
            enrollment_ids=[e.pk for e in enrolments.values()], now=timezone.now()
        )
        assert reasons == {
            enrolments[lost.pk].pk: "lost",
            enrolments[bought.pk].pk: "bought",
        }
        assert Enrollment.objects.get(pk=enrolments[stays.pk].pk).status == "active"
        assert (
            Touchpoint.objects.filter(
                enrollment=enrolments[stays.pk], status=TouchpointStatus.PENDING
            ).count()
            == 3
        )
