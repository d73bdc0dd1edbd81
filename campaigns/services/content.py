"""The content library: reusable messages, validated against WeCom's attachment shapes,
and rendered per customer.

Variables are filled by one regular-expression pass, never a template engine, exactly as
``channels.wecom.welcome.welcome_render`` does: customers choose their own WeChat names,
and a name such as ``{{ settings.SECRET_KEY }}``, ``{staff}``, ``%(x)s`` or
``{0.__class__}`` must reach the customer literally. A substituted value is never scanned
again, and an unknown ``{placeholder}`` is plain text.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.db import transaction

from campaigns.models import Content, ContentKind, CouponBatch

#: WeCom's limits for add_msg_template / send_welcome_msg (WECOM.md §1.8-1.9, DOC/92135).
MAX_TEXT_BYTES = 4000
MAX_ATTACHMENTS = 9
LINK_TITLE_BYTES = 128
LINK_DESC_BYTES = 512
URL_BYTES = 2048
MINIPROGRAM_TITLE_BYTES = 64

VARIABLES = ("name", "staff", "store", "coupon")
#: Variables whose value differs per customer: a content using one needs one WeCom task
#: per customer, while the others can share a task among the customers of one sender.
CUSTOMER_VARIABLES = ("name", "coupon")

_PLACEHOLDER = re.compile(r"\{(name|staff|store|coupon)\}")
_CUSTOMER_PLACEHOLDER = re.compile(r"\{(?:name|coupon)\}")

#: Per attachment type: (required keys, keys of which at least one is required, optional).
_SHAPES: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "image": ((), ("media_id", "pic_url"), ()),
    "link": (("title", "url"), (), ("picurl", "desc")),
    "miniprogram": (("title", "pic_media_id", "appid", "page"), (), ()),
    "video": (("media_id",), (), ()),
    "file": (("media_id",), (), ()),
}
_URL_KEYS = {("image", "pic_url"), ("link", "url"), ("link", "picurl")}
_BYTE_LIMITS = {
    ("link", "title"): LINK_TITLE_BYTES,
    ("link", "desc"): LINK_DESC_BYTES,
    ("link", "url"): URL_BYTES,
    ("link", "picurl"): URL_BYTES,
    ("image", "pic_url"): URL_BYTES,
    ("miniprogram", "title"): MINIPROGRAM_TITLE_BYTES,
}
_KIND_OF_MSGTYPE = {
    "image": ContentKind.IMAGE,
    "link": ContentKind.LINK,
    "miniprogram": ContentKind.MINIPROGRAM,
}

_FIELDS = ("name", "text", "attachments", "coupon_batch")


@dataclass(frozen=True)
class RenderedMessage:
    """A content filled for one customer: the text and attachments as WeCom takes them."""

    text: str
    attachments: list[dict[str, Any]]


# --- rendering -------------------------------------------------------------------------


def truncate_utf8(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes on a character boundary (WeCom counts
    bytes, and a long name must not make it refuse the whole message)."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    return data[:limit].decode("utf-8", errors="ignore")


def _fill(template: str, values: Mapping[str, str]) -> str:
    # One pass: re.sub never rescans what a replacement inserted. A known variable without
    # a value becomes empty rather than showing "{coupon}" to a customer.
    return _PLACEHOLDER.sub(lambda m: str(values.get(m.group(1)) or ""), template)


def content_render(*, content: Content, values: Mapping[str, str]) -> RenderedMessage:
    """Fill ``{name}``, ``{staff}``, ``{store}`` and ``{coupon}`` in the text and in link
    attachments' title and description (never in URLs: a value must not steer where a
    link points). The text is cut to 4000 UTF-8 bytes, titles and descriptions to
    WeCom's limits."""
    text = truncate_utf8(_fill(content.text or "", values), MAX_TEXT_BYTES)
    attachments: list[dict[str, Any]] = copy.deepcopy(list(content.attachments or []))
    for attachment in attachments:
        if attachment.get("msgtype") != "link":
            continue
        link = attachment.get("link")
        if not isinstance(link, dict):
            continue
        for key, limit in (("title", LINK_TITLE_BYTES), ("desc", LINK_DESC_BYTES)):
            if isinstance(link.get(key), str):
                link[key] = truncate_utf8(_fill(link[key], values), limit)
    return RenderedMessage(text=text, attachments=attachments)


def _link_texts(attachments: Any) -> list[str]:
    texts: list[str] = []
    for attachment in attachments or []:
        if isinstance(attachment, dict) and attachment.get("msgtype") == "link":
            link = attachment.get("link")
            if isinstance(link, dict):
                texts += [
                    v for k, v in link.items() if k in ("title", "desc") and isinstance(v, str)
                ]
    return texts


def content_uses_customer_values(content: Content) -> bool:
    """True when the message differs per customer (``{name}`` or ``{coupon}``): then each
    customer needs their own WeCom task; otherwise one task serves a sender's customers."""
    texts = [content.text or "", *_link_texts(content.attachments)]
    return any(_CUSTOMER_PLACEHOLDER.search(t) for t in texts)


def _uses_coupon(text: str, attachments: Any) -> bool:
    return any("{coupon}" in t for t in [text, *_link_texts(attachments)])


# --- validation ------------------------------------------------------------------------


