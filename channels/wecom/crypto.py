"""WeCom callback crypto (the "WXBizMsgCrypt" scheme), written from the spec.

WeCom signs and encrypts every callback (DOC/90968):

- ``AESKey = base64decode(EncodingAESKey + "=")``: the 43-char key becomes 32 bytes.
- AES-256-CBC with ``IV = AESKey[:16]`` and PKCS#7 padding to a multiple of **32** bytes
  (not the AES block size of 16: a WeCom quirk every port has to copy).
- Plaintext = ``random(16) + be32(len(msg)) + msg + receiveid``; the receiveid is the
  CorpID for a self-built app, so decrypting also proves which corp the message is for.
- ``msg_signature = sha1("".join(sorted([token, timestamp, nonce, encrypt])))``.

The exceptions are precise so a callback view can answer each with a 4xx of its own
and log why; they all derive from :class:`WeComCryptoError`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
import struct
import time
from xml.etree import ElementTree as ET
from xml.parsers import expat

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

__all__ = [
    "InvalidAESKey",
    "InvalidCorpId",
    "InvalidSignature",
    "MalformedMessage",
    "WXBizMsgCrypt",
    "WeComCryptoError",
    "decode_aes_key",
    "parse_xml",
    "sign",
    "xml_fields",
]

# WeCom pads to 32 bytes (PKCS#7 with k=32), although AES works on 16-byte blocks.
PAD_BLOCK = 32
AES_BLOCK = 16
RANDOM_PREFIX = 16
# Callbacks are a few KB; refuse absurd bodies before any parsing or decryption work.
MAX_XML_CHARS = 1_000_000


class WeComCryptoError(Exception):
    """Base of every callback crypto failure. ``code`` is Tencent's WXBizMsgCrypt code."""

    code = -40000


class InvalidSignature(WeComCryptoError):
    """msg_signature does not match sha1(sorted(token, timestamp, nonce, encrypt))."""

    code = -40001


class InvalidCorpId(WeComCryptoError):
    """The decrypted receiveid is not our CorpID (a message for another corp or app)."""

    code = -40005


class MalformedMessage(WeComCryptoError):
    """Bad base64, bad length, bad padding, bad UTF-8 or bad/unsafe XML."""

    code = -40002


class InvalidAESKey(WeComCryptoError, ValueError):
    """The EncodingAESKey is not 43 base64 chars decoding to 32 bytes (a config error)."""

    code = -40004


