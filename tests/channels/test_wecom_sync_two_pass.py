"""A corp's first sync on PostgreSQL in two passes: the download stages every relationship,
the apply phase writes them a chunk of customers at a time. Each phase resumes after a
kill, a server crash that empties the (unlogged) staging table is noticed, and no staged
row outlives the run. test_wecom_contacts_pg.py checks that the two passes write what one
pass writes; test_wecom_sync_pipelined.py runs these tests again with writer threads."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.conf import settings
from django.core.cache.backends.locmem import LocMemCache
from django.db import connection
from django.utils import timezone

from channels.models import SyncRun, SyncStagedContact, SyncStatus
from channels.wecom import client as client_module
from channels.wecom import contacts
from channels.wecom.client import WeComClient
from channels.wecom.sync import SyncEngine
from customers.models import Customer, Follow
from tests.channels.test_wecom_sync import (  # noqa: F401  (fixtures)
    FAST_RETRY,
    Killed,
    client,
    our_pairs,
    run_sync,
    sim,
    wecom_pairs,
)
from tests.channels.wecom.test_rate_limiter import MINUTE_START, FakeClock
from tests.channels.wecom_support import sim_client

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="the two passes are PG's"),
]


def kill_when(condition: Callable[[SyncRun], bool]) -> Callable[[SyncRun], None]:
    def after_flush(run: SyncRun) -> None:
        if condition(run):
            raise Killed

    return after_flush


def applying(done: int) -> Callable[[SyncRun], bool]:
    """True once the apply phase has committed ``done`` chunks."""
    return lambda run: (
        run.checkpoint.get("phase") == "apply" and len(run.checkpoint["done"]) >= done
    )


def downloading(staged: int) -> Callable[[SyncRun], bool]:
    """True once the download has staged at least ``staged`` rows."""
    return lambda run: (
        run.checkpoint.get("phase") == "contacts" and (run.checkpoint.get("staged", 0) >= staged)
    )


def resume(client) -> SyncRun:  # noqa: F811 (the fixture)
    """What the dead worker's successor does once its lease is stale."""
    SyncRun.objects.filter(status=SyncStatus.RUNNING).update(
        heartbeat_at=timezone.now() - timedelta(seconds=settings.WECOM_SYNC_LEASE_SECONDS + 1)
    )
    return SyncEngine(
        SyncRun.objects.get(status=SyncStatus.RUNNING), client, retry_delays=FAST_RETRY
    ).execute()


def assert_mirrored(sim, run: SyncRun, *, exactly: bool = True) -> None:  # noqa: F811
    """WeCom's pairs, every customer and follow created once (exact figures, nothing
    written twice: ``exactly``, with one round of download) and no staged row left."""
    pairs = wecom_pairs(sim)
    assert run.status == SyncStatus.SUCCEEDED
    assert our_pairs() == pairs
    assert Follow.objects.count() == len(pairs)
    customers = Customer.objects.count()
    assert customers == len({e for e, _u in pairs})
    assert run.created == customers + len(pairs)
    if exactly:
        assert run.updated == 0
    assert run.wecom_follows == run.active_follows == len(pairs)
    assert not SyncStagedContact.objects.exists()


def test_a_first_sync_stages_then_applies_by_chunk(sim, client) -> None:  # noqa: F811
    seen: list[tuple[str, int, int]] = []

    def note(run: SyncRun) -> None:
        phase = run.checkpoint["phase"]
        staged = SyncStagedContact.objects.filter(run_id=run.pk).count()
        seen.append((phase, staged, Follow.objects.count()))

    run = run_sync(client, flush_rows=60, after_flush=note)
    assert_mirrored(sim, run)
    phases = [phase for phase, _s, _f in seen]
    assert phases[0] == "contacts" and phases[-1] == "apply"
    assert phases == sorted(phases, key=["contacts", "apply"].index)
    # Nothing is written while downloading; every row is staged before the first chunk.
    assert all(follows == 0 for phase, _s, follows in seen if phase == "contacts")
    assert {staged for phase, staged, _f in seen if phase == "apply"} == {len(wecom_pairs(sim))}
    assert phases.count("apply") > 3
    assert run.relationships == len(wecom_pairs(sim))


def test_a_later_sync_takes_one_pass(sim, client) -> None:  # noqa: F811
    run_sync(client, flush_rows=60)
    phases: set[str] = set()
    again = run_sync(
        client, flush_rows=60, after_flush=lambda run: phases.add(run.checkpoint["phase"])
    )
    assert phases == {"contacts"}
    assert (again.created, again.updated, again.deleted) == (0, 0, 0)


def test_a_run_killed_while_applying_applies_only_the_chunks_not_done(sim, client) -> None:  # noqa: F811
    with pytest.raises(Killed):
        run_sync(client, flush_rows=60, after_flush=kill_when(applying(done=2)))
    run = SyncRun.objects.get()
    assert run.checkpoint["phase"] == "apply"
    done = run.checkpoint["done"]
    assert 2 <= len(done) < run.checkpoint["chunks"]
    assert 0 < Follow.objects.count() < len(wecom_pairs(sim))
    calls = client.calls
    assert_mirrored(sim, resume(client))
    assert client.calls == calls, "nothing is downloaded again"


