"""WeCom contact payloads -> our customers, follows and tags.

Both doors by which WeCom contacts arrive use this module: the full sync (pages of
``batch/get_by_user``) and the callbacks (``externalcontact/get`` after an add or edit
event). One path means one set of rules: a customer's acquisition time is the earliest
follow's add time, the first channel code (``state``) seen on the customer is its source
channel, a referral code sets ``referred_by``, and every follow keeps its own state.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
from collections import defaultdict
from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from hashlib import blake2b
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from channels.models import ChannelCode, SyncSeenFollow, SyncStagedContact
from customers.models import Follow, Staff, Tag
from customers.services import (
    ActivityInput,
    ContactInput,
    FollowInput,
    activities_record,
    contacts_upsert,
    customer_tags_sync,
    customers_refresh_status,
    follows_upsert,
    staff_bulk_ensure,
)
from customers.services._bulk_sql import COPY_NULL, insert_rows
from customers.services.contacts_pg import (
    STAGE_FIELDS,
    contact_follows_apply_copy,
    contact_follows_apply_select,
    contact_follows_unchanged,
    copy_text,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True, slots=True)
class ContactRow:
    """One (customer, follower) pair as WeCom describes it."""

    external_userid: str
    name: str
    avatar: str
    gender: int
    unionid: str
    userid: str
    added_at: datetime
    remark: str = ""
    description: str = ""
    remark_mobiles: tuple[str, ...] = ()
    add_way: int = 0
    state: str = ""
    oper_userid: str = ""
    tag_ids: tuple[str, ...] = ()

    def digest(self, salt: str) -> str:
        """A fingerprint of everything this row would write, plus ``salt`` (the state ->
        channel look-up it was attributed with). Stored on the follow, it lets an unchanged
        re-sync skip the row after one read instead of comparing every table.

        The text hashed is the dataclass's ``repr`` (digests stored by earlier versions
        stay valid), spelled out: the generated ``__repr__`` goes through a recursion
        guard per call, a sixth of a sync's digest time for nothing (a test keeps the
        two equal)."""
        text = (
            f"{salt}|ContactRow(external_userid={self.external_userid!r}, name={self.name!r}, "
            f"avatar={self.avatar!r}, gender={self.gender!r}, unionid={self.unionid!r}, "
            f"userid={self.userid!r}, added_at={self.added_at!r}, remark={self.remark!r}, "
            f"description={self.description!r}, remark_mobiles={self.remark_mobiles!r}, "
            f"add_way={self.add_way!r}, state={self.state!r}, "
            f"oper_userid={self.oper_userid!r}, tag_ids={self.tag_ids!r})"
        )
        return blake2b(text.encode(), digest_size=16).hexdigest()


def _int(value: Any, default: int = 0) -> int:
    # Some real responses send numbers as strings ("gender":"1"); be lenient (WECOM.md §1.5).
    if type(value) is int:  # the usual case, without int()'s call
        return value
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _time(value: Any) -> datetime:
    return datetime.fromtimestamp(_int(value), UTC)


def _text(value: Any, limit: int) -> str:
    """``str(value or "")[:limit]``; a string (the usual case) is only cut."""
    if type(value) is str:
        return value[:limit]
    return str(value or "")[:limit]


# _row sets a row's slots through their own descriptors: the frozen dataclass's __init__
# goes through object.__setattr__ for each of the 14 fields (it has to get past the
# frozen __setattr__), which was most of the cost of a row. Bound by name, so the order
# of the fields does not matter; a test keeps _row's rows equal to __init__'s.
_new = object.__new__
_setters = {f.name: getattr(ContactRow, f.name).__set__ for f in fields(ContactRow)}
_set_external_userid = _setters["external_userid"]
_set_name = _setters["name"]
_set_avatar = _setters["avatar"]
_set_gender = _setters["gender"]
_set_unionid = _setters["unionid"]
_set_userid = _setters["userid"]
_set_added_at = _setters["added_at"]
_set_remark = _setters["remark"]
_set_description = _setters["description"]
_set_remark_mobiles = _setters["remark_mobiles"]
_set_add_way = _setters["add_way"]
_set_state = _setters["state"]
_set_oper_userid = _setters["oper_userid"]
_set_tag_ids = _setters["tag_ids"]


def _row(
    contact: Mapping[str, Any], follow: Mapping[str, Any], tag_ids: Iterable[str]
) -> ContactRow:
    gender = _int(contact.get("gender"))
    mobiles = follow.get("remark_mobiles")
    row = _new(ContactRow)
    _set_external_userid(row, str(contact["external_userid"]))
    _set_name(row, _text(contact.get("name"), 128))
    _set_avatar(row, _text(contact.get("avatar"), 500))
    _set_gender(row, gender if gender in (0, 1, 2) else 0)
    _set_unionid(row, _text(contact.get("unionid"), 64))
    _set_userid(row, str(follow["userid"]))
    _set_added_at(row, _time(follow.get("createtime")))
    _set_remark(row, _text(follow.get("remark"), 128))
    _set_description(row, _text(follow.get("description"), 255))
    _set_remark_mobiles(row, tuple(map(str, mobiles)) if mobiles else ())
    _set_add_way(row, _int(follow.get("add_way")))
    _set_state(row, _text(follow.get("state"), 64))
    _set_oper_userid(row, _text(follow.get("oper_userid"), 64))
    _set_tag_ids(row, tuple(sorted({str(t) for t in tag_ids if t})) if tag_ids else ())
    return row


def rows_from_batch(page: Mapping[str, Any]) -> list[ContactRow]:
    """Rows of one ``batch/get_by_user`` page (tags come as ``tag_id`` only)."""
    rows = []
    for item in page.get("external_contact_list") or ():
        follow = item.get("follow_info") or {}
        contact = item.get("external_contact") or {}
        if not contact.get("external_userid") or not follow.get("userid"):
            logger.warning("skipping a batch row without ids: %r", item)
            continue
        rows.append(_row(contact, follow, follow.get("tag_id") or ()))
    return rows


def rows_from_contact(detail: Mapping[str, Any]) -> list[ContactRow]:
    """Rows of one ``externalcontact/get`` answer: one per follower. Personal tags (type 2)
    have no id and are not corp tags, so they are left out, as batch/get_by_user does."""
    contact = detail.get("external_contact") or {}
    if not contact.get("external_userid"):
        return []
    rows = []
    for follow in detail.get("follow_user") or ():
        if not follow.get("userid"):
            continue
        tags = [t.get("tag_id") for t in follow.get("tags") or () if _int(t.get("type")) != 2]
        rows.append(_row(contact, follow, [t for t in tags if t]))
    return rows


@dataclass
class Directory:
    """Look-ups a batch of rows needs, loaded once per sync (or per callback)."""

    staff: dict[str, int] = field(default_factory=dict)
    #: staff id -> their store id (the store of the customers they add first)
    stores: dict[int, int | None] = field(default_factory=dict)
    tags: dict[str, int] = field(default_factory=dict)
    #: state -> (channel_id, referrer customer_id or None)
    codes: dict[str, tuple[int, int | None]] = field(default_factory=dict)

    @classmethod
    def load(cls) -> Directory:
        staff = list(
            Staff.objects.exclude(wecom_userid=None).values_list("wecom_userid", "id", "store_id")
        )
        tags = Tag.objects.exclude(wecom_tag_id=None).values_list("wecom_tag_id", "id")
        codes = ChannelCode.objects.values_list("state", "channel_id", "referrer_id")
        return cls(
            staff={userid: pk for userid, pk, _store in staff if userid},
            stores={pk: store for _userid, pk, store in staff},
            tags={tag_id: pk for tag_id, pk in tags if tag_id},
            codes={state: (channel_id, referrer_id) for state, channel_id, referrer_id in codes},
        )

    @property
    def fingerprint(self) -> str:
        """Changes when channel codes or corp tags do, so that new attribution rules and
        newly known tags reach every row on the next sync."""
        known = repr((sorted(self.codes.items()), sorted(self.tags.items())))
        return hashlib.blake2b(known.encode(), digest_size=8).hexdigest()

    def ensure_staff(self, userids: Iterable[str]) -> None:
        missing = {u for u in userids if u not in self.staff}
        if missing:
            self.staff.update(staff_bulk_ensure(wecom_userids=sorted(missing)))


@dataclass
class ApplyResult:
    relationships: int = 0
    created: int = 0
    updated: int = 0
    follow_ids: list[int] = field(default_factory=list)


def _contact_inputs(rows: Sequence[ContactRow], directory: Directory) -> list[ContactInput]:
    by_customer: dict[str, list[ContactRow]] = defaultdict(list)
    for row in rows:
        by_customer[row.external_userid].append(row)
    inputs = []
    for external_userid, group in by_customer.items():
        group.sort(key=lambda r: r.added_at)
        first = group[0]
        # First touch: the earliest follow that came through a known channel code.
        code = next((directory.codes[r.state] for r in group if r.state in directory.codes), None)
        last = group[-1]
        inputs.append(
            ContactInput(
                external_userid=external_userid,
                name=last.name,
                avatar=last.avatar,
                gender=last.gender,
                unionid=last.unionid,
                acquired_at=first.added_at,
                source_channel_id=code[0] if code else None,
                referred_by_id=code[1] if code else None,
                # The staff member who added the customer first owns them, for their store.
                owner_id=directory.staff[first.userid],
                store_id=directory.stores.get(directory.staff[first.userid]),
            )
        )
    return inputs


def _set_based() -> bool:
    """PostgreSQL applies rows set-based (customers.services.contacts_pg); the portable
    path stays for SQLite and as the reference that
    tests/channels/test_wecom_contacts_pg.py compares it with."""
    return connection.vendor == "postgresql"


@dataclass
class PreparedRows:
    """Rows with what the set-based path needs of them before any database work."""

    rows: Sequence[ContactRow]
    digests: list[str]
    staff_ids: list[int]


def contacts_prepare(*, rows: Sequence[ContactRow], directory: Directory) -> PreparedRows:
    """The CPU half of a set-based apply that needs no transaction: the digests. A sync
    prepares the next flush here while the database applies the previous one. (Missing
    staff, rare in a sync whose first phase created every follow user, are created on
    the way.)"""
    directory.ensure_staff(r.userid for r in rows)
    salt = directory.fingerprint
    staff = directory.staff
    return PreparedRows(
        rows=rows,
        digests=[r.digest(salt) for r in rows],
        staff_ids=[staff[r.userid] for r in rows],
    )


assert len(STAGE_FIELDS) == 19, "_copy_lines writes the stage's fields in order"


# What needs escaping in a JSON string.
_JSON_SPECIAL = re.compile(r'[\x00-\x1f"\\]')


def _json_strings(values: Sequence[str]) -> str:
    """``json.dumps(list(values), ensure_ascii=False)``, without the encoder's overhead
    for the usual plain values (phone numbers)."""
    if not values:
        return "[]"
    joined = '", "'.join(values)
    if _JSON_SPECIAL.search(joined):
        return json.dumps(list(values), ensure_ascii=False)
    return f'["{joined}"]'


_TWO_DIGITS = [f"{n:02d}" for n in range(100)]


def _isoformat(value: datetime) -> str:
    """``value.isoformat()``, spelled out for a sync's times (whole seconds in UTC, from
    ``_time``) at half the cost; any other time goes to isoformat itself."""
    if type(value) is datetime and value.tzinfo is UTC and not value.microsecond:
        year = value.year
        if year >= 1000:
            two = _TWO_DIGITS
            return (
                f"{year}-{two[value.month]}-{two[value.day]}T{two[value.hour]}:"
                f"{two[value.minute]}:{two[value.second]}+00:00"
            )
    return value.isoformat()


#: A stage line has this many tabs when no field holds one.
_TABS = len(STAGE_FIELDS) - 1


def _copy_lines(
    prepared: PreparedRows,
    skip: Container[int],
    directory: Directory,
    keys: Sequence[str] | None = None,
) -> str:
    """The stage's COPY text for the rows not in ``skip`` (positions), built straight from
    the rows: no intermediate object per row, and one check per line for characters to
    escape instead of one per field (most rows have none). Each line starts with the
    row's position (the stage's ``ord``), or with its entry in ``keys``: whole fields,
    tab-separated, written as they are (numbers: nothing to escape)."""
    codes, tags = directory.codes, directory.tags
    rows, digests, staff_ids = prepared.rows, prepared.digests, prepared.staff_ids
    # A flush's rows share few sets of tags and few states: their text once for each.
    tag_texts: dict[tuple[str, ...], str] = {(): "[]"}
    # state -> (its channel and referrer fields, the backslashes of their \N)
    code_texts: dict[str, tuple[str, int]] = {}
    lines = []
    for i, r in enumerate(rows):
        if i in skip:
            continue
        tag_text = tag_texts.get(r.tag_ids)
        if tag_text is None:
            tag_ids = sorted({tags[t] for t in r.tag_ids if t in tags})
            tag_text = tag_texts[r.tag_ids] = f"[{', '.join(map(str, tag_ids))}]"
        code_text = code_texts.get(r.state)
        if code_text is None:
            code = codes.get(r.state)
            channel = COPY_NULL if code is None else str(code[0])
            referrer = COPY_NULL if code is None or code[1] is None else str(code[1])
            code_text = code_texts[r.state] = (
                f"{channel}\t{referrer}",
                (channel + referrer).count("\\"),
            )
        mobiles = _json_strings(r.remark_mobiles) if r.remark_mobiles else "[]"
        key = str(i) if keys is None else keys[i]
        line = _stage_line(key, r, staff_ids[i], mobiles, tag_text, code_text[0], digests[i])
        # The fields that are not text (numbers, the time, the tags' and the channel's
        # ids, their \N) hold none of COPY's special characters but the \N's backslash:
        # one look at the line tells whether a text field holds one.
        if (
            "\n" in line
            or "\r" in line
            or line.count("\t") != _TABS + key.count("\t")
            or line.count("\\") != code_text[1]
        ):
            line = _stage_line(
                key,
                _escaped(r),
                staff_ids[i],
                copy_text(mobiles),
                tag_text,
                code_text[0],
                digests[i],
            )
        lines.append(line)
        lines.append("\n")
    return "".join(lines)


def _escaped(r: ContactRow) -> ContactRow:
    """The row with its free-text fields in COPY's escapes."""
    return replace(
        r,
        external_userid=copy_text(r.external_userid),
        name=copy_text(r.name),
        avatar=copy_text(r.avatar),
        unionid=copy_text(r.unionid),
        userid=copy_text(r.userid),
        remark=copy_text(r.remark),
        description=copy_text(r.description),
        state=copy_text(r.state),
        oper_userid=copy_text(r.oper_userid),
    )


