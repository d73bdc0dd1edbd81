"""``make bench-funnel``: the AARRR funnel at a million customers on PostgreSQL, timed.

Seeds the bench database with SQL (``bench.funnel_seed``: 1,000,000 customers, 10,000,000
activities and 1,000,000 orders by default), then prints:

* the full rebuild (``manage.py rebuild_funnel --reset``) from empty, again over full
  tables, and an unchanged full refresh;
* funnel report p50 / p95 over 20 warm runs for several filter sets, and the cohort,
  channel and trend reports when ``funnel.selectors`` has them;
* the same funnel straight from the raw tables (plain SQL, the same definitions), its
  time and the ratio raw / milestones, and a check that both give the same counts;
* incremental maintenance: new activities for random customers through the bulk API
  path's service (``activities_record``) in batches of 1,000 and 5,000, in activities/s,
  then the raw-vs-milestones check again. With ``--clients N`` each batch size is also
  ingested by N concurrent clients (threads, one database connection each, as N API
  workers would), in activities/s for all of them together.

Usage: python -m bench.funnel [--customers 1000000] [--activities N] [--orders N]
    [--runs 20] [--ingest 100000] [--batch 1000 --batch 5000] [--clients 2] [--reuse-seed]
    [--trace] [--server local|compose]
Needs BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/scrm_bench_funnel),
a PostgreSQL database on this machine that it creates and empties (never SQLite).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext as _nothing
from datetime import date, timedelta
from functools import partial
from io import StringIO
from typing import Any

from bench.common import check_database_url, host_gauge, load_average, log
from bench.funnel_seed import ANCHOR, LIVE_KINDS, SeedSize, seed
from bench.pgserver import add_server_argument, bench_database, server_line

DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/scrm_bench_funnel"
_MARKER = "bench_funnel_seed"


def _check_url(url: str) -> dict[str, Any]:
    return check_database_url(url, bench="bench.funnel")


def _connect(cfg: dict[str, Any], dbname: str) -> Any:
    import psycopg2

    conn = psycopg2.connect(
        dbname=dbname,
        user=cfg["USER"],
        password=cfg["PASSWORD"] or None,
        host=cfg["HOST"] or "127.0.0.1",
        port=cfg["PORT"] or 5432,
    )
    conn.autocommit = True
    return conn


def _seeded(cfg: dict[str, Any], size: SeedSize) -> int | None:
    """The seed's last activity id when the bench database holds exactly this seed."""
    import psycopg2

    try:
        conn = _connect(cfg, cfg["NAME"])
    except psycopg2.OperationalError:
        return None
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT to_regclass(%s)", [_MARKER])
            if cur.fetchone()[0] is None:
                return None
            cur.execute(f"SELECT customers, activities, orders, last_activity FROM {_MARKER}")
            row = cur.fetchone()
    finally:
        conn.close()
    if row is None or tuple(row[:3]) != (size.customers, size.activities, size.orders):
        return None
    return int(row[3])


def _fresh_database(cfg: dict[str, Any]) -> None:
    """Drop the bench's own database (and only it) and create it empty."""
    admin = _connect(cfg, "postgres")
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{cfg["NAME"]}"')
        cur.execute(f'CREATE DATABASE "{cfg["NAME"]}"')
    admin.close()


# --- the reports' filter sets ------------------------------------------------------------


def _filter_sets() -> list[tuple[str, Any]]:
    from funnel.filters import ReportFilters

    end = date.fromisoformat(ANCHOR[:10])
    year = end - timedelta(days=365)
    return [
        ("all, 2 years", ReportFilters(start=end - timedelta(days=731), end=end)),
        ("all, 1 year", ReportFilters(start=year, end=end)),
        ("all, 1 quarter", ReportFilters(start=date(2026, 8, 1), end=end)),
        ("channel 3, 1 year", ReportFilters(start=year, end=end, channel_id=3)),
        ("store 7, 1 year", ReportFilters(start=year, end=end, store_id=7)),
        ("staff 42, 1 year", ReportFilters(start=year, end=end, staff_id=42)),
        ("tag 5, 1 year", ReportFilters(start=year, end=end, tag_id=5)),
        ("window 30 d, 1 year", ReportFilters(start=year, end=end, window_days=30)),
    ]


