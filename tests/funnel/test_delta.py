"""New activities are folded into the stored milestones (``milestones_add_activities``)
instead of recomputing each customer from all their activities: the rows and the stage
history must be exactly what the full refresh writes, batch after batch, and what a
rebuild computes. Runs on SQLite and, in the PostgreSQL pass, on PostgreSQL."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.conf import settings
from django.db import connection, transaction

import funnel.receivers
from customers.hooks import Fact, announce
from customers.models import Activity, ActivityKind, ActivitySource, Customer
from customers.services import ActivityInput, activities_record
from funnel._session import local_settings, prepared_statement
from funnel.models import Milestones, StageChange
from funnel.services import milestones_refresh
from tests.factories import CustomerFactory
from tests.funnel import reference
from tests.funnel.helpers import customer, local, pay

pytestmark = pytest.mark.django_db

COLUMNS = [f.attname for f in Milestones._meta.concrete_fields]
DAY = timedelta(days=1)
US = timedelta(microseconds=1)
KINDS = [
    ActivityKind.MESSAGE_RECEIVED,  # activation
    ActivityKind.MEMBER_JOINED,  # activation
    ActivityKind.PAGE_VIEWED,  # engagement only
    ActivityKind.STORE_VISIT,
    ActivityKind.MESSAGE_SENT,
    ActivityKind.CONTACT_ADDED,  # system: ignored
    ActivityKind.TOUCHPOINT_SENT,  # system: ignored
]


def _world(seed: int) -> tuple[list[Customer], list[list[ActivityInput]]]:
    """Customers (with orders and referrals, so every stage occurs) and batches of new
    activities for them: random ones plus the definitions' edges."""
    rng = random.Random(seed)
    start = local(2026, 1, 1, 9)
    people = [
        customer(start + timedelta(days=rng.randint(0, 90), microseconds=7)) for _ in range(12)
    ]
    for c in people[:6]:
        pay(c, c.acquired_at + timedelta(days=rng.randint(1, 40)))
    for referee, referrer in ((people[7], people[0]), (people[8], people[2])):
        referee.referred_by = referrer
        referee.save(update_fields=["referred_by"])
    # Re-announce the referrals through a plain refresh (customer_update would too).
    milestones_refresh(customer_ids=[c.pk for c in people])
    rows: list[ActivityInput] = []

    def add(c: Customer, kind: str, at: datetime) -> None:
        rows.append(
            ActivityInput(
                customer_id=c.pk,
                kind=kind,
                occurred_at=at,
                source=ActivitySource.API,
                payload={"n": len(rows)},
            )
        )

    for _ in range(150):
        c = rng.choice(people[:9])
        add(c, rng.choice(KINDS), c.acquired_at + timedelta(seconds=rng.randint(-5, 80) * 86_400))
    edge = people[9]
    retention = timedelta(days=settings.FUNNEL_RETENTION_DAYS)
    # Before acquisition: activation counts, engagement and retention do not.
    add(edge, ActivityKind.MESSAGE_RECEIVED, edge.acquired_at - DAY)
    add(edge, ActivityKind.PAGE_VIEWED, edge.acquired_at - US)
    # Retention exactly at 7 days counts; a microsecond earlier does not. The later one
    # arrives first, so a later batch moves retention earlier.
    add(edge, ActivityKind.PAGE_VIEWED, edge.acquired_at + retention + DAY)
    add(edge, ActivityKind.PAGE_VIEWED, edge.acquired_at + retention - US)
    add(edge, ActivityKind.STORE_VISIT, edge.acquired_at + retention)
    # System kinds after 7 days: ignored for retention and engagement.
    add(people[10], ActivityKind.CONTACT_ADDED, people[10].acquired_at + 9 * DAY)
    add(people[10], ActivityKind.TOUCHPOINT_SENT, people[10].acquired_at + 10 * DAY)
    # The last periods a bit set holds (61) and the first it does not (62).
    last = people[11]
    for days in (7, 30):
        add(last, ActivityKind.PAGE_VIEWED, last.acquired_at + 61 * days * DAY)
        add(last, ActivityKind.PAGE_VIEWED, last.acquired_at + 62 * days * DAY - US)
        add(last, ActivityKind.STORE_VISIT, last.acquired_at + 62 * days * DAY)
    # Batches of uneven sizes, in an order where later batches hold earlier times.
    head = rows[:150]
    rng.shuffle(head)
    rows[:150] = head
    cuts = [0, 1, 30, 31, 90, 150, 160, len(rows)]
    batches = [rows[a:b] for a, b in itertools.pairwise(cuts)]
    # A replay of rows already stored: nothing new, nothing announced.
    batches.append(rows[:40])
    return people, batches


def _snapshot(people: list[Customer]) -> tuple[list[dict[str, Any]], list[tuple[Any, ...]]]:
    """The people's milestone rows and stage history, with customers by position."""
    position = {c.pk: i for i, c in enumerate(people)}
    rows = []
    for row in (
        Milestones.objects.filter(customer__in=people).order_by("customer_id").values(*COLUMNS)
    ):
        row["customer_id"] = position[row["customer_id"]]
        rows.append(row)
    changes = sorted(
        (position[c], f, t, at)
        for c, f, t, at in StageChange.objects.filter(customer__in=people).values_list(
            "customer_id", "from_stage", "to_stage", "at"
        )
    )
    return rows, changes