def _stage_line(
    key: str, r: ContactRow, staff_id: int, mobiles: str, tag_text: str, code_text: str, digest: str
) -> str:
    """A stage line in the order of STAGE_FIELDS (without its newline), from the row's
    fields as they are: the caller escapes them when they need it."""
    return (
        f"{key}\t{r.external_userid}\t{r.name}\t{r.avatar}\t{r.gender}\t{r.unionid}"
        f"\t{staff_id}\t{r.userid}\t{_isoformat(r.added_at)}\t{r.remark}"
        f"\t{r.description}\t{mobiles}\t{r.add_way}\t{r.state}\t{r.oper_userid}"
        f"\t{tag_text}\t{code_text}\t{digest}"
    )


@transaction.atomic
def contacts_apply_prepared(
    *,
    prepared: PreparedRows,
    directory: Directory,
    run_id: int | None = None,
    record_added: bool = True,
    first_load: bool = False,
) -> ApplyResult:
    """The database half of a set-based ``contacts_apply`` (PostgreSQL): one indexed
    look-up skips the rows applied before as they are, the rest go through the stage.

    ``first_load``: the corp had no WeCom follow when this sync run began, so no row can
    be unchanged from one written before it, and the look-up (a probe of two indexes per
    row) is skipped. Rows the run itself wrote before a resume go through the stage
    again, where the upserts leave them as they are; the sweep counts them as seen by
    their ``updated_at``."""
    result = ApplyResult(relationships=len(prepared.rows))
    if not prepared.rows:
        return result
    unchanged = (
        {}
        if first_load
        else contact_follows_unchanged(
            external_userids=[r.external_userid for r in prepared.rows],
            staff_ids=prepared.staff_ids,
            digests=prepared.digests,
        )
    )
    if len(unchanged) < len(prepared.rows):
        applied = contact_follows_apply_copy(
            lines=_copy_lines(prepared, unchanged, directory), record_added=record_added
        )
        result.created += applied.customers_created + applied.follows_created
        result.updated += applied.customers_updated + applied.follows_updated
        result.follow_ids = applied.follow_ids
    if run_id is not None:
        # Only the follows left alone: one this call wrote carries an updated_at after
        # the run's start, which is what the sweep also counts as seen. A first sync thus
        # writes no scratch row (and no two foreign-key checks) per relationship.
        _seen_record(run_id, set(unchanged.values()))
    result.follow_ids = [*unchanged.values(), *result.follow_ids]
    return result


