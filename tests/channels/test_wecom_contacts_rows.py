"""The hand-written fast paths of a sync's rows say exactly what the plain ones say: the
rows built from WeCom's payloads, the digest (stored on every follow: a different text
would rewrite every follow once) and the stage's COPY text (what the set-based path
writes)."""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta, timezone
from hashlib import blake2b
from typing import Any

import pytest

from channels.wecom.contacts import (
    ContactRow,
    Directory,
    PreparedRows,
    _copy_lines,
    _isoformat,
    _row,
    rows_from_batch,
    rows_from_contact,
)
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
        external_userid="wmCoded",
        name="王五",
        avatar="",
        gender=1,
        unionid="",
        userid="zhangsan",
        added_at=datetime(2025, 3, 1, 8, 0, tzinfo=timezone(timedelta(hours=8))),
        remark_mobiles=("1\t2",),
        state="qr-2",
        oper_userid="back\\slash",
        tag_ids=("etB",),
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


def test_digests_stay_those_stored_by_earlier_versions() -> None:
    # Computed by the version before ContactRow had slots and _row its own setters.
    assert [ROWS[i].digest("salt") for i in (0, 1, 3)] == [
        "253f856fbceb139c383ae468b8b42f94",
        "fb58229aac111ecfba9e6e9301ae43ae",
        "8f60b8378d4069637eab64e491ef45ef",
    ]


def _plain_row(
    contact: Mapping[str, Any], follow: Mapping[str, Any], tag_ids: Iterable[str]
) -> ContactRow:
    """_row as it was written before, through the dataclass's __init__."""

    def as_int(value: Any) -> int:
        try:
            return int(value)
        except (TypeError, ValueError):
            return 0

    return ContactRow(
        external_userid=str(contact["external_userid"]),
        name=str(contact.get("name") or "")[:128],
        avatar=str(contact.get("avatar") or "")[:500],
        gender=as_int(contact.get("gender")) if as_int(contact.get("gender")) in (0, 1, 2) else 0,
        unionid=str(contact.get("unionid") or "")[:64],
        userid=str(follow["userid"]),
        added_at=datetime.fromtimestamp(as_int(follow.get("createtime")), tz=UTC),
        remark=str(follow.get("remark") or "")[:128],
        description=str(follow.get("description") or "")[:255],
        remark_mobiles=tuple(str(m) for m in follow.get("remark_mobiles") or ()),
        add_way=as_int(follow.get("add_way")),
        state=str(follow.get("state") or "")[:64],
        oper_userid=str(follow.get("oper_userid") or "")[:64],
        tag_ids=tuple(sorted({str(t) for t in tag_ids if t})),
    )


PAYLOADS: list[tuple[dict[str, Any], dict[str, Any], Sequence[Any]]] = [
    (
        {
            "external_userid": "wm1",
            "name": "李四",
            "avatar": "http://a",
            "gender": 1,
            "unionid": "o",
        },
        {
            "userid": "rocky",
            "remark": "李部长",
            "description": "对接采购事务",
            "createtime": 1525779812,
            "remark_mobiles": ["13800000001", "13000000002"],
            "oper_userid": "rocky",
            "add_way": 1,
            "state": "外联二维码1",
        },
        ["etB", "etA", "etB", "", None],
    ),
    # What real answers send now and then (WECOM.md §1.5), and what they leave out.
    ({"external_userid": "wm2", "gender": "2"}, {"userid": "u", "createtime": "1525881637"}, []),
    (
        {"external_userid": 3, "name": 12, "gender": 7, "avatar": None, "unionid": ""},
        {"userid": 4, "createtime": None, "add_way": "x", "remark_mobiles": [138, "1"]},
        [5],
    ),
    (
        {"external_userid": "wm4", "name": "长" * 200, "gender": True, "unionid": "u" * 99},
        {
            "userid": "u",
            "remark": "r" * 200,
            "description": "d" * 300,
            "state": "s" * 70,
            "oper_userid": "o" * 70,
            "createtime": 1.9,
            "add_way": 2.0,
        },
        ("etA",),
    ),
]


@pytest.mark.parametrize(("contact", "follow", "tags"), PAYLOADS)
def test_rows_equal_the_ones_the_dataclass_init_builds(contact, follow, tags) -> None:
    row = _row(contact, follow, tags)
    expected = _plain_row(contact, follow, tags)
    assert row == expected
    assert repr(row) == repr(expected)
    assert row.digest("s") == expected.digest("s")
    assert hash(row) == hash(expected)
    assert not hasattr(row, "__dict__")


def test_rows_from_both_answers_use_the_same_rows() -> None:
    contact, follow, tags = PAYLOADS[0]
    page = {
        "external_contact_list": [
            {"external_contact": contact, "follow_info": {**follow, "tag_id": tags}}
        ]
    }
    detail = {
        "external_contact": contact,
        "follow_user": [{**follow, "tags": [{"tag_id": t, "type": 1} for t in tags if t]}],
    }
    expected = [_plain_row(contact, follow, tags)]
    assert rows_from_batch(page) == expected
    assert rows_from_contact(detail) == expected


def test_isoformat_equals_datetimes_own() -> None:
    rng = random.Random(5)
    times = [datetime.fromtimestamp(rng.randrange(-(10**10), 10**10), UTC) for _ in range(2000)] + [
        datetime(2025, 3, 1, tzinfo=UTC),
        datetime(2025, 3, 1, 8, 0, 5, 120, tzinfo=UTC),
        datetime(999, 12, 31, 23, 59, 59, tzinfo=UTC),
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(2025, 3, 1, 8, 0, 5),
        datetime(2025, 3, 1, 8, 0, 5, tzinfo=timezone(timedelta(hours=8))),
        datetime(2025, 3, 1, 8, 0, 5, tzinfo=UTC, fold=1),
    ]
    for value in times:
        assert _isoformat(value) == value.isoformat()


def test_copy_lines_equal_the_stage_lines_of_the_plain_path() -> None:
    directory = Directory(
        staff={"zhangsan": 7, "lisi": 8},
        tags={"etA": 31, "etB": 30},
        codes={"qr-1": (5, 99), "qr-2": (6, None)},
    )
    digests = [row.digest("s") for row in ROWS]
    prepared = PreparedRows(rows=ROWS, digests=digests, staff_ids=[7, 8, 7, 8])
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
    assert _copy_lines(prepared, {1: 99}, directory) == "".join(expected[i] for i in (0, 2, 3))
