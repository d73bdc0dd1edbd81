"""Drop the ``varchar_pattern_ops`` index Django adds on PostgreSQL next to the unique
index of ``Activity.idempotency_key``.

It serves only ``LIKE 'prefix%'`` look-ups, and no query of ours makes one on the key:
look-ups are by equality or ``IN`` (the unique index) and the upsert's ``ON CONFLICT``
uses the unique index. Yet every stored activity adds a random key to it: one of the
table's six indexes, 330 MB at 10,000,000 activities, on the bulk API's ingest path. No
model state changes (as in 0004): Django drops such an index with ``DROP INDEX IF
EXISTS`` when it alters the field.
"""

from django.db import migrations

LIKE_INDEX = "customers_activity_idempotency_key_7fd6bfff_like"


def drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return  # only PostgreSQL has it
    schema_editor.execute(f'DROP INDEX IF EXISTS "{LIKE_INDEX}"')


def restore(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(
        f'CREATE INDEX IF NOT EXISTS "{LIKE_INDEX}" ON "customers_activity" '
        '("idempotency_key" varchar_pattern_ops)'
    )


class Migration(migrations.Migration):
    dependencies = [
        ("customers", "0004_customer_drop_unused_like_indexes"),
    ]

    operations = [migrations.RunPython(drop, restore, elidable=False)]
