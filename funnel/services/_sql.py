"""The SQL of the funnel's milestones: the one recomputation from the raw tables (the
full refresh), the fold of new activities into stored rows (the delta path), and the
few fragments PostgreSQL and SQLite spell differently. Statements, not execution."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.db import connection

from customers.models import Activity, Customer, Order, OrderStatus
from funnel.models import Milestones

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
        # parallel (and elapsed times are timestamp sums: see _since_at_least).
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
    (:func:`milestones_add_activities`) only the new ones, with the same expressions.

    Only engagement activities (not of a system kind: :func:`_engaged_only`) may be in the
    group. The system kinds count for none of the four (activation kinds are never system
    ones: settings refuse it), and a customer with no activity left gets the same row as
    one whose activities all aggregate to NULL; leaving them out before the join to the
    customers halves a rebuild's rows (the brand writes most of a quiet customer's)."""
    v = _vendor_sql()
    activation = _kinds_sql()[0]

    def periods(days: int) -> str:
        bit = v["shift"].format(n=_period_of(days, "a.occurred_at", acq))
        inside = _in_periods(days, "a.occurred_at", acq)
        return v["bit_or"].format(x=f"CASE WHEN {inside} THEN {bit} END")

    retention_us = settings.FUNNEL_RETENTION_DAYS * _US_PER_DAY
    retained = _since_at_least(retention_us, "a.occurred_at", acq)
    return f"""MIN(CASE WHEN {activation} THEN a.occurred_at END) AS activated_at,
        MIN(CASE WHEN {retained} THEN a.occurred_at END) AS retained_at,
        {periods(WEEK_DAYS)} AS engaged_weeks,
        {periods(MONTH_DAYS)} AS engaged_months"""


def _engaged_only() -> str:
    """The condition on the activities ``a`` that :func:`_activity_aggregates` reads."""
    return _kinds_sql()[1]


def _raw_tables() -> dict[str, str]:
    """The raw tables a milestone row is computed from."""
    return {
        "customer": Customer._meta.db_table,
        "activity": Activity._meta.db_table,
        "order": Order._meta.db_table,
    }


def _is_referred(customer: str) -> str:
    """The ``is_referred`` column of the customer aliased ``customer``, as a boolean."""
    true, false = ("TRUE", "FALSE") if connection.vendor == "postgresql" else ("1", "0")
    return f"CASE WHEN {customer}.referred_by_id IS NULL THEN {false} ELSE {true} END"


def _first_row_values(customer: str) -> list[str]:
    """The milestone row (``_MILESTONE_COLUMNS`` in order) of the customer aliased
    ``customer`` when it has no fact yet beyond its own row: no activity that counts, no
    paid order, no referee (:func:`_has_no_facts`). The full refresh's SELECT gives
    exactly this for such a customer (acquisition only: stage 1, no engagement, nothing
    paid), at the cost of planning and joining its aggregates."""
    nothing = ["NULL"] * 9  # activated_at .. reached_referral_at
    return [
        f"{customer}.id",
        f"{customer}.acquired_at",
        f"{customer}.source_channel_id",
        f"{customer}.store_id",
        f"{customer}.owner_id",
        _is_referred(customer),
        f"{customer}.lost_at",
        *nothing,
        *("1", "0", "0", "0", "NULL", "NULL"),  # stage .. purchase_interval
    ]


def _has_no_facts(customer: str) -> str:
    """A condition: the customer aliased ``customer`` has no activity that counts, no paid
    order and no referee (its milestone row is :func:`_first_row_values`)."""
    tables = _raw_tables()
    return f"""NOT EXISTS (
        SELECT 1 FROM {tables["activity"]} a
        WHERE a.customer_id = {customer}.id AND {_engaged_only()}
    )
    AND NOT EXISTS (
        SELECT 1 FROM {tables["order"]} o
        WHERE o.customer_id = {customer}.id AND o.status = '{OrderStatus.PAID.value}'
    )
    AND NOT EXISTS (
        SELECT 1 FROM {tables["customer"]} r WHERE r.referred_by_id = {customer}.id
    )"""


def _first_rows_sql() -> str:
    """SELECT of the milestone rows of the customers in ``%(ids)s`` that have no fact yet
    beyond their own row (``_MILESTONE_COLUMNS`` in order); customers with any fact are
    left out, for the full refresh."""
    kinds_cte = _kinds_sql()[2].rstrip().rstrip(",")
    return f"""
{f"WITH {kinds_cte}" if kinds_cte else ""}
SELECT {", ".join(_first_row_values("c"))}
FROM {_raw_tables()["customer"]} c
WHERE {_in_ids("c.id", False)} AND {_has_no_facts("c")}
"""


