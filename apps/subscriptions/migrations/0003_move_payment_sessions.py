"""PaymentSession moves to the payments app (payments 0001 takes over its table)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("subscriptions", "0002_remove_stored_periods")]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=[migrations.DeleteModel(name="PaymentSession")]),
    ]
