"""``rebuild_funnel`` outside any transaction on PostgreSQL: the paid periods are built by
a second connection into a new table, which the rebuild's transaction puts in place of
the old one (``funnel.services._beside``). The rows must be those of the one-transaction
rebuild, the table the same (keys, indexes, storage parameters, grants), and a failure on
either side must leave the old tables and no new one."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection, transaction

from funnel.models import REACHED_FIELDS, Milestones, PaidPeriod, Stage, StageChange
from funnel.services import _beside
from funnel.services._beside import SHADOW, PaidPeriodsBeside
from tests.funnel.helpers import rebuild, table_exists, table_shape
from tests.funnel.random_world import build_random_world

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's rebuild"),
]

COLUMNS = [f.attname for f in Milestones._meta.concrete_fields]
PAID = PaidPeriod._meta.db_table


def _milestones() -> list[dict[str, Any]]:
    return list(Milestones.objects.order_by("customer_id").values(*COLUMNS))


def _paid_periods() -> list[tuple[Any, ...]]:
    return sorted(
        PaidPeriod.objects.values_list("customer_id", "acquired_at", "days", "n", "amount")
    )


def _history() -> list[tuple[Any, ...]]:
    return sorted(StageChange.objects.values_list("customer_id", "from_stage", "to_stage", "at"))


@pytest.fixture
def world() -> Any:
    # Committed (a transactional test): the second connection must see it.
    world = build_random_world(20_261_207)
    yield world
    _beside.drop_leftover()


@pytest.fixture
def dressed_table() -> Any:
    """The paid periods' table with a storage parameter and a grant a rebuild must keep;
    undone after the test (the table outlives it)."""
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {PAID} SET (fillfactor = 90)")
        cursor.execute(f"GRANT SELECT ON {PAID} TO PUBLIC")
    yield
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {PAID} RESET (fillfactor)")
        cursor.execute(f"REVOKE SELECT ON {PAID} FROM PUBLIC")


def test_reset_rebuild_builds_the_paid_periods_beside_with_the_same_rows_and_table(
    world: Any, dressed_table: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    incremental, paid, shape = _milestones(), _paid_periods(), table_shape(PAID)
    assert paid and shape[3] == ["fillfactor=90"] and "=r/" in str(shape[4])
    started = []
    original_start = PaidPeriodsBeside.start

    def start(self: PaidPeriodsBeside) -> None:
        started.append(self)
        original_start(self)

    monkeypatch.setattr(PaidPeriodsBeside, "start", start)
    with connection.cursor() as cursor:
        # A table of that name left over by a crash is replaced.
        cursor.execute(f"CREATE TABLE {SHADOW} (leftover int)")

    rebuild("--reset")

    assert started, "the paid periods were not built beside"
    assert _milestones() == incremental
    assert _paid_periods() == paid
    assert table_shape(PAID) == shape
    assert not table_exists(SHADOW)
    expected = sorted(
        (row["customer_id"], k - 1, k, row[REACHED_FIELDS[Stage(k)]])
        for row in incremental
        for k in range(2, row["stage"] + 1)
    )
    assert _history() == expected
    # And the rebuilt table serves the incremental path (its key is the conflict target).
    rebuild()
    assert _paid_periods() == paid


def test_a_rebuild_failing_after_the_new_table_was_committed_leaves_the_old_tables(
    world: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    incremental, paid, history, shape = (
        _milestones(),
        _paid_periods(),
        _history(),
        table_shape(PAID),
    )
    committed = []

    def finish(self: PaidPeriodsBeside, cursor: Any) -> None:
        assert self._future is not None
        self._future.result()  # the new table is committed
        committed.append(table_exists(SHADOW))
        raise RuntimeError("the rebuild fails here")

    monkeypatch.setattr(PaidPeriodsBeside, "finish", finish)
    with pytest.raises(RuntimeError, match="fails here"):
        rebuild("--reset")

    assert committed == [True]
    assert not table_exists(SHADOW)
    assert (_milestones(), _paid_periods(), _history(), table_shape(PAID)) == (
        incremental,
        paid,
        history,
        shape,
    )


def test_a_failing_second_connection_fails_the_rebuild_and_leaves_the_old_tables(
    world: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    incremental, paid, history = _milestones(), _paid_periods(), _history()

    def fill(cursor: Any, definition: Any) -> None:
        cursor.execute(f"CREATE TABLE {SHADOW} AS SELECT * FROM {PAID}")
        raise RuntimeError("the paid periods fail")

    monkeypatch.setattr("funnel.services._beside._fill", fill)
    with pytest.raises(RuntimeError, match="paid periods fail"):
        rebuild("--reset")

    assert not table_exists(SHADOW)
    assert (_milestones(), _paid_periods(), _history()) == (incremental, paid, history)


def test_inside_a_callers_transaction_the_rebuild_stays_on_one_connection(
    world: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second connection would not see what the caller's transaction wrote."""
    incremental, paid = _milestones(), _paid_periods()

    def start(self: PaidPeriodsBeside) -> None:
        raise AssertionError("a second connection inside a caller's transaction")

    monkeypatch.setattr(PaidPeriodsBeside, "start", start)
    with transaction.atomic():
        rebuild("--reset")
    assert (_milestones(), _paid_periods()) == (incremental, paid)
    assert not table_exists(SHADOW)