def test_a_run_killed_while_downloading_resumes_the_download(sim, client) -> None:  # noqa: F811
    with pytest.raises(Killed):
        run_sync(client, flush_rows=60, after_flush=kill_when(downloading(staged=100)))
    run = SyncRun.objects.get()
    assert run.checkpoint["phase"] == "contacts"
    assert 100 <= run.checkpoint["staged"] < len(wecom_pairs(sim))
    assert SyncStagedContact.objects.count() == run.checkpoint["staged"]
    assert not Follow.objects.exists()
    # Pages after the checkpoint are staged again (their rows counted once when applied).
    assert_mirrored(sim, resume(client))


@pytest.mark.parametrize(
    "killed_while", [applying(done=2), downloading(staged=100)], ids=["applying", "downloading"]
)
def test_staged_rows_a_server_crash_emptied_are_downloaded_again(
    sim,  # noqa: F811 (the fixture)
    client,  # noqa: F811
    killed_while,
) -> None:
    with pytest.raises(Killed):
        run_sync(client, flush_rows=60, after_flush=kill_when(killed_while))
    # What a crash does to an unlogged table.
    contacts.contacts_staged_clear()
    assert_mirrored(sim, resume(client))


def test_a_new_run_clears_what_an_abandoned_run_staged(sim, client) -> None:  # noqa: F811
    with pytest.raises(Killed):
        run_sync(client, flush_rows=60, after_flush=kill_when(downloading(staged=100)))
    SyncRun.objects.update(status=SyncStatus.FAILED, lease_token="")
    assert SyncStagedContact.objects.exists()
    run = run_sync(client, flush_rows=60)
    assert_mirrored(sim, run)


def test_a_failed_run_leaves_no_staged_row(sim, client, monkeypatch) -> None:  # noqa: F811
    # WeCom forbids the API from the fourth page on: a permanent error.
    pages = client.batch_get_by_user

    def fourth_forbidden(*args, **kwargs):
        if client.calls >= 5:  # the token, the follow users and the tags, then pages
            sim.inject(48002, count=None, path="externalcontact/batch/get_by_user")
        return pages(*args, **kwargs)

    monkeypatch.setattr(client, "batch_get_by_user", fourth_forbidden)
    staged: list[int] = []
    with pytest.raises(Exception, match="48002"):
        run_sync(
            client,
            flush_rows=60,
            after_flush=lambda run: staged.append(run.checkpoint.get("staged", 0)),
        )
    assert SyncRun.objects.get().status == SyncStatus.FAILED
    assert staged and staged[-1] > 0, "rows were staged before the failure"
    assert not SyncStagedContact.objects.exists()


def rate_limited(sim, monkeypatch, per_minute: int) -> WeComClient:  # noqa: F811 (fixture)
    """A client allowed ``per_minute`` pages a minute, on a fake clock (its waits for
    the next minute take no time)."""
    monkeypatch.setattr(client_module, "time", FakeClock(at=MINUTE_START + 10))
    config = dataclasses.replace(sim_client(sim).config, per_minute=per_minute)
    return WeComClient(config, store=LocMemCache(f"limits-{uuid.uuid4().hex}", {}))


def test_a_download_the_rate_limit_stops_applies_what_it_has_then_goes_on(
    sim,  # noqa: F811 (the fixture)
    monkeypatch,
) -> None:
    limited = rate_limited(sim, monkeypatch, per_minute=2)
    rounds: list[str] = []

    def note(run: SyncRun) -> None:
        phase = run.checkpoint["phase"]
        if not rounds or rounds[-1] != phase:
            rounds.append(phase)

    run = run_sync(limited, flush_rows=60, after_flush=note)
    pages = -(-len(wecom_pairs(sim)) // 100)
    # Two pages a minute: the download stops before each third page and applies first.
    assert rounds == ["contacts", "apply"] * (-(-pages // 2))
    assert limited.limiter.waited > 0
    # Every row created once; a customer whose followers span rounds is updated after.
    assert_mirrored(sim, run, exactly=False)
    assert run.relationships == len(wecom_pairs(sim))


def test_a_later_round_whose_staged_rows_were_lost_is_downloaded_again(
    sim,  # noqa: F811 (the fixture)
    monkeypatch,
) -> None:
    limited = rate_limited(sim, monkeypatch, per_minute=2)

    def second_round(run: SyncRun) -> bool:
        return run.checkpoint.get("phase") == "contacts" and bool(run.checkpoint["round_from"][2])

    with pytest.raises(Killed):
        run_sync(limited, flush_rows=60, after_flush=kill_when(second_round))
    assert Follow.objects.exists(), "the first round was applied"
    contacts.contacts_staged_clear()
    assert_mirrored(sim, resume(limited), exactly=False)