def _operator() -> Any:
    from django.contrib.auth.models import User

    # Unsaved: role_of() only reads is_superuser / is_active (operators see everything).
    return User(username="bench-operator", is_superuser=True, is_active=True)


def _time_runs(fn: Callable[[], Any], runs: int, warm: int = 2) -> tuple[float, float, Any]:
    """(p50, p95) in ms over ``runs`` runs after ``warm`` untimed ones, and the last result."""
    result = None
    for _ in range(warm):
        result = fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    p95 = times[min(len(times) - 1, max(0, round(0.95 * len(times)) - 1))]
    return statistics.median(times), p95, result


# --- the same funnel from the raw tables -------------------------------------------------


def raw_funnel(filters: Any) -> dict[str, int]:
    """The funnel's counts computed straight from customers, activities and orders with
    the definitions of the README (not from funnel_milestones): the reference."""
    from django.conf import settings
    from django.db import connection

    where = ["c.acquired_at >= %(start)s", "c.acquired_at < %(end)s"]
    params: dict[str, Any] = {
        "start": filters.start_at,
        "end": filters.end_at,
        "act": list(settings.FUNNEL_ACTIVATION_KINDS),
        "sys": list(settings.FUNNEL_SYSTEM_KINDS),
        "retention": timedelta(days=settings.FUNNEL_RETENTION_DAYS),
        "window": filters.window,
    }
    if filters.channel_id is not None:
        where.append("c.source_channel_id = %(channel)s")
        params["channel"] = filters.channel_id
    if filters.store_id is not None:
        where.append("c.store_id = %(store)s")
        params["store"] = filters.store_id
    if filters.staff_id is not None:
        where.append(
            "(c.owner_id = %(staff)s OR EXISTS (SELECT 1 FROM customers_follow f "
            "WHERE f.customer_id = c.id AND f.staff_id = %(staff)s))"
        )
        params["staff"] = filters.staff_id
    if filters.tag_id is not None:
        where.append(
            "EXISTS (SELECT 1 FROM customers_customertag t "
            "WHERE t.customer_id = c.id AND t.tag_id = %(tag)s)"
        )
        params["tag"] = filters.tag_id

    def ok(*milestones: str) -> str:
        # Reached (every milestone so far), and within the window when there is one.
        reached = " AND ".join(f"{m} IS NOT NULL" for m in milestones)
        if filters.window is None:
            return reached
        inside = " AND ".join(f"{m} < acquired_at + %(window)s" for m in milestones)
        return f"{reached} AND {inside}"

    stages = ["activated_at", "retained_at", "revenue_at", "referral_at"]
    counts = ", ".join(
        f"COUNT(*) FILTER (WHERE {ok(*stages[: k + 1])}) AS stage_{k + 2}"
        for k in range(len(stages))
    )
    sql = f"""
    WITH cohort AS MATERIALIZED (
        SELECT c.id, c.acquired_at FROM customers_customer c WHERE {" AND ".join(where)}
    ),
    acts AS (
        SELECT a.customer_id,
            MIN(a.occurred_at) FILTER (WHERE a.kind = ANY(%(act)s)) AS activated_at,
            MIN(a.occurred_at) FILTER (WHERE a.kind <> ALL(%(sys)s)
                AND a.occurred_at - co.acquired_at >= %(retention)s) AS retained_at
        FROM customers_activity a JOIN cohort co ON co.id = a.customer_id
        GROUP BY a.customer_id
    ),
    paid AS (
        SELECT o.customer_id, o.paid_at,
            ROW_NUMBER() OVER (PARTITION BY o.customer_id ORDER BY o.paid_at, o.id) AS n
        FROM customers_order o JOIN cohort co ON co.id = o.customer_id
        WHERE o.status = 'paid'
    ),
    orders AS (
        SELECT customer_id, MIN(paid_at) FILTER (WHERE n = 1) AS revenue_at,
            MIN(paid_at) FILTER (WHERE n = 2) AS repurchase_at
        FROM paid GROUP BY customer_id
    ),
    referrals AS (
        SELECT r.referred_by_id AS customer_id, MIN(r.acquired_at) AS referral_at
        FROM customers_customer r JOIN cohort co ON co.id = r.referred_by_id
        GROUP BY r.referred_by_id
    ),
    m AS (
        SELECT co.acquired_at, acts.activated_at, acts.retained_at, orders.revenue_at,
            orders.repurchase_at, referrals.referral_at
        FROM cohort co
        LEFT JOIN acts ON acts.customer_id = co.id
        LEFT JOIN orders ON orders.customer_id = co.id
        LEFT JOIN referrals ON referrals.customer_id = co.id
    )
    SELECT COUNT(*) AS stage_1, {counts},
        COUNT(*) FILTER (WHERE {ok("revenue_at")}) AS bought,
        COUNT(*) FILTER (WHERE {ok("repurchase_at")}) AS repurchased
    FROM m
    """
    with connection.cursor() as cur:
        cur.execute(sql, params)
        row = cur.fetchone()
        names = [d[0] for d in cur.description]
    return dict(zip(names, row, strict=True))


