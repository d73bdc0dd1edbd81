"""factory_boy factories for the core tables."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import factory
from django.contrib.auth import get_user_model
from django.utils import timezone

from channels.models import Channel, ChannelKind
from customers.models import (
    Activity,
    Customer,
    CustomerTag,
    Follow,
    Note,
    Order,
    Staff,
    Store,
    Tag,
    TagGroup,
)
from scrm.roles import Role


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.PostGenerationMethodCall("set_password", "pass-1234-word")

    @factory.post_generation
    def _save(obj, create, extracted, **kwargs):
        if create:
            obj.save()


class StoreFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Store

    code = factory.Sequence(lambda n: f"S{n:03d}")
    name = factory.Sequence(lambda n: f"Store {n}")
    city = "上海"


class StaffFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Staff

    name = factory.Sequence(lambda n: f"店员{n}")
    wecom_userid = factory.Sequence(lambda n: f"staff{n}")
    store = factory.SubFactory(StoreFactory)
    role = Role.STAFF
    user = None


class ChannelFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Channel

    name = factory.Sequence(lambda n: f"Channel {n}")
    kind = ChannelKind.ADS
    cost = Decimal("1000.00")


class CustomerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Customer

    name = factory.Sequence(lambda n: f"客户{n}")
    external_id = factory.Sequence(lambda n: f"cust-{n}")
    phone = factory.Sequence(lambda n: f"138{n:08d}")
    acquired_at = factory.LazyFunction(lambda: timezone.now() - timedelta(days=30))


class FollowFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Follow

    customer = factory.SubFactory(CustomerFactory)
    staff = factory.SubFactory(StaffFactory)
    added_at = factory.LazyAttribute(lambda f: f.customer.acquired_at)


class TagGroupFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = TagGroup

    name = factory.Sequence(lambda n: f"Group {n}")


class TagFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Tag

    group = factory.SubFactory(TagGroupFactory)
    name = factory.Sequence(lambda n: f"Tag {n}")


class CustomerTagFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = CustomerTag

    customer = factory.SubFactory(CustomerFactory)
    tag = factory.SubFactory(TagFactory)


class OrderFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Order

    external_id = factory.Sequence(lambda n: f"ord-{n}")
    customer = factory.SubFactory(CustomerFactory)
    amount = Decimal("99.00")
    paid_at = factory.LazyFunction(lambda: timezone.now() - timedelta(days=1))


class ActivityFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Activity

    customer = factory.SubFactory(CustomerFactory)
    kind = "message_received"
    occurred_at = factory.LazyFunction(timezone.now)
    idempotency_key = factory.Sequence(lambda n: f"act-{n}")


class NoteFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Note

    customer = factory.SubFactory(CustomerFactory)
    body = "Prefers the rose serum."
