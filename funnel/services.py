"""Keeping the funnel's milestones in step with the facts.

One function, :func:`milestones_refresh`, recomputes the milestone rows of the given
customers (or of everyone) from the raw tables in a few set-based statements, writes only
the rows that differ, and records stage changes; it keeps the customers' paid periods
(``PaidPeriod``, the cohort grid's revenue) in step the same way. The ``facts_changed``
receiver calls it for the customers a write touched; ``rebuild_funnel`` calls it for
everyone. Being the same SQL, a rebuild gives exactly what incremental maintenance gave.

Definitions (the product's contract, also in the README):

* acquisition: ``Customer.acquired_at``;
* activation: the first activity of an activation kind (``FUNNEL_ACTIVATION_KINDS``);
* retention: the first engagement activity (any kind but ``FUNNEL_SYSTEM_KINDS``) at least
  ``FUNNEL_RETENTION_DAYS`` days after acquisition;
* revenue / repurchase: ``paid_at`` of the first / second paid order (by ``paid_at``, then
  id); refunded orders never count;
* referral: the acquisition time of the first customer referred by this one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import OperationalError, connection, transaction
from django.utils import timezone

from customers.models import Activity, Customer, Order, OrderStatus
from funnel.models import Milestones, PaidPeriod, StageChange

# Bits of a signed 64-bit integer a period set may use (bit 63 is the sign).
PERIODS = 62
WEEK_DAYS = 7
MONTH_DAYS = 30
# Customers refreshed per round of statements: bounds the id list and the rows in Python.
CHUNK = 20_000
_US_PER_DAY = 86_400 * 1_000_000

_MILESTONE_COLUMNS = (
    "customer_id",
    "acquired_at",
    "channel_id",
    "store_id",
    "owner_id",
    "is_referred",
    "lost_at",
    "activated_at",
    "retained_at",
    "revenue_at",
    "repurchase_at",
    "referral_at",
    "reached_activation_at",
    "reached_retention_at",
    "reached_revenue_at",
    "reached_referral_at",
    "stage",
    "engaged_weeks",
    "engaged_months",
    "paid_orders",
    "last_paid_at",
    "purchase_interval",
)


@dataclass
class RefreshResult:
    customers: int = 0  # customers considered
    changed: int = 0  # milestone rows written (created or changed)
    stage_changes: int = 0


def _vendor_sql() -> dict[str, str]:
    """The few fragments PostgreSQL and SQLite spell differently."""
    if connection.vendor == "postgresql":
        return {
            # Exact microseconds between two timestamptz values.
            "us_between": "(EXTRACT(EPOCH FROM ({a} - {b})) * 1000000)",
            "bit_or": "BIT_OR({x})",
            "period": "FLOOR(({diff}) / {length})",
            "distinct": "IS DISTINCT FROM",
            "shift": "(1::bigint << ({n})::int)",
            "gap": "(o.paid_at - {prev})",
            # The median interval, to the whole second (SQLite's twin below agrees).
            "median": "date_trunc('second', percentile_cont(0.5) WITHIN GROUP (ORDER BY {x}))",
        }
    # SQLite keeps datetimes as 'YYYY-MM-DD HH:MM:SS[.ffffff]' text in UTC: whole seconds
    # from strftime, plus the fraction read as an integer (absent means .000000). strftime
    # reads only the first 19 characters: given the fraction it rounds to the millisecond,
    # so '...:59.9995' would count as the next second, and the fraction twice.
    us = (
        "(CAST(strftime('%%s', substr({x}, 1, 19)) AS INTEGER) * 1000000"
        " + CAST(substr({x} || '.000000', 21, 6) AS INTEGER))"
    )
    return {
        "us_between": "(" + us.format(x="{a}") + " - " + us.format(x="{b}") + ")",
        # Distinct powers of two summed are their bitwise OR; SQLite has no BIT_OR.
        "bit_or": "SUM(DISTINCT {x})",
        # Integer division of non-negative integers is the floor.
        "period": "(({diff}) / {length})",
        "distinct": "IS NOT",
        "shift": "(1 << ({n}))",
        # DurationField is integer microseconds in SQLite.
        "gap": "(" + us.format(x="o.paid_at") + " - " + us.format(x="{prev}") + ")",
        # scrm_median_seconds is registered on every SQLite connection (funnel.apps).
        "median": "(scrm_median_seconds({x}) * 1000000)",
    }


def _in_ids(column: str, all_customers: bool) -> str:
    if all_customers:
        return "TRUE" if connection.vendor == "postgresql" else "1"
    if connection.vendor == "postgresql":
        return f"{column} = ANY(%(ids)s)"
    return f"{column} IN (SELECT value FROM json_each(%(ids)s))"


def _kinds_sql() -> tuple[str, str, str]:
    """(activation test, engagement test, the CTEs they need) for an activity ``a``."""
    if connection.vendor == "postgresql":
        # Kinds are matched against array parameters, not CTEs, so the scan can run in
        # parallel (and elapsed times are intervals: see _since_at_least).
        return "a.kind = ANY(%(act)s::text[])", "a.kind <> ALL(%(sys)s::text[])", ""
    return (
        "a.kind IN (SELECT value FROM act_kinds)",
        "a.kind NOT IN (SELECT value FROM sys_kinds)",
        f"act_kinds(value) AS ({_values_list('act')}),\n"
        f"sys_kinds(value) AS ({_values_list('sys')}),\n",
    )


def _activity_aggregates(acq: str) -> str:
    """The activity milestones of a group of activities ``a`` of one customer acquired at
    ``acq``: activated_at, retained_at, engaged_weeks, engaged_months (NULL when none).
    The full refresh aggregates all of a customer's activities, the delta path
    (:func:`milestones_add_activities`) only the new ones, with the same expressions."""
    v = _vendor_sql()
    activation, engaged, _ctes = _kinds_sql()

    def periods(days: int) -> str:
        bit = v["shift"].format(n=_period_of(days, "a.occurred_at", acq))
        inside = _in_periods(days, "a.occurred_at", acq)
        return v["bit_or"].format(x=f"CASE WHEN {engaged} AND {inside} THEN {bit} END")

    retention_us = settings.FUNNEL_RETENTION_DAYS * _US_PER_DAY
    retained = f"{engaged} AND {_since_at_least(retention_us, 'a.occurred_at', acq)}"
    return f"""MIN(CASE WHEN {activation} THEN a.occurred_at END) AS activated_at,
        MIN(CASE WHEN {retained} THEN a.occurred_at END) AS retained_at,
        {periods(WEEK_DAYS)} AS engaged_weeks,
        {periods(MONTH_DAYS)} AS engaged_months"""


def _fresh_sql(*, all_customers: bool) -> str:
    """SELECT of the recomputed milestone rows (``_MILESTONE_COLUMNS`` in order)."""
    v = _vendor_sql()
    tables = {
        "customer": Customer._meta.db_table,
        "activity": Activity._meta.db_table,
        "order": Order._meta.db_table,
    }
    gap = v["gap"].format(
        prev="LAG(o.paid_at) OVER (PARTITION BY o.customer_id ORDER BY o.paid_at, o.id)"
    )
    kinds_cte = _kinds_sql()[2]
    true = "TRUE" if connection.vendor == "postgresql" else "1"
    false = "FALSE" if connection.vendor == "postgresql" else "0"
    return f"""
