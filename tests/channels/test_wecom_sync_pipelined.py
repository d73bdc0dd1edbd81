"""The sync's behaviour again, outside a test transaction on PostgreSQL: there flushes (and
a first sync's chunks) are written by the writer threads on their own connections while
the next one is prepared (``SyncEngine._pipelined``), a path the transactional tests of
test_wecom_sync.py cannot take (the writers could not see their uncommitted rows)."""

from __future__ import annotations

import pytest
from django.db import connection

from channels.models import SyncRun
from channels.wecom.sync import PAGE_LIMIT, SyncEngine, sync_run_start
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
from tests.channels.test_wecom_sync_two_pass import (  # noqa: F401  (run here too)
    test_a_download_the_rate_limit_stops_applies_what_it_has_then_goes_on,
    test_a_failed_run_leaves_no_staged_row,
    test_a_first_sync_stages_then_applies_by_chunk,
    test_a_later_round_whose_staged_rows_were_lost_is_downloaded_again,
    test_a_later_sync_takes_one_pass,
    test_a_new_run_clears_what_an_abandoned_run_staged,
    test_a_run_killed_while_applying_applies_only_the_chunks_not_done,
    test_a_run_killed_while_downloading_resumes_the_download,
    test_staged_rows_a_server_crash_emptied_are_downloaded_again,
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


def test_a_resumed_run_starts_every_part_where_the_earliest_stopped(
    sim,  # noqa: F811 (the fixture)
    client,  # noqa: F811
) -> None:
    # An attempt with three writers died with its parts committed unevenly; the next
    # attempt has two writers.
    calls_before = client.calls
    first = run_sync(client, flush_rows=40, writers=3)
    whole_pass = client.calls - calls_before
    userids = sorted({userid for _eid, userid in wecom_pairs(sim)})
    second_page = client.batch_get_by_user(userids, cursor="", limit=PAGE_LIMIT)["next_cursor"]
    assert second_page
    SyncRun.objects.filter(pk=first.pk).update(
        status="running",
        finished_at=None,
        lease_token="",
        checkpoint={
            "phase": "contacts",
            "userids": userids,
            "since": first.started_at.isoformat(),
            "first_load": False,
            # Only the earliest part's cursor is ever sent.
            "parts": {"0": [0, 2, "-"], "1": [0, 1, second_page], "2": [0, 3, "-"]},
        },
    )
    seen: list[dict] = []
    calls_before = client.calls
    again = SyncEngine(
        SyncRun.objects.get(pk=first.pk),
        client,
        flush_rows=40,
        writers=2,
        after_flush=lambda run: seen.append(dict(run.checkpoint["parts"])),
    ).execute()
    assert again.status == "succeeded"
    assert our_pairs() == wecom_pairs(sim)
    # Resumed from part 1's page (with its cursor), not from the start...
    assert client.calls - calls_before < whole_pass
    # ...and the third part, gone with its writer, no longer holds the resume point.
    assert seen and all(set(parts) == {"0", "1"} for parts in seen)
