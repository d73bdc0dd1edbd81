"""What every benchmark shares: printing, the load figure, and the guard on its database."""

from __future__ import annotations

import os
import sys
import time
from typing import Any

#: A benchmark only ever talks to services on this machine.
LOCAL_HOSTS = {"", "127.0.0.1", "localhost", "::1"}


def log(line: str) -> None:
    print(line, flush=True)


def load_average() -> str:
    """The 1-minute load average, to print next to every figure (2 cores: noise shows)."""
    try:
        return f"load {os.getloadavg()[0]:.2f}"
    except OSError:
        return "load ?"


#: The gauge's loop, run as a script's top level runs it (names in a dict, not a
#: function's fast locals), so that it reads as ``python -c`` of the same loop does.
_GAUGE = compile("total = 0\nfor i in range(20_000_000):\n    total += i\n", "<gauge>", "exec")


def host_gauge() -> str:
    """How fast this host runs one core right now: the CPU seconds of a 20,000,000-step
    Python ``for`` loop adding integers at a script's top level. The development
    machine's speed drifts by a factor of two over a day (its neighbours, not the code),
    and a benchmark's figures mean little without it: 1.7 to 2.0 s there in an ordinary
    hour, 2.1 to 3.9 s in slow ones (README, "The round after")."""
    started = time.process_time()
    exec(_GAUGE, {})  # the constant loop compiled above, in a namespace of its own
    return f"host gauge {time.process_time() - started:.2f} s"


def check_database_url(url: str, *, bench: str) -> dict[str, Any]:
    """The parsed database settings, after refusing anything but a local PostgreSQL
    database whose name says it may be dropped (``scrm_bench*``)."""
    import dj_database_url

    cfg: dict[str, Any] = dict(dj_database_url.parse(url))
    if "postgresql" not in cfg["ENGINE"]:
        sys.exit(f"{bench} needs PostgreSQL, not {cfg['ENGINE']} ({url}).")
    if (cfg.get("HOST") or "") not in LOCAL_HOSTS:
        sys.exit(f"{bench} only talks to a database on this machine, not {cfg['HOST']}.")
    if not str(cfg["NAME"]).startswith("scrm_bench"):
        sys.exit(f"{bench} drops its database: its name must start with scrm_bench ({url}).")
    return cfg


def fresh_database(cfg: dict[str, Any]) -> None:
    """Drop the benchmark's own database (``check_database_url`` vouched for its name)
    and create it empty."""
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


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process, and of its children that it waited for
    (Linux ``/proc``; 0.0 elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # utime, stime, cutime, cstime: fields 14-17 of proc(5), 12-15 after the name.
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def postgres_cpu_seconds() -> float:
    """CPU seconds of every PostgreSQL server process on this machine (the postmaster
    counts the backends that have exited): a benchmark's database work, plus whatever
    else the server did meanwhile. 0.0 where ``/proc`` is missing."""
    total = 0.0
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return total
    for pid in pids:
        try:
            with open(f"/proc/{pid}/comm") as comm:
                name = comm.read().strip()
        except OSError:
            continue
        if name in {"postgres", "postmaster"}:
            total += process_cpu_seconds(int(pid))
    return total
