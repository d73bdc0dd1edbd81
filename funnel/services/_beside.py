"""A rebuild's paid periods built beside its milestones, by a second connection
(PostgreSQL, ``rebuild_funnel`` into empty tables, outside any caller's transaction).

A rebuild into empty tables spends about half its time writing rows and building indexes,
work that leaves one of two cores idle much of the time. The paid periods depend on the
orders alone, not on the milestones, so a second connection builds them meanwhile into a
new table of the same definition (``funnel_paidperiod_next``) with its keys, indexes and
statistics, and commits it under that name, which nothing reads. The rebuild's own transaction then
drops the old table and gives the new one its name, and its keys and indexes theirs:
readers see the old paid periods or the new ones, never a mix, as when one transaction
wrote them. Only the old table's last moment is locked, not the whole rebuild.

The second connection reads the orders after the rebuild holds its exclusive lock (a
refresh of any customer waits for it), like each of the rebuild's own statements, which
take their snapshots one by one too (READ COMMITTED). If the rebuild fails after the new
table was committed, it is dropped; the next rebuild drops one left over by a crash.

The new table is made as the rebuild makes its milestones' (``_twin``): the same columns,
NOT NULLs, defaults, checks, keys, indexes, storage parameters, owner and grants.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections

from funnel._session import local_settings
from funnel.models import PaidPeriod
from funnel.services._sql import _fresh_paid_sql, _params
from funnel.services._twin import Definition, twin_name
from funnel.services._write import _FULL_SETTINGS

#: The table the second connection builds; its keys and indexes are named after it.
SHADOW = twin_name(PaidPeriod._meta.db_table)


def _new_name(number: int) -> str:
    """The name of the live table's key or index ``number`` on the new table."""
    return f"{SHADOW}_{number}"


class PaidPeriodsBeside:
    """The second connection's build. ``start`` it while holding the rebuild's lock,
    ``finish`` it in the rebuild's transaction; ``discard`` it after that transaction
    failed (not inside it: the new table may be locked by it)."""

    def __init__(self) -> None:
        self._executor: ThreadPoolExecutor | None = None
        self._future: Future[Definition] | None = None

    def start(self) -> None:
        """Build the new table, in the second connection's transaction."""
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="funnel-paid")
        self._future = self._executor.submit(_build)

    def finish(self, cursor: Any) -> None:
        """Wait for the build (re-raising what it raised), then replace the live table by
        the new one in the caller's transaction."""
        assert self._executor is not None and self._future is not None
        try:
            definition = self._future.result()
        finally:
            self._executor.shutdown()
        definition.take_place(
            cursor,
            renamed={
                found.name: _new_name(number)
                for number, found in enumerate(definition.keys_and_indexes)
            },
        )

    def discard(self) -> None:
        """Wait for the build and drop what it committed, if anything."""
        if self._executor is None or self._future is None:
            return
        self._executor.shutdown()
        if self._future.exception() is None:
            drop_leftover()


def drop_leftover() -> None:
    """Drop the new table, on a connection of its own."""
    other = connections.create_connection(DEFAULT_DB_ALIAS)
    try:
        with other.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {SHADOW}")
    finally:
        other.close()


def _build() -> Definition:
    other = connections.create_connection(DEFAULT_DB_ALIAS)
    try:
        other.set_autocommit(False)
        with other.cursor() as cursor:
            # The rebuild waits for this connection outside the server's sight: a wait for
            # a lock here must end (in an error that fails the rebuild) instead of
            # hanging in a deadlock the server cannot see.
            cursor.execute("SET LOCAL lock_timeout = '1min'")
            definition = Definition.read(cursor, PaidPeriod._meta.db_table)
            with local_settings(cursor, _FULL_SETTINGS):
                _fill(cursor, definition)
                # Under names of their own: the live table's keys and indexes keep theirs
                # until it is dropped.
                for number, found in enumerate(definition.keys_and_indexes):
                    cursor.execute(found.create(SHADOW, _new_name(number)))
                cursor.execute(f"ANALYZE {SHADOW}")
        other.commit()
        return definition
    except BaseException:
        if other.connection is not None:
            other.rollback()
        raise
    finally:
        other.close()


def _fill(cursor: Any, definition: Definition) -> None:
    """The new table, with everyone's paid periods."""
    definition.build_twin(cursor, _fresh_paid_sql(all_customers=True), _params(None))
