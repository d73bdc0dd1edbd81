"""The client-side rate limit's minute budget, on a fake clock: a call over the budget
waits for the next minute, and ``wait_ahead`` tells a caller beforehand."""

from __future__ import annotations

import time
import uuid

import pytest
from django.core.cache.backends.locmem import LocMemCache

from channels.wecom import client as client_module
from channels.wecom.client import RateLimiter, WeComConfig

MINUTE_START = 1_800_000_000  # a multiple of 60


class FakeClock:
    """``time`` as the limiter uses it: ``sleep`` moves the clock instead of waiting."""

    monotonic = staticmethod(time.monotonic)

    def __init__(self, at: float) -> None:
        self.now = at

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    fake = FakeClock(at=MINUTE_START + 10)
    monkeypatch.setattr(client_module, "time", fake)
    return fake


def limiter(per_minute: int) -> RateLimiter:
    config = WeComConfig(corp_id="wwcorp", secret="s", api_base="", per_minute=per_minute)
    return RateLimiter(config, LocMemCache(f"limits-{uuid.uuid4().hex}", {}))


def test_a_call_over_the_minute_budget_waits_for_the_next_minute(clock) -> None:
    limits = limiter(per_minute=3)
    for _ in range(3):
        with limits.slot("api"):
            pass
    assert clock.now == MINUTE_START + 10 and limits.waited == 0
    with limits.slot("api"):
        pass
    assert MINUTE_START + 60 <= clock.now < MINUTE_START + 61
    assert limits.waited == pytest.approx(50, abs=0.1)


def test_wait_ahead_tells_the_wait_before_the_call(clock) -> None:
    limits = limiter(per_minute=3)
    assert limits.wait_ahead("api") == 0
    for _ in range(2):
        with limits.slot("api"):
            pass
    assert limits.wait_ahead("api") == 0, "one call is left in this minute"
    with limits.slot("api"):
        pass
    clock.sleep(5)
    assert limits.wait_ahead("api") == pytest.approx(45)
    assert limits.wait_ahead("another api") == 0, "each API has its own budget"
    clock.sleep(45)
    assert limits.wait_ahead("api") == 0, "a new minute"
