"""A rebuild into empty tables on PostgreSQL writes the milestone rows into a new table
(``CREATE TABLE AS``) that takes the live one's place (``funnel.services._rebuild``,
``funnel.services._twin``). The table must be the same as the migrations made it
(columns, NOT NULLs, defaults, checks, keys, indexes, storage parameters, grants), and a
new table that is not must fail the rebuild and leave the old one."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection

from customers.models import ActivitySource
from customers.services import ActivityInput, activities_record
from funnel.models import Milestones
from funnel.services import _twin
from funnel.services._twin import twin_name
from tests.funnel import reference
from tests.funnel.helpers import rebuild, table_exists, table_shape
from tests.funnel.random_world import build_random_world

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's rebuild"),
]

TABLE = Milestones._meta.db_table
COLUMNS = [f.attname for f in Milestones._meta.concrete_fields]


def _milestones() -> list[dict[str, Any]]:
    return list(Milestones.objects.order_by("customer_id").values(*COLUMNS))


@pytest.fixture
def world() -> Any:
    return build_random_world(20_261_208, size=60)


def test_a_reset_rebuild_puts_an_identical_table_in_place(world: Any) -> None:
    with connection.cursor() as cursor:
        # What a later migration or an operator might add, which the new table must keep.
        cursor.execute(f"ALTER TABLE {TABLE} ALTER COLUMN engaged_weeks SET DEFAULT 0")
        cursor.execute(f"GRANT SELECT ON {TABLE} TO PUBLIC")
    incremental, shape = _milestones(), table_shape(TABLE)
    assert shape[3] == ["fillfactor=85"] and "=r/" in str(shape[4])
    assert any(column[5] == "0" for column in shape[0])
    assert any(kind == "c" for _name, kind, _body in shape[2])

    printed = rebuild("--reset")

    assert _milestones() == incremental
    everyone = len(incremental)
    assert printed.startswith(f"{everyone} customers, {everyone} milestone rows written, ")
    assert table_shape(TABLE) == shape
    assert not table_exists(twin_name(TABLE))
    # The rows were written under the fillfactor: fewer on the fullest page than packed.
    fullest = (
        "SELECT MAX(n) FROM (SELECT COUNT(*) AS n FROM {} GROUP BY (ctid::text::point)[0]) pages"
    )
    with connection.cursor() as cursor:
        cursor.execute(f"CREATE TEMPORARY TABLE packed AS SELECT * FROM {TABLE}")
        cursor.execute(fullest.format("packed"))
        packed = cursor.fetchone()[0]
        cursor.execute(fullest.format(TABLE))
        assert cursor.fetchone()[0] < packed


def test_a_new_table_unlike_the_live_one_fails_the_rebuild_and_leaves_the_old(
    world: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    incremental, shape = _milestones(), table_shape(TABLE)
    # The new table without its NOT NULLs and checks.
    monkeypatch.setattr(_twin.Definition, "complete", lambda self: None)
    with pytest.raises(RuntimeError, match="milestones_next's columns are not"):
        rebuild("--reset")
    assert (_milestones(), table_shape(TABLE)) == (incremental, shape)
    assert not table_exists(twin_name(TABLE))


def test_the_prepared_fold_of_a_session_serves_the_new_table(world: Any) -> None:
    """A session's prepared fold was planned on the old table; after the rebuild the next
    batch must be folded into the new one."""
    someone = world.customers[0]
    at = someone.acquired_at + timedelta(days=30)

    def record(kind: str) -> None:
        activities_record(
            rows=[
                ActivityInput(
                    customer_id=someone.pk, kind=kind, occurred_at=at, source=ActivitySource.API
                )
            ]
        )

    record("page_viewed")
    rebuild("--reset")
    before = Milestones.objects.get(customer=someone)
    record("message_received")
    raw = reference.load_raw()
    assert _milestones() == [reference.milestone_row(raw[pk]) for pk in sorted(raw)]
    # The fold wrote the new table (the customer's activation is that activity or earlier).
    after = Milestones.objects.get(customer=someone)
    assert after.activated_at is not None and after.activated_at <= at
    assert (before.activated_at is None or before.activated_at > at) == (after.activated_at == at)
