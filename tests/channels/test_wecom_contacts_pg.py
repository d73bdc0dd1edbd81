"""The set-based PostgreSQL path of ``contacts_apply`` writes exactly what the portable
path (the reference, and SQLite's) writes: the same scenario runs through both, each in
a savepoint that is rolled back after, and the resulting rows are compared by their
natural keys (ids differ: sequences do not roll back)."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection, transaction

from channels.models import Channel, ChannelCode, SyncRun, SyncStagedContact
from channels.wecom import contacts, sync_progress
from channels.wecom.contacts import ContactRow, Directory, contacts_apply
from channels.wecom.simulator import Simulator
from channels.wecom.sync import SyncEngine, sync_run_start
from customers.hooks import facts_changed
from customers.models import Activity, Customer, CustomerTag, Follow, Staff, Tag, TagSource
from customers.services import follows_mark_deleted, tag_group_upsert, tag_upsert
from tests.channels.wecom_support import sim_client

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="the set-based path is PG's"),
]

T0 = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)


class _Rollback(Exception):
    pass


def snapshot() -> dict[str, Any]:
    """Every row the apply writes, keyed by what WeCom calls things."""
    ext = {
        pk: e or f"local:{x}"
        for pk, e, x in Customer.objects.values_list("id", "external_userid", "external_id")
    }
    users = dict(Staff.objects.values_list("id", "wecom_userid"))
    tags = dict(Tag.objects.values_list("id", "name"))
    channels = dict(Channel.objects.values_list("id", "name"))
    pair = {
        pk: f"{ext[c]}/{users[s]}"
        for pk, c, s in Follow.objects.values_list("id", "customer_id", "staff_id")
    }
    customers = {
        ext[c["id"]]: {
            **{k: v for k, v in c.items() if k not in ("id", "created_at", "updated_at")},
            "lost_at": None,
            # The simulator serves avatars from its own (random) port.
            "avatar": re.sub(r"^http://127\.0\.0\.1:\d+", "", c["avatar"]),
            "lost": c["lost_at"] is not None,
            "referred_by_id": ext.get(c["referred_by_id"]),
            "source_channel_id": channels.get(c["source_channel_id"]),
            "owner_id": users.get(c["owner_id"]),
        }
        for c in Customer.objects.values()
    }
    follows = {
        pair[f["id"]]: {
            **{
                k: v
                for k, v in f.items()
                # The digest is salted with the channel codes' ids, which differ by run.
                if k
                not in ("id", "customer_id", "staff_id", "updated_at", "deleted_at", "sync_digest")
            },
            "deleted": f["deleted_at"] is not None,
            "tag_ids": [tags[t] for t in f["tag_ids"]],
        }
        for f in Follow.objects.values()
    }

    def key(a: dict[str, Any]) -> str:
        # follow:<id>:<what>:<stamp>; a deletion's stamp is the sweep's clock.
        match = re.fullmatch(r"follow:(\d+):(\w+):(\d+)", a["idempotency_key"])
        if not match:
            return a["idempotency_key"]
        stamp = match[3] if match[2] == "added" else "now"
        return f"follow:{pair[int(match[1])]}:{match[2]}:{stamp}"

    activities = sorted(
        (
            ext[a["customer_id"]],
            a["kind"],
            a["occurred_at"] if a["kind"] != "contact_deleted" else None,
            a["source"],
            users.get(a["staff_id"]) or "",
            repr(sorted((k, repr(v)) for k, v in a["payload"].items() if k != "follow_id")),
            key(a),
        )
        for a in Activity.objects.values()
    )
    links = sorted(
        (ext[c], tags[t], users.get(s) or "")
        for c, t, s in CustomerTag.objects.values_list("customer_id", "tag_id", "staff_id")
    )
    return {"customers": customers, "follows": follows, "activities": activities, "tags": links}


def both_paths(
    monkeypatch: pytest.MonkeyPatch, scenario: Callable[[], Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run ``scenario`` by the portable path, then by the set-based one; returns what
    each left (its snapshot, its return value, and every (customer, fact) announced)."""
    outcomes = []
    for set_based in (False, True):
        monkeypatch.setattr(contacts, "_set_based", lambda set_based=set_based: set_based)
        announced: list[tuple[frozenset[int], frozenset[str]]] = []

        def hear(
            sender: Any, customer_ids: frozenset[int], facts: frozenset[str], **kw: Any
        ) -> None:
            announced.append((customer_ids, facts))  # noqa: B023

        facts_changed.connect(hear, weak=False, dispatch_uid="test-both-paths")
        try:
            with transaction.atomic():
                returned = scenario()
                ext = dict(Customer.objects.values_list("id", "external_userid"))
                heard = sorted(
                    {(str(ext.get(c)), str(f)) for ids, fs in announced for c in ids for f in fs}
                )
                outcomes.append({"rows": snapshot(), "returned": returned, "announced": heard})
                raise _Rollback
        except _Rollback:
            pass
        finally:
            facts_changed.disconnect(dispatch_uid="test-both-paths")
    return outcomes[0], outcomes[1]


