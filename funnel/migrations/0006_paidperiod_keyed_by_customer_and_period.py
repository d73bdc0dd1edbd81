"""Paid periods keyed by what they are of, (customer, days, n), instead of a surrogate id
next to a unique constraint on the same three columns: one index and one sequence value
per row fewer (a rebuild writes 1.5 million rows at a million customers).

Django cannot turn a primary key into a composite one in place, and the rows are derived:
the table is made again and filled by the refresh's own SQL, as ``0002`` filled it.
"""

from typing import Any

import django.db.models.deletion
from django.db import migrations, models


def fill(apps: Any, schema_editor: Any) -> None:
    from funnel.services import paid_periods_refresh_everyone

    paid_periods_refresh_everyone()


class Migration(migrations.Migration):
    dependencies = [
        ("funnel", "0005_partial_acquisition_indexes"),
    ]

    operations = [
        migrations.DeleteModel(name="PaidPeriod"),
        migrations.CreateModel(
            name="PaidPeriod",
            fields=[
                (
                    "pk",
                    models.CompositePrimaryKey(
                        "customer",
                        "days",
                        "n",
                        blank=True,
                        editable=False,
                        primary_key=True,
                        serialize=False,
                    ),
                ),
                (
                    "customer",
                    models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="customers.customer",
                    ),
                ),
                ("acquired_at", models.DateTimeField(verbose_name="acquired at")),
                ("days", models.PositiveSmallIntegerField(verbose_name="period length in days")),
                ("n", models.PositiveSmallIntegerField(verbose_name="period since acquisition")),
                (
                    "amount",
                    models.DecimalField(decimal_places=2, max_digits=16, verbose_name="amount"),
                ),
            ],
            options={
                "verbose_name": "paid period",
                "verbose_name_plural": "paid periods",
                "db_table": "funnel_paidperiod",
                "indexes": [
                    models.Index(
                        fields=["days", "acquired_at"],
                        include=("n", "amount"),
                        name="paidperiod_cohort_idx",
                    )
                ],
            },
        ),
        migrations.RunPython(fill, migrations.RunPython.noop),
    ]
