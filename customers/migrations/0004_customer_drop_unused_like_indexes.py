"""Drop the two ``varchar_pattern_ops`` indexes Django adds on PostgreSQL next to the
unique indexes of ``Customer.external_userid`` and ``Customer.external_id``.

They serve only ``LIKE 'prefix%'`` look-ups (``startswith``), and no query of ours makes
one on these ids: look-ups are by equality or ``IN``, which the unique indexes serve,
and the admin's search is ``icontains`` (``UPPER(...) LIKE '%...%'``), which no btree
serves. Yet every customer a WeCom sync writes updates both (a tenth of the inserts'
index upkeep each). No model state changes: Django drops these indexes with
``DROP INDEX IF EXISTS`` when it alters the fields, so later migrations are unaffected.
"""

from django.db import migrations

LIKE_INDEXES = (
    ("customers_customer_external_userid_548f6417_like", "external_userid"),
    ("customers_customer_external_id_b1779fc4_like", "external_id"),
)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return  # only PostgreSQL has them
    for name, _column in LIKE_INDEXES:
        schema_editor.execute(f'DROP INDEX IF EXISTS "{name}"')


def restore(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, column in LIKE_INDEXES:
        schema_editor.execute(
            f'CREATE INDEX IF NOT EXISTS "{name}" ON "customers_customer" '
            f'("{column}" varchar_pattern_ops)'
        )


class Migration(migrations.Migration):
    dependencies = [
        ("customers", "0003_follow_tags_and_digest"),
    ]

    operations = [migrations.RunPython(drop, restore, elidable=False)]
