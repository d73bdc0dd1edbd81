"""Foreign-key checks of a bulk write done once per statement instead of once per row.

PostgreSQL checks a foreign key with a trigger per written row: at COMMIT (Django's keys
are ``DEFERRABLE INITIALLY DEFERRED``) each row is fetched again and its parent locked
``FOR KEY SHARE`` by a query of its own. A WeCom sync flush writes thousands of rows that
point at the same few parents (200 staff members, 50 tags, a handful of channels): about
five such checks per relationship, a fifth of the server's time in a first sync.

:func:`rows_unchecked` runs a block of the caller's own statements with the per-row
triggers off (``session_replication_role = replica``, which fires no ordinary trigger:
the project defines none but the foreign keys' own), and the caller then gives the
parent ids its statements wrote to :func:`parents_lock`, which takes the very lock each
trigger would have taken, ``FOR KEY SHARE``, once per parent, and fails the transaction
if one is gone. That is the same guarantee, and it holds against a concurrent delete
either way round: a parent deleted before our lock is missing (we raise and roll back);
one a transaction tries to delete after it waits for our COMMIT, and then its own check
(the parent side's trigger, which ours does not switch off) sees our rows and refuses.

The setting needs a superuser or, from PostgreSQL 15, ``GRANT SET ON PARAMETER
session_replication_role TO <role>``. Without it (or with ``DATABASE_BATCH_KEY_CHECKS``
off) the block runs with the triggers as always and :func:`parents_lock` does nothing.
The block must write only rows whose parents the caller hands over (no receiver of
``announce``, which could write rows of any table, may run inside it).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection
from django.db.transaction import TransactionManagementError

# Per database connection (the server-side session): whether this role may set it.
_ALLOWED_ATTR = "_scrm_replication_role_allowed"


def _allowed(cursor: Any) -> bool:
    if connection.vendor != "postgresql" or not settings.DATABASE_BATCH_KEY_CHECKS:
        return False
    raw = connection.connection
    cached = getattr(connection, _ALLOWED_ATTR, None)
    if cached is not None and cached[0] is raw:
        return bool(cached[1])
    # has_parameter_privilege (and GRANT SET ON PARAMETER) came with PostgreSQL 15.
    if getattr(connection, "pg_version", 0) >= 150000:
        cursor.execute("SELECT has_parameter_privilege('session_replication_role', 'SET')")
    else:
        cursor.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
    allowed = bool(cursor.fetchone()[0])
    setattr(connection, _ALLOWED_ATTR, (raw, allowed))
    return allowed


@contextmanager
def rows_unchecked(cursor: Any) -> Iterator[bool]:
    """The per-row foreign-key triggers off for the block (this transaction only); yields
    whether they are, i.e. whether the caller must call :func:`parents_lock`. Restored
    after the block (by a statement: fetch the block's results inside it); on an error
    the rollback of the enclosing atomic block (transaction or savepoint) restores it."""
    if not connection.in_atomic_block:
        # SET LOCAL would not outlive the statement, and only a rollback of an atomic
        # block (a transaction or a savepoint) restores it after an error.
        raise TransactionManagementError("rows_unchecked needs an atomic block")
    if not _allowed(cursor):
        yield False
        return
    cursor.execute(
        "SELECT current_setting('session_replication_role'), "
        "set_config('session_replication_role', 'replica', true)"
    )
    previous = cursor.fetchone()[0]
    yield True
    cursor.execute("SELECT set_config('session_replication_role', %s, true)", [previous])


def parents_lock(cursor: Any, parents: Mapping[str, Iterable[int | None] | None]) -> None:
    """Lock ``FOR KEY SHARE`` the rows of each parent table (name -> referenced ids; None
    ignored), as the foreign-key triggers would have at COMMIT, in one statement; raise
    ``IntegrityError`` (the transaction then rolls back) when one of them is gone."""
    wanted = {
        table: sorted({i for i in ids or () if i is not None}) for table, ids in parents.items()
    }
    wanted = {table: ids for table, ids in wanted.items() if ids}
    if not wanted:
        return
    qn = connection.ops.quote_name
    # Sorted ids, tables in a fixed order: concurrent writers lock in the same order.
    tables = sorted(wanted)
    counts = ", ".join(
        f"(SELECT count(*) FROM (SELECT 1 FROM {qn(t)} p WHERE p.id = ANY(%s) "
        "ORDER BY p.id FOR KEY SHARE OF p) x)"
        for t in tables
    )
    cursor.execute(f"SELECT {counts}", [wanted[t] for t in tables])
    for table, got in zip(tables, cursor.fetchone(), strict=True):
        if got != len(wanted[table]):
            raise IntegrityError(
                f"{len(wanted[table]) - got} row(s) of {table} referenced by this write "
                "were deleted meanwhile; nothing was written"
            )
