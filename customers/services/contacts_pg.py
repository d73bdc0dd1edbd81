"""Platform contacts applied set-based, on PostgreSQL only.

The same writes as ``contacts_upsert`` + ``follows_upsert`` + ``activities_record`` +
``customer_tags_sync`` (the portable path, which stays the reference and the SQLite
path), done by a handful of statements over a staging table instead of reading rows into
Python, diffing them and writing them back. A WeCom sync spends most of its time there
otherwise: a million relationships are a million dicts built, compared and serialized.

Per call: the rows are COPied into a temporary table (created once per connection,
emptied at commit), then

1. customers: ``INSERT ... ON CONFLICT (external_userid) DO UPDATE ... WHERE`` something
   changed, with the rules of ``_contact_changes`` written in SQL;
2. follows: a plain ``INSERT`` for the customers step 1 created, ``INSERT ... ON
   CONFLICT (customer_id, staff_id) DO UPDATE ... WHERE`` something changed for the
   others; a snapshot of the pairs before the statement tells revived follows;
3. timeline: a ``contact_added`` activity per new or revived follow (same keys as the
   portable path, ``ON CONFLICT DO NOTHING``);
4. the touched customers' WeCom tags become the union of their active follows' tags
   (for a customer whose written follows are all new, the follows statement itself adds
   their tags; the others go through ``_TAGS_SYNC``);
5. customers whose follow came back are re-evaluated lost/active.

Facts are announced as the portable services announce them.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import NotSupportedError, connection, transaction
from django.utils import timezone

from customers.hooks import Fact, announce
from customers.models import (
    Activity,
    Customer,
    CustomerTag,
    Follow,
    Staff,
    Store,
    Tag,
    TagGroup,
    TagSource,
)
from customers.services._bulk_sql import copy_text
from customers.services._key_checks import parents_lock, rows_unchecked
from customers.services.customers import customers_refresh_status


@dataclass(frozen=True, slots=True, kw_only=True)
class ContactFollowInput:
    """One (customer, staff member) pair as the platform describes it now.

    ``source_channel_id`` / ``referred_by_id`` come from the pair's channel code (None
    when its state is no known code); ``tag_ids`` are our Tag ids, sorted."""

    external_userid: str
    name: str
    avatar: str
    gender: int
    unionid: str
    staff_id: int
    userid: str
    added_at: datetime
    remark: str
    description: str
    remark_mobiles: Sequence[str]
    add_way: int
    state: str
    oper_userid: str
    tag_ids: Sequence[int]
    source_channel_id: int | None
    referred_by_id: int | None
    sync_digest: str


@dataclass
class ContactFollowsResult:
    customers_created: int = 0
    customers_updated: int = 0
    follows_created: int = 0
    follows_updated: int = 0
    #: Every follow the call wrote (created, changed or revived), in no particular order.
    #: A row whose follow already holds exactly its values is not written, and not here:
    #: callers skip those first (``contact_follows_unchanged``).
    follow_ids: list[int] = field(default_factory=list)


_STAGE = "_contact_follow_stage"
#: The customers the upsert wrote, by WeCom id, and whether it created them (see
#: ``_FOLLOWS_UPSERT``).
_CUSTOMER_IDS = "_contact_written_customers"
#: The fields of a line given to ``contact_follows_apply_copy``, in order (tab-separated,
#: COPY's text format). ``ord`` is the row's position: later rows of a pair win.
_STAGE_COLUMNS = (
    ("ord", "integer"),
    ("external_userid", "text"),
    ("name", "text"),
    ("avatar", "text"),
    ("gender", "smallint"),
    ("unionid", "text"),
    ("staff_id", "bigint"),
    ("userid", "text"),
    ("added_at", "timestamptz"),
    ("remark", "text"),
    ("description", "text"),
    ("remark_mobiles", "jsonb"),
    ("add_way", "integer"),
    ("state", "text"),
    ("oper_userid", "text"),
    ("tag_ids", "jsonb"),
    ("source_channel_id", "bigint"),
    ("referred_by_id", "bigint"),
    ("sync_digest", "text"),
)

STAGE_FIELDS = tuple(name for name, _kind in _STAGE_COLUMNS)

_text = copy_text


def _opt(value: int | None) -> str:
    return r"\N" if value is None else str(value)


def _copy_line(ord_: int, row: ContactFollowInput) -> str:
    return "\t".join(
        (
            str(ord_),
            _text(row.external_userid),
            _text(row.name),
            _text(row.avatar),
            str(row.gender),
            _text(row.unionid),
            str(row.staff_id),
            _text(row.userid),
            row.added_at.isoformat(),
            _text(row.remark),
            _text(row.description),
            _text(json.dumps(list(row.remark_mobiles), ensure_ascii=False)),
            str(row.add_way),
            _text(row.state),
            _text(row.oper_userid),
            json.dumps(list(row.tag_ids)),
            _opt(row.source_channel_id),
            _opt(row.referred_by_id),
            _text(row.sync_digest),
        )
    )


def _channel_table() -> str:
    # By the model's relation: customers imports nothing from channels.
    related = Customer._meta.get_field("source_channel").related_model
    assert related is not None and not isinstance(related, str)
    return str(related._meta.db_table)


#: The ids of the WeCom-sourced tags (``%(wecom)s``), which the sync keeps in step.
_WECOM_TAG_IDS = (
    "SELECT t.id FROM {tag} t JOIN {taggroup} g ON g.id = t.group_id AND g.source = %(wecom)s"
)


def _tables() -> dict[str, str]:
    qn = connection.ops.quote_name
    names = {
        "stage": _STAGE,
        "customer_ids": _CUSTOMER_IDS,
        "customer": qn(Customer._meta.db_table),
        "follow": qn(Follow._meta.db_table),
        "staff": qn(Staff._meta.db_table),
        "activity": qn(Activity._meta.db_table),
        "customertag": qn(CustomerTag._meta.db_table),
        "tag": qn(Tag._meta.db_table),
        "taggroup": qn(TagGroup._meta.db_table),
    }
    return {**names, "wecom_tag_ids": _WECOM_TAG_IDS.format(**names)}


# Per customer, as ``_contact_inputs`` + ``_contact_changes``: the profile of its latest
# follow (ties: the later row), the earliest add time, and the first channel code met in
# add-time order. A known customer keeps an earlier acquired_at, and its attribution
# where it has one; it never becomes its own referrer. Unchanged customers are not
# written (the WHERE), so a re-sync bumps no updated_at.
_CUSTOMERS_UPSERT = """
WITH latest AS (
    SELECT DISTINCT ON (external_userid) external_userid, name, avatar, gender, unionid
    FROM {stage} ORDER BY external_userid, added_at DESC, ord DESC
), acquired AS (
    SELECT external_userid, min(added_at) AS acquired_at, min(ord) AS first_ord
    FROM {stage} GROUP BY external_userid
), first_added AS (
    -- The staff member who added the customer first owns them, for their store.
    SELECT DISTINCT ON (s.external_userid) s.external_userid, s.staff_id AS owner_id,
        st.store_id
    FROM {stage} s JOIN {staff} st ON st.id = s.staff_id
    ORDER BY s.external_userid, s.added_at, s.ord
), coded AS (
    SELECT DISTINCT ON (external_userid) external_userid, source_channel_id, referred_by_id
    FROM {stage} WHERE source_channel_id IS NOT NULL
    ORDER BY external_userid, added_at, ord
), written AS (
INSERT INTO {customer} AS c (
    external_userid, name, avatar, gender, unionid, acquired_at, source_channel_id,
    referred_by_id, external_id, phone, birthday, owner_id, store_id, status, lost_at,
    created_at, updated_at
)
SELECT l.external_userid, l.name, l.avatar, l.gender, l.unionid, a.acquired_at,
    k.source_channel_id, k.referred_by_id, NULL, '', NULL, o.owner_id, o.store_id,
    'active', NULL, %(now)s, %(now)s
FROM latest l
JOIN acquired a USING (external_userid)
JOIN first_added o USING (external_userid)
LEFT JOIN coded k USING (external_userid)
ORDER BY a.first_ord
ON CONFLICT (external_userid) DO UPDATE SET
    name = EXCLUDED.name,
    avatar = EXCLUDED.avatar,
    gender = EXCLUDED.gender,
    unionid = EXCLUDED.unionid,
    acquired_at = LEAST(c.acquired_at, EXCLUDED.acquired_at),
    source_channel_id = COALESCE(c.source_channel_id, EXCLUDED.source_channel_id),
    owner_id = COALESCE(c.owner_id, EXCLUDED.owner_id),
    store_id = COALESCE(c.store_id, EXCLUDED.store_id),
    referred_by_id = CASE
        WHEN c.referred_by_id IS NULL AND EXCLUDED.referred_by_id <> c.id
        THEN EXCLUDED.referred_by_id ELSE c.referred_by_id END,
    updated_at = %(now)s
WHERE (c.name, c.avatar, c.gender, c.unionid)
        IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.avatar, EXCLUDED.gender, EXCLUDED.unionid)
    OR EXCLUDED.acquired_at < c.acquired_at
    OR (c.source_channel_id IS NULL AND EXCLUDED.source_channel_id IS NOT NULL)
    OR (c.owner_id IS NULL AND EXCLUDED.owner_id IS NOT NULL)
    OR (c.store_id IS NULL AND EXCLUDED.store_id IS NOT NULL)
    OR (c.referred_by_id IS NULL AND EXCLUDED.referred_by_id <> c.id)
