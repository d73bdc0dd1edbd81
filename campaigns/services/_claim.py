"""Claiming due touchpoints and moving claimed ones on, set-based (used by ``dispatch``).

A claim is a short transaction: ``SELECT ... FOR UPDATE SKIP LOCKED`` over the due rows
(and the rows of a dead worker whose lease expired), then one UPDATE that stamps them
``claimed`` with this batch's token and a lease. Every later update of a claimed row is
conditional on ``status=claimed AND claimed_by=<token>``: if our lease ran out and another
worker took the rows over, our late writes change nothing.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, QuerySet

from campaigns.models import (
    MessageTask,
    MessageTaskStatus,
    SkipReason,
    SopStatus,
    Touchpoint,
    TouchpointStatus,
)
from campaigns.services.quota import quota_refund

logger = logging.getLogger(__name__)

#: SQLite's bound-parameter ceiling; id lists are chunked below it.
_CHUNK = 5000


@dataclass(frozen=True)
class ClaimedRow:
    id: int
    customer_id: int
    step_id: int
    sop_id: int
    enrollment_id: int
    kind: str
    due_at: datetime
    attempts: int  # after this claim


def claim_token(worker: str) -> str:
    """A name for one claim: the worker plus a random part, so that a worker re-claiming
    its own expired rows is told apart from its earlier, stale self."""
    base = worker or f"{socket.gethostname()}:{os.getpid()}"
    return f"{base[:48]}#{uuid.uuid4().hex[:12]}"


def _due_ids(now: datetime, limit: int) -> list[int]:
    """Ids of rows to claim, locked (SKIP LOCKED: rows another dispatcher is claiming are
    passed over, not waited for). Dead workers' rows first: they are the oldest.

    Claimed rows linked to a MessageTask are never taken here: their WeCom call may have
    happened, and only ``message_tasks_reconcile`` may decide that."""
    live = Touchpoint.objects.filter(sop__status__in=[SopStatus.ACTIVE, SopStatus.ARCHIVED])
    expired = list(
        live.filter(status=TouchpointStatus.CLAIMED, lease_until__lt=now, task__isnull=True)
        .order_by("lease_until")
        .select_for_update(skip_locked=True, of=("self",))
        .values_list("id", flat=True)[:limit]
    )
    if len(expired) >= limit:
        return expired
    due = list(
        live.filter(status=TouchpointStatus.PENDING, due_at__lte=now)
        .order_by("due_at")
        .select_for_update(skip_locked=True, of=("self",))
        .values_list("id", flat=True)[: limit - len(expired)]
    )
    return expired + due


def touchpoints_claim(*, token: str, now: datetime, limit: int) -> list[ClaimedRow]:
    """Claim up to ``limit`` due touchpoints for ``token`` (lease: SOP_LEASE_SECONDS)."""
    lease = now + timedelta(seconds=settings.SOP_LEASE_SECONDS)
    with transaction.atomic():
        ids = _due_ids(now, limit)
        if not ids:
            return []
        Touchpoint.objects.filter(id__in=ids).update(
            status=TouchpointStatus.CLAIMED,
            claimed_by=token,
            lease_until=lease,
            attempts=F("attempts") + 1,
        )
        rows = list(
            Touchpoint.objects.filter(id__in=ids)
            .order_by("due_at", "id")
            .values_list(
                "id",
                "customer_id",
                "step_id",
                "sop_id",
                "enrollment_id",
                "kind",
                "due_at",
                "attempts",
            )
        )
    return [ClaimedRow(*row) for row in rows]


def mine(token: str, ids: Iterable[int]) -> QuerySet[Touchpoint]:
    return Touchpoint.objects.filter(
        id__in=list(ids), status=TouchpointStatus.CLAIMED, claimed_by=token
    )


def chunks(ids: Iterable[int]) -> Iterable[list[int]]:
    items = list(ids)
    for i in range(0, len(items), _CHUNK):
        yield items[i : i + _CHUNK]


def set_status(token: str, ids: Iterable[int], **values: Any) -> int:
    """Update our claimed rows ``ids`` with ``values``; the claim's lease ends."""
    changed = 0
    values.setdefault("lease_until", None)
    for chunk in chunks(ids):
        changed += mine(token, chunk).update(**values)
    return changed


