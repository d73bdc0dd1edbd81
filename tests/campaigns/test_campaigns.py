"""Campaign definitions: validation, the secret salt, updates."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from campaigns.models import CampaignGoal, CampaignStatus
from campaigns.services.campaigns import campaign_create, campaign_update
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def _errors(data: dict[str, Any]) -> dict[str, Any]:
    with pytest.raises(ValidationError) as exc:
        campaign_create(data=data, user=None)
    return exc.value.message_dict


def test_campaign_create_defaults_and_a_fresh_secret_salt() -> None:
    user = UserFactory()
    a = campaign_create(data={"name": "Repurchase Q3"}, user=user)
    b = campaign_create(data={"name": "Repurchase Q4"}, user=user)
    assert a.goal == CampaignGoal.PURCHASE
    assert a.goal_days == 30
    assert a.holdout_percent == 10
    assert a.status == CampaignStatus.DRAFT
    assert a.created_by == user
    assert len(a.salt) == 32
    int(a.salt, 16)
    assert a.salt != b.salt


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "x", "holdout_percent": 51}, "holdout_percent"),
        ({"name": "x", "holdout_percent": -1}, "holdout_percent"),
        ({"name": "x", "holdout_percent": "many"}, "holdout_percent"),
        ({"name": "x", "goal": "world_peace"}, "goal"),
        ({"name": "x", "goal_days": 0}, "goal_days"),
        ({"name": "x", "goal_days": 366}, "goal_days"),
        ({"name": "x", "status": "paused"}, "status"),
        ({"name": "x", "starts_at": "yesterday"}, "starts_at"),
        ({"name": "x", "starts_at": "2026-01-01T00:00:00"}, "starts_at"),  # naive
        ({"name": "x", "salt": "mine"}, "salt"),
    ],
)
def test_campaign_create_refuses_bad_fields(data: dict[str, Any], field: str) -> None:
    assert field in _errors(data)


def test_the_end_must_be_after_the_start() -> None:
    start = timezone.now()
    assert "ends_at" in _errors({"name": "x", "starts_at": start, "ends_at": start})
    ok = campaign_create(
        data={"name": "x", "starts_at": start, "ends_at": start + timedelta(days=1)}, user=None
    )
    assert ok.ends_at == start + timedelta(days=1)


def test_holdout_bounds_are_allowed() -> None:
    assert campaign_create(data={"name": "x", "holdout_percent": 0}, user=None)
    assert campaign_create(data={"name": "y", "holdout_percent": 50}, user=None)


def test_campaign_update_returns_changed_fields_and_keeps_the_salt() -> None:
    campaign = campaign_create(data={"name": "A", "goal": "repurchase"}, user=None)
    salt = campaign.salt
    assert campaign_update(campaign=campaign, data={"name": "A", "goal": "repurchase"}) == []
    changed = campaign_update(
        campaign=campaign, data={"goal_days": 14, "status": CampaignStatus.ACTIVE}
    )
    assert sorted(changed) == ["goal_days", "status"]
    campaign.refresh_from_db()
    assert campaign.goal_days == 14
    assert campaign.salt == salt
    with pytest.raises(ValidationError):
        campaign_update(campaign=campaign, data={"salt": "x"})


def test_campaign_update_validates_against_the_stored_values() -> None:
    start = timezone.now()
    campaign = campaign_create(
        data={"name": "A", "starts_at": start, "ends_at": start + timedelta(days=3)}, user=None
    )
    with pytest.raises(ValidationError) as exc:
        campaign_update(campaign=campaign, data={"starts_at": start + timedelta(days=5)})
    assert "ends_at" in exc.value.message_dict
    campaign.refresh_from_db()
    assert campaign.starts_at == start
