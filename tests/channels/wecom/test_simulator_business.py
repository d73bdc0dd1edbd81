"""Contact ways, welcome codes, tags, mass messages, groups, transfers, OAuth, JS-SDK."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from wechatpy.exceptions import WeChatClientException

from channels.wecom.crypto import xml_fields


def errcode_of(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> int:
    with pytest.raises(WeChatClientException) as exc:
        fn(*args, **kwargs)
    return exc.value.errcode


# -- 「联系我」 ----------------------------------------------------------------------------


def test_contact_way_lifecycle(sim, client, http) -> None:
    ec = client.external_contact
    users = sim.dataset.staff_ids
    created = ec.add_contact_way(2, 2, 1, "门店海报", True, "poster_2024", [users[0]], None)
    config_id = created["config_id"]
    assert len(config_id) == 32
    png = http.get(created["qr_code"])
    assert png.status_code == 200 and png.headers["Content-Type"] == "image/png"
    assert png.content.startswith(b"\x89PNG\r\n\x1a\n")

    way = ec.get_contact_way(config_id)["contact_way"]
    assert isinstance(way, dict)  # an object, not wechatpy 2.x's fixture array
    assert way["state"] == "poster_2024" and way["user"] == [users[0]]
    assert way["qr_code"] == created["qr_code"]

    ec.update_contact_way(config_id, "新备注", True, None, "poster_2025", users[1:3], None)
    way = ec.get_contact_way(config_id)["contact_way"]
    assert way["user"] == users[1:3] and way["state"] == "poster_2025"  # lists overwrite

    listed = client.post("externalcontact/list_contact_way", data={})["contact_way"]
    assert {"config_id": config_id} in listed

    ec.del_contact_way(config_id)
    assert errcode_of(ec.get_contact_way, config_id) == 41044


def test_contact_way_scene_1_has_no_qr_code(sim, client) -> None:
    created = client.post(
        "externalcontact/add_contact_way",
        data={"type": 1, "scene": 1, "user": [sim.dataset.staff_ids[0]]},
    )
    assert "qr_code" not in created


@pytest.mark.parametrize(
    ("body", "errcode"),
    [
        ({"scene": 2, "user": ["staff0001"]}, 41037),
        ({"type": 1, "user": ["staff0001"]}, 41038),
        ({"type": 3, "scene": 2, "user": ["staff0001"]}, 41039),
        ({"type": 1, "scene": 3, "user": ["staff0001"]}, 41040),
        ({"type": 1, "scene": 2, "user": ["staff0001", "staff0002"]}, 41041),
        ({"type": 1, "scene": 2, "style": 9, "user": ["staff0001"]}, 41042),
        ({"type": 1, "scene": 2, "user": ["staff0001"], "state": "s" * 31}, 40058),
        ({"type": 1, "scene": 2, "user": ["nobody"]}, 40003),
    ],
)
def test_contact_way_parameter_errors(client, body, errcode) -> None:
    assert errcode_of(client.post, "externalcontact/add_contact_way", data=body) == errcode


def test_contact_way_config_id_errors(client) -> None:
    assert errcode_of(client.post, "externalcontact/get_contact_way", data={}) == 41043
    assert (
        errcode_of(client.post, "externalcontact/del_contact_way", data={"config_id": "nope"})
        == 41044
    )


def test_scanning_a_contact_way_attributes_the_state(sim, client, receiver) -> None:
    sim.configure(callback_url=receiver.url)
    way = client.external_contact.add_contact_way(
        1, 2, None, None, True, "store_sh_01", [sim.dataset.staff_ids[2]], None
    )
    added = sim.add_contact(config_id=way["config_id"])
    assert added["userid"] == sim.dataset.staff_ids[2] and added["state"] == "store_sh_01"
    detail = client.external_contact.get(added["external_userid"])
    assert detail["follow_user"][0]["state"] == "store_sh_01"
    event = xml_fields(receiver.wait(1)[0].ours)
    assert event["State"] == "store_sh_01" and event["WelcomeCode"] == added["welcome_code"]


# -- welcome messages -------------------------------------------------------------------


def test_welcome_code_is_one_shot(sim, client) -> None:
    added = sim.add_contact(sim.dataset.staff_ids[0], emit=False)
    msg = {"welcome_code": added["welcome_code"], "text": {"content": "欢迎光临"}}
    assert client.external_contact.send_welcome_msg(msg)["errcode"] == 0
    assert errcode_of(client.external_contact.send_welcome_msg, msg) == 41051
    sent = sim.welcome_messages()
    assert sent[0]["external_userid"] == added["external_userid"]
    assert sent[0]["text"] == {"content": "欢迎光临"}


def test_welcome_code_expires_after_the_ttl(sim, client) -> None:
    sim.configure(welcome_ttl=0.05)
    added = sim.add_contact(sim.dataset.staff_ids[0], emit=False)
    time.sleep(0.1)
    msg = {"welcome_code": added["welcome_code"], "text": {"content": "hi"}}
    assert errcode_of(client.external_contact.send_welcome_msg, msg) == 41050
    assert (
        errcode_of(
            client.external_contact.send_welcome_msg,
            {"welcome_code": "x", "text": {"content": "hi"}},
        )
        == 41050
    )


@pytest.mark.parametrize(
    ("extra", "errcode"),
    [
        ({}, 44004),
        ({"text": {"content": "字" * 1334}}, 45002),  # 4002 bytes of UTF-8
        ({"attachments": [{"msgtype": "image", "image": {"media_id": "m"}}] * 10}, 40058),
        ({"attachments": [{"msgtype": "bogus"}]}, 40058),
    ],
)
def test_welcome_content_validation_does_not_burn_the_code(sim, client, extra, errcode) -> None:
    code = sim.add_contact(sim.dataset.staff_ids[0], emit=False)["welcome_code"]
    msg = {"welcome_code": code, **extra}
    assert errcode_of(client.external_contact.send_welcome_msg, msg) == errcode
    ok = {"welcome_code": code, "text": {"content": "字" * 1333}}  # 3999 bytes: fine
    assert client.external_contact.send_welcome_msg(ok)["errcode"] == 0


def test_missing_welcome_code(client) -> None:
    assert errcode_of(client.external_contact.send_welcome_msg, {"text": {"content": "x"}}) == 41049


# -- tags -------------------------------------------------------------------------------


def test_corp_tag_crud_and_shapes(sim, client) -> None:
    ec = client.external_contact
    groups = ec.get_corp_tag_list()["tag_group"]
    assert isinstance(groups, list) and "deleted" not in groups[0]
    assert [g["order"] for g in groups] == sorted((g["order"] for g in groups), reverse=True)

    added = ec.add_corp_tag(None, "会员", 3, [{"name": "金卡"}, {"name": "银卡"}, {"name": "金卡"}])
    group = added["tag_group"]
    assert isinstance(group, dict)  # an object here, an array in get_corp_tag_list
    assert [t["name"] for t in group["tag"]] == ["金卡", "银卡"]
    gold, silver = (t["id"] for t in group["tag"])
    assert gold.startswith("et")

    again = ec.add_corp_tag(group["group_id"], None, None, [{"name": "铂金"}])
    assert again["tag_group"]["group_id"] == group["group_id"]

    ec.edit_corp_tag(gold, "黑金卡", None)
    by_id = ec.get_corp_tag_list([gold])["tag_group"]
    assert by_id[0]["tag"] == [
        {
            "id": gold,
            "name": "黑金卡",
            "create_time": by_id[0]["tag"][0]["create_time"],
            "order": 0,
            "deleted": False,
        }
    ]

    ec.del_corp_tag(tag_id=[silver])
    filtered = ec.get_corp_tag_list([silver])["tag_group"]
    assert filtered[0]["tag"][0]["deleted"] is True
    ec.del_corp_tag(group_id=[group["group_id"]])
    names = [g["group_name"] for g in ec.get_corp_tag_list()["tag_group"]]
    assert "会员" not in names
    assert errcode_of(ec.del_corp_tag) == 40058


def test_mark_tag_and_deleted_tags_disappear_from_follows(sim, client) -> None:
    eid, userid = next(iter(sim.relationships()))
    tag_id = sim.create_tag("高意向", group_name="意向", emit=False)["tag_id"]
    client.external_contact.mark_tag(userid, eid, add_tag=[tag_id])
    follow = next(
        f for f in client.external_contact.get(eid)["follow_user"] if f["userid"] == userid
    )
    assert tag_id in [t.get("tag_id") for t in follow["tags"]]
    client.external_contact.del_corp_tag(tag_id=[tag_id])
    follow = next(
        f for f in client.external_contact.get(eid)["follow_user"] if f["userid"] == userid
    )
    assert tag_id not in [t.get("tag_id") for t in follow["tags"]]
    assert errcode_of(client.external_contact.mark_tag, userid, eid, add_tag=["etnope"]) == 40068
    assert errcode_of(client.external_contact.mark_tag, userid, eid) == 40058
    idle = sim.dataset.staff_ids[-1]
    assert errcode_of(client.external_contact.mark_tag, idle, eid, add_tag=[]) == 40058


def test_concurrent_tag_edits_of_one_customer_give_45033(sim, client) -> None:
    from tests.channels.wecom.conftest import make_client

    eid, userid = next(iter(sim.relationships()))
    tag = next(iter(sim.state.tags))
    sim.configure(mark_tag_hold_ms=2000)
    other = make_client(sim)
    other.fetch_access_token()
    client.fetch_access_token()
    results: list[int] = []

    def slow() -> None:
        results.append(client.external_contact.mark_tag(userid, eid, add_tag=[tag])["errcode"])

    thread = threading.Thread(target=slow)
    thread.start()
    for _ in range(200):  # wait until the first edit is in flight, however slow the box
        if sim.state.tag_edits_in_flight:
            break
        time.sleep(0.01)
    assert errcode_of(other.external_contact.mark_tag, userid, eid, add_tag=[tag]) == 45033
    thread.join()
    assert results == [0]


def test_remark(sim, client) -> None:
    eid, userid = next(iter(sim.relationships()))
    client.post(
        "externalcontact/remark",
        data={
            "userid": userid,
            "external_userid": eid,
            "remark": "王总",
            "remark_mobiles": ["13800000000"],
        },
    )
    follow = next(
        f for f in client.external_contact.get(eid)["follow_user"] if f["userid"] == userid
    )
    assert follow["remark"] == "王总" and follow["remark_mobiles"] == ["13800000000"]


# -- mass messages ----------------------------------------------------------------------


def test_one_mass_message_per_customer_per_day(sim, client) -> None:
    userid = sim.dataset.staff_ids[0]
    mine = client.external_contact.list(userid)["external_userid"][:3]
    first = client.external_contact.add_msg_template(
        {
            "chat_type": "single",
            "sender": userid,
            "external_userid": [*mine, "wmnotacustomer"],
            "text": {"content": "上新啦"},
        }
    )
    assert first["fail_list"] == ["wmnotacustomer"] and first["msgid"].startswith("msg")
    second = client.external_contact.add_msg_template(
        {"external_userid": mine[:1], "sender": userid, "text": {"content": "再来一条"}}
    )
    tasks = client.post("externalcontact/get_groupmsg_task", data={"msgid": first["msgid"]})
    assert tasks["task_list"][0]["userid"] == userid and tasks["task_list"][0]["status"] == 2
    res1 = client.post(
        "externalcontact/get_groupmsg_send_result", data={"msgid": first["msgid"], "userid": userid}
    )["send_list"]
    assert {r["status"] for r in res1} == {1} and all("send_time" in r for r in res1)
    res2 = client.post(
        "externalcontact/get_groupmsg_send_result",
        data={"msgid": second["msgid"], "userid": userid},
    )["send_list"]
    assert [r["status"] for r in res2] == [3]
    old = client.external_contact.get_group_msg_result(second["msgid"])
    assert old["detail_list"][0]["status"] == 3
    now = int(time.time())
    listed = client.post(
        "externalcontact/get_groupmsg_list_v2",
        data={"chat_type": "single", "start_time": now - 3600, "end_time": now + 60},
    )["group_msg_list"]
    assert {m["msgid"] for m in listed} == {first["msgid"], second["msgid"]}
    assert listed[0]["text"] == {"content": "上新啦"}


def test_mass_message_waits_for_member_confirmation(sim, client) -> None:
    sim.configure(groupmsg_auto_confirm=False)
    userid = sim.dataset.staff_ids[1]
    msgid = client.external_contact.add_msg_template(
        {"sender": userid, "text": {"content": "hello"}}
    )["msgid"]
    task = client.post("externalcontact/get_groupmsg_task", data={"msgid": msgid})["task_list"][0]
    assert task["status"] == 0 and "send_time" not in task
    rows = client.post(
        "externalcontact/get_groupmsg_send_result", data={"msgid": msgid, "userid": userid}
    )["send_list"]
    assert len(rows) == len(list(sim.state.user_contacts(1))) and {r["status"] for r in rows} == {0}
    assert sim.confirm_groupmsg(msgid)["sent"] == len(rows)
    rows = client.post(
        "externalcontact/get_groupmsg_send_result",
        data={"msgid": msgid, "userid": userid, "limit": 5},
    )
    assert len(rows["send_list"]) == 5 and rows["next_cursor"]


def test_mass_message_errors(sim, client) -> None:
    idle = sim.dataset.staff_ids[-1]
    assert (
        errcode_of(
            client.external_contact.add_msg_template, {"sender": idle, "text": {"content": "x"}}
        )
        == 41048
    )
    assert errcode_of(client.external_contact.add_msg_template, {"sender": idle}) == 44004


# -- groups, transfers, behaviour -------------------------------------------------------


def test_group_chats(sim, client) -> None:
    listed = client.external_contact_group_chat.list(limit=100)
    chats = listed["group_chat_list"]
    assert len(chats) == len(sim.state.chats) and listed["next_cursor"] == ""
    chat = client.post(
        "externalcontact/groupchat/get", data={"chat_id": chats[0]["chat_id"], "need_name": 1}
    )["group_chat"]
    assert chat["member_list"][0]["userid"] == chat["owner"] and "name" in chat["member_list"][0]
    assert {m["type"] for m in chat["member_list"]} == {1, 2}
    nameless = client.external_contact_group_chat.get(chats[0]["chat_id"])["group_chat"]
    assert "name" not in nameless["member_list"][0]
    assert errcode_of(client.post, "externalcontact/groupchat/list", data={}) == 40058
    assert errcode_of(client.external_contact_group_chat.get, "wrnope") == 90501


def test_on_job_transfer(sim, client, receiver) -> None:
    sim.configure(callback_url=receiver.url)
    ids = sim.dataset.staff_ids
    mine = client.external_contact.list(ids[0])["external_userid"]
    eid = next(e for e in mine if not sim.state.is_follow(sim.state.contact_index(e), 3))
    started = client.post(
        "externalcontact/transfer_customer",
        data={
            "handover_userid": ids[0],
            "takeover_userid": ids[3],
            "external_userid": [eid, "wmnotmine"],
        },
    )
    assert started["customer"] == [
        {"external_userid": eid, "errcode": 0},
        {"external_userid": "wmnotmine", "errcode": 40096},
    ]
    again = client.post(
        "externalcontact/transfer_customer",
        data={"handover_userid": ids[0], "takeover_userid": ids[3], "external_userid": [eid]},
    )
    assert again["customer"][0]["errcode"] == 40129
    body = {"handover_userid": ids[0], "takeover_userid": ids[3]}
    waiting = client.post("externalcontact/transfer_result", data=body)["customer"][0]
    assert waiting["status"] == 2 and waiting["takeover_time"] == 0
    assert sim.complete_transfers()["completed"] == 1
    done = client.post("externalcontact/transfer_result", data=body)["customer"][0]
    assert done["status"] == 1 and done["takeover_time"] > 0
    owners = [f["userid"] for f in client.external_contact.get(eid)["follow_user"]]
    assert ids[3] in owners and ids[0] not in owners
    event = xml_fields(receiver.wait(1)[0].ours)
    assert event["ChangeType"] == "del_external_contact"
    assert event["Source"] == "DELETE_BY_TRANSFER"


def test_resigned_transfer_and_unassigned_list(sim, client) -> None:
    ids = sim.dataset.staff_ids
    mine = client.external_contact.list(ids[1])["external_userid"]
    early = client.post(
        "externalcontact/resigned/transfer_customer",
        data={"handover_userid": ids[1], "takeover_userid": ids[2], "external_userid": mine[:1]},
    )
    assert early["customer"][0]["errcode"] == 40097
    sim.resign_staff(ids[1])
    assert ids[1] not in client.external_contact.get_follow_user_list()["follow_user"]
    unassigned = client.post("externalcontact/get_unassigned_list", data={"page_size": 1000})
    assert {i["external_userid"] for i in unassigned["info"]} == set(mine)
    assert unassigned["is_last"] is True
    ok = client.post(
        "externalcontact/resigned/transfer_customer",
        data={"handover_userid": ids[1], "takeover_userid": ids[2], "external_userid": mine[:1]},
    )
    assert ok["customer"][0]["errcode"] == 0
    sim.complete_transfers(status=3)
    result = client.post(
        "externalcontact/resigned/transfer_result",
        data={"handover_userid": ids[1], "takeover_userid": ids[2]},
    )
    assert result["customer"][0]["status"] == 3


def test_user_behavior_data(sim, client) -> None:
    day = 86400
    end = int(time.time()) // day * day
    data = client.external_contact.get_user_behavior_data(
        sim.dataset.staff_ids[:2], end - 6 * day, end
    )
    rows = data["behavior_data"]
    assert len(rows) in (7, 8)
    assert all(isinstance(r["chat_cnt"], int) for r in rows)
    assert (
        errcode_of(
            client.external_contact.get_user_behavior_data,
            sim.dataset.staff_ids[:1],
            end - 40 * day,
            end,
        )
        == 40058
    )


# -- OAuth and JS-SDK -------------------------------------------------------------------


def test_oauth_code_is_one_shot(sim, client, http) -> None:
    code = sim.mint_oauth_code(sim.dataset.staff_ids[0])
    info = client.get("auth/getuserinfo", params={"code": code})
    assert info["userid"] == sim.dataset.staff_ids[0] and info["user_ticket"]
    assert errcode_of(client.get, "auth/getuserinfo", params={"code": code}) == 40029
    legacy = client.oauth.get_user_info(sim.mint_oauth_code(sim.dataset.staff_ids[1]))
    assert legacy["UserId"] == sim.dataset.staff_ids[1]


def test_oauth_authorize_page_redirects_with_a_code(sim, client, http) -> None:
    params = {
        "appid": sim.corp_id,
        "redirect_uri": "http://127.0.0.1:9/m/?x=1",
        "response_type": "code",
        "scope": "snsapi_base",
        "state": "abc",
    }
    picker = http.get(sim.base_url + "connect/oauth2/authorize", params=params)
    assert picker.status_code == 200 and "staff0001" in picker.text
    redirect = http.get(
        sim.base_url + "connect/oauth2/authorize",
        params={**params, "userid": "staff0002"},
        allow_redirects=False,
    )
    assert redirect.status_code == 302
    location = redirect.headers["Location"]
    assert location.startswith("http://127.0.0.1:9/m/?x=1&code=") and location.endswith(
        "&state=abc"
    )
    code = location.split("code=")[1].split("&")[0]
    assert client.get("auth/getuserinfo", params={"code": code})["userid"] == "staff0002"


def test_jsapi_tickets(client) -> None:
    a = client.jsapi.get_ticket()
    b = client.jsapi.get_ticket()
    assert a["ticket"] == b["ticket"] and a["expires_in"] > 0
    agent = client.jsapi.get_agent_ticket()
    assert agent["ticket"] != a["ticket"]
