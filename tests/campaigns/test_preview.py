"""The SOP preview on a small hand-built case: who enters (audience, holdout), due times
with quiet hours, collisions with another active SOP on the same local day, the quota,
the calendar, the CSV streamed, and the query count not growing with the customers."""

from __future__ import annotations

import csv
import io
from datetime import datetime, time, timedelta
from typing import Any, cast
from zoneinfo import ZoneInfo

import pytest
from django.test import Client

from campaigns.models import QuietAction, QuotaUsage, SopStatus, TriggerKind
from campaigns.selectors.preview import Outcome, sop_preview
from campaigns.services.quota import quota_period
from customers.models import Customer
from tests.campaigns.factories import (
    EnrollmentFactory,
    SopFactory,
    SopStepFactory,
    SopVersionFactory,
    TouchpointFactory,
    current_version,
    sop_with_steps,
)
from tests.conftest import World
from tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db

TZ = ZoneInfo("Asia/Shanghai")
# A Monday morning, 09:00 in Shanghai.
NOW = datetime(2026, 6, 1, 9, 0, tzinfo=TZ)


def draft_sop(**version: Any) -> Any:
    """A draft manual SOP: step 1 day 0 at 23:00 (quiet hours 22:00-08:00), step 2 day 1
    at 10:00."""
    sop = SopFactory(status=SopStatus.DRAFT, activated_at=None)
    v = SopVersionFactory(
        sop=sop,
        trigger_kind=TriggerKind.MANUAL,
        quiet_start=time(22, 0),
        quiet_end=time(8, 0),
        published_at=None,
        **version,
    )
    SopStepFactory(version=v, position=0, offset_days=0, at_time=time(23, 0))
    SopStepFactory(version=v, position=1, offset_days=1, at_time=time(10, 0))
    sop.current_version = v
    sop.save(update_fields=["current_version"])
    return sop


def test_preview_of_a_draft_defers_quiet_hours_and_finds_collisions_and_quota(
    world: World, operator_user: Any, settings: Any
) -> None:
    settings.WECOM_MESSAGE_QUOTA = "day"  # one message per customer per day
    sop = draft_sop(quiet_action=QuietAction.DEFER)
    # Another active SOP has a message for Alice tomorrow at 15:00 (Shanghai).
    other = sop_with_steps(steps=1)
    TouchpointFactory(
        enrollment=EnrollmentFactory(version=other.current_version, customer=world.customer_a),
        step=current_version(other).steps.first(),
        due_at=datetime(2026, 6, 2, 15, 0, tzinfo=TZ),
    )
    preview = sop_preview(sop_or_version=sop, now=NOW, window_days=7, user=operator_user)

    summary = preview.summary
    assert summary.entering == 3  # the three persona customers
    assert summary.touchpoints == 6
    assert summary.quiet_deferred == 3  # 23:00 is quiet: moved to 08:00 next day
    rows = {(r.customer_id, r.step): r for r in preview.rows}
    first = rows[(world.customer_a.pk, 1)]
    assert first.due_at == datetime(2026, 6, 2, 8, 0, tzinfo=TZ)
    assert first.outcome in (Outcome.DEFERRED, Outcome.OVER_QUOTA)
    # Both steps now fall on 2 June with a daily quota of 1: the second is over quota,
    # and Alice's also collide with the other SOP's message that day.
    second = rows[(world.customer_a.pk, 2)]
    assert second.due_at == datetime(2026, 6, 2, 10, 0, tzinfo=TZ)
    assert second.outcome == Outcome.OVER_QUOTA
    assert second.collides_with == (other.name,)
    assert rows[(world.customer_b.pk, 2)].collides_with == ()
    # Alice: the other SOP's pending message uses the day's one unit already.
    assert first.outcome == Outcome.OVER_QUOTA
    assert rows[(world.customer_b.pk, 1)].outcome == Outcome.DEFERRED
    assert summary.collisions == 2
    assert summary.over_quota == 4  # Alice both, Anna and Bob their second
    assert summary.customers_over_quota == 3
    assert [(d.day.isoformat(), d.steps, d.collisions) for d in preview.calendar] == [
        ("2026-06-02", {1: 3, 2: 3}, 2)
    ]


