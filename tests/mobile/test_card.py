"""The customer card (/m/customers/<id>/): its sections, each action with and without
htmx, bad input, the funnel following a recorded purchase, masking and the query budget."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from campaigns.models import PointsEntry, PointsReason
from campaigns.services.levers import points_balance
from channels.models import ChannelCode
from channels.wecom.simulator import Simulator
from customers.models import (
    Activity,
    ActivityKind,
    ActivitySource,
    Customer,
    CustomerTag,
    Note,
    Order,
    ProductRole,
)
from customers.services import activity_record
from funnel.models import Milestones, Stage
from mobile.forms_customers import new_order_key
from tests.campaigns.factories import EnrollmentFactory, TouchpointFactory, sop_with_steps
from tests.channels.wecom_support import point_app_at
from tests.conftest import World
from tests.factories import (
    ActivityFactory,
    CustomerTagFactory,
    NoteFactory,
    OrderFactory,
    TagFactory,
)

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


def card_url(customer: Customer) -> str:
    return reverse("m:card", args=[customer.pk])


def url(name: str, customer: Customer) -> str:
    return reverse(f"m:{name}", args=[customer.pk])


@pytest.fixture
def clerk(world: World, m_client: Callable[[Any], Client]) -> Client:
    return m_client(world.clerk_a)


def order_post(**overrides: Any) -> dict[str, Any]:
    paid_at = timezone.localtime() - timedelta(minutes=5)
    return {
        "key": new_order_key(),
        "amount": "199.00",
        "product_role": ProductRole.PROFIT,
        "product_name": "Rose serum",
        "paid_at": paid_at.strftime("%Y-%m-%dT%H:%M"),
        **overrides,
    }


# --- Sections --------------------------------------------------------------------------


def test_card_shows_every_section(world: World, clerk: Client) -> None:
    customer = world.customer_a
    NoteFactory(customer=customer, body="Likes roses")
    OrderFactory(customer=customer, product_name="Night cream")
    CustomerTagFactory(customer=customer, tag=TagFactory(name="VIP"))
    response = clerk.get(card_url(customer))
    assert response.status_code == 200
    html = response.content.decode()
    for section in (
        "profile",
        "stage",
        "touchpoints",
        "orders",
        "tags",
        "notes",
        "timeline",
        "referral",
    ):
        assert f'id="card-{section}"' in html, section
    assert "Likes roses" in html and "Night cream" in html and "VIP" in html
    # Every action is a real form with CSRF that works without JavaScript.
    assert html.count("csrfmiddlewaretoken") >= 4
    assert f'action="{url("card_order", customer)}"' in html


def test_card_shows_stage_history_upcoming_touchpoints_and_points(
    world: World, clerk: Client
) -> None:
    customer = world.customer_a
    # A reply the day after acquisition: activated, not yet retained.
    activity_record(
        customer=customer,
        kind=ActivityKind.MESSAGE_RECEIVED,
        occurred_at=customer.acquired_at + timedelta(days=1),
    )
    assert Milestones.objects.get(customer=customer).stage == Stage.ACTIVATION
    sop = sop_with_steps(steps=1)
    sop.name = "Welcome SOP"
    sop.save(update_fields=["name"])
    assert sop.current_version is not None
    enrollment = EnrollmentFactory(version=sop.current_version, customer=customer)
    TouchpointFactory(
        enrollment=enrollment,
        step=sop.current_version.steps.get(),
        due_at=timezone.now() + timedelta(days=2),
    )
    PointsEntry.objects.create(
        customer=customer, delta=120, reason=PointsReason.ADJUST, idempotency_key="t-1"
    )
    response = clerk.get(card_url(customer))
    card = response.context["card"]
    assert card.stage.stage == Stage.ACTIVATION
    assert [(c.from_stage, c.to_stage) for c in card.stage.history] == [(1, 2)]
    assert [t.touchpoint.sop.name for t in card.touchpoints] == ["Welcome SOP"]
    assert card.points == 120
    assert "Welcome SOP" in response.content.decode()


def test_card_get_never_creates_a_referral_code(world: World, clerk: Client) -> None:
    response = clerk.get(card_url(world.customer_a))
    assert response.context["referral_code"] is None
    assert not ChannelCode.objects.exists()
    assert 'data-testid="referral-show"' in response.content.decode()


def test_timeline_more_returns_the_section_for_htmx_and_the_card_otherwise(
    world: World, clerk: Client
) -> None:
    for i in range(40):
        ActivityFactory(customer=world.customer_a, occurred_at=timezone.now() - timedelta(hours=i))
    card = clerk.get(card_url(world.customer_a))
    assert len(card.context["timeline"]) == 30 and card.context["timeline_more"]
    partial = clerk.get(url("card_timeline", world.customer_a), **HTMX)
    assert partial.templates[0].name == "m/_card_timeline.html"
    assert len(partial.context["timeline"]) == 40
    full = clerk.get(url("card_timeline", world.customer_a))
    assert full.templates[0].name == "m/card.html" and len(full.context["timeline"]) == 40


def test_timeline_shows_unknown_kinds_as_recorded(world: World, clerk: Client) -> None:
    # The same rule as the dashboard's timeline: an integration's own kind, as it sent it.
    ActivityFactory(customer=world.customer_a, kind="mall_cart_abandoned")
    response = clerk.get(card_url(world.customer_a))
    assert [e.label for e in response.context["timeline"]] == ["mall_cart_abandoned"]


def test_card_in_the_wecom_sidebar_has_no_tab_bar(world: World, clerk: Client) -> None:
    assert 'class="m-tabbar"' in clerk.get(card_url(world.customer_a)).content.decode()
    html = clerk.get(card_url(world.customer_a), {"sidebar": "1"}).content.decode()
    assert 'class="m-tabbar"' not in html and "m-no-tabbar" in html


# --- Tags ------------------------------------------------------------------------------


def test_tag_add_without_js_redirects_and_records_a_mobile_activity(
    world: World, clerk: Client
) -> None:
    tag = TagFactory(name="Sensitive skin")
    response = clerk.post(url("card_tag_add", world.customer_a), {"tag": tag.pk})
    assert response.status_code == 302
    assert response["Location"].endswith(f"{card_url(world.customer_a)}#card-tags")
    assert CustomerTag.objects.filter(customer=world.customer_a, tag=tag).exists()
    activity = Activity.objects.get(customer=world.customer_a, kind=ActivityKind.TAG_ADDED)
    assert activity.source == ActivitySource.MOBILE
    assert activity.staff == world.clerk_a


def test_tag_add_with_htmx_swaps_the_tags_and_the_timeline(world: World, clerk: Client) -> None:
    tag = TagFactory(name="Sensitive skin")
    response = clerk.post(url("card_tag_add", world.customer_a), {"tag": tag.pk}, **HTMX)
    assert response.status_code == 200
    html = response.content.decode()
    assert html.lstrip().startswith('<section class="m-section" id="card-tags"')
    assert 'id="card-timeline" data-testid="card-timeline" hx-swap-oob="true"' in html
    assert "Sensitive skin" in html


def test_tag_remove_records_the_removal(world: World, clerk: Client) -> None:
    tag = TagFactory(name="Old")
    CustomerTagFactory(customer=world.customer_a, tag=tag)
    response = clerk.post(url("card_tag_remove", world.customer_a), {"tag": tag.pk}, **HTMX)
    assert response.status_code == 200
    assert not CustomerTag.objects.filter(customer=world.customer_a, tag=tag).exists()
    assert Activity.objects.filter(
        customer=world.customer_a, kind=ActivityKind.TAG_REMOVED, source=ActivitySource.MOBILE
    ).exists()


@pytest.mark.parametrize("value", ["999999", "abc", ""])
def test_unknown_tag_is_a_form_error_not_a_500(world: World, clerk: Client, value: str) -> None:
    response = clerk.post(url("card_tag_add", world.customer_a), {"tag": value})
    assert response.status_code == 400
    assert response.context["tag_form"].errors
    assert not CustomerTag.objects.exists()
    assert not Activity.objects.exists()
    htmx = clerk.post(url("card_tag_add", world.customer_a), {"tag": value}, **HTMX)
    assert htmx.status_code == 200 and 'class="errorlist"' in htmx.content.decode()


# --- Notes -----------------------------------------------------------------------------


def test_note_add(world: World, clerk: Client) -> None:
    response = clerk.post(url("card_note_add", world.customer_a), {"body": "  Call after 6pm "})
    assert response.status_code == 302
    note = Note.objects.get(customer=world.customer_a)
    assert note.body == "Call after 6pm" and note.author == world.clerk_a.user
    assert Activity.objects.get(kind=ActivityKind.NOTE_ADDED).source == ActivitySource.MOBILE
    htmx = clerk.post(url("card_note_add", world.customer_a), {"body": "Second"}, **HTMX)
    html = htmx.content.decode()
    assert 'id="card-notes"' in html and "Second" in html and "Call after 6pm" in html


def test_empty_note_is_refused(world: World, clerk: Client) -> None:
    response = clerk.post(url("card_note_add", world.customer_a), {"body": "   "})
    assert response.status_code == 400
    assert response.context["note_form"].errors
    assert not Note.objects.exists()


# --- Orders ----------------------------------------------------------------------------


def test_order_form_get_opens_the_form(world: World, clerk: Client) -> None:
    response = clerk.get(url("card_order", world.customer_a))
    assert response.status_code == 200 and response.context["order_open"]
    key = response.context["order_form"].initial["key"]
    assert key.startswith("m-") and len(key) == 34
    htmx = clerk.get(url("card_order", world.customer_a), **HTMX)
    assert htmx.content.decode().lstrip().startswith('<section class="m-section" id="card-orders"')


def test_recording_a_purchase_writes_the_order_of_the_clerks_store(
    world: World, clerk: Client
) -> None:
    data = order_post()
    response = clerk.post(url("card_order", world.customer_a), data)
    assert response.status_code == 302
    order = Order.objects.get(customer=world.customer_a)
    assert order.external_id == data["key"]
    assert order.amount == Decimal("199.00")
    assert order.product_role == ProductRole.PROFIT and order.product_name == "Rose serum"
    assert order.store == world.store_a and order.staff == world.clerk_a
    # A second tap on "Save" (same form, same key) does not record it twice.
    clerk.post(url("card_order", world.customer_a), data)
    assert Order.objects.filter(customer=world.customer_a).count() == 1


def test_purchase_moves_the_funnel_at_once_and_the_card_shows_it(
    world: World, clerk: Client
) -> None:
    customer = world.customer_a
    # Activation and retention already reached: the first paid order makes it revenue.
    now = timezone.now()
    activity_record(
        customer=customer,
        kind=ActivityKind.MESSAGE_RECEIVED,
        occurred_at=customer.acquired_at + timedelta(days=10),
    )
    assert Milestones.objects.get(customer=customer).stage == Stage.RETENTION
    response = clerk.post(url("card_order", customer), order_post(), **HTMX)
    assert response.status_code == 200
    milestones = Milestones.objects.get(customer=customer)
    assert milestones.stage == Stage.REVENUE and milestones.revenue_at is not None
    assert milestones.revenue_at <= now
    html = response.content.decode()
    # The stage section is swapped out of band with the new stage.
    assert 'id="card-stage" data-testid="card-stage" hx-swap-oob="true"' in html
    assert 'class="badge m-stage m-stage-4"' in html
    # So are the profile's badges: the stage and the points the order earned.
    badges = html[html.index('id="card-badges"') :]
    assert badges.startswith('id="card-badges" data-testid="card-badges" hx-swap-oob="true"')
    assert "m-stage-4" in badges.split("</p>")[0]
    # And the points the order earned, in the badges and the referral-and-points section.
    earned = points_balance(customer.pk)
    assert earned > 0
    assert f">{earned} " in badges.split("</p>")[0]  # "199 points" in either language
    assert 'id="card-referral"' in html
    page = clerk.get(card_url(customer))
    assert page.context["stage"].stage == Stage.REVENUE


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("amount", "-5"),
        ("amount", "0"),
        ("amount", "abc"),
        ("amount", "1.234"),
        ("paid_at", "FUTURE"),
        ("paid_at", "yesterday"),
        ("product_role", "villain"),
        ("key", "ord-1"),
    ],
)
def test_bad_purchase_is_shown_again_with_messages_and_nothing_written(
    world: World, clerk: Client, field: str, value: str
) -> None:
    if value == "FUTURE":
        value = (timezone.localtime() + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    response = clerk.post(url("card_order", world.customer_a), order_post(**{field: value}))
    assert response.status_code == 400
    assert field in response.context["order_form"].errors
    assert response.context["order_open"]
    assert not Order.objects.exists()
    assert not Milestones.objects.filter(revenue_at__isnull=False).exists()
    htmx = clerk.post(url("card_order", world.customer_a), order_post(**{field: value}), **HTMX)
    assert htmx.status_code == 200 and 'class="errorlist"' in htmx.content.decode()
    assert not Order.objects.exists()


def test_a_key_of_another_customers_order_is_refused(world: World, clerk: Client) -> None:
    key = new_order_key()
    OrderFactory(customer=world.customer_b, external_id=key)
    response = clerk.post(url("card_order", world.customer_a), order_post(key=key))
    assert response.status_code == 400
    assert Order.objects.get(external_id=key).customer == world.customer_b


# --- Referral --------------------------------------------------------------------------


@pytest.fixture
def sim(settings: Any) -> Iterator[Simulator]:
    with Simulator(contacts=5, staff=3, seed=11) as running:
        point_app_at(settings, running)
        yield running


def test_referral_code_is_created_on_the_explicit_post(
    world: World, clerk: Client, sim: Simulator
) -> None:
    world.clerk_a.wecom_userid = sim.dataset.staff_ids[0]
    world.clerk_a.save(update_fields=["wecom_userid"])
    Customer.objects.filter(pk=world.customer_a.pk).update(owner=world.clerk_a)
    response = clerk.post(url("card_referral", world.customer_a), **HTMX)
    assert response.status_code == 200
    code = ChannelCode.objects.get(referrer=world.customer_a)
    assert code.qr_code and code.qr_code in response.content.decode()
    # Shown from then on by the GET, and a second POST reuses it.
    assert clerk.get(card_url(world.customer_a)).context["referral_code"] == code
    clerk.post(url("card_referral", world.customer_a))
    assert ChannelCode.objects.filter(referrer=world.customer_a).count() == 1


def test_referral_without_a_wecom_staff_member_is_a_message(
    world: World, clerk: Client, sim: Simulator
) -> None:
    Customer.objects.filter(pk=world.customer_a.pk).update(owner=None)
    world.clerk_a.wecom_userid = None
    world.clerk_a.save(update_fields=["wecom_userid"])
    response = clerk.post(url("card_referral", world.customer_a))
    assert response.status_code == 400
    assert response.context["referral_error"]
    assert not ChannelCode.objects.exists()


# --- Masking ---------------------------------------------------------------------------


def test_phone_masked_for_the_clerk_not_for_the_manager(
    world: World, m_client: Callable[[Any], Client]
) -> None:
    Customer.objects.filter(pk=world.customer_a.pk).update(phone="13912345678")
    clerk_html = m_client(world.clerk_a).get(card_url(world.customer_a)).content.decode()
    assert "139****5678" in clerk_html and "13912345678" not in clerk_html
    manager_html = m_client(world.manager_a).get(card_url(world.customer_a)).content.decode()
    assert "13912345678" in manager_html


# --- Query budget ----------------------------------------------------------------------


def test_card_queries_are_bounded_with_50_orders_activities_notes_and_tags(
    world: World, clerk: Client, django_assert_max_num_queries: Any
) -> None:
    customer = world.customer_a

    def grow(n: int) -> None:
        for _ in range(n):
            OrderFactory(customer=customer)
            ActivityFactory(customer=customer)
            NoteFactory(customer=customer)
            CustomerTagFactory(customer=customer)

    grow(2)
    with django_assert_max_num_queries(18) as few:
        assert clerk.get(card_url(customer)).status_code == 200
    grow(48)
    with django_assert_max_num_queries(18) as many:
        response = clerk.get(card_url(customer))
    assert response.status_code == 200
    assert len(many.captured_queries) == len(few.captured_queries)
    assert len(response.context["orders"]) == 10