def assert_same(reference: dict[str, Any], set_based: dict[str, Any]) -> None:
    for part in ("customers", "follows"):
        mine, theirs = set_based["rows"][part], reference["rows"][part]
        assert mine.keys() == theirs.keys(), part
        differing = {
            k: {f: (v[f], theirs[k][f]) for f in v if v[f] != theirs[k][f]}
            for k, v in mine.items()
            if v != theirs[k]
        }
        assert differing == {}, part
    for part in ("activities", "tags"):
        assert set_based["rows"][part] == reference["rows"][part], part
    assert set_based["returned"] == reference["returned"]
    assert set_based["announced"] == reference["announced"]


# --- hand-made rows: attribution, acquisition time, revival, tags ------------------------


def row(external_userid: str, userid: str, minutes: int, **fields: Any) -> ContactRow:
    return ContactRow(
        external_userid=external_userid,
        name=fields.pop("name", f"name {external_userid}"),
        avatar="https://example.com/a.png",
        gender=fields.pop("gender", 1),
        unionid="",
        userid=userid,
        added_at=T0 + timedelta(minutes=minutes),
        **fields,
    )


def rows_scenario() -> list[tuple[int, int, int]]:
    group, _ = tag_group_upsert(name="wecom group", source=TagSource.WECOM)
    for i in range(1, 4):
        tag_upsert(group=group, name=f"t{i}", data={"wecom_tag_id": f"et{i}"})
    local_group, _ = tag_group_upsert(name="local")
    local, _ = tag_upsert(group=local_group, name="vip")
    poster = Channel.objects.create(name="poster")
    ChannelCode.objects.create(channel=poster, name="poster", state="poster")
    referrer = Customer.objects.create(name="referrer", external_id="r1", acquired_at=T0)
    fission = Channel.objects.create(name="fission")
    ChannelCode.objects.create(channel=fission, name="ref", state="ref1", referrer=referrer)

    def apply(rows: list[ContactRow], **options: Any) -> tuple[int, int, int]:
        result = contacts_apply(rows=rows, directory=Directory.load(), **options)
        return result.relationships, result.created, result.updated

    figures = [
        # First touch is the earliest *coded* follow; profile from the latest follow.
        apply(
            [
                row("wmA", "u1", 20, state="poster", tag_ids=("et1", "et2", "unknown")),
                row("wmA", "u2", 10, name="older name", tag_ids=("et2",)),
                row("wmA", "u3", 30, state="ref1", remark="r\tx\\y\nz", remark_mobiles=("138",)),
                row("wmB", "u1", 5, state="nope", description="d'"),
                row("wmB", "u2", 5, name="same time, later row"),
            ],
            record_added=False,
        )
    ]
    a = Customer.objects.get(external_userid="wmA")
    CustomerTag.objects.create(customer=a, tag=local)
    # B has no attribution yet: a referral code fills both; A keeps its channel.
    ChannelCode.objects.create(channel=fission, name="self", state="selfref", referrer=a)
    figures.append(
        apply(
            [
                row("wmA", "u1", 25, state="selfref", tag_ids=("et3",)),  # later: keeps acquired_at
                row("wmA", "u2", 10, name="older name", tag_ids=("et2",)),  # unchanged
                row("wmB", "u3", 1, state="ref1", name="B renamed"),  # earlier: moves acquired_at
                row("wmC", "u1", 3, state="selfref"),
                row("wmC", "u2", 4, state="poster"),
            ]
        )
    )
    # A's self-referral code never makes A its own referrer.
    figures.append(apply([row("wmA", "u4", 1, state="selfref")]))
    figures.append(apply([row("wmA", "u4", 1, state="selfref")]))  # unchanged: nothing
    # Every follow of B ends: B is lost; one comes back: active again, on the timeline.
    follows_mark_deleted(
        follow_ids=list(
            Follow.objects.filter(customer__external_userid="wmB").values_list("id", flat=True)
        ),
        at=T0 + timedelta(days=1),
        source="wecom",
    )
    figures.append(apply([row("wmB", "u3", 1, state="ref1", name="B renamed", tag_ids=("et1",))]))
    figures.append(apply([row("wmB", "u1", 5, state="nope", description="d'")], record_added=False))
    # Tags of new follows only (linked by the follows statement on PostgreSQL): a tag two
    # new follows carry is put there by the earlier one, whatever their order.
    figures.append(
        apply(
            [
                row("wmD", "u1", 5, tag_ids=("et1", "et2")),
                row("wmD", "u2", 3, tag_ids=("et1",)),
                row("wmE", "u1", 5, tag_ids=("et1",)),
                row("wmE", "u2", 3, tag_ids=("et1",)),
            ]
        )
    )
    # A changed follow beside a new one: u2 still carries et1, so it stays.
    figures.append(
        apply([row("wmD", "u1", 5, tag_ids=("et2",)), row("wmD", "u3", 1, tag_ids=("et3",))])
    )
    # The last follow with et1 drops it, beside a new follow: et1 goes.
    figures.append(apply([row("wmD", "u2", 3, tag_ids=()), row("wmD", "u4", 2, tag_ids=("et2",))]))
    return figures


