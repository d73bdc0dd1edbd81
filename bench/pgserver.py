"""A throwaway PostgreSQL server for a benchmark, set up as ``docker-compose.yml`` sets up
the product's database (``--server compose``).

The machine's own server may run with the package's stock settings (128 MB of shared
buffers, a checkpoint every 1 GB of WAL), which no production database of this size keeps.
With ``--server compose`` a bench instead initialises a new cluster in a temporary
directory, starts it on a free port of 127.0.0.1 with the ``-c`` settings of the Compose
file's ``postgres`` service (their defaults: what ``docker compose up`` runs with no
``.env``), runs against it, and stops and deletes it at the end. The settings are read
from the Compose file, so the bench cannot drift from what the product ships.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
_DEFAULTED = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*:-(?P<default>[^}]*)\}")


def compose_settings(path: Path = ROOT / "docker-compose.yml") -> dict[str, str]:
    """The ``-c name=value`` settings of the Compose file's ``postgres`` service, each
    ``${VARIABLE:-default}`` read as its default."""
    import yaml

    command = yaml.safe_load(path.read_text(encoding="utf-8"))["services"]["postgres"]["command"]
    words = command.split() if isinstance(command, str) else [str(w) for w in command]
    settings: dict[str, str] = {}
    for flag, value in itertools.pairwise(words):
        if flag == "-c":
            name, _, raw = value.partition("=")
            settings[name] = _DEFAULTED.sub(lambda m: m["default"], raw)
    return settings


def _bindir() -> Path:
    """The newest installed server's programs (Debian keeps them out of PATH)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parts[-3]))
    if found:
        return found[-1].parent
    on_path = shutil.which("pg_ctl")
    if on_path:
        return Path(on_path).parent
    raise SystemExit("--server compose needs PostgreSQL's server programs (pg_ctl, initdb).")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def throwaway_server(settings: dict[str, str]) -> Iterator[str]:
    """A new cluster with these settings, reachable only on 127.0.0.1 (user ``postgres``,
    trust authentication); yields the URL of its ``scrm_bench`` database (not created)."""
    bindir = _bindir()
    home = Path(tempfile.mkdtemp(prefix="scrm-bench-pg-"))
    # initdb refuses to run as root: the cluster then belongs to the postgres account.
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(home, user="postgres", group="postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = home / "data", _free_port()
    options = [
        f"-p {port}",
        "-c listen_addresses=127.0.0.1",
        f"-c unix_socket_directories={home}",
        *(f"-c {name}={value}" for name, value in settings.items()),
    ]

    def run(*args: str) -> None:
        subprocess.run([*as_user, *args], check=True, stdout=subprocess.DEVNULL)

    try:
        run(str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8")
        try:
            run(
                str(bindir / "pg_ctl"),
                *("-D", str(data), "-l", str(home / "server.log"), "-w", "-t", "120"),
                *("-o", " ".join(options), "start"),
            )
            yield f"postgres://postgres@127.0.0.1:{port}/scrm_bench"
        finally:
            # Also after a start that timed out: the server may be up by now. A server
            # that is not running makes pg_ctl fail, which is fine here.
            subprocess.run(
                [*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
                check=False,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
    finally:
        shutil.rmtree(home, ignore_errors=True)


def add_server_argument(parser: argparse.ArgumentParser, note: str = "") -> None:
    """The benches' ``--server local|compose`` flag."""
    parser.add_argument(
        "--server",
        choices=("local", "compose"),
        default="local",
        help="local: BENCH_DATABASE_URL; compose: a throwaway server set up as "
        f"docker-compose.yml sets up the product's (bench/pgserver.py{note})",
    )


@contextlib.contextmanager
def bench_database(server: str, default_url: str) -> Iterator[str]:
    """The URL a bench runs against: ``BENCH_DATABASE_URL`` (else ``default_url``) on the
    local server, or a throwaway server's with ``compose``, whose Django connections are
    closed before it stops."""
    if server != "compose":
        yield os.environ.get("BENCH_DATABASE_URL") or default_url
        return
    with throwaway_server(compose_settings()) as url:
        try:
            yield url
        finally:
            from django.db import connections

            connections.close_all()


def server_line(cursor: Any) -> str:
    """The settings a bench's figures depend on, as the server reports them."""
    names = ("shared_buffers", "max_wal_size", "checkpoint_timeout", "autovacuum")
    cursor.execute("SELECT " + ", ".join(f"current_setting('{n}')" for n in names))
    row = cursor.fetchone()
    return "PostgreSQL " + ", ".join(f"{n} {v}" for n, v in zip(names, row, strict=True))
