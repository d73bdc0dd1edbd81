"""Welcome messages: what a channel code says to a customer who just added a staff member.

WeCom hands us a ``WelcomeCode`` in the add event; it is valid for 20 s and usable once
(WECOM.md §1.8), so the event processing sends the welcome before anything slow. The
text is filled by plain placeholder replacement, never a template engine: the customer
chooses their own WeChat name, and a name such as ``{{ settings.SECRET_KEY }}`` or
``{staff}`` must come out literally.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.utils import timezone

from channels.models import ChannelCode
from channels.wecom.client import WeComClient
from channels.wecom.errors import WeComPermanentError
from customers.models import ActivityKind, ActivitySource
from customers.services import ActivityInput, activities_record

logger = logging.getLogger(__name__)

#: WeCom's limits for send_welcome_msg (WECOM.md §1.8).
MAX_TEXT_BYTES = 4000
MAX_ATTACHMENTS = 9

_PLACEHOLDER = re.compile(r"\{(name|staff)\}")


@dataclass(frozen=True)
class WelcomeContent:
    """A channel code's welcome: the template text and the attachments as WeCom takes them."""

    text: str
    attachments: list[dict[str, Any]] = field(default_factory=list)


def welcome_content(code: ChannelCode | None) -> WelcomeContent | None:
    """The welcome of an active channel code, or None when it has none to send."""
    if code is None or not code.is_active:
        return None
    attachments = [a for a in code.welcome_attachments or [] if isinstance(a, dict)]
    text = (code.welcome_text or "").strip()
    if not text and not attachments:
        return None
    return WelcomeContent(text=text, attachments=attachments[:MAX_ATTACHMENTS])


def _truncate_utf8(text: str, limit: int) -> str:
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    # Cut on a character boundary: a long customer name must not make WeCom refuse it.
    return data[:limit].decode("utf-8", errors="ignore")


def welcome_render(template: str, *, name: str, staff: str) -> str:
    """Fill ``{name}`` and ``{staff}`` in one pass: a value is never scanned again, so a
    customer named ``{staff}`` stays ``{staff}``; every other brace is literal text."""
    values = {"name": name, "staff": staff}
    rendered = _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)
    return _truncate_utf8(rendered, MAX_TEXT_BYTES)


def welcome_body(
    *, welcome_code: str, text: str, attachments: list[dict[str, Any]]
) -> dict[str, Any]:
    """The send_welcome_msg request (the ``attachments`` format, WECOM.md §1.8)."""
    body: dict[str, Any] = {"welcome_code": welcome_code}
    if text:
        body["text"] = {"content": text}
    if attachments:
        body["attachments"] = attachments
    return body


def welcome_send(
    *, client: WeComClient, welcome_code: str, text: str, attachments: list[dict[str, Any]]
) -> dict[str, Any]:
    """Send the welcome and return the outcome to record (JSON-ready).

    A permanent refusal is an outcome, not an error: 41050 (the 20 s are over) and 41051
    (the customer already chats with the member) will never succeed on a retry. Transient
    errors propagate so the event is retried while the code may still be alive.
    """
    outcome: dict[str, Any] = {
        "text": text,
        "attachments": len(attachments),
        "sent_at": timezone.now().isoformat(),
    }
    try:
        client.send_welcome_msg(
            welcome_body(welcome_code=welcome_code, text=text, attachments=attachments)
        )
    except WeComPermanentError as exc:
        logger.warning("welcome message refused: errcode=%s %s", exc.errcode, exc.errmsg)
        return {**outcome, "ok": False, "errcode": exc.errcode, "errmsg": exc.errmsg}
    return {**outcome, "ok": True}


def welcome_record(
    *,
    customer_id: int,
    staff_id: int | None,
    welcome_code: str,
    outcome: Mapping[str, Any],
) -> None:
    """Put the welcome's outcome on the customer's timeline, once per welcome code (a
    redelivered or retried event records nothing new)."""
    digest = hashlib.sha256(welcome_code.encode()).hexdigest()[:40]
    sent_at = outcome.get("sent_at")
    occurred_at = datetime.fromisoformat(sent_at) if isinstance(sent_at, str) else timezone.now()
    payload = {k: v for k, v in outcome.items() if k != "sent_at"}
    activities_record(
        rows=[
            ActivityInput(
                customer_id=customer_id,
                kind=ActivityKind.WELCOME_SENT,
                occurred_at=occurred_at,
                source=ActivitySource.WECOM,
                staff_id=staff_id,
                payload=payload,
                idempotency_key=f"welcome:{digest}",
            )
        ]
    )