def test_hand_made_rows_give_the_same_rows_by_both_paths(monkeypatch) -> None:
    reference, set_based = both_paths(monkeypatch, rows_scenario)
    assert reference["rows"]["customers"]["wmB"]["referred_by_id"] == "local:r1"
    assert reference["rows"]["customers"]["wmA"]["referred_by_id"] is None
    assert reference["returned"][3] == (1, 0, 0)
    new_follow_tags = [link for link in reference["rows"]["tags"] if link[0] in ("wmD", "wmE")]
    assert new_follow_tags == [("wmD", "t2", "u1"), ("wmD", "t3", "u3"), ("wmE", "t1", "u2")]
    assert_same(reference, set_based)


# --- a full sync against the simulator, then changes in WeCom ----------------------------


def sync_scenario(
    first_flush_rows: int = 170, stage_first_load: bool = False
) -> list[tuple[int, int, int, int]]:
    """A first sync, a sync of changes, an unchanged one. The first sync's flushes hold
    ``first_flush_rows``; ``stage_first_load`` lets it take two passes."""
    with Simulator(contacts=150, staff=6, seed=11) as sim:
        client = sim_client(sim)
        poster = Channel.objects.create(name="poster")
        ChannelCode.objects.create(channel=poster, name="sh", state="store_sh_01")
        referrer = Customer.objects.create(name="referrer", external_id="r1", acquired_at=T0)
        ChannelCode.objects.create(
            channel=poster, name="bj", state="store_bj_02", referrer=referrer
        )

        def run(**options: Any) -> tuple[int, int, int, int]:
            done = SyncEngine(sync_run_start(), client, retry_delays=(0.01,), **options).execute()
            return done.relationships, done.created, done.updated, done.deleted

        figures = [run(flush_rows=first_flush_rows, stage_first_load=stage_first_load)]
        pairs = sorted(sim.relationships())
        tag_ids = sorted(t for t in Tag.objects.values_list("wecom_tag_id", flat=True) if t)
        for external_userid, userid in pairs[:10]:
            sim.edit_follow(
                userid, external_userid, remark="edited", add_tags=tag_ids[:2], emit=False
            )
        for external_userid, userid in pairs[10:14]:
            sim.delete_follow(userid, external_userid, emit=False)
        sim.delete_tag(tag_ids[3], emit=False)
        figures.append(run(flush_rows=170))
        figures.append(run(flush_rows=1000))  # unchanged
        assert SyncRun.objects.filter(status="succeeded").count() == 3
        return figures


def test_a_sync_and_a_resync_give_the_same_rows_by_both_paths(monkeypatch) -> None:
    # One pass each: the portable path stages nothing.
    reference, set_based = both_paths(monkeypatch, sync_scenario)
    assert reference["returned"][2][1:] == (0, 0, 0)
    assert set_based["rows"]["activities"], "deletions are on the timeline"
    assert_same(reference, set_based)


def test_a_first_sync_in_two_passes_writes_what_one_pass_over_every_row_writes(
    monkeypatch,
) -> None:
    """The two passes (small flushes, so several downloads' parts and chunks) against one
    pass whose single flush holds every row: the one-pass result that depends on no page
    boundary. (With smaller flushes, one pass gives a customer the owner who added them
    first among the rows of the first flush that lists them, not the first of all.)"""
    chunks: list[tuple[int, int]] = []
    apply_staged = contacts.contacts_apply_staged

    def spy(**kwargs: Any) -> Any:
        chunks.append(kwargs["buckets"])
        return apply_staged(**kwargs)

    monkeypatch.setattr(contacts, "contacts_apply_staged", spy)
    outcomes: list[dict[str, Any]] = []
    variants: list[dict[str, Any]] = [
        {"first_flush_rows": 10**6},
        {"first_flush_rows": 60, "stage_first_load": True},
    ]
    for options in variants:
        try:
            with transaction.atomic():
                returned = sync_scenario(**options)
                outcomes.append({"rows": snapshot(), "returned": returned, "announced": []})
                assert not SyncStagedContact.objects.exists()
                raise _Rollback
        except _Rollback:
            pass
    one_pass, two_passes = outcomes
    # Only the first sync of the second scenario took two passes, in several chunks
    # that cover every bucket.
    assert len(chunks) > 3
    assert chunks[0][0] == 0 and chunks[-1][1] == sync_progress.BUCKETS
    assert all(low == high for (_l, low), (high, _h) in itertools.pairwise(chunks))
    # Every customer and follow created once, none written twice.
    relationships, created, updated, _deleted = two_passes["returned"][0]
    assert created == len(two_passes["rows"]["customers"]) - 1 + relationships
    assert updated == 0
    assert_same(one_pass, two_passes)
