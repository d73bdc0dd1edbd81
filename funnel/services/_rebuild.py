"""The full refresh of everyone on PostgreSQL (``rebuild_funnel``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import OperationalError, transaction

from funnel.models import Milestones, PaidPeriod, StageChange
from funnel.services._write import (
    _FULL_SETTINGS,
    RefreshResult,
    _refresh_through_temp,
    _serialize,
    _settings,
)


def _refresh_everyone_pg(
    cursor: Any, now: datetime, result: RefreshResult, *, reset: bool = False
) -> None:
    """A full refresh on PostgreSQL, after emptying the funnel tables with ``reset``. Into
    empty tables it is a bulk load: the funnel tables' keys and indexes are dropped and
    re-created after the rows are in (one validating join per foreign key instead of a
    deferred trigger per row: a million customers made five million of them; one sorted
    build per index instead of a million insertions). The rows and stage changes are the
    same."""
    tables = [Milestones._meta.db_table, StageChange._meta.db_table, PaidPeriod._meta.db_table]
    if reset:
        empty = True
    else:
        cursor.execute(
            f"SELECT EXISTS (SELECT 1 FROM {tables[0]}) OR EXISTS (SELECT 1 FROM {tables[2]})"
        )
        empty = not cursor.fetchone()[0]
    restore: list[str] = []
    if empty:
        # The tables the foreign keys point at are locked before the rebuild's advisory
        # lock, in the same order as the DDL below would, so that a writer holding one of
        # them while it waits for the advisory lock cannot deadlock with the rebuild.
        cursor.execute(
            "SELECT DISTINCT confrelid::regclass::text FROM pg_constraint "
            "WHERE conrelid = ANY(%s::regclass[]) AND contype = 'f' ORDER BY 1",
            [tables],
        )
        referenced = [row[0] for row in cursor.fetchall()]
        cursor.execute(f"LOCK TABLE {', '.join(referenced)} IN SHARE ROW EXCLUSIVE MODE")
    _serialize(cursor, None)
    # Restored on success only: a failed transaction rolls SET LOCAL back itself.
    previous = _settings(cursor, _FULL_SETTINGS)
    if reset:
        _empty(cursor, tables)
    if empty:
        try:
            with transaction.atomic():
                restore = _drop_keys_and_indexes(cursor, tables)
        except OperationalError as exc:
            # "Pending trigger events": this transaction wrote rows that a dropped key
            # would have to check at commit (a test, an import then a rebuild). Keep the
            # keys and indexes; the load is row by row, as for a table that is not empty.
            if getattr(exc.__cause__, "pgcode", None) != "55006":
                raise
    _refresh_through_temp(cursor, None, now, result, empty=empty)
    for statement in restore:
        cursor.execute(statement)
    if empty:
        # The reports plan from statistics; a rebuilt table must not wait for autovacuum.
        cursor.execute(f"ANALYZE {tables[0]}")
        cursor.execute(f"ANALYZE {tables[2]}")
    _settings(cursor, previous)


def _drop_keys_and_indexes(cursor: Any, tables: list[str]) -> list[str]:
    """Drop the keys (primary, unique, foreign) and the indexes of these tables; returns
    the statements that re-create them exactly (names and definitions), the foreign keys
    last."""
    cursor.execute(
        """
        SELECT format('ALTER TABLE %%s DROP CONSTRAINT %%I', c.conrelid::regclass, c.conname),
            format('ALTER TABLE %%s ADD CONSTRAINT %%I %%s', c.conrelid::regclass, c.conname,
                   pg_get_constraintdef(c.oid)),
            CASE c.contype WHEN 'f' THEN 1 ELSE 0 END AS kind
        FROM pg_constraint c
        WHERE c.conrelid = ANY(%(tables)s::regclass[]) AND c.contype IN ('f', 'p', 'u')
        UNION ALL
        SELECT format('DROP INDEX %%s', x.indexrelid::regclass), pg_get_indexdef(x.indexrelid),
            0 AS kind
        FROM pg_index x
        WHERE x.indrelid = ANY(%(tables)s::regclass[])
            AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)
        ORDER BY 3, 1
        """,
        {"tables": tables},
    )
    rows = cursor.fetchall()
    for drop, _create, _kind in rows:
        cursor.execute(drop)
    return [create for _drop, create, _kind in rows]


def _empty(cursor: Any, tables: list[str]) -> None:
    """Empty the funnel tables: TRUNCATE (a million rows' DELETE took 5 s, and left them
    to vacuum), or DELETE when this transaction has rows in them whose foreign keys are
    still to be checked at commit (PostgreSQL refuses to truncate those)."""
    try:
        with transaction.atomic():
            cursor.execute(f"TRUNCATE {', '.join(tables)}")
    except OperationalError as exc:
        if getattr(exc.__cause__, "pgcode", None) != "55006":
            raise
        for table in tables:
            cursor.execute(f"DELETE FROM {table}")
