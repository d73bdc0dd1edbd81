"""WeCom callbacks in: verify, decrypt, parse, record (WECOM.md §2.1-2.3).

The request does as little as possible: WeCom waits 5 s for an answer and then
redelivers (three times), so the view only proves the message is WeCom's, stores it in
the ``WeComEvent`` inbox once (``dedupe_key`` is unique) and enqueues its processing
after commit. No WeCom call and no customer write happen here; those are
``channels.wecom.events``' job, in a worker.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction

from channels.models import WeComEvent
from channels.wecom.crypto import (
    InvalidCorpId,
    InvalidSignature,
    MalformedMessage,
    WeComCryptoError,
    WXBizMsgCrypt,
    parse_xml,
)

logger = logging.getLogger(__name__)

#: Callbacks are a few hundred bytes; anything near this is not WeCom.
MAX_BODY_BYTES = 1_000_000

#: Fields that identify one event (WECOM.md §2.2), in key order. CreateTime has a
#: one-second resolution, so the tag and chat fields separate events of the same second
#: (a tag group and its first tag are created together); MsgId does it for messages.
DEDUPE_FIELDS = (
    "ToUserName",
    "CreateTime",
    "MsgType",
    "Event",
    "ChangeType",
    "UserID",
    "ExternalUserID",
    "Id",
    "TagType",
    "ChatId",
    "UpdateDetail",
    "MemChangeList",
    "MsgId",
)

Payload = dict[str, str | list[str]]


class CallbackRejected(Exception):
    """A callback we refuse: ``status`` is the HTTP answer, ``reason`` its short body
    (never anything secret: it goes back to whoever sent the request)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class Received:
    """The outcome of one accepted POST."""

    event_id: int
    created: bool  # False: a redelivery of an event already recorded


@functools.lru_cache(maxsize=4)
def _crypto(token: str, aes_key: str, corp_id: str) -> WXBizMsgCrypt:
    return WXBizMsgCrypt(token, aes_key, corp_id)


def callback_crypto() -> WXBizMsgCrypt:
    """The crypto for the configured corp (cached per configuration, so a settings
    override in tests takes effect and the key is not re-decoded on every request)."""
    return _crypto(settings.WECOM_TOKEN, settings.WECOM_AES_KEY, settings.WECOM_CORP_ID)


def _rejected(exc: WeComCryptoError) -> CallbackRejected:
    if isinstance(exc, InvalidSignature):
        return CallbackRejected(403, "invalid signature")
    if isinstance(exc, InvalidCorpId):
        return CallbackRejected(400, "wrong corp id")
    if isinstance(exc, MalformedMessage):
        return CallbackRejected(400, "malformed message")
    return CallbackRejected(400, "undecryptable message")


def _required(params: dict[str, str], *names: str) -> list[str]:
    values = [str(params.get(name) or "").strip() for name in names]
    missing = [name for name, value in zip(names, values, strict=True) if not value]
    if missing:
        raise CallbackRejected(400, "missing " + ", ".join(missing))
    return values


def url_verify(*, params: dict[str, str]) -> str:
    """URL verification (GET): the decrypted echostr, which must be answered verbatim."""
    signature, timestamp, nonce, echostr = _required(
        params, "msg_signature", "timestamp", "nonce", "echostr"
    )
    # base64 has no spaces: a "+" that a proxy decoded as a space is restored, so the
    # signature (over the base64 text) still matches (WECOM.md §2.1).
    echostr = echostr.replace(" ", "+")
    try:
        return callback_crypto().verify_url(signature, timestamp, nonce, echostr)
    except WeComCryptoError as exc:
        raise _rejected(exc) from exc


def event_fields(xml: str) -> Payload:
    """The decrypted event as a flat dict; list elements (``MemChangeList/Item``) stay
    lists. The XML was already parsed safely (no DOCTYPE/entities) by the crypto."""
    fields: Payload = {}
    for child in parse_xml(xml):
        if len(child):
            fields[child.tag] = [(item.text or "") for item in child]
        else:
            fields[child.tag] = (child.text or "").strip()
    return fields


def event_decrypt(*, body: bytes, params: dict[str, str]) -> Payload:
    """Check the signature over ``<Encrypt>``, decrypt, check the corp id, parse."""
    signature, timestamp, nonce = _required(params, "msg_signature", "timestamp", "nonce")
    if not body.strip():
        raise CallbackRejected(400, "empty body")
    if len(body) > MAX_BODY_BYTES:
        raise CallbackRejected(413, "body too large")
    try:
        xml = callback_crypto().decrypt_message(body, signature, timestamp, nonce)
        return event_fields(xml)
    except WeComCryptoError as exc:
        raise _rejected(exc) from exc


def _text(fields: Payload, name: str) -> str:
    value = fields.get(name, "")
    return ",".join(value) if isinstance(value, list) else value


def dedupe_key(fields: Payload) -> str:
    """Same event, same key: WeCom's redeliveries carry the same fields. Readable prefix,
    then a digest of the identifying fields (a member list can be long)."""
    parts = [_text(fields, name) for name in DEDUPE_FIELDS]
    digest = hashlib.sha256(json.dumps(parts, ensure_ascii=False).encode()).hexdigest()
    kind = _text(fields, "Event") or _text(fields, "MsgType") or "unknown"
    return f"{kind[:64]}:{_text(fields, 'ChangeType')[:64]}:{digest}"


def event_record(*, fields: Payload) -> tuple[WeComEvent, bool]:
    """Insert the event once; a redelivery returns the stored row and False."""
    key = dedupe_key(fields)
    event = _text(fields, "Event") or _text(fields, "MsgType") or "unknown"
    try:
        # A savepoint, so that losing the race on the unique key leaves an outer
        # transaction usable.
        with transaction.atomic():
            row = WeComEvent.objects.create(
                dedupe_key=key,
                event=event[:64],
                change_type=_text(fields, "ChangeType")[:64],
                payload=fields,
            )
        return row, True
    except IntegrityError:
        return WeComEvent.objects.get(dedupe_key=key), False


def _enqueue(event_id: int) -> None:
    # Imported here: the tasks module imports the processing services, which the web
    # process needs only at this point.
    from channels.tasks import process_wecom_event

    try:
        process_wecom_event.delay(event_id)
    except Exception:
        # The event is stored: answering 500 would only make WeCom redeliver a duplicate.
        # The requeue sweeper enqueues it once the broker is back.
        logger.exception("WeCom event %s recorded but not enqueued", event_id)


def callback_receive(*, body: bytes, params: dict[str, str]) -> Received:
    """Accept one event POST: verify, record once, enqueue after commit if new."""
    fields = event_decrypt(body=body, params=params)
    row, created = event_record(fields=fields)
    if created:
        transaction.on_commit(functools.partial(_enqueue, row.pk))
    else:
        logger.info("WeCom redelivered event %s (%s)", row.pk, row.dedupe_key)
    return Received(event_id=row.pk, created=created)


def describe(params: dict[str, Any]) -> str:
    """What to log about a refused request: which parameters came, never their values
    beyond the timestamp (the signature is derived from the token)."""
    return f"params={sorted(params)} timestamp={str(params.get('timestamp', ''))[:20]!r}"
