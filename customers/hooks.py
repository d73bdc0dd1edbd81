"""The one announcement of changed facts about customers.

Derived state (the funnel's milestones, SOP triggers) must follow the facts whichever door
they came in by: the API, WeCom sync, a callback, the dashboard or a mobile page. Every
write service in ``customers.services`` therefore ends by calling :func:`announce` with the
customers it touched and the kinds of fact that changed, and subscribers (connected in
their ``AppConfig.ready``) recompute what depends on them.

Receivers run inside the caller's transaction, so a derived row is committed (or rolled
back) together with the fact that caused it. They receive ids, not instances, so that a
bulk import of 5,000 orders is one call, not 5,000.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from django.dispatch import Signal


class Fact(StrEnum):
    CUSTOMER = "customer"  # created, or profile fields such as acquired_at changed
    ORDER = "order"
    ACTIVITY = "activity"
    FOLLOW = "follow"
    REFERRAL = "referral"
    TAG = "tag"


#: Sent with ``customer_ids: frozenset[int]``, ``facts: frozenset[Fact]`` and
#: ``activity_kinds: frozenset[str] | None`` (the kinds of the new activities when the
#: writer knows them, so that a subscriber can ignore kinds it does not care about) and
#: ``activity_ids: frozenset[int] | None``: given only with ``Fact.ACTIVITY`` alone, by a
#: writer that only added activities (none changed or deleted), the ids of the new rows,
#: so that a subscriber can fold in just those (the funnel does); ``None`` means "look at
#: everything of these customers"; and ``created_ids: frozenset[int] | None``: those of
#: the announced customers that this same transaction created (no other transaction can
#: have written facts about them yet), so that a subscriber can write their first derived
#: rows without comparing with a stored state (the funnel does, after checking that they
#: have no history); ``None`` means unknown. Receivers must accept ``**kwargs``: more may
#: come.
facts_changed = Signal()


def announce(
    customer_ids: Iterable[int],
    *facts: Fact,
    activity_kinds: Iterable[str] | None = None,
    activity_ids: Iterable[int] | None = None,
    created_ids: Iterable[int] | None = None,
) -> None:
    ids = frozenset(customer_ids)
    if ids and facts:
        facts_changed.send(
            sender=Fact,
            customer_ids=ids,
            facts=frozenset(facts),
            activity_kinds=None if activity_kinds is None else frozenset(activity_kinds),
            activity_ids=None if activity_ids is None else frozenset(activity_ids),
            # Only ever a subset of the announced customers.
            created_ids=None if created_ids is None else ids.intersection(created_ids),
        )
