"""The dispatcher: due touchpoints claimed in batches, checked, grouped into WeCom message
tasks, and their outcomes recorded, exactly once.

One batch (``dispatch_batch``):

1. claim (``_claim.touchpoints_claim``): a short transaction, SKIP LOCKED, a lease;
2. check, set-based, with a bounded number of queries whatever the batch size: paused
   SOPs (released), exits and lost customers, the sender (the owner while still a contact,
   else the latest follower), quiet hours, the frequency cap;
3. to-dos and tags are recorded at once; WeCom messages are rendered and grouped by
   (sender, rendered body), so a content without per-customer values serves all of a
   sender's customers in one ``add_msg_template`` (at most 10,000 each);
4. one transaction consumes the quota (over-quota touchpoints are skipped, reason
   ``quota``), records each ``MessageTask`` as ``calling`` and links its touchpoints;
   it commits *before* any call, so the evidence of a call survives a crash;
5. the calls, outside any transaction; then their outcomes, set-based.

A call whose answer was lost (network error, timeout, a worker killed) leaves its task
``calling``; ``message_tasks_reconcile`` later looks the message up in WeCom's own list
and adopts it, or releases the touchpoints if it was never created. A touchpoint WeCom
acknowledged is therefore never sent twice.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Case, Count, Value, When
from django.utils import timezone

from campaigns.models import (
    Content,
    Enrollment,
    EnrollmentStatus,
    MessageTask,
    MessageTaskStatus,
    QuietAction,
    SkipReason,
    SopStatus,
    SopStep,
    SopVersion,
    Touchpoint,
    TouchpointKind,
    TouchpointStatus,
)
from campaigns.services import _claim
from campaigns.services._claim import ClaimedRow
from campaigns.services.content import content_render, content_uses_customer_values
from campaigns.services.enrollment import enrollments_complete, enrollments_exit_due
from campaigns.services.quota import quota_consume, quota_refund
from channels.wecom.errors import WeComError, WeComRateLimited
from customers.models import Customer, CustomerStatus, Follow, Staff, Store

logger = logging.getLogger(__name__)

#: add_msg_template takes at most this many external_userids (WECOM.md §1.9).
MAX_RECIPIENTS = 10_000
#: errcodes that prove WeCom refused the call (nothing was created): retried with backoff.
REFUSED_TRANSIENT = frozenset({-1, 6000, 41063, 45009, 45033})
#: 41048: none of the customers can be sent to (not contacts of the sender).
NO_CUSTOMER = 41048
#: Calls made before their outcomes are recorded (bounds the statements per batch too).
RECORD_EVERY = 64


@dataclass
class DispatchResult:
    """What a batch (or several) did. ``over_quota`` lists the touchpoints skipped for the
    quota, so they are reported, never silently dropped."""

    claimed: int = 0
    created: int = 0
    todo: int = 0
    done: int = 0
    released: int = 0
    deferred: int = 0
    retried: int = 0
    failed: int = 0
    uncertain: int = 0  # calls whose answer was lost: left to the reconciler
    tasks: int = 0
    calls: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    over_quota: list[int] = field(default_factory=list)
    max_lateness: float = 0.0  # seconds, dispatched_at - due_at
    #: Seconds spent per phase (claim, checks, commit, calls, record): where a batch goes.
    timings: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))

    def merge(self, other: DispatchResult) -> None:
        for name in (
            "claimed",
            "created",
            "todo",
            "done",
            "released",
            "deferred",
            "retried",
            "failed",
            "uncertain",
            "tasks",
            "calls",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.skipped.update(other.skipped)
        self.over_quota += other.over_quota
        self.max_lateness = max(self.max_lateness, other.max_lateness)
        for phase, seconds in other.timings.items():
            self.timings[phase] += seconds


@dataclass
class _Message:
    row: ClaimedRow
    staff: dict[str, Any]
    customer: dict[str, Any]
    content: Content


@dataclass
class _Group:
    sender_id: int
    sender_userid: str
    body: dict[str, Any]
    members: list[_Message] = field(default_factory=list)
    customer_ids: set[int] = field(default_factory=set)
    task_id: int = 0
    answer: dict[str, Any] | None = None
    error: WeComError | None = None
    crashed: bool = False


def body_of(text: str, attachments: list[dict[str, Any]]) -> dict[str, Any]:
    """A message as WeCom echoes it in get_groupmsg_list_v2 (``text``, ``attachments``)."""
    body: dict[str, Any] = {}
    if text:
        body["text"] = {"content": text}
    if attachments:
        body["attachments"] = attachments
    return body


def body_hash(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def _wecom() -> Any:
    from channels.wecom.client import get_client

    return get_client()


# --- the checks ------------------------------------------------------------------------


def _senders(customers: dict[int, dict[str, Any]]) -> dict[int, int]:
    """customer -> staff id: the owner while they still follow the customer, else the
    latest active follower. One query for the batch."""
    follows: dict[int, list[tuple[datetime, int]]] = defaultdict(list)
    for customer_id, staff_id, added_at in Follow.objects.filter(
        customer_id__in=list(customers), deleted_at__isnull=True, staff__is_active=True
    ).values_list("customer_id", "staff_id", "added_at"):
        follows[customer_id].append((added_at, staff_id))
    out: dict[int, int] = {}
    for customer_id, rows in follows.items():
        owner = customers[customer_id]["owner_id"]
        staff_ids = {s for _a, s in rows}
        out[customer_id] = owner if owner in staff_ids else max(rows)[1]
    return out


def _exits(rows: list[ClaimedRow], now: datetime) -> dict[int, str]:
    """enrollment -> reason, for enrolments that exit now (the engine's conditions)."""
    enrollment_ids = {r.enrollment_id for r in rows}
    exited = dict(
        Enrollment.objects.filter(id__in=enrollment_ids)
        .exclude(status=EnrollmentStatus.ACTIVE)
        .values_list("id", "exit_reason")
    )
    exited.update(enrollments_exit_due(enrollment_ids=enrollment_ids - set(exited), now=now))
    return exited


def _cap_counts(
    rows: list[ClaimedRow],
    versions: dict[int, SopVersion],
    steps: dict[int, SopStep],
    now: datetime,
) -> dict[tuple[int, int], int]:
    """(customer, cap_days) -> WeCom messages created/sent to them in the window, for the
    capped versions' customers. One query per distinct window (usually one)."""
    by_days: dict[int, set[int]] = defaultdict(set)
    for r in rows:
        version = versions[steps[r.step_id].version_id]
        if r.kind == TouchpointKind.WECOM_MESSAGE and version.cap_count and version.cap_days:
            by_days[version.cap_days].add(r.customer_id)
    counts: dict[tuple[int, int], int] = {}
    for days, customer_ids in by_days.items():
        for customer_id, n in (
            Touchpoint.objects.filter(
                customer_id__in=customer_ids,
                kind=TouchpointKind.WECOM_MESSAGE,
                status__in=[TouchpointStatus.CREATED, TouchpointStatus.SENT],
                dispatched_at__gte=now - timedelta(days=days),
            )
            .values("customer_id")
            .annotate(n=Count("id"))
            .values_list("customer_id", "n")
        ):
            counts[(customer_id, days)] = n
    return counts


def _render(content: Content, values: dict[str, str]) -> tuple[str, list[dict[str, Any]]]:
    rendered = content_render(content=content, values=values)
    return rendered.text, list(rendered.attachments)


def _uses_customer_values(content: Content) -> bool:
    return content_uses_customer_values(content)


# --- one batch -------------------------------------------------------------------------


def dispatch_batch(
    *, worker: str, now: datetime | None = None, limit: int | None = None
) -> DispatchResult:
    """Claim up to ``limit`` (SOP_DISPATCH_BATCH) due touchpoints and dispatch them."""
    now = now or timezone.now()
    token = _claim.claim_token(worker)
    started = time.perf_counter()
    rows = _claim.touchpoints_claim(
        token=token, now=now, limit=limit or settings.SOP_DISPATCH_BATCH
    )
    result = DispatchResult(claimed=len(rows))
    result.timings["claim"] += time.perf_counter() - started
    if rows:
        _process(rows, token=token, now=now, result=result)
        enrollments_complete(enrollment_ids={r.enrollment_id for r in rows})
        logger.info(
            "batch %s: %s claimed, %s created in %s tasks, skipped %s; %s",
            token, len(rows), result.created, result.tasks, dict(result.skipped),
            ", ".join(f"{k} {v:.2f}s" for k, v in result.timings.items()),
        )  # fmt: skip
    return result


def _process(rows: list[ClaimedRow], *, token: str, now: datetime, result: DispatchResult) -> None:
    started = time.perf_counter()
    steps = {
        s.pk: s
        for s in SopStep.objects.filter(id__in={r.step_id for r in rows}).select_related(
            "version__sop", "content__coupon_batch", "tag"
        )
    }
    versions = {s.version_id: s.version for s in steps.values()}
    skips: dict[str, list[int]] = defaultdict(list)

    # (a) paused SOPs: back to pending untouched; archived ones are skipped.
    live: list[ClaimedRow] = []
    paused: list[int] = []
    for r in rows:
        status = steps[r.step_id].version.sop.status
        if status == SopStatus.ARCHIVED:
            skips[SkipReason.PAUSED].append(r.id)
        elif status != SopStatus.ACTIVE:
            paused.append(r.id)
        else:
            live.append(r)
    result.released += _claim.release(token, paused)

    # (b, c) exits and lost customers.
    exits = _exits(live, now) if live else {}
    customers: dict[int, dict[str, Any]] = {
        c["id"]: dict(c)
        for c in Customer.objects.filter(id__in={r.customer_id for r in live}).values(
            "id", "name", "status", "owner_id", "store_id", "external_userid"
        )
    }
    senders = _senders(customers)
    staff: dict[int, dict[str, Any]] = {
        s["id"]: dict(s)
        for s in Staff.objects.filter(id__in=set(senders.values())).values(
            "id", "name", "wecom_userid", "store_id"
        )
    }
    stores = dict(
        Store.objects.filter(
            id__in={s["store_id"] for s in staff.values()}
            | {c["store_id"] for c in customers.values()}
        ).values_list("id", "name")
    )
    caps = _cap_counts(live, versions, steps, now)

    deferred: dict[datetime, list[int]] = defaultdict(list)
    todos: list[tuple[int, int, str]] = []
    tags: list[tuple[ClaimedRow, SopStep, int | None]] = []
    messages: list[_Message] = []
    for r in live:
        step = steps[r.step_id]
        version = versions[step.version_id]
        customer = customers.get(r.customer_id)
        if r.enrollment_id in exits or customer is None:
            skips[SkipReason.EXITED].append(r.id)
            continue
        if customer["status"] == CustomerStatus.LOST:
            skips[SkipReason.EXITED].append(r.id)
            continue
        staff_id = senders.get(r.customer_id)
        if r.kind == TouchpointKind.ADD_TAG:
            tags.append((r, step, staff_id))
            continue
        sender = staff.get(staff_id) if staff_id else None
        if sender is None or (
            r.kind == TouchpointKind.WECOM_MESSAGE and not sender["wecom_userid"]
        ):
            skips[SkipReason.NOT_CONTACT].append(r.id)
            continue
        if (
            r.kind == TouchpointKind.WECOM_MESSAGE
            and version.quiet_start is not None
            and version.quiet_end is not None
        ):
            from campaigns.services.schedule import in_quiet_hours, quiet_hours_end

            if in_quiet_hours(now, start=version.quiet_start, end=version.quiet_end):
                if version.quiet_action == QuietAction.SKIP:
                    skips[SkipReason.QUIET_HOURS].append(r.id)
                else:
                    end = quiet_hours_end(now, start=version.quiet_start, end=version.quiet_end)
                    deferred[end].append(r.id)
                continue
        if r.kind == TouchpointKind.TODO:
            todos.append((r.id, sender["id"], _todo_text(step, customer, sender, stores)))
            continue
        if version.cap_count and version.cap_days:
            key = (r.customer_id, version.cap_days)
            if caps.get(key, 0) >= version.cap_count:
                skips[SkipReason.FREQUENCY_CAP].append(r.id)
                continue
            caps[key] = caps.get(key, 0) + 1  # later rows of this batch count it too
        if not customer["external_userid"]:
            skips[SkipReason.NOT_CONTACT].append(r.id)
            continue
        assert step.content is not None  # a check constraint: message steps have content
        messages.append(_Message(r, sender, customer, step.content))

    for due_at, ids in deferred.items():
        result.deferred += _claim.release(token, ids, due_at=due_at)
    for text_key, ids in _by_key(todos).items():
        staff_id, text = text_key
        result.todo += _claim.set_status(
            token,
            ids,
            status=TouchpointStatus.TODO,
            staff_id=staff_id,
            rendered_text=text,
            dispatched_at=now,
        )
    result.done += _tags(tags, token=token, now=now)
    _skip(token, skips, result)
    if messages:
        result.timings["checks"] += time.perf_counter() - started
        _messages(messages, token=token, stores=stores, result=result)


def _by_key(items: Iterable[tuple[int, int, str]]) -> dict[tuple[int, str], list[int]]:
    out: dict[tuple[int, str], list[int]] = defaultdict(list)
    for tp_id, staff_id, text in items:
        out[(staff_id, text)].append(tp_id)
    return out


def _skip(token: str, skips: dict[str, list[int]], result: DispatchResult) -> None:
    for reason, ids in skips.items():
        n = _claim.skip(token, {reason: ids})
        result.skipped[reason] += n


def _values(
    customer: dict[str, Any], sender: dict[str, Any], stores: dict[int, str]
) -> dict[str, str]:
    store_id = sender["store_id"] or customer["store_id"]
    return {
        "name": customer["name"],
        "staff": sender["name"],
        "store": stores.get(store_id, "") if store_id else "",
    }


def _todo_text(
    step: SopStep, customer: dict[str, Any], sender: dict[str, Any], stores: dict[int, str]
) -> str:
    parts = [step.instruction] if step.instruction else []
    if step.content is not None:
        text, _attachments = _render(step.content, _values(customer, sender, stores))
        if text:
            parts.append(text)
    return "\n\n".join(parts)


def _tags(tags: list[tuple[ClaimedRow, SopStep, int | None]], *, token: str, now: datetime) -> int:
    """add_tag steps: the customers service, one customer at a time (it records the
    timeline and announces the fact); idempotent, so a retried claim is harmless."""
    if not tags:
        return 0
    from customers.models import ActivitySource
    from customers.services.tags import customer_tag_add

    customers = Customer.objects.in_bulk({r.customer_id for r, _s, _st in tags})
    done: dict[int | None, list[int]] = defaultdict(list)
    for r, step, staff_id in tags:
        assert step.tag is not None  # a check constraint: tag steps have a tag
        with transaction.atomic():
            if _claim.mine(token, [r.id]).exists():
                customer_tag_add(
                    customer=customers[r.customer_id], tag=step.tag, source=ActivitySource.SYSTEM
                )
        done[staff_id].append(r.id)
    return sum(
        _claim.set_status(
            token,
            ids,
            status=TouchpointStatus.DONE,
            staff_id=staff_id,
            done_at=now,
            dispatched_at=now,
        )
        for staff_id, ids in done.items()
    )


# --- WeCom messages --------------------------------------------------------------------


def _group(
    messages: list[_Message], stores: dict[int, str], coupons: dict[int, str]
) -> list[tuple[_Group, list[tuple[_Message, str, list[dict[str, Any]]]]]]:
    """Render and group by (sender, body). A customer appears once per call (WeCom would
    send once), so a second touchpoint of theirs with the same body opens another group."""
    groups: dict[tuple[int, str, int], tuple[_Group, list[Any]]] = {}
    cache: dict[tuple[int, int], tuple[str, list[dict[str, Any]]]] = {}
    for m in messages:
        per_customer = m.content.coupon_batch_id is not None or _uses_customer_values(m.content)
        values = _values(m.customer, m.staff, stores)
        if m.row.id in coupons:
            values["coupon"] = coupons[m.row.id]
        if per_customer:
            text, attachments = _render(m.content, values)
        else:
            key = (m.content.pk, m.staff["id"])
            if key not in cache:
                cache[key] = _render(m.content, values)
            text, attachments = cache[key]
        body = body_of(text, attachments)
        digest = body_hash(body)
        n = 0
        while True:
            gkey = (m.staff["id"], digest, n)
            entry = groups.get(gkey)
            if entry is None:
                entry = (_Group(m.staff["id"], m.staff["wecom_userid"], body), [])
                groups[gkey] = entry
            group, members = entry
            if m.customer["id"] not in group.customer_ids and len(members) < MAX_RECIPIENTS:
                break
            n += 1
        group.customer_ids.add(m.customer["id"])
        group.members.append(m)
        members.append((m, text, attachments))
    return list(groups.values())


def _consume(messages: list[_Message], now: datetime) -> tuple[list[_Message], list[_Message]]:
    """Quota for each message (a customer with two messages needs two units: one round
    per occurrence). Returns (allowed, over quota)."""
    rounds: list[list[_Message]] = []
    seen: Counter[int] = Counter()
    for m in messages:
        i = seen[m.row.customer_id]
        seen[m.row.customer_id] += 1
        if i == len(rounds):
            rounds.append([])
        rounds[i].append(m)
    allowed: list[_Message] = []
    over: list[_Message] = []
    for batch in rounds:
        ok = quota_consume(customer_ids=[m.row.customer_id for m in batch], at=now)
        for m in batch:
            (allowed if m.row.customer_id in ok else over).append(m)
    return allowed, over


def _messages(
    messages: list[_Message], *, token: str, stores: dict[int, str], result: DispatchResult
) -> None:
    started = time.perf_counter()
    now = timezone.now()
    lease = now + timedelta(seconds=max(settings.SOP_LEASE_SECONDS, 2 * settings.WECOM_TIMEOUT + 5))
    with transaction.atomic():
        # Only the rows still ours: a claim that outlived its lease was taken over.
        owned = set(
            _claim.mine(token, [m.row.id for m in messages])
            .select_for_update()
            .values_list("id", flat=True)
        )
        messages = [m for m in messages if m.row.id in owned]
        allowed, over = _consume(messages, now)
        coupons: dict[int, str] = {}
        failed_coupon: list[int] = []
        for m in allowed:
            if m.content.coupon_batch is not None:
                from campaigns.services.levers import coupon_issue

                try:
                    coupons[m.row.id] = coupon_issue(
                        batch=m.content.coupon_batch,
                        customer_id=m.row.customer_id,
                        touchpoint_id=m.row.id,
                        at=now,
                    ).code
                except ValidationError as exc:
                    failed_coupon.append(m.row.id)
                    logger.warning("touchpoint %s: no coupon: %s", m.row.id, exc)
        if failed_coupon:
            gone = set(failed_coupon)
            quota_refund(
                customer_ids=[m.row.customer_id for m in allowed if m.row.id in gone], at=now
            )
            allowed = [m for m in allowed if m.row.id not in gone]
            result.failed += _claim.set_status(
                token,
                failed_coupon,
                status=TouchpointStatus.FAILED,
                error="coupon batch exhausted or inactive",
            )
        if over:
            result.over_quota += [m.row.id for m in over]
            result.skipped[SkipReason.QUOTA] += _claim.skip(
                token, {SkipReason.QUOTA: [m.row.id for m in over]}
            )
        grouped = _group(allowed, stores, coupons)
        tasks = MessageTask.objects.bulk_create(
            [
                MessageTask(
                    sender_id=g.sender_id,
                    body=g.body,
                    body_hash=body_hash(g.body),
                    status=MessageTaskStatus.CALLING,
                    recipients=len(members),
                    claimed_by=token[:64],
                    lease_until=lease,
                    called_at=now,
                )
                for g, members in grouped
            ]
        )
        # PostgreSQL and SQLite >= 3.35 return the new ids (RETURNING).
        assert all(t.pk is not None for t in tasks)
        links: list[tuple[int, int, int, str, list[dict[str, Any]]]] = []
        for (g, members), task in zip(grouped, tasks, strict=True):
            g.task_id = task.pk
            links += [(m.row.id, task.pk, g.sender_id, text, att) for m, text, att in members]
        _claim.bulk_link(links)
    result.tasks += len(grouped)
    # Recorded a slice at a time, so the first customers' lateness is not the whole batch's.
    calls = [g for g, _m in grouped]
    result.timings["commit"] += time.perf_counter() - started
    for i in range(0, len(calls), RECORD_EVERY):
        started = time.perf_counter()
        _call(calls[i : i + RECORD_EVERY], result)
        result.timings["calls"] += time.perf_counter() - started
        started = time.perf_counter()
        _record(calls[i : i + RECORD_EVERY], token=token, consumed_at=now, result=result)
        result.timings["record"] += time.perf_counter() - started


def _call(groups: list[_Group], result: DispatchResult) -> None:
    """The add_msg_template calls, a few at once (the client limits calls in flight for
    the whole corp), never inside a transaction."""
    client = _wecom()

    def one(g: _Group) -> None:
        payload = {
            "chat_type": "single",
            "sender": g.sender_userid,
            "external_userid": [m.customer["external_userid"] for m in g.members],
            **g.body,
        }
        try:
            g.answer = client.add_msg_template(payload)
        except WeComError as exc:
            g.error = exc
        except Exception:  # anything else: the call's fate is unknown
            logger.exception("add_msg_template for task %s", g.task_id)
            g.crashed = True

    threads = max(1, settings.WECOM_MAX_IN_FLIGHT // max(1, settings.SOP_DISPATCHERS))
    result.calls += len(groups)
    if threads == 1 or len(groups) == 1:
        for g in groups:
            one(g)
        return
    with ThreadPoolExecutor(max_workers=min(threads, len(groups))) as pool:
        list(pool.map(one, groups))


def refused(error: WeComError) -> bool:
    """True when the error proves the call created nothing: WeCom said busy / over a
    limit, our own limiter held it back, or the token could not even be fetched. A
    network error or a 5xx may have happened after WeCom acted on the call."""
    if isinstance(error, WeComRateLimited) or error.path == "gettoken":
        return True
    return error.errcode in REFUSED_TRANSIENT


def _record(
    groups: list[_Group], *, token: str, consumed_at: datetime, result: DispatchResult
) -> None:
    """The outcome of each call, set-based (a few statements per outcome)."""
    now = timezone.now()
    ok: list[_Group] = [g for g in groups if g.answer is not None]
    not_contact: list[int] = []
    refund: list[int] = []
    retry: dict[int, list[int]] = defaultdict(list)
    retry_tasks: list[_Group] = []
    failed: dict[str, list[int]] = defaultdict(list)
    failed_tasks: list[_Group] = []
    for g in groups:
        if g.answer is not None:
            fail = set(g.answer.get("fail_list") or [])
            for m in g.members:
                if m.customer["external_userid"] in fail:
                    not_contact.append(m.row.id)
                    refund.append(m.row.customer_id)
        elif g.error is not None and not g.error.transient and g.error.errcode == NO_CUSTOMER:
            not_contact += [m.row.id for m in g.members]
            refund += [m.row.customer_id for m in g.members]
            failed_tasks.append(g)
        elif g.error is not None and not g.error.transient:
            failed[str(g.error)[:255]] += [m.row.id for m in g.members]
            refund += [m.row.customer_id for m in g.members]
            failed_tasks.append(g)
        elif g.error is not None and refused(g.error):
            for m in g.members:
                retry[m.row.attempts].append(m.row.id)
            refund += [m.row.customer_id for m in g.members]
            retry_tasks.append(g)
        else:
            result.uncertain += len(g.members)  # the reconciler decides
    with transaction.atomic():
        if ok:
            MessageTask.objects.filter(
                pk__in=[g.task_id for g in ok], status=MessageTaskStatus.CALLING
            ).update(
                status=MessageTaskStatus.CREATED,
                msgid=Case(
                    *[
                        When(pk=g.task_id, then=Value(str(g.answer["msgid"])))
                        for g in ok
                        if g.answer
                    ]
                ),
                created_at=now,
                lease_until=None,
            )
            created_ids = [m.row.id for g in ok for m in g.members]
            skipped = set(not_contact)
            result.created += _claim.set_status(
                token,
                [i for i in created_ids if i not in skipped],
                status=TouchpointStatus.CREATED,
                dispatched_at=now,
            )
            lateness = [(now - m.row.due_at).total_seconds() for g in ok for m in g.members]
            result.max_lateness = max([result.max_lateness, *lateness])
        if not_contact:
            result.skipped[SkipReason.NOT_CONTACT] += _claim.skip(
                token, {SkipReason.NOT_CONTACT: not_contact}
            )
        for error, ids in failed.items():
            result.failed += _claim.set_status(
                token, ids, status=TouchpointStatus.FAILED, error=error
            )
        if retry:
            error = "; ".join(sorted({str(g.error)[:120] for g in retry_tasks}))
            retried, gave_up = _claim.retry_or_fail(
                ids_by_attempts=retry, now=now, error=error, token=token
            )
            result.retried += retried
            result.failed += gave_up
        for g in failed_tasks + retry_tasks:
            MessageTask.objects.filter(pk=g.task_id, status=MessageTaskStatus.CALLING).update(
                status=MessageTaskStatus.FAILED, error=str(g.error)[:255], lease_until=None
            )
        if refund:
            quota_refund(customer_ids=refund, at=consumed_at)


# --- loops -----------------------------------------------------------------------------


def dispatch_until_idle(*, worker: str, budget_seconds: float) -> DispatchResult:
    """Batches until nothing is due or the budget is spent (the next tick continues)."""
    deadline = time.monotonic() + budget_seconds
    total = DispatchResult()
    while True:
        batch = dispatch_batch(worker=worker)
        total.merge(batch)
        if batch.claimed == 0 or time.monotonic() >= deadline:
            return total


# --- the reconciler --------------------------------------------------------------------


def message_tasks_reconcile(*, now: datetime | None = None) -> int:
    """Decide the ``calling`` tasks whose lease expired (their worker died or lost the
    answer): adopt the msgid of the WeCom message with the same sender, body and
    recipients that no other task has adopted, or, when WeCom has none, release the
    touchpoints for another attempt. Returns how many tasks were decided."""
    now = now or timezone.now()
    stale = list(
        MessageTask.objects.filter(status=MessageTaskStatus.CALLING, lease_until__lt=now)
        .order_by("called_at")
        .values_list("id", flat=True)[:100]
    )
    decided = 0
    for task_id in stale:
        # Take it: a conditional update, so two reconcilers never decide one task.
        hold = now + timedelta(seconds=settings.SOP_LEASE_SECONDS)
        if not MessageTask.objects.filter(
            pk=task_id, status=MessageTaskStatus.CALLING, lease_until__lt=now
        ).update(lease_until=hold):
            continue
        task = MessageTask.objects.select_related("sender").get(pk=task_id)
        try:
            decided += _claim.reconcile_one(_wecom(), task, now)
        except WeComError as exc:
            logger.warning("reconcile of task %s postponed: %s", task_id, exc)
    return decided
