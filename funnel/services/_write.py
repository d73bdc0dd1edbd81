"""Writing recomputed milestone rows, stage changes and paid periods, and the locks and
session settings that keep concurrent writers exact."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connection, transaction

from customers.models import Customer
from funnel._session import local_settings
from funnel.models import Milestones, PaidPeriod, StageChange
from funnel.services._sql import (
    _FRESH,
    _MILESTONE_COLUMNS,
    CHUNK,
    _differs,
    _fresh_paid_sql,
    _fresh_sql,
    _in_ids,
    _params,
    _stage_changes_sql,
)


@dataclass
class RefreshResult:
    customers: int = 0  # customers considered
    changed: int = 0  # milestone rows written (created or changed)
    stage_changes: int = 0


# Any constant: the advisory lock a refresh shares and a rebuild holds alone.
_REBUILD_LOCK = 0x46554E4E454C  # "FUNNEL"


def _serialize(cursor: Any, ids: list[int] | None) -> None:
    """Make concurrent refreshes exact on PostgreSQL (SQLite has a single writer).

    Each refresh computes from its statement's snapshot. Two transactions adding orders
    for one customer would each see only their own and the later write would win, so a
    refresh first locks its customers' rows; the other waits, and its next statement sees
    the first's commit. A full rebuild reads everyone, so it excludes every refresh.
    Row locks are taken in id order (no deadlock); NO KEY UPDATE does not conflict with the
    KEY SHARE locks foreign-key checks take on the same rows.
    """
    if connection.vendor != "postgresql":
        return
    if ids is None:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_REBUILD_LOCK])
        return
    cursor.execute("SELECT pg_advisory_xact_lock_shared(%s)", [_REBUILD_LOCK])
    cursor.execute(
        f"SELECT id FROM {Customer._meta.db_table} WHERE id = ANY(%s) "
        "ORDER BY id FOR NO KEY UPDATE",
        [ids],
    )


#: Session settings for a refresh on PostgreSQL, for its transaction only. No JIT
#: compilation: a refresh of a thousand customers cost 1 s of it for 1.6 s of work, and a
#: full one gained nothing. A full refresh hashes the per-customer aggregates of
#: 10,000,000 activities in memory instead of spilling (the server default is 4 MB); a
#: refresh of a few customers is index look-ups, where starting parallel workers costs
#: more than it saves. A rebuild into empty tables builds their indexes in memory (the
#: server default of 64 MB sorts a million rows' keys on disk). Its aggregates have about
#: as many groups as rows (a customer's activities, a customer's paid periods): a sort
#: groups them faster than a hash table that misses the CPU cache on every row, and the
#: sorted halves of the parallel workers merge instead of re-hashing (paid periods of a
#: million orders 5.6 → 3.0 s, the milestones 10.4 → 9.8 s). Reading whole tables, it
#: prices random reads as the server's default does, not as the app's connections do
#: (``DATABASE_RANDOM_PAGE_COST``, for the reports' look-ups): at 1.1 it chose index
#: paths that took the rebuild from 28 to 34 s and the unchanged refresh from 20 to 33 s.
_FULL_SETTINGS = {
    "work_mem": "256MB",
    "maintenance_work_mem": "512MB",
    "enable_hashagg": "off",
    "jit": "off",
    "random_page_cost": "4",
}
_FEW_SETTINGS = {"jit": "off", "max_parallel_workers_per_gather": "0"}


def _refresh_through_temp(
    cursor: Any,
    ids: list[int] | None,
    now: datetime,
    result: RefreshResult,
) -> None:
    """Recompute and write these customers' (everyone's) milestone rows, stage changes
    and paid periods, over the stored ones (a rebuild into empty tables: ``_rebuild``)."""
    params = _params(ids)
    # The fresh rows land in a temporary table first so that the stage changes can be
    # read against the stored rows before these are overwritten.
    cursor.execute(f"DROP TABLE IF EXISTS {_FRESH}")
    _create_temp(cursor, _FRESH, _fresh_sql(all_customers=ids is None), params, ids)
    _write_fresh(cursor, now, result)
    _sync_paid_periods(cursor, ids, params)


def _create_temp(
    cursor: Any, table: str, select: str, params: dict[str, Any], ids: list[int] | None
) -> None:
    """A temporary table of a recomputation of these customers (of everyone: None)."""
    create_from_raw(
        cursor, f"CREATE TEMPORARY TABLE {table} AS {select}", params, everyone=ids is None
    )


def create_from_raw(cursor: Any, statement: str, params: dict[str, Any], *, everyone: bool) -> int:
    """Run ``statement``, a CREATE TABLE AS of a recomputation from the raw tables of
    some customers, or of ``everyone``; returns the rows it wrote.

    Of everyone, with hash joins off: each part of the rows and of the paid periods comes
    out in customer order (activities and paid orders from their customer indexes,
    referrals from a sorted aggregate), so merge joins stream them with the customers'
    primary key. The planner prices hash tables of a million customers lower, but building
    and probing them is serial and misses the CPU cache on every row: at a million
    customers the rows 10.5 → 6.4 s and the paid periods 4.3 → 1.5 s (EXPLAIN ANALYZE,
    with the indexes of migrations customers 0007 and 0008). Not for the rest of a full
    refresh: its joins of the fresh rows to the stored ones read neither in customer
    order, and with hash joins off the stage changes took 1.5 → 2.3 s."""
    if not everyone:
        cursor.execute(statement, params)
        return int(cursor.rowcount)
    with local_settings(cursor, {"enable_hashjoin": "off"}):
        cursor.execute(statement, params)
        return int(cursor.rowcount)


def _write_fresh(cursor: Any, now: datetime, result: RefreshResult) -> None:
    """Record the stage changes from the stored rows to those of the ``_FRESH`` table, then
    write the rows that differ (and drop ``_FRESH``)."""
    milestones = Milestones._meta.db_table
    fresh_rows = _count(cursor, _FRESH)
    result.customers += fresh_rows
    if connection.vendor == "postgresql" and fresh_rows > 50_000:
        # A temporary table has no statistics; the joins below need them at scale.
        cursor.execute(f"ANALYZE {_FRESH}")
    changes = _stage_changes_sql(_FRESH, milestones)
    cursor.execute(
        f"INSERT INTO {StageChange._meta.db_table} ({_STAGE_CHANGE_COLUMNS}) {changes}",
        {"now": now},
    )
    result.stage_changes += max(cursor.rowcount, 0)
    columns = ", ".join(_MILESTONE_COLUMNS)
    updates = ", ".join(f"{c} = excluded.{c}" for c in _MILESTONE_COLUMNS[1:])
    changed = _differs(milestones, "excluded")
    # ``WHERE 1 = 1`` lets SQLite tell the upsert's ON CONFLICT from a join's ON.
    cursor.execute(
        f"INSERT INTO {milestones} ({columns}) SELECT {columns} FROM {_FRESH} WHERE 1 = 1 "
        f"ON CONFLICT (customer_id) DO UPDATE SET {updates} WHERE {changed}"
    )
    result.changed += max(cursor.rowcount, 0)
    cursor.execute(f"DROP TABLE {_FRESH}")


_STAGE_CHANGE_COLUMNS = "customer_id, from_stage, to_stage, at, recorded_at"
_FRESH_PAID = "funnel_fresh_paid"


def paid_periods_refresh_everyone() -> None:
    """Recompute every customer's paid periods alone (the migration that added them)."""
    with transaction.atomic(), connection.cursor() as cursor:
        _sync_paid_periods(cursor, None, _params(None))