WITH {kinds_cte}acts AS (
    SELECT a.customer_id,
        {_activity_aggregates("ac.acquired_at")}
    FROM {tables["activity"]} a
    JOIN {tables["customer"]} ac ON ac.id = a.customer_id
    -- The id list on both sides: PostgreSQL does not carry "= ANY" across the join, and
    -- without it merge-joined a thousand customers' activities to the whole customer index.
    WHERE {_in_ids("a.customer_id", all_customers)} AND {_in_ids("ac.id", all_customers)}
    GROUP BY a.customer_id
),
paid AS (
    SELECT o.customer_id, o.paid_at,
        ROW_NUMBER() OVER (PARTITION BY o.customer_id ORDER BY o.paid_at, o.id) AS n,
        {gap} AS gap
    FROM {tables["order"]} o
    WHERE o.status = '{OrderStatus.PAID.value}' AND {_in_ids("o.customer_id", all_customers)}
),
orders AS (
    SELECT customer_id,
        MIN(CASE WHEN n = 1 THEN paid_at END) AS revenue_at,
        MIN(CASE WHEN n = 2 THEN paid_at END) AS repurchase_at,
        COUNT(*) AS paid_orders,
        MAX(paid_at) AS last_paid_at,
        {v["median"].format(x="gap")} AS purchase_interval
    FROM paid GROUP BY customer_id
),
referrals AS (
    SELECT r.referred_by_id AS customer_id, MIN(r.acquired_at) AS referral_at
    FROM {tables["customer"]} r
    WHERE r.referred_by_id IS NOT NULL AND {_in_ids("r.referred_by_id", all_customers)}
    GROUP BY r.referred_by_id
),
base AS (
    SELECT c.id AS customer_id, c.acquired_at, c.source_channel_id AS channel_id,
        c.store_id, c.owner_id,
        CASE WHEN c.referred_by_id IS NULL THEN {false} ELSE {true} END AS is_referred,
        c.lost_at,
        acts.activated_at, acts.retained_at,
        orders.revenue_at, orders.repurchase_at, referrals.referral_at,
        COALESCE(acts.engaged_weeks, 0) AS engaged_weeks,
        COALESCE(acts.engaged_months, 0) AS engaged_months,
        COALESCE(orders.paid_orders, 0) AS paid_orders,
        orders.last_paid_at, orders.purchase_interval
    FROM {tables["customer"]} c
    LEFT JOIN acts ON acts.customer_id = c.id
    LEFT JOIN orders ON orders.customer_id = c.id
    LEFT JOIN referrals ON referrals.customer_id = c.id
    WHERE {_in_ids("c.id", all_customers)}
),
{_stages_from_base()}
"""


# Elapsed time from ``acq`` to ``at``, exactly. Over 10,000,000 activities a rebuild is
# per-row arithmetic: PostgreSQL compares intervals instead of NUMERIC microseconds
# (EXTRACT returns NUMERIC), both exact. A timestamptz difference is whole days plus under
# a day (justified), so for a non-negative one floor(elapsed / n days) is
# floor(its days / n). SQLite computes integer microseconds.


def _since_at_least(us: int, at: str, acq: str) -> str:
    """``at`` is at least ``us`` microseconds after ``acq``."""
    if connection.vendor == "postgresql":
        return f"({at} - {acq}) >= INTERVAL '{us} microseconds'"
    return f"({_vendor_sql()['us_between'].format(a=at, b=acq)}) >= {us}"


def _since_below(us: int, at: str, acq: str) -> str:
    """``at`` is less than ``us`` microseconds after ``acq``."""
    if connection.vendor == "postgresql":
        return f"({at} - {acq}) < INTERVAL '{us} microseconds'"
    return f"({_vendor_sql()['us_between'].format(a=at, b=acq)}) < {us}"


def _period_of(days: int, at: str, acq: str) -> str:
    """The whole periods of ``days`` from ``acq`` to ``at`` (not before ``acq``)."""
    if connection.vendor == "postgresql":
        return f"(date_part('day', {at} - {acq})::int / {days})"
    v = _vendor_sql()
    return v["period"].format(diff=v["us_between"].format(a=at, b=acq), length=days * _US_PER_DAY)


def _in_periods(days: int, at: str, acq: str) -> str:
    """``at`` falls in one of the ``PERIODS`` periods of ``days`` after ``acq``."""
    return (
        f"{_since_at_least(0, at, acq)} AND {_since_below(days * _US_PER_DAY * PERIODS, at, acq)}"
    )


def _fresh_paid_sql(*, all_customers: bool) -> str:
    """SELECT of the recomputed paid periods (``PaidPeriod`` rows: customer_id,
    acquired_at, days, n, amount) of the customers (of everyone)."""
    order, customer = Order._meta.db_table, Customer._meta.db_table
    selects = [
        f"""SELECT o.customer_id, pc.acquired_at, {days} AS days,
            {_period_of(days, "o.paid_at", "pc.acquired_at")} AS n, SUM(o.amount) AS amount
        FROM {order} o JOIN {customer} pc ON pc.id = o.customer_id
        WHERE o.status = '{OrderStatus.PAID.value}' AND {_in_ids("o.customer_id", all_customers)}
            AND {_in_ids("pc.id", all_customers)}
            AND {_in_periods(days, "o.paid_at", "pc.acquired_at")}
        GROUP BY o.customer_id, pc.acquired_at, 4"""
        for days in (WEEK_DAYS, MONTH_DAYS)
    ]
    return "\nUNION ALL\n".join(selects)


def _later(previous: str, milestone: str) -> str:
    """When a stage is reached: the later of the previous stage's time and its own
    milestone, or NULL while either is missing (portable: no GREATEST in SQLite)."""
    return (
        f"CASE WHEN {previous} IS NULL OR {milestone} IS NULL THEN NULL "
        f"WHEN {milestone} > {previous} THEN {milestone} ELSE {previous} END"
    )


def _stages_from_base() -> str:
    """The rest of a milestone SELECT after a ``base`` CTE of the milestone times and the
    other columns: when each stage was reached, and the stage."""
    return f"""r2 AS (
    SELECT base.*, {_later("acquired_at", "activated_at")} AS reached_activation_at FROM base
),
r3 AS (
    SELECT r2.*, {_later("reached_activation_at", "retained_at")} AS reached_retention_at
    FROM r2
),
r4 AS (
    SELECT r3.*, {_later("reached_retention_at", "revenue_at")} AS reached_revenue_at FROM r3
),
r5 AS (
    SELECT r4.*, {_later("reached_revenue_at", "referral_at")} AS reached_referral_at FROM r4
)
SELECT customer_id, acquired_at, channel_id, store_id, owner_id, is_referred, lost_at,
    activated_at, retained_at, revenue_at, repurchase_at, referral_at,
    reached_activation_at, reached_retention_at, reached_revenue_at, reached_referral_at,
    CASE WHEN reached_referral_at IS NOT NULL THEN 5
         WHEN reached_revenue_at IS NOT NULL THEN 4
         WHEN reached_retention_at IS NOT NULL THEN 3
         WHEN reached_activation_at IS NOT NULL THEN 2
         ELSE 1 END AS stage,
    engaged_weeks, engaged_months, paid_orders, last_paid_at, purchase_interval
