"""The demo data set: deterministic plan, idempotent seed, working logins and token."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db.models import Max
from django.test import override_settings
from rest_framework.authtoken.models import Token

from channels.models import ChannelKind
from customers.models import Customer, Order, OrderStatus, Staff
from scrm.demo import (
    API_CLIENT_USERNAME,
    DEMO_PASSWORD,
    HISTORY_DAYS,
    demo_anchor,
    demo_counts,
    demo_plan,
    demo_seed,
)
from scrm.roles import INTEGRATION_GROUP, Role, role_of

ANCHOR = datetime(2026, 6, 30, 12, 0, tzinfo=UTC)
CJK = re.compile(r"[\u4e00-\u9fff]")


def test_the_same_seed_and_anchor_give_the_same_plan() -> None:
    assert demo_plan(seed=7, anchor=ANCHOR, customers=300) == demo_plan(
        seed=7, anchor=ANCHOR, customers=300
    )
    assert demo_plan(seed=8, anchor=ANCHOR, customers=300) != demo_plan(
        seed=7, anchor=ANCHOR, customers=300
    )


def test_the_plan_looks_like_a_cosmetics_chain() -> None:
    plan = demo_plan(anchor=ANCHOR)

    assert 4 <= len(plan.stores) <= 6
    assert all(CJK.search(s.name) and CJK.search(s.city) for s in plan.stores)
    assert len(plan.staff) == 25
    roles = [s.role for s in plan.staff]
    assert roles.count(Role.OPERATOR) == 1
    assert roles.count(Role.MANAGER) == len(plan.stores)
    assert {c.kind for c in plan.channels} >= set(ChannelKind) - {ChannelKind.OTHER}
    assert all(c.cost >= 0 for c in plan.channels)

    customers = plan.customers
    assert len(customers) == 2000
    assert customers[0].external_id == "demo-c-00001"
    assert sum(bool(CJK.search(c.name)) for c in customers) > 1800
    assert any(not c.name.isascii() and not CJK.search(c.name[-1]) for c in customers)  # emoji
    oldest = ANCHOR - timedelta(days=HISTORY_DAYS + 1)
    assert all(oldest <= c.acquired_at <= ANCHOR for c in customers)

    index = {c.external_id: n for n, c in enumerate(customers)}
    referred = [c for c in customers if c.referred_by]
    assert 0.05 < len(referred) / len(customers) < 0.11
    assert all(index[c.referred_by] < index[c.external_id] for c in referred if c.referred_by)

    paid = [o for o in plan.orders if o.status == OrderStatus.PAID]
    buyers = {o.customer for o in paid}
    repeaters = {c for c in buyers if sum(o.customer == c for o in paid) >= 2}
    assert 0.38 < len(buyers) / len(customers) < 0.52
    assert 0.33 < len(repeaters) / len(buyers) < 0.50
    assert any(o.status == OrderStatus.REFUNDED for o in plan.orders)
    assert all(o.paid_at <= ANCHOR for o in plan.orders)
    assert all(a.occurred_at <= ANCHOR for a in plan.activities)
    assert len({a.key for a in plan.activities}) == len(plan.activities)
    follows = {(f.customer, f.staff) for f in plan.follows}
    assert len(follows) == len(plan.follows)
    assert {
        "message_received",
        "member_joined",
        "coupon_claimed",
        "form_submitted",
        "page_viewed",
        "store_visit",
        "contact_added",
    } <= {a.kind for a in plan.activities}


@pytest.mark.django_db
def test_seeding_twice_leaves_the_same_rows_untouched() -> None:
    first = demo_seed(customers=120, anchor=ANCHOR)
    touched = Customer.objects.aggregate(last=Max("updated_at"))["last"]
    orders_touched = Order.objects.aggregate(last=Max("updated_at"))["last"]

    second = demo_seed(customers=120)

    assert first.counts["customers"] == 120
    assert second.counts == first.counts
    assert sum(second.created.values()) == 0
    assert second.anchor == ANCHOR  # read back from the first seed, not "now"
    assert demo_anchor() == ANCHOR
    assert Customer.objects.aggregate(last=Max("updated_at"))["last"] == touched
    assert Order.objects.aggregate(last=Max("updated_at"))["last"] == orders_touched
    assert second.api_token == first.api_token


@pytest.mark.django_db
def test_demo_logins_have_their_roles_and_the_api_client_a_token() -> None:
    report = demo_seed(customers=40, anchor=ANCHOR)
    users = get_user_model().objects

    operator = users.get(username="operator")
    assert operator.check_password(DEMO_PASSWORD)
    assert role_of(operator) == Role.OPERATOR
    manager = users.get(username="sh_manager")
    assert manager.check_password(DEMO_PASSWORD)
    assert role_of(manager) == Role.MANAGER
    assert manager.staff_profile.store is not None
    clerk = users.get(username="sh_clerk1")
    assert role_of(clerk) == Role.STAFF
    assert Staff.objects.filter(user__isnull=False).count() == 25

    token = Token.objects.get(key=report.api_token)
    assert token.user.username == API_CLIENT_USERNAME
    assert token.user.groups.filter(name=INTEGRATION_GROUP).exists()
    assert role_of(token.user) == Role.INTEGRATION


@pytest.mark.django_db
def test_seed_demo_command_prints_the_logins_and_the_token() -> None:
    out = StringIO()

    call_command("seed_demo", customers=30, allow_without_debug=True, stdout=out)

    text = out.getvalue()
    token = Token.objects.get(user__username=API_CLIENT_USERNAME).key
    assert "operator" in text
    assert DEMO_PASSWORD in text
    assert token in text
    assert demo_counts()["customers"] == 30


@pytest.mark.django_db
def test_seed_demo_refuses_to_run_with_debug_off() -> None:
    with override_settings(DEBUG=False), pytest.raises(CommandError, match="published password"):
        call_command("seed_demo", customers=5, stdout=StringIO())

    assert not Customer.objects.exists()