def _url_ok(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _attachment_errors(index: int, attachment: Any) -> dict[str, str]:
    where = f"attachments[{index}]"
    if not isinstance(attachment, dict):
        return {where: "An attachment is an object with a msgtype."}
    msgtype = attachment.get("msgtype")
    if msgtype not in _SHAPES:
        return {f"{where}.msgtype": f"Use one of: {', '.join(_SHAPES)}."}
    extra = set(attachment) - {"msgtype", msgtype}
    if extra:
        return {where: f"Unexpected keys: {', '.join(sorted(map(str, extra)))}."}
    body = attachment.get(msgtype)
    if not isinstance(body, dict):
        return {f"{where}.{msgtype}": f"A {msgtype} attachment needs a '{msgtype}' object."}
    required, one_of, optional = _SHAPES[msgtype]
    errors: dict[str, str] = {}
    for key in set(body) - {*required, *one_of, *optional}:
        errors[f"{where}.{msgtype}.{key}"] = "Unknown key."
    for key, value in body.items():
        if key in errors:
            continue
        if not isinstance(value, str):
            errors[f"{where}.{msgtype}.{key}"] = "Must be text."
        elif (msgtype, key) in _URL_KEYS and value and not _url_ok(value):
            errors[f"{where}.{msgtype}.{key}"] = "Must be an http or https URL."
        elif len(value.encode("utf-8")) > _BYTE_LIMITS.get((msgtype, key), URL_BYTES):
            limit = _BYTE_LIMITS.get((msgtype, key), URL_BYTES)
            errors[f"{where}.{msgtype}.{key}"] = f"At most {limit} bytes."
    for key in required:
        if not (isinstance(body.get(key), str) and body[key].strip()):
            errors[f"{where}.{msgtype}.{key}"] = "This field is required."
    if one_of and not any(isinstance(body.get(k), str) and body[k].strip() for k in one_of):
        errors[f"{where}.{msgtype}"] = f"Needs one of: {', '.join(one_of)}."
    return errors


def _validated(values: Mapping[str, Any]) -> dict[str, Any]:
    """Check a complete set of content fields; returns them normalised with ``kind``."""
    errors: dict[str, Any] = {}
    name = str(values.get("name") or "").strip()
    if not name:
        errors["name"] = "A content needs a name."
    elif len(name) > 128:
        errors["name"] = "At most 128 characters."
    text = str(values.get("text") or "")
    if len(text.encode("utf-8")) > MAX_TEXT_BYTES:
        errors["text"] = f"At most {MAX_TEXT_BYTES} bytes (UTF-8); this is {len(text.encode())}."
    attachments = values.get("attachments")
    if attachments is None:
        attachments = []
    if not isinstance(attachments, list):
        errors["attachments"] = "A list of attachments."
        attachments = []
    elif len(attachments) > MAX_ATTACHMENTS:
        errors["attachments"] = f"At most {MAX_ATTACHMENTS} attachments (WeCom's limit)."
    else:
        for index, attachment in enumerate(attachments):
            errors.update(_attachment_errors(index, attachment))
    if not text.strip() and not attachments and "text" not in errors:
        errors["text"] = "A message needs text or at least one attachment."
    batch = values.get("coupon_batch")
    if _uses_coupon(text, attachments) and batch is None:
        errors["coupon_batch"] = "The text uses {coupon}: choose the coupon batch to issue from."
    if errors:
        raise ValidationError(errors)
    first = attachments[0]["msgtype"] if attachments else None
    return {
        "name": name,
        "text": text,
        "attachments": attachments,
        "coupon_batch": batch,
        "kind": _KIND_OF_MSGTYPE.get(first or "", ContentKind.TEXT),
    }


def _resolve_batch(data: Mapping[str, Any]) -> tuple[bool, CouponBatch | None]:
    """The coupon batch named by ``data`` (an instance, an id, or None), if it names one."""
    key = next((k for k in ("coupon_batch", "coupon_batch_id") if k in data), None)
    if key is None:
        return False, None
    value = data[key]
    if value is None or value == "":
        return True, None
    if isinstance(value, CouponBatch):
        return True, value
    try:
        return True, CouponBatch.objects.get(pk=int(value))
    except (CouponBatch.DoesNotExist, TypeError, ValueError):
        raise ValidationError({"coupon_batch": "No such coupon batch."}) from None


# --- writes ----------------------------------------------------------------------------


@transaction.atomic
def content_create(*, data: Mapping[str, Any], user: Any) -> Content:
    """Create a content from ``name``, ``text``, ``attachments`` and ``coupon_batch``."""
    _, batch = _resolve_batch(data)
    values = _validated({**{k: data.get(k) for k in _FIELDS}, "coupon_batch": batch})
    created_by = user if getattr(user, "is_authenticated", False) else None
    return Content.objects.create(**values, created_by=created_by)


@transaction.atomic
def content_update(*, content: Content, data: Mapping[str, Any]) -> list[str]:
    """Apply the given fields (the others keep their values); returns the names of the
    fields that really changed. Touchpoints already rendered keep their rendered text."""
    given, batch = _resolve_batch(data)
    merged = {
        "name": data.get("name", content.name),
        "text": data.get("text", content.text),
        "attachments": data.get("attachments", content.attachments),
        "coupon_batch": batch if given else content.coupon_batch,
    }
    values = _validated(merged)
    changed = []
    for field, value in values.items():
        current = content.coupon_batch_id if field == "coupon_batch" else getattr(content, field)
        new = value.pk if field == "coupon_batch" and value is not None else value
        if current != new:
            setattr(content, field, value)
            changed.append(field)
    if changed:
        content.save(update_fields=[*changed, "updated_at"])
    return changed


@transaction.atomic
def content_archive(*, content: Content) -> None:
    """Hide a content from the library. Steps that use it keep it (PROTECT), so SOPs
    already running still send it."""
    if not content.is_archived:
        content.is_archived = True
        content.save(update_fields=["is_archived", "updated_at"])