FROM r5
"""


def _values_list(name: str) -> str:
    kinds = _kinds()[name]
    if not kinds:
        return "SELECT CAST(NULL AS VARCHAR(32)) WHERE 1 = 0"
    return " UNION ALL ".join(
        f"SELECT CAST(%({name}{i})s AS VARCHAR(32))" for i in range(len(kinds))
    )


def _kinds() -> dict[str, list[str]]:
    return {
        "act": list(settings.FUNNEL_ACTIVATION_KINDS),
        "sys": list(settings.FUNNEL_SYSTEM_KINDS),
    }


def _params(ids: Sequence[int] | None) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for name, kinds in _kinds().items():
        if connection.vendor == "postgresql":
            params[name] = kinds
        else:
            params.update({f"{name}{i}": kind for i, kind in enumerate(kinds)})
    if ids is not None:
        if connection.vendor == "postgresql":
            params["ids"] = list(ids)
        else:
            params["ids"] = "[" + ",".join(str(int(i)) for i in ids) + "]"
    return params


_FRESH = "funnel_fresh"
_STAGE_TIMES = {
    2: "reached_activation_at",
    3: "reached_retention_at",
    4: "reached_revenue_at",
    5: "reached_referral_at",
}


def milestones_refresh(
    *, customer_ids: Iterable[int] | None = None, now: datetime | None = None
) -> RefreshResult:
    """Recompute the milestones of these customers (of every customer with ``None``), write
    the rows that differ and record the stage changes, in the caller's transaction."""
    now = now or timezone.now()
    result = RefreshResult()
    with transaction.atomic():
        if customer_ids is None:
            _refresh(None, now, result)
        else:
            ids = sorted(set(customer_ids))
            for start in range(0, len(ids), CHUNK):
                _refresh(ids[start : start + CHUNK], now, result)
    return result


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
    with transaction.atomic(), connection.cursor() as cursor:
        previous = _settings(cursor, _FEW_SETTINGS) if postgres else {}
        # The same row locks as a refresh of these customers: a concurrent refresh or
        # delta of one of them waits, and the statements below see what it committed.
        _serialize(cursor, ids)
        activities = sorted(set(activity_ids))
        params = _params(ids)
        params["activities"] = (
            activities if postgres else "[" + ",".join(str(int(i)) for i in activities) + "]"
        )
        cursor.execute(f"DROP TABLE IF EXISTS {_FRESH}")
        cursor.execute(f"CREATE TEMPORARY TABLE {_FRESH} AS {_delta_sql()}", params)
        cursor.execute(f"SELECT customer_id FROM {_FRESH}")
        folded = {row[0] for row in cursor.fetchall()}
        _write_fresh(cursor, now, result, empty=False)
        # Every announced customer has a new activity: those not folded in have no row (or
        # a stale one) and are refreshed in full.
        missing = [i for i in ids if i not in folded]
        for start in range(0, len(missing), CHUNK):
            _refresh_through_temp(cursor, missing[start : start + CHUNK], now, result, empty=False)
        if postgres:
            _settings(cursor, previous)
    return result


