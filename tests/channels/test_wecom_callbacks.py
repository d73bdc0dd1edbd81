"""The callback view: URL verification, event recording, dedupe, and every forgery refused
with nothing recorded (WECOM.md §2.1-2.4)."""

from __future__ import annotations

import base64
import logging
import os
import struct
from collections.abc import Iterator
from urllib.parse import quote, urlencode

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from django.test import Client
from django.urls import reverse

from channels.models import EventStatus, WeComEvent
from channels.wecom.callbacks import MAX_BODY_BYTES, dedupe_key
from channels.wecom.crypto import WXBizMsgCrypt, decode_aes_key
from channels.wecom.simulator import (
    change_external_chat_xml,
    change_external_contact_xml,
    change_external_tag_xml,
)
from tests.channels.wecom_support import (
    AES_KEY,
    CORP_ID,
    TOKEN,
    WeCom,
    running_wecom,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def wecom(db, settings, django_capture_on_commit_callbacks) -> Iterator[WeCom]:
    with running_wecom(settings, django_capture_on_commit_callbacks) as running:
        yield running


# WECOM.md §2.4, set B: Tencent's 2014 sample, verified with wechatpy.
VECTOR_TOKEN = "QDG6eK"
VECTOR_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
VECTOR_CORP = "wx5823bf96d3bd56c7"
VECTOR_GET = (
    "msg_signature=5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3&timestamp=1409659589"
    "&nonce=263014780&echostr=P9nAzCzyDtyTWESHep1vC5X9xho%2FqYX3Zpb4yKa9SKld1DsH3Iyt3tP3zN"
    "dtp%2B4RPcs8TgAE7OaBO%2BFZXvnaqQ%3D%3D"
)
VECTOR_POST_PARAMS = {
    "msg_signature": "477715d11cdb4164915debcba66cb864d751f3e6",
    "timestamp": "1409659813",
    "nonce": "1372623149",
}
VECTOR_ENCRYPT = (
    "RypEvHKD8QQKFhvQ6QleEB4J58tiPdvo+rtK1I9qca6aM/wvqnLSV5zEPeusUiX5L5X/0lWfrf0QADHHhGd3Qczc"
    "dCUpj911L3vg3W/sYYvuJTs3TUUkSUXxaccAS0qhxchrRYt66wiSpGLYL42aM6A8dTT+6k4aSknmPj48kzJs8qLj"
    "vd4Xgpue06DOdnLxAUHzM6+kDZ+HMZfJYuR+LtwGc2hgf5gsijff0ekUNXZiqATP7PF5mZxZ3Izoun1s4zG4LUMn"
    "vw2r+KqCKIw+3IQH03v+BCA9nMELNqbSf6tiWSrXJB3LAVGUcallcrw8V2t9EL4EhzJWrQUax5wLVMNS0+rUPA3k"
    "22Ncx4XXZS9o0MBH27Bo6BpNelZpS+/uh9KsNlY6bHCmJU9p8g7m3fVKn28H3KDYA5Pl/T8Z1ptDAVe0lXdQ2Yoy"
    "yH2uyPIGHBZZIs2pDBS8R07+qN+E7Q=="
)


@pytest.fixture
def vector(settings) -> None:
    settings.WECOM_TOKEN = VECTOR_TOKEN
    settings.WECOM_AES_KEY = VECTOR_KEY
    settings.WECOM_CORP_ID = VECTOR_CORP


def url() -> str:
    return reverse("wecom-callback")


def contact_xml(wecom: WeCom, change_type: str = "add_external_contact", **kw) -> str:
    return change_external_contact_xml(CORP_ID, change_type, wecom.staff[0], "wmEXTERNAL01", **kw)


def raw_encrypt(plain: bytes) -> str:
    """AES-CBC with WeCom's key and IV but no padding of ours: for broken plaintexts."""
    key = decode_aes_key(AES_KEY)
    encryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    return base64.b64encode(encryptor.update(plain) + encryptor.finalize()).decode()


def sealed(encrypted: str, timestamp: str = "1700000000", nonce: str = "42") -> tuple[str, dict]:
    crypto = WXBizMsgCrypt(TOKEN, AES_KEY, CORP_ID)
    body = (
        f"<xml><ToUserName><![CDATA[{CORP_ID}]]></ToUserName>"
        f"<Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>"
    )
    params = {"msg_signature": crypto.sign(timestamp, nonce, encrypted), "timestamp": timestamp}
    params["nonce"] = nonce
    return body, params


# --- the official vector -------------------------------------------------------------


def test_official_vector_url_verification_answers_the_bare_plaintext(client, vector) -> None:
    response = client.get(f"{url()}?{VECTOR_GET}")
    assert response.status_code == 200
    assert response.content == b"1616140317555161061"  # no quotes, BOM or newline
    assert response["Content-Type"].startswith("text/plain")


def test_official_vector_post_is_recorded_and_ignored_not_crashed(
    vector, django_capture_on_commit_callbacks
) -> None:
    body = (
        f"<xml><ToUserName><![CDATA[{VECTOR_CORP}]]></ToUserName>"
        f"<Encrypt><![CDATA[{VECTOR_ENCRYPT}]]></Encrypt><AgentID><![CDATA[218]]></AgentID></xml>"
    )
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = Client().post(
            f"{url()}?{urlencode(VECTOR_POST_PARAMS)}", data=body, content_type="text/xml"
        )
    assert response.status_code == 200 and response.content == b""
    event = WeComEvent.objects.get()
    assert event.event == "text" and event.change_type == ""
    assert event.payload["Content"] == "hello"
    assert event.payload["MsgId"] == "4561255354251345929"
    assert len(callbacks) == 1
    from channels.tasks import process_wecom_event

    process_wecom_event.apply(args=[event.pk])
    event.refresh_from_db()
    assert event.status == EventStatus.IGNORED
    assert event.attempts == 1


# --- URL verification ----------------------------------------------------------------


def test_url_verification_with_a_percent_encoded_echostr(wecom: WeCom) -> None:
    crypto = WXBizMsgCrypt(TOKEN, AES_KEY, CORP_ID)
    for plain in ("1234567890123456789", "明文+/=?&"):
        echostr = crypto.encrypt(plain)
        params = f"msg_signature={crypto.sign('1', '2', echostr)}&timestamp=1&nonce=2"
        response = wecom.http.get(f"{url()}?{params}&echostr={quote(echostr, safe='')}")
        assert response.status_code == 200
        assert response.content.decode() == plain


@pytest.mark.parametrize(
    ("forgery", "status"),
    [("forge_signature", 403), ("wrong_corp_id", 400), ("bad_base64", 400)],
)
def test_url_verification_refuses_forgeries(wecom: WeCom, forgery: str, status: int) -> None:
    crypto = WXBizMsgCrypt(TOKEN, AES_KEY, CORP_ID)
    if forgery == "bad_base64":
        echostr = "not*base64*at*all"
    elif forgery == "wrong_corp_id":
        echostr = crypto.encrypt("123", receive_id="wwsomeoneelse")
    else:
        echostr = crypto.encrypt("123")
    signature = crypto.sign("1", "2", echostr)
    if forgery == "forge_signature":
        signature = "0" * 40
    response = wecom.http.get(
        url(), {"msg_signature": signature, "timestamp": "1", "nonce": "2", "echostr": echostr}
    )
    assert response.status_code == status
    assert b"123" not in response.content


def test_url_verification_without_parameters_is_400(wecom: WeCom) -> None:
    response = wecom.http.get(url(), {"msg_signature": "x", "timestamp": "1"})
    assert response.status_code == 400
    assert b"missing" in response.content


# --- event POSTs ---------------------------------------------------------------------


def test_event_is_recorded_once_and_enqueued_after_commit(wecom: WeCom) -> None:
    xml = contact_xml(wecom, state="poster", welcome_code="W1", create_time=1700000000)
    event = wecom.deliver(xml)
    assert (event.event, event.change_type) == ("change_external_contact", "add_external_contact")
    assert event.status == EventStatus.PENDING and event.attempts == 0
    assert event.payload == {
        "ToUserName": CORP_ID,
        "FromUserName": "sys",
        "CreateTime": "1700000000",
        "MsgType": "event",
        "Event": "change_external_contact",
        "ChangeType": "add_external_contact",
        "UserID": wecom.staff[0],
        "ExternalUserID": "wmEXTERNAL01",
        "State": "poster",
        "WelcomeCode": "W1",
    }


def test_redelivery_of_the_same_post_records_one_event_and_enqueues_once(wecom: WeCom) -> None:
    body, params = wecom.emitter.seal(contact_xml(wecom, create_time=1700000000))
    first, enqueued = wecom.post_sealed(body, params)
    assert first.status_code == 200 and len(enqueued) == 1
    for _ in range(3):  # WeCom retries three times
        again, enqueued = wecom.post_sealed(body, params)
        assert again.status_code == 200 and again.content == b""
        assert enqueued == []
    # A retry is re-encrypted and re-signed by WeCom: still the same event.
    again, enqueued = wecom.post_sealed(
        *wecom.emitter.seal(contact_xml(wecom, create_time=1700000000))
    )
    assert again.status_code == 200 and enqueued == []
    assert WeComEvent.objects.count() == 1


def test_events_of_the_same_second_are_told_apart(wecom: WeCom) -> None:
    at = 1700000000
    xmls = [
        change_external_tag_xml(CORP_ID, "create", "etGROUP", tag_type="tag_group", create_time=at),
        change_external_tag_xml(CORP_ID, "create", "etTAG", create_time=at),
        change_external_chat_xml(CORP_ID, "wrCHAT", "update", members=["a"], create_time=at),
        change_external_chat_xml(CORP_ID, "wrCHAT", "update", members=["b"], create_time=at),
        change_external_chat_xml(
            CORP_ID, "wrCHAT", "update", update_detail="del_member", members=["b"], create_time=at
        ),
        contact_xml(wecom, "del_external_contact", create_time=at),
        contact_xml(wecom, "del_follow_user", create_time=at),
    ]
    for xml in xmls:
        wecom.deliver(xml)
    assert WeComEvent.objects.count() == len(xmls)
    chat = WeComEvent.objects.filter(event="change_external_chat").first()
    assert chat is not None and isinstance(chat.payload["MemChangeList"], list)


def test_dedupe_key_names_the_event_and_fits_the_column() -> None:
    key = dedupe_key(
        {"Event": "change_external_chat", "ChangeType": "update", "MemChangeList": ["x"] * 5000}
    )
    assert key.startswith("change_external_chat:update:")
    max_length = WeComEvent._meta.get_field("dedupe_key").max_length
    assert max_length is not None and len(key) <= max_length


@pytest.mark.parametrize(
    ("forgery", "status"),
    [("forge_signature", 403), ("wrong_corp_id", 400), ("bad_base64", 400)],
)
def test_forged_posts_are_refused_and_nothing_is_recorded(
    wecom: WeCom, forgery: str, status: int, caplog
) -> None:
    caplog.set_level(logging.WARNING)
    response = wecom.post(contact_xml(wecom), **{forgery: True})
    assert response.status_code == status
    assert 0 < len(response.content) < 50
    assert WeComEvent.objects.count() == 0
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "refused" in logged
    assert TOKEN not in logged and AES_KEY not in logged


def test_bad_padding_is_refused(wecom: WeCom) -> None:
    msg = b"<xml><Event>x</Event></xml>"
    plain = os.urandom(16) + struct.pack(">I", len(msg)) + msg + CORP_ID.encode()
    plain += b"\x00" * (32 - len(plain) % 32)  # pad value 0 is never valid PKCS#7
    response = wecom.post_sealed(*sealed(raw_encrypt(plain)))[0]
    assert response.status_code == 400
    assert WeComEvent.objects.count() == 0


@pytest.mark.parametrize(
    "xml",
    [
        "<xml><Event>unclosed",
        "not xml at all",
        '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;">]>'
        "<xml><Event>&b;</Event></xml>",
        '<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><xml><Event>&e;</Event></xml>',
    ],
    ids=["truncated", "not-xml", "entity-expansion", "external-entity"],
)
def test_well_signed_but_bad_event_xml_is_refused(wecom: WeCom, xml: str) -> None:
    crypto = WXBizMsgCrypt(TOKEN, AES_KEY, CORP_ID)
    response = wecom.post_sealed(*sealed(crypto.encrypt(xml)))[0]
    assert response.status_code == 400
    assert WeComEvent.objects.count() == 0


@pytest.mark.parametrize(
    "body",
    [
        "",
        "garbage",
        "<xml><ToUserName>x</ToUserName></xml>",  # no <Encrypt>
        '<!DOCTYPE x [<!ENTITY a "b">]><xml><Encrypt>&a;</Encrypt></xml>',
    ],
    ids=["empty", "not-xml", "no-encrypt", "doctype-envelope"],
)
def test_bad_envelopes_are_refused(wecom: WeCom, body: str) -> None:
    params = {"msg_signature": "0" * 40, "timestamp": "1", "nonce": "2"}
    response = wecom.post_sealed(body, params)[0]
    assert response.status_code == 400
    assert WeComEvent.objects.count() == 0


def test_missing_query_parameters_are_400(wecom: WeCom) -> None:
    body, params = wecom.emitter.seal(contact_xml(wecom))
    for name in params:
        partial = {k: v for k, v in params.items() if k != name}
        response = wecom.post_sealed(body, partial)[0]
        assert response.status_code == 400, name
        assert name.encode() in response.content
    assert WeComEvent.objects.count() == 0


def test_oversized_body_is_413_before_any_work(wecom: WeCom) -> None:
    body, params = wecom.emitter.seal(contact_xml(wecom))
    huge = body + " " * (MAX_BODY_BYTES + 1)
    response = wecom.post_sealed(huge, params)[0]
    assert response.status_code == 413
    assert WeComEvent.objects.count() == 0


def test_other_methods_are_405_and_no_csrf_token_is_needed(wecom: WeCom) -> None:
    assert wecom.http.put(url()).status_code == 405
    strict = Client(enforce_csrf_checks=True)
    body, params = wecom.emitter.seal(contact_xml(wecom))
    response = strict.post(f"{url()}?{urlencode(params)}", data=body, content_type="text/xml")
    assert response.status_code == 200


def test_callback_request_query_budget(wecom: WeCom, django_assert_max_num_queries) -> None:
    # The request must stay fast: one INSERT in a savepoint; a redelivery's INSERT fails
    # on the unique key, the savepoint is rolled back and the stored row read.
    body, params = wecom.emitter.seal(contact_xml(wecom, create_time=1700000000))
    with django_assert_max_num_queries(3):
        assert wecom.post_sealed(body, params)[0].status_code == 200
    with django_assert_max_num_queries(5):
        assert wecom.post_sealed(body, params)[0].status_code == 200