def _report_counts(report: dict[str, Any]) -> dict[str, int]:
    counts = {f"stage_{k + 1}": s["count"] for k, s in enumerate(report["stages"])}
    counts["bought"] = report["repurchase"]["first_purchases"]
    counts["repurchased"] = report["repurchase"]["count"]
    return counts


def _fmt_counts(counts: dict[str, int]) -> str:
    return " ".join(f"{counts[k]:,}" for k in sorted(counts))


# --- phases ------------------------------------------------------------------------------


def _rebuild(results: dict[str, Any], trace: bool = False) -> None:
    from django.core.management import call_command
    from django.db import connection

    from funnel.services import milestones_refresh

    with connection.cursor() as cur:
        # From empty even when the seed is reused (its milestones were built last time).
        cur.execute("TRUNCATE funnel_stagechange, funnel_paidperiod, funnel_milestones")
    for label in ("from empty", "over full tables"):
        out = StringIO()
        tracer = _Trace()
        t = time.perf_counter()
        with connection.execute_wrapper(tracer) if trace else _nothing():
            call_command("rebuild_funnel", reset=True, stdout=out)
        seconds = time.perf_counter() - t
        results[f"rebuild {label}"] = (seconds, load_average())
        log(f"  rebuild_funnel --reset ({label}): {seconds:.1f}s [{load_average()}]")
        log(f"    {out.getvalue().strip()}")
        if trace:
            tracer.report(1, unit="s")
    t = time.perf_counter()
    result = milestones_refresh()
    seconds = time.perf_counter() - t
    results["refresh unchanged"] = (seconds, load_average())
    log(
        f"  milestones_refresh() of everyone, nothing changed: {seconds:.1f}s [{load_average()}], "
        f"{result.changed} rows written, {result.stage_changes} stage changes"
    )
    assert result.changed == 0 and result.stage_changes == 0, result
    t = time.perf_counter()
    with connection.cursor() as cur:
        # What autovacuum would do shortly after a rebuild: statistics + visibility map.
        cur.execute("VACUUM (ANALYZE) funnel_milestones")
        cur.execute("VACUUM (ANALYZE) funnel_stagechange")
        cur.execute("VACUUM (ANALYZE) funnel_paidperiod")
    log(f"  VACUUM ANALYZE of the funnel tables: {time.perf_counter() - t:.1f}s")