RETURNING c.id, c.external_userid, c.xmax = 0 AS created, c.referred_by_id, c.store_id
), known AS (
    INSERT INTO {customer_ids} (external_userid, id, created)
    SELECT external_userid, id, created FROM written
)
SELECT id, created, referred_by_id, store_id FROM written
"""


def _follows_insert(which: str) -> str:
    """The follows' INSERT of ``_FOLLOWS_UPSERT`` for the ``src`` rows where ``which``."""
    return f"""
    INSERT INTO {{follow}} AS f (
        customer_id, staff_id, added_at, state, remark, description, add_way, oper_userid,
        remark_mobiles, tag_ids, sync_digest, deleted_at, updated_at
    )
    SELECT customer_id, staff_id, added_at, state, remark, description, add_way, oper_userid,
        remark_mobiles, tag_ids, sync_digest, NULL, %(now)s
    FROM src WHERE {which}
    ORDER BY ord"""


_FOLLOWS_RETURNING = (
    "RETURNING f.id, f.customer_id, f.staff_id, f.added_at, f.tag_ids, f.xmax = 0 AS created"
)


def _links_insert(written: str, where: str = "", on_conflict: str = "") -> str:
    """The tag links' INSERT of ``_FOLLOWS_UPSERT`` for the follows ``written`` (those
    ``where`` holds), each link recorded as put there by its earliest follow."""
    return f"""
    INSERT INTO {{customertag}} (customer_id, tag_id, staff_id, created_at)
    SELECT DISTINCT ON (w.customer_id, t.id) w.customer_id, t.id, w.staff_id, %(now)s
    FROM {written} w
    CROSS JOIN LATERAL jsonb_array_elements_text(w.tag_ids) AS e(tag_id)
    JOIN wecom_tag t ON t.id = e.tag_id::bigint
    {f"WHERE {where}" if where else ""}
    ORDER BY w.customer_id, t.id, w.added_at, w.id
    {on_conflict}
    RETURNING customer_id, tag_id"""


