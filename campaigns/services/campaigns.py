"""Campaigns and their holdout.

Whether a customer is held out of a campaign is a pure function of the campaign's secret
``salt`` and the customer's id (:func:`is_holdout`): stable (the same customer always
lands in the same group, however often or in whichever order they are enrolled), uniform
across customers, and unguessable from outside without the salt. It is decided once, when
the customer first joins (``CampaignMember``); changing ``holdout_percent`` later applies
to customers who join after the change and never moves an existing member between groups,
so the comparison stays between two groups that were each treated consistently.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from itertools import islice
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.dateparse import parse_datetime

from campaigns.models import Campaign, CampaignGoal, CampaignMember, CampaignStatus

#: Members are written and read back this many at a time, so a campaign over a million
#: customers costs bounded memory and statement size.
ASSIGN_CHUNK = 5_000

_FIELDS = (
    "name",
    "description",
    "goal",
    "goal_days",
    "holdout_percent",
    "status",
    "starts_at",
    "ends_at",
)
_DEFAULTS: dict[str, Any] = {
    "description": "",
    "goal": CampaignGoal.PURCHASE,
    "goal_days": 30,
    "holdout_percent": 10,
    "status": CampaignStatus.DRAFT,
    "starts_at": None,
    "ends_at": None,
}


def is_holdout(*, salt: str, customer_id: int, percent: int) -> bool:
    """Whether ``customer_id`` is in the held-out ``percent`` of the campaign salted ``salt``.

    The first 8 bytes of sha256 are uniform on [0, 2**64): dividing gives a uniform number
    in [0, 1), and a threshold on it selects ``percent`` % of customers; a larger percent
    holds out a superset of a smaller one's customers.
    """
    if percent <= 0:
        return False
    digest = hashlib.sha256(f"{salt}:{customer_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < percent / 100


def _as_int(errors: dict[str, str], field: str, value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        errors[field] = "A whole number."
        return None


def _as_datetime(errors: dict[str, str], field: str, value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    parsed = value if isinstance(value, datetime) else parse_datetime(str(value))
    if parsed is None:
        errors[field] = "A date and time (ISO 8601)."
        return None
    if parsed.tzinfo is None:
        errors[field] = "Give the time zone (an aware date and time)."
        return None
    return parsed


def _validated(values: Mapping[str, Any]) -> dict[str, Any]:
    errors: dict[str, str] = {}
    out: dict[str, Any] = {}
    name = str(values.get("name") or "").strip()
    if not name:
        errors["name"] = "A campaign needs a name."
    elif len(name) > 128:
        errors["name"] = "At most 128 characters."
    out["name"] = name
    out["description"] = str(values.get("description") or "")
    goal = values.get("goal")
    if goal not in CampaignGoal.values:
        errors["goal"] = f"Use one of: {', '.join(CampaignGoal.values)}."
    out["goal"] = goal
    status = values.get("status")
    if status not in CampaignStatus.values:
        errors["status"] = f"Use one of: {', '.join(CampaignStatus.values)}."
    out["status"] = status
    goal_days = _as_int(errors, "goal_days", values.get("goal_days"))
    if goal_days is not None and not 1 <= goal_days <= 365:
        errors["goal_days"] = "Between 1 and 365 days."
    out["goal_days"] = goal_days
    percent = _as_int(errors, "holdout_percent", values.get("holdout_percent"))
    if percent is not None and not 0 <= percent <= 50:
        errors["holdout_percent"] = "Between 0 and 50 %."
    out["holdout_percent"] = percent
    out["starts_at"] = _as_datetime(errors, "starts_at", values.get("starts_at"))
    out["ends_at"] = _as_datetime(errors, "ends_at", values.get("ends_at"))
    if out["starts_at"] and out["ends_at"] and out["ends_at"] <= out["starts_at"]:
        errors["ends_at"] = "The end must be after the start."
    if errors:
        raise ValidationError(errors)
    return out


@transaction.atomic
def campaign_create(*, data: Mapping[str, Any], user: Any) -> Campaign:
    """Create a campaign (``name``, ``description``, ``goal``, ``goal_days``,
    ``holdout_percent``, ``status``, ``starts_at``, ``ends_at``) with a fresh secret salt."""
    unknown = set(data) - set(_FIELDS)
    if unknown:
        raise ValidationError(dict.fromkeys(sorted(unknown), "Unknown field."))
    values = _validated({**_DEFAULTS, **data})
    created_by = user if getattr(user, "is_authenticated", False) else None
    return Campaign.objects.create(**values, salt=secrets.token_hex(16), created_by=created_by)


@transaction.atomic
def campaign_update(*, campaign: Campaign, data: Mapping[str, Any]) -> list[str]:
    """Apply the given fields; returns the names of those that really changed.

    The salt never changes. A new ``holdout_percent`` applies to customers who join from
    now on; existing members keep their group (see the module docstring).
    """
    unknown = set(data) - set(_FIELDS)
    if unknown:
        raise ValidationError(dict.fromkeys(sorted(unknown), "Unknown field."))
    current = {f: getattr(campaign, f) for f in _FIELDS}
    values = _validated({**current, **data})
    changed = [f for f in _FIELDS if values[f] != current[f]]
    for field in changed:
        setattr(campaign, field, values[field])
    if changed:
        campaign.save(update_fields=[*changed, "updated_at"])
    return changed


def _chunks(ids: Iterable[int], size: int) -> Iterator[list[int]]:
    iterator = iter(ids)
    while chunk := list(islice(iterator, size)):
        yield chunk


@transaction.atomic
def campaign_assign(*, campaign: Campaign, customer_ids: Iterable[int], at: datetime) -> set[int]:
    """Make the customers members of ``campaign`` (idempotent) and return those among
    them who are held out.

    A customer already a member keeps the group decided when they joined (their row is
    left alone by ``ignore_conflicts``, and the group is read back from the table, not
    recomputed), so a percent changed in between moves nobody, and two enrolments racing
    for one customer agree on the group the winner wrote.
    """
    held_out: set[int] = set()
    for chunk in _chunks(customer_ids, ASSIGN_CHUNK):
        ids = sorted(set(chunk))
        CampaignMember.objects.bulk_create(
            [
                CampaignMember(
                    campaign=campaign,
                    customer_id=customer_id,
                    is_holdout=is_holdout(
                        salt=campaign.salt,
                        customer_id=customer_id,
                        percent=campaign.holdout_percent,
                    ),
                    enrolled_at=at,
                )
                for customer_id in ids
            ],
            ignore_conflicts=True,
        )
        held_out.update(
            CampaignMember.objects.filter(
                campaign=campaign, customer_id__in=ids, is_holdout=True
            ).values_list("customer_id", flat=True)
        )
    return held_out
