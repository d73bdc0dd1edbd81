"""The funnel follows the facts: every write service announces the customers it touched
(``customers.hooks``), and their milestones are refreshed in the same transaction."""

from __future__ import annotations

from typing import Any

from django.conf import settings

from customers.hooks import Fact
from funnel.services import (
    milestones_add_activities,
    milestones_add_customers,
    milestones_refresh,
)

# Facts that can move a milestone. Follows and tags do not: acquisition is the
# customer's acquired_at (kept as the earliest follow by the contact services), and the
# reports read follows and tags directly for their staff and tag filters.
_RELEVANT = {Fact.CUSTOMER, Fact.ORDER, Fact.ACTIVITY, Fact.REFERRAL}


def facts_changed_refresh(
    sender: Any,
    *,
    customer_ids: frozenset[int],
    facts: frozenset[Fact],
    activity_kinds: frozenset[str] | None = None,
    activity_ids: frozenset[int] | None = None,
    created_ids: frozenset[int] | None = None,
    **kwargs: Any,
) -> None:
    relevant = facts & _RELEVANT
    if not relevant:
        return
    # Activities the system writes (contact_added on every sync add, touchpoints) are
    # neither activation nor engagement: nothing to recompute.
    if (
        relevant == {Fact.ACTIVITY}
        and activity_kinds is not None
        and activity_kinds <= set(settings.FUNNEL_SYSTEM_KINDS)
    ):
        return
    if created_ids:
        # Customers created by this transaction: their first row straight from the
        # customer (the service checks that they have nothing else yet).
        milestones_add_customers(customer_ids=created_ids & customer_ids)
        customer_ids = customer_ids - created_ids
        if not customer_ids:
            return
    if facts == {Fact.ACTIVITY} and activity_ids is not None:
        # Only new activities (their ids given): folded into the stored rows without
        # re-reading each customer's other activities.
        milestones_add_activities(customer_ids=customer_ids, activity_ids=activity_ids)
        return
    milestones_refresh(customer_ids=customer_ids)
