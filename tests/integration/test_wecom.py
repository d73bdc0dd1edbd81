"""WeCom through the real worker: a signed callback recorded by the web view and processed
by the Celery worker process, and a full sync queued for it, against the session's
simulator, PostgreSQL and Redis."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
from django.db import connection, transaction
from django.test import Client
from django.urls import reverse

from channels.models import EventStatus, SyncRun, SyncStatus, WeComEvent
from channels.services import channel_code_create, sync_request
from channels.tasks import process_wecom_event
from channels.wecom.simulator import Simulator, change_external_contact_xml
from channels.wecom.simulator.emitter import CallbackEmitter
from customers.models import Activity, Customer, Follow, Staff
from tests.factories import ChannelFactory
from tests.integration.conftest import Worker

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

FINISHED = (EventStatus.DONE, EventStatus.FAILED, EventStatus.IGNORED)


def _post(body: str, params: dict[str, str]) -> None:
    response = Client().post(
        f"{reverse('wecom-callback')}?{urlencode(params)}", data=body, content_type="text/xml"
    )
    assert response.status_code == 200, response.content
    assert response.content == b""


def test_a_signed_add_event_is_processed_by_the_worker_once(
    celery_worker: Worker, wecom: Simulator
) -> None:
    userid = wecom.dataset.staff_ids[0]
    staff = Staff.objects.create(wecom_userid=userid, name="Mia")
    channel = ChannelFactory(name="Poster")
    code = channel_code_create(
        channel=channel,
        name="Poster code",
        staff=[staff],
        state="it_poster",
        welcome_text="Hello {name}, I am {staff}",
    )
    # The customer scans the code in WeCom; the event is what WeCom would POST.
    added = wecom.add_contact(config_id=code.config_id, name="Zoe", emit=False)
    eid = added["external_userid"]
    xml = change_external_contact_xml(
        wecom.corp_id,
        "add_external_contact",
        userid,
        eid,
        state=code.state,
        welcome_code=added["welcome_code"],
    )
    sealed = CallbackEmitter(corp_id=wecom.corp_id, token=wecom.token, aes_key=wecom.aes_key)
    body, params = sealed.seal(xml)

    _post(body, params)
    event = celery_worker.wait_for(
        lambda: WeComEvent.objects.filter(status__in=FINISHED).first(), timeout=20
    )

    assert event.status == EventStatus.DONE, event.error
    assert event.attempts == 1
    customer = Customer.objects.get(external_userid=eid)
    assert customer.name == "Zoe"
    assert customer.source_channel_id == channel.pk
    follow = Follow.objects.get(customer=customer)
    assert (follow.staff_id, follow.state, follow.deleted_at) == (staff.pk, "it_poster", None)
    assert [m["text"]["content"] for m in wecom.welcome_messages()] == ["Hello Zoe, I am Mia"]
    assert connection.vendor == "postgresql"

    # WeCom redelivers (same body, and sealed afresh), and the task arrives twice.
    _post(body, params)
    _post(*sealed.seal(xml))
    process_wecom_event.delay(event.pk)
    celery_worker.wait_for(
        lambda: (
            f"WeCom event {event.pk} is done; not processing it again" in celery_worker.output()
            or None
        ),
        timeout=20,
    )

    assert WeComEvent.objects.count() == 1
    event.refresh_from_db()
    assert (event.status, event.attempts) == (EventStatus.DONE, 1)
    assert Customer.objects.count() == 1
    assert Follow.objects.count() == 1
    assert Activity.objects.filter(customer=customer, kind="contact_added").count() == 1
    assert Activity.objects.filter(customer=customer, kind="welcome_sent").count() == 1
    assert len(wecom.welcome_messages()) == 1


def test_a_queued_full_sync_runs_in_the_worker_and_reconciles(
    celery_worker: Worker, wecom: Simulator
) -> None:
    with transaction.atomic():
        run = sync_request()

    def finished(run_id: int) -> SyncRun | None:
        return SyncRun.objects.filter(pk=run_id).exclude(status=SyncStatus.RUNNING).first()

    done = celery_worker.wait_for(lambda: finished(run.pk), timeout=30)

    assert done.status == SyncStatus.SUCCEEDED, done.errors
    relationships = wecom.stats()["relationships"]
    assert relationships == 100
    assert done.wecom_follows == done.active_follows == relationships
    assert Customer.objects.filter(external_userid__isnull=False).count() == 60
    assert Follow.objects.filter(deleted_at__isnull=True).count() == relationships

    # A customer deletes a staff member in WeCom (no callback reaches us): the next sync,
    # again in the worker, notices and marks the follow deleted.
    eid, userid = next(wecom.relationships())
    wecom.delete_follow(userid, eid, by="customer", emit=False)
    with transaction.atomic():
        again = sync_request()
    assert again.pk != run.pk
    done = celery_worker.wait_for(lambda: finished(again.pk), timeout=30)

    assert done.status == SyncStatus.SUCCEEDED, done.errors
    assert (done.deleted, done.wecom_follows, done.active_follows) == (1, 99, 99)
    assert Follow.objects.filter(deleted_at__isnull=False).count() == 1
