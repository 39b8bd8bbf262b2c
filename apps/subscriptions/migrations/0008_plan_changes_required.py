"""The fields of 0007, filled there, now required (a migration of their own: PostgreSQL
will not alter a table with the fill's deferred foreign-key checks pending)."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("subscriptions", "0007_plan_changes")]

    operations = [
        migrations.AlterField(model_name="subscription", name="period_anchor", field=models.DateTimeField()),
        migrations.AlterField(
            model_name="billingperiod",
            name="plan",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.PROTECT, related_name="+", to="catalog.plan"
            ),
        ),
        migrations.AlterField(model_name="billingperiod", name="cycle_start", field=models.DateTimeField()),
        migrations.AlterField(model_name="billingperiod", name="cycle_end", field=models.DateTimeField()),
        migrations.AddConstraint(
            model_name="billingperiod",
            constraint=models.CheckConstraint(
                condition=models.Q(("cycle_end__gte", models.F("end")), ("cycle_start__lte", models.F("start"))),
                name="billing_period_inside_cycle",
            ),
        ),
    ]