def _delta_sql() -> str:
    """SELECT of the milestone rows of the customers ``%(ids)s`` with the activities
    ``%(activities)s`` folded in (``_MILESTONE_COLUMNS`` in order): of the customers with
    a stored row whose acquisition time is the customer's (others are left out)."""
    milestones, activity = Milestones._meta.db_table, Activity._meta.db_table
    customer = Customer._meta.db_table
    if connection.vendor == "postgresql":
        in_activities = "a.id = ANY(%(activities)s)"
    else:
        in_activities = "a.id IN (SELECT value FROM json_each(%(activities)s))"
    return f"""
WITH {_kinds_sql()[2]}new AS (
    SELECT a.customer_id,
        {_activity_aggregates("nm.acquired_at")}
    FROM {activity} a
    JOIN {milestones} nm ON nm.customer_id = a.customer_id
    -- The customer rows are in the buffers (just locked). NOT DISTINCT: not an index
    -- condition, so that the look-up is by id, not through the acquired_at index.
    JOIN {customer} c ON c.id = a.customer_id
        AND NOT (c.acquired_at {_vendor_sql()["distinct"]} nm.acquired_at)
    WHERE {in_activities} AND {_in_ids("a.customer_id", False)}
    GROUP BY a.customer_id
),
base AS (
    SELECT m.customer_id, m.acquired_at, m.channel_id, m.store_id, m.owner_id,
        m.is_referred, m.lost_at,
        {_earliest("m.activated_at", "n.activated_at")} AS activated_at,
        {_earliest("m.retained_at", "n.retained_at")} AS retained_at,
        m.revenue_at, m.repurchase_at, m.referral_at,
        m.engaged_weeks | COALESCE(n.engaged_weeks, 0) AS engaged_weeks,
        m.engaged_months | COALESCE(n.engaged_months, 0) AS engaged_months,
        m.paid_orders, m.last_paid_at, m.purchase_interval
    FROM new n JOIN {milestones} m ON m.customer_id = n.customer_id
),
{_stages_from_base()}
"""


