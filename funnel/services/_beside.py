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

``LIKE ... INCLUDING ALL`` and the statements here carry over the columns, defaults,
checks, keys, indexes, storage parameters and grants; not triggers, policies,
publications or per-column statistics targets, which this project does not define.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections

from funnel._session import local_settings
from funnel.models import PaidPeriod
from funnel.services._write import _FULL_SETTINGS

#: The table the second connection builds; its keys and indexes are named after it.
SHADOW = f"{PaidPeriod._meta.db_table}_next"


@dataclass
class _Definition:
    """What makes the new table the live one's twin: its storage parameters, the
    statements of its keys and indexes under new names, the names to give back, and the
    live table's grants."""

    options: str = ""
    keys_and_indexes: list[str] = field(default_factory=list)
    constraints: list[tuple[str, str]] = field(default_factory=list)  # (new name, live name)
    indexes: list[tuple[str, str]] = field(default_factory=list)
    grants: list[str] = field(default_factory=list)


class PaidPeriodsBeside:
    """The second connection's build. ``start`` it while holding the rebuild's lock,
    ``finish`` it in the rebuild's transaction; ``discard`` it after that transaction
    failed (not inside it: the new table may be locked by it)."""

    def __init__(self) -> None:
        self._executor: ThreadPoolExecutor | None = None
        self._future: Future[_Definition] | None = None

    def start(self, fill: Callable[[Any, str], None]) -> None:
        """Build the new table: ``fill(cursor, table)`` writes its rows, in the second
        connection's transaction, with a full refresh's settings."""
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="funnel-paid")
        self._future = self._executor.submit(_build, fill)

    def finish(self, cursor: Any) -> None:
        """Wait for the build (re-raising what it raised), then replace the live table by
        the new one in the caller's transaction."""
        assert self._executor is not None and self._future is not None
        try:
            definition = self._future.result()
        finally:
            self._executor.shutdown()
        live = PaidPeriod._meta.db_table
        cursor.execute(f"DROP TABLE {live}")
        cursor.execute(f"ALTER TABLE {SHADOW} RENAME TO {live}")
        for new, old in definition.constraints:
            # Renaming a key renames the index behind it.
            cursor.execute(f'ALTER TABLE {live} RENAME CONSTRAINT "{new}" TO "{old}"')
        for new, old in definition.indexes:
            cursor.execute(f'ALTER INDEX "{new}" RENAME TO "{old}"')
        for grant in definition.grants:
            cursor.execute(grant)

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


def _build(fill: Callable[[Any, str], None]) -> _Definition:
    other = connections.create_connection(DEFAULT_DB_ALIAS)
    try:
        other.set_autocommit(False)
        with other.cursor() as cursor:
            # The rebuild waits for this connection outside the server's sight: a wait for
            # a lock here must end (in an error that fails the rebuild) instead of
            # hanging in a deadlock the server cannot see.
            cursor.execute("SET LOCAL lock_timeout = '1min'")
            definition = _definition(cursor)
            cursor.execute(f"DROP TABLE IF EXISTS {SHADOW}")
            # Columns, defaults, checks, storage and comments now; the keys and indexes
            # after the rows, as the rebuild builds its own.
            cursor.execute(
                f"CREATE TABLE {SHADOW} (LIKE {PaidPeriod._meta.db_table} "
                "INCLUDING ALL EXCLUDING INDEXES)"
            )
            if definition.options:
                cursor.execute(f"ALTER TABLE {SHADOW} SET ({definition.options})")
            with local_settings(cursor, _FULL_SETTINGS):
                fill(cursor, SHADOW)
                for statement in definition.keys_and_indexes:
                    cursor.execute(statement)
                cursor.execute(f"ANALYZE {SHADOW}")
        other.commit()
        return definition
    except BaseException:
        if other.connection is not None:
            other.rollback()
        raise
    finally:
        other.close()


def _definition(cursor: Any) -> _Definition:
    live = PaidPeriod._meta.db_table
    found = _Definition()
    cursor.execute(
        """
        SELECT c.conname, pg_get_constraintdef(c.oid) FROM pg_constraint c
        WHERE c.conrelid = %(live)s::regclass AND c.contype IN ('p', 'u')
        ORDER BY c.conname
        """,
        {"live": live},
    )
    for number, (name, definition) in enumerate(cursor.fetchall()):
        new = f"{SHADOW}_key{number}"
        found.keys_and_indexes.append(f'ALTER TABLE {SHADOW} ADD CONSTRAINT "{new}" {definition}')
        found.constraints.append((new, name))
    # An index's definition from its method on: "USING btree (...) [INCLUDE (...)]
    # [WHERE ...]" (pg_get_indexdef names the table qualified, and ours has no " USING ").
    cursor.execute(
        """
        SELECT i.relname, x.indisunique,
            substring(pg_get_indexdef(x.indexrelid) FROM ' USING .*$')
        FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
        WHERE x.indrelid = %(live)s::regclass
            AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)
        ORDER BY i.relname
        """,
        {"live": live},
    )
    for number, (name, unique, method_on) in enumerate(cursor.fetchall()):
        new = f"{SHADOW}_idx{number}"
        found.keys_and_indexes.append(
            f'CREATE {"UNIQUE " if unique else ""}INDEX "{new}" ON {SHADOW}{method_on}'
        )
        found.indexes.append((new, name))
    cursor.execute(
        """
        SELECT array_to_string(c.reloptions, ', '),
            ARRAY(
                SELECT format('GRANT %%s ON %%I TO %%s%%s', a.privilege_type, c.relname,
                    CASE WHEN a.grantee = 0 THEN 'PUBLIC'
                         ELSE quote_ident(pg_get_userbyid(a.grantee)) END,
                    CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END)
                FROM aclexplode(c.relacl) a WHERE a.grantee <> c.relowner
            )
        FROM pg_class c WHERE c.oid = %(live)s::regclass
        """,
        {"live": live},
    )
    options, grants = cursor.fetchone()
    found.options = options or ""
    found.grants = list(grants)
    return found
