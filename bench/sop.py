"""``make bench-sop``: 100,000 due touchpoints dispatched by two real Celery workers.

Seeds with SQL (PostgreSQL) ``--staff`` members and the customers they follow in the WeCom
simulator, ``--due`` touchpoints due in the last few seconds (mostly contents without
``{name}``, so they group into one WeCom task per sender; ``--name-share`` with it, one
task each) and ``--future`` touchpoints due in the coming weeks. Then it starts
``--workers`` worker processes (``--pool solo``: concurrency 1), ticks like beat
(``campaigns.dispatch_tick`` every ``SOP_TICK_SECONDS``) and prints: the wall time from
the first claim to the last touchpoint marked ``created``, throughput, lateness
(``dispatched_at - due_at``) p50/p95/max, duplicates (in the database, and in what the
simulator received), lost touchpoints, WeCom calls, and the workers' peak RSS.

The simulator runs in a thread of this process (its state is then readable directly to
count what it received); the workers reach it over HTTP like WeCom.

Usage: python -m bench.sop [--due 100000] [--future 1000000] [--staff 200]
Needs BENCH_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/scrm_bench_sop; it
is dropped and re-created) and BENCH_REDIS_URL (default redis://127.0.0.1:6379/13; it is
flushed).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/scrm_bench_sop"
DEFAULT_REDIS = "redis://127.0.0.1:6379/13"
_LOCAL_HOSTS = {"", "127.0.0.1", "localhost", "::1"}


def log(line: str) -> None:
    print(line, flush=True)


def _load() -> str:
    try:
        return f"load {os.getloadavg()[0]:.2f}"
    except OSError:
        return "load ?"


def _check_url(url: str) -> dict[str, Any]:
    import dj_database_url

    cfg: dict[str, Any] = dict(dj_database_url.parse(url))
    if "postgresql" not in cfg["ENGINE"]:
        sys.exit(f"bench.sop needs PostgreSQL, not {cfg['ENGINE']} ({url}).")
    if (cfg.get("HOST") or "") not in _LOCAL_HOSTS:
        sys.exit(f"bench.sop only talks to a database on this machine, not {cfg['HOST']}.")
    if not str(cfg["NAME"]).startswith("scrm_bench"):
        sys.exit(f"bench.sop drops its database: its name must start with scrm_bench ({url}).")
    return cfg


def _fresh_database(cfg: dict[str, Any]) -> None:
    import psycopg2

    admin = psycopg2.connect(
        dbname="postgres",
        user=cfg["USER"],
        password=cfg["PASSWORD"] or None,
        host=cfg["HOST"] or "127.0.0.1",
        port=cfg["PORT"] or 5432,
    )
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{cfg["NAME"]}"')
        cur.execute(f'CREATE DATABASE "{cfg["NAME"]}"')
    admin.close()


# --- seeding -----------------------------------------------------------------------------


def _copy(cur: Any, table: str, columns: list[str], rows: list[tuple[Any, ...]]) -> None:
    import io

    buf = io.StringIO()
    for row in rows:
        buf.write("\t".join("\\N" if v is None else str(v) for v in row) + "\n")
    buf.seek(0)
    cur.copy_expert(f"COPY {table} ({', '.join(columns)}) FROM STDIN", buf)


def _seed(sim: Any, *, due: int, future: int, staff: int, name_share: float) -> dict[str, int]:
    """Staff, customers and follows mirroring the simulator; SOPs, enrolments and the
    due and future touchpoints, with SQL (COPY and INSERT ... SELECT generate_series)."""
    from django.db import connection

    pairs: dict[str, str] = {}
    for eid, userid in sim.relationships():
        pairs.setdefault(eid, userid)  # the first follower owns the customer
        if len(pairs) == due:
            break
    if len(pairs) < due:
        sys.exit(f"the simulator has only {len(pairs)} contacts; need {due}")
    now_sql = "now()"
    with connection.cursor() as cur:
        raw = cur.cursor
        cur.execute(
            "INSERT INTO customers_store (code, name, city, address, is_active, created_at, "
            "updated_at) VALUES ('B1', '徐汇店', '', '', true, now(), now()) RETURNING id"
        )
        store_id = cur.fetchone()[0]
        _copy(
            raw,
            "customers_staff",
            [
                "wecom_userid",
                "name",
                "mobile",
                "store_id",
                "role",
                "is_active",
                "created_at",
                "updated_at",
            ],
            [
                (u, f"导购{i}", "", store_id, "staff", "t", "2026-01-01", "2026-01-01")
                for i, u in enumerate(sim.dataset.staff_ids[:staff])
            ],
        )
        cur.execute("SELECT wecom_userid, id FROM customers_staff")
        staff_ids = dict(cur.fetchall())
        pairs = {e: u for e, u in pairs.items() if u in staff_ids}
        _copy(
            raw,
            "customers_customer",
            [
                "external_userid",
                "name",
                "unionid",
                "avatar",
                "gender",
                "phone",
                "owner_id",
                "store_id",
                "acquired_at",
                "status",
                "created_at",
                "updated_at",
            ],
            [
                (
                    e,
                    f"客户{i}",
                    "",
                    "",
                    0,
                    "",
                    staff_ids[u],
                    store_id,
                    "2026-01-01",
                    "active",
                    "2026-01-01",
                    "2026-01-01",
                )
                for i, (e, u) in enumerate(pairs.items())
            ],
        )
        cur.execute(
            "INSERT INTO customers_follow (customer_id, staff_id, remark, description, "
            "remark_mobiles, added_at, add_way, state, oper_userid, tag_ids, sync_digest, "
            "updated_at) SELECT id, owner_id, '', '', '[]', now(), 0, '', '', '[]', '', now() "
            "FROM customers_customer"
        )
        # Contents: three shared texts and one with {name}.
        texts = [
            "本周会员日, 全场九折",
            "新品到店, 欢迎来{store}找{staff}",
            "春季保养提醒",
            "{name}, 您的专属礼遇",
        ]
        content_ids = []
        for i, text in enumerate(texts):
            cur.execute(
                "INSERT INTO campaigns_content (name, kind, text, attachments, is_archived, "
                "created_at, updated_at) VALUES (%s, 'text', %s, '[]', false, now(), now()) "
                "RETURNING id",
                [f"c{i}", text],
            )
            content_ids.append(cur.fetchone()[0])
        # One SOP per due content (one step each), and a future SOP with ten steps.
        step_of: list[int] = []
        sop_of: list[int] = []
        version_of: list[int] = []
        for i, content_id in enumerate([*content_ids, content_ids[0]]):
            cur.execute(
                "INSERT INTO campaigns_sop (name, description, status, activated_at, created_at, "
                "updated_at) VALUES (%s, '', 'active', now(), now(), now()) RETURNING id",
                [f"sop{i}"],
            )
            sop_id = cur.fetchone()[0]
            cur.execute(
                "INSERT INTO campaigns_sopversion (sop_id, number, trigger_kind, trigger_config, "
                "audience, quiet_action, exit_on_purchase, exit_on_lost, in_flight, "
                "published_at, created_at) VALUES (%s, 1, 'manual', '{}', '{}', 'defer', false, "
                "true, 'keep', now(), now()) RETURNING id",
                [sop_id],
            )
            version_id = cur.fetchone()[0]
            cur.execute(
                "UPDATE campaigns_sop SET current_version_id = %s WHERE id = %s",
                [version_id, sop_id],
            )
            steps = 10 if i == len(content_ids) else 1
            for position in range(steps):
                cur.execute(
                    "INSERT INTO campaigns_sopstep (version_id, position, offset_days, "
                    "offset_minutes, action, content_id, instruction) "
                    "VALUES (%s, %s, %s, 0, 'wecom_message', %s, '') "
                    "RETURNING id",
                    [version_id, position, position + 1, content_id],
                )
                step_of.append(cur.fetchone()[0])
            sop_of.append(sop_id)
            version_of.append(version_id)
        # Due: customer n gets SOP (name share -> the {name} one, else one of three), due
        # in the last 3 s.
        cur.execute("SELECT min(id), count(*) FROM customers_customer")
        first, count = cur.fetchone()
        named = int(count * name_share)
        cur.execute(
            """
            CREATE TEMP TABLE due_pick AS
            SELECT c.id AS customer_id,
                   CASE WHEN c.id - %(first)s < %(named)s THEN 3 ELSE (c.id %% 3) END AS k
            FROM customers_customer c
            """,
            {"first": first, "named": named},
        )
        for k in range(4):
            cur.execute(
                f"""
                WITH e AS (
                    INSERT INTO campaigns_enrollment (sop_id, version_id, customer_id, trigger_key,
                        trigger_at, enrolled_at, status, exit_reason)
                    SELECT %s, %s, customer_id, 'manual:bench', {now_sql}, {now_sql}, 'active', ''
                    FROM due_pick WHERE k = %s
                    RETURNING id, customer_id
                )
                INSERT INTO campaigns_touchpoint (enrollment_id, step_id, sop_id, customer_id, kind,
                    due_at, status, skip_reason, attempts, claimed_by, rendered_text,
                    rendered_attachments, error, created_at, updated_at)
                SELECT e.id, %s, %s, e.customer_id, 'wecom_message',
                    {now_sql} - (random() * interval '3 seconds'), 'pending', '', 0, '', '',
                    '[]', '',
                    now(), now()
                FROM e
                """,
                [sop_of[k], version_of[k], k, step_of[k], sop_of[k]],
            )
        # Future: ten steps for (future / 10) customers, due over the next 60 days.
        per = max(1, future // 10)
        cur.execute(
            """
            WITH e AS (
                INSERT INTO campaigns_enrollment (sop_id, version_id, customer_id, trigger_key,
                    trigger_at, enrolled_at, status, exit_reason)
                SELECT %s, %s, c.id, 'manual:future:' || g, now(), now(), 'active', ''
                FROM generate_series(0, %s - 1) g
                JOIN customers_customer c ON c.id = %s + (g %% %s)
                RETURNING id, customer_id
            )
            INSERT INTO campaigns_touchpoint (enrollment_id, step_id, sop_id, customer_id, kind,
                due_at, status, skip_reason, attempts, claimed_by, rendered_text,
                rendered_attachments, error, created_at, updated_at)
            SELECT e.id, s.id, %s, e.customer_id, 'wecom_message',
                now() + (1 + s.position) * interval '1 day' + random() * interval '50 days',
                'pending', '', 0, '', '', '[]', '', now(), now()
            FROM e CROSS JOIN campaigns_sopstep s WHERE s.version_id = %s
            """,
            [sop_of[4], version_of[4], per, first, count, sop_of[4], version_of[4]],
        )
        cur.execute("ANALYZE")
        cur.execute("SELECT status, count(*) FROM campaigns_touchpoint GROUP BY status")
        counts = dict(cur.fetchall())
        cur.execute("SELECT count(*) FROM campaigns_touchpoint WHERE due_at <= now()")
        due_now = cur.fetchone()[0]
    return {
        "due": int(due_now),
        "all": int(sum(counts.values())),
        "named": named,
        "staff": len(staff_ids),
    }


# --- workers ---------------------------------------------------------------------------------


def _start_worker(n: int, env: dict[str, str], queue: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "scrm",
            "worker",
            "--pool",
            "solo",
            "--prefetch-multiplier",
            "1",
            "--loglevel",
            "WARNING",
            "--queues",
            queue,
            "--hostname",
            f"bench{n}@%h",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "--logfile",
            f"/tmp/bench-sop-worker{n}.log",
        ],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=open(f"/tmp/bench-sop-worker{n}.log", "w"),
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _rss_kb(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process, in kB."""
    rss = hwm = 0
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
                elif line.startswith("VmHWM:"):
                    hwm = int(line.split()[1])
    except OSError:
        pass
    return rss, hwm


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--due", type=int, default=100_000)
    parser.add_argument("--future", type=int, default=1_000_000)
    parser.add_argument("--staff", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--name-share", type=float, default=0.01)
    parser.add_argument("--batch", type=int, default=20000, help="SOP_DISPATCH_BATCH")
    parser.add_argument("--tick", type=int, default=2, help="SOP_TICK_SECONDS")
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args()

    url = os.environ.get("BENCH_DATABASE_URL", DEFAULT_DB)
    redis_url = os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS)
    cfg = _check_url(url)
    _fresh_database(cfg)
    settings_env = {
        "DATABASE_URL": url,
        "REDIS_URL": redis_url,
        "CELERY_BROKER_URL": redis_url,
        "SOP_DISPATCH_BATCH": str(args.batch),
        "SOP_TICK_SECONDS": str(args.tick),
        "SOP_DISPATCHERS": str(args.workers),
        "WECOM_CORP_ID": f"wwbench{uuid.uuid4().hex[:10]}",
        "DEBUG": "1",
    }
    os.environ.update(settings_env)
    os.environ.pop("CELERY_RESULT_BACKEND", None)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "scrm.settings")
    import django

    django.setup()
    import redis
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection

    from campaigns.tasks import dispatch_tick
    from channels.wecom.simulator import Simulator

    redis.Redis.from_url(redis_url).flushdb()
    call_command("migrate", verbosity=0)
    log(
        f"== bench-sop: {args.due} due, {args.future} future touchpoints, {args.staff} staff, "
        f"{args.workers} workers, batch {args.batch}, tick {args.tick}s, "
        f"{os.cpu_count()} CPUs, {_load()}"
    )

    contacts = int(args.due * 1.1)
    sim = Simulator(
        contacts=contacts,
        staff=args.staff,
        seed=17,
        corp_id=settings.WECOM_CORP_ID,
        secret=settings.WECOM_SECRET,
        token=settings.WECOM_TOKEN,
        aes_key=settings.WECOM_AES_KEY,
    )
    sim.start()
    os.environ["WECOM_API_BASE"] = sim.api_base
    settings.WECOM_API_BASE = sim.api_base
    t0 = time.perf_counter()
    seeded = _seed(
        sim, due=args.due, future=args.future, staff=args.staff, name_share=args.name_share
    )
    log(f"   seeded in {time.perf_counter() - t0:.1f}s: {seeded}")
    cutoff = time.time()  # every due touchpoint is due before this, every future one after

    queue = "celery"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "DATABASE_CONN_MAX_AGE": "0"}
    procs = [_start_worker(n, env, queue) for n in range(args.workers)]
    peak = dict.fromkeys((p.pid for p in procs), 0)
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            for p in procs:
                rss, hwm = _rss_kb(p.pid)
                peak[p.pid] = max(peak[p.pid], rss, hwm)
            time.sleep(0.2)

    threading.Thread(target=sample, daemon=True).start()
    time.sleep(8)  # workers importing Django and connecting
    idle_rss = {p.pid: _rss_kb(p.pid)[0] for p in procs}
    # The due set becomes due now (within the last 3 s), so lateness starts with the run.
    with connection.cursor() as cur:
        cur.execute(
            "UPDATE campaigns_touchpoint SET due_at = now() - random() * interval '3 seconds' "
            "WHERE due_at <= %s::timestamptz",
            [_iso(cutoff)],
        )
    cutoff = time.time()
    try:
        start = time.perf_counter()
        deadline = start + args.timeout
        next_tick = start
        while True:
            if time.perf_counter() >= next_tick:
                dispatch_tick.apply()
                next_tick += args.tick
            with connection.cursor() as cur:
                cur.execute(
                    "SELECT count(*) FROM campaigns_touchpoint "
                    "WHERE status IN ('pending', 'claimed') AND due_at <= %s::timestamptz",
                    [_iso(cutoff)],
                )
                left = cur.fetchone()[0]
            if left == 0 or time.perf_counter() > deadline:
                break
            time.sleep(0.2)
        elapsed = time.perf_counter() - start
    finally:
        stop.set()
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
    _report(sim, seeded, elapsed, peak, idle_rss, cutoff)
    sim.stop()


