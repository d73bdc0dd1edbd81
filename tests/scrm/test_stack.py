"""scrm.stack, the supervisor behind ``make run``: with stand-in processes, and once with
the real web server, worker and beat."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from scrm.management.commands.runstack import local_url, simulator_wanted
from scrm.stack import ProcessSpec, SimulatorSpec, Stack, default_processes

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[2]


def _py(code: str) -> list[str]:
    return [sys.executable, "-c", code]


SLEEPER = _py("import time; print('ready', flush=True); time.sleep(60)")
STUBBORN = _py(
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('ready', flush=True); time.sleep(60)"
)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"  # a zombie is dead, only not yet reaped by whoever adopted it


def _stop_when(stack: Stack, out: io.StringIO, pattern: str, timeout: float = 20) -> None:
    def watch() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len(re.findall(pattern, out.getvalue())) < 2:
            time.sleep(0.05)
        stack.request_stop()

    threading.Thread(target=watch, daemon=True).start()


def test_output_is_prefixed_with_the_process_name_and_stop_is_clean() -> None:
    out = io.StringIO()
    stack = Stack(
        [ProcessSpec("alpha", SLEEPER), ProcessSpec("beta-long", SLEEPER)],
        out=out,
        on_started=lambda s: _stop_when(s, out, r"\| ready"),
    )

    code = stack.run()

    assert code == 0
    assert "alpha     | ready" in out.getvalue()
    assert "beta-long | ready" in out.getvalue()
    assert all(p.poll() is not None for p in stack.procs.values())


def test_a_process_that_dies_stops_the_others_and_fails_the_stack() -> None:
    out = io.StringIO()
    stack = Stack(
        [ProcessSpec("sleeper", SLEEPER), ProcessSpec("crasher", _py("raise SystemExit(3)"))],
        out=out,
    )

    started = time.monotonic()
    code = stack.run()

    assert code == 3
    assert time.monotonic() - started < 15
    assert "crasher | exited with code 3" in out.getvalue()
    assert stack.procs["sleeper"].poll() is not None


def test_a_process_that_exits_zero_still_fails_the_stack() -> None:
    stack = Stack([ProcessSpec("quitter", _py("pass"))], out=io.StringIO())

    assert stack.run() == 1


def test_a_process_ignoring_sigterm_is_killed_after_the_timeout() -> None:
    out = io.StringIO()
    stack = Stack(
        [ProcessSpec("stubborn", STUBBORN), ProcessSpec("other", SLEEPER)],
        out=out,
        stop_timeout=1,
        on_started=lambda s: _stop_when(s, out, r"\| ready"),
    )

    code = stack.run()

    assert code == 0
    assert "stubborn | still running after 1 s; SIGKILL" in out.getvalue()
    assert stack.procs["stubborn"].returncode == -signal.SIGKILL


def _run_stack_script() -> subprocess.Popen[str]:
    script = (
        "import sys\n"
        "from scrm.stack import ProcessSpec, Stack\n"
        f"sleeper = {SLEEPER!r}\n"
        "specs = [ProcessSpec('one', sleeper), ProcessSpec('two', sleeper)]\n"
        "sys.exit(Stack(specs).run())\n"
    )
    return subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _child_pids(proc: subprocess.Popen[str], count: int) -> list[int]:
    assert proc.stdout is not None
    pids: list[int] = []
    ready = 0
    for line in proc.stdout:
        if match := re.search(r"started \(pid (\d+)\)", line):
            pids.append(int(match.group(1)))
        ready += "| ready" in line
        if ready == count:
            return pids
    raise AssertionError("the stack ended before its processes were ready")


def test_sigterm_to_the_stack_stops_every_process_and_exits_zero() -> None:
    proc = _run_stack_script()
    try:
        pids = _child_pids(proc, 2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        proc.kill()
    assert not any(_alive(pid) for pid in pids)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_children_die_with_a_killed_supervisor() -> None:
    proc = _run_stack_script()
    try:
        pids = _child_pids(proc, 2)
        proc.kill()  # SIGKILL: the supervisor cannot clean up; the kernel must
        proc.wait(timeout=10)
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        proc.kill()
    assert not any(_alive(pid) for pid in pids)


def test_a_oneshot_started_from_a_passing_thread_runs_to_its_end_without_stopping_the_stack() -> (
    None
):
    out = io.StringIO()
    helper = ProcessSpec("helper", _py("import time; time.sleep(1); print('did it', flush=True)"))

    def start_then_stop(stack: Stack) -> None:
        # The thread that asks ends at once: the helper must not die with it (PDEATHSIG
        # follows the forking thread, which is why the supervisor's main thread forks).
        threading.Thread(target=stack.start_oneshot, args=(helper,)).start()

        def stop_once_finished() -> None:
            deadline = time.monotonic() + 20
            while "finished (code" not in out.getvalue() and time.monotonic() < deadline:
                time.sleep(0.05)
            stack.request_stop()

        threading.Thread(target=stop_once_finished, daemon=True).start()

    stack = Stack([ProcessSpec("sleeper", SLEEPER)], out=out, on_started=start_then_stop)

    code = stack.run()

    text = out.getvalue()
    assert code == 0, text
    assert "helper  | did it" in text
    assert "helper  | finished (code 0)" in text
    assert "exited with code" not in text


def test_a_oneshot_still_running_is_stopped_with_the_stack() -> None:
    out = io.StringIO()

    def start(stack: Stack) -> None:
        stack.start_oneshot(ProcessSpec("helper", SLEEPER))
        _stop_when(stack, out, r"\| ready")

    stack = Stack([ProcessSpec("sleeper", SLEEPER)], out=out, on_started=start)

    assert stack.run() == 0
    assert "helper  | stopped (code" in out.getvalue()
    assert stack.oneshots["helper"].poll() is not None


def test_a_oneshot_cannot_take_a_process_name() -> None:
    stack = Stack([ProcessSpec("web", SLEEPER)], out=io.StringIO())

    with pytest.raises(ValueError, match="already a process"):
        stack.start_oneshot(ProcessSpec("web", SLEEPER))


def test_default_processes_are_web_worker_and_beat_on_this_interpreter() -> None:
    specs = default_processes(bind="127.0.0.1:9999", web_workers=3, concurrency=4)

    assert [s.name for s in specs] == ["web", "worker", "beat"]
    assert all(s.argv[0] == sys.executable for s in specs)
    web, worker, beat = (" ".join(s.argv) for s in specs)
    assert "gunicorn scrm.wsgi:application --bind 127.0.0.1:9999 --workers 3" in web
    assert "celery -A scrm worker" in worker
    assert "--concurrency 4" in worker
    assert "celery -A scrm beat" in beat
    assert all("WECOM_API_BASE" not in s.env for s in specs)


def test_with_a_simulator_it_starts_first_and_every_process_calls_it() -> None:
    simulator = SimulatorSpec(
        port=8911,
        contacts=42,
        staff_ids=["demo-a", "demo-b"],
        states=["s1", "s2"],
        callback_url="http://127.0.0.1:8000/wecom/callback/",
        now=1_700_000_000,
    )

    specs = default_processes(simulator=simulator)

    assert [s.name for s in specs] == ["wecom", "web", "worker", "beat"]
    assert all(s.env["WECOM_API_BASE"] == "http://127.0.0.1:8911/cgi-bin/" for s in specs)
    argv = " ".join(specs[0].argv)
    assert "manage.py wecom_simulator --host 127.0.0.1 --port 8911 --contacts 42" in argv
    assert "--staff-ids demo-a,demo-b --idle-staff 0" in argv
    assert "--callback-url http://127.0.0.1:8000/wecom/callback/" in argv
    assert "--states s1,s2 --now 1700000000" in argv
    assert "--contact-ways" not in argv


def test_the_simulator_runs_unless_wecom_api_base_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WECOM_API_BASE", raising=False)
    assert simulator_wanted(disabled=False)
    assert not simulator_wanted(disabled=True)

    monkeypatch.setenv("WECOM_API_BASE", "https://qyapi.weixin.qq.com/cgi-bin/")
    assert not simulator_wanted(disabled=False)


def test_callbacks_go_to_the_local_address_of_the_bind() -> None:
    assert local_url("127.0.0.1:8000") == "http://127.0.0.1:8000/"
    assert local_url("0.0.0.0:9000") == "http://127.0.0.1:9000/"
    assert local_url("localhost:8000") == "http://localhost:8000/"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


SERVICE_VARS = {
    "DATABASE_URL",
    "REDIS_URL",
    "CELERY_BROKER_URL",
    "CELERY_RESULT_BACKEND",
    "WECOM_API_BASE",
}


def _stack_env(var_dir: Path, simulator_port: int) -> dict[str, str]:
    """The embedded defaults (SQLite, the filesystem broker, the simulator) in ``var_dir``."""
    env = {k: v for k, v in os.environ.items() if k not in SERVICE_VARS}
    env.update(
        {
            "DEBUG": "1",
            "SCRM_VAR_DIR": str(var_dir),
            "PYTHONUNBUFFERED": "1",
            "SCRM_SIMULATOR_PORT": str(simulator_port),
        }
    )
    return env


def test_runstack_serves_healthz_and_login_with_a_worker_and_stops_on_sigterm(
    tmp_path: Path,
) -> None:
    """What `make run` promises, on the embedded defaults: SQLite, the filesystem broker.
    Here on a database that is not even migrated: the WeCom demo set-up skips itself."""
    port = _free_port()
    env = _stack_env(tmp_path, _free_port())
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "runstack", "--bind", f"127.0.0.1:{port}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(
        target=lambda: lines.extend(proc.stdout or []), name="runstack-output", daemon=True
    )
    reader.start()
    try:
        deadline = time.monotonic() + 90
        while not ("SCRM is up" in "".join(lines) and " ready." in "".join(lines)):
            assert proc.poll() is None, "".join(lines)
            assert time.monotonic() < deadline, "".join(lines)
            time.sleep(0.2)
        base = f"http://127.0.0.1:{port}"
        with urllib.request.urlopen(f"{base}/healthz", timeout=10) as response:
            assert response.status == 200
        with urllib.request.urlopen(f"{base}/admin/login/", timeout=10) as response:
            assert response.status == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, "".join(lines)
    finally:
        if proc.poll() is None:
            proc.kill()
        reader.join(timeout=5)
    output = "".join(lines)
    assert "beat   | " in output
    for name in ("wecom", "web", "worker", "beat"):
        assert re.search(rf"^{name}\s+\| stopped \(code", output, re.MULTILINE), output


def _poll(probe: Callable[[], T | None], timeout: float, what: Callable[[], str]) -> T:
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found is not None:
            return found
        assert time.monotonic() < deadline, what()
        time.sleep(0.2)


def test_make_run_brings_up_the_demo_wecom_corp_codes_sync_and_callbacks(tmp_path: Path) -> None:
    """`make run` end to end on a small demo: the simulator's corp is synced by the worker,
    the demo channels' codes exist with QR images, and a customer who scans a code in the
    simulator arrives through a signed callback, attributed to the code's channel."""
    port, sim_port = _free_port(), _free_port()
    env = _stack_env(tmp_path, sim_port)
    manage = [sys.executable, "manage.py"]
    for step in (["migrate", "--noinput"], ["seed_demo", "--customers", "40"]):
        subprocess.run([*manage, *step], cwd=ROOT, env=env, check=True, capture_output=True)
    proc = subprocess.Popen(
        [*manage, "runstack", "--bind", f"127.0.0.1:{port}", "--simulator-contacts", "150"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout or []), daemon=True)
    reader.start()

    def output() -> str:
        return "".join(lines)

    def line(pattern: str) -> re.Match[str] | None:
        assert proc.poll() is None, output()
        return re.search(pattern, output(), re.MULTILINE)

    sim = f"http://127.0.0.1:{sim_port}/"
    db = tmp_path / "scrm.sqlite3"
    try:
        synced = _poll(
            lambda: line(
                r"^demo +\| WeCom sync #1 succeeded .*: (\d+) WeCom customers; "
                r"follows WeCom (\d+) vs ours (\d+)"
            ),
            90,
            output,
        )
        assert synced.group(2) == synced.group(3), output()
        assert int(synced.group(1)) == 150
        assert line(r"^demo +\| WeCom: 9 channel codes \(9 created, 0 already there\)")
        assert _poll(lambda: line(r"^demo +\| finished \(code 0\)"), 10, output)
        with sqlite3.connect(db) as conn:
            qr = conn.execute("SELECT qr_code FROM channels_channelcode WHERE state='demo-ch01'")
            qr_url = qr.fetchone()[0]
        assert qr_url.startswith(f"{sim}qr/")
        with urllib.request.urlopen(qr_url, timeout=10) as image:
            assert image.headers["Content-Type"] == "image/png"
            assert image.read(8) == b"\x89PNG\r\n\x1a\n"

        scan = urllib.request.Request(
            f"{sim}__sim__/contacts/add",
            data=json.dumps({"userid": "demo-sh-clerk1", "state": "demo-ch01"}).encode(),
            method="POST",
        )
        with urllib.request.urlopen(scan, timeout=10) as answer:
            added = json.load(answer)
        assert added["callback"]["status"] == 200, added

        def arrived() -> tuple[str, str] | None:
            with sqlite3.connect(db) as conn:
                row = conn.execute(
                    "SELECT ch.name, s.wecom_userid FROM customers_customer c "
                    "JOIN channels_channel ch ON ch.id = c.source_channel_id "
                    "JOIN customers_follow f ON f.customer_id = c.id "
                    "JOIN customers_staff s ON s.id = f.staff_id "
                    "WHERE c.external_userid = ?",
                    (added["external_userid"],),
                ).fetchone()
            return (str(row[0]), str(row[1])) if row else None

        assert _poll(arrived, 20, output) == ("门店扫码", "demo-sh-clerk1")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, output()
    finally:
        if proc.poll() is None:
            proc.kill()
        reader.join(timeout=5)
    for name in ("wecom", "web", "worker", "beat"):
        assert re.search(rf"^{name}\s+\| stopped \(code 0\)", output(), re.MULTILINE), output()
