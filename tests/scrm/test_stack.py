"""scrm.stack, the supervisor behind ``make run``: with stand-in processes, and once with
the real web server, worker and beat."""

from __future__ import annotations

import io
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from scrm.stack import ProcessSpec, Stack, default_processes

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


def test_default_processes_are_web_worker_and_beat_on_this_interpreter() -> None:
    specs = default_processes(bind="127.0.0.1:9999", web_workers=3, concurrency=4)

    assert [s.name for s in specs] == ["web", "worker", "beat"]
    assert all(s.argv[0] == sys.executable for s in specs)
    web, worker, beat = (" ".join(s.argv) for s in specs)
    assert "gunicorn scrm.wsgi:application --bind 127.0.0.1:9999 --workers 3" in web
    assert "celery -A scrm worker" in worker
    assert "--concurrency 4" in worker
    assert "celery -A scrm beat" in beat


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_runstack_serves_healthz_and_login_with_a_worker_and_stops_on_sigterm(
    tmp_path: Path,
) -> None:
    """What `make run` promises, on the embedded defaults: SQLite, the filesystem broker."""
    port = _free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"}
    }
    env.update({"DEBUG": "1", "SCRM_VAR_DIR": str(tmp_path), "PYTHONUNBUFFERED": "1"})
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
    for name in ("web", "worker", "beat"):
        assert re.search(rf"^{name}\s+\| stopped \(code", output, re.MULTILINE), output
