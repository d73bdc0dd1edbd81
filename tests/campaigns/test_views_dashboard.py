"""The campaigns dashboard: every page renders for its roles within a fixed query budget,
writing is for operators (403 for store staff), ids of what a user may not see are 404."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, cast

import pytest
from django.test import Client
from django.utils import timezone

from campaigns.models import (
    Campaign,
    Content,
    Sop,
    SopStatus,
    TouchpointKind,
    TouchpointStatus,
)
from tests.campaigns.factories import (
    CampaignFactory,
    ContentFactory,
    EnrollmentFactory,
    TouchpointFactory,
    current_version,
    sop_with_steps,
)
from tests.conftest import World
from tests.factories import ChannelFactory, TagFactory

pytestmark = pytest.mark.django_db


def login(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def touchpoints_for(world: World, n: int, **kwargs: Any) -> None:
    sop = sop_with_steps(steps=1)
    version = current_version(sop)
    for i in range(n):
        customer = world.customer_a if i % 2 == 0 else world.customer_b
        enrollment = EnrollmentFactory(version=version, customer=customer)
        TouchpointFactory(enrollment=enrollment, step=version.steps.first(), **kwargs)


def test_format_lift_shows_points_and_interval() -> None:
    from campaigns.views import format_lift

    assert format_lift(0.032, (-0.005, 0.069)) == "+3.2 pp (95% CI \u22120.5 to +6.9)"
    assert format_lift(None, None) == "—"


@pytest.mark.parametrize(
    "url",
    [
        "/campaigns/",
        "/campaigns/content/",
        "/campaigns/sops/",
        "/campaigns/touchpoints/",
        "/campaigns/todos/",
    ],
)
def test_list_pages_cost_the_same_for_few_and_many_rows(
    url: str, operator_user: Any, world: World, django_assert_max_num_queries: Any
) -> None:
    client = login(operator_user)
    for n in (2, 10):
        touchpoints_for(world, n)
        ContentFactory()
        CampaignFactory()
        with django_assert_max_num_queries(14):
            response = client.get(url)
        assert response.status_code == 200


def test_sop_detail_and_campaign_detail_render(operator_user: Any, world: World) -> None:
    campaign = cast(Campaign, CampaignFactory())
    sop = sop_with_steps(steps=2)
    sop.campaign = campaign
    sop.save()
    client = login(operator_user)
    page = client.get(f"/campaigns/sops/{sop.pk}/")
    assert page.status_code == 200
    assert sop.name in page.content.decode()
    report = client.get(f"/campaigns/{campaign.pk}/")
    assert report.status_code == 200
    assert "Lift" in report.content.decode() or "提升" in report.content.decode()


def test_staff_cannot_open_the_editors_or_post_actions(world: World) -> None:
    sop = sop_with_steps(steps=1)
    content = ContentFactory()
    client = login(world.clerk_a.user)
    for url in (
        "/campaigns/sops/new/",
        f"/campaigns/sops/{sop.pk}/edit/",
        f"/campaigns/sops/{sop.pk}/preview/",
        f"/campaigns/sops/{sop.pk}/preview.csv",
        "/campaigns/content/new/",
        f"/campaigns/content/{content.pk}/edit/",
        "/campaigns/new/",
    ):
        assert client.get(url).status_code == 403, url
    assert client.post(f"/campaigns/sops/{sop.pk}/pause/").status_code == 403
    assert Sop.objects.get(pk=sop.pk).status == SopStatus.ACTIVE
    # Reading is allowed.
    assert client.get(f"/campaigns/sops/{sop.pk}/").status_code == 200


def test_unknown_ids_are_404(operator_user: Any) -> None:
    client = login(operator_user)
    assert client.get("/campaigns/sops/99999/").status_code == 404
    assert client.get("/campaigns/99999/").status_code == 404
    assert client.post("/campaigns/sops/99999/activate/").status_code == 404
    assert client.post("/campaigns/todos/99999/done/").status_code == 404


def test_operator_creates_content_and_the_preview_renders_it(
    operator_user: Any, world: World
) -> None:
    client = login(operator_user)
    preview = client.post("/campaigns/content/preview/", {"text": "Hi {name} {{ x }}"})
    assert preview.status_code == 200
    # The newest visible customer is the sample; a hostile text stays literal.
    assert "Hi Bob B {{ x }}" in preview.content.decode()
    response = client.post(
        "/campaigns/content/new/", {"name": "Welcome", "text": "Hi {name}", "attachments": ""}
    )
    assert response.status_code == 302
    assert Content.objects.get(name="Welcome").text == "Hi {name}"


def test_content_service_errors_land_on_the_field(operator_user: Any) -> None:
    client = login(operator_user)
    response = client.post(
        "/campaigns/content/new/",
        {"name": "Bad", "text": "x", "attachments": '[{"msgtype": "nope"}]'},
    )
    assert response.status_code == 400
    assert "attachments[0].msgtype" in response.content.decode()


def test_operator_creates_edits_and_activates_an_sop(operator_user: Any, world: World) -> None:
    content = ContentFactory()
    client = login(operator_user)
    form = {
        "name": "Welcome",
        "trigger_kind": "manual",
        "quiet_action": "defer",
        "exit_on_lost": "on",
        "steps-TOTAL_FORMS": "2",
        "steps-INITIAL_FORMS": "0",
        "steps-MIN_NUM_FORMS": "1",
        "steps-MAX_NUM_FORMS": "50",
        "steps-0-offset_days": "0",
        "steps-0-at_time": "10:00",
        "steps-0-offset_minutes": "0",
        "steps-0-action": "wecom_message",
        "steps-0-content": str(content.pk),
        "steps-1-offset_days": "3",
        "steps-1-offset_minutes": "0",
        "steps-1-action": "todo",
        "steps-1-instruction": "Call",
    }
    response = client.post("/campaigns/sops/new/", form)
    assert response.status_code == 302, response.content.decode()[:2000]
    sop = Sop.objects.get(name="Welcome")
    assert sop.current_version is not None
    assert sop.current_version.steps.count() == 2
    assert client.post(f"/campaigns/sops/{sop.pk}/activate/").status_code == 302
    sop.refresh_from_db()
    assert sop.status == SopStatus.ACTIVE
    # Editing a live SOP asks what happens to customers in flight.
    page = client.get(f"/campaigns/sops/{sop.pk}/edit/").content.decode()
    assert 'name="in_flight"' in page
    missing = client.post(f"/campaigns/sops/{sop.pk}/edit/", {**form, "quiet_action": "skip"})
    assert missing.status_code == 400
    form.update({"quiet_action": "skip", "in_flight": "migrate", "steps-INITIAL_FORMS": "2"})
    assert client.post(f"/campaigns/sops/{sop.pk}/edit/", form).status_code == 302
    sop.refresh_from_db()
    assert current_version(sop).number == 2


def _one_step_form(content: Any, **fields: Any) -> dict[str, Any]:
    return {
        "name": "Onboarding",
        "quiet_action": "defer",
        "exit_on_lost": "on",
        "steps-TOTAL_FORMS": "1",
        "steps-INITIAL_FORMS": "0",
        "steps-MIN_NUM_FORMS": "1",
        "steps-MAX_NUM_FORMS": "50",
        "steps-0-offset_days": "0",
        "steps-0-offset_minutes": "5",
        "steps-0-action": "wecom_message",
        "steps-0-content": str(content.pk),
        **fields,
    }


def test_sop_editor_sets_trigger_and_audience_with_form_controls(
    operator_user: Any, world: World
) -> None:
    content = ContentFactory()
    channel = ChannelFactory()
    vip, churned = TagFactory(name="VIP"), TagFactory(name="Churned")
    client = login(operator_user)
    form = _one_step_form(
        content,
        trigger_kind="contact_added",
        trigger_channels=[str(channel.pk)],
        trigger_stage="4",  # another trigger's setting: ignored
        aud_tags_any=[str(vip.pk)],
        aud_tags_none=[str(churned.pk)],
        aud_stages=["1", "2"],
        aud_stores=[str(world.store_a.pk)],
        aud_acquired_from="2026-01-01",
        aud_active_within_days="30",
    )
    response = client.post("/campaigns/sops/new/", form)
    assert response.status_code == 302, response.content.decode()[:2000]
    version = current_version(Sop.objects.get(name="Onboarding"))
    assert version.trigger_config == {"channel_ids": [channel.pk]}
    assert version.audience == {
        "tags_any": [vip.pk],
        "tags_none": [churned.pk],
        "stages": [1, 2],
        "store_ids": [world.store_a.pk],
        "acquired_from": "2026-01-01",
        "active_within_days": 30,
    }
    # The editor shows them back in the same controls.
    page = client.get(f"/campaigns/sops/{version.sop_id}/edit/").content.decode()
    assert f'<option value="{vip.pk}" selected>' in page
    assert 'name="aud_acquired_from" value="2026-01-01"' in page


def test_sop_editor_puts_service_errors_on_the_control(operator_user: Any) -> None:
    client = login(operator_user)
    response = client.post(
        "/campaigns/sops/new/",
        _one_step_form(
            ContentFactory(),
            trigger_kind="tag_added",
            aud_acquired_from="2026-03-01",
            aud_acquired_to="2026-02-01",
        ),
    )
    assert response.status_code == 400
    form = response.context["form"]
    assert "trigger_tag" in form.errors  # a tag trigger needs its tag
    assert "aud_acquired_to" in form.errors
    assert not Sop.objects.exists()


def test_my_todos_lists_my_open_todos_and_done_closes_one(world: World) -> None:
    now = timezone.now()
    sop = sop_with_steps(steps=1)
    version = current_version(sop)
    mine = TouchpointFactory(
        enrollment=EnrollmentFactory(version=version, customer=world.customer_a),
        step=version.steps.first(),
        kind=TouchpointKind.TODO,
        status=TouchpointStatus.TODO,
        staff=world.clerk_a,
        due_at=now - timedelta(hours=2),
        rendered_text="Hello Alice",
    )
    TouchpointFactory(
        enrollment=EnrollmentFactory(version=version, customer=world.customer_a2),
        step=version.steps.first(),
        kind=TouchpointKind.TODO,
        status=TouchpointStatus.TODO,
        staff=world.clerk_a2,
        rendered_text="Hello Anna",
    )
    client = login(world.clerk_a.user)
    page = client.get("/campaigns/todos/").content.decode()
    assert "Hello Alice" in page
    assert "Hello Anna" not in page
    assert client.post(f"/campaigns/todos/{mine.pk}/done/").status_code == 302
    mine.refresh_from_db()
    assert mine.status == TouchpointStatus.DONE
    assert "Hello Alice" not in client.get("/campaigns/todos/").content.decode()