def _assert_equals_reference(people: list[Customer]) -> None:
    raw = reference.load_raw()
    expected = [reference.milestone_row(raw[c.pk]) for c in sorted(people, key=lambda c: c.pk)]
    actual = list(
        Milestones.objects.filter(customer__in=people).order_by("customer_id").values(*COLUMNS)
    )
    assert actual == expected


@pytest.fixture
def delta_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Counts the announcements the delta path took (its customers, per call)."""
    calls: list[int] = []
    original = funnel.receivers.milestones_add_activities

    def spy(**kwargs: Any) -> Any:
        calls.append(len(kwargs["customer_ids"]))
        return original(**kwargs)

    monkeypatch.setattr(funnel.receivers, "milestones_add_activities", spy)
    yield calls


def _full_path(monkeypatch: pytest.MonkeyPatch) -> None:
    def full(*, customer_ids: Any, activity_ids: Any) -> Any:
        return milestones_refresh(customer_ids=customer_ids)

    monkeypatch.setattr(funnel.receivers, "milestones_add_activities", full)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_batches_of_new_activities_give_what_the_full_refresh_gives(
    seed: int, delta_calls: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    people, batches = _world(seed)
    for batch in batches:
        activities_record(rows=batch)
    # Every batch but the replay (nothing new) and those of system kinds only (nothing
    # to fold in) took the delta path.
    assert 4 <= len(delta_calls) <= len(batches) - 1
    delta = _snapshot(people)
    _assert_equals_reference(people)
    # A rebuild of everyone finds nothing to change and no stage to record.
    everyone = milestones_refresh()
    assert (everyone.changed, everyone.stage_changes) == (0, 0)

    # The same world and batches again, through the full refresh of each batch.
    _full_path(monkeypatch)
    twins, twin_batches = _world(seed)
    for batch in twin_batches:
        activities_record(rows=batch)
    full = _snapshot(twins)
    assert full == delta
    _assert_equals_reference(twins)
    # The edges landed where the definitions say.
    edge, last = people[9], people[11]
    row = Milestones.objects.get(customer=edge)
    assert row.activated_at == edge.acquired_at - DAY
    assert row.retained_at == edge.acquired_at + timedelta(days=settings.FUNNEL_RETENTION_DAYS)
    row = Milestones.objects.get(customer=last)
    assert row.engaged_weeks >> 61 & 1 and not row.engaged_weeks >> 62
    assert row.engaged_months >> 61 & 1 and not row.engaged_months >> 62


def test_a_customer_without_a_row_or_with_a_stale_acquisition_is_refreshed_in_full(
    delta_calls: list[int],
) -> None:
    known = customer(local(2026, 3, 1, 10))
    # Written without the services: no announcement, so no milestone row yet.
    unknown: Any = CustomerFactory(acquired_at=local(2026, 3, 2, 10))
    stale = customer(local(2026, 3, 3, 10))
    Customer.objects.filter(pk=stale.pk).update(acquired_at=local(2026, 2, 1, 10))
    activities_record(
        rows=[
            ActivityInput(
                customer_id=c.pk,
                kind=ActivityKind.PAGE_VIEWED,
                occurred_at=local(2026, 3, 20, 10),
                source=ActivitySource.API,
            )
            for c in (known, unknown, stale)
        ]
    )
    assert delta_calls == [3]
    _assert_equals_reference([known, unknown, stale])
    assert Milestones.objects.get(customer=stale).acquired_at == local(2026, 2, 1, 10)


def test_other_announcements_of_activities_take_the_full_path(delta_calls: list[int]) -> None:
    c = customer(local(2026, 3, 1, 10))
    stored = activities_record(
        rows=[
            ActivityInput(
                customer_id=c.pk,
                kind=ActivityKind.MESSAGE_RECEIVED,
                occurred_at=local(2026, 3, 5, 10),
                source=ActivitySource.API,
            )
        ]
    )
    assert delta_calls == [1]
    # An activity changed in place (no writer does today) is announced without ids.
    Activity.objects.filter(pk=stored.ids[0]).update(occurred_at=local(2026, 3, 9, 10))
    announce([c.pk], Fact.ACTIVITY, activity_kinds=[ActivityKind.MESSAGE_RECEIVED])
    # With another fact, the ids do not make it a delta either.
    announce([c.pk], Fact.ACTIVITY, Fact.FOLLOW, activity_ids=stored.ids)
    assert delta_calls == [1]
    _assert_equals_reference([c])


def test_a_customer_with_only_system_activities_in_a_batch_keeps_the_row(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import funnel.services._delta

    engaged, quiet = customer(local(2026, 3, 1, 10)), customer(local(2026, 3, 2, 10))
    full: list[list[int]] = []
    original = funnel.services._delta._refresh_through_temp

    def spy(cursor: Any, ids: list[int], *args: Any, **kwargs: Any) -> Any:
        full.append(ids)
        return original(cursor, ids, *args, **kwargs)

    monkeypatch.setattr(funnel.services._delta, "_refresh_through_temp", spy)
    activities_record(
        rows=[
            ActivityInput(
                customer_id=c.pk,
                kind=kind,
                occurred_at=local(2026, 3, 20, 10),
                source=ActivitySource.API,
            )
            for c, kind in (
                (engaged, ActivityKind.PAGE_VIEWED),
                (quiet, ActivityKind.CONTACT_ADDED),
            )
        ]
    )
    # Neither is refreshed in full: one folded in, the other has nothing that counts.
    assert full == []
    _assert_equals_reference([engaged, quiet])
    assert Milestones.objects.get(customer=engaged).retained_at == local(2026, 3, 20, 10)


def test_the_fold_takes_only_the_given_customers_activities() -> None:
    from funnel.services import milestones_add_activities

    given, other = customer(local(2026, 3, 1, 10)), customer(local(2026, 3, 2, 10))
    at = local(2026, 3, 20, 10)
    # Stored without announcing them (as a caller would have before folding them in).
    mine, theirs = (
        Activity.objects.create(
            customer=c, kind=ActivityKind.PAGE_VIEWED, occurred_at=at, idempotency_key=key
        )
        for c, key in ((given, "fold-mine"), (other, "fold-theirs"))
    )
    result = milestones_add_activities(customer_ids=[given.pk], activity_ids=[mine.pk, theirs.pk])
    # The other customer's activity is not folded into a row this call did not lock.
    assert (result.customers, result.changed) == (1, 1)
    assert Milestones.objects.get(customer=given).retained_at == at
    assert Milestones.objects.get(customer=other).retained_at is None
    milestones_refresh(customer_ids=[other.pk])
    assert Milestones.objects.get(customer=other).retained_at == at


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's prepared fold")
def test_the_fold_is_prepared_once_per_session_and_text(
    delta_calls: list[int], settings: Any
) -> None:
    """The fold runs as a prepared statement: prepared at the session's first fold, reused
    after, prepared again when a pooler's reset (``DEALLOCATE ALL``) dropped it, and one
    statement per text, so another retention period never runs the old one's plan."""

    def prepared() -> list[str]:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT name FROM pg_prepared_statements WHERE name LIKE 'funnel_fold_%%'"
            )
            return sorted(row[0] for row in cursor.fetchall())

    def record(c: Customer, day: int) -> None:
        activities_record(
            rows=[
                ActivityInput(
                    customer_id=c.pk,
                    kind=ActivityKind.PAGE_VIEWED,
                    occurred_at=local(2026, 3, day, 10),
                    source=ActivitySource.API,
                )
            ]
        )

    with connection.cursor() as cursor:
        cursor.execute("DEALLOCATE ALL")
    first, second = customer(local(2026, 3, 1, 10)), customer(local(2026, 3, 2, 10))
    record(first, 5)
    record(second, 6)
    assert len(prepared()) == 1
    with connection.cursor() as cursor:
        cursor.execute("DEALLOCATE ALL")
    record(first, 7)
    assert len(prepared()) == 1
    _assert_equals_reference([first, second])
    # Retained after 3 days instead of 7: a new text, a new statement, the right row (a
    # customer acquired under these settings: the others' rows would need a rebuild).
    settings.FUNNEL_RETENTION_DAYS = 3
    third = customer(local(2026, 3, 1, 10))
    record(third, 5)
    assert len(prepared()) == 2
    assert delta_calls == [1, 1, 1, 1]
    _assert_equals_reference([third])
    assert Milestones.objects.get(customer=third).retained_at == local(2026, 3, 5, 10)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's prepared fold")
def test_the_folds_generic_plan_reads_the_tables_by_the_ids_even_when_they_are_tiny() -> None:
    """The generic plan is made once per session, here while the tables hold a few rows,
    where a sequential scan is the cheaper plan; kept while they grow to a million rows
    it would read them all at every batch. Every table is read through its index."""
    from funnel.services import _delta

    c = customer(local(2026, 3, 1, 10))
    with transaction.atomic(), connection.cursor() as cursor:
        name = prepared_statement(
            cursor, "funnel_fold", _delta._fold_sql(), _delta._FOLD_PARAMETERS
        )
        with local_settings(cursor, _delta._FOLD_SETTINGS):
            cursor.execute(
                f"EXPLAIN EXECUTE {name} (%s, %s, %s, %s, %s)",
                [[c.pk], [], ["message_received"], ["touchpoint_sent"], local(2026, 3, 2, 10)],
            )
            plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "Seq Scan" not in plan, plan
    # By the keys (an index scan, or a bitmap of one): the work grows with the batch.
    for index in ("funnel_milestones_pkey", "customers_customer_pkey", "customers_activity_pkey"):
        assert f"Index Scan on {index}" in plan or f"Index Scan using {index}" in plan, plan
