"""Our WXBizMsgCrypt against the official vector (WECOM.md §2.4) and wechatpy 1.8.18."""

from __future__ import annotations

import base64
import struct

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from wechatpy.enterprise.crypto import WeChatCrypto
from wechatpy.enterprise.exceptions import InvalidCorpIdException
from wechatpy.exceptions import InvalidSignatureException

from channels.wecom.crypto import (
    InvalidAESKey,
    InvalidCorpId,
    InvalidSignature,
    MalformedMessage,
    WeComCryptoError,
    WXBizMsgCrypt,
    parse_xml,
    sign,
    xml_fields,
)

TOKEN = "QDG6eK"
AES_KEY = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C"
CORP_ID = "wx5823bf96d3bd56c7"

GET_SIGNATURE = "5c45ff5e21c57e6ad56bac8758b79b1d9ac89fd3"
GET_TIMESTAMP = "1409659589"
GET_NONCE = "263014780"
ECHOSTR = "P9nAzCzyDtyTWESHep1vC5X9xho/qYX3Zpb4yKa9SKld1DsH3Iyt3tP3zNdtp+4RPcs8TgAE7OaBO+FZXvnaqQ=="

POST_SIGNATURE = "477715d11cdb4164915debcba66cb864d751f3e6"
POST_TIMESTAMP = "1409659813"
POST_NONCE = "1372623149"
POST_ENCRYPT = (
    "RypEvHKD8QQKFhvQ6QleEB4J58tiPdvo+rtK1I9qca6aM/wvqnLSV5zEPeusUiX5L5X/0lWfrf0QADHHhGd3Qczc"
    "dCUpj911L3vg3W/sYYvuJTs3TUUkSUXxaccAS0qhxchrRYt66wiSpGLYL42aM6A8dTT+6k4aSknmPj48kzJs8qLjvd"
    "4Xgpue06DOdnLxAUHzM6+kDZ+HMZfJYuR+LtwGc2hgf5gsijff0ekUNXZiqATP7PF5mZxZ3Izoun1s4zG4LUMnvw2"
    "r+KqCKIw+3IQH03v+BCA9nMELNqbSf6tiWSrXJB3LAVGUcallcrw8V2t9EL4EhzJWrQUax5wLVMNS0+rUPA3k22Ncx4"
    "XXZS9o0MBH27Bo6BpNelZpS+/uh9KsNlY6bHCmJU9p8g7m3fVKn28H3KDYA5Pl/T8Z1ptDAVe0lXdQ2YoyyH2uyPIG"
    "HBZZIs2pDBS8R07+qN+E7Q=="
)
POST_PLAINTEXT = (
    "<xml><ToUserName><![CDATA[wx5823bf96d3bd56c7]]></ToUserName>\n"
    "<FromUserName><![CDATA[mycreate]]></FromUserName>\n"
    "<CreateTime>1409659813</CreateTime>\n"
    "<MsgType><![CDATA[text]]></MsgType>\n"
    "<Content><![CDATA[hello]]></Content>\n"
    "<MsgId>4561255354251345929</MsgId>\n"
    "<AgentID>218</AgentID>\n"
    "</xml>"
)


def envelope(encrypt: str, to: str = CORP_ID) -> str:
    return (
        f"<xml><ToUserName><![CDATA[{to}]]></ToUserName>"
        f"<Encrypt><![CDATA[{encrypt}]]></Encrypt><AgentID><![CDATA[218]]></AgentID></xml>"
    )


@pytest.fixture
def crypto() -> WXBizMsgCrypt:
    return WXBizMsgCrypt(TOKEN, AES_KEY, CORP_ID)


def raw_encrypt(plaintext: bytes) -> str:
    """AES-CBC with the vector's key and IV, no padding of our own (for bad-padding cases)."""
    key = base64.b64decode(AES_KEY + "=")
    enc = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    return base64.b64encode(enc.update(plaintext) + enc.finalize()).decode()


# -- the official vector ----------------------------------------------------------------


def test_official_url_verification_vector(crypto) -> None:
    plain = crypto.verify_url(GET_SIGNATURE, GET_TIMESTAMP, GET_NONCE, ECHOSTR)
    assert plain == "1616140317555161061"


def test_official_message_vector(crypto) -> None:
    xml = crypto.decrypt_message(envelope(POST_ENCRYPT), POST_SIGNATURE, POST_TIMESTAMP, POST_NONCE)
    assert xml == POST_PLAINTEXT
    assert xml_fields(xml)["Content"] == "hello"


