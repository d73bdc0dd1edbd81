"""Row-level permissions: every read starts from these querysets."""

import pytest
from django.http import Http404

from customers.selectors import (
    customer_get_for_user,
    customer_visible_qs,
    order_visible_qs,
    staff_visible_qs,
    store_visible_qs,
)
from customers.services import customer_update
from scrm.roles import Role, role_of
from tests.factories import CustomerFactory, FollowFactory, OrderFactory, StaffFactory, UserFactory

pytestmark = pytest.mark.django_db


def names(qs) -> set[str]:
    return set(qs.values_list("name", flat=True))


def test_operator_sees_every_customer(world, operator_user) -> None:
    assert names(customer_visible_qs(operator_user)) == {"Alice A", "Anna A2", "Bob B"}


def test_integration_sees_every_customer(world, integration_user) -> None:
    assert role_of(integration_user) == Role.INTEGRATION
    assert customer_visible_qs(integration_user).count() == 3


def test_manager_sees_only_their_store(world) -> None:
    assert names(customer_visible_qs(world.manager_a.user)) == {"Alice A", "Anna A2"}


def test_manager_sees_customer_of_other_store_followed_by_their_staff(world) -> None:
    FollowFactory(customer=world.customer_b, staff=world.clerk_a)
    assert "Bob B" in names(customer_visible_qs(world.manager_a.user))


def test_staff_sees_only_customers_they_follow_or_own(world) -> None:
    assert names(customer_visible_qs(world.clerk_a.user)) == {"Alice A"}
    owned = CustomerFactory(name="Owned", owner=world.clerk_a, store=world.store_b)
    assert names(customer_visible_qs(world.clerk_a.user)) == {"Alice A", owned.name}


def test_staff_loses_customer_when_follow_is_deleted(world) -> None:
    from django.utils import timezone

    world.customer_a.follows.update(deleted_at=timezone.now())
    assert customer_visible_qs(world.clerk_a.user).count() == 0


def test_staff_cannot_see_other_stores_customers(world) -> None:
    with pytest.raises(Http404):
        customer_get_for_user(world.clerk_a.user, world.customer_b.pk)
    with pytest.raises(Http404):
        customer_get_for_user(world.clerk_a.user, world.customer_a2.pk)
    assert customer_get_for_user(world.clerk_a.user, world.customer_a.pk) == world.customer_a


def test_garbage_ids_are_not_found(world, operator_user) -> None:
    for bad in ("abc", None, "1; DROP TABLE", 10**30):
        with pytest.raises(Http404):
            customer_get_for_user(operator_user, bad)


def test_user_without_role_sees_nothing(world) -> None:
    nobody = UserFactory(username="nobody")
    assert role_of(nobody) is None
    assert customer_visible_qs(nobody).count() == 0
    assert staff_visible_qs(nobody).count() == 0
    assert store_visible_qs(nobody).count() == 0


def test_inactive_staff_sees_nothing(world) -> None:
    world.clerk_a.is_active = False
    world.clerk_a.save()
    user = type(world.clerk_a.user).objects.get(pk=world.clerk_a.user.pk)
    assert customer_visible_qs(user).count() == 0


def test_orders_follow_customer_visibility(world) -> None:
    OrderFactory(customer=world.customer_a)
    OrderFactory(customer=world.customer_b)
    assert order_visible_qs(world.clerk_a.user).count() == 1
    assert order_visible_qs(world.clerk_b.user).count() == 1


def test_staff_list_is_scoped_to_store(world) -> None:
    assert names(staff_visible_qs(world.clerk_a.user)) == {"Manager A", "Clerk A", "Clerk A2"}
    lone = StaffFactory(name="Lone", store=None, user=UserFactory(username="lone"))
    assert names(staff_visible_qs(lone.user)) == {"Lone"}


def test_customer_cannot_refer_themselves(world) -> None:
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError):
        customer_update(customer=world.customer_a, data={"referred_by_id": world.customer_a.pk})


@pytest.mark.parametrize("value", ["1e30", "99999999999999999999999", "-5", "abc"])
def test_out_of_range_ids_in_filters_never_reach_the_database(world, operator_user, value):
    from django.test import Client

    from tests.conftest import api_client_for

    api = api_client_for(operator_user)
    for path in (
        "/api/v1/customers/?channel=",
        "/api/v1/orders/?customer=",
        "/api/v1/activities/?customer=",
    ):
        assert api.get(path + value).status_code == 400, path
    page = Client()
    page.force_login(operator_user)
    assert page.get("/customers/?channel=" + value).status_code == 200
