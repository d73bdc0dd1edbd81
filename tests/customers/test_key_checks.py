"""The set-based contact write checks its foreign keys once per parent row (PostgreSQL):
the same guarantee as the per-row triggers, a missing parent fails the whole write, and
the triggers are back on afterwards."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import psycopg2
import pytest
from django.db import IntegrityError, connection, transaction
from django.db.transaction import TransactionManagementError

from customers.models import Customer, CustomerTag, Follow, TagSource
from customers.services import tag_group_upsert, tag_upsert
from customers.services._key_checks import parents_lock, rows_unchecked
from customers.services.contacts_pg import ContactFollowInput, contact_follows_apply_pg
from tests.factories import ChannelFactory, CustomerFactory, StaffFactory

pytestmark = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="PostgreSQL's set-based path"
)

T0 = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)


def _row(n: int, staff_id: int, **over: Any) -> ContactFollowInput:
    values: dict[str, Any] = {
        "external_userid": f"wm-key-{n}",
        "name": f"客户{n}",
        "avatar": "",
        "gender": 1,
        "unionid": "",
        "staff_id": staff_id,
        "userid": f"staff-{staff_id}",
        "added_at": T0,
        "remark": "",
        "description": "",
        "remark_mobiles": [],
        "add_way": 1,
        "state": "",
        "oper_userid": "",
        "tag_ids": [],
        "source_channel_id": None,
        "referred_by_id": None,
        "sync_digest": f"d{n}",
    }
    values.update(over)
    return ContactFollowInput(**values)


def _replication_role() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW session_replication_role")
        return str(cursor.fetchone()[0])


@pytest.mark.django_db
def test_a_contact_write_leaves_the_row_triggers_on_and_its_keys_valid() -> None:
    staff = StaffFactory()
    channel = ChannelFactory()
    referrer = CustomerFactory()
    rows = [
        _row(1, staff.pk, source_channel_id=channel.pk, referred_by_id=referrer.pk),
        _row(2, staff.pk),
    ]
    result = contact_follows_apply_pg(rows=rows)
    assert (result.customers_created, result.follows_created) == (2, 2)
    assert _replication_role() == "origin"
    # Every key the rows carry holds (the database's own checks, run now).
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    first = Customer.objects.get(external_userid="wm-key-1")
    assert (first.source_channel_id, first.referred_by_id, first.owner_id) == (
        channel.pk,
        referrer.pk,
        staff.pk,
    )
    assert first.store_id == staff.store_id


@pytest.mark.django_db
@pytest.mark.parametrize("missing", ["staff", "channel", "referrer"])
def test_a_write_pointing_at_a_missing_parent_fails_and_writes_nothing(missing: str) -> None:
    staff = StaffFactory()
    gone = 10**9
    over = {"channel": {"source_channel_id": gone}, "referrer": {"referred_by_id": gone}}
    row = _row(1, gone if missing == "staff" else staff.pk, **over.get(missing, {}))
    before = (Customer.objects.count(), Follow.objects.count())
    with pytest.raises(IntegrityError):
        contact_follows_apply_pg(rows=[_row(2, staff.pk), row])
    assert (Customer.objects.count(), Follow.objects.count()) == before
    assert _replication_role() == "origin"


@pytest.mark.django_db
def test_parents_lock_names_the_table_whose_row_is_gone() -> None:
    staff = StaffFactory()
    with transaction.atomic(), connection.cursor() as cursor:
        parents_lock(cursor.cursor, {"customers_staff": [staff.pk, None]})
        with pytest.raises(IntegrityError, match=r"1 row.* of customers_staff"):
            parents_lock(cursor.cursor, {"customers_staff": [staff.pk, staff.pk + 1000]})


@pytest.mark.django_db
def test_with_batched_checks_off_the_database_checks_each_row(settings) -> None:
    settings.DATABASE_BATCH_KEY_CHECKS = False
    staff = StaffFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        # No check before COMMIT here: the row points at nothing until the deferred
        # triggers run, and then the database refuses it.
        contact_follows_apply_pg(rows=[_row(1, staff.pk, source_channel_id=10**9)])
        assert Customer.objects.filter(external_userid="wm-key-1").exists()
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")


def _other_connection_can_lock(table: str, pk: int) -> bool:
    cfg = connection.settings_dict
    other = psycopg2.connect(
        dbname=cfg["NAME"],
        user=cfg["USER"],
        password=cfg["PASSWORD"] or None,
        host=cfg["HOST"] or "127.0.0.1",
        port=cfg["PORT"] or 5432,
    )
    try:
        with other.cursor() as cursor:
            try:
                cursor.execute(f"SELECT 1 FROM {table} WHERE id = %s FOR UPDATE NOWAIT", [pk])
            except psycopg2.errors.LockNotAvailable:
                return False
            return cursor.fetchone() is not None
    finally:
        other.rollback()
        other.close()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("batched", [True, False])
def test_the_parents_are_held_against_a_delete_until_commit(settings, batched: bool) -> None:
    """What makes the batched check as safe as the triggers: the staff member and the tag
    are locked as soon as the write is done, so another transaction's delete waits for
    this one (and then finds the rows that point at them). Per-row triggers lock only at
    COMMIT, which the deferred checks run first."""
    settings.DATABASE_BATCH_KEY_CHECKS = batched
    staff = StaffFactory()
    group, _ = tag_group_upsert(name="等级", source=TagSource.WECOM)
    tag, _ = tag_upsert(group=group, name="金卡")
    with transaction.atomic():
        contact_follows_apply_pg(rows=[_row(1, staff.pk, tag_ids=[tag.pk])])
        assert CustomerTag.objects.filter(tag=tag).count() == 1
        assert _other_connection_can_lock("customers_staff", staff.pk) is not batched
        assert _other_connection_can_lock("customers_tag", tag.pk) is not batched
    assert _other_connection_can_lock("customers_staff", staff.pk)


@pytest.mark.django_db(transaction=True)
def test_row_checks_are_never_turned_off_outside_an_atomic_block() -> None:
    with (
        pytest.raises(TransactionManagementError),
        connection.cursor() as cursor,
        rows_unchecked(cursor),
    ):
        pass
    assert _replication_role() == "origin"