# The last row of a pair wins, as in ``follows_upsert``. ``deleted_before`` reads the
# statement's snapshot, i.e. the pair as it was before this INSERT: a follow that was
# deleted there and is written here came back. Every input row of a pair whose digest differs is
# written (an unchanged row was skipped by the caller), so "changed" is what the WHERE
# lets through.
#
# The follows of customers the customers upsert just created (``new_customer``) cannot
# exist yet: no other transaction can see those customers, and this one wrote none of
# their follows (the pairs of ``src`` are distinct). Those rows skip the look-up of the
# pair and go in by a plain INSERT (``written_new``), without the upsert's speculative
# insertion and its probe of the unique index first; what a corp's first sync writes is
# mostly these. For a part of 7,500 new customers' follows (``EXPLAIN (ANALYZE,
# BUFFERS)``), the statement read 76,000 buffers instead of 129,000. The others take the
# upsert (``written_old``).
#
# ``linked``: the WeCom tags of customers whose every follow written here is new (what
# a corp's first sync writes, page after page). Adding follows only adds wanted tags,
# so their links are the new follows' tags inserted where missing, each recorded as put
# there by the earliest new follow that carries it; a link that exists already came from
# an earlier follow, the earliest. ``_TAGS_SYNC`` would write the same rows after reading
# every follow and link of these customers again (in a 300,000-relationship first sync,
# the follows and tags statements took 17.0 s this way against 19.3 s). A customer with a
# follow changed or revived here may have lost a tag: those still go through
# ``_TAGS_SYNC``. The customers created just now have no link yet: their follows'
# tags go in by a plain INSERT (``linked_new``), without the probe of the unique
# (customer, tag) index that ON CONFLICT makes before each row; the others'
# (``linked_old``) may meet a link an earlier follow put there.
_FOLLOWS_UPSERT = (
    """
WITH wecom_tag AS MATERIALIZED (
    -- Materialized: inlined, the planner drove the join from the tag groups and read
    -- every written follow's tags once per WeCom tag group.
    {wecom_tag_ids}
), src AS (
    SELECT DISTINCT ON (c.id, s.staff_id) c.id AS customer_id, c.created AS new_customer,
        s.*, b.deleted_at AS deleted_before
    FROM {stage} s
    -- LATERAL ... LIMIT 1: a probe of the unique index per row, whatever the planner
    -- thinks of the stage's size (hash joins here read the whole customer and follow
    -- tables on every flush, and a million-row sync turns quadratic). The customers the
    -- upsert wrote are looked up in its small temporary table first: a probe there took
    -- a fraction of one into the customers' WeCom id index (10 µs a row at a million,
    -- the follows statement's largest part after its inserts). With LIMIT 1 the second
    -- branch runs only when the first finds nothing; a stage row whose customer is in
    -- neither gets no row, and is not written.
    CROSS JOIN LATERAL (
        SELECT k.id, k.created FROM {customer_ids} k WHERE k.external_userid = s.external_userid
        UNION ALL
        SELECT c.id, false FROM {customer} c WHERE c.external_userid = s.external_userid
        LIMIT 1
    ) c
    LEFT JOIN LATERAL (
        -- NOT c.created: a one-time filter, no probe for a customer created just now.
        SELECT f.deleted_at FROM {follow} f
        WHERE NOT c.created AND f.customer_id = c.id AND f.staff_id = s.staff_id LIMIT 1
    ) b ON true
    ORDER BY c.id, s.staff_id, s.ord DESC
), written_new AS ("""
    + _follows_insert("new_customer")
    + "\n    "
    + _FOLLOWS_RETURNING
    + """
), written_old AS ("""
    + _follows_insert("NOT new_customer")
    + """
    ON CONFLICT (customer_id, staff_id) DO UPDATE SET
        added_at = EXCLUDED.added_at,
        state = EXCLUDED.state,
        remark = EXCLUDED.remark,
        description = EXCLUDED.description,
        add_way = EXCLUDED.add_way,
        oper_userid = EXCLUDED.oper_userid,
        remark_mobiles = EXCLUDED.remark_mobiles,
        tag_ids = EXCLUDED.tag_ids,
        sync_digest = EXCLUDED.sync_digest,
        deleted_at = NULL,
        updated_at = %(now)s
    WHERE (f.added_at, f.state, f.remark, f.description, f.add_way, f.oper_userid,
            f.remark_mobiles, f.tag_ids, f.sync_digest, f.deleted_at)
        IS DISTINCT FROM (EXCLUDED.added_at, EXCLUDED.state, EXCLUDED.remark,
            EXCLUDED.description, EXCLUDED.add_way, EXCLUDED.oper_userid,
            EXCLUDED.remark_mobiles, EXCLUDED.tag_ids, EXCLUDED.sync_digest, NULL::timestamptz)
    """
    + _FOLLOWS_RETURNING
    + """
), written AS (
    SELECT * FROM written_new UNION ALL SELECT * FROM written_old
), linked_new AS ("""
    + _links_insert("written_new")
    + """
), linked_old AS ("""
    + _links_insert(
        "written_old",
        where="w.customer_id NOT IN (SELECT customer_id FROM written_old WHERE NOT created)",
        on_conflict="ON CONFLICT (customer_id, tag_id) DO NOTHING",
    )
    + """
), linked AS (
    SELECT * FROM linked_new UNION ALL SELECT * FROM linked_old
)
-- The follows written, then the links added (``id`` NULL).
SELECT w.id, w.customer_id, w.created, src.deleted_before IS NOT NULL AS revived, NULL::bigint
FROM written w
JOIN src USING (customer_id, staff_id)
UNION ALL
SELECT NULL, customer_id, NULL, NULL, tag_id FROM linked
"""
)

