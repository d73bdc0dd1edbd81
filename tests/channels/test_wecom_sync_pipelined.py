"""The sync's behaviour again, outside a test transaction on PostgreSQL: there flushes are
written by the writer thread on its own connection while the next one is prepared
(``SyncEngine._pipelined``), a path the transactional tests of test_wecom_sync.py cannot
take (the writer could not see their uncommitted rows)."""

from __future__ import annotations

import pytest
from django.db import connection

from channels.models import SyncRun
from channels.wecom.sync import SyncEngine, sync_run_start
from tests.channels.test_wecom_sync import (  # noqa: F401  (fixtures and tests, run here too)
    client,
    our_pairs,
    run_sync,
    sim,
    test_an_interrupted_run_deletes_nothing,
    test_deleted_follows_are_marked_after_a_complete_pass,
    test_full_sync_mirrors_every_relationship,
    test_killed_worker_resumes_from_checkpoint_without_duplicates,
    test_sync_keeps_states_tags_and_acquisition_time,
    test_tag_changes_are_mirrored,
    test_unchanged_resync_writes_nothing,
    wecom_pairs,
)

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="the pipelined path is PG's"),
]


def test_these_tests_take_the_pipelined_path(client) -> None:  # noqa: F811 (the fixture)
    engine = SyncEngine(sync_run_start(), client)
    assert engine._pipelined()
    assert SyncRun.objects.count() == 1


def test_a_first_load_skips_the_unchanged_look_up_and_a_later_sync_does_not(
    sim,  # noqa: F811 (the fixture)
    client,  # noqa: F811
) -> None:
    seen: list[bool] = []

    def note(run: SyncRun) -> None:
        seen.append(run.checkpoint["first_load"])

    run_sync(client, flush_rows=80, after_flush=note)
    assert seen and all(seen)
    assert our_pairs() == wecom_pairs(sim)

    seen.clear()
    again = run_sync(client, flush_rows=80, after_flush=note)
    assert seen and not any(seen)
    assert (again.created, again.updated, again.deleted) == (0, 0, 0)
