"""The funnel tables (milestones, stage changes, paid periods) lose their database foreign
key to the customer (see ``Milestones.customer``): derived rows, removed by Django's delete
and by a full refresh, whose key cost a deferred check per written row."""
import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('customers', '0006_customertag_staff_without_constraint'),
        ('funnel', '0003_copied_keys_without_constraints'),
    ]

    operations = [
        migrations.AlterField(
            model_name='milestones',
            name='customer',
            field=models.OneToOneField(db_constraint=False, on_delete=django.db.models.deletion.CASCADE, primary_key=True, related_name='milestones', serialize=False, to='customers.customer', verbose_name='customer'),
        ),
        migrations.AlterField(
            model_name='paidperiod',
            name='customer',
            field=models.ForeignKey(db_constraint=False, db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='+', to='customers.customer'),
        ),
        migrations.AlterField(
            model_name='stagechange',
            name='customer',
            field=models.ForeignKey(db_constraint=False, db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='stage_changes', to='customers.customer', verbose_name='customer'),
        ),
    ]
