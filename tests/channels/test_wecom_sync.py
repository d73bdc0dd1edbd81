"""Full sync against the WeCom simulator: exact, idempotent, resumable, and honest."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from channels.models import ChannelCode, SyncRun, SyncSeenFollow, SyncStatus
from channels.wecom import sync
from channels.wecom.client import WeComClient
from channels.wecom.errors import WeComRateLimited
from channels.wecom.simulator import Simulator
from channels.wecom.sync import SyncEngine, sync_run_start
from customers.models import Activity, Customer, CustomerTag, Follow, Tag
from tests.channels.wecom_support import sim_client
from tests.factories import ChannelFactory

pytestmark = pytest.mark.django_db

FAST_RETRY = (0.01, 0.01, 0.01, 0.01)


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(contacts=240, staff=7, seed=5) as running:
        yield running


@pytest.fixture
def client(sim: Simulator) -> WeComClient:
    return sim_client(sim)


def run_sync(client: WeComClient, **options) -> SyncRun:
    options.setdefault("retry_delays", FAST_RETRY)
    engine = SyncEngine(sync_run_start(), client, **options)
    return engine.execute()


def wecom_pairs(sim: Simulator) -> set[tuple[str, str]]:
    return set(sim.relationships())


def our_pairs() -> set[tuple[str, str]]:
    return set(
        Follow.objects.filter(deleted_at__isnull=True).values_list(
            "customer__external_userid", "staff__wecom_userid"
        )
    )


class Killed(BaseException):
    """Stands for SIGKILL: not an Exception, so nothing in the engine handles it."""


def test_full_sync_mirrors_every_relationship(sim, client) -> None:
    run = run_sync(client)
    assert run.status == SyncStatus.SUCCEEDED
    assert our_pairs() == wecom_pairs(sim)
    assert Customer.objects.count() == len({e for e, _u in wecom_pairs(sim)})
    assert run.relationships == len(wecom_pairs(sim))
    assert run.wecom_follows == run.active_follows == len(wecom_pairs(sim))
    assert run.in_step is True
    assert run.pages >= len(wecom_pairs(sim)) // 100
    assert run.http_calls >= run.pages + 2
    assert SyncSeenFollow.objects.count() == 0, "scratch rows are cleaned up"


def test_sync_keeps_states_tags_and_acquisition_time(sim, client) -> None:
    run_sync(client)
    for external_userid, userid in list(wecom_pairs(sim))[:40]:
        detail = sim.contact(external_userid)
        follow = Follow.objects.get(
            customer__external_userid=external_userid, staff__wecom_userid=userid
        )
        wecom = next(f for f in detail["follow_user"] if f["userid"] == userid)
        assert follow.state == wecom.get("state", "")
        assert int(follow.added_at.timestamp()) == wecom["createtime"]
        customer = follow.customer
        earliest = min(f["createtime"] for f in detail["follow_user"])
        assert int(customer.acquired_at.timestamp()) == earliest
        wanted = {
            t["tag_id"] for f in detail["follow_user"] for t in f.get("tags", []) if "tag_id" in t
        }
        have = set(
            CustomerTag.objects.filter(customer=customer).values_list(
                "tag__wecom_tag_id", flat=True
            )
        )
        assert have == wanted


def test_channel_code_state_attributes_first_touch(sim, client) -> None:
    channel = ChannelFactory(name="门店海报")
    ChannelCode.objects.create(channel=channel, name="上海一店", state="store_sh_01")
    run_sync(client)
    attributed = Customer.objects.filter(source_channel=channel)
    assert attributed.exists()
    for customer in attributed[:20]:
        first_coded = (
            customer.follows.exclude(state="")
            .filter(state__in=["store_sh_01"])
            .order_by("added_at")
            .first()
        )
        assert first_coded is not None


def test_unchanged_resync_writes_nothing(sim, client) -> None:
    run_sync(client)
    stamps = dict(Customer.objects.values_list("id", "updated_at"))
    follow_stamps = dict(Follow.objects.values_list("id", "updated_at"))
    activities = Activity.objects.count()
    again = run_sync(client)
    assert (again.created, again.updated, again.deleted) == (0, 0, 0)
    assert dict(Customer.objects.values_list("id", "updated_at")) == stamps
    assert dict(Follow.objects.values_list("id", "updated_at")) == follow_stamps
    assert Activity.objects.count() == activities
    assert our_pairs() == wecom_pairs(sim)


def test_killed_worker_resumes_from_checkpoint_without_duplicates(sim, client, settings) -> None:
    flushes = 0

    def die_after_two(run: SyncRun) -> None:
        nonlocal flushes
        flushes += 1
        if flushes == 2:
            raise Killed

    with pytest.raises(Killed):
        run_sync(client, flush_rows=60, after_flush=die_after_two)
    run = SyncRun.objects.get()
    assert run.status == SyncStatus.RUNNING
    assert run.checkpoint["phase"] == "contacts"
    assert Follow.objects.filter(deleted_at__isnull=False).count() == 0
    done_before = run.relationships
    assert 0 < done_before < len(wecom_pairs(sim))

    # The dead worker's lease is still held; a successor may take over once it is stale.
    assert SyncEngine(run, client).execute().status == SyncStatus.RUNNING
    SyncRun.objects.filter(pk=run.pk).update(
        heartbeat_at=timezone.now() - timedelta(seconds=settings.WECOM_SYNC_LEASE_SECONDS + 1)
    )
    calls_before = client.calls
    resumed = SyncEngine(SyncRun.objects.get(), client, retry_delays=FAST_RETRY).execute()
    assert resumed.status == SyncStatus.SUCCEEDED
    assert our_pairs() == wecom_pairs(sim)
    assert Follow.objects.count() == len(wecom_pairs(sim))
    assert resumed.relationships >= len(wecom_pairs(sim))
    # It resumed: fewer pages were read after the kill than a whole pass needs.
    pages_after = client.calls - calls_before
    assert pages_after < resumed.pages


def test_token_expiry_mid_run_is_survived() -> None:
    # Enough pages that most are fetched after the expiry (the read-ahead holds four).
    with Simulator(contacts=1500, staff=7, seed=6) as sim:
        client = sim_client(sim)
        _expire_mid_run(sim, client)


def _expire_mid_run(sim: Simulator, client: WeComClient) -> None:
    expired = False

    def expire_once(run: SyncRun) -> None:
        nonlocal expired
        if not expired:
            sim.expire_tokens()
            expired = True

    run = run_sync(client, flush_rows=50, prefetch_pages=1, after_flush=expire_once)
    assert run.status == SyncStatus.SUCCEEDED
    assert client.tokens.fetches == 2
    assert our_pairs() == wecom_pairs(sim)


def test_45009_storm_is_retried_with_backoff(sim, client) -> None:
    sim.inject(45009, count=3, path="externalcontact/batch/get_by_user")
    run = run_sync(client)
    assert run.status == SyncStatus.SUCCEEDED
    assert our_pairs() == wecom_pairs(sim)
    storms = [e for e in run.errors if e["errcode"] == 45009]
    assert len(storms) == 3 and all(e["transient"] for e in storms)


def test_endless_45009_leaves_the_run_resumable(sim, client) -> None:
    sim.inject(45009, count=None, path="externalcontact/batch/get_by_user")
    with pytest.raises(WeComRateLimited):
        run_sync(client)
    run = SyncRun.objects.get()
    assert run.status == SyncStatus.RUNNING and run.lease_token == ""
    sim.clear_injections()
    assert run_sync(client).status == SyncStatus.SUCCEEDED
    assert our_pairs() == wecom_pairs(sim)


def test_permanent_error_fails_the_run_with_a_reason(sim, client) -> None:
    sim.inject(48002, count=None, path="externalcontact/batch/get_by_user")
    with pytest.raises(Exception, match="48002"):
        run_sync(client)
    run = SyncRun.objects.get()
    assert run.status == SyncStatus.FAILED
    assert run.errors[-1]["errcode"] == 48002


def test_deleted_follows_are_marked_after_a_complete_pass(sim, client) -> None:
    run_sync(client)
    external_userid, userid = next(
        (e, u) for e, u in wecom_pairs(sim) if len(sim.contact(e)["follow_user"]) == 1
    )
    sim.delete_follow(userid, external_userid, emit=False)
    run = run_sync(client)
    assert run.deleted == 1
    follow = Follow.objects.get(customer__external_userid=external_userid)
    assert follow.deleted_at is not None
    assert Activity.objects.filter(customer=follow.customer, kind="contact_deleted").count() == 1
    customer = Customer.objects.get(external_userid=external_userid)
    assert customer.status == "lost" and customer.lost_at is not None
    assert run.wecom_follows == run.active_follows == len(wecom_pairs(sim))


def test_an_interrupted_run_deletes_nothing(sim, client) -> None:
    run_sync(client)
    external_userid, userid = next(iter(wecom_pairs(sim)))
    sim.delete_follow(userid, external_userid, emit=False)

    def die(run: SyncRun) -> None:
        raise Killed

    with pytest.raises(Killed):
        run_sync(client, flush_rows=50, after_flush=die)
    assert Follow.objects.filter(deleted_at__isnull=False).count() == 0


def test_tag_changes_are_mirrored(sim, client) -> None:
    run_sync(client)
    external_userid, userid = next(iter(wecom_pairs(sim)))
    tags = list(Tag.objects.values_list("wecom_tag_id", flat=True))
    current = {
        t["tag_id"]
        for f in sim.contact(external_userid)["follow_user"]
        if f["userid"] == userid
        for t in f.get("tags", [])
        if "tag_id" in t
    }
    add = next(t for t in tags if t not in current)
    sim.edit_follow(userid, external_userid, add_tags=[add], remove_tags=list(current), emit=False)
    doomed = next(t for t in tags if t != add)
    sim.delete_tag(doomed, emit=False)
    run_sync(client)
    customer = Customer.objects.get(external_userid=external_userid)
    expected = {
        t["tag_id"]
        for f in sim.contact(external_userid)["follow_user"]
        for t in f.get("tags", [])
        if "tag_id" in t
    }
    have = set(customer.tag_links.values_list("tag__wecom_tag_id", flat=True))
    assert add in have and have == expected
    assert not Tag.objects.filter(wecom_tag_id=doomed).exists()


def test_a_second_start_while_running_returns_the_same_run(sim, client) -> None:
    first = sync_run_start()
    assert sync_run_start().pk == first.pk


def test_the_first_staff_member_to_add_a_customer_owns_them_for_their_store(sim, client) -> None:
    from tests.factories import StaffFactory, StoreFactory

    store = StoreFactory(name="上海一店")
    member = StaffFactory(wecom_userid=sim.dataset.staff_ids[0], store=store)
    run_sync(client)
    checked = 0
    for customer in Customer.objects.prefetch_related("follows__staff")[:60]:
        first = min(customer.follows.all(), key=lambda f: (f.added_at, f.pk))
        assert customer.owner_id == first.staff_id
        assert customer.store_id == (store.pk if first.staff_id == member.pk else None)
        checked += customer.store_id == store.pk
    assert checked, "some customers were first added by the member with a store"


@pytest.mark.skipif(connection.vendor != "postgresql", reason="ANALYZE is PostgreSQL's")
def test_a_first_sync_analyzes_its_tables_as_they_double_until_the_cap(client, monkeypatch) -> None:
    monkeypatch.setattr(sync, "ANALYZE_UNTIL", 4000)
    engine = SyncEngine(sync_run_start(), client)
    analyzed: list[tuple[int, str]] = []

    def spy(execute, sql, params, many, context):
        if sql.startswith("ANALYZE"):
            analyzed.append((engine.run.created, sql.split()[1].strip('"')))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(spy):
        for created in (500, 999, 1000, 1500, 2000, 3999, 4000, 8000, 16_000, 1_000_000):
            engine.run.created = created
            engine._refresh_statistics()
    # Doubled from 1,000; the round at 4,000 is the last (it was due before the cap).
    assert sorted({at for at, _table in analyzed}) == [1000, 2000, 4000]
    assert {table for _at, table in analyzed} == {
        Customer._meta.db_table,
        Follow._meta.db_table,
        CustomerTag._meta.db_table,
        SyncSeenFollow._meta.db_table,
    }