def _reports(runs: int, results: dict[str, Any], tag: str = "") -> None:
    from funnel import selectors

    user = _operator()
    log(f"\n  funnel_report, {runs} warm runs each (ms){tag}:")
    for label, filters in _filter_sets():
        p50, p95, report = _time_runs(
            partial(selectors.funnel_report, user=user, filters=filters), runs
        )
        results[f"funnel {label}{tag}"] = (p50, p95, load_average())
        log(
            f"    {label:<22} p50 {p50:7.1f}  p95 {p95:7.1f}  "
            f"acquired {report['stages'][0]['count']:>9,} [{load_average()}]"
        )
    year = _filter_sets()[1][1]
    others: list[tuple[str, Callable[[], Any]]] = []
    cohort: Callable[..., Any] | None = getattr(selectors, "cohort_report", None)
    channels: Callable[..., Any] | None = getattr(selectors, "channel_report", None)
    trend: Callable[..., Any] | None = getattr(selectors, "trend_report", None)
    for period in ("week", "month"):
        if cohort is not None:
            others.append(
                (f"cohort {period} x 12", partial(cohort, user=user, filters=year, period=period))
            )
    if channels is not None:
        others.append(("channel_report", partial(channels, user=user, filters=year)))
    for interval in ("day", "month"):
        if trend is not None:
            others.append(
                (f"trend by {interval}", partial(trend, user=user, filters=year, interval=interval))
            )
    if not others:
        log("    (no cohort, channel or trend report in funnel.selectors yet)")
    for label, fn in others:
        try:
            # Fewer runs: these take seconds each here.
            p50, p95, _ = _time_runs(fn, min(runs, 5), warm=1)
        except TypeError as exc:  # a signature this bench does not know yet
            log(f"    {label}: not timed ({exc})")
            continue
        results[f"{label}{tag}"] = (p50, p95, load_average())
        log(
            f"    {label:<22} p50 {p50:7.1f}  p95 {p95:7.1f}  (all, 1 year, "
            f"{min(runs, 5)} warm runs) [{load_average()}]"
        )


def _raw(results: dict[str, Any], only: list[str] | None = None) -> bool:
    from funnel.selectors import funnel_report

    user = _operator()
    same = True
    for label, filters in _filter_sets():
        if only is not None and label not in only:
            continue
        t = time.perf_counter()
        raw = raw_funnel(filters)
        raw_ms = (time.perf_counter() - t) * 1000
        t = time.perf_counter()
        ours = _report_counts(funnel_report(user=user, filters=filters))
        ms = (time.perf_counter() - t) * 1000
        equal = raw == ours
        same &= equal
        results[f"raw {label}"] = (raw_ms, ms, load_average())
        log(
            f"    {label:<22} raw {raw_ms:8.0f} ms vs milestones {ms:6.1f} ms "
            f"(x{raw_ms / ms:,.0f}) [{load_average()}]  {'same' if equal else 'DIFFERENT'}\n"
            f"      raw        {_fmt_counts(raw)}\n      milestones {_fmt_counts(ours)}"
        )
    return same


