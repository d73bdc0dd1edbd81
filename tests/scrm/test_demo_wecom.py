"""The demo's WeCom side (scrm.demo_wecom, manage.py demo_wecom): the simulator's corp is
the demo's staff and channel states, the codes are created once, a sync lands on staff
with logins and stores, and codes survive a simulator restart."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from channels import tasks
from channels.management.commands.wecom_simulator import restore_contact_ways
from channels.models import ChannelCode, SyncRun, SyncStatus
from channels.wecom.client import get_client
from channels.wecom.simulator import Simulator
from channels.wecom.simulator.data import Dataset, DataSpec
from channels.wecom.sync import sync_run_execute, sync_run_start
from customers.models import Customer, Follow, Staff
from scrm.demo import demo_code_channels, demo_seed, demo_wecom_userids
from scrm.demo_wecom import (
    DemoNotSeeded,
    contact_ways_export,
    demo_codes_ensure,
    demo_simulator_spec,
    demo_sync_wait,
    simulator_base_url,
    simulator_staff_ids,
)

ANCHOR = datetime(2026, 6, 30, 12, 0, tzinfo=UTC)
STATES = tuple(c.state for c in demo_code_channels())


def _demo_sim(**options: Any) -> Simulator:
    options.setdefault("contacts", 80)
    return Simulator(
        staff_ids=simulator_staff_ids(),
        idle_staff=0,
        states=STATES,
        seed=5,
        now=int(ANCHOR.timestamp()),
        **options,
    )


def _point_at(settings: Any, sim: Simulator) -> None:
    settings.WECOM_API_BASE = sim.api_base
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": f"demo-wecom-{uuid.uuid4().hex}",
        }
    }


@pytest.fixture
def sim(settings: Any) -> Iterator[Simulator]:
    """The demo's corp, small, with the app pointed at it (credentials: the settings')."""
    with _demo_sim() as running:
        _point_at(settings, running)
        yield running


@pytest.fixture
def seeded(db: None) -> None:
    demo_seed(customers=30, anchor=ANCHOR)


# --- the simulator's corp --------------------------------------------------------------


def test_the_demo_corp_is_the_demo_clerks_and_managers_clerks_first() -> None:
    userids = simulator_staff_ids()

    assert sorted(userids) == sorted(demo_wecom_userids())
    assert len(userids) == 24
    assert "demo-operator" not in userids
    assert {"demo-sh-clerk1", "demo-sh-manager", "demo-hz-clerk3"} <= set(userids)
    managers = [n for n, u in enumerate(userids) if u.endswith("-manager")]
    assert managers == list(range(19, 24))


@pytest.mark.django_db
def test_the_simulator_spec_carries_the_demo_states_anchor_and_callback_url(
    seeded: None, tmp_path: Any
) -> None:
    spec = demo_simulator_spec(
        port=8999, contacts=123, callback_url="http://127.0.0.1:8000/wecom/callback/"
    )

    assert spec.api_base == "http://127.0.0.1:8999/cgi-bin/"
    assert list(spec.states) == list(STATES)
    assert "demo-ch09" not in spec.states  # the referral channel: customers' own codes
    assert spec.now == int(ANCHOR.timestamp())
    assert spec.contact_ways is None  # no codes yet
    argv = spec.process().argv
    assert argv[argv.index("--callback-url") + 1] == "http://127.0.0.1:8000/wecom/callback/"
    assert argv[argv.index("--staff-ids") + 1].split(",") == simulator_staff_ids()
    assert argv[argv.index("--contacts") + 1] == "123"


@pytest.mark.django_db
def test_an_unmigrated_or_unseeded_database_gives_a_simulator_without_anchor() -> None:
    spec = demo_simulator_spec(callback_url="http://127.0.0.1:8000/wecom/callback/")

    assert spec.now is None
    assert spec.contact_ways is None
    assert spec.port == 8900 and spec.contacts == 3000


def test_explicit_staff_userids_are_the_follow_users(settings: Any) -> None:
    with Simulator(contacts=30, staff_ids=["ann", "bob", "cy"], idle_staff=0) as sim:
        _point_at(settings, sim)

        assert sorted(get_client().follow_users()) == ["ann", "bob", "cy"]
        assert {u for _e, u in sim.relationships()} == {"ann", "bob", "cy"}


@pytest.mark.parametrize(
    ("ids", "message"),
    [
        (("a", "b"), "2 staff userids given for 3 staff"),
        (("a", "b", "a"), "unique"),
        (("a", 'b"', "c"), "not a usable WeCom userid"),
        (("a", "b", "x" * 65), "not a usable WeCom userid"),
        (("a", "b", "wm" + "0" * 30), "looks like an external_userid"),
    ],
)
def test_unusable_staff_userids_are_refused(ids: tuple[str, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Dataset(DataSpec(contacts=5, staff=3, staff_ids=ids))


# --- channel codes ---------------------------------------------------------------------


@pytest.mark.django_db
def test_demo_codes_are_created_in_wecom_once(seeded: None, sim: Simulator) -> None:
    first = demo_codes_ensure()

    assert len(first.created) == len(STATES) and first.existing == []
    assert sorted(c.state for c in first.created) == sorted(STATES)
    for code in first.created:
        way = sim.state.contact_ways[str(code.config_id)]
        assert way.state == code.state
        assert sorted(way.user) == sorted(demo_wecom_userids())
        assert code.qr_code.startswith(sim.base_url + "qr/")
        assert "{name}" in code.welcome_text
        assert code.staff.count() == 24

    second = demo_codes_ensure()

    assert second.created == []
    assert len(second.existing) == len(STATES)
    assert ChannelCode.objects.count() == len(STATES)
    assert len(sim.state.contact_ways) == len(STATES)


@pytest.mark.django_db
def test_codes_need_the_demo(sim: Simulator) -> None:
    with pytest.raises(DemoNotSeeded, match="0 of the demo's 24 staff"):
        demo_codes_ensure()

    assert not ChannelCode.objects.exists()
    assert sim.state.contact_ways == {}


@pytest.mark.django_db
def test_a_sync_of_the_demo_corp_lands_on_demo_staff_and_channels(
    seeded: None, sim: Simulator
) -> None:
    demo_codes_ensure()
    staff_before = Staff.objects.count()

    run = sync_run_execute(run_id=sync_run_start().pk)

    assert run.status == SyncStatus.SUCCEEDED, run.errors
    assert run.wecom_follows == run.active_follows == sim.stats()["relationships"]
    assert Staff.objects.count() == staff_before  # no stranger staff: the demo's own
    synced = Follow.objects.filter(customer__external_userid__isnull=False)
    assert synced.count() == sim.stats()["relationships"]
    assert not synced.filter(staff__user__isnull=True).exists()
    assert not synced.filter(staff__store__isnull=True).exists()
    attributed = Customer.objects.filter(
        external_userid__isnull=False, source_channel__codes__state__in=STATES
    )
    assert attributed.count() > 10
    for customer in attributed[:20]:
        states = set(customer.follows.values_list("state", flat=True))
        assert customer.source_channel is not None
        assert set(customer.source_channel.codes.values_list("state", flat=True)) & states


# --- a restarted simulator keeps the codes ----------------------------------------------


@pytest.mark.django_db
def test_a_restarted_simulator_restores_the_codes_under_their_config_ids(
    seeded: None, sim: Simulator, settings: Any
) -> None:
    demo_codes_ensure()
    ways = contact_ways_export()
    ways.append({**ways[0], "config_id": "gone-staff", "user": ["somebody-else"]})
    assert len(ways) == len(STATES) + 1

    with _demo_sim() as restarted:
        _point_at(settings, restarted)
        restored, skipped = restore_contact_ways(restarted, ways)
        client = get_client()

        assert (restored, skipped) == (len(STATES), ["gone-staff"])
        for code in ChannelCode.objects.all():
            way = client.get_contact_way(str(code.config_id))
            assert way["state"] == code.state
            assert way["qr_code"] == f"{restarted.base_url}qr/{code.config_id}.png"
        fresh = client.add_contact_way(
            {"type": 1, "scene": 2, "user": ["demo-sh-clerk1"], "state": "fresh"}
        )
        assert fresh["config_id"] not in {w["config_id"] for w in ways}
        scanned = restarted.add_contact(config_id=str(ways[0]["config_id"]), emit=False)
        assert scanned["state"] == ways[0]["state"]


# --- manage.py demo_wecom ----------------------------------------------------------------


@pytest.fixture
def eager_sync(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """wecom_sync.delay runs the task here, as the worker would (the worker path itself is
    proven by tests/integration)."""
    queued: list[int] = []

    def run(run_id: int) -> None:
        queued.append(run_id)
        tasks.wecom_sync.apply(args=[run_id])

    monkeypatch.setattr(tasks.wecom_sync, "delay", run)
    return queued


@pytest.mark.django_db(transaction=True)
def test_demo_wecom_creates_the_codes_then_reports_the_sync(
    sim: Simulator, eager_sync: list[int]
) -> None:
    demo_seed(customers=30, anchor=ANCHOR)
    out = StringIO()

    call_command("demo_wecom", site="http://demo.test/", stdout=out)

    text = out.getvalue()
    n = len(STATES)
    relationships = sim.stats()["relationships"]
    assert f"{n} channel codes ({n} created, 0 already there)" in text
    assert "http://demo.test/channels/" in text
    assert f"follows WeCom {relationships:,} vs ours {relationships:,}" in text
    assert f"{sim.stats()['contacts']} WeCom customers" in text
    assert f"curl -X POST {sim.base_url}__sim__/contacts/add" in text
    assert len(eager_sync) == 1

    again = StringIO()
    call_command("demo_wecom", site="http://demo.test/", stdout=again)

    assert f"({0} created, {n} already there)" in again.getvalue()
    assert "succeeded" in again.getvalue()
    assert ChannelCode.objects.count() == n
    assert SyncRun.objects.filter(status=SyncStatus.SUCCEEDED).count() == 2


@pytest.mark.django_db(transaction=True)
def test_demo_wecom_skips_an_unseeded_database(sim: Simulator, eager_sync: list[int]) -> None:
    out = StringIO()

    call_command("demo_wecom", stdout=out)

    assert "WeCom demo set-up skipped" in out.getvalue()
    assert eager_sync == []


def test_demo_wecom_refuses_the_real_wecom(settings: Any) -> None:
    settings.WECOM_API_BASE = "https://qyapi.weixin.qq.com/cgi-bin/"

    with pytest.raises(CommandError, match="real WeCom"):
        call_command("demo_wecom", stdout=StringIO())


def test_the_simulator_root_comes_from_its_api_base() -> None:
    assert simulator_base_url("http://127.0.0.1:8900/cgi-bin/") == "http://127.0.0.1:8900/"


# --- waiting for the sync ---------------------------------------------------------------


@pytest.mark.django_db
def test_waiting_requeues_a_run_whose_worker_is_gone(
    monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    settings.WECOM_SYNC_LEASE_SECONDS = 30
    run = SyncRun.objects.create(heartbeat_at=timezone.now() - timedelta(minutes=5))
    queued: list[int] = []

    def finish(run_id: int) -> None:
        queued.append(run_id)
        SyncRun.objects.filter(pk=run_id).update(status=SyncStatus.SUCCEEDED)

    monkeypatch.setattr(tasks.wecom_sync, "delay", finish)

    done = demo_sync_wait(run_id=run.pk, timeout=5, sleep=lambda _s: None)

    assert done is not None and done.status == SyncStatus.SUCCEEDED
    assert queued == [run.pk]


@pytest.mark.django_db
def test_waiting_gives_up_after_the_timeout() -> None:
    run = SyncRun.objects.create()

    assert demo_sync_wait(run_id=run.pk, timeout=0, sleep=lambda _s: None) is None
