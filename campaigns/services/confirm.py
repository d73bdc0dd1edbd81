"""After the call: WeCom's confirmations and send results, and the staff's own marks.

A WeCom message task reaches a customer only once the staff member confirms it in the
client. ``message_tasks_poll`` asks WeCom (``get_groupmsg_task``, then
``get_groupmsg_send_result`` for a sender who sent) and records per customer: sent, not
a contact, or refused for WeCom's one-a-day limit (the quota unit is given back). Tasks
left unconfirmed for ``SOP_CONFIRM_DAYS`` expire.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from campaigns.models import (
    MessageTask,
    MessageTaskStatus,
    SkipReason,
    Touchpoint,
    TouchpointKind,
    TouchpointStatus,
)
from campaigns.services.quota import quota_refund
from channels.wecom.errors import WeComError
from customers.models import ActivityKind, ActivitySource, Staff
from scrm.roles import Role, role_of

logger = logging.getLogger(__name__)

#: Tasks checked per poll (oldest check first), so one run stays short.
POLL_LIMIT = 200
SNOOZE_MAX_DAYS = 7
TOUCHPOINT_DONE = ActivityKind.TOUCHPOINT_DONE


def _pages(fetch: Any, key: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    cursor = ""
    while True:
        page = fetch(cursor)
        rows += list(page.get(key) or [])
        cursor = str(page.get("next_cursor") or "")
        if not cursor:
            return rows


def _timeline(
    rows: Sequence[tuple[int, int, int | None, datetime, str, Mapping[str, Any]]],
) -> None:
    """One timeline activity per touchpoint (key ``touchpoint:<id>``: replays are no-ops)."""
    from customers.services.activities import ActivityInput, activities_record

    activities_record(
        rows=[
            ActivityInput(
                customer_id=customer_id,
                kind=kind,
                occurred_at=at,
                source=ActivitySource.WECOM
                if kind == ActivityKind.TOUCHPOINT_SENT
                else ActivitySource.SYSTEM,
                staff_id=staff_id,
                payload=payload,
                idempotency_key=f"touchpoint:{tp_id}",
            )
            for tp_id, customer_id, staff_id, at, kind, payload in rows
        ]
    )


def _poll_one(client: Any, task: MessageTask, now: datetime) -> None:
    userid = task.sender.wecom_userid or ""
    senders = _pages(lambda c: client.groupmsg_task(task.msgid, c), "task_list")
    sent_by_us = any(
        str(s.get("userid")) == userid and int(s.get("status") or 0) == 2 for s in senders
    )
    results: dict[str, tuple[int, int | None]] = {}
    if sent_by_us:
        for row in _pages(
            lambda c: client.groupmsg_send_result(task.msgid, userid, c), "send_list"
        ):
            results[str(row.get("external_userid"))] = (
                int(row.get("status") or 0),
                int(row["send_time"]) if row.get("send_time") else None,
            )
    open_rows = list(
        Touchpoint.objects.filter(task=task, status=TouchpointStatus.CREATED).values_list(
            "id", "customer_id", "customer__external_userid", "staff_id", "sop_id", "step_id"
        )
    )
    sent: dict[datetime, list[int]] = defaultdict(list)
    skipped: dict[str, list[int]] = defaultdict(list)
    refund: list[int] = []
    activities = []
    for tp_id, customer_id, eid, staff_id, sop_id, step_id in open_rows:
        status, send_time = results.get(eid or "", (0, None))
        if status == 1:
            at = datetime.fromtimestamp(send_time, tz=UTC) if send_time else now
            sent[at].append(tp_id)
            payload = {"touchpoint": tp_id, "sop": sop_id, "step": step_id, "msgid": task.msgid}
            activities.append(
                (tp_id, customer_id, staff_id, at, ActivityKind.TOUCHPOINT_SENT, payload)
            )
        elif status == 2:
            skipped[SkipReason.NOT_CONTACT].append(tp_id)
        elif status == 3:
            skipped[SkipReason.WECOM_LIMIT].append(tp_id)
            refund.append(customer_id)
    resolved = sum(len(v) for v in sent.values()) + sum(len(v) for v in skipped.values())
    expired = resolved < len(open_rows) and task.called_at < now - timedelta(
        days=settings.SOP_CONFIRM_DAYS
    )
    with transaction.atomic():
        for at, ids in sent.items():
            Touchpoint.objects.filter(id__in=ids, status=TouchpointStatus.CREATED).update(
                status=TouchpointStatus.SENT, sent_at=at
            )
        for reason, ids in skipped.items():
            Touchpoint.objects.filter(id__in=ids, status=TouchpointStatus.CREATED).update(
                status=TouchpointStatus.SKIPPED, skip_reason=reason
            )
        if refund:
            quota_refund(customer_ids=refund, at=task.called_at)
        if activities:
            _timeline(activities)
        fields: dict[str, Any] = {"checked_at": now}
        if resolved == len(open_rows):
            fields |= {"status": MessageTaskStatus.SENT, "confirmed_at": max(sent, default=now)}
        elif expired:
            left = Touchpoint.objects.filter(task=task, status=TouchpointStatus.CREATED)
            # Never sent, so WeCom did not count it against the quota either.
            quota_refund(
                customer_ids=list(left.values_list("customer_id", flat=True)), at=task.called_at
            )
            left.update(status=TouchpointStatus.SKIPPED, skip_reason=SkipReason.EXPIRED)
            fields["status"] = MessageTaskStatus.EXPIRED
        MessageTask.objects.filter(pk=task.pk, status=MessageTaskStatus.CREATED).update(**fields)


def message_tasks_poll(*, now: datetime | None = None) -> int:
    """Check up to POLL_LIMIT created tasks, least recently checked first. Returns how
    many were checked; a WeCom error on one task leaves it for the next run."""
    from channels.wecom.client import get_client

    now = now or timezone.now()
    tasks = list(
        MessageTask.objects.filter(status=MessageTaskStatus.CREATED, msgid__isnull=False)
        .select_related("sender")
        .order_by(F("checked_at").asc(nulls_first=True), "called_at")[:POLL_LIMIT]
    )
    client = get_client()
    checked = 0
    for task in tasks:
        try:
            _poll_one(client, task, now)
        except WeComError as exc:
            logger.warning("message task %s not checked: %s", task.pk, exc)
            continue
        checked += 1
    return checked


# --- the staff's own marks -------------------------------------------------------------


def _may_act(touchpoint: Touchpoint, user: Any) -> None:
    role = role_of(user)
    if role == Role.OPERATOR:
        return
    mine: Staff | None = getattr(user, "staff_profile", None) if role else None
    if mine is not None and touchpoint.staff_id is not None:
        if mine.pk == touchpoint.staff_id:
            return
        if role == Role.MANAGER and mine.store_id is not None:
            assigned = (
                Staff.objects.filter(pk=touchpoint.staff_id)
                .values_list("store_id", flat=True)
                .first()
            )
            if assigned == mine.store_id:
                return
    raise PermissionDenied("Only the assigned staff member, their store manager or an operator.")


@transaction.atomic
def touchpoint_done(*, touchpoint: Touchpoint, user: Any) -> bool:
    """Mark a to-do (or a created WeCom task the staff member says they sent) done, with
    a timeline activity. Returns False when it already was; ValidationError for any other
    status; PermissionDenied for anyone but the assignee, their manager or an operator."""
    _may_act(touchpoint, user)
    locked = Touchpoint.objects.select_for_update().get(pk=touchpoint.pk)
    if locked.status == TouchpointStatus.DONE:
        return False
    if locked.status not in (TouchpointStatus.TODO, TouchpointStatus.CREATED):
        raise ValidationError(
            {"status": f"A {locked.get_status_display()} touchpoint cannot be marked done."}
        )
    now = timezone.now()
    Touchpoint.objects.filter(pk=locked.pk).update(
        status=TouchpointStatus.DONE, done_at=now, done_by=user, snoozed_until=None
    )
    kind = (
        ActivityKind.TOUCHPOINT_SENT
        if locked.kind == TouchpointKind.WECOM_MESSAGE
        else TOUCHPOINT_DONE
    )
    payload = {"touchpoint": locked.pk, "sop": locked.sop_id, "step": locked.step_id, "by": user.pk}
    _timeline([(locked.pk, locked.customer_id, locked.staff_id, now, kind, payload)])
    touchpoint.refresh_from_db()
    return True


@transaction.atomic
def touchpoint_snooze(*, touchpoint: Touchpoint, until: datetime, user: Any) -> None:
    """Put a pending touchpoint or an open to-do off until ``until`` (future, ≤ 7 days):
    a pending one is due then; a to-do is hidden from the list until then."""
    _may_act(touchpoint, user)
    now = timezone.now()
    if until <= now or until > now + timedelta(days=SNOOZE_MAX_DAYS):
        raise ValidationError({"until": f"Snooze to a time in the next {SNOOZE_MAX_DAYS} days."})
    locked = Touchpoint.objects.select_for_update().get(pk=touchpoint.pk)
    if locked.status not in (TouchpointStatus.PENDING, TouchpointStatus.TODO):
        raise ValidationError(
            {"status": "Only a scheduled touchpoint or an open to-do can be snoozed."}
        )
    fields: dict[str, Any] = {"snoozed_until": until}
    if locked.status == TouchpointStatus.PENDING:
        fields["due_at"] = max(locked.due_at, until)
    Touchpoint.objects.filter(pk=locked.pk).update(**fields)
    touchpoint.refresh_from_db()
