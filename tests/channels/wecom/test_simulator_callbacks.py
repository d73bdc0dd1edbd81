"""Callbacks: event XML per WECOM.md §2.5-2.7, encrypted so both our crypto and wechatpy's
decrypt them, URL verification with a percent-encoded echostr, and the broken variants."""

from __future__ import annotations

import pytest

from channels.wecom.crypto import parse_xml, xml_fields
from channels.wecom.simulator import (
    change_external_chat_xml,
    change_external_contact_xml,
    change_external_tag_xml,
)


def test_add_contact_event_reaches_the_receiver_and_decrypts_both_ways(sim, receiver) -> None:
    sim.configure(callback_url=receiver.url)
    added = sim.add_contact(sim.dataset.staff_ids[0], state="live_618", name="新客户🌸")
    assert added["callback"]["status"] == 200
    (got,) = receiver.wait(1)
    assert got.method == "POST" and set(got.query) == {"msg_signature", "timestamp", "nonce"}
    assert got.ours == got.wechatpy  # our crypto and wechatpy's agree
    envelope = xml_fields(got.body)
    assert list(envelope) == ["ToUserName", "Encrypt", "AgentID"]
    assert envelope["ToUserName"] == sim.corp_id
    event = xml_fields(got.ours)
    assert event == {
        "ToUserName": sim.corp_id,
        "FromUserName": "sys",
        "CreateTime": event["CreateTime"],
        "MsgType": "event",
        "Event": "change_external_contact",
        "ChangeType": "add_external_contact",
        "UserID": sim.dataset.staff_ids[0],
        "ExternalUserID": added["external_userid"],
        "State": "live_618",
        "WelcomeCode": added["welcome_code"],
    }
    assert event["CreateTime"].isdigit()


def test_half_add_without_state_or_welcome_code(sim, receiver) -> None:
    sim.configure(callback_url=receiver.url)
    sim.add_contact(sim.dataset.staff_ids[0], half=True, welcome_code=False)
    event = xml_fields(receiver.wait(1)[0].ours)
    assert event["ChangeType"] == "add_half_external_contact"
    assert "State" not in event and "WelcomeCode" not in event


def test_edit_and_delete_events(sim, receiver) -> None:
    sim.configure(callback_url=receiver.url)
    eid, userid = next(iter(sim.relationships()))
    tag = next(iter(sim.state.tags))
    edited = sim.edit_follow(userid, eid, remark="老王", add_tags=[tag])
    assert tag in edited["tag_ids"]
    sim.delete_follow(userid, eid, by="customer")
    eid2, userid2 = next(iter(sim.relationships()))
    sim.delete_follow(userid2, eid2, by="staff")
    events = [xml_fields(r.ours) for r in receiver.wait(3)]
    assert [e["ChangeType"] for e in events] == [
        "edit_external_contact",
        "del_follow_user",
        "del_external_contact",
    ]
    assert events[0]["UserID"] == userid and events[0]["ExternalUserID"] == eid
    assert "Source" not in events[2]


def test_transfer_fail_event(sim, receiver, client) -> None:
    sim.configure(callback_url=receiver.url)
    ids = sim.dataset.staff_ids
    eid = client.external_contact.list(ids[0])["external_userid"][0]
    client.post(
        "externalcontact/transfer_customer",
        data={"handover_userid": ids[0], "takeover_userid": ids[4], "external_userid": [eid]},
    )
    sim.complete_transfers(status=4)
    event = xml_fields(receiver.wait(1)[0].ours)
    assert event["ChangeType"] == "transfer_fail"
    assert event["FailReason"] == "customer_limit_exceed" and event["UserID"] == ids[4]
    order = list(event)
    assert order.index("FailReason") < order.index("UserID")


def test_tag_events(sim, receiver) -> None:
    sim.configure(callback_url=receiver.url)
    created = sim.create_tag("复购", group_name="新分组")
    assert len(created["callbacks"]) == 2  # the new group, then the tag
    sim.update_tag(created["tag_id"], name="高复购")
    sim.shuffle_tags(created["group_id"])
    sim.delete_tag(created["group_id"])
    events = [xml_fields(r.ours) for r in receiver.wait(5)]
    assert [(e["ChangeType"], e.get("TagType")) for e in events] == [
        ("create", "tag_group"),
        ("create", "tag"),
        ("update", "tag"),
        ("shuffle", "tag_group"),
        ("delete", "tag_group"),
    ]
    assert all(e["Event"] == "change_external_tag" for e in events)
    assert events[1]["Id"] == created["tag_id"] and events[3]["Id"] == created["group_id"]


