"""Welcome messages: placeholder rendering that hostile names cannot subvert, and sending
through the simulator while the 20 s welcome code is alive (WECOM.md §1.8)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from channels.models import ChannelCode, EventStatus
from channels.wecom.simulator import change_external_contact_xml
from channels.wecom.welcome import (
    MAX_ATTACHMENTS,
    MAX_TEXT_BYTES,
    welcome_body,
    welcome_content,
    welcome_render,
)
from customers.models import Activity, Staff
from tests.channels.wecom_support import CORP_ID, WeCom, running_wecom
from tests.factories import ChannelFactory

pytestmark = pytest.mark.django_db

HOSTILE_NAMES = [
    "{{ settings.SECRET_KEY }}",
    "{staff}",
    "{name}",
    "{% load static %}{{ request }}",
    "%(name)s ${name} {0} {name!r}",
    "<script>alert(1)</script>",
    "\u202etxt.exe",
]


@pytest.fixture
def wecom(db, settings, django_capture_on_commit_callbacks) -> Iterator[WeCom]:
    with running_wecom(settings, django_capture_on_commit_callbacks) as running:
        yield running


@pytest.fixture
def code(db) -> ChannelCode:
    return ChannelCode.objects.create(
        channel=ChannelFactory(),
        name="welcome test",
        state="welcome_state",
        welcome_text="Hi {name}, this is {staff}. {unknown} stays.",
    )


def add_and_process(wecom: WeCom, userid: str, **kw: Any) -> tuple[dict[str, Any], Any]:
    added = wecom.sim.add_contact(userid, emit=False, **kw)
    xml = change_external_contact_xml(
        CORP_ID,
        "add_external_contact",
        userid,
        added["external_userid"],
        state=added["state"] or None,
        welcome_code=added["welcome_code"],
    )
    return added, wecom.handle(xml)


# --- rendering -----------------------------------------------------------------------


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_names_are_inserted_literally(name: str) -> None:
    text = welcome_render("Hi {name}, I am {staff}.", name=name, staff="Lily")
    assert text == f"Hi {name}, I am Lily."


def test_values_are_not_expanded_again() -> None:
    assert welcome_render("{name}/{staff}", name="{staff}", staff="{name}") == "{staff}/{name}"


def test_only_name_and_staff_are_placeholders() -> None:
    template = "{{name}} {NAME} {name {staff}} {} {0} %s {{ x }}"
    assert welcome_render(template, name="A", staff="B") == "{A} {NAME} {name B} {} {0} %s {{ x }}"


def test_rendered_text_is_cut_to_wecom_s_byte_limit_on_a_character_boundary() -> None:
    text = welcome_render("{name}", name="客" * 2000, staff="")
    assert len(text.encode("utf-8")) <= MAX_TEXT_BYTES
    assert text == "客" * (MAX_TEXT_BYTES // 3)


def test_content_needs_an_active_code_with_text_or_attachments(code: ChannelCode) -> None:
    assert welcome_content(None) is None
    assert welcome_content(code) is not None
    code.welcome_text = "   "
    assert welcome_content(code) is None
    code.welcome_attachments = [{"msgtype": "image", "image": {"media_id": "M"}}] * 12
    content = welcome_content(code)
    assert content is not None and content.text == ""
    assert len(content.attachments) == MAX_ATTACHMENTS
    code.is_active = False
    assert welcome_content(code) is None


def test_body_leaves_out_empty_parts() -> None:
    assert welcome_body(welcome_code="C", text="", attachments=[]) == {"welcome_code": "C"}
    assert welcome_body(welcome_code="C", text="t", attachments=[]) == {
        "welcome_code": "C",
        "text": {"content": "t"},
    }


# --- sending -------------------------------------------------------------------------


@pytest.mark.parametrize("name", HOSTILE_NAMES[:3])
def test_hostile_customer_names_reach_wecom_literally(
    wecom: WeCom, code: ChannelCode, name: str
) -> None:
    userid = wecom.staff[0]
    Staff.objects.create(wecom_userid=userid, name="Lily")
    _added, event = add_and_process(wecom, userid, state=code.state, name=name)
    assert event.status == EventStatus.DONE
    (message,) = wecom.sim.welcome_messages()
    assert message["text"]["content"] == f"Hi {name}, this is Lily. {{unknown}} stays."
    recorded = Activity.objects.get(kind="welcome_sent")
    assert recorded.payload["text"] == message["text"]["content"]


def test_unknown_staff_member_is_named_by_userid(wecom: WeCom, code: ChannelCode) -> None:
    userid = wecom.staff[1]
    add_and_process(wecom, userid, state=code.state, name="Ann")
    (message,) = wecom.sim.welcome_messages()
    assert message["text"]["content"].startswith(f"Hi Ann, this is {userid}.")


def test_expired_welcome_code_is_recorded_and_not_retried(wecom: WeCom, code: ChannelCode) -> None:
    wecom.sim.configure(welcome_ttl=0.0)
    added = wecom.sim.add_contact(wecom.staff[0], state=code.state, emit=False)
    time.sleep(0.01)
    event = wecom.handle(
        change_external_contact_xml(
            CORP_ID,
            "add_external_contact",
            wecom.staff[0],
            added["external_userid"],
            state=code.state,
            welcome_code=added["welcome_code"],
        )
    )
    assert event.status == EventStatus.DONE and event.attempts == 1
    assert wecom.sim.welcome_messages() == []
    assert wecom.sim.counters()["paths"]["externalcontact/send_welcome_msg"] == 1
    recorded = Activity.objects.get(kind="welcome_sent")
    assert recorded.payload["ok"] is False
    assert recorded.payload["errcode"] == 41050
    assert recorded.payload["text"].startswith("Hi ")
    assert event.payload["_welcome"]["errcode"] == 41050


def test_used_welcome_code_41051_is_recorded_and_not_retried(
    wecom: WeCom, code: ChannelCode
) -> None:
    added = wecom.sim.add_contact(wecom.staff[0], state=code.state, emit=False)
    from channels.wecom.client import get_client

    # Another app of the corp used the code first (WECOM.md §1.8).
    get_client().send_welcome_msg({"welcome_code": added["welcome_code"], "text": {"content": "x"}})
    event = wecom.handle(
        change_external_contact_xml(
            CORP_ID,
            "add_external_contact",
            wecom.staff[0],
            added["external_userid"],
            state=code.state,
            welcome_code=added["welcome_code"],
        )
    )
    assert event.status == EventStatus.DONE and event.attempts == 1
    recorded = Activity.objects.get(kind="welcome_sent")
    assert (recorded.payload["ok"], recorded.payload["errcode"]) == (False, 41051)


def test_rate_limited_welcome_is_retried_while_the_code_lives(
    wecom: WeCom, code: ChannelCode
) -> None:
    wecom.sim.inject(45033, path="externalcontact/send_welcome_msg", count=1)
    _added, event = add_and_process(wecom, wecom.staff[0], state=code.state, name="Bo")
    assert event.status == EventStatus.DONE and event.attempts == 2
    (message,) = wecom.sim.welcome_messages()
    assert message["text"]["content"].startswith("Hi Bo,")
    assert Activity.objects.get(kind="welcome_sent").payload["ok"] is True


def test_attachments_only_welcome(wecom: WeCom, code: ChannelCode) -> None:
    code.welcome_text = ""
    code.welcome_attachments = [{"msgtype": "image", "image": {"media_id": "MEDIA"}}]
    code.save()
    add_and_process(wecom, wecom.staff[0], state=code.state)
    (message,) = wecom.sim.welcome_messages()
    assert message["text"] is None
    assert message["attachments"] == code.welcome_attachments


def test_welcome_is_not_sent_to_a_customer_already_gone(wecom: WeCom, code: ChannelCode) -> None:
    userid = wecom.staff[0]
    added = wecom.sim.add_contact(userid, state=code.state, emit=False)
    wecom.sim.delete_follow(userid, added["external_userid"], by="customer", emit=False)
    event = wecom.handle(
        change_external_contact_xml(
            CORP_ID,
            "add_external_contact",
            userid,
            added["external_userid"],
            state=code.state,
            welcome_code=added["welcome_code"],
        )
    )
    assert event.status == EventStatus.DONE
    assert wecom.sim.welcome_messages() == []
    assert wecom.sim.counters()["paths"].get("externalcontact/send_welcome_msg") is None
