"""Tags: the catalogue (local groups, and the mirror of WeCom corp tags) and the tags on
customers, one at a time (dashboard, API) or reconciled per follow (WeCom)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from django.db import transaction

from customers.hooks import Fact, announce
from customers.models import (
    ActivityKind,
    Customer,
    CustomerTag,
    Follow,
    Staff,
    Tag,
    TagGroup,
    TagSource,
)
from customers.services._bulk_sql import insert_rows
from customers.services._upsert import save_changes, upsert_one
from customers.services.activities import activity_record


@transaction.atomic
def customer_tag_add(
    *, customer: Customer, tag: Tag, staff: Staff | None = None, source: str
) -> bool:
    """Tag a customer; returns False when the tag was already there."""
    _link, created = CustomerTag.objects.get_or_create(
        customer=customer, tag=tag, defaults={"staff": staff}
    )
    if created:
        activity_record(
            customer=customer,
            kind=ActivityKind.TAG_ADDED,
            source=source,
            staff=staff,
            payload={"tag_id": tag.pk, "tag": tag.name},
            idempotency_key=f"tag-add:{_link.pk}",
        )
        announce([customer.pk], Fact.TAG)
    return created


@transaction.atomic
def customer_tag_remove(
    *, customer: Customer, tag: Tag, staff: Staff | None = None, source: str
) -> bool:
    """Untag a customer; returns False when the tag was not there."""
    link = CustomerTag.objects.filter(customer=customer, tag=tag).first()
    if link is None:
        return False
    link_id = link.pk
    link.delete()
    activity_record(
        customer=customer,
        kind=ActivityKind.TAG_REMOVED,
        source=source,
        staff=staff,
        payload={"tag_id": tag.pk, "tag": tag.name},
        idempotency_key=f"tag-remove:{link_id}",
    )
    announce([customer.pk], Fact.TAG)
    return True


@transaction.atomic
def tag_group_upsert(
    *, name: str, source: str = TagSource.LOCAL, data: Mapping[str, Any] | None = None
) -> tuple[TagGroup, str]:
    """Create or update the tag group ``name`` of ``source`` (``order``, ``wecom_group_id``)."""
    return upsert_one(
        TagGroup.objects.all(), lookup={"source": source, "name": name}, values=dict(data or {})
    )


@transaction.atomic
def tag_upsert(
    *, group: TagGroup, name: str, data: Mapping[str, Any] | None = None
) -> tuple[Tag, str]:
    """Create or update the tag ``name`` in ``group`` (``order``, ``wecom_tag_id``)."""
    return upsert_one(
        Tag.objects.all(), lookup={"group": group, "name": name}, values=dict(data or {})
    )


@transaction.atomic
def customer_tags_sync(*, customer_ids: Iterable[int]) -> tuple[int, int]:
    """Make these customers' platform (WeCom) tags the union of their active follows'
    ``tag_ids``: a tag is added when a follow carries it and removed when none does any
    more. Local tags are left alone. Returns (added, removed).

    Computed per customer over all their follows, so the result does not depend on the
    order in which a sync met them (a customer's follows span many pages).
    """
    ids = list(set(customer_ids))
    if not ids:
        return 0, 0
    managed = set(Tag.objects.filter(group__source=TagSource.WECOM).values_list("id", flat=True))
    wanted: dict[tuple[int, int], int | None] = {}
    follows = Follow.objects.filter(customer_id__in=ids, deleted_at__isnull=True).order_by(
        "added_at", "id"
    )
    for customer_id, staff_id, tag_ids in follows.values_list("customer_id", "staff_id", "tag_ids"):
        for tag_id in tag_ids or ():
            if tag_id in managed:
                # The earliest follow carrying a tag is recorded as who put it there.
                wanted.setdefault((customer_id, tag_id), staff_id)
    links = {
        (c, t): pk
        for pk, c, t in CustomerTag.objects.filter(
            customer_id__in=ids, tag_id__in=managed
        ).values_list("id", "customer_id", "tag_id")
    }
    to_delete = [pk for key, pk in links.items() if key not in wanted]
    to_add = [
        {"customer_id": c, "tag_id": t, "staff_id": s}
        for (c, t), s in wanted.items()
        if (c, t) not in links
    ]
    if to_delete:
        CustomerTag.objects.filter(pk__in=to_delete).delete()
    insert_rows(CustomerTag, rows=to_add, ignore_conflicts=True, returning=False)
    deleted = set(to_delete)
    touched = {c for c, _t in wanted if (c, _t) not in links} | {
        c for (c, _t), pk in links.items() if pk in deleted
    }
    announce(touched, Fact.TAG)
    return len(to_add), len(to_delete)


@transaction.atomic
def corp_tags_mirror(*, groups: Sequence[Mapping[str, Any]]) -> tuple[int, int]:
    """Mirror the platform's corp tag groups/tags (``get_corp_tag_list`` shape) into
    TagGroup/Tag of source WeCom: create, rename, reorder, and delete what is gone.
    Returns (written, deleted)."""
    written = 0
    seen_groups: set[str] = set()
    seen_tags: set[str] = set()
    for item in groups:
        if item.get("deleted"):
            continue
        group_id = str(item["group_id"])
        seen_groups.add(group_id)
        values = {
            "name": str(item.get("group_name") or group_id)[:64],
            "order": int(item.get("order") or 0),
            "wecom_group_id": group_id,
        }
        # By id; else adopt a same-named WeCom group (created before it had an id).
        group = (
            TagGroup.objects.filter(wecom_group_id=group_id).first()
            or TagGroup.objects.filter(source=TagSource.WECOM, name=values["name"]).first()
        )
        if group is None:
            group = TagGroup.objects.create(source=TagSource.WECOM, **values)
            written += 1
        elif save_changes(group, values):
            written += 1
        for tag in item.get("tag") or ():
            if tag.get("deleted"):
                continue
            tag_id = str(tag["id"])
            seen_tags.add(tag_id)
            tag_values = {
                "group": group,
                "name": str(tag.get("name") or tag_id)[:64],
                "order": int(tag.get("order") or 0),
                "wecom_tag_id": tag_id,
            }
            row = (
                Tag.objects.filter(wecom_tag_id=tag_id).first()
                or Tag.objects.filter(group=group, name=tag_values["name"]).first()
            )
            if row is None:
                Tag.objects.create(**tag_values)
                written += 1
            elif save_changes(row, tag_values):
                written += 1
    stale_tags = Tag.objects.filter(group__source=TagSource.WECOM).exclude(
        wecom_tag_id__in=seen_tags
    )
    affected = set(
        CustomerTag.objects.filter(tag__in=stale_tags).values_list("customer_id", flat=True)
    )
    deleted = stale_tags.delete()[1].get("customers.Tag", 0)
    deleted += (
        TagGroup.objects.filter(source=TagSource.WECOM)
        .exclude(wecom_group_id__in=seen_groups)
        .delete()[1]
        .get("customers.TagGroup", 0)
    )
    announce(affected, Fact.TAG)
    return written, deleted
