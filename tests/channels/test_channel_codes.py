"""Channel codes (WeCom 「联系我」) against the simulator: create, validate, update,
deactivate, referral codes; and the channel figures against a plain Python count."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import IntegrityError
from django.utils import timezone

from channels import services
from channels.models import Channel, ChannelCode, ChannelKind
from channels.selectors import channel_figures, channel_stats_qs, code_figures, cost_per_customer
from channels.services import (
    channel_code_create,
    channel_code_deactivate,
    channel_code_update,
    referral_code_for,
)
from channels.wecom.client import get_client
from channels.wecom.errors import WeComTransientError
from channels.wecom.simulator import Simulator
from customers.models import Follow, Staff
from tests.channels.wecom_support import point_app_at
from tests.factories import (
    ChannelFactory,
    CustomerFactory,
    FollowFactory,
    StaffFactory,
    StoreFactory,
    TagFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def sim(settings: Any) -> Iterator[Simulator]:
    """A running simulator that get_client() talks to, with a token cache of its own."""
    with Simulator(contacts=20, staff=5, seed=3) as running:
        point_app_at(settings, running)
        yield running


@pytest.fixture
def members(sim: Simulator) -> list[Staff]:
    """Staff rows for the simulator's first three WeCom members."""
    store = StoreFactory()
    return [StaffFactory(wecom_userid=userid, store=store) for userid in sim.dataset.staff_ids[:3]]


def _way(sim: Simulator, config_id: str) -> dict[str, Any]:
    """The contact way as WeCom answers get_contact_way."""
    return get_client().get_contact_way(config_id)


def ways(sim: Simulator) -> int:
    return int(sim.stats()["contact_ways"])


# --- Create ----------------------------------------------------------------------------


def test_creating_a_code_creates_the_contact_way_and_stores_it(
    sim: Simulator, members: list[Staff]
) -> None:
    channel = ChannelFactory(name="门店海报")
    tag: Any = TagFactory()
    code = channel_code_create(
        channel=channel,
        name="上海一店 海报",
        staff=members[:2],
        state="poster_sh_01",
        skip_verify=False,
        welcome_text="欢迎!",
        auto_tags=[tag],
    )
    code.refresh_from_db()
    assert code.config_id and code.qr_code.startswith(sim.base_url)
    assert code.state == "poster_sh_01"
    assert set(code.staff.all()) == set(members[:2])
    assert list(code.auto_tags.all()) == [tag]
    wecom = _way(sim, code.config_id)
    assert wecom["state"] == "poster_sh_01"
    assert sorted(wecom["user"]) == sorted(str(m.wecom_userid) for m in members[:2])
    assert wecom["type"] == 2 and wecom["scene"] == 2
    assert wecom["skip_verify"] is False
    assert wecom["qr_code"] == code.qr_code
    assert wecom["remark"] == "上海一店 海报"


def test_one_staff_member_makes_a_single_member_code(sim: Simulator, members: list[Staff]) -> None:
    code = channel_code_create(channel=ChannelFactory(), name="x" * 40, staff=[members[0]])
    wecom = _way(sim, str(code.config_id))
    assert wecom["type"] == 1
    assert wecom["user"] == [members[0].wecom_userid]
    assert wecom["remark"] == "x" * 30, "WeCom's remark is the name cut to 30 characters"


def test_blank_state_is_generated_unique_and_short(sim: Simulator, members: list[Staff]) -> None:
    channel = ChannelFactory()
    states = {
        channel_code_create(channel=channel, name=f"c{i}", staff=[members[0]]).state
        for i in range(5)
    }
    assert len(states) == 5
    for state in states:
        assert len(state) <= 30
        assert services.STATE_PATTERN.fullmatch(state)
        assert _way(sim, str(ChannelCode.objects.get(state=state).config_id))["state"] == state