def test_signature_is_sha1_of_sorted_parts() -> None:
    assert sign(TOKEN, GET_TIMESTAMP, GET_NONCE, ECHOSTR) == GET_SIGNATURE
    assert sign(TOKEN, POST_TIMESTAMP, POST_NONCE, POST_ENCRYPT) == POST_SIGNATURE


# -- round trips ------------------------------------------------------------------------


def test_encrypt_decrypt_round_trip_with_cjk_and_emoji(crypto) -> None:
    text = "<xml><Name><![CDATA[张三🌸]]></Name></xml>"
    assert crypto.decrypt(crypto.encrypt(text)) == text


@pytest.mark.parametrize("size", [0, 1, 11, 12, 31, 32, 33, 100])
def test_padding_reaches_a_multiple_of_32_bytes(crypto, size) -> None:
    # 16 random + 4 length + msg + 18-byte corp id; every length must round-trip.
    text = "x" * size
    raw = base64.b64decode(crypto.encrypt(text))
    assert len(raw) % 32 == 0
    assert crypto.decrypt(crypto.encrypt(text)) == text


def test_encrypt_message_builds_the_passive_reply_envelope(crypto) -> None:
    reply = crypto.encrypt_message("<xml><A>1</A></xml>", nonce="n1", timestamp="1700000000")
    fields = xml_fields(reply)
    assert set(fields) == {"Encrypt", "MsgSignature", "TimeStamp", "Nonce"}
    assert fields["TimeStamp"] == "1700000000"
    assert fields["MsgSignature"] == sign(TOKEN, "1700000000", "n1", fields["Encrypt"])
    assert crypto.decrypt(fields["Encrypt"]) == "<xml><A>1</A></xml>"


def test_fixed_random_prefix_is_deterministic(crypto) -> None:
    a = crypto.encrypt("hello", random16=b"0123456789abcdef")
    b = crypto.encrypt("hello", random16=b"0123456789abcdef")
    assert a == b != crypto.encrypt("hello")


# -- failures ---------------------------------------------------------------------------


def test_bad_signature_on_url_verification(crypto) -> None:
    with pytest.raises(InvalidSignature):
        crypto.verify_url("0" * 40, GET_TIMESTAMP, GET_NONCE, ECHOSTR)


def test_bad_signature_on_message(crypto) -> None:
    with pytest.raises(InvalidSignature):
        crypto.decrypt_message(envelope(POST_ENCRYPT), "0" * 40, POST_TIMESTAMP, POST_NONCE)


def test_wrong_corp_id() -> None:
    other = WXBizMsgCrypt(TOKEN, AES_KEY, "wwsomeothercorp")
    with pytest.raises(InvalidCorpId):
        other.verify_url(GET_SIGNATURE, GET_TIMESTAMP, GET_NONCE, ECHOSTR)
    with pytest.raises(InvalidCorpId):
        other.decrypt_message(envelope(POST_ENCRYPT), POST_SIGNATURE, POST_TIMESTAMP, POST_NONCE)


def test_bad_base64(crypto) -> None:
    bad = "not*base64!"
    with pytest.raises(MalformedMessage):
        crypto.verify_url(sign(TOKEN, "1", "2", bad), "1", "2", bad)


def test_plus_turned_into_space_is_refused(crypto) -> None:
    # What a receiver sees when the sender forgot to percent-encode echostr.
    mangled = ECHOSTR.replace("+", " ")
    with pytest.raises(WeComCryptoError):
        crypto.verify_url(sign(TOKEN, "1", "2", mangled), "1", "2", mangled)


def test_truncated_ciphertext(crypto) -> None:
    raw = base64.b64decode(POST_ENCRYPT)
    for cut in (raw[:-1], raw[:-16], raw[:15], b""):
        text = base64.b64encode(cut).decode()
        with pytest.raises(MalformedMessage):
            crypto.decrypt(text)


def test_bad_padding(crypto) -> None:
    body = b"\x00" * 16 + struct.pack(">I", 5) + b"hello" + CORP_ID.encode()  # 43 bytes
    filler = 64 - len(body)
    # pad value 0, pad value 33 (> 32), and pad bytes that disagree with the last one
    for tail in (b"\x00" * filler, b"\x21" * filler, b"\x07" * (filler - 1) + b"\x05"):
        with pytest.raises(MalformedMessage):
            crypto.decrypt(raw_encrypt(body + tail))


