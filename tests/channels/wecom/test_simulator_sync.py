"""The simulator through wechatpy 1.8.18: tokens, follow users, paging, retries, faults."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from wechatpy.enterprise import WeChatClient
from wechatpy.exceptions import APILimitedException, WeChatClientException

from channels.wecom.simulator import Simulator
from tests.channels.wecom.conftest import make_client


def page_all(
    client: WeChatClient, userids: list[str], limit: int = 100
) -> tuple[list[dict[str, Any]], int]:
    rows, cursor, pages = [], "", 0
    while True:
        data = {"userid_list": userids, "cursor": cursor, "limit": limit}
        result = client.post("externalcontact/batch/get_by_user", data=data)
        rows += result["external_contact_list"]
        pages += 1
        cursor = result["next_cursor"]
        if not cursor:
            return rows, pages


def test_token_follow_users_and_full_batch_paging_match_the_generated_corp(sim, client) -> None:
    users = client.external_contact.get_follow_user_list()["follow_user"]
    assert users == sim.dataset.staff_ids
    rows, pages = page_all(client, users)
    pairs = [(r["external_contact"]["external_userid"], r["follow_info"]["userid"]) for r in rows]
    assert len(pairs) == len(set(pairs)), "no duplicates across pages"
    assert set(pairs) == set(sim.relationships())
    assert len(pairs) == sim.stats()["relationships"]
    assert pages == -(-len(pairs) // 100)  # full pages; "" as next_cursor on the last


def test_batch_rows_carry_states_and_tag_ids_only(sim, client) -> None:
    rows, _ = page_all(client, sim.dataset.staff_ids)
    infos = [r["follow_info"] for r in rows]
    states = {i["state"] for i in infos if "state" in i}
    assert states and states <= set(sim.dataset.spec.states)
    assert any("state" not in i for i in infos), "some follows came without a channel"
    live_tags = set(sim.state.tags)
    assert any(i["tag_id"] for i in infos)
    for info in infos:
        assert set(info["tag_id"]) <= live_tags
        assert "tags" not in info  # batch returns tag ids, not tag objects
        assert info["createtime"] < sim.dataset.now
    contact = rows[0]["external_contact"]
    assert contact["external_userid"].startswith("wm") and len(contact["external_userid"]) == 32
    assert contact["type"] in (1, 2) and contact["gender"] in (0, 1, 2)


def test_batch_limit_defaults_to_50_and_clamps_to_100(sim, client) -> None:
    users = sim.dataset.staff_ids[:1]
    assert len(list(sim.state.user_contacts(0))) > 100
    first = client.post("externalcontact/batch/get_by_user", data={"userid_list": users})
    assert len(first["external_contact_list"]) == 50
    big = client.post(
        "externalcontact/batch/get_by_user", data={"userid_list": users, "limit": 1000}
    )
    assert len(big["external_contact_list"]) == 100
    assert big["next_cursor"]


def test_batch_rejects_more_than_100_userids_and_foreign_cursors(sim, client) -> None:
    with pytest.raises(WeChatClientException) as exc:
        client.post("externalcontact/batch/get_by_user", data={"userid_list": ["x"] * 101})
    assert exc.value.errcode == 40058
    users = sim.dataset.staff_ids
    cursor = client.post(
        "externalcontact/batch/get_by_user", data={"userid_list": users, "limit": 10}
    )["next_cursor"]
    with pytest.raises(WeChatClientException) as exc:
        client.post(
            "externalcontact/batch/get_by_user",
            data={"userid_list": users[:2], "cursor": cursor, "limit": 10},
        )
    assert exc.value.errcode == 40058


def test_same_seed_serves_identical_pages() -> None:
    with (
        Simulator(contacts=120, staff=4, seed=5, now=1_700_000_000) as a,
        Simulator(contacts=120, staff=4, seed=5, now=1_700_000_000) as b,
    ):
        rows_a, _ = page_all(make_client(a), a.dataset.staff_ids)
        rows_b, _ = page_all(make_client(b), b.dataset.staff_ids)
    strip = [{**r["external_contact"], "avatar": ""} for r in rows_a]
    assert strip == [{**r["external_contact"], "avatar": ""} for r in rows_b]
    assert [r["follow_info"] for r in rows_a] == [r["follow_info"] for r in rows_b]


def test_exact_relationship_count_can_be_requested() -> None:
    with Simulator(contacts=500, staff=5, relationships=900, seed=2) as s:
        rows, _ = page_all(make_client(s), s.dataset.staff_ids)
        assert len(rows) == 900
        per_contact: dict[str, int] = {}
        for r in rows:
            eid = r["external_contact"]["external_userid"]
            per_contact[eid] = per_contact.get(eid, 0) + 1
        assert len(per_contact) == 500 and set(per_contact.values()) <= {1, 2, 3}


def test_list_and_get(sim, client) -> None:
    userid = sim.dataset.staff_ids[0]
    ids = client.external_contact.list(userid)["external_userid"]
    assert ids and len(ids) == len(set(ids))
    detail = client.external_contact.get(ids[0])
    assert detail["external_contact"]["external_userid"] == ids[0]
    follow = next(f for f in detail["follow_user"] if f["userid"] == userid)
    for tag in follow["tags"]:
        assert tag["type"] in (1, 2)
        assert ("tag_id" in tag) == (tag["type"] == 1)
    assert "next_cursor" not in detail


def test_member_without_customers_gets_84061_with_empty_list(sim, client) -> None:
    idle = sim.dataset.staff_ids[-1]
    with pytest.raises(WeChatClientException) as exc:
        client.external_contact.list(idle)
    assert exc.value.errcode == 84061
    body = exc.value.response.json()
    assert body["external_userid"] == []
    assert "hint: [" in body["errmsg"] and "from ip: 127.0.0.1" in body["errmsg"]
    assert body["errmsg"].endswith("devtool/query?e=84061")


def test_get_pages_follow_users_beyond_500() -> None:
    with Simulator(contacts=3, staff=620, idle_staff=0, seed=3) as s:
        eid = s.state.eid(0)
        for userid in s.dataset.staff_ids:
            if not s.state.is_follow(0, s.dataset.user_index[userid]):
                s.add_contact(userid, external_userid=eid, welcome_code=False, emit=False)
        client = make_client(s)
        first = client.get("externalcontact/get", params={"external_userid": eid})
        assert len(first["follow_user"]) == 500 and first["next_cursor"]
        second = client.get(
            "externalcontact/get", params={"external_userid": eid, "cursor": first["next_cursor"]}
        )
        assert len(second["follow_user"]) == 120 and "next_cursor" not in second
        got = {f["userid"] for f in first["follow_user"] + second["follow_user"]}
        assert got == set(s.dataset.staff_ids)


def test_unknown_external_userid(client) -> None:
    with pytest.raises(WeChatClientException) as exc:
        client.external_contact.get("wm" + "0" * 30)
    assert exc.value.errcode == 40096


# -- tokens -----------------------------------------------------------------------------


def test_gettoken_returns_the_same_token_until_expiry(sim, http) -> None:
    params = {"corpid": sim.corp_id, "corpsecret": sim.secret}
    a = http.get(sim.api_base + "gettoken", params=params).json()
    b = http.get(sim.api_base + "gettoken", params=params).json()
    assert a["errcode"] == 0 and a["access_token"] == b["access_token"]
    assert 0 < b["expires_in"] <= 7200
    sim.expire_tokens()
    c = http.get(sim.api_base + "gettoken", params=params).json()
    assert c["access_token"] != a["access_token"]


def test_gettoken_errors(sim, http) -> None:
    bad_corp = http.get(sim.api_base + "gettoken", params={"corpid": "x", "corpsecret": sim.secret})
    assert bad_corp.status_code == 200 and bad_corp.json()["errcode"] == 40013
    bad_secret = http.get(
        sim.api_base + "gettoken", params={"corpid": sim.corp_id, "corpsecret": "x"}
    )
    assert bad_secret.json()["errcode"] == 40001


def test_token_rules(sim, http) -> None:
    url = sim.api_base + "externalcontact/get_follow_user_list"
    assert http.get(url).json()["errcode"] == 41001
    assert http.get(url, params={"access_token": "nope"}).json()["errcode"] == 40014
    token = http.get(
        sim.api_base + "gettoken", params={"corpid": sim.corp_id, "corpsecret": sim.secret}
    ).json()["access_token"]
    assert http.get(url, params={"access_token": token}).json()["errcode"] == 0
    sim.expire_tokens()
    expired = http.get(url, params={"access_token": token}).json()
    assert expired["errcode"] == 42001 and expired["follow_user"] == []


def test_expired_token_makes_wechatpy_refetch_and_retry(sim, client) -> None:
    client.external_contact.get_follow_user_list()
    old = client.access_token
    sim.expire_tokens()
    before = sim.counters()["paths"]["gettoken"]
    assert client.external_contact.get_follow_user_list()["errcode"] == 0
    assert client.access_token != old
    assert sim.counters()["paths"]["gettoken"] == before + 1


def test_token_ttl_is_configurable(sim, http) -> None:
    sim.set_token_ttl(0)
    sim.expire_tokens()
    params = {"corpid": sim.corp_id, "corpsecret": sim.secret}
    token = http.get(sim.api_base + "gettoken", params=params).json()["access_token"]
    url = sim.api_base + "externalcontact/get_follow_user_list"
    assert http.get(url, params={"access_token": token}).json()["errcode"] == 42001
    sim.set_token_ttl(7200)
    token = http.get(sim.api_base + "gettoken", params=params).json()["access_token"]
    assert http.get(url, params={"access_token": token}).json()["errcode"] == 0


# -- fault injection --------------------------------------------------------------------


def test_injected_45009_appears_n_times_then_stops(sim, client) -> None:
    users = sim.dataset.staff_ids[:2]
    sim.inject(45009, count=3, path="externalcontact/batch/get_by_user")
    for _ in range(3):
        with pytest.raises(APILimitedException) as exc:
            client.post("externalcontact/batch/get_by_user", data={"userid_list": users})
        assert exc.value.errcode == 45009
    ok = client.post("externalcontact/batch/get_by_user", data={"userid_list": users})
    assert ok["errcode"] == 0
    assert sim.counters()["errors"]["externalcontact/batch/get_by_user"] == 3


@pytest.mark.parametrize("errcode", [45033, -1, 84061, 48002])
def test_injected_errcodes_are_plain_client_exceptions(sim, client, errcode) -> None:
    sim.inject(errcode, path="externalcontact/get_follow_user_list")
    with pytest.raises(WeChatClientException) as exc:
        client.external_contact.get_follow_user_list()
    assert exc.value.errcode == errcode
    assert exc.value.response.status_code == 200
    assert client.external_contact.get_follow_user_list()["errcode"] == 0


@pytest.mark.parametrize("status", [500, 502])
def test_injected_http_errors(sim, client, status) -> None:
    sim.inject(http_status=status, count=1)
    with pytest.raises(WeChatClientException) as exc:
        client.external_contact.get_follow_user_list()
    assert exc.value.errcode is None
    assert client.external_contact.get_follow_user_list()["errcode"] == 0


def test_injected_delay_and_prefix_match(sim, client) -> None:
    sim.inject(delay_ms=150, path="externalcontact/*")
    started = time.monotonic()
    client.external_contact.get_follow_user_list()
    assert time.monotonic() - started >= 0.15
    assert sim.injections() == []


def test_post_body_is_json_whatever_the_content_type(sim, client, http) -> None:
    token = client.access_token
    url = sim.api_base + "externalcontact/batch/get_by_user?access_token=" + token
    body = json.dumps({"userid_list": sim.dataset.staff_ids[:1], "limit": 5})
    for headers in ({}, {"Content-Type": "text/plain"}, {"Content-Type": "application/json"}):
        got = http.post(url, data=body.encode(), headers=headers).json()
        assert got["errcode"] == 0 and len(got["external_contact_list"]) == 5
    assert http.post(url, data=b"{not json").json()["errcode"] == 47001
    get = http.get(url).json()
    assert get["errcode"] == 43002  # POST-only endpoint called with GET


def test_counters_and_reset(sim, client) -> None:
    client.external_contact.get_follow_user_list()
    counters = sim.counters()
    assert counters["paths"]["externalcontact/get_follow_user_list"] == 1
    assert counters["total"] == sum(counters["paths"].values())
    sim.reset_counters()
    assert sim.counters()["total"] == 0


def test_mutations_show_up_in_paging_and_reset_restores(sim, client) -> None:
    before = set(sim.relationships())
    eid, userid = next(iter(before))
    sim.delete_follow(userid, eid, emit=False)
    added = sim.add_contact(sim.dataset.staff_ids[1], state="live_618", emit=False)
    rows, _ = page_all(client, sim.dataset.staff_ids)
    pairs = {(r["external_contact"]["external_userid"], r["follow_info"]["userid"]) for r in rows}
    assert (eid, userid) not in pairs
    assert (added["external_userid"], sim.dataset.staff_ids[1]) in pairs
    new_row = next(
        r for r in rows if r["external_contact"]["external_userid"] == added["external_userid"]
    )
    assert new_row["follow_info"]["state"] == "live_618"
    sim.reset()
    assert set(sim.relationships()) == before


def test_batch_text_fast_path_equals_the_dict_path(sim) -> None:
    from channels.wecom.simulator.api import follow_info

    st, ds = sim.state, sim.dataset
    base = st.public_base + "avatar/"
    for eid, userid in list(sim.relationships())[:300]:
        i, s = st.contact_index(eid), ds.user_index[userid]
        fast = json.loads(ds.batch_row_text(i, s, base, None))
        contact = ds.contact(i, base)
        slow = {"external_contact": contact, "follow_info": follow_info(st, ds.follow(i, s))}
        assert fast == slow
        assert list(fast["external_contact"]) == list(contact)  # same key order too


def test_deleted_tags_vanish_from_batch_rows(sim, client) -> None:
    rows, _ = page_all(client, sim.dataset.staff_ids)
    used = [t for r in rows for t in r["follow_info"]["tag_id"]]
    victim = max(set(used), key=used.count)
    client.external_contact.del_corp_tag(tag_id=[victim])
    rows, _ = page_all(client, sim.dataset.staff_ids)
    assert all(victim not in r["follow_info"]["tag_id"] for r in rows)
    assert any(r["follow_info"]["tag_id"] for r in rows)


def test_prefetched_next_page_is_dropped_when_the_data_changes(sim, client) -> None:
    userid = sim.dataset.staff_ids[0]
    body = {"userid_list": [userid], "limit": 10}
    first = client.post("externalcontact/batch/get_by_user", data=body)
    for _ in range(100):  # the prefetch runs after the response went out
        if sim.state.page_cache:
            break
        time.sleep(0.01)
    assert sim.state.page_cache, "the next page was rendered ahead"
    upcoming = [e for e, u in sim.relationships() if u == userid][10:20]
    sim.delete_follow(userid, upcoming[0], emit=False)
    second = client.post(
        "externalcontact/batch/get_by_user", data={**body, "cursor": first["next_cursor"]}
    )
    got = [r["external_contact"]["external_userid"] for r in second["external_contact_list"]]
    assert upcoming[0] not in got and got[:9] == upcoming[1:10]
