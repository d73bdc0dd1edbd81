"""Processing recorded WeCom events against the simulator: each change type, redelivery,
transient and permanent errors, and the requeue sweeper."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone

from channels.models import ChannelCode, EventStatus, WeComEvent
from channels.tasks import process_wecom_event, requeue_wecom_events
from channels.wecom.errors import WeComRateLimited
from channels.wecom.events import MAX_ATTEMPTS, event_process, events_requeue_stuck
from channels.wecom.simulator import (
    change_external_chat_xml,
    change_external_contact_xml,
    change_external_tag_xml,
)
from customers.models import (
    Activity,
    Customer,
    CustomerStatus,
    CustomerTag,
    Follow,
    Staff,
    Tag,
    TagGroup,
    TagSource,
)
from customers.services import corp_tags_mirror
from tests.channels.wecom_support import (
    CORP_ID,
    WeCom,
    running_wecom,
)
from tests.factories import ChannelFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def wecom(db, settings, django_capture_on_commit_callbacks) -> Iterator[WeCom]:
    with running_wecom(settings, django_capture_on_commit_callbacks) as running:
        yield running


def add(wecom: WeCom, userid: str, **kw: Any) -> tuple[dict[str, Any], WeComEvent]:
    """A customer adds ``userid`` in WeCom; the event is delivered to us and processed."""
    create_time = kw.pop("create_time", None)
    added = wecom.sim.add_contact(userid, emit=False, **kw)
    xml = change_external_contact_xml(
        CORP_ID,
        "add_half_external_contact" if kw.get("half") else "add_external_contact",
        userid,
        added["external_userid"],
        state=added["state"] or None,
        welcome_code=added["welcome_code"],
        create_time=create_time,
    )
    return added, wecom.handle(xml)


def contact_event(wecom: WeCom, change_type: str, userid: str, eid: str, **kw: Any) -> WeComEvent:
    return wecom.handle(change_external_contact_xml(CORP_ID, change_type, userid, eid, **kw))


def writes() -> tuple[int, ...]:
    return (
        Customer.objects.count(),
        Follow.objects.count(),
        Follow.objects.filter(deleted_at__isnull=True).count(),
        Activity.objects.count(),
        CustomerTag.objects.count(),
    )


@pytest.fixture
def code(wecom: WeCom) -> ChannelCode:
    """A channel code with a welcome and two auto tags: one WeCom tag, one local tag."""
    made = wecom.sim.create_tag("新客", group_name="来源", emit=False)
    group = TagGroup.objects.create(
        name="来源", source=TagSource.WECOM, wecom_group_id=made["group_id"]
    )
    wecom_tag = Tag.objects.create(group=group, name="新客", wecom_tag_id=made["tag_id"])
    local_tag = Tag.objects.create(group=TagGroup.objects.create(name="本地"), name="海报")
    code = ChannelCode.objects.create(
        channel=ChannelFactory(name="地铁海报"),
        name="地铁海报一号",
        state="metro_poster_01",
        welcome_text="你好{name}, 我是{staff}. 欢迎!",
        welcome_attachments=[
            {"msgtype": "link", "link": {"title": "会员", "url": "https://example.com/join"}}
        ],
    )
    code.auto_tags.set([wecom_tag, local_tag])
    return code


# --- add / edit ----------------------------------------------------------------------


def test_add_with_a_channel_code_attributes_tags_and_welcomes(wecom: WeCom, code) -> None:
    userid = wecom.staff[0]
    Staff.objects.create(wecom_userid=userid, name="小王")
    added, event = add(wecom, userid, state=code.state, name="李四")
    eid = added["external_userid"]

    assert event.status == EventStatus.DONE and event.attempts == 1 and event.error == ""
    assert event.processed_at is not None
    customer = Customer.objects.get(external_userid=eid)
    assert customer.name == "李四"
    assert customer.source_channel == code.channel
    follow = Follow.objects.get(customer=customer, staff__wecom_userid=userid)
    assert follow.state == code.state and follow.deleted_at is None
    assert customer.activities.filter(kind="contact_added").count() == 1

    # Auto tags: the WeCom one is marked in WeCom, both are on the customer here.
    wecom_tag_id = code.auto_tags.exclude(wecom_tag_id=None).get().wecom_tag_id
    in_wecom = wecom.sim.contact(eid)["follow_user"][0]["tags"]
    assert [t["tag_id"] for t in in_wecom] == [wecom_tag_id]
    assert set(customer.tags.values_list("name", flat=True)) == {"新客", "海报"}

    # The welcome reached WeCom with the placeholders filled, and is on the timeline.
    (message,) = wecom.sim.welcome_messages()
    assert message["welcome_code"] == added["welcome_code"]
    assert message["text"] == {"content": "你好李四, 我是小王. 欢迎!"}
    assert message["attachments"] == code.welcome_attachments
    welcome = customer.activities.get(kind="welcome_sent")
    assert welcome.payload["ok"] is True
    assert welcome.payload["text"] == "你好李四, 我是小王. 欢迎!"
    assert welcome.staff is not None and welcome.staff.wecom_userid == userid


def test_redelivered_and_reprocessed_add_changes_nothing_twice(wecom: WeCom, code) -> None:
    userid = wecom.staff[1]
    added = wecom.sim.add_contact(userid, state=code.state, emit=False)
    xml = change_external_contact_xml(
        CORP_ID,
        "add_external_contact",
        userid,
        added["external_userid"],
        state=code.state,
        welcome_code=added["welcome_code"],
    )
    body, params = wecom.emitter.seal(xml)
    response, callbacks = wecom.post_sealed(body, params)
    assert response.status_code == 200 and len(callbacks) == 1
    event = wecom.process(WeComEvent.objects.get())
    assert event.status == EventStatus.DONE
    after_first = writes()

    for _ in range(3):
        response, callbacks = wecom.post_sealed(body, params)
        assert response.status_code == 200 and callbacks == []
    assert process_wecom_event.apply(args=[event.pk]).result is None  # already done
    # Even a crash after the work (the event left "processing", then requeued) is safe.
    WeComEvent.objects.filter(pk=event.pk).update(status=EventStatus.PENDING)
    assert wecom.process(event).status == EventStatus.DONE

    assert WeComEvent.objects.count() == 1
    assert writes() == after_first
    assert len(wecom.sim.welcome_messages()) == 1, "the welcome is never sent twice"
    assert Activity.objects.filter(kind="welcome_sent").count() == 1


def test_add_without_welcome_code_or_content_sends_no_welcome(wecom: WeCom, code) -> None:
    added, event = add(wecom, wecom.staff[0], state=code.state, welcome_code=False)
    assert event.status == EventStatus.DONE
    customer = Customer.objects.get(external_userid=added["external_userid"])
    assert customer.tags.count() == 2, "auto tags do not depend on the welcome"
    code.welcome_text, code.welcome_attachments = "", []
    code.save()
    add(wecom, wecom.staff[1], state=code.state)
    assert wecom.sim.welcome_messages() == []
    assert not Activity.objects.filter(kind="welcome_sent").exists()


def test_add_through_an_inactive_code_is_attributed_but_not_welcomed(wecom: WeCom, code) -> None:
    code.is_active = False
    code.save()
    added, event = add(wecom, wecom.staff[0], state=code.state)
    assert event.status == EventStatus.DONE
    customer = Customer.objects.get(external_userid=added["external_userid"])
    assert customer.source_channel == code.channel
    assert wecom.sim.welcome_messages() == [] and customer.tags.count() == 0


def test_add_of_an_existing_customer_uses_the_local_name(wecom: WeCom, code) -> None:
    first, _ = add(wecom, wecom.staff[0])
    eid = first["external_userid"]
    Customer.objects.filter(external_userid=eid).update(name="老客户")
    wecom.sim.reset_counters()
    add(wecom, wecom.staff[1], external_userid=eid, state=code.state)
    (message,) = wecom.sim.welcome_messages()
    assert message["text"]["content"].startswith("你好老客户,")
    assert Follow.objects.filter(customer__external_userid=eid, deleted_at=None).count() == 2
    calls = wecom.sim.counters()["paths"]
    assert calls.get("externalcontact/get") == 1, "one contact read for the whole event"


def test_half_add_is_applied_like_an_add(wecom: WeCom) -> None:
    added, event = add(wecom, wecom.staff[2], half=True)
    assert event.status == EventStatus.DONE
    assert Follow.objects.filter(customer__external_userid=added["external_userid"]).exists()


def test_edit_updates_remark_and_tags(wecom: WeCom) -> None:
    userid = wecom.staff[0]
    added, _ = add(wecom, userid)
    eid = added["external_userid"]
    corp_tags_mirror(groups=_corp_tags(wecom))
    tag_id = next(iter(wecom.sim.state.tags))
    wecom.sim.edit_follow(userid, eid, remark="老王", add_tags=[tag_id], emit=False)
    event = contact_event(wecom, "edit_external_contact", userid, eid)
    assert event.status == EventStatus.DONE
    follow = Follow.objects.get(customer__external_userid=eid, staff__wecom_userid=userid)
    assert follow.remark == "老王"
    assert list(follow.customer.tags.values_list("wecom_tag_id", flat=True)) == [tag_id]


def test_edit_of_a_relationship_that_is_gone_is_a_deletion(wecom: WeCom) -> None:
    userid = wecom.staff[0]
    added, _ = add(wecom, userid)
    eid = added["external_userid"]
    wecom.sim.delete_follow(userid, eid, by="customer", emit=False)  # WeCom now says 84061
    event = contact_event(wecom, "edit_external_contact", userid, eid, create_time=1_750_000_000)
    assert event.status == EventStatus.DONE
    customer = Customer.objects.get(external_userid=eid)
    assert customer.status == CustomerStatus.LOST
    assert customer.lost_at == datetime.fromtimestamp(1_750_000_000, tz=UTC)


# --- deletions and transfers ---------------------------------------------------------


def test_customer_deleting_their_last_staff_member_is_lost_with_the_time(wecom: WeCom) -> None:
    userid = wecom.staff[0]
    added, _ = add(wecom, userid)
    eid = added["external_userid"]
    wecom.sim.delete_follow(userid, eid, by="customer", emit=False)
    at = int(timezone.now().timestamp()) - 30
    event = contact_event(wecom, "del_follow_user", userid, eid, create_time=at)
    assert event.status == EventStatus.DONE
    customer = Customer.objects.get(external_userid=eid)
    assert customer.status == CustomerStatus.LOST
    assert customer.lost_at == datetime.fromtimestamp(at, tz=UTC)
    follow = Follow.objects.get(customer=customer)
    assert follow.deleted_at == datetime.fromtimestamp(at, tz=UTC)
    deleted = customer.activities.get(kind="contact_deleted")
    assert deleted.occurred_at == datetime.fromtimestamp(at, tz=UTC)
    # Redelivered with another signature, or processed again: nothing more.
    before = writes()
    again = contact_event(wecom, "del_follow_user", userid, eid, create_time=at + 1)
    assert again.status == EventStatus.DONE and writes() == before


def test_staff_deleting_one_of_two_follows_keeps_the_customer_active(wecom: WeCom) -> None:
    a, b = wecom.staff[:2]
    added, _ = add(wecom, a)
    eid = added["external_userid"]
    add(wecom, b, external_userid=eid)
    wecom.sim.delete_follow(a, eid, by="staff", emit=False)
    event = contact_event(wecom, "del_external_contact", a, eid)
    assert event.status == EventStatus.DONE
    customer = Customer.objects.get(external_userid=eid)
    assert customer.status == CustomerStatus.ACTIVE
    assert list(
        Follow.objects.filter(customer=customer, deleted_at=None).values_list(
            "staff__wecom_userid", flat=True
        )
    ) == [b]


def test_on_job_transfer_moves_the_customer_without_losing_them(wecom: WeCom) -> None:
    handover, takeover = wecom.staff[:2]
    added, _ = add(wecom, handover)
    eid = added["external_userid"]
    # WeCom completed the transfer: the takeover member has the customer now.
    wecom.sim.add_contact(takeover, external_userid=eid, welcome_code=False, emit=False)
    wecom.sim.delete_follow(handover, eid, emit=False)
    event = contact_event(wecom, "del_external_contact", handover, eid, source="DELETE_BY_TRANSFER")
    assert event.status == EventStatus.DONE
    customer = Customer.objects.get(external_userid=eid)
    assert customer.status == CustomerStatus.ACTIVE and customer.lost_at is None
    active = Follow.objects.filter(customer=customer, deleted_at=None)
    assert list(active.values_list("staff__wecom_userid", flat=True)) == [takeover]
    # The ended follow says on the timeline that it ended by a transfer, and to whom.
    moved = customer.activities.get(kind="contact_deleted")
    assert moved.payload == {
        "change_type": "del_external_contact",
        "source": "DELETE_BY_TRANSFER",
        "handover_userid": handover,
        "takeover_userids": [takeover],
        "follow_id": moved.payload["follow_id"],
    }


def test_deletion_of_an_unknown_pair_is_done_with_nothing_to_do(wecom: WeCom) -> None:
    before = writes()
    event = contact_event(wecom, "del_external_contact", wecom.staff[0], "wmUNKNOWN")
    assert event.status == EventStatus.DONE and writes() == before


def test_transfer_failure_goes_on_the_timeline(wecom: WeCom) -> None:
    added, _ = add(wecom, wecom.staff[0])
    eid = added["external_userid"]
    takeover = wecom.staff[3]
    event = contact_event(
        wecom, "transfer_fail", takeover, eid, fail_reason="customer_limit_exceed"
    )
    assert event.status == EventStatus.DONE
    failed = Activity.objects.get(kind="transfer_failed")
    assert failed.customer.external_userid == eid
    assert failed.payload == {"fail_reason": "customer_limit_exceed", "takeover_userid": takeover}


def test_an_event_without_ids_fails_with_a_message(wecom: WeCom) -> None:
    xml = change_external_contact_xml(CORP_ID, "del_follow_user", "", "")
    event = wecom.handle(xml)
    assert event.status == EventStatus.FAILED
    assert "without UserID" in event.error


# --- tags, chats, others -------------------------------------------------------------


def _corp_tags(wecom: WeCom) -> list[dict[str, Any]]:
    from channels.wecom.client import get_client

    return get_client().corp_tags()


def test_tag_events_refresh_the_mirror(wecom: WeCom) -> None:
    sim = wecom.sim
    made = sim.create_tag("高净值", group_name="测试等级", emit=False)
    event = wecom.handle(change_external_tag_xml(CORP_ID, "create", made["tag_id"]))
    assert event.status == EventStatus.DONE
    tag = Tag.objects.get(wecom_tag_id=made["tag_id"])
    assert (tag.name, tag.group.name) == ("高净值", "测试等级")

    sim.update_tag(made["tag_id"], name="超高净值", emit=False)
    wecom.handle(change_external_tag_xml(CORP_ID, "update", made["tag_id"]))
    tag.refresh_from_db()
    assert tag.name == "超高净值"

    sim.create_tag("普通", group_id=made["group_id"], order=5, emit=False)
    wecom.handle(change_external_tag_xml(CORP_ID, "create", "any"))
    group_tags = Tag.objects.filter(group=tag.group)
    before = dict(group_tags.values_list("wecom_tag_id", "order"))
    sim.shuffle_tags(made["group_id"], emit=False)
    wecom.handle(
        change_external_tag_xml(CORP_ID, "shuffle", made["group_id"], tag_type="tag_group")
    )
    orders = dict(group_tags.values_list("wecom_tag_id", "order"))
    assert orders == {t.id: t.order for t in sim.state.groups[made["group_id"]].tags}
    assert orders != before

    sim.delete_tag(made["tag_id"], emit=False)
    wecom.handle(change_external_tag_xml(CORP_ID, "delete", made["tag_id"]))
    assert not Tag.objects.filter(wecom_tag_id=made["tag_id"]).exists()


def test_chat_events_are_recorded_and_done(wecom: WeCom) -> None:
    xml = change_external_chat_xml(CORP_ID, "wrCHAT01", "update", members=["Jack", "Rose"])
    event = wecom.handle(xml)
    assert event.status == EventStatus.DONE
    assert event.payload["MemChangeList"] == ["Jack", "Rose"]


def test_unknown_change_types_are_ignored(wecom: WeCom) -> None:
    event = contact_event(wecom, "msg_audit_approved", wecom.staff[0], "wmX", welcome_code="C")
    assert event.status == EventStatus.IGNORED


# --- errors and retries --------------------------------------------------------------


def test_transient_error_puts_the_event_back_to_pending(wecom: WeCom) -> None:
    added = wecom.sim.add_contact(wecom.staff[0], welcome_code=False, emit=False)
    event = wecom.deliver(
        change_external_contact_xml(
            CORP_ID, "add_external_contact", wecom.staff[0], added["external_userid"]
        )
    )
    wecom.sim.inject(45009, path="externalcontact/get", count=1)
    with pytest.raises(WeComRateLimited):
        event_process(event_id=event.pk)
    event.refresh_from_db()
    assert event.status == EventStatus.PENDING and event.attempts == 1
    assert "45009" in event.error
    assert not Customer.objects.exists()


def test_transient_error_is_retried_by_the_task(wecom: WeCom) -> None:
    wecom.sim.inject(45009, path="externalcontact/get", count=2)
    added, event = add(wecom, wecom.staff[0])
    assert event.status == EventStatus.DONE
    assert event.attempts == 3, "two rate-limited attempts, then success"
    assert event.error == ""
    assert Customer.objects.filter(external_userid=added["external_userid"]).exists()


def test_permanent_error_fails_without_retry(wecom: WeCom) -> None:
    wecom.sim.inject(48002, path="externalcontact/get", count=None)
    _added, event = add(wecom, wecom.staff[0])
    assert event.status == EventStatus.FAILED and event.attempts == 1
    assert "48002" in event.error


def test_a_corp_that_stays_unreachable_is_given_up_on(wecom: WeCom) -> None:
    added = wecom.sim.add_contact(wecom.staff[0], welcome_code=False, emit=False)
    event = wecom.deliver(
        change_external_contact_xml(
            CORP_ID, "add_external_contact", wecom.staff[0], added["external_userid"]
        )
    )
    WeComEvent.objects.filter(pk=event.pk).update(attempts=MAX_ATTEMPTS - 1)
    wecom.sim.inject(-1, path="externalcontact/get", count=None)
    assert event_process(event_id=event.pk) == EventStatus.FAILED
    event.refresh_from_db()
    assert event.status == EventStatus.FAILED and "gave up" in event.error


def test_missing_event_is_logged_and_skipped(wecom: WeCom, caplog) -> None:
    assert process_wecom_event.apply(args=[987654]).result is None
    assert "does not exist" in caplog.text


def test_requeue_sweeper_picks_events_whose_processing_was_lost(wecom: WeCom, monkeypatch) -> None:
    xml = change_external_chat_xml(CORP_ID, "wrCHAT", "create")
    lost = wecom.deliver(xml)  # its task never ran
    dead = wecom.deliver(change_external_chat_xml(CORP_ID, "wrCHAT", "dismiss"))
    fresh = wecom.deliver(change_external_chat_xml(CORP_ID, "wrCHAT2", "create"))
    busy = wecom.deliver(change_external_chat_xml(CORP_ID, "wrCHAT2", "dismiss"))
    long_ago = timezone.now() - timedelta(minutes=30)
    WeComEvent.objects.filter(pk=lost.pk).update(received_at=long_ago)
    WeComEvent.objects.filter(pk=dead.pk).update(
        status=EventStatus.PROCESSING, attempts=1, received_at=long_ago, claimed_at=long_ago
    )
    WeComEvent.objects.filter(pk=busy.pk).update(
        status=EventStatus.PROCESSING, attempts=1, received_at=long_ago, claimed_at=timezone.now()
    )
    enqueued: list[int] = []
    monkeypatch.setattr(process_wecom_event, "delay", lambda event_id: enqueued.append(event_id))

    assert requeue_wecom_events.apply().result == 2
    assert enqueued == [lost.pk, dead.pk]
    assert WeComEvent.objects.get(pk=dead.pk).status == EventStatus.PENDING
    assert WeComEvent.objects.get(pk=busy.pk).status == EventStatus.PROCESSING
    assert WeComEvent.objects.get(pk=fresh.pk).status == EventStatus.PENDING
    for event_id in enqueued:
        process_wecom_event.apply(args=[event_id])
    assert set(WeComEvent.objects.filter(pk__in=enqueued).values_list("status", flat=True)) == {
        EventStatus.DONE
    }
    assert events_requeue_stuck() == []
