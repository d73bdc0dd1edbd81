"""The enterprise-message quota ledger (WECOM.md §1.9).

WeCom lets each customer receive a limited number of enterprise messages per period: by
default as many per month as the month has days; admins may set 7 a week or 1 a day
(``settings.WECOM_MESSAGE_QUOTA``). We count them ourselves (``QuotaUsage``, one row per
customer and period, periods in the corp's time zone) so a touchpoint that would exceed
the quota is skipped and reported before the call, rather than silently refused by WeCom.

``quota_consume`` is a single ``INSERT ... ON CONFLICT DO UPDATE ... WHERE used < limit
RETURNING`` statement: the row lock taken by the upsert serialises concurrent dispatchers
on PostgreSQL, so two of them can never both take a customer's last unit. SQLite has one
writer, and supports the same statement.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import connection
from django.db.models import F

from campaigns.models import QuotaUsage

#: SQLite's bound-parameter ceiling is 32,766; three per row, with a margin.
_SQLITE_CHUNK = 5000


def _corp_date(at: datetime) -> date:
    return at.astimezone(ZoneInfo(settings.TIME_ZONE)).date()


def quota_period(day: date) -> tuple[date, int]:
    """(first day of the quota period containing ``day``, messages allowed in it)."""
    mode = settings.WECOM_MESSAGE_QUOTA
    if mode == "day":
        return day, 1
    if mode == "week":
        return day - timedelta(days=day.weekday()), 7  # weeks start on Monday
    return day.replace(day=1), calendar.monthrange(day.year, day.month)[1]


def _unique_sorted(customer_ids: Iterable[int]) -> list[int]:
    # Sorted, so that concurrent consumers lock the rows in one order (no deadlock), and
    # unique: ON CONFLICT DO UPDATE may not touch one row twice in a statement.
    return sorted({int(i) for i in customer_ids})


def quota_consume(*, customer_ids: Iterable[int], at: datetime) -> set[int]:
    """Count one message for each customer (once per id) in the period of ``at``; returns
    the ids that were within their quota (now counted). The others are over quota and
    unchanged. Run it inside the caller's transaction, so a rollback returns the units."""
    ids = _unique_sorted(customer_ids)
    if not ids:
        return set()
    start, limit = quota_period(_corp_date(at))
    table = QuotaUsage._meta.db_table
    allowed: set[int] = set()
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                f"""
                INSERT INTO {table} AS q (customer_id, period_start, used)
                SELECT c, %s, 1 FROM unnest(%s::bigint[]) AS c
                ORDER BY c
                ON CONFLICT (customer_id, period_start)
                DO UPDATE SET used = q.used + 1 WHERE q.used < %s
                RETURNING q.customer_id
                """,
                [start, ids, limit],
            )
            allowed.update(int(row[0]) for row in cursor.fetchall())
        else:
            for i in range(0, len(ids), _SQLITE_CHUNK):
                chunk = ids[i : i + _SQLITE_CHUNK]
                values = ", ".join(["(%s, %s, 1)"] * len(chunk))
                params: list[Any] = []
                for cid in chunk:
                    params += [cid, start]
                cursor.execute(
                    f"""
                    INSERT INTO {table} (customer_id, period_start, used) VALUES {values}
                    ON CONFLICT (customer_id, period_start)
                    DO UPDATE SET used = used + 1 WHERE used < %s
                    RETURNING customer_id
                    """,
                    [*params, limit],
                )
                allowed.update(int(row[0]) for row in cursor.fetchall())
    return allowed


def quota_refund(*, customer_ids: Iterable[int], at: datetime) -> None:
    """Give back one unit per customer in the period of ``at`` (the time it was consumed):
    the message was never created, or WeCom refused it."""
    ids = _unique_sorted(customer_ids)
    if not ids:
        return
    start, _limit = quota_period(_corp_date(at))
    for i in range(0, len(ids), _SQLITE_CHUNK):
        QuotaUsage.objects.filter(
            customer_id__in=ids[i : i + _SQLITE_CHUNK], period_start=start, used__gt=0
        ).update(used=F("used") - 1)


def quota_used(*, customer_ids: Iterable[int], at: datetime) -> dict[int, int]:
    """Messages counted per customer in the period of ``at`` (0 when none)."""
    ids = _unique_sorted(customer_ids)
    start, _limit = quota_period(_corp_date(at))
    used = dict.fromkeys(ids, 0)
    for i in range(0, len(ids), _SQLITE_CHUNK):
        used.update(
            QuotaUsage.objects.filter(
                customer_id__in=ids[i : i + _SQLITE_CHUNK], period_start=start
            ).values_list("customer_id", "used")
        )
    return used
