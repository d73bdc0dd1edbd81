"""The sync's writer parts: where a run resumes when its writers committed unevenly, how
rows are split among the writers, and what a writer does with a lost deadlock."""

from __future__ import annotations

import psycopg2.errors
from django.db import OperationalError

from channels.wecom.sync_progress import Position, Writer, part_of, resume_position


def test_a_run_resumes_after_the_last_page_every_part_committed() -> None:
    checkpoint = {
        "phase": "contacts",
        "batch": 0,
        "cursor": "",
        "parts": {"0": [3, 7, "c-3-7"], "1": [3, 2, "c-3-2"], "2": [4, 0, ""]},
    }
    assert resume_position(checkpoint) == Position(3, 2, "c-3-2")
    assert resume_position(checkpoint).cursor == "c-3-2"


def test_a_checkpoint_without_parts_resumes_where_it_says() -> None:
    # Written by a run that had not committed a flush yet, or by an earlier version.
    assert resume_position({"phase": "contacts", "batch": 2, "cursor": "abc"}) == Position(
        2, 0, "abc"
    )
    assert resume_position({"phase": "contacts"}) == Position(0, 0, "")


def test_positions_order_by_batch_then_page_never_by_cursor() -> None:
    assert Position(1, 9, "zzz") < Position(2, 0, "")
    assert Position(1, 2, "zzz") < Position(1, 3, "aaa")
    assert Position(1, 2, "x") == Position(1, 2, "y")


def test_every_row_of_a_customer_goes_to_one_part() -> None:
    ids = [f"wm{i:030d}" for i in range(2000)]
    for parts in (1, 2, 3):
        assigned = [part_of(external_userid, parts) for external_userid in ids]
        assert assigned == [part_of(external_userid, parts) for external_userid in ids]
        assert set(assigned) == set(range(parts))  # every writer gets work


def _deadlock() -> OperationalError:
    error = OperationalError("deadlock detected")
    error.__cause__ = psycopg2.errors.DeadlockDetected("deadlock detected")
    return error


def test_a_write_that_lost_a_deadlock_runs_again() -> None:
    calls = []

    def job() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise _deadlock()

    writer = Writer("test-writer")
    writer.submit(job)
    assert writer.close() is None
    assert len(calls) == 2


def test_a_write_that_keeps_losing_fails_and_stops_the_writer() -> None:
    attempts = []
    later = []

    def job() -> None:
        attempts.append(1)
        raise _deadlock()

    writer = Writer("test-writer")
    writer.submit(job)
    writer.submit(lambda: later.append(1))
    error = writer.close()
    assert isinstance(error, OperationalError)
    assert len(attempts) == 3
    # A later write must never commit past one that failed.
    assert later == []


def test_another_error_is_not_retried() -> None:
    attempts = []

    def job() -> None:
        attempts.append(1)
        raise ValueError("bad row")

    writer = Writer("test-writer")
    writer.submit(job)
    assert isinstance(writer.close(), ValueError)
    assert attempts == [1]