# --- a first sync's two passes (PostgreSQL) ------------------------------------------
#
# A corp's first sync downloads every relationship into SyncStagedContact, then applies
# them a range of buckets (customers) at a time: each customer is written once, with all
# its follows, instead of once per page that lists one of its followers. See
# channels.wecom.sync, the "apply" phase.

_STAGED_FIELDS = STAGE_FIELDS[1:]  # without ord, which the apply numbers anew

# The chunk's rows for contact_follows_apply_select: a pair staged twice (a download
# resumed after a kill re-reads the pages after its checkpoint) counts once, its latest
# copy. Numbered in the customers' order so that their ids follow it; "C" because any
# order that groups a customer's rows will do, and the bytes' is the cheapest.
_STAGED_SELECT = """
SELECT row_number() OVER (ORDER BY external_userid COLLATE "C", seq) - 1, {fields}
FROM (
    SELECT DISTINCT ON (external_userid COLLATE "C", staff_id) id AS seq, {fields}
    FROM {staged}
    WHERE run_id = %(run_id)s AND bucket >= %(low)s AND bucket < %(high)s
    ORDER BY external_userid COLLATE "C", staff_id, id DESC
) latest
"""


def _staged_table() -> str:
    return connection.ops.quote_name(SyncStagedContact._meta.db_table)


