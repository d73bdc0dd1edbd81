"""The full refresh of everyone on PostgreSQL (``rebuild_funnel``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from funnel._session import local_settings
from funnel.models import Milestones, PaidPeriod, StageChange
from funnel.services._beside import PaidPeriodsBeside
from funnel.services._write import (
    _FULL_SETTINGS,
    RefreshResult,
    _drop_orphans,
    _refresh_through_temp,
    _serialize,
    keys_and_indexes,
)


def _refresh_everyone_pg(
    cursor: Any,
    now: datetime,
    result: RefreshResult,
    *,
    reset: bool = False,
    beside: PaidPeriodsBeside | None = None,
) -> None:
    """A full refresh on PostgreSQL, after emptying the funnel tables with ``reset``. Into
    empty tables it is a bulk load: the funnel tables' keys and indexes are dropped and
    re-created after the rows are in (one sorted build per index instead of a million
    insertions). The rows and stage changes are the same. Given ``beside`` (outside any
    caller's transaction), a second connection builds the paid periods of a bulk load
    meanwhile (``funnel.services._beside``).

    The funnel tables have no foreign keys (see ``Milestones.customer``), so nothing here
    waits on, or locks, the customers' tables, and no deferred check of rows this
    transaction wrote can stand in the way of the TRUNCATE or of dropping the keys."""
    paid = PaidPeriod._meta.db_table
    if reset:
        empty = True
    else:
        cursor.execute(
            f"SELECT EXISTS (SELECT 1 FROM {Milestones._meta.db_table}) "
            f"OR EXISTS (SELECT 1 FROM {paid})"
        )
        empty = not cursor.fetchone()[0]
    _serialize(cursor, None)
    beside = beside if empty else None
    tables = [Milestones._meta.db_table, StageChange._meta.db_table]
    if beside is None:
        tables.append(paid)
    else:
        # Before this transaction locks the paid periods' table: the second connection
        # reads its definition.
        beside.start()
    with local_settings(cursor, _FULL_SETTINGS):
        if reset:
            # TRUNCATE: a million rows' DELETE took 5 s, and left them to vacuum.
            cursor.execute(f"TRUNCATE {', '.join(tables)}")
        elif not empty:
            _drop_orphans(cursor)
        restore = _drop_keys_and_indexes(cursor, tables) if empty else []
        _refresh_through_temp(cursor, None, now, result, empty=empty, paid=beside is None)
        for statement in restore:
            cursor.execute(statement)
        if empty:
            # The reports plan from statistics; a rebuilt table must not wait for autovacuum
            # (the second connection analyzes its own).
            cursor.execute(f"ANALYZE {Milestones._meta.db_table}")
            if beside is None:
                cursor.execute(f"ANALYZE {paid}")
    if beside is not None:
        beside.finish(cursor)


def _drop_keys_and_indexes(cursor: Any, tables: list[str]) -> list[str]:
    """Drop the keys (primary, unique) and the indexes of these tables; returns the
    statements that re-create them exactly (names and definitions)."""
    restore = []
    for table in tables:
        for found in keys_and_indexes(cursor, table):
            cursor.execute(found.drop(table))
            restore.append(found.create(table))
    return restore