def test_length_field_beyond_the_plaintext(crypto) -> None:
    body = b"\x00" * 16 + struct.pack(">I", 10_000) + b"hello" + CORP_ID.encode()
    n = 32 - len(body) % 32
    with pytest.raises(MalformedMessage):
        crypto.decrypt(raw_encrypt(body + bytes([n]) * n))


def test_envelope_without_encrypt(crypto) -> None:
    with pytest.raises(MalformedMessage):
        crypto.decrypt_message("<xml><ToUserName>x</ToUserName></xml>", "s", "1", "2")


@pytest.mark.parametrize(
    "body",
    [
        "",
        "<xml>",
        "not xml at all",
        "<xml></xml><extra/>",
        '<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY a "aaaa">]><xml><Encrypt>&a;</Encrypt></xml>',
        '<!DOCTYPE xml SYSTEM "http://127.0.0.1:1/evil.dtd"><xml/>',
        "<xml><Encrypt>&undefined;</Encrypt></xml>",
    ],
)
def test_bad_or_unsafe_xml_is_malformed(crypto, body) -> None:
    with pytest.raises(MalformedMessage):
        crypto.decrypt_message(body, "s", "1", "2")


def test_billion_laughs_is_refused_before_expansion() -> None:
    lol = "".join(f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10))
    doc = f'<!DOCTYPE x [<!ENTITY l0 "lol">{lol}]><x>&l9;</x>'
    with pytest.raises(MalformedMessage):
        parse_xml(doc)


def test_garbled_plaintext_xml_is_malformed(crypto) -> None:
    encrypted = crypto.encrypt("<xml><broken></xml>")
    signature = sign(TOKEN, "1", "2", encrypted)
    with pytest.raises(MalformedMessage):
        crypto.decrypt_message(envelope(encrypted), signature, "1", "2")


def test_every_error_is_a_wecom_crypto_error() -> None:
    for exc in (InvalidSignature, InvalidCorpId, MalformedMessage, InvalidAESKey):
        assert issubclass(exc, WeComCryptoError)


@pytest.mark.parametrize("key", ["short", "*" * 43, AES_KEY + "A"])
def test_invalid_aes_key(key) -> None:
    with pytest.raises(InvalidAESKey):
        WXBizMsgCrypt(TOKEN, key, CORP_ID)


# -- cross-checks with wechatpy 1.8.18 --------------------------------------------------


@pytest.fixture
def wechatpy_crypto() -> WeChatCrypto:
    return WeChatCrypto(TOKEN, AES_KEY, CORP_ID)


def test_wechatpy_decrypts_our_messages(crypto, wechatpy_crypto) -> None:
    text = "<xml><ToUserName><![CDATA[x]]></ToUserName><Content><![CDATA[你好🌸]]></Content></xml>"
    encrypted = crypto.encrypt(text)
    signature = crypto.sign("1700000000", "abc", encrypted)
    got = wechatpy_crypto.decrypt_message(envelope(encrypted), signature, "1700000000", "abc")
    assert got == text
    assert wechatpy_crypto.check_signature(signature, "1700000000", "abc", encrypted) == text


def test_we_decrypt_wechatpy_replies(crypto, wechatpy_crypto) -> None:
    text = "<xml><Content><![CDATA[回复]]></Content></xml>"
    reply = wechatpy_crypto.encrypt_message(text, "nonce1", "1700000001")
    fields = xml_fields(reply)
    assert crypto.decrypt_message(reply, fields["MsgSignature"], "1700000001", "nonce1") == text


def test_wechatpy_decrypts_our_passive_reply(crypto, wechatpy_crypto) -> None:
    reply = crypto.encrypt_message("<xml><A>ok</A></xml>", nonce="n2", timestamp="1700000002")
    fields = xml_fields(reply)
    got = wechatpy_crypto.decrypt_message(reply, fields["MsgSignature"], "1700000002", "n2")
    assert got == "<xml><A>ok</A></xml>"


def test_wechatpy_rejects_what_we_reject(crypto, wechatpy_crypto) -> None:
    encrypted = crypto.encrypt("<xml/>")
    with pytest.raises(InvalidSignatureException):
        wechatpy_crypto.decrypt_message(envelope(encrypted), "0" * 40, "1", "2")
    other = WXBizMsgCrypt(TOKEN, AES_KEY, "wwanothercorp")
    foreign = other.encrypt("<xml/>")
    with pytest.raises(InvalidCorpIdException):
        wechatpy_crypto.decrypt_message(envelope(foreign), other.sign("1", "2", foreign), "1", "2")