# The timeline's "added" event, keyed as the portable path keys it (follow id and the
# add time's epoch seconds), so the callback and the sync agree on it.
_ACTIVITIES_INSERT = """
INSERT INTO {activity} (
    customer_id, kind, occurred_at, source, staff_id, payload, idempotency_key, created_at
)
SELECT f.customer_id, 'contact_added', s.added_at, 'wecom', f.staff_id,
    jsonb_build_object('userid', s.userid, 'state', s.state, 'add_way', s.add_way),
    'follow:' || f.id || ':added:' || floor(extract(epoch FROM s.added_at))::bigint,
    %(now)s
FROM {follow} f
JOIN {customer} c ON c.id = f.customer_id
-- The last row of each pair, joined once (a LATERAL per follow would scan the unindexed
-- stage once per added follow).
JOIN (
    SELECT DISTINCT ON (external_userid, staff_id) * FROM {stage}
    ORDER BY external_userid, staff_id, ord DESC
) s ON s.external_userid = c.external_userid AND s.staff_id = f.staff_id
WHERE f.id = ANY(%(follow_ids)s)
ORDER BY f.id
ON CONFLICT (idempotency_key) DO NOTHING
RETURNING customer_id
"""

# As ``customer_tags_sync``: a customer carries a WeCom tag while an active follow does;
# the earliest such follow (added_at, id) is recorded as who put it there. Local tags and
# links that stay are left alone. One statement: the wanted links are computed once and
# shared by the DELETE and the INSERT (no scratch table to create, truncate and re-read
# per flush). The DELETE removes only unwanted links and the INSERT adds only wanted
# ones, so the two never touch the same row within the statement's snapshot.
_TAGS_SYNC = """
WITH wecom_tag AS ({wecom_tag_ids}), wanted AS (
    SELECT DISTINCT ON (f.customer_id, t.id) f.customer_id, t.id AS tag_id, f.staff_id
    FROM {follow} f
    CROSS JOIN LATERAL jsonb_array_elements_text(f.tag_ids) AS e(tag_id)
    JOIN wecom_tag t ON t.id = e.tag_id::bigint
    WHERE f.customer_id = ANY(%(customer_ids)s) AND f.deleted_at IS NULL
    ORDER BY f.customer_id, t.id, f.added_at, f.id
), existing AS MATERIALIZED (
    -- The touched customers' links, read once by index on the customer (written as a
    -- filter on the tag, the planner would probe the index once per WeCom tag).
    SELECT ct.id, ct.customer_id, ct.tag_id
    FROM {customertag} ct WHERE ct.customer_id = ANY(%(customer_ids)s)
), deleted AS (
    DELETE FROM {customertag} ct
    USING existing x
    WHERE ct.id = x.id
        AND x.tag_id IN (SELECT id FROM wecom_tag)
        AND NOT EXISTS (
            SELECT 1 FROM wanted w WHERE w.customer_id = x.customer_id AND w.tag_id = x.tag_id
        )
    RETURNING ct.customer_id
), inserted AS (
    INSERT INTO {customertag} (customer_id, tag_id, staff_id, created_at)
    SELECT w.customer_id, w.tag_id, w.staff_id, %(now)s
    FROM wanted w
    WHERE NOT EXISTS (
        SELECT 1 FROM existing x WHERE x.customer_id = w.customer_id AND x.tag_id = w.tag_id
    )
    ORDER BY w.customer_id, w.tag_id
    ON CONFLICT (customer_id, tag_id) DO NOTHING
    RETURNING customer_id, tag_id
)
SELECT customer_id, NULL::bigint FROM deleted UNION ALL SELECT customer_id, tag_id FROM inserted
"""


