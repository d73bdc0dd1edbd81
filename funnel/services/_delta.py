"""Shortcuts for facts that can only add: new activities, new customers."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from django.db import connection, transaction
from django.utils import timezone

from funnel.services._sql import _FRESH, CHUNK, _delta_sql, _params
from funnel.services._write import (
    _FEW_SETTINGS,
    RefreshResult,
    _refresh_through_temp,
    _serialize,
    _settings,
    _write_fresh,
)


def milestones_add_activities(
    *,
    customer_ids: Iterable[int],
    activity_ids: Iterable[int],
    now: datetime | None = None,
) -> RefreshResult:
    """Fold newly stored activities into their customers' milestones, in the caller's
    transaction: the same rows and stage changes as :func:`milestones_refresh` of these
    customers, without re-reading their other activities.

    Only for activities that were just added (``activities_record``): adding activities
    can only move activation and retention earlier and set engagement bits, so the stored
    row merged with an aggregate of the new activities alone (earliest of the two times,
    OR of the bit sets; the same expressions as the full refresh) is the recomputed row.
    An activity changed or deleted needs :func:`milestones_refresh`. Customers without a
    stored row, or whose row has another acquisition time than the customer (a change not
    refreshed yet), are refreshed in full.
    """
    now = now or timezone.now()
    result = RefreshResult()
    ids = sorted(set(customer_ids))
    if not ids:
        return result
    postgres = connection.vendor == "postgresql"
    with transaction.atomic(), connection.cursor() as cursor:
        previous = _settings(cursor, _FEW_SETTINGS) if postgres else {}
        # The same row locks as a refresh of these customers: a concurrent refresh or
        # delta of one of them waits, and the statements below see what it committed.
        _serialize(cursor, ids)
        activities = sorted(set(activity_ids))
        params = _params(ids)
        params["activities"] = (
            activities if postgres else "[" + ",".join(str(int(i)) for i in activities) + "]"
        )
        cursor.execute(f"DROP TABLE IF EXISTS {_FRESH}")
        cursor.execute(f"CREATE TEMPORARY TABLE {_FRESH} AS {_delta_sql()}", params)
        cursor.execute(f"SELECT customer_id FROM {_FRESH}")
        folded = {row[0] for row in cursor.fetchall()}
        _write_fresh(cursor, now, result, empty=False)
        # Every announced customer has a new activity: those not folded in have no row (or
        # a stale one) and are refreshed in full.
        missing = [i for i in ids if i not in folded]
        for start in range(0, len(missing), CHUNK):
            _refresh_through_temp(cursor, missing[start : start + CHUNK], now, result, empty=False)
        if postgres:
            _settings(cursor, previous)
    return result