def _iso(ts: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts, tz=UTC).isoformat()


def _report(
    sim: Any,
    seeded: dict[str, int],
    elapsed: float,
    peak: dict[int, int],
    idle: dict[int, int],
    cutoff: float,
) -> None:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(
            """
            SELECT count(*) FILTER (WHERE status = 'created'),
                   count(*) FILTER (WHERE status NOT IN ('created', 'sent')),
                   min(t.dispatched_at), max(t.dispatched_at),
                   percentile_cont(0.5) WITHIN GROUP (ORDER BY {late}),
                   percentile_cont(0.95) WITHIN GROUP (ORDER BY {late}),
                   max({late})
            FROM campaigns_touchpoint t WHERE due_at <= %s::timestamptz
            """.format(late="extract(epoch FROM dispatched_at - due_at)"),
            [_iso(cutoff)],
        )
        created, lost, first_at, last_at, p50, p95, worst = cur.fetchone()
        cur.execute(
            "SELECT count(*) FROM (SELECT customer_id, step_id FROM campaigns_touchpoint "
            "WHERE status IN ('created', 'sent') GROUP BY 1, 2 HAVING count(*) > 1) d"
        )
        db_dupes = cur.fetchone()[0]
        cur.execute(
            "SELECT count(*), count(DISTINCT msgid) FROM campaigns_messagetask "
            "WHERE status = 'created'"
        )
        tasks, msgids = cur.fetchone()
        cur.execute("SELECT min(called_at) FROM campaigns_messagetask")
        first_claim = cur.fetchone()[0]
        cur.execute("SELECT count(*) FROM campaigns_touchpoint WHERE due_at > now()")
        future = cur.fetchone()[0]
    received: dict[str, int] = {}
    with sim.state.lock:
        templates = len(sim.state.templates)
        for t in sim.state.templates.values():
            for recipients in t.recipients.values():
                for eid in recipients:
                    received[eid] = received.get(eid, 0) + 1
    sim_dupes = sum(1 for n in received.values() if n > 1)
    wall = (last_at - first_claim).total_seconds() if last_at and first_claim else float("nan")
    rows = [
        ("due touchpoints", f"{seeded['due']:,}"),
        ("future touchpoints in the table", f"{future:,}"),
        ("marked created", f"{created:,}"),
        ("lost (not dispatched)", f"{lost:,}"),
        ("duplicates in the database (customer, step)", f"{db_dupes:,}"),
        ("duplicates received by the simulator", f"{sim_dupes:,}"),
        ("WeCom tasks (created / msgids / simulator)", f"{tasks:,} / {msgids:,} / {templates:,}"),
        ("wall: first claim -> last marked", f"{wall:.1f} s"),
        ("wall: first tick -> none left (bench loop)", f"{elapsed:.1f} s"),
        (
            "throughput",
            f"{created / wall:,.0f} touchpoints/s" if wall == wall and wall > 0 else "-",
        ),
        (
            "lateness p50 / p95 / max",
            f"{p50:.1f} / {p95:.1f} / {worst:.1f} s" if p50 is not None else "-",
        ),
        (
            "worker RSS idle -> peak (MB)",
            ", ".join(f"{idle[p] / 1024:.0f} -> {peak[p] / 1024:.0f}" for p in peak),
        ),
        ("load after", _load()),
    ]
    width = max(len(k) for k, _v in rows)
    log("")
    for k, v in rows:
        log(f"  {k.ljust(width)}  {v}")
    if first_at is None:
        log("  (nothing was dispatched: see /tmp/bench-sop-worker*.log)")


if __name__ == "__main__":
    main()
