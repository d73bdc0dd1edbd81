"""A tag link's ``staff`` (who put the tag there) loses its database foreign key (see
``CustomerTag.staff``)."""
import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('customers', '0005_activity_drop_unused_like_index'),
    ]

    operations = [
        migrations.AlterField(
            model_name='customertag',
            name='staff',
            field=models.ForeignKey(blank=True, db_constraint=False, db_index=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='customers.staff'),
        ),
    ]
