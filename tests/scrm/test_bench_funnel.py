"""The funnel bench's concurrent clients (``make bench-funnel BENCH_FUNNEL_ARGS=--clients N``)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from bench.funnel import _concurrently


@pytest.mark.parametrize("clients", [1, 2, 3])
def test_each_run_is_recorded_once_on_as_many_threads_as_clients(clients: int) -> None:
    recorded: list[Any] = []
    threads: set[str] = set()
    lock = threading.Lock()

    def record(*, rows: Any) -> None:
        with lock:
            recorded.append(rows)
            threads.add(threading.current_thread().name)

    runs = [[i, i + 1] for i in range(0, 14, 2)]
    _concurrently(clients, runs, record)
    assert sorted(recorded) == runs
    assert len(threads) == clients


def test_an_error_of_a_client_is_raised_after_all_end() -> None:
    recorded: list[Any] = []

    def record(*, rows: Any) -> None:
        if rows == "bad":
            raise ValueError("bad batch")
        recorded.append(rows)

    with pytest.raises(ValueError, match="bad batch"):
        _concurrently(2, ["bad", "a", "b", "c"], record)
    # The other client ran its runs to the end; the failing one stopped at its error.
    assert sorted(recorded) == ["a", "c"]