def decode_aes_key(encoding_aes_key: str) -> bytes:
    """Turn the 43-char EncodingAESKey into the 32-byte AES key."""
    if len(encoding_aes_key) != 43:
        raise InvalidAESKey("EncodingAESKey must be 43 characters")
    try:
        key = base64.b64decode(encoding_aes_key + "=", validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidAESKey("EncodingAESKey is not base64") from exc
    if len(key) != 32:  # pragma: no cover - 43 valid base64 chars always give 32 bytes
        raise InvalidAESKey("EncodingAESKey must decode to 32 bytes")
    return key


def sign(token: str, timestamp: str, nonce: str, encrypt: str) -> str:
    """The msg_signature: sha1 over the lexicographically sorted, concatenated strings."""
    joined = "".join(sorted([str(token), str(timestamp), str(nonce), str(encrypt)]))
    return hashlib.sha1(joined.encode("utf-8")).hexdigest()


def _pkcs7_pad(data: bytes) -> bytes:
    n = PAD_BLOCK - len(data) % PAD_BLOCK
    return data + bytes([n]) * n


def _pkcs7_unpad(data: bytes) -> bytes:
    if not data:
        raise MalformedMessage("empty plaintext")
    n = data[-1]
    # Strict: the pad value is 1..32 and every pad byte equals it. Lenient decoders
    # (wechatpy) silently keep garbage; we would rather reject a corrupted message.
    if not 1 <= n <= PAD_BLOCK or n > len(data) or data[-n:] != bytes([n]) * n:
        raise MalformedMessage("bad PKCS#7 padding")
    return data[:-n]


class _ForbiddenXML(Exception):
    pass


def _forbid(*_args: object) -> None:
    raise _ForbiddenXML


def parse_xml(text: str | bytes) -> ET.Element:
    """Parse untrusted XML safely and return the root element.

    A DOCTYPE is rejected outright: WeCom never sends one, and refusing it removes
    entity expansion ("billion laughs") and external entities in one stroke whatever
    the expat version. Raises :class:`MalformedMessage`.
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedMessage("XML is not UTF-8") from exc
    if len(text) > MAX_XML_CHARS:
        raise MalformedMessage("XML too large")
    builder = ET.TreeBuilder()
    parser = expat.ParserCreate()
    parser.StartDoctypeDeclHandler = _forbid
    parser.EntityDeclHandler = _forbid
    parser.UnparsedEntityDeclHandler = _forbid
    parser.ExternalEntityRefHandler = _forbid  # type: ignore[assignment]
    parser.StartElementHandler = builder.start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.data
    parser.buffer_text = True
    try:
        parser.Parse(text, True)
        root = builder.close()
    except _ForbiddenXML as exc:
        raise MalformedMessage("DOCTYPE/entities are not allowed") from exc
    except (expat.ExpatError, AssertionError, IndexError) as exc:
        # TreeBuilder.close() asserts on an unfinished tree; expat reports syntax errors.
        raise MalformedMessage(f"bad XML: {exc}") from exc
    return root


def xml_fields(text: str | bytes) -> dict[str, str]:
    """The root's child elements as {tag: text} (WeCom events are flat, CDATA or not).

    Nested lists such as ``MemChangeList/Item`` are joined with commas; tests and views
    needing more structure can use :func:`parse_xml`.
    """
    root = parse_xml(text)
    fields: dict[str, str] = {}
    for child in root:
        if len(child):
            fields[child.tag] = ",".join((item.text or "") for item in child)
        else:
            fields[child.tag] = child.text or ""
    return fields


class WXBizMsgCrypt:
    """Sign, encrypt and decrypt WeCom callbacks for one (token, AES key, receiveid)."""

    def __init__(self, token: str, encoding_aes_key: str, receive_id: str) -> None:
        self.token = token
        self.key = decode_aes_key(encoding_aes_key)
        self.receive_id = receive_id

    def _cipher(self) -> Cipher[modes.CBC]:
        return Cipher(algorithms.AES(self.key), modes.CBC(self.key[:AES_BLOCK]))

    def sign(self, timestamp: str, nonce: str, encrypt: str) -> str:
        return sign(self.token, timestamp, nonce, encrypt)

    def check_signature(self, msg_signature: str, timestamp: str, nonce: str, data: str) -> None:
        """Raise :class:`InvalidSignature` unless msg_signature signs ``data``."""
        expected = self.sign(timestamp, nonce, data)
        # Constant-time compare: the signature is the only secret-derived value here.
        if not hmac.compare_digest(expected, str(msg_signature).lower()):
            raise InvalidSignature("msg_signature mismatch")

    def encrypt(
        self, text: str, *, random16: bytes | None = None, receive_id: str | None = None
    ) -> str:
        """Encrypt ``text`` into the base64 ``Encrypt`` value.

        ``random16`` and ``receive_id`` exist for test vectors and for the simulator's
        "wrong corp id" mode; production callers pass neither.
        """
        prefix = os.urandom(RANDOM_PREFIX) if random16 is None else random16
        if len(prefix) != RANDOM_PREFIX:
            raise ValueError("random16 must be 16 bytes")
        msg = text.encode("utf-8")
        rid = (self.receive_id if receive_id is None else receive_id).encode("utf-8")
        plain = _pkcs7_pad(prefix + struct.pack(">I", len(msg)) + msg + rid)
        encryptor = self._cipher().encryptor()
        return base64.b64encode(encryptor.update(plain) + encryptor.finalize()).decode("ascii")

    def decrypt(self, encrypted: str) -> str:
        """Decrypt a base64 ``Encrypt``/``echostr`` value and check the receiveid."""
        try:
            raw = base64.b64decode("".join(str(encrypted).split()), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise MalformedMessage("Encrypt is not valid base64") from exc
        if not raw or len(raw) % AES_BLOCK:
            raise MalformedMessage("ciphertext length is not a multiple of 16")
        decryptor = self._cipher().decryptor()
        plain = _pkcs7_unpad(decryptor.update(raw) + decryptor.finalize())
        if len(plain) < RANDOM_PREFIX + 4:
            raise MalformedMessage("plaintext too short")
        (msg_len,) = struct.unpack(">I", plain[RANDOM_PREFIX : RANDOM_PREFIX + 4])
        start = RANDOM_PREFIX + 4
        if start + msg_len > len(plain):
            raise MalformedMessage("message length exceeds plaintext")
        msg, rid = plain[start : start + msg_len], plain[start + msg_len :]
        if not hmac.compare_digest(rid, self.receive_id.encode("utf-8")):
            raise InvalidCorpId("receiveid does not match our CorpID")
        try:
            return msg.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedMessage("message is not UTF-8") from exc

    def verify_url(self, msg_signature: str, timestamp: str, nonce: str, echostr: str) -> str:
        """URL verification (GET): check the signature over echostr, return its plaintext.

        ``echostr`` must already be percent-decoded (Django's request.GET does that);
        the signature covers the base64 text, not the URL form.
        """
        self.check_signature(msg_signature, timestamp, nonce, echostr)
        return self.decrypt(echostr)

    def decrypt_message(
        self, body_xml: str | bytes, msg_signature: str, timestamp: str, nonce: str
    ) -> str:
        """Event POST: verify the signature over ``<Encrypt>``, decrypt, return the event XML.

        The decrypted XML is parsed once here too, so a view gets MalformedMessage rather
        than a parse error later for a well-signed but garbled event.
        """
        envelope = parse_xml(body_xml)
        node = envelope.find("Encrypt")
        if node is None or not (node.text or "").strip():
            raise MalformedMessage("no <Encrypt> element")
        encrypted = (node.text or "").strip()
        self.check_signature(msg_signature, timestamp, nonce, encrypted)
        plaintext = self.decrypt(encrypted)
        parse_xml(plaintext)
        return plaintext

    def encrypt_message(
        self, reply_xml: str, nonce: str | None = None, timestamp: str | None = None
    ) -> str:
        """The passive-reply envelope (same layout as wechatpy's ``encrypt_message``)."""
        ts = str(int(time.time())) if timestamp is None else str(timestamp)
        nonce = secrets.token_hex(5) if nonce is None else str(nonce)
        encrypted = self.encrypt(reply_xml)
        signature = self.sign(ts, nonce, encrypted)
        return (
            "<xml>\n"
            f"<Encrypt><![CDATA[{encrypted}]]></Encrypt>\n"
            f"<MsgSignature><![CDATA[{signature}]]></MsgSignature>\n"
            f"<TimeStamp>{ts}</TimeStamp>\n"
            f"<Nonce><![CDATA[{nonce}]]></Nonce>\n"
            "</xml>"
        )
