"""The JS-SDK agentConfig signature: the agent_config ticket fetched once from the
simulator and shared through the cache, and the signature WeCom's doc defines."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator

import pytest
from django.core.cache import cache

from channels.wecom.jsapi import agent_config_signature, agent_config_ticket
from channels.wecom.simulator import Simulator
from tests.channels.wecom_support import CORP_ID, running_agent_sim


@pytest.fixture
def sim(settings) -> Iterator[Simulator]:
    with running_agent_sim(settings) as running:
        yield running


def ticket_calls(sim: Simulator) -> int:
    return int(sim.counters()["paths"].get("ticket/get", 0))


def sim_ticket(sim: Simulator) -> str:
    return sim.state.tickets["agent_config"][0]


def expected(ticket: str, nonce: str, ts: int, url: str) -> str:
    text = f"jsapi_ticket={ticket}&noncestr={nonce}&timestamp={ts}&url={url}"
    return hashlib.sha1(text.encode()).hexdigest()


def test_ticket_is_fetched_once_and_then_served_from_the_cache(sim: Simulator) -> None:
    first = agent_config_ticket()
    second = agent_config_ticket()
    agent_config_signature(url="https://crm.example.com/m/sidebar/")
    assert first == second == sim_ticket(sim)
    assert ticket_calls(sim) == 1
    assert "get_jsapi_ticket" not in sim.counters()["paths"], "agentConfig needs the app ticket"


def test_a_dropped_cache_entry_is_refetched(sim: Simulator) -> None:
    agent_config_ticket()
    cache.clear()
    agent_config_ticket()
    assert ticket_calls(sim) == 2


def test_concurrent_requests_make_one_ticket_call(sim: Simulator) -> None:
    sim.inject(path="ticket/get", delay_ms=300)  # a slow WeCom: everyone arrives during the fetch
    results: list[str] = []
    threads = [
        threading.Thread(target=lambda: results.append(agent_config_ticket())) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 8 and len(set(results)) == 1
    assert ticket_calls(sim) == 1


def test_signature_matches_an_independent_sha1(sim: Simulator) -> None:
    url = "https://crm.example.com/m/sidebar/?from=chat&x=1"
    signed = agent_config_signature(url=url, now=1_700_000_000, nonce="Wm3WZYTPz0wzccnW")
    assert signed == {
        "corpid": CORP_ID,
        "agentid": "1000002",
        "timestamp": 1_700_000_000,
        "nonceStr": "Wm3WZYTPz0wzccnW",
        "signature": expected(sim_ticket(sim), "Wm3WZYTPz0wzccnW", 1_700_000_000, url),
    }


def test_the_fragment_is_not_signed_but_the_query_is(sim: Simulator) -> None:
    base = "https://crm.example.com/m/sidebar/?a=1"
    with_fragment = agent_config_signature(url=base + "#/contact", now=1, nonce="n")
    without = agent_config_signature(url=base, now=1, nonce="n")
    assert with_fragment["signature"] == without["signature"]
    assert with_fragment["signature"] == expected(sim_ticket(sim), "n", 1, base)
    other_query = agent_config_signature(url=base + "&b=2", now=1, nonce="n")
    assert other_query["signature"] != without["signature"]


def test_fresh_nonce_and_current_time_by_default(sim: Simulator) -> None:
    one = agent_config_signature(url="https://crm.example.com/m/sidebar/")
    two = agent_config_signature(url="https://crm.example.com/m/sidebar/")
    assert one["nonceStr"] != two["nonceStr"]
    assert isinstance(one["timestamp"], int) and one["timestamp"] > 1_700_000_000
