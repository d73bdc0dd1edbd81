"""SOP triggers and exit conditions follow the facts.

``customers.hooks.announce`` tells which customers' facts changed; this receiver enrols
them into the active SOPs whose event trigger those facts can fire, and checks the exit
conditions of their enrolments. It runs inside the writer's transaction, after the
funnel's receiver (``funnel`` precedes ``campaigns`` in INSTALLED_APPS, so its receiver is
connected first), so a stage reached by this very order is already in ``StageChange``.

Most announcements concern customers of no SOP: the receiver then costs one query (the
running SOPs), none when the facts can neither trigger nor end anything.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.utils import timezone

from campaigns.models import Enrollment, EnrollmentStatus, Sop, SopStatus, TriggerKind
from campaigns.services.enrollment import (
    ENROLL_CHUNK,
    chunks,
    enrollments_exit_due,
    sop_enroll,
    trigger_occurrences,
)
from customers.hooks import Fact

#: Which facts can fire each event trigger. A stage moves with anything the funnel reads.
_TRIGGERS = {
    TriggerKind.CONTACT_ADDED: {Fact.FOLLOW, Fact.CUSTOMER},
    TriggerKind.STAGE_ENTERED: {Fact.ORDER, Fact.ACTIVITY, Fact.CUSTOMER, Fact.REFERRAL},
    TriggerKind.TAG_ADDED: {Fact.TAG},
}
#: Facts that can meet an exit condition: an order (bought, a stage), the customer
#: (lost), and what else moves the funnel's stage (activities, referrals).
_EXIT_FACTS = {Fact.ORDER, Fact.CUSTOMER, Fact.ACTIVITY, Fact.REFERRAL}


def _only_system_activities(facts: frozenset[Fact], activity_kinds: frozenset[str] | None) -> bool:
    # The funnel ignores the activities the system writes (sync adds, sent touchpoints):
    # no stage can have moved, so no stage trigger or stage exit either.
    return (
        Fact.ACTIVITY in facts
        and activity_kinds is not None
        and activity_kinds <= set(settings.FUNNEL_SYSTEM_KINDS)
    )


def facts_changed_sops(
    sender: Any,
    *,
    customer_ids: frozenset[int],
    facts: frozenset[Fact],
    activity_kinds: frozenset[str] | None = None,
    **kwargs: Any,
) -> None:
    if _only_system_activities(facts, activity_kinds):
        facts = facts - {Fact.ACTIVITY}
    kinds = [kind for kind, firing in _TRIGGERS.items() if facts & firing]
    exits = bool(facts & _EXIT_FACTS)
    if not kinds and not exits:
        return
    # One query for every running SOP: there are tens, not thousands. Paused SOPs are
    # read for their in-flight enrolments' exit conditions, never to enrol.
    running = list(
        Sop.objects.filter(status__in=[SopStatus.ACTIVE, SopStatus.PAUSED]).select_related(
            "current_version", "campaign"
        )
    )
    if not running:
        return
    # Chunks of announced ids: a full WeCom sync announces every customer at once, and an
    # ``IN`` list must stay within SQLite's parameter limit.
    for ids in chunks(sorted(customer_ids), ENROLL_CHUNK):
        for sop in running:
            version = sop.current_version
            if (
                sop.status != SopStatus.ACTIVE
                or version is None
                or version.trigger_kind not in kinds
                or sop.activated_at is None
            ):
                continue
            rows = trigger_occurrences(version=version, since=sop.activated_at, customer_ids=ids)
            if rows:
                sop_enroll(sop=sop, rows=rows)
        if exits:
            enrollment_ids = list(
                Enrollment.objects.filter(
                    customer_id__in=ids,
                    status=EnrollmentStatus.ACTIVE,
                    sop_id__in=[sop.pk for sop in running],
                ).values_list("id", flat=True)
            )
            if enrollment_ids:
                enrollments_exit_due(enrollment_ids=enrollment_ids, now=timezone.now())
