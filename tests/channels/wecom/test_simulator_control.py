"""The /__sim__/ control plane over HTTP, the generated data, and the management command."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import requests

from channels.wecom.crypto import xml_fields
from channels.wecom.simulator import Dataset, DataSpec, Simulator
from channels.wecom.simulator.data import IdCodec

ROOT = Path(__file__).resolve().parents[3]


def ctl(
    http: requests.Session,
    sim: Simulator,
    path: str,
    body: dict[str, Any] | None = None,
    method: str = "POST",
) -> tuple[int, dict[str, Any]]:
    url = sim.base_url + "__sim__/" + path
    response = http.get(url, params=body) if method == "GET" else http.post(url, json=body or {})
    return response.status_code, response.json()


def test_health_and_counters(sim, http, client) -> None:
    status, health = ctl(http, sim, "health", method="GET")
    assert status == 200 and health["ok"] and health["api_base"] == sim.api_base
    assert health["relationships"] == len(list(sim.relationships()))
    client.external_contact.get_follow_user_list()
    _, counters = ctl(http, sim, "counters", method="GET")
    assert counters["paths"]["externalcontact/get_follow_user_list"] == 1
    assert ctl(http, sim, "counters/reset")[1]["ok"]
    assert ctl(http, sim, "counters", method="GET")[1]["total"] == 0


def test_inject_over_http(sim, http, client) -> None:
    status, rule = ctl(
        http, sim, "inject", {"errcode": 45009, "count": 2, "path": "externalcontact/list"}
    )
    assert status == 200 and rule["remaining"] == 2
    assert ctl(http, sim, "inject/list", method="GET")[1]["rules"][0]["errcode"] == 45009
    token = client.access_token
    url = sim.api_base + "externalcontact/list"
    params = {"access_token": token, "userid": "staff0001"}
    assert http.get(url, params=params).json()["errcode"] == 45009
    assert ctl(http, sim, "inject/clear")[1]["ok"]
    assert http.get(url, params=params).json()["errcode"] == 0


def test_tokens_over_http(sim, http, client) -> None:
    token = client.access_token
    assert ctl(http, sim, "tokens/expire")[1]["expired"] >= 1
    url = sim.api_base + "externalcontact/get_follow_user_list"
    assert http.get(url, params={"access_token": token}).json()["errcode"] == 42001
    assert ctl(http, sim, "tokens/ttl", {"seconds": 60})[1]["ok"]
    fresh = http.get(
        sim.api_base + "gettoken", params={"corpid": sim.corp_id, "corpsecret": sim.secret}
    ).json()
    assert fresh["expires_in"] == 60


def test_mutations_over_http_emit_callbacks(sim, http, receiver) -> None:
    assert ctl(http, sim, "config", {"callback_url": receiver.url})[1]["callback_url"]
    status, added = ctl(
        http, sim, "contacts/add", {"userid": "staff0002", "state": "ads_douyin", "name": "抖音客"}
    )
    assert status == 200 and added["callback"]["status"] == 200
    status, contact = ctl(
        http, sim, "contacts/get", {"external_userid": added["external_userid"]}, method="GET"
    )
    assert contact["external_contact"]["name"] == "抖音客"
    assert contact["follow_user"][0]["state"] == "ads_douyin"
    ctl(
        http,
        sim,
        "follows/edit",
        {"userid": "staff0002", "external_userid": added["external_userid"], "remark": "抖音"},
    )
    ctl(
        http,
        sim,
        "follows/delete",
        {"userid": "staff0002", "external_userid": added["external_userid"]},
    )
    kinds = [xml_fields(r.ours)["ChangeType"] for r in receiver.wait(3)]
    assert kinds == ["add_external_contact", "edit_external_contact", "del_external_contact"]
    status, verify = ctl(http, sim, "callback/verify", {})
    assert status == 200 and verify["ok"]


def test_control_codes_and_errors(sim, http, client) -> None:
    _, code = ctl(http, sim, "oauth/code", {"userid": "staff0003"})
    assert client.get("auth/getuserinfo", params={"code": code["code"]})["userid"] == "staff0003"
    eid = next(iter(sim.relationships()))[0]
    userid = next(u for e, u in sim.relationships() if e == eid)
    _, welcome = ctl(http, sim, "welcome_code", {"userid": userid, "external_userid": eid})
    sent = client.external_contact.send_welcome_msg(
        {"welcome_code": welcome["welcome_code"], "text": {"content": "hi"}}
    )
    assert sent["errcode"] == 0
    assert ctl(http, sim, "welcome_messages", method="GET")[1]["messages"][0]["text"]
    assert ctl(http, sim, "nope")[0] == 404
    assert ctl(http, sim, "health")[0] == 405
    status, bad = ctl(http, sim, "contacts/add", {"userid": "ghost"})
    assert status == 400 and not bad["ok"] and "ghost" in bad["error"]
    assert ctl(http, sim, "inject", {"bogus": 1})[0] == 400


def test_reset_over_http(sim, http) -> None:
    before = sim.stats()
    ctl(http, sim, "contacts/add", {"userid": "staff0001"})
    ctl(http, sim, "staff/resign", {"userid": "staff0002"})
    assert sim.stats()["contacts"] == before["contacts"] + 1
    status, after = ctl(http, sim, "reset")
    assert status == 200
    assert after["contacts"] == before["contacts"]
    assert after["relationships"] == before["relationships"]
    assert after["follow_users"] == before["follow_users"]


def test_images_are_served(sim, http) -> None:
    avatar = http.get(sim.base_url + "avatar/wmsomething.png")
    assert avatar.status_code == 200 and avatar.content.startswith(b"\x89PNG")
    assert http.get(sim.base_url + "nothing-here").status_code == 404


# -- data -------------------------------------------------------------------------------


def test_id_codec_round_trips_and_rejects_forgeries() -> None:
    codec = IdCodec(42)
    for i in (0, 1, 2, 999_999, 2**32 - 1):
        eid = codec.encode(i)
        assert len(eid) == 32 and eid.startswith("wm") and eid.isalnum()
        assert codec.decode(eid) == i
    eid = codec.encode(7)
    assert codec.decode(eid[:-1] + ("A" if eid[-1] != "A" else "B")) is None
    assert codec.decode("wm" + "z" * 30) is None
    assert IdCodec(43).decode(eid) is None  # another seed, another corp


def test_generated_data_is_deterministic_and_bounded() -> None:
    spec = DataSpec(seed=9, contacts=2000, staff=12, now=1_700_000_000)
    a, b = Dataset(spec), Dataset(spec)
    assert a.staff_ids[0] == "staff0001" and a.staff_names == b.staff_names
    assert [list(x) for x in a.user_contacts] == [list(x) for x in b.user_contacts]
    assert a.contact(5, "") == b.contact(5, "")
    assert 1.4 < a.relationship_count / 2000 < 2.0
    assert not a.user_contacts[-1]  # the idle member
    for i in range(2000):
        followers = a.followers(i)
        assert 1 <= len(followers) <= 3 and len(set(followers)) == len(followers)
    names = [a.contact(i, "")["name"] for i in range(2000)]
    assert any(ord(ch) > 0xFFFF for n in names for ch in n), "some names carry emoji"
    times = [a.follow(i, a.followers(i)[0]).createtime for i in range(2000)]
    assert min(times) > 1_700_000_000 - 366 * 86400
    assert max(times) < 1_700_000_000
    assert {a.follow(i, a.followers(i)[0]).state for i in range(2000)} - {""} <= set(spec.states)


def test_minted_ids_do_not_collide_with_generated_ones(sim, client) -> None:
    generated = set(sim.state.groups)
    client.external_contact.add_corp_tag(None, "新组", None, [{"name": "x"}])
    assert generated < set(sim.state.groups)


def test_bad_specs_are_refused() -> None:
    with pytest.raises(ValueError):
        Dataset(DataSpec(contacts=10, staff=3, relationships=100))
    with pytest.raises(ValueError):
        Dataset(DataSpec(staff=2, idle_staff=2))
    with pytest.raises(ValueError):
        Dataset(DataSpec(states=("x" * 31,)))


def test_simulator_stops_and_frees_its_port(http) -> None:
    sim = Simulator(contacts=10, staff=2)
    base = sim.start()
    assert sim.start() == base  # idempotent
    sim.stop()
    with pytest.raises(requests.ConnectionError):
        http.get(base + "gettoken", timeout=1)
    sim.stop()  # idempotent too


# -- the management command -------------------------------------------------------------


def test_management_command_prints_the_base_url_and_stops_on_sigterm(http) -> None:
    env = {**os.environ, "DEBUG": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "wecom_simulator",
            "--port",
            "0",
            "--contacts",
            "50",
            "--staff",
            "3",
            "--seed",
            "4",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        base = proc.stdout.readline().strip()
        assert base.startswith("http://127.0.0.1:") and base.endswith("/cgi-bin/")
        from django.conf import settings

        token = http.get(
            base + "gettoken",
            params={"corpid": settings.WECOM_CORP_ID, "corpsecret": settings.WECOM_SECRET},
            timeout=5,
        ).json()
        assert token["errcode"] == 0
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
        assert proc.returncode == 0, err
        assert "stopped" in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_custom_external_userids(sim) -> None:
    added = sim.add_contact("staff0001", external_userid="wmcustom-id-0001", emit=False)
    contact = sim.contact(added["external_userid"])["external_contact"]
    assert contact["external_userid"] == "wmcustom-id-0001"
    assert contact["avatar"].endswith("/avatar/wmcustom-id-0001.png")
    future = sim.dataset.codec.encode(sim.state.next_contact + 5)
    with pytest.raises(ValueError):
        sim.add_contact("staff0001", external_userid=future)
