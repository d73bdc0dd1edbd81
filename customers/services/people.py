"""Stores and staff."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from django.db import transaction

from customers.models import Staff, Store
from customers.services._upsert import save_changes, upsert_one


@transaction.atomic
def store_upsert(*, code: str, data: Mapping[str, Any]) -> tuple[Store, str]:
    return upsert_one(Store.objects.all(), lookup={"code": code}, values=data)


@transaction.atomic
def store_update(*, store: Store, data: Mapping[str, Any]) -> list[str]:
    """Apply changed field values (``code`` included); returns the fields that changed."""
    return save_changes(store, data)


@transaction.atomic
def staff_upsert(*, wecom_userid: str, data: Mapping[str, Any]) -> tuple[Staff, str]:
    return upsert_one(Staff.objects.all(), lookup={"wecom_userid": wecom_userid}, values=data)


@transaction.atomic
def staff_create(*, data: Mapping[str, Any]) -> Staff:
    """Create a staff member from validated field values (for staff without a WeCom id;
    those with one go through :func:`staff_upsert`)."""
    return Staff.objects.create(**data)


@transaction.atomic
def staff_update(*, staff: Staff, data: Mapping[str, Any]) -> list[str]:
    """Apply changed field values; returns the names of the fields that really changed."""
    return save_changes(staff, data)


@transaction.atomic
def staff_bulk_ensure(*, wecom_userids: Iterable[str]) -> dict[str, int]:
    """Ids of the staff with these WeCom userids, creating the missing ones (named after
    their userid until an operator names them); existing staff are left untouched."""
    userids = sorted(set(wecom_userids))
    if not userids:
        return {}
    known = dict(Staff.objects.filter(wecom_userid__in=userids).values_list("wecom_userid", "id"))
    missing = [u for u in userids if u not in known]
    if missing:
        Staff.objects.bulk_create(
            [Staff(wecom_userid=u, name=u) for u in missing], ignore_conflicts=True, batch_size=500
        )
        known.update(
            Staff.objects.filter(wecom_userid__in=missing).values_list("wecom_userid", "id")
        )
    return {str(userid): pk for userid, pk in known.items()}