def _sync_paid_periods(cursor: Any, ids: list[int] | None, params: dict[str, Any]) -> None:
    """Bring these customers' (everyone's) ``PaidPeriod`` rows in step with their paid
    orders, writing only the rows that differ (an unchanged refresh writes none). A
    rebuild into empty tables builds a new table instead (``_rebuild``)."""
    table = PaidPeriod._meta.db_table
    columns = "customer_id, acquired_at, days, n, amount"
    cursor.execute(f"DROP TABLE IF EXISTS {_FRESH_PAID}")
    # PostgreSQL runs CREATE TABLE AS in parallel, never INSERT ... SELECT (15 s of a
    # rebuild's 46 for a million orders).
    _create_temp(cursor, _FRESH_PAID, _fresh_paid_sql(all_customers=ids is None), params, ids)
    if connection.vendor == "postgresql" and (ids is None or len(ids) > 50_000):
        cursor.execute(f"ANALYZE {_FRESH_PAID}")
    cursor.execute(
        f"DELETE FROM {table} WHERE {_in_ids(f'{table}.customer_id', ids is None)} "
        f"AND NOT EXISTS (SELECT 1 FROM {_FRESH_PAID} f "
        f"WHERE f.customer_id = {table}.customer_id AND f.days = {table}.days "
        f"AND f.n = {table}.n AND f.acquired_at = {table}.acquired_at "
        f"AND f.amount = {table}.amount)",
        params,
    )
    # What is left of a customer's period equals the fresh row: add only the others.
    cursor.execute(
        f"INSERT INTO {table} ({columns}) SELECT {columns} FROM {_FRESH_PAID} f "
        f"WHERE NOT EXISTS (SELECT 1 FROM {table} p WHERE p.customer_id = f.customer_id "
        "AND p.days = f.days AND p.n = f.n)"
    )
    cursor.execute(f"DROP TABLE {_FRESH_PAID}")


def _drop_orphans(cursor: Any) -> None:
    """Delete the funnel rows of customers that no longer exist (part of a full refresh).

    Django's delete removes them with their customer; a delete outside the ORM (SQL by
    hand) would leave them to be counted by every report, as the tables keep no foreign
    key to the customer (see ``Milestones.customer``). Every customer with a stage change
    or a paid period has a milestone row: one anti-join finds them all (1.2 s for a
    million rows; one per table took three times that)."""
    milestones, customer = Milestones._meta.db_table, Customer._meta.db_table
    cursor.execute(
        f"SELECT customer_id FROM {milestones} m WHERE NOT EXISTS "
        f"(SELECT 1 FROM {customer} c WHERE c.id = m.customer_id)"
    )
    gone = [row[0] for row in cursor.fetchall()]
    for start in range(0, len(gone), CHUNK):
        params = _params(gone[start : start + CHUNK])
        for model in (StageChange, PaidPeriod, Milestones):
            table = model._meta.db_table
            cursor.execute(
                f"DELETE FROM {table} WHERE {_in_ids(f'{table}.customer_id', False)}", params
            )


def _count(cursor: Any, table: str) -> int:
    cursor.execute(f"SELECT COUNT(*) FROM {table}")
    return int(cursor.fetchone()[0])