def contacts_stage_prepared(
    *, prepared: PreparedRows, directory: Directory, run_id: int, buckets: Sequence[int]
) -> ApplyResult:
    """Stage the rows (their ``buckets``, position by position) for ``run_id``'s apply
    phase, in one COPY. Counts them as read; nothing is created yet."""
    result = ApplyResult(relationships=len(prepared.rows))
    if not prepared.rows:
        return result
    lines = _copy_lines(prepared, (), directory, [f"{run_id}\t{b}" for b in buckets])
    columns = ", ".join(("run_id", "bucket", *_STAGED_FIELDS))
    with connection.cursor() as wrapper, connection.wrap_database_errors:
        wrapper.cursor.copy_expert(
            f"COPY {_staged_table()} ({columns}) FROM STDIN", io.StringIO(lines)
        )
    return result


@transaction.atomic
def contacts_apply_staged(
    *, run_id: int, buckets: tuple[int, int], record_added: bool = True
) -> ApplyResult:
    """Apply the rows ``run_id`` staged in the buckets ``[low, high)``: every row of their
    customers, through the set-based path. ``relationships`` stays 0: the download
    counted them."""
    low, high = buckets
    applied = contact_follows_apply_select(
        select=_STAGED_SELECT.format(fields=", ".join(_STAGED_FIELDS), staged=_staged_table()),
        params={"run_id": run_id, "low": low, "high": high},
        record_added=record_added,
    )
    return ApplyResult(
        created=applied.customers_created + applied.follows_created,
        updated=applied.customers_updated + applied.follows_updated,
        follow_ids=applied.follow_ids,
    )