_STAGE_PARENTS = f"""
SELECT array_agg(DISTINCT staff_id), array_agg(DISTINCT source_channel_id),
    array_agg(DISTINCT referred_by_id)
FROM {_STAGE}
"""


def _stage(cursor: Any, fill: Callable[[Any], None]) -> None:
    columns = ", ".join(f"{name} {kind}" for name, kind in _STAGE_COLUMNS)
    # Created once per connection; ON COMMIT DELETE ROWS empties them with each flush.
    cursor.execute(
        f"CREATE TEMP TABLE IF NOT EXISTS {_STAGE} ({columns}) ON COMMIT DELETE ROWS; "
        f"CREATE TEMP TABLE IF NOT EXISTS {_CUSTOMER_IDS} "
        "(external_userid text PRIMARY KEY, id bigint NOT NULL, created boolean NOT NULL) "
        "ON COMMIT DELETE ROWS"
    )
    # A caller may apply twice within one transaction (tests, nested atomic blocks).
    cursor.execute(f"TRUNCATE {_STAGE}, {_CUSTOMER_IDS}")
    fill(cursor)


# Pairs whose active follow already carries the row's digest: the row was applied
# before, as it is. Keys come as arrays (one statement, no staging), looked up by index.
_UNCHANGED = """
SELECT k.ord, f.id
FROM unnest(%(external_userids)s::text[], %(staff_ids)s::bigint[], %(digests)s::text[])
    WITH ORDINALITY AS k(external_userid, staff_id, digest, ord)
-- LATERAL ... LIMIT 1 keeps the plan a probe of two indexes per key: the planner cannot
-- size an unnest(), and would otherwise hash the whole customer and follow tables.
CROSS JOIN LATERAL (
    SELECT f.id FROM {customer} c
    JOIN {follow} f ON f.customer_id = c.id AND f.staff_id = k.staff_id
    WHERE c.external_userid = k.external_userid
        AND f.deleted_at IS NULL AND f.sync_digest = k.digest
    LIMIT 1
) f
"""