@pytest.mark.parametrize(
    ("state", "code"),
    [
        ("s" * 31, "max_length"),
        ("有 空格", "invalid"),
        ("a&b", "invalid"),
        ("ref-abc", "reserved"),
    ],
)
def test_bad_states_are_refused_before_wecom(
    sim: Simulator, members: list[Staff], state: str, code: str
) -> None:
    before = ways(sim)
    with pytest.raises(ValidationError) as info:
        channel_code_create(channel=ChannelFactory(), name="n", staff=[members[0]], state=state)
    assert "state" in info.value.message_dict
    assert ways(sim) == before, "no contact way was created in WeCom"
    assert not ChannelCode.objects.exists()


def test_duplicate_state_is_refused_before_wecom(sim: Simulator, members: list[Staff]) -> None:
    channel = ChannelFactory()
    channel_code_create(channel=channel, name="a", staff=[members[0]], state="same")
    before = ways(sim)
    with pytest.raises(ValidationError) as info:
        channel_code_create(channel=channel, name="b", staff=[members[1]], state="same")
    assert "state" in info.value.message_dict
    assert ways(sim) == before
    assert ChannelCode.objects.count() == 1


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"staff": []}, "staff"),
        ({"name": "  "}, "name"),
        ({"welcome_text": "字" * 1400}, "welcome_text"),
        ({"welcome_attachments": [{"msgtype": "sticker"}]}, "welcome_attachments"),
    ],
)
def test_invalid_input_is_refused_before_wecom(
    sim: Simulator, members: list[Staff], kwargs: dict[str, Any], field: str
) -> None:
    body: dict[str, Any] = {"channel": ChannelFactory(), "name": "n", "staff": [members[0]]}
    with pytest.raises(ValidationError) as info:
        channel_code_create(**{**body, **kwargs})
    assert field in info.value.message_dict
    assert ways(sim) == 0


def test_staff_without_wecom_userid_is_refused(sim: Simulator, members: list[Staff]) -> None:
    local: Any = StaffFactory(wecom_userid=None, name="Local only")
    with pytest.raises(ValidationError) as info:
        channel_code_create(channel=ChannelFactory(), name="n", staff=[members[0], local])
    assert "Local only" in str(info.value.message_dict["staff"])
    assert ways(sim) == 0


@pytest.mark.parametrize(("errcode", "field"), [(41041, "staff"), (41045, NON_FIELD_ERRORS)])
def test_wecom_refusal_is_a_validation_error_and_saves_nothing(
    sim: Simulator, members: list[Staff], errcode: int, field: str
) -> None:
    sim.inject(errcode, path="externalcontact/add_contact_way")
    with pytest.raises(ValidationError) as info:
        channel_code_create(channel=ChannelFactory(), name="n", staff=members[:2])
    assert field in info.value.message_dict
    assert str(errcode) in str(info.value.message_dict[field])
    assert not ChannelCode.objects.exists()
    assert ways(sim) == 0


def test_unknown_wecom_member_is_reported_on_staff(sim: Simulator) -> None:
    ghost: Any = StaffFactory(wecom_userid="nobody-here")
    with pytest.raises(ValidationError) as info:
        channel_code_create(channel=ChannelFactory(), name="n", staff=[ghost])
    assert "40003" in str(info.value.message_dict["staff"])


def test_transient_wecom_error_propagates_and_saves_nothing(
    sim: Simulator, members: list[Staff]
) -> None:
    sim.inject(-1, path="externalcontact/add_contact_way")
    with pytest.raises(WeComTransientError):
        channel_code_create(channel=ChannelFactory(), name="n", staff=[members[0]])
    assert not ChannelCode.objects.exists()


