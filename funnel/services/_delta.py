"""Shortcuts for facts that can only add: new activities, new customers."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from funnel._session import local_settings, prepared_statement
from funnel.models import Milestones, StageChange
from funnel.services._refresh import milestones_refresh
from funnel.services._sql import (
    _FRESH,
    _FROM_STAGES,
    _MILESTONE_COLUMNS,
    CHUNK,
    _candidates_sql,
    _delta_ctes,
    _delta_sql,
    _differs,
    _first_rows_sql,
    _in_ids,
    _params,
    _stage_changes_sql,
)
from funnel.services._write import (
    _FEW_SETTINGS,
    _REBUILD_LOCK,
    _STAGE_CHANGE_COLUMNS,
    RefreshResult,
    _refresh_through_temp,
    _serialize,
    _write_fresh,
)


def milestones_add_activities(
    *,
    customer_ids: Iterable[int],
    activity_ids: Iterable[int],
    now: datetime | None = None,
) -> RefreshResult:
    """Fold newly stored activities into their customers' milestones, in the caller's
    transaction: the same rows and stage changes as :func:`milestones_refresh` of these
    customers, without re-reading their other activities.

    Only for activities that were just added (``activities_record``): adding activities
    can only move activation and retention earlier and set engagement bits, so the stored
    row merged with an aggregate of the new activities alone (earliest of the two times,
    OR of the bit sets; the same expressions as the full refresh) is the recomputed row.
    An activity changed or deleted needs :func:`milestones_refresh`. Customers without a
    stored row, or whose row has another acquisition time than the customer (a change not
    refreshed yet), are refreshed in full.
    """
    now = now or timezone.now()
    result = RefreshResult()
    ids = sorted(set(customer_ids))
    if not ids:
        return result
    postgres = connection.vendor == "postgresql"
    with transaction.atomic(), connection.cursor() as cursor, local_settings(cursor, _FEW_SETTINGS):
        # The same row locks as a refresh of these customers: a concurrent refresh or
        # delta of one of them waits, and the statements below see what it committed.
        _serialize(cursor, ids)
        activities = sorted(set(activity_ids))
        params = _params(ids)
        params["activities"] = (
            activities if postgres else "[" + ",".join(str(int(i)) for i in activities) + "]"
        )
        params["now"] = now
        if postgres:
            folded = _fold_pg(cursor, params, result)
        else:
            cursor.execute(_candidates_sql(), params)
            folded = {row[0] for row in cursor.fetchall()}
            cursor.execute(f"DROP TABLE IF EXISTS {_FRESH}")
            cursor.execute(f"CREATE TEMPORARY TABLE {_FRESH} AS {_delta_sql()}", params)
            _write_fresh(cursor, now, result)
        # Customers without a row that can take the fold (none yet, or a stale one) are
        # refreshed in full. Those with one but no new activity that counts (system kinds
        # only) keep it as it is: such activities change no milestone.
        missing = [i for i in ids if i not in folded]
        for start in range(0, len(missing), CHUNK):
            _refresh_through_temp(cursor, missing[start : start + CHUNK], now, result)
    return result


def _fold_pg(cursor: Any, params: dict[str, Any], result: RefreshResult) -> set[int]:
    """The delta on PostgreSQL in one statement: the folded rows, their stage changes
    (read against the stored rows: every part of a statement sees the same snapshot)
    and the UPDATE of the rows that differ. Instead of a temporary table (new catalog
    rows at every call) and an upsert's speculative insertion: every row exists.
    Returns the customers whose rows could take the fold.

    Hash joins: the planner estimates one row for each CTE (its customers' ids are a
    parameter), and so joined them in nested loops, a million comparisons for a batch of
    1,000 (600 ms). Every table is read by the customers' ids (index scans of ``= ANY``),
    the CTEs by hashing. Against a look-up of the stored row by each part that needs it
    (five), a batch of 1,000 went from 77 to 58 ms (EXPLAIN ANALYZE, mean of ten batches,
    2 GB of shared buffers).

    A prepared statement with its generic plan: planning the statement took 8 to 10 ms a
    batch, as long as its writes; the plan does not depend on the batch (the same hash
    joins and index scans for any number of customers)."""
    name = prepared_statement(cursor, "funnel_fold", _fold_sql(), _FOLD_PARAMETERS)
    with local_settings(cursor, _FOLD_SETTINGS):
        cursor.execute(
            f"EXECUTE {name} ({', '.join(['%s'] * len(_FOLD_PARAMETERS))})",
            [params[p] for p in _FOLD_PARAMETERS],
        )
        candidates, fresh, changes, written = cursor.fetchone()
    result.customers += fresh
    result.stage_changes += changes
    result.changed += written
    return set(candidates)


#: The generic plan, with hash joins of the CTEs (see ``_fold_pg``), and every table read
#: by index: a session's generic plan is made at its first fold, maybe while the tables
#: hold a few rows, where reading them whole is cheaper; it must not do that at a million.
_FOLD_SETTINGS = {
    "enable_nestloop": "off",
    "enable_seqscan": "off",
    "plan_cache_mode": "force_generic_plan",
}

#: The fold's parameters, in the prepared statement's order, with their types.
_FOLD_PARAMETERS = {
    "ids": "bigint[]",
    "activities": "bigint[]",
    "act": "text[]",
    "sys": "text[]",
    "now": "timestamptz",
}


def _fold_sql() -> str:
    milestones = Milestones._meta.db_table
    updates = ", ".join(f"{c} = f.{c}" for c in _MILESTONE_COLUMNS[1:])
    return f"""
        WITH {_delta_ctes()},
        fresh AS MATERIALIZED ({_FROM_STAGES}),
        changes AS (
            INSERT INTO {StageChange._meta.db_table} ({_STAGE_CHANGE_COLUMNS})
            {_stage_changes_sql("fresh", "stored")}
            RETURNING 1
        ),
        written AS (
            UPDATE {milestones} t SET {updates} FROM fresh f
            WHERE t.customer_id = f.customer_id AND {_in_ids("t.customer_id", False)}
                AND ({_differs("t", "f")})
            RETURNING 1
        )
        SELECT ARRAY(SELECT customer_id FROM stored), (SELECT COUNT(*) FROM fresh),
            (SELECT COUNT(*) FROM changes), (SELECT COUNT(*) FROM written)
        """


def milestones_add_customers(
    *, customer_ids: Iterable[int], now: datetime | None = None
) -> RefreshResult:
    """Write the first milestone row of customers this transaction just created, in the
    caller's transaction: the same rows as :func:`milestones_refresh` of these customers,
    in one plain statement instead of its temporary tables and upserts.

    Only for a customer with no fact yet beyond their own row (no activity that counts,
    no paid order, no referee: what a WeCom sync creates), whose row is acquisition
    only (``_first_rows_sql``), and with no milestone row yet (a conflict means there
    is one): with no stored state there is nothing to compare, no stage change (stage
    1) and no paid period. The others, and any customer with a row, get the full
    refresh.
    Customers created by another transaction must not be given: without their row locks a
    concurrent writer of their facts would not be waited for.
    """
    now = now or timezone.now()
    ids = sorted(set(customer_ids))
    result = RefreshResult()
    if not ids:
        return result
    postgres = connection.vendor == "postgresql"
    columns = ", ".join(_MILESTONE_COLUMNS)
    written: set[int] = set()
    with transaction.atomic(), connection.cursor() as cursor, local_settings(cursor, _FEW_SETTINGS):
        if postgres:
            # Not the row locks (nobody else sees these customers), but a rebuild of
            # everyone still excludes this write, as it does every refresh's.
            cursor.execute("SELECT pg_advisory_xact_lock_shared(%s)", [_REBUILD_LOCK])
        for start in range(0, len(ids), CHUNK):
            chunk = ids[start : start + CHUNK]
            # ``WHERE`` before ``ON CONFLICT``: SQLite would read the conflict clause as
            # a join's ON otherwise.
            cursor.execute(
                f"INSERT INTO {Milestones._meta.db_table} ({columns}) {_first_rows_sql()} "
                "ON CONFLICT (customer_id) DO NOTHING RETURNING customer_id",
                _params(chunk),
            )
            written.update(row[0] for row in cursor.fetchall())
    result.customers = result.changed = len(written)
    others = [i for i in ids if i not in written]
    if others:
        full = milestones_refresh(customer_ids=others, now=now)
        result.customers += full.customers
        result.changed += full.changed
        result.stage_changes += full.stage_changes
    return result
