"""factory_boy factories for the campaigns tables (SOPs, versions, steps, content)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import cast

import factory
from django.utils import timezone

from campaigns.models import (
    Campaign,
    Content,
    CouponBatch,
    Enrollment,
    Sop,
    SopStatus,
    SopStep,
    SopVersion,
    StepAction,
    Touchpoint,
    TouchpointKind,
    TriggerKind,
)
from tests.factories import CustomerFactory


class ContentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Content

    name = factory.Sequence(lambda n: f"Content {n}")
    text = "您好 {name} - {staff}"


class CampaignFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Campaign

    name = factory.Sequence(lambda n: f"Campaign {n}")
    salt = factory.Sequence(lambda n: f"salt{n:028d}")


class CouponBatchFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = CouponBatch

    name = factory.Sequence(lambda n: f"Coupon {n}")
    value = Decimal("20.00")


class SopFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Sop

    name = factory.Sequence(lambda n: f"SOP {n}")
    status = SopStatus.ACTIVE
    activated_at = factory.LazyFunction(lambda: timezone.now() - timedelta(days=1))


class SopVersionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = SopVersion

    sop = factory.SubFactory(SopFactory)
    number = 1
    trigger_kind = TriggerKind.MANUAL
    published_at = factory.LazyFunction(timezone.now)


class SopStepFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = SopStep

    version = factory.SubFactory(SopVersionFactory)
    position = factory.Sequence(lambda n: n)
    action = StepAction.WECOM_MESSAGE
    content = factory.SubFactory(ContentFactory)


class EnrollmentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Enrollment

    version = factory.SubFactory(SopVersionFactory)
    sop = factory.LazyAttribute(lambda e: e.version.sop)
    customer = factory.SubFactory(CustomerFactory)
    trigger_key = factory.Sequence(lambda n: f"manual:{n}")
    trigger_at = factory.LazyFunction(timezone.now)


class TouchpointFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Touchpoint

    enrollment = factory.SubFactory(EnrollmentFactory)
    step = factory.SubFactory(SopStepFactory, version=factory.SelfAttribute("..enrollment.version"))
    sop = factory.LazyAttribute(lambda t: t.enrollment.sop)
    customer = factory.LazyAttribute(lambda t: t.enrollment.customer)
    kind = TouchpointKind.WECOM_MESSAGE
    due_at = factory.LazyFunction(timezone.now)


def sop_with_steps(*, trigger_kind: str = TriggerKind.MANUAL, steps: int = 1, **version) -> Sop:
    """An active SOP whose current version has ``steps`` WeCom-message steps (day i)."""
    sop = cast(Sop, SopFactory())
    v = cast(SopVersion, SopVersionFactory(sop=sop, trigger_kind=trigger_kind, **version))
    for i in range(steps):
        SopStepFactory(version=v, position=i, offset_days=i)
    sop.current_version = v
    sop.save(update_fields=["current_version"])
    return sop


def current_version(sop: Sop) -> SopVersion:
    """The SOP's current version (tests build SOPs that always have one)."""
    assert sop.current_version is not None
    return sop.current_version