def _earliest(stored: str, new: str) -> str:
    """The earlier of two times, either of which may be NULL (portable: no LEAST)."""
    return (
        f"CASE WHEN {new} IS NULL OR ({stored} IS NOT NULL AND {stored} <= {new}) "
        f"THEN {stored} ELSE {new} END"
    )


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
#: more than it saves.
_FULL_SETTINGS = {"work_mem": "256MB", "jit": "off"}
_FEW_SETTINGS = {"jit": "off", "max_parallel_workers_per_gather": "0"}


def _settings(cursor: Any, values: dict[str, str]) -> dict[str, str]:
    """Set these for the transaction (``SET LOCAL``); returns the previous values."""
    names = list(values)
    cursor.execute(
        "SELECT " + ", ".join("current_setting(%s), set_config(%s, %s, true)" for _ in names),
        [x for name in names for x in (name, name, values[name])],
    )
    row = cursor.fetchone()
    return {name: row[2 * i] for i, name in enumerate(names)}


def _refresh(ids: list[int] | None, now: datetime, result: RefreshResult) -> None:
    with connection.cursor() as cursor:
        if connection.vendor != "postgresql":
            _serialize(cursor, ids)
            _refresh_through_temp(cursor, ids, now, result, empty=False)
        elif ids is None:
            _refresh_everyone_pg(cursor, now, result)
        else:
            # Restored on success only: a failed transaction rolls SET LOCAL back itself.
            previous = _settings(cursor, _FEW_SETTINGS)
            _serialize(cursor, ids)
            _refresh_through_temp(cursor, ids, now, result, empty=False)
            _settings(cursor, previous)


