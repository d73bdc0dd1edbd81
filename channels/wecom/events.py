"""Processing of recorded WeCom callback events (``WeComEvent``), one service per type.

The callback view only stores events; a worker runs :func:`event_process` for each:

* **Claimed once.** A conditional UPDATE moves ``pending`` to ``processing``; a second
  delivery of the task (or the requeue sweeper) finds nothing to claim.
* **Idempotent.** Every write goes through services that write nothing twice (contacts
  are applied with the full sync's ``contacts_apply``; activities have keys), so an event
  processed again after a crash changes nothing.
* **Honest outcome.** ``done`` / ``ignored`` on success, back to ``pending`` on a transient
  WeCom error (Celery retries with backoff, the sweeper catches the rest), ``failed`` with
  the message on a permanent one.
* **No network I/O inside a transaction**: WeCom is called first, then one atomic block
  writes.

``claimed_at`` is stamped when a worker claims the event, ``processed_at`` when it
finishes; the sweeper tells a dead worker's event by an old ``claimed_at``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import InterfaceError, OperationalError, transaction
from django.db.models import F
from django.db.models.functions import Coalesce
from django.utils import timezone

from channels.models import ChannelCode, EventStatus, WeComEvent
from channels.wecom.client import WeComClient, get_client
from channels.wecom.contacts import ContactRow, Directory, contacts_apply, rows_from_contact
from channels.wecom.errors import (
    TRANSIENT_ERRORS,
    WeComError,
    WeComPermanentError,
    WeComRelationGone,
)
from channels.wecom.welcome import welcome_content, welcome_record, welcome_render, welcome_send
from customers.models import ActivitySource, Customer, Follow, Staff, Tag
from customers.services import (
    ActivityInput,
    activities_record,
    corp_tags_mirror,
    customer_tag_add,
    follows_mark_deleted,
)

logger = logging.getLogger(__name__)

CONTACT_EVENT = "change_external_contact"
TAG_EVENT = "change_external_tag"
CHAT_EVENT = "change_external_chat"

ADD_TYPES = frozenset({"add_external_contact", "add_half_external_contact"})
FETCH_TYPES = ADD_TYPES | {"edit_external_contact"}
DELETE_TYPES = frozenset({"del_external_contact", "del_follow_user"})
TRANSFER_SOURCE = "DELETE_BY_TRANSFER"

#: A transiently failing event is given up (failed) after this many attempts, so a
#: corp that stays unreachable does not keep the queue busy for ever.
MAX_ATTEMPTS = 20
#: The sweeper re-enqueues pending events untouched this long (their task was lost)...
PENDING_STALE = timedelta(seconds=60)
#: ...and processing events claimed this long ago (their worker died mid-way; a live
#: one finishes in seconds: every WeCom call has a 10 s timeout).
PROCESSING_STALE = timedelta(minutes=10)
SWEEP_LIMIT = 500

#: Where a sent welcome is remembered in the event's payload (WeCom's own fields are
#: CamelCase, so this cannot collide), so a retried event never sends it twice.
WELCOME_KEY = "_welcome"


class EventDataError(WeComPermanentError):
    """A well-signed event that lacks what its type needs (no retry will add it)."""

    def __init__(self, message: str) -> None:
        super().__init__(None, message, path="callback")


# --- claiming and finishing ----------------------------------------------------------


def event_claim(*, event_id: int) -> WeComEvent | None:
    """Take a pending event for processing; None (and a log line) if there is nothing
    to do: the event is gone, done, failed, ignored or another worker has it."""
    now = timezone.now()
    claimed = WeComEvent.objects.filter(pk=event_id, status=EventStatus.PENDING).update(
        status=EventStatus.PROCESSING, attempts=F("attempts") + 1, claimed_at=now
    )
    if not claimed:
        status = WeComEvent.objects.filter(pk=event_id).values_list("status", flat=True).first()
        if status is None:
            logger.warning("WeCom event %s does not exist; nothing to process", event_id)
        else:
            logger.info("WeCom event %s is %s; not processing it again", event_id, status)
        return None
    return WeComEvent.objects.get(pk=event_id)


def _finish(event: WeComEvent, status: str, error: str = "") -> None:
    # Conditional on still holding our claim (each claim bumps ``attempts``): if the
    # sweeper handed the event to another worker meanwhile, that worker's outcome wins.
    WeComEvent.objects.filter(
        pk=event.pk, status=EventStatus.PROCESSING, attempts=event.attempts
    ).update(
        status=status,
        error=error[:2000],
        processed_at=None if status == EventStatus.PENDING else timezone.now(),
    )


def event_process(*, event_id: int, client: WeComClient | None = None) -> str | None:
    """Claim one event and apply it; returns the final status (None: not claimed).

    Transient errors (and a database that is briefly unavailable) put the event back to
    pending and propagate, for Celery to retry; permanent ones mark it failed.
    """
    event = event_claim(event_id=event_id)
    if event is None:
        return None
    try:
        status = _dispatch(event, client)
    except TRANSIENT_ERRORS as exc:
        if event.attempts >= MAX_ATTEMPTS:
            _finish(event, EventStatus.FAILED, f"gave up after {event.attempts} attempts: {exc}")
            return EventStatus.FAILED
        logger.warning("WeCom event %s: transient error, will retry: %s", event.pk, exc)
        _finish(event, EventStatus.PENDING, str(exc))
        raise
    except (OperationalError, InterfaceError) as exc:
        logger.warning("WeCom event %s: database error, will retry: %s", event.pk, exc)
        _finish(event, EventStatus.PENDING, f"database error: {exc}")
        raise
    except WeComError as exc:
        logger.warning("WeCom event %s failed: %s", event.pk, exc)
        _finish(event, EventStatus.FAILED, str(exc))
        return EventStatus.FAILED
    except Exception as exc:
        # A bug, not WeCom: fail visibly (the worker logs the traceback) rather than
        # retry something that will fail the same way.
        _finish(event, EventStatus.FAILED, f"unexpected error: {exc!r}")
        raise
    _finish(event, status)
    return status


def _dispatch(event: WeComEvent, client: WeComClient | None) -> str:
    payload = event.payload if isinstance(event.payload, dict) else {}
    if event.event == CONTACT_EVENT:
        ctx = _Context.of(event, payload)
        if event.change_type in FETCH_TYPES:
            contact_changed_process(ctx=ctx, client=client or get_client())
            return EventStatus.DONE
        if event.change_type in DELETE_TYPES:
            contact_deleted_process(ctx=ctx, client=client)
            return EventStatus.DONE
        if event.change_type == "transfer_fail":
            transfer_failed_process(ctx=ctx)
            return EventStatus.DONE
        return EventStatus.IGNORED
    if event.event == TAG_EVENT:
        corp_tags_refresh(client=client or get_client())
        return EventStatus.DONE
    if event.event == CHAT_EVENT:
        # Recorded for the group features to come; nothing of ours depends on it yet.
        return EventStatus.DONE
    return EventStatus.IGNORED


# --- change_external_contact ---------------------------------------------------------


@dataclass(frozen=True)
class _Context:
    event: WeComEvent
    payload: dict[str, Any]
    userid: str
    external_userid: str
    at: datetime

    @classmethod
    def of(cls, event: WeComEvent, payload: dict[str, Any]) -> _Context:
        userid = str(payload.get("UserID") or "")
        external_userid = str(payload.get("ExternalUserID") or "")
        if not userid or not external_userid:
            raise EventDataError(f"{event.change_type} without UserID or ExternalUserID")
        return cls(event, payload, userid, external_userid, _event_time(event, payload))

    def field(self, name: str) -> str:
        return str(self.payload.get(name) or "")


def _event_time(event: WeComEvent, payload: dict[str, Any]) -> datetime:
    """When it happened in WeCom (CreateTime); the receipt time if that is unusable."""
    try:
        return datetime.fromtimestamp(int(payload.get("CreateTime") or ""), tz=UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return event.received_at


def _fetch_contact(client: WeComClient, external_userid: str) -> dict[str, Any] | None:
    """externalcontact/get, or None when WeCom says the relationship is gone (84061)."""
    try:
        return client.contact(external_userid)
    except WeComRelationGone:
        return None


def _pair_deleted(ctx: _Context, *, payload: dict[str, Any] | None = None) -> int:
    """Mark the (customer, staff member) follow of the event deleted at the event's time;
    0 when we never knew it or it is already deleted (a redelivery)."""
    follow_ids = list(
        Follow.objects.filter(
            customer__external_userid=ctx.external_userid,
            staff__wecom_userid=ctx.userid,
            deleted_at__isnull=True,
        ).values_list("pk", flat=True)
    )
    if not follow_ids:
        return 0
    return follows_mark_deleted(
        follow_ids=follow_ids, at=ctx.at, source=ActivitySource.WECOM, payload=payload
    )


def _record(ctx: _Context, *, customer_id: int, kind: str, payload: dict[str, Any]) -> None:
    staff_id = Staff.objects.filter(wecom_userid=ctx.userid).values_list("pk", flat=True).first()
    stamp = int(ctx.at.timestamp())
    activities_record(
        rows=[
            ActivityInput(
                customer_id=customer_id,
                kind=kind,
                occurred_at=ctx.at,
                source=ActivitySource.WECOM,
                staff_id=staff_id,
                payload=payload,
                idempotency_key=f"{kind}:{customer_id}:{ctx.userid}:{stamp}"[:191],
            )
        ]
    )


def _active_code(state: str) -> ChannelCode | None:
    if not state:
        return None
    return ChannelCode.objects.filter(state=state, is_active=True).first()


def _welcome(
    ctx: _Context, code: ChannelCode | None, client: WeComClient
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """Send the channel code's welcome if this add event allows one.

    Returns (outcome, contact detail fetched on the way: None if not fetched, {} if WeCom
    said the relationship is gone). The customer's name comes from our table when we
    know them, else from externalcontact/get, whose answer is returned so the contact
    apply does not call WeCom twice.
    """
    welcome_code = ctx.field("WelcomeCode")
    remembered = ctx.payload.get(WELCOME_KEY)
    if isinstance(remembered, dict):
        return remembered, None  # sent by an earlier attempt of this event
    content = welcome_content(code)
    if not welcome_code or content is None:
        return None, None
    detail = None
    name = (
        Customer.objects.filter(external_userid=ctx.external_userid)
        .values_list("name", flat=True)
        .first()
    )
    if name is None:
        detail = _fetch_contact(client, ctx.external_userid)
        if detail is None:
            return None, {}  # the customer is already gone: nobody to welcome
        name = str((detail.get("external_contact") or {}).get("name") or "")
    staff = Staff.objects.filter(wecom_userid=ctx.userid).values_list("name", flat=True).first()
    text = welcome_render(content.text, name=name, staff=staff or ctx.userid)
    outcome = welcome_send(
        client=client, welcome_code=welcome_code, text=text, attachments=content.attachments
    )
    # Remember it at once, outside any transaction: a crash after this line must not
    # make the retry send a second message (it would get 41051 anyway).
    payload = {**ctx.payload, WELCOME_KEY: outcome}
    WeComEvent.objects.filter(pk=ctx.event.pk).update(payload=payload)
    return outcome, detail


def contact_changed_process(*, ctx: _Context, client: WeComClient) -> None:
    """add_external_contact / add_half_external_contact / edit_external_contact.

    Order matters: the welcome first (its code lives 20 s), then the contact as WeCom
    describes it now, then the channel code's auto tags in WeCom, then every local write
    in one transaction. A pair WeCom no longer lists (84061, or absent from the answer)
    has been deleted since the event: it is treated as a deletion, so events processed
    out of order still end in WeCom's current state.
    """
    is_add = ctx.event.change_type in ADD_TYPES
    code = _active_code(ctx.field("State")) if is_add else None
    outcome, detail = _welcome(ctx, code, client) if is_add else (None, None)
    if detail is None:
        detail = _fetch_contact(client, ctx.external_userid)
    rows: list[ContactRow] = rows_from_contact(detail) if detail else []
    alive = any(r.userid == ctx.userid for r in rows)
    auto_tags: list[Tag] = list(code.auto_tags.select_related("group")) if code and alive else []
    wecom_tag_ids = sorted({t.wecom_tag_id for t in auto_tags if t.wecom_tag_id})
    if wecom_tag_ids:
        # Adding a tag the pair already has is a no-op in WeCom, so a retry is harmless.
        client.mark_tag(
            userid=ctx.userid, external_userid=ctx.external_userid, add=wecom_tag_ids, remove=[]
        )
    with transaction.atomic():
        if rows:
            contacts_apply(rows=rows, directory=Directory.load())
        if not alive:
            _pair_deleted(ctx)
        customer = Customer.objects.filter(external_userid=ctx.external_userid).first()
        if customer is None:
            return
        staff = Staff.objects.filter(wecom_userid=ctx.userid).first()
        if outcome is not None:
            welcome_record(
                customer_id=customer.pk,
                staff_id=staff.pk if staff else None,
                welcome_code=ctx.field("WelcomeCode"),
                outcome=outcome,
            )
        for tag in auto_tags:
            customer_tag_add(customer=customer, tag=tag, staff=staff, source=ActivitySource.WECOM)


def contact_deleted_process(*, ctx: _Context, client: WeComClient | None) -> None:
    """del_external_contact (the member deleted the customer) and del_follow_user (the
    customer deleted the member): the follow ends at the event's time; a customer left
    with no follow becomes lost (``follows_mark_deleted`` refreshes the status).

    An on-job transfer (Source DELETE_BY_TRANSFER) is not a loss: the takeover member's
    follow is read from WeCom and applied first, so the customer stays active, and the
    transfer is put on the timeline.
    """
    transfer = ctx.field("Source") == TRANSFER_SOURCE
    rows: list[ContactRow] = []
    if transfer:
        detail = _fetch_contact(client or get_client(), ctx.external_userid)
        # The event is the truth about the handover pair, whatever WeCom still lists.
        rows = [r for r in rows_from_contact(detail or {}) if r.userid != ctx.userid]
    with transaction.atomic():
        if rows:
            contacts_apply(rows=rows, directory=Directory.load())
        details = None
        if transfer:
            details = {
                "change_type": ctx.event.change_type,
                "source": TRANSFER_SOURCE,
                "handover_userid": ctx.userid,
                "takeover_userids": sorted({r.userid for r in rows}),
            }
        _pair_deleted(ctx, payload=details)


def transfer_failed_process(*, ctx: _Context) -> None:
    """transfer_fail: the takeover member (UserID) did not get the customer."""
    customer_id = (
        Customer.objects.filter(external_userid=ctx.external_userid)
        .values_list("pk", flat=True)
        .first()
    )
    if customer_id is None:
        logger.info("transfer_fail for unknown customer %s", ctx.external_userid)
        return
    _record(
        ctx,
        customer_id=customer_id,
        kind="transfer_failed",
        payload={"fail_reason": ctx.field("FailReason"), "takeover_userid": ctx.userid},
    )


# --- change_external_tag -------------------------------------------------------------


def corp_tags_refresh(*, client: WeComClient) -> tuple[int, int]:
    """Any tag event: re-read the corp tags and mirror them (WECOM.md §2.7 says to
    refresh with get_corp_tag_list; the event's Id alone cannot say what a shuffle did)."""
    groups = client.corp_tags()
    return corp_tags_mirror(groups=groups)


# --- the sweeper ---------------------------------------------------------------------


def events_requeue_stuck(*, now: datetime | None = None, limit: int = SWEEP_LIMIT) -> list[int]:
    """Events whose processing was lost: pending and untouched for ``PENDING_STALE`` (the
    task never ran: broker hiccup, enqueue failed) or processing since before
    ``PROCESSING_STALE`` (the worker died). The latter are put back to pending; the
    caller enqueues the returned ids. Oldest first, at most ``limit``."""
    now = now or timezone.now()
    dead = list(
        WeComEvent.objects.filter(
            status=EventStatus.PROCESSING, claimed_at__lt=now - PROCESSING_STALE
        ).values_list("pk", flat=True)[:limit]
    )
    if dead:
        reset = WeComEvent.objects.filter(
            pk__in=dead, status=EventStatus.PROCESSING, claimed_at__lt=now - PROCESSING_STALE
        ).update(status=EventStatus.PENDING, error="requeued: its worker stopped")
        logger.warning("requeued %s WeCom events whose worker stopped", reset)
    return list(
        WeComEvent.objects.filter(status=EventStatus.PENDING)
        .annotate(touched=Coalesce("claimed_at", "received_at"))
        .filter(touched__lt=now - PENDING_STALE)
        .order_by("received_at", "pk")
        .values_list("pk", flat=True)[:limit]
    )