def test_chat_events(sim, receiver) -> None:
    sim.configure(callback_url=receiver.url)
    chat_id = sim.chat_event("create", owner=sim.dataset.staff_ids[1])["chat_id"]
    eid = next(iter(sim.relationships()))[0]
    sim.chat_event("update", chat_id=chat_id, members=[eid], join_scene=3)
    sim.chat_event("dismiss", chat_id=chat_id)
    events = [xml_fields(r.ours) for r in receiver.wait(3)]
    assert [e["ChangeType"] for e in events] == ["create", "update", "dismiss"]
    assert set(events[0]) == {
        "ToUserName",
        "FromUserName",
        "CreateTime",
        "MsgType",
        "Event",
        "ChatId",
        "ChangeType",
    }
    update = events[1]
    assert update["UpdateDetail"] == "add_member" and update["JoinScene"] == "3"
    assert update["MemChangeCnt"] == "1" and update["MemChangeList"] == eid
    assert update["LastMemVer"] != update["CurMemVer"]


def test_url_verification_with_percent_encoded_echostr(sim, receiver) -> None:
    # Try several until the ciphertext contains the characters that break naive encoding.
    for _ in range(20):
        result = sim.verify_callback(url=receiver.url)
        assert result["ok"], result
        if any(c in receiver.requests[-1].query["echostr"] for c in "+/="):
            break
    last = receiver.requests[-1]
    assert last.method == "GET" and last.ours == last.wechatpy == result["expected"]


@pytest.mark.parametrize(
    ("option", "ours_error", "wechatpy_error"),
    [
        ("forge_signature", "InvalidSignature", "InvalidSignatureException"),
        ("wrong_corp_id", "InvalidCorpId", "InvalidCorpIdException"),
        ("bad_base64", "MalformedMessage", None),
    ],
)
def test_broken_deliveries_fail_in_exactly_one_way(
    sim, receiver, option, ours_error, wechatpy_error
) -> None:
    xml = change_external_contact_xml(sim.corp_id, "del_follow_user", "staff0001", "wmx")
    result = sim.emit_event("raw", xml=xml, url=receiver.url, **{option: True})
    assert result["callback"]["status"] == 400
    got = receiver.wait(1)[0]
    assert got.ours is None and got.ours_error == ours_error
    if wechatpy_error:
        assert got.wechatpy_error == wechatpy_error
    verify = sim.verify_callback(url=receiver.url, **{option: True})
    assert verify["ok"] is False and verify["status"] == 400


def test_emit_event_builds_any_event(sim, receiver) -> None:
    result = sim.emit_event(
        change_type="add_external_contact",
        userid="staff0002",
        external_userid="wmabc",
        state="store_bj_02",
        welcome_code="CODE",
        url=receiver.url,
    )
    assert result["callback"]["status"] == 200
    assert xml_fields(receiver.wait(1)[0].ours)["State"] == "store_bj_02"


def test_no_callback_url_means_nothing_is_sent(sim) -> None:
    added = sim.add_contact(sim.dataset.staff_ids[0])
    assert added["callback"] is None


def test_unreachable_receiver_is_reported_not_raised(sim) -> None:
    sim.configure(callback_url="http://127.0.0.1:9/callback")
    added = sim.add_contact(sim.dataset.staff_ids[0])
    assert added["callback"]["status"] is None and added["callback"]["error"]


def test_xml_builders_follow_the_documented_shapes() -> None:
    xml = change_external_contact_xml(
        "ww1", "del_external_contact", "u", "wm1", source="DELETE_BY_TRANSFER", create_time=1
    )
    assert xml == (
        "<xml><ToUserName><![CDATA[ww1]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName>"
        "<CreateTime>1</CreateTime><MsgType><![CDATA[event]]></MsgType>"
        "<Event><![CDATA[change_external_contact]]></Event>"
        "<ChangeType><![CDATA[del_external_contact]]></ChangeType><UserID><![CDATA[u]]></UserID>"
        "<ExternalUserID><![CDATA[wm1]]></ExternalUserID>"
        "<Source><![CDATA[DELETE_BY_TRANSFER]]></Source></xml>"
    )
    tag = xml_fields(change_external_tag_xml("ww1", "create", "et1", strategy_id=7))
    assert tag["StrategyId"] == "7" and tag["TagType"] == "tag"
    chat = parse_xml(
        change_external_chat_xml(
            "ww1", "wr1", "update", update_detail="del_member", members=["a", "b"], quit_scene=1
        )
    )
    assert [i.text for i in chat.findall("MemChangeList/Item")] == ["a", "b"]
    assert chat.findtext("QuitScene") == "1"
    assert "]]]]><![CDATA[>" in change_external_contact_xml("w", "del_follow_user", "]]>", "x")
    with pytest.raises(ValueError):
        change_external_contact_xml("w", "bogus", "u", "x")
