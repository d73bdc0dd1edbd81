"""The milestones' copies of the customer's channel, store and owner lose their database
foreign keys (see ``Milestones``): a deferred check per written row at COMMIT for values
that the customer's own keys already checked."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("funnel", "0002_paid_periods"),
    ]

    operations = [
        migrations.AlterField(
            model_name="milestones",
            name=name,
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to=to,
            ),
        )
        for name, to in (
            ("channel", "channels.channel"),
            ("owner", "customers.staff"),
            ("store", "customers.store"),
        )
    ]
