"""``make bench-sync``: full WeCom sync from the simulator into PostgreSQL, timed.

For each size it prints relationships/s, wall time, peak RSS of this (the worker's)
process, HTTP calls, the time the simulator alone needs to serve the same pages (the
floor: a bare HTTP loop with no database), and the same for an unchanged re-sync, with a
check that no duplicate row exists, and where the CPU went during each sync (this worker
process, the simulator, and every PostgreSQL server process on this machine: with two
cores, a sync is as fast as the sum allows), with the server's buffer traffic (blocks
read from outside its shared buffers, dirty buffers its backends wrote out, WAL,
checkpoints). The simulator runs in its own process, as WeCom would.

Usage: python -m bench.sync [--relationships 100000 --relationships 1000000] [--staff 200]
    [--server local|compose]
Needs BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/scrm_bench), or with
``--server compose`` a throwaway server with docker-compose.yml's settings
(``bench.pgserver``).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from bench.common import host_gauge, load_average, postgres_cpu_seconds, process_cpu_seconds
from bench.pgserver import add_server_argument, bench_database, server_line

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/scrm_bench"


def _ensure_database(url: str) -> None:
    import dj_database_url
    import psycopg2

    cfg = dj_database_url.parse(url)
    admin = psycopg2.connect(
        dbname="postgres",
        user=cfg["USER"],
        password=cfg["PASSWORD"] or None,
        host=cfg["HOST"],
        port=cfg["PORT"] or 5432,
    )
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", [cfg["NAME"]])
        if cur.fetchone() is None:
            cur.execute(f'CREATE DATABASE "{cfg["NAME"]}"')
    admin.close()


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class SimulatorProcess:
    def __init__(self, relationships: int, staff: int) -> None:
        contacts = max(1, int(relationships / 1.65))
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "manage.py",
                "wecom_simulator",
                "--skip-checks",
                "--port",
                "0",
                "--contacts",
                str(contacts),
                "--staff",
                str(staff),
                "--relationships",
                str(relationships),
                "--seed",
                "7",
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self.proc.stdout is not None
        self.api_base = ""
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError("the simulator exited before it was ready")
            if line.startswith("http://"):
                self.api_base = line.strip()
            if line.startswith("WeCom simulator:"):
                print(f"  {line.strip()}")
                return
        raise RuntimeError("the simulator did not start in time")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _floor(client: Any, userids: list[str]) -> tuple[float, int, int]:
    """Serve every page once with no database work: what the simulator alone costs."""
    started = time.perf_counter()
    pages = rows = 0
    for start in range(0, len(userids), 100):
        cursor = ""
        while True:
            answer = client.batch_get_by_user(userids[start : start + 100], cursor=cursor)
            pages += 1
            rows += len(answer.get("external_contact_list") or ())
            cursor = answer.get("next_cursor") or ""
            if not cursor:
                break
    return time.perf_counter() - started, pages, rows


def _reset_tables() -> None:
    from django.apps import apps
    from django.db import connection

    # Every table of the apps a sync writes, by model: some keys to the customers are not
    # database constraints (the funnel's, a tag link's staff), so CASCADE alone would
    # leave their rows, and the next run's customers (ids from 1 again) would find stale
    # milestone rows and take a changed customer's slow path instead of a new one's.
    tables = [
        connection.ops.quote_name(model._meta.db_table)
        for label in ("customers", "channels", "funnel")
        for model in apps.get_app_config(label).get_models()
    ]
    with connection.cursor() as cur:
        cur.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")


# The server's buffer traffic, as its statistics count it: blocks the database's tables
# read from outside shared buffers (the OS cache or the disk), dirty buffers that
# backends had to write out themselves to make room, checkpoints, and WAL bytes written
# since the cluster began. When the tables a sync fills outgrow shared buffers, this is
# what grows faster than the rows (README, "the round of 2026-12-07 (morning)").
# PostgreSQL 17 moved the backends' writes and the checkpoints to pg_stat_io and
# pg_stat_checkpointer, hence one statement per version.
_SERVER_IO = """SELECT
    (SELECT coalesce(sum(heap_blks_read + coalesce(idx_blks_read, 0)
        + coalesce(toast_blks_read, 0) + coalesce(tidx_blks_read, 0)), 0)
        FROM pg_statio_user_tables),
    {writes_checkpoints},
    pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')"""
