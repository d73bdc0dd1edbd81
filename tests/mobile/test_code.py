"""My channel code: the signed-in staff member's own active codes with today's adds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from django.test import Client
from django.utils import timezone

from channels.models import ChannelCode
from customers.models import Customer, Follow, Staff
from mobile.selectors.code import corp_day_start, my_codes
from tests.conftest import World
from tests.factories import ChannelFactory, CustomerFactory, FollowFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _english(settings: Any) -> None:
    # Messages are asserted in English; the default language (zh-hans) would translate them.
    settings.LANGUAGE_CODE = "en"


def code(*staff: Staff, state: str, **kwargs: Any) -> ChannelCode:
    kwargs.setdefault("channel", ChannelFactory())
    kwargs.setdefault("name", f"Counter {state}")
    kwargs.setdefault("qr_code", f"https://wework.qpic.cn/wwpic/{state}.png")
    made = ChannelCode.objects.create(state=state, **kwargs)
    made.staff.set(staff)
    return made


def add(staff: Staff, state: str, at: datetime, *, deleted: bool = False) -> Follow:
    follow = FollowFactory(
        staff=staff,
        customer=CustomerFactory(acquired_at=at),
        added_at=at,
        state=state,
        deleted_at=at + timedelta(minutes=1) if deleted else None,
    )
    return cast(Follow, follow)


def test_my_code_shows_only_my_active_codes_with_the_qr_full_width(
    world: World, m_client: Any
) -> None:
    mine = code(world.clerk_a, state="counter_a1", name="柜台一号")
    shared = code(world.clerk_a, world.clerk_a2, state="counter_shared")
    code(world.clerk_a2, state="colleague")  # a colleague's, same store
    code(world.clerk_b, state="store_b")
    code(world.clerk_a, state="retired", is_active=False)
    code(world.clerk_a, state="ref_1", referrer=world.customer_a)  # a customer's referral code
    response = m_client(world.clerk_a).get("/m/code/")
    assert response.status_code == 200
    rows = response.context["mine"].codes
    assert {row.code.pk for row in rows} == {mine.pk, shared.pk}
    html = response.content.decode()
    assert "柜台一号" in html
    assert 'src="https://wework.qpic.cn/wwpic/counter_a1.png"' in html
    assert 'data-qr-full="https://wework.qpic.cn/wwpic/counter_a1.png"' in html
    assert mine.channel.name in html
    for hidden in ("colleague", "store_b", "retired", "ref_1"):
        assert f"wwpic/{hidden}.png" not in html


def test_todays_adds_count_my_follows_through_each_code_since_midnight_in_shanghai(
    world: World, m_client: Any
) -> None:
    now = timezone.now()
    midnight = corp_day_start(now)
    a1 = code(world.clerk_a, state="a1")
    shared = code(world.clerk_a, world.clerk_a2, state="shared")
    add(world.clerk_a, "a1", now - timedelta(seconds=30))
    add(world.clerk_a, "a1", midnight + timedelta(seconds=1), deleted=True)  # made today
    add(world.clerk_a, "a1", midnight - timedelta(seconds=1))  # yesterday
    add(world.clerk_a, "shared", now - timedelta(seconds=10))
    add(world.clerk_a2, "shared", now - timedelta(seconds=10))  # a colleague's add
    add(world.clerk_a, "", now - timedelta(seconds=5))  # no code
    response = m_client(world.clerk_a).get("/m/code/")
    mine = response.context["mine"]
    adds = {row.code.pk: row.today_adds for row in mine.codes}
    assert adds == {a1.pk: 2, shared.pk: 1}
    assert mine.total_today == 3
    assert 'id="total-today">3<' in response.content.decode()


def test_the_day_starts_at_midnight_in_the_corp_time_zone() -> None:
    # 16:30 UTC on March 1st is 00:30 on March 2nd in Shanghai.
    now = datetime(2026, 3, 1, 16, 30, tzinfo=UTC)
    start = corp_day_start(now)
    assert start.isoformat() == "2026-03-02T00:00:00+08:00"


def test_a_staff_member_without_codes_sees_an_empty_state(world: World, m_client: Any) -> None:
    code(world.clerk_b, state="b_only")
    response = m_client(world.clerk_a).get("/m/code/")
    assert response.status_code == 200
    assert response.context["mine"].codes == []
    assert "You have no channel code yet." in response.content.decode()


def test_an_operator_has_no_codes_of_their_own(operator_user: Any, world: World) -> None:
    code(world.clerk_a, state="a1")
    client = Client()
    client.force_login(operator_user)
    response = client.get("/m/code/")
    assert response.status_code == 200
    assert response.context["mine"].codes == []


def test_my_code_has_a_query_budget_independent_of_codes_and_adds(
    world: World, m_client: Any, django_assert_max_num_queries: Any
) -> None:
    client = m_client(world.clerk_a)
    code(world.clerk_a, state="first")
    # Session, user, staff row; the codes (channel joined) and one grouped count.
    with django_assert_max_num_queries(5):
        assert client.get("/m/code/").status_code == 200
    now = timezone.now()
    for n in range(10):
        code(world.clerk_a, state=f"c{n}")
    start = Customer.objects.count()
    customers = Customer.objects.bulk_create(
        Customer(name=f"Add {i}", external_id=f"add-{start + i}", acquired_at=now)
        for i in range(1000)
    )
    Follow.objects.bulk_create(
        Follow(customer=c, staff=world.clerk_a, state=f"c{i % 10}", added_at=now)
        for i, c in enumerate(customers)
    )
    with django_assert_max_num_queries(5):
        response = client.get("/m/code/")
    assert response.context["mine"].total_today == 1000
    assert my_codes(world.clerk_a.user, now=now + timedelta(seconds=1)).total_today == 1000