def contact_follows_unchanged(
    *, external_userids: Sequence[str], staff_ids: Sequence[int], digests: Sequence[str]
) -> dict[int, int]:
    """Position in the input -> follow id, for each (customer, staff member, digest) whose
    active follow already carries that ``sync_digest``. PostgreSQL only."""
    if not digests:
        return {}
    with connection.cursor() as wrapper, connection.wrap_database_errors:
        wrapper.cursor.execute(
            _UNCHANGED.format(**_tables()),
            {
                "external_userids": list(external_userids),
                "staff_ids": list(staff_ids),
                "digests": list(digests),
            },
        )
        return {ord_ - 1: follow_id for ord_, follow_id in wrapper.cursor.fetchall()}


def _tags_sync(cursor: Any, customer_ids: list[int], now: datetime, tables: dict[str, str]) -> None:
    params = {"customer_ids": customer_ids, "wecom": TagSource.WECOM.value, "now": now}
    with rows_unchecked(cursor) as unchecked:
        cursor.execute(_TAGS_SYNC.format(**tables), params)
        rows = cursor.fetchall()
    if unchecked:
        # The customers are the flush's, locked by its upserts (see below).
        parents_lock(cursor, {Tag._meta.db_table: (tag_id for _c, tag_id in rows)})
    announce({customer_id for customer_id, _t in rows}, Fact.TAG)