def test_quota_already_used_in_the_period_counts(world: World, operator_user: Any) -> None:
    sop = draft_sop(quiet_action=QuietAction.SKIP)
    start, limit = quota_period(NOW.date())
    QuotaUsage.objects.create(customer=world.customer_b, period_start=start, used=limit)
    preview = sop_preview(sop_or_version=sop, now=NOW, window_days=7, user=operator_user)
    rows = {(r.customer_id, r.step): r for r in preview.rows}
    # Skip in quiet hours: the 23:00 step is not sent, and counts no quota.
    assert rows[(world.customer_a.pk, 1)].outcome == Outcome.SKIPPED_QUIET
    assert rows[(world.customer_a.pk, 2)].outcome == Outcome.SCHEDULED
    assert rows[(world.customer_b.pk, 2)].outcome == Outcome.OVER_QUOTA
    assert preview.summary.quiet_skipped == 3
    assert preview.summary.touchpoints == 3


def test_event_triggers_replay_the_last_days_and_honour_the_audience(
    world: World, operator_user: Any
) -> None:
    sop = SopFactory(status=SopStatus.DRAFT, activated_at=None)
    v = SopVersionFactory(
        sop=sop,
        trigger_kind=TriggerKind.CONTACT_ADDED,
        audience={"store_ids": [world.store_a.pk]},
    )
    SopStepFactory(version=v, position=0, offset_days=0, offset_minutes=30)
    sop.current_version = v
    sop.save(update_fields=["current_version"])
    recent_a = cast(
        Customer, CustomerFactory(store=world.store_a, acquired_at=NOW - timedelta(days=2))
    )
    CustomerFactory(store=world.store_b, acquired_at=NOW - timedelta(days=2))  # not audience
    CustomerFactory(store=world.store_a, acquired_at=NOW - timedelta(days=20))  # too old
    preview = sop_preview(sop_or_version=v, now=NOW, window_days=7, user=operator_user)
    assert preview.summary.replayed is True
    assert preview.summary.entering == 1
    assert preview.summary.outside_audience == 1
    assert [r.customer_id for r in preview.rows] == [recent_a.pk]
    assert preview.rows[0].due_at == recent_a.acquired_at + timedelta(minutes=30)


def test_the_campaign_holdout_enters_nobody_and_is_counted(
    world: World, operator_user: Any
) -> None:
    from tests.campaigns.factories import CampaignFactory

    sop = draft_sop()
    sop.campaign = CampaignFactory(holdout_percent=50)
    sop.save()
    preview = sop_preview(sop_or_version=sop, now=NOW, window_days=7, user=operator_user)
    held = [r for r in preview.rows if r.outcome == Outcome.HOLDOUT]
    assert preview.summary.holdout == len(held)
    assert preview.summary.entering + preview.summary.holdout == 3
    assert all(r.step is None for r in held)


def test_preview_queries_do_not_grow_with_customers(
    world: World, operator_user: Any, django_assert_max_num_queries: Any
) -> None:
    sop = draft_sop()
    for n in (5, 40):
        while CustomerFactory._meta.model.objects.count() < n:
            CustomerFactory()
        with django_assert_max_num_queries(12):
            preview = sop_preview(sop_or_version=sop, now=NOW, window_days=7, user=operator_user)
        assert preview.summary.entering == n


def test_the_csv_streams_every_row(world: World, operator_user: Any) -> None:
    sop = draft_sop()
    client = Client()
    client.force_login(operator_user)
    response = client.get(f"/campaigns/sops/{sop.pk}/preview.csv?window_days=3")
    assert response.status_code == 200
    assert response.streaming
    text = b"".join(response.streaming_content).decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0][:3] == ["customer_id", "customer_name", "trigger_key"]
    assert len(rows) == 1 + 6
    assert {r[1] for r in rows[1:]} == {"Alice A", "Anna A2", "Bob B"}
    page = client.get(f"/campaigns/sops/{sop.pk}/preview/")
    assert page.status_code == 200
    assert "Alice A" in page.content.decode()