def release(token: str, ids: Iterable[int], *, due_at: datetime | None = None) -> int:
    """Back to pending as if never claimed (the attempt is given back): a paused SOP, or
    quiet hours deferring to ``due_at``."""
    values: dict[str, Any] = {
        "status": TouchpointStatus.PENDING,
        "claimed_by": "",
        "attempts": F("attempts") - 1,
        "task": None,
    }
    if due_at is not None:
        values["due_at"] = due_at
    return set_status(token, ids, **values)


def skip(token: str, ids_by_reason: Mapping[str, Iterable[int]]) -> int:
    return sum(
        set_status(token, ids, status=TouchpointStatus.SKIPPED, skip_reason=reason)
        for reason, ids in ids_by_reason.items()
    )


def backoff_seconds(attempts: int) -> int:
    """30 s, 60 s, 120 s, ... capped at an hour, after the ``attempts``-th failure."""
    return int(min(3600, 30 * 2 ** max(0, attempts - 1)))


def retry_or_fail(
    *,
    ids_by_attempts: Mapping[int, Iterable[int]],
    now: datetime,
    error: str,
    token: str | None = None,
    task_ids: Iterable[int] = (),
) -> tuple[int, int]:
    """Touchpoints whose call WeCom refused transiently: pending again after a backoff,
    or failed once SOP_MAX_ATTEMPTS is reached. Returns (retried, failed).

    With ``token`` the rows are our claimed ones; with ``task_ids`` (the reconciler) the
    claimed rows of those tasks."""
    retried = failed = 0
    for attempts, ids in ids_by_attempts.items():
        ids = list(ids)
        if token is not None:
            qs = mine(token, ids)
        else:
            qs = Touchpoint.objects.filter(
                id__in=ids, status=TouchpointStatus.CLAIMED, task_id__in=list(task_ids)
            )
        if attempts >= settings.SOP_MAX_ATTEMPTS:
            failed += qs.update(status=TouchpointStatus.FAILED, error=error[:255], lease_until=None)
        else:
            retried += qs.update(
                status=TouchpointStatus.PENDING,
                due_at=now + timedelta(seconds=backoff_seconds(attempts)),
                claimed_by="",
                lease_until=None,
                task=None,
                error=error[:255],
            )
    return retried, failed


def bulk_link(rows: list[tuple[int, int, int, str, list[dict[str, Any]]]]) -> None:
    """Set (task, staff, rendered text, attachments) per touchpoint id in one statement on
    PostgreSQL (UPDATE ... FROM VALUES); per distinct value set elsewhere."""
    if not rows:
        return
    table = Touchpoint._meta.db_table
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            for i in range(0, len(rows), _CHUNK):
                part = rows[i : i + _CHUNK]
                values = ", ".join(["(%s, %s, %s, %s, %s::jsonb)"] * len(part))
                params: list[Any] = []
                for tp_id, task_id, staff_id, text, attachments in part:
                    params += [tp_id, task_id, staff_id, text, json.dumps(attachments)]
                cursor.execute(
                    f"""
                    UPDATE {table} AS t SET task_id = v.task_id, staff_id = v.staff_id,
                        rendered_text = v.text, rendered_attachments = v.attachments
                    FROM (VALUES {values}) AS v(id, task_id, staff_id, text, attachments)
                    WHERE t.id = v.id
                    """,
                    params,
                )
        return
    groups: dict[tuple[int, int, str, str], list[int]] = {}

    for tp_id, task_id, staff_id, text, attachments in rows:
        key = (task_id, staff_id, text, json.dumps(attachments, sort_keys=True))
        groups.setdefault(key, []).append(tp_id)
    for (task_id, staff_id, text, attachments_json), ids in groups.items():
        for chunk in chunks(ids):
            Touchpoint.objects.filter(id__in=chunk).update(
                task_id=task_id,
                staff_id=staff_id,
                rendered_text=text,
                rendered_attachments=json.loads(attachments_json),
            )


# --- the reconciler's look-ups in WeCom ----------------------------------------------------