class _Trace:
    """Time per statement of the ingest (``--trace``): the first words of each SQL, summed,
    so that the README can say where a batch's time goes."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        t = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            key = " ".join(str(sql).split())[:70]
            self.seconds[key] = self.seconds.get(key, 0.0) + time.perf_counter() - t
            self.calls[key] = self.calls.get(key, 0) + 1

    def report(self, batches: int, unit: str = "ms/batch") -> None:
        scale = 1 if unit == "s" else 1000
        for key, seconds in sorted(self.seconds.items(), key=lambda kv: -kv[1])[:14]:
            log(
                f"      {seconds / batches * scale:7.1f} {unit} "
                f"({self.calls[key] / batches:4.1f}x)  {key}"
            )
        self.seconds.clear()
        self.calls.clear()


def _ingest(
    total: int,
    batches: list[int],
    customers: int,
    results: dict[str, Any],
    trace: bool = False,
    clients: int = 1,
) -> None:
    from django.db import connection
    from django.utils import timezone

    import funnel.receivers
    from customers.models import ActivitySource
    from customers.services.activities import ActivityInput, activities_record

    refresh_seconds = [0.0]
    refresh_lock = threading.Lock()  # the clients' threads add to it
    # The receiver's two paths: a full refresh, and new activities folded in.
    originals = {
        name: getattr(funnel.receivers, name)
        for name in ("milestones_refresh", "milestones_add_activities")
    }

    def timed(original: Callable[..., Any]) -> Callable[..., Any]:
        def run(**kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return original(**kwargs)
            finally:
                with refresh_lock:
                    refresh_seconds[0] += time.perf_counter() - t

        return run

    for name, original in originals.items():
        setattr(funnel.receivers, name, timed(original))
    # Other activities for each number of clients: the same ones again would all be
    # stored already (their keys derive from their content).
    rng = random.Random(7 if clients == 1 else 7 + clients)
    now = timezone.now()
    try:
        for batch in batches:
            rows_per_run = max(batch, total - total % batch)
            inputs = []
            for i in range(rows_per_run):
                customer = rng.randint(1, customers)
                inputs.append(
                    ActivityInput(
                        customer_id=customer,
                        kind=rng.choice(LIVE_KINDS),
                        occurred_at=now - timedelta(seconds=rng.randint(0, 86_400 * 3)),
                        source=ActivitySource.API,
                        payload={"bench": i % 97},
                    )
                )
            refresh_seconds[0] = 0.0
            with connection.cursor() as cur:
                cur.execute("SELECT COUNT(*) FROM funnel_stagechange")
                changes_before = cur.fetchone()[0]
            tracer = _Trace()
            t = time.perf_counter()
            chunks = [inputs[start : start + batch] for start in range(0, len(inputs), batch)]
            with connection.execute_wrapper(tracer) if trace else _nothing():
                _concurrently(clients, chunks, activities_record)
            seconds = time.perf_counter() - t
            with connection.cursor() as cur:
                cur.execute("SELECT COUNT(*) FROM funnel_stagechange")
                changes = cur.fetchone()[0] - changes_before
            rate = len(inputs) / seconds
            by = "" if clients == 1 else f" by {clients} clients at once"
            key = f"ingest {batch}" + ("" if clients == 1 else f" x{clients}")
            results[key] = (rate, seconds, refresh_seconds[0], load_average())
            log(
                f"  activities_record, {len(inputs):,} new activities in batches of {batch:,}"
                f"{by}: {seconds:.1f}s, {rate:,.0f} activities/s (milestone refresh "
                f"{refresh_seconds[0]:.1f}s of it{', summed over the clients' if by else ''}; "
                f"{changes:,} stage changes) [{load_average()}]"
            )
            if trace:
                runs = len(inputs) // batch
                log(
                    f"    per batch {seconds / runs * 1000:.1f} ms, statements "
                    f"{sum(tracer.seconds.values()) / runs * 1000:.1f} ms (the rest: Python, "
                    "COPY, COMMIT):"
                )
                tracer.report(runs)
    finally:
        for name, original in originals.items():
            setattr(funnel.receivers, name, original)


def forget_new_activities(last: int) -> int:
    """Delete the activities stored after the seed (id above ``last``) and refresh their
    customers' milestones, so that the seed is as it was: the raw-table check of a later
    ``--reuse-seed`` run compares against the seed's facts, and milestones still holding
    a deleted activity would make it fail though the product is right. Returns the
    customers refreshed."""
    from django.db import connection, transaction

    from funnel.services import milestones_refresh

    with transaction.atomic(), connection.cursor() as cur:
        cur.execute(
            "WITH gone AS (DELETE FROM customers_activity WHERE id > %s RETURNING customer_id) "
            "SELECT DISTINCT customer_id FROM gone",
            [last],
        )
        customers = [row[0] for row in cur.fetchall()]
        milestones_refresh(customer_ids=customers)
    return len(customers)


def _concurrently(clients: int, runs: list[Any], record: Callable[..., Any]) -> None:
    """``record(rows=run)`` for each run: here with one client; else on ``clients``
    threads, each with its own database connection (Django's are per thread), run k on
    thread k mod ``clients``. The first error of a thread is raised after all end."""
    if clients == 1:
        for rows in runs:
            record(rows=rows)
        return
    from django.db import connection

    errors: list[BaseException] = []

    def work(mine: list[Any]) -> None:
        try:
            for rows in mine:
                record(rows=rows)
        except BaseException as exc:  # re-raised in the main thread below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(runs[k::clients],)) for k in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


# --- main --------------------------------------------------------------------------------


def _seed(size: SeedSize, last: int | None, results: dict[str, Any]) -> int:
    from django.db import connection

    if last is not None:
        # A run stopped half-way (or anything else since the seed) may have left new
        # activities behind, folded into their customers' milestones.
        forget_new_activities(last)
        log(f"  reusing the seed already in the database ({size})")
        return last
    seconds = seed(connection, size, log)
    results["seed"] = (seconds, load_average())
    with connection.cursor() as cur:
        cur.execute("SELECT MAX(id) FROM customers_activity")
        last = int(cur.fetchone()[0] or 0)
        cur.execute(
            f"CREATE TABLE {_MARKER} (customers bigint, activities bigint, orders bigint, "
            "last_activity bigint)"
        )
        cur.execute(
            f"INSERT INTO {_MARKER} VALUES (%s, %s, %s, %s)",
            [size.customers, size.activities, size.orders, last],
        )
        cur.execute(
            "SELECT pg_size_pretty(pg_total_relation_size('customers_activity')), "
            "pg_size_pretty(pg_database_size(current_database()))"
        )
        activity_size, db_size = cur.fetchone()
    log(
        f"  seeded in {seconds:.0f}s [{load_average()}]: "
        f"activities {activity_size}, database {db_size}"
    )
    return last


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--activities", type=int, help="default: 10 per customer")
    parser.add_argument("--orders", type=int, help="default: 1 per customer")
    parser.add_argument("--runs", type=int, default=20, help="warm runs per report")
    parser.add_argument("--ingest", type=int, default=100_000, help="new activities per batch size")
    parser.add_argument("--batch", type=int, action="append", help="default: 1000 and 5000")
    parser.add_argument(
        "--clients",
        type=int,
        default=1,
        help="also ingest with this many concurrent clients (default 1: one client only)",
    )
    parser.add_argument(
        "--phases",
        default="rebuild,reports,raw,ingest",
        help="comma-separated subset of rebuild,reports,raw,ingest (the seed is needed)",
    )
    parser.add_argument(
        "--reuse-seed",
        action="store_true",
        help="keep the data already seeded when its sizes match (saves the seeding)",
    )
    parser.add_argument(
        "--trace",
        action="store_true",
        help="print where the rebuild's and ingest's time goes, by statement",
    )
    add_server_argument(parser, "; no --reuse-seed")
    args = parser.parse_args()
    with bench_database(args.server, DEFAULT_DB) as url:
        _main(args, url)


def _main(args: argparse.Namespace, url: str) -> None:
    size = SeedSize(
        customers=args.customers,
        activities=args.activities if args.activities is not None else 10 * args.customers,
        orders=args.orders if args.orders is not None else args.customers,
    )
    cfg = _check_url(url)
    last = _seeded(cfg, size) if args.reuse_seed else None
    if last is None:
        _fresh_database(cfg)
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "scrm.settings")
    os.environ.setdefault("DEBUG", "1")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    with connection.cursor() as cur:
        cur.execute("SELECT version(), current_setting('jit'), current_setting('random_page_cost')")
        version, jit, page_cost = cur.fetchone()
        server = server_line(cur)
    log(f"== bench-funnel: {size} on {version.split(' on ')[0]}")
    log(
        f"   jit {jit}, random_page_cost {page_cost}, {os.cpu_count()} CPUs, {load_average()}, "
        f"{host_gauge()}"
    )
    log(f"   {server}")
    results: dict[str, Any] = {}
    started = time.perf_counter()
    last = _seed(size, last, results)
    phases = set(args.phases.split(","))
    same = True
    if "rebuild" in phases:
        log("\n== full rebuild")
        _rebuild(results, trace=args.trace)
    if "reports" in phases:
        log("\n== reports over funnel_milestones")
        _reports(args.runs, results)
        if jit == "on":
            # The server compiles the reports' plans (its default jit_above_cost is crossed
            # by any aggregate over a year of a million customers).
            with connection.cursor() as cur:
                cur.execute("SET jit = off")
            _reports(args.runs, results, tag=", this connection with jit = off")
            with connection.cursor() as cur:
                cur.execute("RESET jit")
    if "raw" in phases:
        log("\n== the same funnel from the raw tables (one run each), and the check")
        same &= _raw(results)
    if "ingest" in phases:
        log("\n== incremental maintenance")
        for clients in sorted({1, max(args.clients, 1)}):
            _ingest(
                args.ingest,
                args.batch or [1000, 5000],
                size.customers,
                results,
                trace=args.trace and clients == 1,
                clients=clients,
            )
        log("  check after ingesting:")
        same &= _raw(results, only=["all, 2 years"])
        # Leave the seed as it was (the next --reuse-seed run starts from it).
        forget_new_activities(last)
    log(f"\n== done in {time.perf_counter() - started:.0f}s [{load_average()}, {host_gauge()}]")
    if not same:
        sys.exit("bench-funnel: the milestones and the raw tables DISAGREE (see above)")


if __name__ == "__main__":
    main()