_WRITES_CHECKPOINTS = {
    False: """(SELECT buffers_backend FROM pg_stat_bgwriter),
    (SELECT checkpoints_req + checkpoints_timed FROM pg_stat_bgwriter)""",
    True: """(SELECT coalesce(sum(writes), 0) FROM pg_stat_io
        WHERE backend_type = 'client backend'),
    (SELECT num_requested + num_timed FROM pg_stat_checkpointer)""",
}


@dataclasses.dataclass(frozen=True)
class ServerIO:
    blocks_read: int
    backend_writes: int
    checkpoints: int
    wal_bytes: int

    @classmethod
    def now(cls) -> ServerIO:
        from django.db import connection

        with connection.cursor() as cur:
            cur.execute("SELECT current_setting('server_version_num')::int >= 170000")
            (pg17,) = cur.fetchone()
            cur.execute(_SERVER_IO.format(writes_checkpoints=_WRITES_CHECKPOINTS[pg17]))
            return cls(*(int(value) for value in cur.fetchone()))

    def line_since(self, before: ServerIO) -> str:
        return (
            f"server: {self.blocks_read - before.blocks_read:,} blocks read, "
            f"{self.backend_writes - before.backend_writes:,} written by backends, "
            f"{(self.wal_bytes - before.wal_bytes) / 2**30:.2f} GB of WAL, "
            f"{self.checkpoints - before.checkpoints} checkpoints"
        )


@dataclasses.dataclass
class Timed:
    run: Any
    seconds: float
    #: CPU seconds during the sync: this worker process, the simulator, PostgreSQL.
    worker_cpu: float
    simulator_cpu: float
    postgres_cpu: float
    #: The server's buffer traffic during the sync (``ServerIO.line_since``).
    server_io: str
    #: The two passes' split of the time (a first sync) and the rate limit's waits.
    phases: str

    def cpu_line(self) -> str:
        return (
            f"CPU {self.worker_cpu:.1f} s worker, {self.postgres_cpu:.1f} s PostgreSQL, "
            f"{self.simulator_cpu:.1f} s simulator ({load_average()})"
        )


def _sync(client: Any, simulator_pid: int) -> Timed:
    from channels.wecom.sync import SyncEngine, sync_run_start

    io_before = ServerIO.now()
    before = (
        process_cpu_seconds(os.getpid()),
        process_cpu_seconds(simulator_pid),
        postgres_cpu_seconds(),
    )
    waited = client.limiter.waited
    split = _Split(time.perf_counter())
    run = SyncEngine(sync_run_start(), client, after_flush=split.note).execute()
    seconds = time.perf_counter() - split.started
    waited = client.limiter.waited - waited
    cpu = (
        process_cpu_seconds(os.getpid()) - before[0],
        process_cpu_seconds(simulator_pid) - before[1],
        postgres_cpu_seconds() - before[2],
    )
    # The writers' sessions report their statistics as they end, just before this.
    time.sleep(1)
    return Timed(
        run,
        seconds,
        *cpu,
        server_io=ServerIO.now().line_since(io_before),
        phases=f"{split.line()}; the client's rate limit waited {waited:.1f} s",
    )


@dataclasses.dataclass
class _Split:
    """How a sync's time splits between its phases: the time up to each write goes to the
    phase that write belongs to (``after_flush``)."""

    started: float
    spent: dict[str, float] = dataclasses.field(default_factory=dict)
    #: Rounds of download and apply (more than one when the rate limit stopped one).
    rounds: int = 0
    last_at: float = 0.0
    last_phase: str = ""

    def note(self, run: Any) -> None:
        phase, now = run.checkpoint.get("phase", ""), time.perf_counter()
        self.spent[phase] = self.spent.get(phase, 0.0) + now - (self.last_at or self.started)
        self.rounds += phase == "apply" and self.last_phase != "apply"
        self.last_at, self.last_phase = now, phase

    def line(self) -> str:
        if "apply" not in self.spent:
            return "one pass"
        return (
            f"download {self.spent.get('contacts', 0.0):.1f} s, apply "
            f"{self.spent['apply']:.1f} s in {self.rounds} round{'s' * (self.rounds > 1)}"
        )