def _refresh_everyone_pg(cursor: Any, now: datetime, result: RefreshResult) -> None:
    """A full refresh on PostgreSQL. Into empty tables (a rebuild after ``--reset``) it is
    a bulk load: the funnel tables' foreign keys and secondary indexes are dropped and
    re-created after the rows are in (one validating join per key instead of a deferred
    trigger per row: a million customers made five million of them; one sorted build per
    index instead of a million insertions). The rows and stage changes are the same."""
    tables = [Milestones._meta.db_table, StageChange._meta.db_table, PaidPeriod._meta.db_table]
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
    """Drop the foreign keys and the indexes (primary keys excepted) of these tables;
    returns the statements that re-create them exactly (names and definitions)."""
    cursor.execute(
        """
        SELECT format('ALTER TABLE %%s DROP CONSTRAINT %%I', c.conrelid::regclass, c.conname),
            format('ALTER TABLE %%s ADD CONSTRAINT %%I %%s', c.conrelid::regclass, c.conname,
                   pg_get_constraintdef(c.oid)),
            1 AS kind
        FROM pg_constraint c
        WHERE c.conrelid = ANY(%(tables)s::regclass[]) AND c.contype = 'f'
        UNION ALL
        SELECT format('DROP INDEX %%s', x.indexrelid::regclass), pg_get_indexdef(x.indexrelid),
            0 AS kind
        FROM pg_index x
        WHERE x.indrelid = ANY(%(tables)s::regclass[]) AND NOT x.indisprimary
            AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)
        ORDER BY 3, 1
        """,
        {"tables": tables},
    )
    rows = cursor.fetchall()
    for drop, _create, _kind in rows:
        cursor.execute(drop)
    return [create for _drop, create, _kind in rows]


def _stage_times(alias: str) -> str:
    return " ".join(f"WHEN {k} THEN {alias}.{column}" for k, column in _STAGE_TIMES.items())


def _steps() -> str:
    return " UNION ALL ".join(f"SELECT {k} AS k" for k in _STAGE_TIMES)


def _refresh_through_temp(
    cursor: Any, ids: list[int] | None, now: datetime, result: RefreshResult, *, empty: bool
) -> None:
    params = _params(ids)
    # The fresh rows land in a temporary table first so that the stage changes can be
    # read against the stored rows before these are overwritten.
    cursor.execute(f"DROP TABLE IF EXISTS {_FRESH}")
    cursor.execute(
        f"CREATE TEMPORARY TABLE {_FRESH} AS {_fresh_sql(all_customers=ids is None)}",
        params,
    )
    _write_fresh(cursor, now, result, empty=empty)
    _sync_paid_periods(cursor, ids, params, empty=empty)


