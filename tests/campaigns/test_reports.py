"""The campaign report: counts, conversions in the window, lift and its Newcombe interval,
per-SOP rows, row-level permission and a query budget."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import cast

import pytest
from django.utils import timezone

from campaigns.models import (
    Campaign,
    CampaignMember,
    EnrollmentStatus,
    SkipReason,
    TouchpointStatus,
)
from campaigns.selectors.reports import campaign_report, newcombe_interval, wilson_interval
from customers.models import Customer, OrderStatus
from funnel.models import Milestones
from tests.campaigns.factories import (
    CampaignFactory,
    EnrollmentFactory,
    SopFactory,
    SopVersionFactory,
    TouchpointFactory,
)
from tests.factories import CustomerFactory, OrderFactory

ENROLLED_AT = timezone.now() - timedelta(days=40)


def _member(campaign: Campaign, *, holdout: bool, customer: Customer | None = None) -> Customer:
    customer = customer or cast(Customer, CustomerFactory())
    CampaignMember.objects.create(
        campaign=campaign, customer=customer, is_holdout=holdout, enrolled_at=ENROLLED_AT
    )
    return customer


def _paid(customer: Customer, at: datetime, **kw) -> None:
    OrderFactory(customer=customer, paid_at=at, amount=Decimal("50.00"), **kw)


# --- the interval, against Newcombe (1998), Statistics in Medicine 17:873-890 -----------


@pytest.mark.parametrize(
    ("x1", "n1", "x2", "n2", "lower", "upper"),
    [
        (56, 70, 48, 80, 0.0524, 0.3339),  # Table II, examples (a)-(d), (h), method 10
        (9, 10, 3, 10, 0.1705, 0.8090),
        (6, 7, 2, 7, 0.0582, 0.8062),
        (5, 56, 0, 29, -0.0381, 0.1926),
        (0, 10, 0, 20, -0.1611, 0.2775),
    ],
)
def test_newcombe_interval_matches_the_published_examples(x1, n1, x2, n2, lower, upper) -> None:
    ci = newcombe_interval(x1, n1, x2, n2)
    assert ci is not None
    assert ci[0] == pytest.approx(lower, abs=5e-5)
    assert ci[1] == pytest.approx(upper, abs=5e-5)


def test_wilson_interval_matches_the_published_example_and_handles_empty_groups() -> None:
    # Newcombe (1998), Statistics in Medicine 17:857-872, Table I: 81/263 -> 0.2553-0.3662.
    lower, upper = wilson_interval(81, 263) or (0, 0)
    assert (round(lower, 4), round(upper, 4)) == (0.2553, 0.3662)
    assert wilson_interval(0, 0) is None
    assert newcombe_interval(1, 2, 0, 0) is None


# --- the report on a hand-built campaign ----------------------------------------------


@pytest.fixture
def built(db, operator_user):
    """10 treated (9 bought in the window) and 10 held out (3 did): the published 9/10 vs
    3/10 example, plus orders that must not count, and touchpoints of two SOPs."""
    campaign = CampaignFactory(goal="purchase", goal_days=30, holdout_percent=50)
    treated = [_member(campaign, holdout=False) for _ in range(10)]
    held = [_member(campaign, holdout=True) for _ in range(10)]
    for customer in treated[:9]:
        _paid(customer, ENROLLED_AT + timedelta(days=5))
    _paid(treated[9], ENROLLED_AT + timedelta(days=30, minutes=1))  # after the window
    for customer in held[:3]:
        _paid(customer, ENROLLED_AT + timedelta(days=29))
    _paid(held[3], ENROLLED_AT - timedelta(minutes=1))  # before joining
    _paid(
        held[4],
        ENROLLED_AT + timedelta(days=2),
        status=OrderStatus.REFUNDED,
        refunded_at=ENROLLED_AT + timedelta(days=3),
    )

    sop_a = SopFactory(name="A welcome", campaign=campaign)
    sop_b = SopFactory(name="B reminder", campaign=campaign)
    SopFactory(name="C unrelated")
    v_a = SopVersionFactory(sop=sop_a)
    v_b = SopVersionFactory(sop=sop_b)
    enrol_a = [
        EnrollmentFactory(version=v_a, customer=c, campaign=campaign, enrolled_at=ENROLLED_AT)
        for c in treated[:6]
    ]
    enrol_b = [
        EnrollmentFactory(version=v_b, customer=c, campaign=campaign, enrolled_at=ENROLLED_AT)
        for c in treated[6:]
    ]
    for c in held[:5]:
        EnrollmentFactory(
            version=v_a, customer=c, campaign=campaign, status=EnrollmentStatus.HOLDOUT
        )
    enrol_b[0].status = EnrollmentStatus.EXITED
    enrol_b[0].save()

    def tp(enrollment, status, reason=""):
        return TouchpointFactory(
            enrollment=enrollment, campaign=campaign, status=status, skip_reason=reason
        )

    for e in enrol_a[:4]:
        tp(e, TouchpointStatus.SENT)
    tp(enrol_a[4], TouchpointStatus.CREATED)
    tp(enrol_a[5], TouchpointStatus.SKIPPED, SkipReason.QUOTA)
    tp(enrol_b[0], TouchpointStatus.SKIPPED, SkipReason.EXITED)
    tp(enrol_b[1], TouchpointStatus.SKIPPED, SkipReason.QUOTA)
    tp(enrol_b[2], TouchpointStatus.DONE)
    tp(enrol_b[3], TouchpointStatus.PENDING)
    tp(enrol_b[3], TouchpointStatus.SENT)
    return campaign, treated, held, operator_user


def test_report_counts_members_touchpoints_and_conversions(built) -> None:
    campaign, _, _, operator = built
    report = campaign_report(campaign=campaign, user=operator)
    assert (report["members"], report["treatment"], report["holdout"]) == (20, 10, 10)
    assert report["enrolled"] == 10
    assert report["enrolled_holdout"] == 5
    assert report["sent"] == 5
    assert report["created"] == 1
    assert report["confirmed"] == 6  # 5 sent + 1 to-do done
    assert report["skipped"] == 3
    assert report["skipped_by_reason"] == {"exited": 1, "quota": 2}
    assert report["touchpoints"]["total"] == 11
    assert report["touchpoints"]["pending"] == 1
    assert report["converted"] == {"treatment": 9, "holdout": 3}
    assert report["rate"] == {"treatment": 0.9, "holdout": 0.3}
    assert report["lift"] == pytest.approx(0.6)


def test_report_lift_interval_by_hand(built) -> None:
    campaign, _, _, operator = built
    lower, upper = campaign_report(campaign=campaign, user=operator)["lift_ci"]
    # By hand: Wilson 9/10 = (0.5958, 0.9821), 3/10 = (0.1078, 0.6032);
    # 0.6 - sqrt((0.9 - 0.5958)^2 + (0.6032 - 0.3)^2) = 0.1705,
    # 0.6 + sqrt((0.9821 - 0.9)^2 + (0.3 - 0.1078)^2) = 0.8090.
    assert wilson_interval(9, 10) == pytest.approx((0.5958, 0.9821), abs=1e-4)
    assert wilson_interval(3, 10) == pytest.approx((0.1078, 0.6032), abs=1e-4)
    assert lower == pytest.approx(0.1705, abs=1e-4)
    assert upper == pytest.approx(0.8090, abs=1e-4)


def test_report_rows_per_sop(built) -> None:
    campaign, _, _, operator = built
    rows = {r["name"]: r for r in campaign_report(campaign=campaign, user=operator)["sops"]}
    assert list(rows) == ["A welcome", "B reminder"]
    a, b = rows["A welcome"], rows["B reminder"]
    assert (a["enrolled"], a["holdout"], a["sent"], a["created"], a["skipped"]) == (6, 5, 4, 1, 1)
    assert (b["enrolled"], b["exited"], b["sent"], b["confirmed"], b["skipped"]) == (4, 1, 1, 2, 2)
    assert b["touchpoints"]["pending"] == 1


def test_report_query_count_does_not_grow_with_members(
    built, django_assert_max_num_queries
) -> None:
    campaign, _, _, operator = built
    with django_assert_max_num_queries(5):
        campaign_report(campaign=campaign, user=operator)
    for _ in range(30):
        customer = _member(campaign, holdout=False)
        _paid(customer, ENROLLED_AT + timedelta(days=1))
    with django_assert_max_num_queries(5):
        report = campaign_report(campaign=campaign, user=operator)
    assert report["converted"]["treatment"] == 39


def test_an_empty_group_has_no_rate_and_no_lift(db, operator_user) -> None:
    campaign = CampaignFactory(holdout_percent=0)
    _paid(_member(campaign, holdout=False), ENROLLED_AT + timedelta(days=1))
    report = campaign_report(campaign=campaign, user=operator_user)
    assert report["rate"] == {"treatment": 1.0, "holdout": None}
    assert report["lift"] is None
    assert report["lift_ci"] is None
    empty = campaign_report(campaign=CampaignFactory(), user=operator_user)
    assert empty["members"] == 0
    assert empty["sops"] == []


# --- milestone goals ---------------------------------------------------------------------


def _milestones(customer: Customer, **fields) -> None:
    Milestones.objects.create(customer=customer, acquired_at=customer.acquired_at, **fields)


def test_first_purchase_counts_only_a_first_order_inside_the_window(db, operator_user) -> None:
    campaign = CampaignFactory(goal="first_purchase", goal_days=30)
    inside, before, after, none = (_member(campaign, holdout=False) for _ in range(4))
    _milestones(inside, revenue_at=ENROLLED_AT + timedelta(days=3))
    _milestones(before, revenue_at=ENROLLED_AT - timedelta(days=5))
    _paid(before, ENROLLED_AT + timedelta(days=2))  # a later order: not a first purchase
    _milestones(after, revenue_at=ENROLLED_AT + timedelta(days=31))
    del none  # no milestones row at all
    held = _member(campaign, holdout=True)
    _milestones(held, revenue_at=ENROLLED_AT + timedelta(days=30))  # the window's last moment
    report = campaign_report(campaign=campaign, user=operator_user)
    assert report["converted"] == {"treatment": 1, "holdout": 1}
    assert report["rate"] == {"treatment": 0.25, "holdout": 1.0}


@pytest.mark.parametrize(
    ("goal", "field"),
    [
        ("activation", "reached_activation_at"),
        ("retention", "reached_retention_at"),
        ("referral", "referral_at"),
    ],
)
def test_milestone_goals_read_their_milestone(db, operator_user, goal, field) -> None:
    campaign = CampaignFactory(goal=goal, goal_days=10)
    yes, early, other = (_member(campaign, holdout=False) for _ in range(3))
    _milestones(yes, **{field: ENROLLED_AT + timedelta(days=9)})
    _milestones(early, **{field: ENROLLED_AT - timedelta(seconds=1)})
    # A different milestone in the window does not count for this goal.
    others = {"reached_activation_at", "reached_retention_at", "referral_at"} - {field}
    _milestones(other, **dict.fromkeys(others, ENROLLED_AT + timedelta(days=1)))
    report = campaign_report(campaign=campaign, user=operator_user)
    assert report["converted"]["treatment"] == 1


def test_repurchase_is_a_paid_order_in_the_window_that_is_not_the_first(db, operator_user) -> None:
    campaign = CampaignFactory(goal="repurchase", goal_days=30)
    again, first_only, twice_inside, refunded_before = (
        _member(campaign, holdout=False) for _ in range(4)
    )
    _paid(again, ENROLLED_AT - timedelta(days=60))
    _paid(again, ENROLLED_AT - timedelta(days=30))
    _paid(again, ENROLLED_AT + timedelta(days=10))
    _paid(first_only, ENROLLED_AT + timedelta(days=10))
    _paid(twice_inside, ENROLLED_AT + timedelta(days=1))
    _paid(twice_inside, ENROLLED_AT + timedelta(days=2))
    _paid(
        refunded_before,
        ENROLLED_AT - timedelta(days=5),
        status=OrderStatus.REFUNDED,
        refunded_at=ENROLLED_AT - timedelta(days=4),
    )
    _paid(refunded_before, ENROLLED_AT + timedelta(days=5))
    report = campaign_report(campaign=campaign, user=operator_user)
    assert report["converted"]["treatment"] == 2


# --- permission ----------------------------------------------------------------------------


def test_store_staff_see_only_their_customers_in_the_report(world, operator_user) -> None:
    campaign = CampaignFactory(goal="purchase")
    _member(campaign, holdout=False, customer=world.customer_a)
    _member(campaign, holdout=True, customer=world.customer_a2)
    _member(campaign, holdout=False, customer=world.customer_b)
    _paid(world.customer_b, ENROLLED_AT + timedelta(days=1))
    sop = SopFactory(campaign=campaign)
    version = SopVersionFactory(sop=sop)
    for customer in (world.customer_a, world.customer_b):
        e = EnrollmentFactory(version=version, customer=customer, campaign=campaign)
        TouchpointFactory(enrollment=e, campaign=campaign, status=TouchpointStatus.SENT)

    clerk = campaign_report(campaign=campaign, user=world.clerk_a.user)
    assert (clerk["members"], clerk["treatment"], clerk["holdout"]) == (1, 1, 0)
    assert clerk["sent"] == 1
    assert clerk["converted"]["treatment"] == 0
    assert clerk["sops"][0]["enrolled"] == 1

    manager = campaign_report(campaign=campaign, user=world.manager_a.user)
    assert (manager["members"], manager["treatment"], manager["holdout"]) == (2, 1, 1)

    everyone = campaign_report(campaign=campaign, user=operator_user)
    assert (everyone["members"], everyone["sent"]) == (3, 2)
    assert everyone["converted"]["treatment"] == 1

    nobody = campaign_report(campaign=campaign, user=None)
    assert nobody["members"] == 0
