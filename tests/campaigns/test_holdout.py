"""The holdout split: stable per customer, uniform across customers, decided once."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from campaigns.models import CampaignMember
from campaigns.services.campaigns import campaign_assign, campaign_update, is_holdout
from tests.campaigns.factories import CampaignFactory
from tests.factories import CustomerFactory


def test_the_split_is_a_pure_function_of_salt_and_customer() -> None:
    first = [is_holdout(salt="abc", customer_id=i, percent=10) for i in range(2000)]
    second = [is_holdout(salt="abc", customer_id=i, percent=10) for i in range(2000)]
    assert first == second


def test_ten_percent_of_ten_thousand_ids_are_held_out() -> None:
    for salt in ("0f" * 16, "a1b2c3d4" * 4):
        held = sum(is_holdout(salt=salt, customer_id=i, percent=10) for i in range(1, 10_001))
        assert 850 <= held <= 1150, (salt, held)


def test_two_salts_give_different_splits() -> None:
    ids = range(1, 10_001)
    a = {i for i in ids if is_holdout(salt="salt-a", customer_id=i, percent=10)}
    b = {i for i in ids if is_holdout(salt="salt-b", customer_id=i, percent=10)}
    # Independent 10 % samples share about 1 % of the ids, not 10 %.
    assert len(a & b) < 250
    assert a != b


def test_zero_percent_holds_out_nobody_and_a_larger_percent_is_a_superset() -> None:
    ids = range(1, 3001)
    assert not any(is_holdout(salt="s", customer_id=i, percent=0) for i in ids)
    ten = {i for i in ids if is_holdout(salt="s", customer_id=i, percent=10)}
    twenty = {i for i in ids if is_holdout(salt="s", customer_id=i, percent=20)}
    assert ten < twenty


@pytest.mark.django_db
def test_assign_twice_gives_the_same_split_and_one_row_per_customer() -> None:
    campaign = CampaignFactory(holdout_percent=30)
    ids = [c.pk for c in CustomerFactory.create_batch(40)]
    now = timezone.now()
    first = campaign_assign(campaign=campaign, customer_ids=ids, at=now)
    second = campaign_assign(campaign=campaign, customer_ids=reversed(ids), at=now)
    assert first == second
    assert first == {i for i in ids if is_holdout(salt=campaign.salt, customer_id=i, percent=30)}
    assert CampaignMember.objects.filter(campaign=campaign).count() == 40
    assert 0 < len(first) < 40


@pytest.mark.django_db
def test_changing_the_percent_does_not_move_existing_members() -> None:
    campaign = CampaignFactory(holdout_percent=10)
    ids = [c.pk for c in CustomerFactory.create_batch(30)]
    t0 = timezone.now() - timedelta(days=2)
    before = campaign_assign(campaign=campaign, customer_ids=ids, at=t0)
    assert campaign_update(campaign=campaign, data={"holdout_percent": 50}) == ["holdout_percent"]
    campaign.refresh_from_db()
    after = campaign_assign(campaign=campaign, customer_ids=ids, at=timezone.now())
    assert after == before
    assert set(
        CampaignMember.objects.filter(campaign=campaign).values_list("enrolled_at", flat=True)
    ) == {t0}
    # A customer who joins after the change gets the new percent.
    newcomers = [c.pk for c in CustomerFactory.create_batch(30)]
    held = campaign_assign(campaign=campaign, customer_ids=newcomers, at=timezone.now())
    assert held == {
        i for i in newcomers if is_holdout(salt=campaign.salt, customer_id=i, percent=50)
    }


@pytest.mark.django_db
def test_assign_returns_only_the_given_ids_and_accepts_a_generator(
    django_assert_max_num_queries,
) -> None:
    campaign = CampaignFactory(holdout_percent=50)
    ids = [c.pk for c in CustomerFactory.create_batch(20)]
    all_held = campaign_assign(campaign=campaign, customer_ids=ids, at=timezone.now())
    subset = ids[:5]
    with django_assert_max_num_queries(6):
        held = campaign_assign(
            campaign=campaign, customer_ids=(i for i in subset), at=timezone.now()
        )
    assert held == all_held & set(subset)


@pytest.mark.django_db
def test_assign_works_in_chunks(monkeypatch) -> None:
    from campaigns.services import campaigns as module

    monkeypatch.setattr(module, "ASSIGN_CHUNK", 7)
    campaign = CampaignFactory(holdout_percent=40)
    ids = [c.pk for c in CustomerFactory.create_batch(25)]
    held = campaign_assign(campaign=campaign, customer_ids=ids + ids[:3], at=timezone.now())
    assert held == {i for i in ids if is_holdout(salt=campaign.salt, customer_id=i, percent=40)}
    assert CampaignMember.objects.filter(campaign=campaign).count() == 25
