"""The hand-written fast paths of a sync's rows say exactly what the plain ones say: the
digest (stored on every follow: a different text would rewrite every follow once) and
the stage's COPY text (what the set-based path writes)."""

from __future__ import annotations

from datetime import UTC, datetime
from hashlib import blake2b

from channels.wecom.contacts import ContactRow, Directory, PreparedRows, _copy_lines
from customers.services.contacts_pg import ContactFollowInput, _copy_line

ROWS = [
    ContactRow(
        external_userid="wmPlain",
        name="张三",
        avatar="http://a/1.png",
        gender=1,
        unionid="o1",
        userid="zhangsan",
        added_at=datetime(2025, 3, 1, 8, 0, tzinfo=UTC),
        remark_mobiles=("13800000001", "13800000002"),
        add_way=1,
        state="qr-1",
        tag_ids=("etA", "etB", "etUnknown"),
    ),
    ContactRow(
        external_userid="wmOdd",
        name="tab\there, new\nline, back\\slash",
        avatar="",
        gender=0,
        unionid="",
        userid="lisi",
        added_at=datetime(2025, 3, 1, 8, 0, 5, 120, tzinfo=UTC),
        remark='quote " and \r',
        description="它's",
        remark_mobiles=('13"9', "back\\slash", "ctl\x01"),
        add_way=202,
        oper_userid="admin",
    ),
    ContactRow(
        external_userid="wmBare",
        name="",
        avatar="",
        gender=2,
        unionid="",
        userid="lisi",
        added_at=datetime(2024, 1, 1, tzinfo=UTC),
    ),
]


def test_digest_hashes_the_dataclass_repr() -> None:
    for row in ROWS:
        expected = blake2b(f"salt|{row!r}".encode(), digest_size=16).hexdigest()
        assert row.digest("salt") == expected


def test_copy_lines_equal_the_stage_lines_of_the_plain_path() -> None:
    directory = Directory(
        staff={"zhangsan": 7, "lisi": 8},
        tags={"etA": 31, "etB": 30},
        codes={"qr-1": (5, 99)},
    )
    digests = [row.digest("s") for row in ROWS]
    prepared = PreparedRows(rows=ROWS, digests=digests, staff_ids=[7, 8, 8])
    expected = []
    for i, (row, digest) in enumerate(zip(ROWS, digests, strict=True)):
        code = directory.codes.get(row.state)
        plain = ContactFollowInput(
            external_userid=row.external_userid,
            name=row.name,
            avatar=row.avatar,
            gender=row.gender,
            unionid=row.unionid,
            staff_id=directory.staff[row.userid],
            userid=row.userid,
            added_at=row.added_at,
            remark=row.remark,
            description=row.description,
            remark_mobiles=row.remark_mobiles,
            add_way=row.add_way,
            state=row.state,
            oper_userid=row.oper_userid,
            tag_ids=sorted({directory.tags[t] for t in row.tag_ids if t in directory.tags}),
            source_channel_id=code[0] if code else None,
            referred_by_id=code[1] if code else None,
            sync_digest=digest,
        )
        expected.append(_copy_line(i, plain) + "\n")
    assert _copy_lines(prepared, {}, directory) == "".join(expected)
    assert _copy_lines(prepared, {1: 99}, directory) == expected[0] + expected[2]
