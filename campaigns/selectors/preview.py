"""The SOP preview (dry run): what a version would do, before it runs.

Who would enter:

* manual, date (birthday) and repurchase-due triggers look ahead: the manual trigger
  enrols the audience as it is now; the others, the occurrences from ``now`` over the
  next ``window_days`` (``enrollment.trigger_occurrences`` with ``since=now``);
* event triggers (became a contact, entered a stage, tag added) cannot be foreseen, so
  they replay the past ``window_days``: "in the last 7 days these customers would have
  entered".

Each candidate passes the version's audience and the campaign's holdout exactly as
enrolment would (an existing campaign member keeps their group; a new one is decided by
the campaign's stable hash). For each step the due time (``schedule.step_due_at``) and
quiet hours (deferred or skipped, for WeCom messages), collisions (a pending touchpoint of
another active SOP for the same customer on the same local day) and the quota (messages
counted in the period + other SOPs' pending messages in it + this SOP's, against the
period's limit) are computed.

The work goes by chunks of customers with a fixed number of queries per chunk (never per
customer), so a draft over a million customers previews in bounded memory: the summary and
the calendar are running totals, and the CSV streams its rows chunk by chunk.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from itertools import islice
from typing import Any

from django.db.models import QuerySet
from django.utils.translation import gettext_lazy as _

from campaigns.models import (
    CampaignMember,
    Enrollment,
    QuietAction,
    Sop,
    SopStatus,
    SopStep,
    SopVersion,
    StepAction,
    Touchpoint,
    TouchpointKind,
    TouchpointStatus,
    TriggerKind,
)
from campaigns.selectors.audience import audience_qs
from campaigns.services import enrollment, quota, schedule
from campaigns.services.campaigns import is_holdout
from customers.models import Customer
from customers.selectors import customer_visible_qs
from scrm.roles import sees_everything

#: Candidates handled per round of queries.
CHUNK = 2000
#: The longest window a preview looks at.
PREVIEW_MAX_DAYS = 90
#: Triggers whose occurrences are events of the past (replayed, not foreseen).
EVENT_TRIGGERS = (TriggerKind.CONTACT_ADDED, TriggerKind.STAGE_ENTERED, TriggerKind.TAG_ADDED)


class Outcome:
    """What a step would do for a customer (the CSV's ``outcome`` column)."""

    SCHEDULED = "scheduled"
    DEFERRED = "deferred_quiet_hours"  # moved to the end of the quiet hours
    SKIPPED_QUIET = "skipped_quiet_hours"
    OVER_QUOTA = "over_quota"
    HOLDOUT = "holdout"  # held out of the campaign: nothing is sent


#: How the preview page names each outcome (the CSV keeps the codes, for spreadsheets).
OUTCOME_LABELS = {
    Outcome.SCHEDULED: _("Scheduled"),
    Outcome.DEFERRED: _("Deferred to the end of quiet hours"),
    Outcome.SKIPPED_QUIET: _("Skipped: quiet hours"),
    Outcome.OVER_QUOTA: _("Over the message quota"),
    Outcome.HOLDOUT: _("Held out (control group)"),
}


@dataclass(frozen=True)
class PreviewRow:
    customer_id: int
    customer_name: str
    trigger_key: str
    trigger_at: datetime
    #: 1-based step number; None on a held-out customer's single row.
    step: int | None
    action: str
    due_at: datetime | None
    outcome: str
    #: Names of the other active SOPs with a touchpoint for the customer that local day.
    collides_with: tuple[str, ...] = ()
    #: Moved to the end of the quiet hours (even when then over quota).
    quiet_deferred: bool = False

    @property
    def outcome_label(self) -> str:
        return str(OUTCOME_LABELS.get(self.outcome, self.outcome))

    @property
    def collision(self) -> bool:
        return bool(self.collides_with)


@dataclass
class PreviewDay:
    day: date
    #: step number -> touchpoints due that day (scheduled, deferred or over quota)
    steps: dict[int, int] = field(default_factory=dict)
    touchpoints: int = 0
    collisions: int = 0
    over_quota: int = 0
    quiet_skipped: int = 0


@dataclass
class PreviewSummary:
    sop_id: int
    version: int
    trigger_kind: str
    #: True for event triggers: the window is the past ``window_days`` (replayed).
    replayed: bool
    window_start: datetime
    window_end: datetime
    occurrences: int = 0
    entering: int = 0
    holdout: int = 0
    outside_audience: int = 0
    already_enrolled: int = 0
    touchpoints: int = 0
    messages: int = 0
    quiet_deferred: int = 0
    quiet_skipped: int = 0
    collisions: int = 0
    over_quota: int = 0
    customers_over_quota: int = 0
    #: Rows held back from the JSON answer (the CSV has all).
    truncated: bool = False


@dataclass
class SopPreview:
    summary: PreviewSummary
    calendar: list[PreviewDay]
    #: The first rows (``rows_limit`` of them); ``iter_rows`` streams all.
    rows: list[PreviewRow]
    _plan: _Plan

    def iter_rows(self, *, limit: int | None = None) -> Iterator[PreviewRow]:
        """Every row again, chunk by chunk (bounded memory), or the first ``limit``."""
        if limit is not None and limit <= len(self.rows):
            yield from self.rows[:limit]
            return
        rows = (row for chunk in self._plan.chunks() for row in chunk.rows)
        yield from (islice(rows, limit) if limit is not None else rows)


# --- The plan: candidates, then per-chunk evaluation --------------------------------------


@dataclass
class _ChunkResult:
    rows: list[PreviewRow]
    outside_audience: int
    already_enrolled: int


@dataclass
class _Plan:
    sop: Sop
    version: SopVersion
    steps: Sequence[SopStep]
    now: datetime
    window_start: datetime
    window_end: datetime
    user: Any
    #: Other SOPs' names by id (for collision columns), loaded once.
    other_sops: dict[int, str]

    def candidates(self) -> Iterator[list[tuple[int, str, datetime]]]:
        """(customer_id, trigger_key, trigger_at) in chunks of ``CHUNK``."""
        if self.version.trigger_kind == TriggerKind.MANUAL:
            # Manual enrolment takes the audience as it is when the operator presses the
            # button: preview it as of now, streamed by id.
            ids = self._audience().order_by("pk").values_list("pk", flat=True)
            batch: list[tuple[int, str, datetime]] = []
            for pk in ids.iterator(chunk_size=CHUNK):
                batch.append((pk, "manual:preview", self.now))
                if len(batch) >= CHUNK:
                    yield batch
                    batch = []
            if batch:
                yield batch
            return
        if self.version.trigger_kind in EVENT_TRIGGERS:
            occurrences = enrollment.trigger_occurrences(
                version=self.version, since=self.window_start, until=self.window_end
            )
        else:
            # The scanned triggers (birthday, repurchase due) answer "who is due as of
            # ``until``": ask for each day of the window, as the hourly scan will, and
            # keep each occurrence's first day (its key is the same on the later ones).
            seen: dict[tuple[int, str], datetime] = {}
            day = self.window_start
            while day < self.window_end:
                for customer_id, key, at in enrollment.trigger_occurrences(
                    version=self.version, since=day, until=day
                ):
                    seen.setdefault((customer_id, key), at)
                day += timedelta(days=1)
            occurrences = [(c, k, at) for (c, k), at in seen.items()]
        occurrences.sort(key=lambda o: (o[2], o[0]))
        for i in range(0, len(occurrences), CHUNK):
            yield occurrences[i : i + CHUNK]

    def _audience(self) -> QuerySet[Customer]:
        qs = audience_qs(self.version, now=self.now)
        if sees_everything(self.user):
            return qs  # no "id IN (SELECT id FROM customer)": a scan that filters nothing
        # The preview shows customers: only those the asking user may see.
        return qs.filter(pk__in=customer_visible_qs(self.user).values("pk"))

    def chunks(self) -> Iterator[_ChunkResult]:
        for batch in self.candidates():
            yield self._evaluate(batch)

    def _evaluate(self, batch: list[tuple[int, str, datetime]]) -> _ChunkResult:
        ids = {customer_id for customer_id, _, _ in batch}
        names = dict(self._audience().filter(pk__in=ids).values_list("pk", "name"))
        enrolled = set(
            Enrollment.objects.filter(
                sop=self.sop, customer_id__in=ids, trigger_key__in={k for _, k, _ in batch}
            ).values_list("customer_id", "trigger_key")
        )
        held = self._holdout(names.keys())
        rows: list[PreviewRow] = []
        outside = already = 0
        # (customer, step, due, outcome) before collisions and quota are known.
        planned: list[tuple[int, str, datetime, SopStep, datetime, str]] = []
        for customer_id, key, trigger_at in batch:
            if customer_id not in names:
                outside += 1
                continue
            if (customer_id, key) in enrolled:
                already += 1
                continue
            if customer_id in held:
                rows.append(
                    PreviewRow(
                        customer_id=customer_id,
                        customer_name=names[customer_id],
                        trigger_key=key,
                        trigger_at=trigger_at,
                        step=None,
                        action="",
                        due_at=None,
                        outcome=Outcome.HOLDOUT,
                    )
                )
                continue
            for step in self.steps:
                due, outcome = self._due(step, trigger_at)
                planned.append((customer_id, key, trigger_at, step, due, outcome))
        rows.extend(self._with_collisions_and_quota(planned, names))
        return _ChunkResult(rows=rows, outside_audience=outside, already_enrolled=already)

    def _holdout(self, customer_ids: Iterable[int]) -> set[int]:
        campaign = self.sop.campaign
        ids = set(customer_ids)
        if campaign is None or not ids:
            return set()
        # An existing member keeps the group they were put in; a newcomer's group is the
        # campaign's stable hash, exactly what ``campaign_assign`` will decide.
        members = dict(
            CampaignMember.objects.filter(campaign=campaign, customer_id__in=ids).values_list(
                "customer_id", "is_holdout"
            )
        )
        return {
            customer_id
            for customer_id in ids
            if members.get(customer_id)
            or (
                customer_id not in members
                and is_holdout(
                    salt=campaign.salt,
                    customer_id=customer_id,
                    percent=campaign.holdout_percent,
                )
            )
        }

    def _due(self, step: SopStep, trigger_at: datetime) -> tuple[datetime, str]:
        """The due time as enrolment stores it, and what quiet hours do to it: *defer*
        moves every step to the end of the quiet hours at enrolment; *skip* leaves the
        time, and the dispatcher skips a WeCom message due inside them (to-dos and tags
        reach no customer, so they still happen)."""
        due = schedule.step_due_at(step=step, trigger_at=trigger_at)
        v = self.version
        if v.quiet_start is None or v.quiet_end is None:
            return due, Outcome.SCHEDULED
        if not schedule.in_quiet_hours(due, start=v.quiet_start, end=v.quiet_end):
            return due, Outcome.SCHEDULED
        if v.quiet_action == QuietAction.DEFER:
            return schedule.quiet_hours_end(
                due, start=v.quiet_start, end=v.quiet_end
            ), Outcome.DEFERRED
        if step.action == StepAction.WECOM_MESSAGE:
            return due, Outcome.SKIPPED_QUIET
        return due, Outcome.SCHEDULED

    def _with_collisions_and_quota(
        self,
        planned: list[tuple[int, str, datetime, SopStep, datetime, str]],
        names: dict[int, str],
    ) -> list[PreviewRow]:
        if not planned:
            return []
        tz = schedule.corp_tz()
        ids = {p[0] for p in planned}
        dues = [p[4] for p in planned]
        # Other SOPs' pending touchpoints that can share a local day or a quota period
        # with ours: from the start of the first period to the end of the last day.
        first_period, _ = quota.quota_period(min(dues).astimezone(tz).date())
        span_start = datetime.combine(first_period, datetime.min.time(), tzinfo=tz)
        span_end = datetime.combine(
            max(dues).astimezone(tz).date() + timedelta(days=1), datetime.min.time(), tzinfo=tz
        )
        others = Touchpoint.objects.filter(
            customer_id__in=ids,
            status=TouchpointStatus.PENDING,
            sop_id__in=self.other_sops.keys(),
            due_at__gte=span_start,
            due_at__lt=span_end,
        ).values_list("customer_id", "sop_id", "kind", "due_at")
        same_day: dict[tuple[int, date], set[int]] = defaultdict(set)
        other_messages: dict[tuple[int, date], int] = defaultdict(int)
        for customer_id, sop_id, kind, due_at in others:
            local_day = due_at.astimezone(tz).date()
            same_day[(customer_id, local_day)].add(sop_id)
            if kind == TouchpointKind.WECOM_MESSAGE:
                other_messages[(customer_id, quota.quota_period(local_day)[0])] += 1

        # Quota: what each customer used in each period our messages fall in.
        periods: dict[date, tuple[int, datetime]] = {}
        for due in dues:
            start, limit = quota.quota_period(due.astimezone(tz).date())
            periods.setdefault(start, (limit, due))
        used: dict[tuple[int, date], int] = {}
        for start, (_limit, at) in periods.items():
            for customer_id, n in quota.quota_used(customer_ids=ids, at=at).items():
                used[(customer_id, start)] = n

        rows: list[PreviewRow] = []
        ours: dict[tuple[int, date], int] = defaultdict(int)
        for customer_id, key, trigger_at, step, due, outcome in sorted(
            planned, key=lambda p: (p[0], p[4], p[3].position)
        ):
            local_day = due.astimezone(tz).date()
            deferred = outcome == Outcome.DEFERRED
            if step.action == StepAction.WECOM_MESSAGE and outcome != Outcome.SKIPPED_QUIET:
                start, limit = quota.quota_period(local_day)
                ours[(customer_id, start)] += 1
                total = (
                    used.get((customer_id, start), 0)
                    + other_messages[(customer_id, start)]
                    + ours[(customer_id, start)]
                )
                if total > limit:
                    outcome = Outcome.OVER_QUOTA
            collides = tuple(
                sorted(self.other_sops[s] for s in same_day.get((customer_id, local_day), ()))
            )
            rows.append(
                PreviewRow(
                    customer_id=customer_id,
                    customer_name=names[customer_id],
                    trigger_key=key,
                    trigger_at=trigger_at,
                    step=step.position + 1,
                    action=step.action,
                    due_at=due,
                    outcome=outcome,
                    collides_with=collides,
                    quiet_deferred=deferred,
                )
            )
        return rows


# --- Entry point -----------------------------------------------------------------------


def _resolve(sop_or_version: Sop | SopVersion) -> tuple[Sop, SopVersion]:
    if isinstance(sop_or_version, SopVersion):
        return sop_or_version.sop, sop_or_version
    sop = sop_or_version
    if sop.current_version is None:
        raise ValueError(f"SOP {sop.pk} has no version to preview.")
    return sop, sop.current_version


def _plan_for(
    *, sop_or_version: Sop | SopVersion, now: datetime, window_days: int, user: Any
) -> _Plan:
    sop, version = _resolve(sop_or_version)
    window_days = max(1, min(int(window_days), PREVIEW_MAX_DAYS))
    replayed = version.trigger_kind in EVENT_TRIGGERS
    if replayed:
        window_start, window_end = now - timedelta(days=window_days), now
    else:
        window_start, window_end = now, now + timedelta(days=window_days)
    steps = list(
        SopStep.objects.filter(version=version).select_related("content").order_by("position")
    )
    other_sops = dict(
        Sop.objects.filter(status=SopStatus.ACTIVE).exclude(pk=sop.pk).values_list("pk", "name")
    )
    plan = _Plan(
        sop=sop,
        version=version,
        steps=steps,
        now=now,
        window_start=window_start,
        window_end=window_end,
        user=user,
        other_sops=other_sops,
    )
    return plan


def sop_preview(
    *,
    sop_or_version: Sop | SopVersion,
    now: datetime,
    window_days: int = 7,
    user: Any,
    rows_limit: int = 100,
) -> SopPreview:
    """Preview the SOP's current version (or the given version, e.g. a draft) as of
    ``now``: a summary, a calendar per local day, and the first ``rows_limit`` rows
    (``SopPreview.iter_rows`` streams all of them for the CSV)."""
    plan = _plan_for(sop_or_version=sop_or_version, now=now, window_days=window_days, user=user)
    summary = PreviewSummary(
        sop_id=plan.sop.pk,
        version=plan.version.number,
        trigger_kind=plan.version.trigger_kind,
        replayed=plan.version.trigger_kind in EVENT_TRIGGERS,
        window_start=plan.window_start,
        window_end=plan.window_end,
    )
    tz = schedule.corp_tz()
    days: dict[date, PreviewDay] = {}
    first_rows: list[PreviewRow] = []
    over_quota_customers: set[int] = set()
    for chunk in plan.chunks():
        summary.outside_audience += chunk.outside_audience
        summary.already_enrolled += chunk.already_enrolled
        entering: set[tuple[int, str]] = set()
        for row in chunk.rows:
            if len(first_rows) < rows_limit:
                first_rows.append(row)
            else:
                summary.truncated = True
            if row.outcome == Outcome.HOLDOUT:
                summary.holdout += 1
                continue
            entering.add((row.customer_id, row.trigger_key))
            assert row.due_at is not None and row.step is not None
            local_day = row.due_at.astimezone(tz).date()
            day = days.setdefault(local_day, PreviewDay(local_day))
            if row.outcome == Outcome.SKIPPED_QUIET:
                summary.quiet_skipped += 1
                day.quiet_skipped += 1
                continue
            summary.touchpoints += 1
            day.touchpoints += 1
            day.steps[row.step] = day.steps.get(row.step, 0) + 1
            if row.action == StepAction.WECOM_MESSAGE:
                summary.messages += 1
            if row.quiet_deferred:
                summary.quiet_deferred += 1
            if row.outcome == Outcome.OVER_QUOTA:
                summary.over_quota += 1
                day.over_quota += 1
                over_quota_customers.add(row.customer_id)
            if row.collision:
                summary.collisions += 1
                day.collisions += 1
        summary.entering += len(entering)
    summary.occurrences = (
        summary.entering + summary.holdout + summary.outside_audience + summary.already_enrolled
    )
    summary.customers_over_quota = len(over_quota_customers)
    calendar = [days[d] for d in sorted(days)]
    return SopPreview(summary=summary, calendar=calendar, rows=first_rows, _plan=plan)


#: The CSV's columns, in order.
CSV_HEADER = (
    "customer_id",
    "customer_name",
    "trigger_key",
    "trigger_at",
    "step",
    "action",
    "due_at",
    "outcome",
    "quiet_deferred",
    "collides_with",
)


def preview_csv_rows(
    *, sop_or_version: Sop | SopVersion, now: datetime, window_days: int = 7, user: Any
) -> Iterator[list[str]]:
    """The header, then every row of the preview (times in the corp's time zone),
    computed chunk by chunk as the consumer reads: a streamed CSV of a million rows
    holds one chunk in memory, and skips the summary pass."""
    plan = _plan_for(sop_or_version=sop_or_version, now=now, window_days=window_days, user=user)
    tz = schedule.corp_tz()
    yield list(CSV_HEADER)
    for row in (row for chunk in plan.chunks() for row in chunk.rows):
        yield [
            str(row.customer_id),
            row.customer_name,
            row.trigger_key,
            row.trigger_at.astimezone(tz).isoformat(),
            "" if row.step is None else str(row.step),
            row.action,
            "" if row.due_at is None else row.due_at.astimezone(tz).isoformat(),
            row.outcome,
            "yes" if row.quiet_deferred else "",
            "; ".join(row.collides_with),
        ]
