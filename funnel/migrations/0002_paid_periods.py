"""Paid periods: what each customer paid in each period after acquisition (the cohort
grid's revenue), filled from the paid orders already there; the acquisition-time index
of the milestones covers their engagement bits."""

from typing import Any

import django.db.models.deletion
from django.db import migrations, models


def fill(apps: Any, schema_editor: Any) -> None:
    # Derived rows: the refresh's own SQL computes them (as rebuild_funnel would).
    from funnel.services import paid_periods_refresh_everyone

    paid_periods_refresh_everyone()


class Migration(migrations.Migration):

    dependencies = [
        ('channels', '0005_syncseenfollow_no_db_constraints'),
        ('customers', '0004_customer_drop_unused_like_indexes'),
        ('funnel', '0001_initial'),
    ]

    operations = [
        migrations.CreateModel(
            name='PaidPeriod',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('acquired_at', models.DateTimeField(verbose_name='acquired at')),
                ('days', models.PositiveSmallIntegerField(verbose_name='period length in days')),
                ('n', models.PositiveSmallIntegerField(verbose_name='period since acquisition')),
                ('amount', models.DecimalField(decimal_places=2, max_digits=16, verbose_name='amount')),
            ],
            options={
                'verbose_name': 'paid period',
                'verbose_name_plural': 'paid periods',
                'db_table': 'funnel_paidperiod',
            },
        ),
        migrations.RemoveIndex(
            model_name='milestones',
            name='milestones_acq_idx',
        ),
        migrations.AddIndex(
            model_name='milestones',
            index=models.Index(fields=['acquired_at'], include=('engaged_weeks', 'engaged_months'), name='milestones_cohort_idx'),
        ),
        migrations.AddField(
            model_name='paidperiod',
            name='customer',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='customers.customer'),
        ),
        migrations.AddIndex(
            model_name='paidperiod',
            index=models.Index(fields=['days', 'acquired_at'], include=('n', 'amount'), name='paidperiod_cohort_idx'),
        ),
        migrations.AddConstraint(
            model_name='paidperiod',
            constraint=models.UniqueConstraint(fields=('customer', 'days', 'n'), name='paidperiod_customer_period_uniq'),
        ),
        migrations.RunPython(fill, migrations.RunPython.noop),
    ]