def contacts_staged_count(*, run_id: int) -> int:
    return SyncStagedContact.objects.filter(run_id=run_id).count()


def contacts_staged_analyze() -> None:
    """Fresh statistics for reading the staged rows by chunk: the table was empty, or
    held another run's rows, when it was last analyzed."""
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {_staged_table()}")


def contacts_staged_clear() -> None:
    """Drop every staged row. Only the running sync stages (there is one at most), so
    the rows of any other run are an abandoned run's."""
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {_staged_table()}")


@transaction.atomic
def contacts_apply(
    *,
    rows: Sequence[ContactRow],
    directory: Directory,
    run_id: int | None = None,
    record_added: bool = True,
) -> ApplyResult:
    """Write a batch of (customer, follower) rows: customers, follows, tags, timeline.

    Idempotent: applying the same rows again writes nothing; a row whose digest the
    follow already carries is skipped after one read. With ``run_id``, the follows
    are also recorded as seen by that sync run (for the deletion sweep after the pass);
    on PostgreSQL only those it did not write, see ``contacts_apply_prepared``.
    ``record_added=False`` (a corp's first sync: history, not news) writes no
    "contact_added" timeline rows; the follows keep their add times.
    """
    if _set_based():
        return contacts_apply_prepared(
            prepared=contacts_prepare(rows=rows, directory=directory),
            directory=directory,
            run_id=run_id,
            record_added=record_added,
        )
    result = ApplyResult(relationships=len(rows))
    if not rows:
        return result
    directory.ensure_staff(r.userid for r in rows)
    salt = directory.fingerprint
    digests = [r.digest(salt) for r in rows]
    unchanged = _unchanged_follows(rows, digests, directory)
    changed = [(r, d) for r, d in zip(rows, digests, strict=True) if d not in unchanged]
    _apply_changed(changed, directory, result, record_added=record_added)
    if run_id is not None:
        _seen_record(run_id, {*unchanged.values(), *result.follow_ids})
    result.follow_ids = [*unchanged.values(), *result.follow_ids]
    return result