def _norm(body: dict[str, Any]) -> tuple[str, str]:
    text = body.get("text") or {}
    content = text.get("content", "") if isinstance(text, dict) else ""
    return str(content), json.dumps(body.get("attachments") or [], sort_keys=True)


def _candidates(client: Any, task: MessageTask, now: datetime) -> list[str]:
    """msgids in WeCom's list with this task's sender and exactly its body."""
    sender = task.sender.wecom_userid or ""
    end = int(now.timestamp())
    start = max(int(task.called_at.timestamp()) - 60, end - 30 * 86400)
    wanted = _norm(task.body)
    found: list[str] = []
    cursor = ""
    while True:
        page = client.groupmsg_list(start_time=start, end_time=end, creator=sender, cursor=cursor)
        found += [
            str(row["msgid"]) for row in page.get("group_msg_list", []) if _norm(row) == wanted
        ]
        cursor = str(page.get("next_cursor") or "")
        if not cursor:
            return found


def _recipients(client: Any, msgid: str, userid: str) -> dict[str, int]:
    out: dict[str, int] = {}
    cursor = ""
    while True:
        page = client.groupmsg_send_result(msgid, userid, cursor)
        for row in page.get("send_list", []):
            out[str(row.get("external_userid"))] = int(row.get("status") or 0)
        cursor = str(page.get("next_cursor") or "")
        if not cursor:
            return out


def reconcile_one(client: Any, task: MessageTask, now: datetime) -> int:
    """Decide one stale ``calling`` task (see ``dispatch.message_tasks_reconcile``)."""
    touchpoints = list(
        Touchpoint.objects.filter(task=task, status=TouchpointStatus.CLAIMED).values_list(
            "id", "customer_id", "customer__external_userid", "attempts"
        )
    )
    ours = {eid for _i, _c, eid, _a in touchpoints if eid}
    userid = task.sender.wecom_userid or ""
    candidates = _candidates(client, task, now)
    adopted = set(MessageTask.objects.filter(msgid__in=candidates).values_list("msgid", flat=True))
    match: tuple[str, dict[str, int]] | None = None
    for msgid in candidates:
        if msgid in adopted:
            continue
        recipients = _recipients(client, msgid, userid)
        # The body alone may be shared by two tasks of one sender; their customers are not.
        fits = bool(recipients) and set(recipients) <= ours
        if fits and (match is None or len(recipients) > len(match[1])):
            match = (msgid, recipients)
    with transaction.atomic():
        if match is not None:
            msgid, recipients = match
            MessageTask.objects.filter(pk=task.pk, status=MessageTaskStatus.CALLING).update(
                status=MessageTaskStatus.CREATED, msgid=msgid, created_at=now, lease_until=None
            )
            hit = [i for i, _c, eid, _a in touchpoints if eid in recipients]
            miss = [(i, c) for i, c, eid, _a in touchpoints if eid not in recipients]
            Touchpoint.objects.filter(id__in=hit, status=TouchpointStatus.CLAIMED).update(
                status=TouchpointStatus.CREATED, dispatched_at=task.called_at, lease_until=None
            )
            if miss:
                Touchpoint.objects.filter(
                    id__in=[i for i, _c in miss], status=TouchpointStatus.CLAIMED
                ).update(
                    status=TouchpointStatus.SKIPPED,
                    skip_reason=SkipReason.NOT_CONTACT,
                    lease_until=None,
                )
                quota_refund(customer_ids=[c for _i, c in miss], at=task.called_at)
            logger.info("task %s: adopted msgid %s from WeCom's list", task.pk, msgid)
            return 1
        # WeCom has no such message: the call never happened. The attempt stays counted.
        MessageTask.objects.filter(pk=task.pk, status=MessageTaskStatus.CALLING).update(
            status=MessageTaskStatus.FAILED, error="not created", lease_until=None
        )
        Touchpoint.objects.filter(task=task, status=TouchpointStatus.CLAIMED).update(
            status=TouchpointStatus.PENDING, claimed_by="", lease_until=None, task=None
        )
        quota_refund(customer_ids=[c for _i, c, _e, _a in touchpoints], at=task.called_at)
    logger.info("task %s: not in WeCom's list; %s touchpoints released", task.pk, len(touchpoints))
    return 1