def test_failed_save_deletes_the_contact_way_again(
    sim: Simulator, members: list[Staff], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_create(*args: Any, **kwargs: Any) -> Any:
        raise IntegrityError("disk on fire")

    monkeypatch.setattr(ChannelCode.objects, "create", broken_create)
    with pytest.raises(IntegrityError):
        channel_code_create(channel=ChannelFactory(), name="n", staff=[members[0]], state="s1")
    assert ways(sim) == 0, "the compensation deleted the orphan contact way"


def test_state_taken_by_a_racing_request_is_a_state_error_without_orphan(
    sim: Simulator, members: list[Staff], monkeypatch: pytest.MonkeyPatch
) -> None:
    channel = ChannelFactory()
    # The racing request inserts its row after our check and before our insert.
    real_check = services._check_state

    def check_then_race(state: str, **kwargs: Any) -> None:
        real_check(state, **kwargs)
        ChannelCode.objects.create(channel=channel, name="racer", state=state)

    monkeypatch.setattr(services, "_check_state", check_then_race)
    with pytest.raises(ValidationError) as info:
        channel_code_create(channel=channel, name="n", staff=[members[0]], state="hot")
    assert "state" in info.value.message_dict
    assert ways(sim) == 0


def test_inactive_channel_gets_no_new_code(sim: Simulator, members: list[Staff]) -> None:
    with pytest.raises(ValidationError) as info:
        channel_code_create(channel=ChannelFactory(is_active=False), name="n", staff=[members[0]])
    assert "channel" in info.value.message_dict


# --- Update and deactivate -------------------------------------------------------------


def test_update_reaches_wecom_and_user_overwrites(sim: Simulator, members: list[Staff]) -> None:
    code = channel_code_create(channel=ChannelFactory(), name="old", staff=members[:2])
    changed = channel_code_update(
        code=code,
        name="new name",
        staff=[members[2], members[1]],
        skip_verify=False,
        state="new_state",
    )
    assert changed == ["name", "skip_verify", "staff", "state"]
    wecom = _way(sim, str(code.config_id))
    assert sorted(wecom["user"]) == sorted(
        [str(members[1].wecom_userid), str(members[2].wecom_userid)]
    )
    assert (wecom["remark"], wecom["state"], wecom["skip_verify"]) == (
        "new name",
        "new_state",
        False,
    )
    code.refresh_from_db()
    assert set(code.staff.all()) == {members[1], members[2]}
    assert code.state == "new_state"


def test_update_of_local_fields_only_does_not_call_wecom(
    sim: Simulator, members: list[Staff]
) -> None:
    code = channel_code_create(channel=ChannelFactory(), name="n", staff=[members[0]])
    sim.inject(40003, path="externalcontact/update_contact_way")  # would fail if called
    tag: Any = TagFactory()
    assert channel_code_update(code=code, welcome_text="hi", auto_tags=[tag]) == [
        "auto_tags",
        "welcome_text",
    ]
    assert channel_code_update(code=code, welcome_text="hi", auto_tags=[tag]) == []
    assert len(sim.injections()) == 1, "the injected error was never consumed"


def test_update_refused_by_wecom_changes_nothing(sim: Simulator, members: list[Staff]) -> None:
    code = channel_code_create(channel=ChannelFactory(), name="solo", staff=[members[0]])
    # A single-member contact way cannot take more members (the type is fixed in WeCom).
    with pytest.raises(ValidationError) as info:
        channel_code_update(code=code, staff=members[:2])
    assert "41041" in str(info.value.message_dict["staff"])
    code.refresh_from_db()
    assert list(code.staff.all()) == [members[0]]
    assert _way(sim, str(code.config_id))["user"] == [members[0].wecom_userid]


def test_update_validates_the_new_state(sim: Simulator, members: list[Staff]) -> None:
    first = channel_code_create(channel=ChannelFactory(), name="a", staff=[members[0]])
    second = channel_code_create(channel=ChannelFactory(), name="b", staff=[members[0]])
    with pytest.raises(ValidationError) as info:
        channel_code_update(code=second, state=first.state)
    assert "state" in info.value.message_dict
    with pytest.raises(ValidationError):
        channel_code_update(code=second, state="x" * 31)


def test_deactivate_deletes_in_wecom_and_keeps_the_row(
    sim: Simulator, members: list[Staff]
) -> None:
    code = channel_code_create(channel=ChannelFactory(), name="n", staff=[members[0]])
    assert ways(sim) == 1
    assert channel_code_deactivate(code=code) is True
    assert ways(sim) == 0
    code.refresh_from_db()
    assert code.is_active is False and code.config_id, "kept for attribution"
    assert channel_code_deactivate(code=code) is False, "idempotent"
    with pytest.raises(ValidationError):
        channel_code_update(code=code, name="again")


def test_deactivate_of_a_way_already_gone_in_wecom_still_deactivates(
    sim: Simulator, members: list[Staff]
) -> None:
    code = channel_code_create(channel=ChannelFactory(), name="n", staff=[members[0]])
    _client_delete(str(code.config_id))
    assert channel_code_deactivate(code=code) is True
    assert ChannelCode.objects.get(pk=code.pk).is_active is False


def _client_delete(config_id: str) -> None:
    get_client().del_contact_way(config_id)


# --- Referral codes --------------------------------------------------------------------


def test_referral_code_is_created_once_per_customer(sim: Simulator, members: list[Staff]) -> None:
    customer = CustomerFactory(owner=members[1])
    code = referral_code_for(customer=customer)
    assert code.referrer == customer
    assert code.channel.kind == ChannelKind.REFERRAL
    assert list(code.staff.all()) == [members[1]]
    assert code.state.startswith("ref-") and len(code.state) <= 30
    assert _way(sim, str(code.config_id))["state"] == code.state
    again = referral_code_for(customer=customer)
    assert again.pk == code.pk
    assert ways(sim) == 1
    other = referral_code_for(customer=CustomerFactory(owner=members[1]))
    assert other.pk != code.pk and other.channel == code.channel
    assert Channel.objects.filter(kind=ChannelKind.REFERRAL).count() == 1


def test_referral_code_uses_the_earliest_follower_without_owner(
    sim: Simulator, members: list[Staff]
) -> None:
    customer = CustomerFactory(owner=None)
    now = timezone.now()
    FollowFactory(customer=customer, staff=members[2], added_at=now - timedelta(days=1))
    FollowFactory(
        customer=customer, staff=members[0], added_at=now - timedelta(days=5), deleted_at=now
    )
    FollowFactory(customer=customer, staff=members[1], added_at=now - timedelta(days=3))
    code = referral_code_for(customer=customer)
    assert list(code.staff.all()) == [members[1]], "earliest *active* follow"


def test_referral_code_needs_a_staff_member(sim: Simulator) -> None:
    with pytest.raises(ValidationError) as info:
        referral_code_for(customer=CustomerFactory(owner=None))
    assert "customer" in info.value.message_dict


def test_referral_code_after_deactivation_is_a_new_one(
    sim: Simulator, members: list[Staff]
) -> None:
    customer = CustomerFactory(owner=members[0])
    first = referral_code_for(customer=customer)
    channel_code_deactivate(code=first)
    second = referral_code_for(customer=customer)
    assert second.pk != first.pk and second.state != first.state
    assert referral_code_for(customer=customer).pk == second.pk


def test_referral_race_returns_the_winner_and_deletes_the_losers_way(
    sim: Simulator, members: list[Staff], monkeypatch: pytest.MonkeyPatch
) -> None:
    customer = CustomerFactory(owner=members[0])
    real_create = services._code_create
    winner: list[ChannelCode] = []

    def race(**kwargs: Any) -> ChannelCode:
        if not winner:  # the other request commits first, with the same derived state
            winner.append(real_create(**kwargs))
        return real_create(**kwargs)

    monkeypatch.setattr(services, "_code_create", race)
    assert referral_code_for(customer=customer).pk == winner[0].pk
    assert ways(sim) == 1
    assert ChannelCode.objects.filter(referrer=customer).count() == 1


# --- Figures ---------------------------------------------------------------------------


def test_cost_per_customer() -> None:
    assert cost_per_customer(Decimal("1000.00"), 3) == Decimal("333.33")
    assert cost_per_customer(Decimal("1000.00"), 0) is None
    assert cost_per_customer(Decimal("0.05"), 10) == Decimal("0.01")


def test_figures_equal_a_plain_python_count(db: Any) -> None:
    rng = random.Random(7)
    now = timezone.now()
    channel = ChannelFactory(cost=Decimal("900.00"))
    other_channel = ChannelFactory()
    staff = [StaffFactory() for _ in range(4)]
    codes = [
        ChannelCode.objects.create(channel=channel, name=f"code {i}", state=f"st{i}")
        for i in range(3)
    ]
    ChannelCode.objects.create(channel=other_channel, name="other", state="other")
    states = ["st0", "st1", "st2", "other", ""]
    customers = [
        CustomerFactory(
            source_channel=rng.choice([channel, other_channel, None]),
            acquired_at=now - timedelta(days=rng.randint(0, 60)),
        )
        for _ in range(40)
    ]
    for customer in customers:
        for member in rng.sample(staff, rng.randint(1, 3)):
            FollowFactory(
                customer=customer,
                staff=member,
                state=rng.choice(states),
                added_at=now - timedelta(days=rng.randint(0, 60)),
                deleted_at=now if rng.random() < 0.2 else None,
            )
    start, end = now - timedelta(days=30), now - timedelta(days=5)
    follows = list(Follow.objects.all())

    def in_period(at: Any) -> bool:
        return start <= at < end

    operator = _operator()
    figures = channel_figures(operator, channel.pk, start=start, end=end)
    acquired = [
        c for c in customers if c.source_channel_id == channel.pk and in_period(c.acquired_at)
    ]
    assert figures.acquired == len(acquired)
    assert figures.cost_per_customer == cost_per_customer(channel.cost, len(acquired))
    assert figures.codes_count == 3
    ours = [f for f in follows if f.state in {"st0", "st1", "st2"} and in_period(f.added_at)]
    assert figures.follows == len(ours)
    assert figures.customers == len({f.customer_id for f in ours})
    expected_staff = {
        s.pk: (
            len([f for f in ours if f.staff_id == s.pk]),
            len({f.customer_id for f in ours if f.staff_id == s.pk}),
        )
        for s in staff
        if any(f.staff_id == s.pk for f in ours)
    }
    assert {s.staff_id: (s.follows, s.customers) for s in figures.staff} == expected_staff
    for item in figures.codes:
        mine = [f for f in ours if f.state == item.code.state]
        assert item.follows == len(mine)
        assert item.active_follows == len([f for f in mine if f.deleted_at is None])
        assert item.customers == len({f.customer_id for f in mine})
        per_staff = {s.staff_id: (s.follows, s.customers) for s in item.staff}
        assert per_staff == {
            sid: (
                len([f for f in mine if f.staff_id == sid]),
                len({f.customer_id for f in mine if f.staff_id == sid}),
            )
            for sid in {f.staff_id for f in mine}
        }
    # Ordered by customers brought, most first.
    assert [c.customers for c in figures.codes] == sorted(
        (c.customers for c in figures.codes), reverse=True
    )
    # Whole history: the same figures without a period.
    everything = channel_figures(operator, channel.pk)
    all_ours = [f for f in follows if f.state in {"st0", "st1", "st2"}]
    assert everything.follows == len(all_ours)
    listed = {c.pk: c for c in channel_stats_qs(operator)}
    assert listed[channel.pk].acquired == len(  # type: ignore[attr-defined]
        [c for c in customers if c.source_channel_id == channel.pk]
    )
    assert listed[channel.pk].codes_count == 3  # type: ignore[attr-defined]
    by_code = {c.code.pk: c for c in code_figures(codes)}
    assert sum(c.follows for c in by_code.values()) == len(all_ours)


def test_figures_query_count_does_not_grow_with_codes(
    db: Any, django_assert_max_num_queries: Any
) -> None:
    channel = ChannelFactory()
    operator = _operator()
    for n in (3, 30):
        while channel.codes.count() < n:
            i = channel.codes.count()
            code = ChannelCode.objects.create(channel=channel, name=f"c{i}", state=f"q{i}")
            code.staff.add(StaffFactory())
            FollowFactory(state=f"q{i}")
        with django_assert_max_num_queries(7):
            figures = channel_figures(operator, channel.pk)
        assert len(figures.codes) == n


def _operator() -> Any:
    return UserFactory(username="figures-operator", is_superuser=True)
