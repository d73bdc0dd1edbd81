"""Every write to the core tables.

Interfaces (API, dashboard, mobile pages, WeCom sync, commands) parse their input and call
one of these functions; none of them writes a model directly. Each service is
keyword-only, runs in one transaction, and ends by announcing the facts it changed
(``customers.hooks.announce``) so that derived state follows.

Upserts are idempotent: replaying the same input writes nothing (no row, no
``updated_at`` bump) and reports the rows as unchanged.
"""

from customers.services._upsert import UpsertResult
from customers.services.activities import (
    ActivityInput,
    activities_record,
    activity_record,
    note_create,
)
from customers.services.contacts_pg import (
    ContactFollowInput,
    ContactFollowsResult,
    contact_follows_apply_copy,
    contact_follows_apply_pg,
)
from customers.services.customers import (
    CUSTOMER_FIELDS,
    ContactInput,
    ContactsResult,
    contacts_upsert,
    customer_create,
    customer_ids_by_external_id,
    customer_mark_active,
    customer_mark_lost,
    customer_update,
    customer_upsert,
    customers_refresh_status,
)
from customers.services.follows import FollowInput, follows_mark_deleted, follows_upsert
from customers.services.orders import OrderInput, orders_upsert
from customers.services.people import (
    staff_bulk_ensure,
    staff_create,
    staff_update,
    staff_upsert,
    store_update,
    store_upsert,
)
from customers.services.tags import (
    corp_tags_mirror,
    customer_tag_add,
    customer_tag_remove,
    customer_tags_sync,
    tag_group_upsert,
    tag_upsert,
)

__all__ = [
    "CUSTOMER_FIELDS",
    "ActivityInput",
    "ContactFollowInput",
    "ContactFollowsResult",
    "ContactInput",
    "ContactsResult",
    "FollowInput",
    "OrderInput",
    "UpsertResult",
    "activities_record",
    "activity_record",
    "contact_follows_apply_copy",
    "contact_follows_apply_pg",
    "contacts_upsert",
    "corp_tags_mirror",
    "customer_create",
    "customer_ids_by_external_id",
    "customer_mark_active",
    "customer_mark_lost",
    "customer_tag_add",
    "customer_tag_remove",
    "customer_tags_sync",
    "customer_update",
    "customer_upsert",
    "customers_refresh_status",
    "follows_mark_deleted",
    "follows_upsert",
    "note_create",
    "orders_upsert",
    "staff_bulk_ensure",
    "staff_create",
    "staff_update",
    "staff_upsert",
    "store_update",
    "store_upsert",
    "tag_group_upsert",
    "tag_upsert",
]
