"""FilterSets shared by the dashboard lists and the API: one class per list, so a filter
means the same thing in a URL of either."""

from __future__ import annotations

from typing import Any

import django_filters
from django import forms
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils.translation import gettext_lazy as _

from customers.models import (
    Activity,
    Customer,
    CustomerStatus,
    CustomerTag,
    Follow,
    Gender,
    Order,
    OrderStatus,
    ProductRole,
    Staff,
    Store,
    Tag,
)
from customers.selectors import staff_visible_qs, store_visible_qs, tag_visible_qs


class IdFilter(django_filters.NumberFilter):
    """A row id: a whole number within a database key's range. A plain NumberFilter
    accepts 1e30, which the database then refuses (an error page, not "no rows")."""

    field_class = forms.IntegerField

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", 2**63 - 1)
        super().__init__(*args, **kwargs)


class CustomerFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(method="filter_search", label=_("Search"))
    status = django_filters.ChoiceFilter(choices=CustomerStatus.choices, label=_("Status"))
    gender = django_filters.ChoiceFilter(choices=Gender.choices, label=_("Gender"))
    store = django_filters.ModelChoiceFilter(queryset=Store.objects.all(), label=_("Store"))
    owner = django_filters.ModelChoiceFilter(queryset=Staff.objects.all(), label=_("Owner"))
    staff = django_filters.ModelChoiceFilter(
        queryset=Staff.objects.all(), method="filter_staff", label=_("Followed by")
    )
    channel = IdFilter(field_name="source_channel_id", label=_("Channel"))
    tag = django_filters.ModelChoiceFilter(
        queryset=Tag.objects.all(), method="filter_tag", label=_("Tag")
    )
    acquired_after = django_filters.IsoDateTimeFilter(
        field_name="acquired_at", lookup_expr="gte", label=_("Acquired from")
    )
    acquired_before = django_filters.IsoDateTimeFilter(
        field_name="acquired_at", lookup_expr="lt", label=_("Acquired before")
    )
    external_id = django_filters.CharFilter(label=_("Integration id"))
    external_userid = django_filters.CharFilter(label=_("WeCom external_userid"))
    ordering = django_filters.OrderingFilter(
        fields=(
            ("acquired_at", "acquired_at"),
            ("name", "name"),
            ("created_at", "created_at"),
            ("updated_at", "updated_at"),
        ),
        label=_("Sort"),
    )

    class Meta:
        model = Customer
        fields: list[str] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Choices offered (and accepted) are only what the user may see: a store clerk
        # cannot even name another store in a filter.
        user = getattr(self.request, "user", None)
        self.filters["store"].queryset = store_visible_qs(user)
        self.filters["owner"].queryset = staff_visible_qs(user)
        self.filters["staff"].queryset = staff_visible_qs(user)
        self.filters["tag"].queryset = tag_visible_qs(user)

    def filter_search(self, qs: QuerySet[Customer], name: str, value: str) -> QuerySet[Customer]:
        value = value.strip()
        if not value:
            return qs
        remark = Follow.objects.filter(customer=OuterRef("pk"), remark__icontains=value)
        return qs.filter(
            Q(name__icontains=value)
            | Q(phone__contains=value)
            | Q(external_id=value)
            | Q(external_userid=value)
            | Exists(remark)
        )

    def filter_staff(self, qs: QuerySet[Customer], name: str, value: Any) -> QuerySet[Customer]:
        if not value:
            return qs
        follow = Follow.objects.filter(
            customer=OuterRef("pk"), staff=value, deleted_at__isnull=True
        )
        return qs.filter(Exists(follow))

    def filter_tag(self, qs: QuerySet[Customer], name: str, value: Any) -> QuerySet[Customer]:
        if not value:
            return qs
        return qs.filter(Exists(CustomerTag.objects.filter(customer=OuterRef("pk"), tag=value)))


class OrderFilter(django_filters.FilterSet):
    customer = IdFilter(field_name="customer_id")
    customer_external_id = django_filters.CharFilter(field_name="customer__external_id")
    external_id = django_filters.CharFilter()
    status = django_filters.ChoiceFilter(choices=OrderStatus.choices)
    product_role = django_filters.ChoiceFilter(choices=ProductRole.choices)
    store = IdFilter(field_name="store_id")
    paid_after = django_filters.IsoDateTimeFilter(field_name="paid_at", lookup_expr="gte")
    paid_before = django_filters.IsoDateTimeFilter(field_name="paid_at", lookup_expr="lt")

    class Meta:
        model = Order
        fields: list[str] = []


class ActivityFilter(django_filters.FilterSet):
    customer = IdFilter(field_name="customer_id")
    kind = django_filters.CharFilter()
    source = django_filters.CharFilter()
    occurred_after = django_filters.IsoDateTimeFilter(field_name="occurred_at", lookup_expr="gte")
    occurred_before = django_filters.IsoDateTimeFilter(field_name="occurred_at", lookup_expr="lt")

    class Meta:
        model = Activity
        fields: list[str] = []
