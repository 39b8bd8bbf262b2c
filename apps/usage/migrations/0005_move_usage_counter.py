"""UsageCounter moves to the subscriptions app (subscriptions 0004 takes over its table), so
that entitlements can read it without importing usage."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("usage", "0004_lean_hot_rows")]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=[migrations.DeleteModel(name="UsageCounter")]),
    ]