def _factless_update_sql() -> str:
    """PostgreSQL. Rewrite, from the customer alone, the stored rows of the customers in
    ``%(ids)s`` that have no fact beyond their own row and whose stored row is of stage 1
    with no paid order; selects (the ids it covered, the rows it wrote).

    For them the full refresh writes exactly :func:`_first_row_values`: no stage change
    (1 to 1), and no paid period before or after (a row with no paid order has none).
    The others (a fall of stage, paid periods to remove, any fact) need the full refresh.
    What a WeCom sync sends for most customers it updates: a new acquisition time or
    first channel, nothing else."""
    milestones, customer = Milestones._meta.db_table, Customer._meta.db_table
    values = dict(zip(_MILESTONE_COLUMNS, _first_row_values("c"), strict=True))
    del values["customer_id"]
    distinct = _vendor_sql()["distinct"]
    return f"""
WITH eligible AS MATERIALIZED (
    SELECT m.customer_id FROM {milestones} m JOIN {customer} c ON c.id = m.customer_id
    -- The id list on the milestones only: repeated on the customers, it became an index
    -- condition of each look-up, which walked the whole list every time (33 ms of 63 for
    -- 800 customers).
    WHERE m.customer_id = ANY(%(ids)s)
        AND m.stage = 1 AND m.paid_orders = 0 AND {_has_no_facts("c")}
),
written AS (
    UPDATE {milestones} t SET {", ".join(f"{col} = {expr}" for col, expr in values.items())}
    FROM eligible e JOIN {customer} c ON c.id = e.customer_id
    WHERE t.customer_id = e.customer_id
        AND ({" OR ".join(f"t.{col} {distinct} {expr}" for col, expr in values.items())})
    RETURNING 1
)
SELECT ARRAY(SELECT customer_id FROM eligible), (SELECT COUNT(*) FROM written)
"""


def _fresh_sql(*, all_customers: bool) -> str:
    """SELECT of the recomputed milestone rows (``_MILESTONE_COLUMNS`` in order)."""
    v = _vendor_sql()
    tables = _raw_tables()
    gap = v["gap"].format(
        prev="LAG(o.paid_at) OVER (PARTITION BY o.customer_id ORDER BY o.paid_at, o.id)"
    )
    kinds_cte = _kinds_sql()[2]
    return f"""
WITH {kinds_cte}acts AS (
    SELECT a.customer_id,
        {_activity_aggregates("ac.acquired_at")}
    FROM {tables["activity"]} a
    JOIN {tables["customer"]} ac ON ac.id = a.customer_id
    -- The id list on both sides: PostgreSQL does not carry "= ANY" across the join, and
    -- without it merge-joined a thousand customers' activities to the whole customer index.
    WHERE {_in_ids("a.customer_id", all_customers)} AND {_in_ids("ac.id", all_customers)}
        AND {_engaged_only()}
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
        {_is_referred("c")} AS is_referred,
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
# per-row arithmetic. PostgreSQL compares timestamps: ``at`` against ``acq`` plus an
# interval of microseconds alone (no days or months, so no calendar or time zone in the
# sum), which is exact, as comparing ``at - acq`` with the interval was; but a
# difference is an interval, allocated for each row, and a sum a timestamp, passed by
# value. The activities' aggregate of a rebuild: 3.0-3.8 → 2.7-2.8 s in one process; the
# rebuild's parallel statement of the milestone rows 3.21-3.36 → 3.15-3.24 s, CPU the
# rebuild's second connection can use (alternating runs, the same results). Not NUMERIC
# microseconds (EXTRACT returns NUMERIC). A timestamptz difference is whole days plus
# under a day (justified), so for a non-negative one floor(elapsed / n days) is
# floor(its days / n). SQLite computes integer microseconds.


def _since_at_least(us: int, at: str, acq: str) -> str:
    """``at`` is at least ``us`` microseconds after ``acq``."""
    if connection.vendor == "postgresql":
        return f"{at} >= {acq}" if us == 0 else f"{at} >= {acq} + INTERVAL '{us} microseconds'"
    return f"({_vendor_sql()['us_between'].format(a=at, b=acq)}) >= {us}"


def _since_below(us: int, at: str, acq: str) -> str:
    """``at`` is less than ``us`` microseconds after ``acq``."""
    if connection.vendor == "postgresql":
        return f"{at} < {acq} + INTERVAL '{us} microseconds'"
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
    return f"{_stage_ctes()}\n{_FROM_STAGES}"


def _stage_ctes() -> str:
    """The CTEs ``r2`` to ``r5`` after a ``base`` CTE: ``base`` with when each stage was
    reached (``_FROM_STAGES`` selects the milestone row from them)."""
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
)"""


