"""Adjustment moves to the payments app (payments 0001 takes over its table)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("ledger", "0007_reclassify_sandbox_amounts")]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=[migrations.DeleteModel(name="Adjustment")]),
    ]