def _seen_record(run_id: int, follow_ids: set[int]) -> None:
    if not _set_based():
        insert_rows(
            SyncSeenFollow,
            rows=[{"run_id": run_id, "follow_id": fid} for fid in follow_ids],
            ignore_conflicts=True,
            returning=False,
        )
        return
    # One statement with an array: no staging table, no COPY text built per row.
    qn = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {qn(SyncSeenFollow._meta.db_table)} (run_id, follow_id) "
            "SELECT %s, unnest(%s::bigint[]) ON CONFLICT DO NOTHING",
            [run_id, list(follow_ids)],
        )


def _unchanged_follows(
    rows: Sequence[ContactRow], digests: Sequence[str], directory: Directory
) -> dict[str, int]:
    """digest -> follow id, for the rows whose active follow already has that digest."""
    stored = Follow.objects.filter(
        customer__external_userid__in={r.external_userid for r in rows},
        staff_id__in={directory.staff[r.userid] for r in rows},
        deleted_at__isnull=True,
    ).values_list("sync_digest", "id")
    known = {digest: pk for digest, pk in stored if digest}
    return {d: known[d] for d in digests if d in known}


def _apply_changed(
    changed: Sequence[tuple[ContactRow, str]],
    directory: Directory,
    result: ApplyResult,
    *,
    record_added: bool,
) -> None:
    if not changed:
        return
    rows = [r for r, _d in changed]
    customers = contacts_upsert(rows=_contact_inputs(rows, directory))
    customer_ids = customers.by_key
    result.created += customers.created
    result.updated += customers.updated

    pairs = [(customer_ids[r.external_userid], directory.staff[r.userid]) for r in rows]
    revived = set(
        Follow.objects.filter(
            customer_id__in={c for c, _ in pairs},
            staff_id__in={s for _, s in pairs},
            deleted_at__isnull=False,
        ).values_list("customer_id", "staff_id")
    )
    follows = follows_upsert(
        rows=[
            FollowInput(
                customer_id=customer_id,
                staff_id=staff_id,
                added_at=r.added_at,
                state=r.state,
                remark=r.remark,
                description=r.description,
                remark_mobiles=list(r.remark_mobiles),
                add_way=r.add_way,
                oper_userid=r.oper_userid,
                deleted_at=None,
                tag_ids=sorted({directory.tags[t] for t in r.tag_ids if t in directory.tags}),
                sync_digest=digest,
            )
            for (r, digest), (customer_id, staff_id) in zip(changed, pairs, strict=True)
        ]
    )
    result.created += follows.created
    result.updated += follows.updated
    result.follow_ids = follows.ids

    # The timeline gets an "added" event for a follow we did not know, or one that came
    # back after a deletion; the key makes the callback and the sync agree on it.
    added = [
        ActivityInput(
            customer_id=customer_id,
            kind="contact_added",
            occurred_at=r.added_at,
            source="wecom",
            staff_id=staff_id,
            payload={"userid": r.userid, "state": r.state, "add_way": r.add_way},
            idempotency_key=f"follow:{follow_id}:added:{int(r.added_at.timestamp())}",
        )
        for r, (customer_id, staff_id), follow_id, outcome in zip(
            rows, pairs, follows.ids, follows.outcomes, strict=True
        )
        if record_added and (outcome == "created" or (customer_id, staff_id) in revived)
    ]
    activities_record(rows=added)
    if revived:
        customers_refresh_status(customer_ids={c for c, _s in revived}, at=timezone.now())

    customer_tags_sync(customer_ids={c for c, _s in pairs})
