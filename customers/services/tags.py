"""Tags: the catalogue (local groups, and the mirror of WeCom corp tags) and the tags on
customers, one at a time (dashboard, API) or reconciled per follow (WeCom)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from django.db import transaction

from customers.hooks import Fact, announce
from customers.models import ActivityKind, Customer, CustomerTag, Staff, Tag, TagGroup, TagSource
from customers.services._upsert import insert_rows, save_changes, upsert_one
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
def follow_tags_reconcile(
    *, wanted: Mapping[tuple[int, int], set[int]], source: str
) -> tuple[int, int]:
    """Make each (customer, staff) follow's tags of ``source`` exactly ``wanted``.

    The platform reports a follow's complete tag list, so a tag it no longer lists on that
    follow is removed, unless another follow of the same customer still carries it (the
    link then moves to that staff member). Returns (added, removed).
    """
    if not wanted:
        return 0, 0
    customer_ids = {c for c, _ in wanted}
    links = list(
        CustomerTag.objects.filter(
            customer_id__in=customer_ids, tag__group__source=source
        ).values_list("id", "customer_id", "tag_id", "staff_id")
    )
    by_customer_tag = {(c, t): (link_id, s) for link_id, c, t, s in links}
    wanted_by_customer: dict[int, set[int]] = {}
    for (customer_id, _staff_id), tags in wanted.items():
        wanted_by_customer.setdefault(customer_id, set()).update(tags)
    to_delete = [
        link_id
        for link_id, c, t, s in links
        if (c, s) in wanted
        and t not in wanted[(c, s)]
        and t not in wanted_by_customer.get(c, set())
    ]
    # Two follows of one customer in the batch may both add a tag: keep one link.
    to_add = {
        (c, t): {"customer_id": c, "tag_id": t, "staff_id": s}
        for (c, s), tags in wanted.items()
        for t in sorted(tags)
        if (c, t) not in by_customer_tag
    }
    unique_add = list(to_add.values())
    if to_delete:
        CustomerTag.objects.filter(pk__in=to_delete).delete()
    insert_rows(CustomerTag, rows=unique_add, ignore_conflicts=True, returning=False)
    deleted = set(to_delete)
    touched = {c for c, _t in to_add} | {c for link_id, c, _t, _s in links if link_id in deleted}
    announce(touched, Fact.TAG)
    return len(unique_add), len(to_delete)


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