#: The milestone row (``_MILESTONE_COLUMNS`` in order), with its stage, from ``r5``.
_FROM_STAGES = """
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


def _stored_sql() -> str:
    """SELECT of the stored milestone rows of the customers among ``%(ids)s`` that new
    activities can be folded into: those whose acquisition time is the customer's (a
    change of it not refreshed yet needs the full refresh). Both tables by the ids."""
    milestones, customer = Milestones._meta.db_table, Customer._meta.db_table
    return f"""SELECT m.* FROM {milestones} m
    JOIN {customer} c ON c.id = m.customer_id
        AND NOT (c.acquired_at {_vendor_sql()["distinct"]} m.acquired_at)
    WHERE {_in_ids("m.customer_id", False)} AND {_in_ids("c.id", False)}"""


def _candidates_sql() -> str:
    """SELECT of the customers of :func:`_stored_sql`."""
    return f"SELECT customer_id FROM ({_stored_sql()}) stored"


def _delta_sql() -> str:
    """SELECT of the milestone rows of the customers ``%(ids)s`` with the activities
    ``%(activities)s`` folded in (``_MILESTONE_COLUMNS`` in order): of the customers with
    a new activity that counts and a stored row that can take it."""
    return f"WITH {_delta_ctes()}\n{_FROM_STAGES}"


def _delta_ctes() -> str:
    """The CTEs of :func:`_delta_sql`, ending with ``r5`` (``_FROM_STAGES`` selects the
    rows from it). Among them ``stored``: the rows of :func:`_stored_sql`. Each
    customer's stored row is looked up once, there, and every later part (the fold, the
    stage changes against it) joins that: PostgreSQL's delta looked each row up five
    times, and the customer twice."""
    activity = Activity._meta.db_table
    if connection.vendor == "postgresql":
        in_activities = "a.id = ANY(%(activities)s)"
        # Materialized: the new activities, found by their ids, and the stored rows,
        # found by the customers' ids, drive the joins. Left to itself, on a table of
        # 20,000 customers the planner joined every milestone row to its customer first
        # and probed each one's activities for the new ids (1.7 s a batch of 1,000,
        # against 35 ms this way; 0.1 s at a million customers).
        materialized = "MATERIALIZED "
    else:
        in_activities = "a.id IN (SELECT value FROM json_each(%(activities)s))"
        materialized = ""
    # No test of the activities' customers against %(ids)s: the join to ``stored`` (the
    # rows of those customers) drops any other. In the prepared fold the ids are a
    # parameter, which PostgreSQL does not hash: the test was a walk of the list for each
    # activity, quadratic (the CTE took 54 ms of a batch of 5,000's 134, 3 of 1,000's 20).
    return f"""{_kinds_sql()[2]}added AS {materialized}(
    SELECT a.customer_id, a.kind, a.occurred_at FROM {activity} a
    WHERE {in_activities} AND {_engaged_only()}
),
stored AS {materialized}({_stored_sql()}),
new AS (
    SELECT a.customer_id,
        {_activity_aggregates("s.acquired_at")}
    FROM added a
    JOIN stored s ON s.customer_id = a.customer_id
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
    FROM new n JOIN stored m ON m.customer_id = n.customer_id
),
{_stage_ctes()}"""


def _stage_changes_sql(fresh: str, stored: str) -> str:
    """SELECT of the stage changes (customer_id, from_stage, to_stage, at, recorded_at)
    from the ``stored`` milestone rows (none: stage 1) to the ``fresh`` ones, recorded at
    ``%(now)s``: one row per stage entered, at the time it was reached; a fall, at now."""
    return f"""SELECT f.customer_id, s.k - 1, s.k, CASE s.k {_stage_times("f")} END, %(now)s
        FROM {fresh} f
        LEFT JOIN {stored} m ON m.customer_id = f.customer_id
        JOIN ({_steps()}) s ON s.k > COALESCE(m.stage, 1) AND s.k <= f.stage
        UNION ALL
        SELECT f.customer_id, m.stage, f.stage, %(now)s, %(now)s
        FROM {fresh} f JOIN {stored} m ON m.customer_id = f.customer_id
        WHERE f.stage < m.stage"""


def _first_stage_changes_sql(fresh: str) -> str:
    """:func:`_stage_changes_sql` from no stored row at all (a rebuild into empty tables):
    each stage entered, one SELECT per stage, instead of a join of every fresh row to
    the four steps and to the (empty) stored rows: at a million customers the statement
    went from 1.64 to 1.45 s (EXPLAIN ANALYZE, 1,177,703 changes)."""
    return "\nUNION ALL\n".join(
        f"SELECT customer_id, {k - 1}, {k}, {column}, %(now)s FROM {fresh} WHERE stage >= {k}"
        for k, column in _STAGE_TIMES.items()
    )


def _differs(stored: str, fresh: str) -> str:
    """A condition: the row ``stored`` differs from ``fresh`` in some milestone column."""
    distinct = _vendor_sql()["distinct"]
    return " OR ".join(f"{stored}.{c} {distinct} {fresh}.{c}" for c in _MILESTONE_COLUMNS[1:])


def _earliest(stored: str, new: str) -> str:
    """The earlier of two times, either of which may be NULL (portable: no LEAST)."""
    return (
        f"CASE WHEN {new} IS NULL OR ({stored} IS NOT NULL AND {stored} <= {new}) "
        f"THEN {stored} ELSE {new} END"
    )


def _stage_times(alias: str) -> str:
    return " ".join(f"WHEN {k} THEN {alias}.{column}" for k, column in _STAGE_TIMES.items())


def _steps() -> str:
    return " UNION ALL ".join(f"SELECT {k} AS k" for k in _STAGE_TIMES)