@transaction.atomic
def contact_follows_apply_pg(
    *, rows: Sequence[ContactFollowInput], record_added: bool = True
) -> ContactFollowsResult:
    """Write these pairs: customers, follows, ``contact_added`` timeline events (unless
    ``record_added`` is False) and the customers' WeCom tags, all or nothing.

    Counts as the portable path counts: a customer or follow is created, or updated when
    one of its stored values changed; unchanged rows are neither, and not written.
    PostgreSQL only.
    """
    lines = "".join(_copy_line(i, row) + "\n" for i, row in enumerate(rows))
    return contact_follows_apply_copy(lines=lines, record_added=record_added)


@transaction.atomic
def contact_follows_apply_copy(*, lines: str, record_added: bool = True) -> ContactFollowsResult:
    """``contact_follows_apply_pg`` for rows already in COPY's text format, one line per
    row with the ``STAGE_FIELDS`` (callers that hold rows in another shape build the text
    once, without an intermediate object per row)."""
    if not lines:
        return ContactFollowsResult()

    def fill(cursor: Any) -> None:
        cursor.copy_expert(
            f"COPY {_STAGE} ({', '.join(STAGE_FIELDS)}) FROM STDIN", io.StringIO(lines)
        )

    return _apply(fill, record_added=record_added)


@transaction.atomic
def contact_follows_apply_select(
    *, select: str, params: dict[str, Any], record_added: bool = True
) -> ContactFollowsResult:
    """``contact_follows_apply_pg`` for rows the server already holds: ``select`` (with
    ``params``) yields the ``STAGE_FIELDS`` in order, ``ord`` first. The rows never travel
    through Python (a sync's first load applies what it staged this way)."""

    def fill(cursor: Any) -> None:
        cursor.execute(f"INSERT INTO {_STAGE} ({', '.join(STAGE_FIELDS)}) {select}", params)

    return _apply(fill, record_added=record_added)