def _write_fresh(cursor: Any, now: datetime, result: RefreshResult, *, empty: bool) -> None:
    """Record the stage changes from the stored rows to those of the ``_FRESH`` table, then
    write the rows that differ (and drop ``_FRESH``)."""
    milestones = Milestones._meta.db_table
    distinct = _vendor_sql()["distinct"]
    fresh_rows = _count(cursor, _FRESH)
    result.customers += fresh_rows
    if connection.vendor == "postgresql" and fresh_rows > 50_000:
        # A temporary table has no statistics; the joins below need them at scale.
        cursor.execute(f"ANALYZE {_FRESH}")
    cursor.execute(
        f"""
        INSERT INTO {StageChange._meta.db_table}
            (customer_id, from_stage, to_stage, at, recorded_at)
        SELECT f.customer_id, s.k - 1, s.k, CASE s.k {_stage_times("f")} END, %(now)s
        FROM {_FRESH} f
        LEFT JOIN {milestones} m ON m.customer_id = f.customer_id
        JOIN ({_steps()}) s ON s.k > COALESCE(m.stage, 1) AND s.k <= f.stage
        UNION ALL
        SELECT f.customer_id, m.stage, f.stage, %(now)s, %(now)s
        FROM {_FRESH} f JOIN {milestones} m ON m.customer_id = f.customer_id
        WHERE f.stage < m.stage
        """,
        {"now": now},
    )
    result.stage_changes += max(cursor.rowcount, 0)
    columns = ", ".join(_MILESTONE_COLUMNS)
    updates = ", ".join(f"{c} = excluded.{c}" for c in _MILESTONE_COLUMNS[1:])
    changed = " OR ".join(
        f"{milestones}.{c} {distinct} excluded.{c}" for c in _MILESTONE_COLUMNS[1:]
    )
    # ``WHERE 1 = 1`` lets SQLite tell the upsert's ON CONFLICT from a join's ON. Into an
    # empty table every row is new: a plain INSERT, without the speculative insertion.
    upsert = "" if empty else f"ON CONFLICT (customer_id) DO UPDATE SET {updates} WHERE {changed}"
    cursor.execute(
        f"INSERT INTO {milestones} ({columns}) SELECT {columns} FROM {_FRESH} WHERE 1 = 1 {upsert}"
    )
    result.changed += max(cursor.rowcount, 0)
    cursor.execute(f"DROP TABLE {_FRESH}")


_FRESH_PAID = "funnel_fresh_paid"


def paid_periods_refresh_everyone() -> None:
    """Recompute every customer's paid periods alone (the migration that added them)."""
    with transaction.atomic(), connection.cursor() as cursor:
        _sync_paid_periods(cursor, None, _params(None), empty=False)


def _sync_paid_periods(
    cursor: Any, ids: list[int] | None, params: dict[str, Any], *, empty: bool
) -> None:
    """Bring these customers' (everyone's) ``PaidPeriod`` rows in step with their paid
    orders, writing only the rows that differ (an unchanged refresh writes none)."""
    table = PaidPeriod._meta.db_table
    columns = "customer_id, acquired_at, days, n, amount"
    fresh = _fresh_paid_sql(all_customers=ids is None)
    if empty:
        # Into an empty table every row is new: straight in, without a temporary copy.
        cursor.execute(f"INSERT INTO {table} ({columns}) {fresh}", params)
        return
    cursor.execute(f"DROP TABLE IF EXISTS {_FRESH_PAID}")
    cursor.execute(f"CREATE TEMPORARY TABLE {_FRESH_PAID} AS {fresh}", params)
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


def _count(cursor: Any, table: str) -> int:
    cursor.execute(f"SELECT COUNT(*) FROM {table}")
    return int(cursor.fetchone()[0])
