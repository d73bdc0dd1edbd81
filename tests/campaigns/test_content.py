"""The content library: validation against WeCom's attachment shapes, and rendering
variables with hostile values (no template injection, byte-safe truncation)."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ValidationError

from campaigns.models import ContentKind
from campaigns.services.content import (
    content_archive,
    content_create,
    content_render,
    content_update,
    content_uses_customer_values,
)
from tests.campaigns.factories import ContentFactory, CouponBatchFactory

pytestmark = pytest.mark.django_db

IMAGE = {"msgtype": "image", "image": {"media_id": "MEDIA_1"}}
LINK = {
    "msgtype": "link",
    "link": {"title": "{name}的专属礼", "url": "https://a.example/{name}", "desc": "{store}"},
}
MINI = {
    "msgtype": "miniprogram",
    "miniprogram": {"title": "会员中心", "pic_media_id": "M", "appid": "wx1", "page": "/p"},
}


def _errors(data: dict[str, Any]) -> dict[str, Any]:
    with pytest.raises(ValidationError) as exc:
        content_create(data=data, user=None)
    return exc.value.message_dict


# --- rendering -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "hostile",
    [
        "{{ settings.SECRET_KEY }}",
        "{staff}",
        "{coupon}",
        "%(x)s",
        "{0.__class__}",
        "{name}",
        "${name}",
        "\\1\\g<0>",
    ],
)
def test_hostile_customer_names_come_out_literally(hostile: str) -> None:
    content = ContentFactory(text="您好 {name}, 我是{staff}({store})")
    rendered = content_render(
        content=content, values={"name": hostile, "staff": "小王", "store": "静安店"}
    )
    assert rendered.text == f"您好 {hostile}, 我是小王(静安店)"


def test_a_value_is_never_scanned_again_even_when_it_names_a_later_variable() -> None:
    content = ContentFactory(text="{name}|{staff}|{coupon}")
    rendered = content_render(
        content=content, values={"name": "{staff}", "staff": "{coupon}", "coupon": "{name}"}
    )
    assert rendered.text == "{staff}|{coupon}|{name}"


def test_unknown_placeholders_and_other_braces_stay_literal() -> None:
    content = ContentFactory(text="{Name} {nickname} {{name}} { name } {0} %s {name}")
    rendered = content_render(content=content, values={"name": "李雷"})
    assert rendered.text == "{Name} {nickname} {李雷} { name } {0} %s 李雷"


def test_a_known_variable_without_a_value_renders_empty_not_as_braces() -> None:
    content = ContentFactory(text="券码:{coupon}。")
    assert content_render(content=content, values={}).text == "券码:。"


def test_a_5000_character_name_is_cut_at_4000_bytes_on_a_character_boundary() -> None:
    content = ContentFactory(text="亲爱的{name}, 欢迎光临")
    rendered = content_render(content=content, values={"name": "张" * 5000})
    data = rendered.text.encode("utf-8")
    assert len(data) <= 4000
    assert len(data) > 4000 - 3  # cut only as much as a character needs
    assert rendered.text.startswith("亲爱的张张")
    assert set(rendered.text[3:]) == {"张"}  # no half character (decoding would have failed)
    # The same with a mix of 1-, 2- and 3-byte characters at the cut.
    rendered = content_render(content=content, values={"name": "aé张" * 2000})
    assert len(rendered.text.encode("utf-8")) <= 4000
    assert rendered.text.encode("utf-8").decode("utf-8") == rendered.text


def test_link_title_and_description_are_rendered_but_urls_are_not() -> None:
    content = ContentFactory(text="看看这个", attachments=[IMAGE, LINK])
    rendered = content_render(content=content, values={"name": "{store}", "store": "静安店"})
    link = rendered.attachments[1]["link"]
    assert link["title"] == "{store}的专属礼"
    assert link["desc"] == "静安店"
    assert link["url"] == "https://a.example/{name}"
    assert rendered.attachments[0] == IMAGE
    # The stored content is untouched.
    content.refresh_from_db()
    assert content.attachments[1]["link"]["title"] == "{name}的专属礼"


def test_a_long_name_in_a_link_title_is_cut_to_wecoms_128_bytes() -> None:
    content = ContentFactory(text="", attachments=[LINK])
    rendered = content_render(content=content, values={"name": "长" * 200})
    assert len(rendered.attachments[0]["link"]["title"].encode()) <= 128


def test_customer_values_decide_whether_one_task_can_serve_many() -> None:
    assert content_uses_customer_values(ContentFactory(text="Hi {name}"))
    assert content_uses_customer_values(ContentFactory(text="code {coupon}"))
    assert not content_uses_customer_values(ContentFactory(text="{staff} at {store}"))
    assert content_uses_customer_values(ContentFactory(text="Hello", attachments=[LINK]))
    assert not content_uses_customer_values(ContentFactory(text="Hello", attachments=[IMAGE]))


# --- validation ------------------------------------------------------------------------


def test_content_create_derives_the_kind_from_the_first_attachment() -> None:
    assert content_create(data={"name": "t", "text": "hi"}, user=None).kind == ContentKind.TEXT
    link = content_create(data={"name": "l", "text": "", "attachments": [LINK, IMAGE]}, user=None)
    assert link.kind == ContentKind.LINK
    mini = content_create(data={"name": "m", "attachments": [MINI]}, user=None)
    assert mini.kind == ContentKind.MINIPROGRAM
    video = {"msgtype": "video", "video": {"media_id": "V"}}
    assert content_create(data={"name": "v", "attachments": [video]}, user=None).kind == "text"


def test_text_and_attachments_cannot_both_be_empty() -> None:
    assert "text" in _errors({"name": "empty", "text": "   ", "attachments": []})


def test_a_name_is_required() -> None:
    assert "name" in _errors({"name": " ", "text": "hi"})


def test_text_over_4000_bytes_is_refused() -> None:
    errors = _errors({"name": "long", "text": "张" * 1334})  # 4002 bytes
    assert "4000 bytes" in errors["text"][0]


def test_at_most_nine_attachments() -> None:
    assert "attachments" in _errors({"name": "many", "attachments": [IMAGE] * 10})


def test_attachments_must_be_a_list_of_objects() -> None:
    assert "attachments" in _errors({"name": "x", "attachments": {"msgtype": "image"}})
    assert "attachments[0]" in _errors({"name": "x", "attachments": ["image"]})


def _link(**link: Any) -> dict[str, Any]:
    return {"msgtype": "link", "link": {"title": "t", "url": "https://a.example", **link}}


def _mini(**mini: Any) -> dict[str, Any]:
    base = {"title": "t", "pic_media_id": "m", "appid": "wx", "page": "/p"}
    return {"msgtype": "miniprogram", "miniprogram": {**base, **mini}}


def _without(attachment: dict[str, Any], key: str) -> dict[str, Any]:
    msgtype = attachment["msgtype"]
    body = {k: v for k, v in attachment[msgtype].items() if k != key}
    return {"msgtype": msgtype, msgtype: body}


A0 = "attachments[0]"


@pytest.mark.parametrize(
    ("attachment", "field"),
    [
        ({"msgtype": "audio", "audio": {"media_id": "x"}}, f"{A0}.msgtype"),
        ({"msgtype": "image"}, f"{A0}.image"),
        ({"msgtype": "image", "image": {}}, f"{A0}.image"),
        ({"msgtype": "image", "image": {"pic_url": "javascript:alert(1)"}}, f"{A0}.image.pic_url"),
        (_without(_link(), "title"), f"{A0}.link.title"),
        (_without(_link(), "url"), f"{A0}.link.url"),
        (_link(url="ftp://a.example/x"), f"{A0}.link.url"),
        (_link(url="https:///nohost"), f"{A0}.link.url"),
        (_link(picurl="data:x"), f"{A0}.link.picurl"),
        (_link(title="t" * 129), f"{A0}.link.title"),
        (_link(evil="1"), f"{A0}.link.evil"),
        (_link(title=5), f"{A0}.link.title"),
        (_without(_mini(), "pic_media_id"), f"{A0}.miniprogram.pic_media_id"),
        (_without(_mini(), "appid"), f"{A0}.miniprogram.appid"),
        (_without(_mini(), "page"), f"{A0}.miniprogram.page"),
        (_without(_mini(), "title"), f"{A0}.miniprogram.title"),
        (_mini(title="长" * 22), f"{A0}.miniprogram.title"),
        ({"msgtype": "video", "video": {}}, f"{A0}.video.media_id"),
        ({"msgtype": "file", "file": {"media_id": ""}}, f"{A0}.file.media_id"),
        ({"msgtype": "image", "image": {"media_id": "m"}, "link": {}}, A0),
    ],
)
def test_each_bad_attachment_is_reported_on_its_field(
    attachment: dict[str, Any], field: str
) -> None:
    errors = _errors({"name": "bad", "text": "hi", "attachments": [attachment]})
    assert field in errors, errors


def test_errors_name_the_index_of_the_bad_attachment() -> None:
    bad = {"msgtype": "link", "link": {"title": "t", "url": "mailto:a@b"}}
    errors = _errors({"name": "bad", "attachments": [IMAGE, IMAGE, bad]})
    assert list(errors) == ["attachments[2].link.url"]


def test_a_coupon_variable_needs_a_coupon_batch() -> None:
    assert "coupon_batch" in _errors({"name": "c", "text": "您的券码 {coupon}"})
    batch = CouponBatchFactory()
    content = content_create(
        data={"name": "c", "text": "您的券码 {coupon}", "coupon_batch": batch.pk}, user=None
    )
    assert content.coupon_batch == batch
    with pytest.raises(ValidationError) as exc:
        content_update(content=content, data={"coupon_batch": None})
    assert "coupon_batch" in exc.value.message_dict


def test_an_unknown_coupon_batch_is_a_field_error() -> None:
    assert "coupon_batch" in _errors({"name": "c", "text": "x", "coupon_batch": 999999})


def test_content_update_returns_only_fields_that_changed() -> None:
    content = content_create(data={"name": "Welcome", "text": "Hi {name}"}, user=None)
    assert content_update(content=content, data={"name": "Welcome", "text": "Hi {name}"}) == []
    changed = content_update(content=content, data={"attachments": [MINI]})
    assert sorted(changed) == ["attachments", "kind"]
    content.refresh_from_db()
    assert content.kind == ContentKind.MINIPROGRAM
    assert content.text == "Hi {name}"


def test_content_update_refuses_bad_data_and_changes_nothing() -> None:
    content = content_create(data={"name": "Welcome", "text": "Hi"}, user=None)
    with pytest.raises(ValidationError):
        content_update(content=content, data={"text": "", "attachments": []})
    content.refresh_from_db()
    assert content.text == "Hi"


def test_content_archive_hides_it_and_is_idempotent() -> None:
    content = content_create(data={"name": "Old", "text": "Hi"}, user=None)
    content_archive(content=content)
    content_archive(content=content)
    content.refresh_from_db()
    assert content.is_archived