def bench(relationships: int, staff: int) -> dict[str, Any]:
    from django.core.cache.backends.locmem import LocMemCache
    from django.db import connection

    from channels.wecom.client import WeComClient, WeComConfig

    print(f"\n== {relationships:,} relationships, {staff} staff ({host_gauge()}) ==")
    _reset_tables()
    sim = SimulatorProcess(relationships, staff)
    try:
        from django.conf import settings

        config = WeComConfig(
            corp_id=settings.WECOM_CORP_ID, secret=settings.WECOM_SECRET, api_base=sim.api_base
        )
        # The floor is the simulator alone: no client-side rate limit (10,000 calls a
        # minute would put a sleep into a million-relationship floor).
        unlimited = dataclasses.replace(config, per_minute=10**9, per_hour=10**9)
        floor_client = WeComClient(unlimited, store=LocMemCache(f"b-{uuid.uuid4().hex}", {}))
        userids = sorted(floor_client.follow_users())
        floor_s, floor_pages, floor_rows = _floor(floor_client, userids)
        print(f"  floor: {floor_pages:,} pages / {floor_rows:,} rows served in {floor_s:.2f}s")

        client = WeComClient(config, store=LocMemCache(f"b-{uuid.uuid4().hex}", {}))
        timed = _sync(client, sim.proc.pid)
        run, seconds = timed.run, timed.seconds
        assert run.status == "succeeded", run.errors
        first = {
            "seconds": seconds,
            "rate": run.relationships / seconds,
            "calls": run.http_calls,
            "created": run.created,
            "in_step": (run.wecom_follows, run.active_follows),
        }
        print(
            f"  sync:    {seconds:.2f}s, {first['rate']:,.0f} relationships/s, "
            f"{run.http_calls:,} HTTP calls, created {run.created:,}, "
            f"WeCom {run.wecom_follows:,} vs ours {run.active_follows:,}, "
            f"peak RSS {_peak_rss_mb():.0f} MB"
        )
        print(f"           {timed.cpu_line()}")
        print(f"           {timed.server_io}")
        print(f"           {timed.phases}")
        timed2 = _sync(client, sim.proc.pid)
        again, seconds2 = timed2.run, timed2.seconds
        with connection.cursor() as cur:
            cur.execute(
                "SELECT (SELECT count(*) FROM customers_follow), "
                "(SELECT count(*) FROM (SELECT DISTINCT customer_id, staff_id "
                "FROM customers_follow) d), (SELECT count(*) FROM customers_customer), "
                "(SELECT count(DISTINCT external_userid) FROM customers_customer)"
            )
            follows, distinct_follows, customers, distinct_customers = cur.fetchone()
        print(
            f"  re-sync: {seconds2:.2f}s, {again.relationships / seconds2:,.0f} relationships/s, "
            f"created {again.created}, updated {again.updated}, deleted {again.deleted}; "
            f"follows {follows:,} (distinct {distinct_follows:,}), customers {customers:,} "
            f"(distinct {distinct_customers:,}), peak RSS {_peak_rss_mb():.0f} MB"
        )
        print(f"           {timed2.cpu_line()}")
        print(f"           {timed2.server_io}")
        print(f"           {timed2.phases}")
        print(f"  after: {host_gauge()}")
        assert (again.created, again.updated, again.deleted) == (0, 0, 0)
        assert follows == distinct_follows == relationships
        assert customers == distinct_customers
        return {
            "relationships": relationships,
            "floor_s": floor_s,
            "sync_s": first["seconds"],
            "rate": first["rate"],
            "resync_s": seconds2,
            "calls": first["calls"],
            "rss_mb": _peak_rss_mb(),
        }
    finally:
        sim.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--relationships", type=int, action="append")
    parser.add_argument("--staff", type=int, default=200)
    add_server_argument(parser)
    args = parser.parse_args()
    with bench_database(args.server, DEFAULT_DB) as url:
        _main(args, url)


def _main(args: argparse.Namespace, url: str) -> None:
    _ensure_database(url)
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "scrm.settings")
    os.environ.setdefault("DEBUG", "1")
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    # Time what a production worker runs: DEBUG's cursor wrapper records every statement.
    settings.DEBUG = False

    call_command("migrate", verbosity=0)
    from django.db import connection

    with connection.cursor() as cur:
        print(server_line(cur))
    # The sync logs a line per run; keep the bench output to its figures.
    import logging

    logging.getLogger("channels").setLevel(logging.WARNING)
    results = [bench(n, args.staff) for n in (args.relationships or [100_000, 1_000_000])]
    print("\nrelationships | sync s | rel/s | re-sync s | floor s | HTTP calls | peak RSS MB")
    for r in results:
        print(
            f"{r['relationships']:>13,} | {r['sync_s']:6.1f} | {r['rate']:7,.0f} | "
            f"{r['resync_s']:9.1f} | {r['floor_s']:7.1f} | {r['calls']:10,} | {r['rss_mb']:6.0f}"
        )


if __name__ == "__main__":
    main()