def _apply(fill: Callable[[Any], None], *, record_added: bool) -> ContactFollowsResult:
    """The statements of the module's docstring over the stage ``fill`` puts in."""
    result = ContactFollowsResult()
    if connection.vendor != "postgresql":
        raise NotSupportedError("the set-based contacts path needs PostgreSQL")
    tables = _tables()
    now = timezone.now()
    with connection.cursor() as wrapper, connection.wrap_database_errors:
        # The raw psycopg2 cursor: COPY, and no per-statement overhead of Django's wrapper.
        cursor = wrapper.cursor
        # The stage is small and the tables it joins are hot in cache; at the server's
        # default random_page_cost (4) the planner hashes the whole customer and follow
        # tables on every call instead of looking a few thousand keys up by index. The
        # app's connections plan at 1.1 already (DATABASE_RANDOM_PAGE_COST), but an
        # operator's other value must not cost every flush a full scan: pinned here, as
        # the funnel's rebuild pins 4 for its whole-table plans. Restored below.
        cursor.execute(
            "SELECT current_setting('random_page_cost'), "
            "set_config('random_page_cost', '1.1', true)"
        )
        random_page_cost = cursor.fetchone()[0]
        _stage(cursor, fill)

        # The foreign keys of the rows written below are checked once per parent row
        # (``_key_checks``) instead of per row. Every customer the follows, tag links and
        # timeline rows point at is one of the stage's, which the customers upsert either
        # inserts or locks: ON CONFLICT DO UPDATE locks the existing row even where its
        # WHERE leaves it unchanged. The other parents are locked here, after the writes
        # and before COMMIT, as the deferred triggers would have been.
        with rows_unchecked(cursor) as unchecked:
            cursor.execute(_CUSTOMERS_UPSERT.format(**tables), {"now": now})
            customer_rows = cursor.fetchall()
        changed_customers: set[int] = set()
        created_customers: set[int] = set()
        referrers: set[int] = set()
        stores: set[int] = set()
        for customer_id, created, referred_by_id, store_id in customer_rows:
            changed_customers.add(customer_id)
            if referred_by_id:
                referrers.add(referred_by_id)
            if created:
                created_customers.add(customer_id)
            stores.add(store_id)
        result.customers_created = len(created_customers)
        result.customers_updated = len(changed_customers) - len(created_customers)
        announce(
            changed_customers | referrers,
            Fact.CUSTOMER,
            *([Fact.REFERRAL] if referrers else []),
            created_ids=created_customers,
        )

        with rows_unchecked(cursor):
            cursor.execute(
                _FOLLOWS_UPSERT.format(**tables), {"now": now, "wecom": TagSource.WECOM.value}
            )
            follow_rows = cursor.fetchall()
        added: list[int] = []
        revived: set[int] = set()
        changed_follow_customers: set[int] = set()
        # The tag links the statement added, and the customers with a follow written
        # here that is not new, whose tags it left to ``_TAGS_SYNC``.
        linked: list[tuple[int, int]] = []
        follows_changed: set[int] = set()
        for follow_id, customer_id, created, was_deleted, tag_id in follow_rows:
            if follow_id is None:
                linked.append((customer_id, tag_id))
                continue
            result.follow_ids.append(follow_id)
            changed_follow_customers.add(customer_id)
            if created:
                result.follows_created += 1
            else:
                result.follows_updated += 1
                follows_changed.add(customer_id)
            if was_deleted:
                revived.add(customer_id)
            if created or was_deleted:
                added.append(follow_id)
        if unchecked:
            # The parents of the customers and follows just written, and of the timeline
            # rows below. Owners, channels and referrers are written from the stage's
            # values or kept (a key left as it is needs no check), follows carry the
            # stage's staff members; the store is the owner's at the time of the upsert.
            cursor.execute(_STAGE_PARENTS)
            staff, channels, referred_by = cursor.fetchone()
            parents_lock(
                cursor,
                {
                    Staff._meta.db_table: staff,
                    Store._meta.db_table: stores,
                    _channel_table(): channels,
                    Customer._meta.db_table: referred_by,
                    Tag._meta.db_table: (tag_id for _c, tag_id in linked),
                },
            )
        announce(changed_follow_customers, Fact.FOLLOW)
        if linked:
            announce({customer_id for customer_id, _t in linked}, Fact.TAG)

        if record_added and added:
            # Their customers are the flush's and their staff the follows' (locked above).
            with rows_unchecked(cursor):
                cursor.execute(
                    _ACTIVITIES_INSERT.format(**tables), {"now": now, "follow_ids": added}
                )
                recorded = {r[0] for r in cursor.fetchall()}
            announce(recorded, Fact.ACTIVITY, activity_kinds={"contact_added"})

        if follows_changed:
            _tags_sync(cursor, sorted(follows_changed), now, tables)
        cursor.execute("SELECT set_config('random_page_cost', %s, true)", [random_page_cost])
    if revived:
        customers_refresh_status(customer_ids=revived, at=now)
    return result
