"""Run the whole product as one foreground command: web server, Celery worker, Celery beat
and, for the demo, the WeCom simulator.

``manage.py runstack`` (and so ``make run``) uses this. Each process is a
:class:`ProcessSpec` in the list :func:`default_processes` returns. The supervisor:

* starts every process in its own session, so that Ctrl-C reaches only the supervisor,
  which then stops the children in order instead of all of them dying at once mid-write;
* prefixes each output line with the process name;
* on SIGINT/SIGTERM sends SIGTERM to each process, waits, then SIGKILLs what is left of
  its process group;
* when one process dies on its own, stops the others and exits non-zero, so a broken
  worker is never hidden behind a web server that still answers;
* runs one-shot helpers on request (:meth:`Stack.start_oneshot`, e.g. the demo's WeCom
  set-up once the web answers): prefixed output too, their exit is reported but stops
  nothing, and they are stopped with the rest.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TextIO

MANAGE_PY = Path(__file__).resolve().parent.parent / "manage.py"


@dataclass(frozen=True)
class ProcessSpec:
    """One process of the stack: a name for its output prefix, a command, extra env."""

    name: str
    argv: Sequence[str]
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SimulatorSpec:
    """How the stack runs the WeCom simulator (``manage.py wecom_simulator``)."""

    port: int
    contacts: int
    staff_ids: Sequence[str]
    states: Sequence[str]
    callback_url: str
    seed: int = 1
    #: The generated corp's "now" (epoch seconds); None: today's midnight.
    now: int | None = None
    #: JSON file of contact ways to restore (the app's channel codes), or None.
    contact_ways: Path | None = None

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/cgi-bin/"

    def process(self) -> ProcessSpec:
        argv = [
            sys.executable, str(MANAGE_PY), "wecom_simulator",
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--contacts", str(self.contacts),
            "--staff-ids", ",".join(self.staff_ids),
            "--idle-staff", "0",
            "--seed", str(self.seed),
            "--callback-url", self.callback_url,
        ]  # fmt: skip
        if self.states:
            argv += ["--states", ",".join(self.states)]
        if self.now is not None:
            argv += ["--now", str(self.now)]
        if self.contact_ways is not None:
            argv += ["--contact-ways", str(self.contact_ways)]
        return ProcessSpec("wecom", argv)


def default_processes(
    *,
    bind: str = "127.0.0.1:8000",
    web_workers: int = 2,
    concurrency: int = 2,
    simulator: SimulatorSpec | None = None,
) -> list[ProcessSpec]:
    """The product's processes, each started with this interpreter (the project's venv).

    With ``simulator``, the WeCom simulator comes first (so it answers before anyone
    calls it) and every process gets ``WECOM_API_BASE`` pointing at it; the WeCom
    credentials are the settings' own in every process, so tokens and callback
    signatures match on both sides.
    """
    python = sys.executable
    specs = [
        ProcessSpec(
            "web",
            [
                python, "-m", "gunicorn", "scrm.wsgi:application",
                "--bind", bind,
                "--workers", str(web_workers),
                "--access-logfile", "-",
                "--graceful-timeout", "10",
                # The default control socket is one path per user (~/.gunicorn): two
                # stacks, or the test suite's, would take it from each other.
                "--no-control-socket",
            ],
        ),
        # prefork with two children: one slow task does not hold up the others. SQLite in
        # WAL mode with a busy timeout (see settings) takes the concurrent writes.
        ProcessSpec(
            "worker",
            [
                python, "-m", "celery", "-A", "scrm", "worker",
                "--loglevel", "INFO",
                "--pool", "prefork",
                "--concurrency", str(concurrency),
                "--hostname", "worker@%h",
            ],
        ),
        ProcessSpec("beat", [python, "-m", "celery", "-A", "scrm", "beat", "--loglevel", "INFO"]),
    ]  # fmt: skip
    if simulator is None:
        return specs
    env = {"WECOM_API_BASE": simulator.api_base}
    return [
        ProcessSpec(spec.name, spec.argv, {**spec.env, **env})
        for spec in [simulator.process(), *specs]
    ]


def _load_libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return None


# Loaded here, not in the child: a one-shot helper is forked while other threads run,
# and dlopen() between fork and exec could wait for a loader lock one of them held.
_LIBC = _load_libc()


def _die_with_parent() -> None:
    # Linux only: if the supervisor is SIGKILLed (no chance to clean up), the kernel
    # sends each child SIGTERM, so no orphan keeps port 8000 or the broker busy.
    if _LIBC is not None:
        _LIBC.prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


class Stack:
    """Start, watch and stop a list of processes. Not reusable: one :meth:`run` each."""

    def __init__(
        self,
        specs: Sequence[ProcessSpec],
        *,
        out: TextIO | None = None,
        stop_timeout: float = 20.0,
        on_started: Callable[[Stack], None] | None = None,
    ) -> None:
        if not specs:
            raise ValueError("a stack needs at least one process")
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise ValueError(f"process names must be unique: {names}")
        self.specs = list(specs)
        self.out = out or sys.stdout
        self.stop_timeout = stop_timeout
        self.on_started = on_started
        self.procs: dict[str, subprocess.Popen[str]] = {}
        self.oneshots: dict[str, subprocess.Popen[str]] = {}
        self.stop_event = threading.Event()
        self._lock = threading.Lock()
        self._spawn_lock = threading.Lock()
        self._pending: list[ProcessSpec] = []
        self._readers: list[threading.Thread] = []
        self._width = max(len(n) for n in names)

    # -- output ----------------------------------------------------------------------

    def say(self, name: str, line: str) -> None:
        with self._lock:
            self.out.write(f"{name:<{self._width}} | {line.rstrip()}\n")
            self.out.flush()

    def _pump(self, name: str, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.say(name, line)

    def _pump_oneshot(self, name: str, proc: subprocess.Popen[str]) -> None:
        self._pump(name, proc)
        code = proc.wait()
        if not self.stopping:
            self.say(name, f"finished (code {code})")

    # -- control ---------------------------------------------------------------------

    def request_stop(self) -> None:
        """Ask :meth:`run` to stop every process and return (thread- and signal-safe)."""
        self.stop_event.set()

    @property
    def stopping(self) -> bool:
        return self.stop_event.is_set()

    def _signal(self, signum: int, _frame: FrameType | None) -> None:
        self.request_stop()

    def run(self) -> int:
        """Run until a signal or :meth:`request_stop` (returns 0) or until a process
        exits on its own (returns its exit code, or 1 if it exited 0)."""
        previous = {}
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                previous[signum] = signal.signal(signum, self._signal)
        try:
            return self._run()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    @staticmethod
    def _spawn(spec: ProcessSpec) -> subprocess.Popen[str]:
        return subprocess.Popen(
            list(spec.argv),
            env={**os.environ, "PYTHONUNBUFFERED": "1", **spec.env},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            bufsize=1,
            start_new_session=True,
            # The function only calls prctl through a libc loaded beforehand: nothing in
            # the child can wait for a lock another thread of ours held at the fork.
            preexec_fn=_die_with_parent,
        )

    def start_oneshot(self, spec: ProcessSpec) -> None:
        """Ask for a helper that is meant to finish (thread-safe; ignored once stopping).

        Its output is prefixed like the others' and its exit reported, but unlike the
        stack's own processes its exit stops nothing; it is stopped with the rest. The
        supervisor's main thread starts it within 0.2 s: Linux delivers PDEATHSIG when the
        *thread* that forked a child ends, so a helper forked by a short-lived thread (the
        health probe, say) would be killed the moment that thread returned.
        """
        if any(spec.name == s.name for s in self.specs):
            raise ValueError(f"{spec.name!r} is already a process of the stack")
        with self._spawn_lock:
            if not self.stopping and spec.name not in self.oneshots:
                self._pending.append(spec)

    def _start_pending(self) -> None:
        with self._spawn_lock:
            pending, self._pending = self._pending, []
            for spec in pending:
                if self.stopping or spec.name in self.oneshots:
                    continue
                proc = self._spawn(spec)
                self.oneshots[spec.name] = proc
                self.say(spec.name, f"started (pid {proc.pid}): {' '.join(spec.argv)}")
                reader = threading.Thread(
                    target=self._pump_oneshot, args=(spec.name, proc), daemon=True
                )
                reader.start()
                self._readers.append(reader)

    def _run(self) -> int:
        try:
            for spec in self.specs:
                if self.stopping:
                    break
                proc = self._spawn(spec)
                self.procs[spec.name] = proc
                self.say(spec.name, f"started (pid {proc.pid}): {' '.join(spec.argv)}")
            for name, proc in self.procs.items():
                reader = threading.Thread(target=self._pump, args=(name, proc), daemon=True)
                reader.start()
                self._readers.append(reader)
            if self.on_started is not None and not self.stopping:
                self.on_started(self)
            code = self._watch()
        finally:
            self._shutdown()
        return code

    def _watch(self) -> int:
        while not self.stop_event.wait(0.2):
            if self._pending:
                self._start_pending()
            for name, proc in self.procs.items():
                rc = proc.poll()
                if rc is not None:
                    self.say(name, f"exited with code {rc}; stopping the others")
                    return rc if rc > 0 else 1
        return 0

    def _shutdown(self) -> None:
        with self._spawn_lock:
            # No one-shot starts from here on (start_oneshot checks under this lock).
            self.stop_event.set()
            oneshots = dict(self.oneshots)
        alive = {n: p for n, p in [*oneshots.items(), *self.procs.items()] if p.poll() is None}
        for name, proc in alive.items():
            # Only the master: gunicorn and Celery stop their own children gracefully
            # (finishing the request or task in hand), which a group-wide TERM would cut.
            self.say(name, "stopping (SIGTERM)")
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        for name, proc in alive.items():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.say(name, f"still running after {self.stop_timeout:.0f} s; SIGKILL")
                self._killpg(proc, signal.SIGKILL)
                proc.wait()
        # A master that exited may leave children in its group (a prefork pool process
        # mid-task); they belong to nobody now, so they go too.
        for proc in [*oneshots.values(), *self.procs.values()]:
            self._killpg(proc, signal.SIGKILL)
        for reader in list(self._readers):
            reader.join(timeout=2)
        for name, proc in alive.items():
            self.say(name, f"stopped (code {proc.returncode})")

    @staticmethod
    def _killpg(proc: subprocess.Popen[str], signum: int) -> None:
        # start_new_session made each child the leader of a group with its own pid.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signum)


def wait_http_ok(url: str, *, timeout: float, stop: threading.Event | None = None) -> bool:
    """Poll ``url`` until it answers 200 (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not (stop is not None and stop.is_set()):
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return True
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        time.sleep(0.3)
    return False
