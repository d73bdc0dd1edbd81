"""End to end over real HTTP: the simulator itself verifies our callback URL and POSTs its
events to a live test server, as WeCom would; a "worker" (the task, applied here) then
processes what the view enqueued after commit."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.urls import reverse

from channels.models import ChannelCode, EventStatus, WeComEvent
from channels.tasks import process_wecom_event
from customers.models import Activity, Customer, CustomerStatus, Staff
from tests.channels.wecom_support import WeCom, running_wecom
from tests.factories import ChannelFactory


@pytest.fixture
def live(
    transactional_db, live_server, settings, django_capture_on_commit_callbacks, monkeypatch
) -> Iterator[tuple[WeCom, list[int]]]:
    enqueued: list[int] = []
    # The live server commits for real, so the view's on-commit enqueue runs: catch it
    # instead of writing to the project's broker.
    monkeypatch.setattr(process_wecom_event, "delay", lambda event_id: enqueued.append(event_id))
    with running_wecom(settings, django_capture_on_commit_callbacks) as running:
        running.sim.configure(callback_url=live_server.url + reverse("wecom-callback"))
        yield running, enqueued


def work(enqueued: list[int]) -> list[str]:
    """Run what was enqueued, like a worker, and return the events' final statuses."""
    ids = list(enqueued)
    enqueued.clear()
    for event_id in ids:
        process_wecom_event.apply(args=[event_id])
    return list(WeComEvent.objects.filter(pk__in=ids).values_list("status", flat=True))


def test_simulator_callbacks_flow_through_the_live_server(live) -> None:
    wecom, enqueued = live
    sim = wecom.sim
    assert sim.verify_callback()["ok"] is True
    for forgery in ("forge_signature", "wrong_corp_id", "bad_base64"):
        delivery = sim.emit_event(
            change_type="del_follow_user", userid="x", external_userid="y", **{forgery: True}
        )["callback"]
        assert delivery["status"] in (400, 403)
    assert WeComEvent.objects.count() == 0 and enqueued == []

    code = ChannelCode.objects.create(
        channel=ChannelFactory(), name="live", state="live_state", welcome_text="Hello {name}"
    )
    userid = wecom.staff[0]
    Staff.objects.create(wecom_userid=userid, name="Mia")
    added = sim.add_contact(userid, state=code.state, name="Zoe")
    assert added["callback"]["status"] == 200 and added["callback"]["body"] == ""
    assert work(enqueued) == [EventStatus.DONE]
    customer = Customer.objects.get(external_userid=added["external_userid"])
    assert customer.source_channel == code.channel
    assert [m["text"]["content"] for m in sim.welcome_messages()] == ["Hello Zoe"]
    assert Activity.objects.filter(customer=customer, kind="welcome_sent").count() == 1

    made = sim.create_tag("Live", group_name="Live group")
    assert all(c["status"] == 200 for c in made["callbacks"])
    assert work(enqueued) == [EventStatus.DONE, EventStatus.DONE]

    gone = sim.delete_follow(userid, added["external_userid"], by="customer")
    assert gone["callback"]["status"] == 200
    assert work(enqueued) == [EventStatus.DONE]
    customer.refresh_from_db()
    assert customer.status == CustomerStatus.LOST and customer.lost_at is not None
    assert customer.activities.filter(kind="contact_deleted").count() == 1
