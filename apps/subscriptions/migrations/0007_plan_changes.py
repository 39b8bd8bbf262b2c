"""Plan changes: a subscription's period anchor (startedAt until a change to another interval),
the moment of its last plan change and the plan scheduled for its period's end; each billing
period's plan, whole cycle and why it ended. Existing rows get what they always had: the
anchor is startedAt, each period is whole and on its subscription's plan."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("catalog", "0003_plan_invoicing"),
        ("subscriptions", "0006_billing_periods_of_existing_subscriptions"),
    ]

    operations = [
        migrations.AddField(
            model_name="subscription", name="period_anchor", field=models.DateTimeField(null=True)
        ),
        migrations.AddField(
            model_name="subscription", name="switched_at", field=models.DateTimeField(blank=True, null=True)
        ),
        migrations.AddField(
            model_name="subscription",
            name="scheduled_plan",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="catalog.plan",
            ),
        ),
        migrations.AddField(
            model_name="billingperiod",
            name="plan",
            field=models.ForeignKey(
                null=True, on_delete=django.db.models.deletion.PROTECT, related_name="+", to="catalog.plan"
            ),
        ),
        migrations.AddField(model_name="billingperiod", name="cycle_start", field=models.DateTimeField(null=True)),
        migrations.AddField(model_name="billingperiod", name="cycle_end", field=models.DateTimeField(null=True)),
        migrations.AddField(
            model_name="billingperiod",
            name="end_reason",
            field=models.CharField(
                choices=[("end", "its end"), ("change", "a plan change"), ("termination", "a termination")],
                default="end",
                max_length=16,
            ),
        ),
        migrations.RunSQL(
            "UPDATE subscriptions_subscription SET period_anchor = started_at",
            migrations.RunSQL.noop,
        ),
        migrations.RunSQL(
            "UPDATE subscriptions_billingperiod p SET plan_id = s.plan_id, cycle_start = p.start, cycle_end = p.end "
            "FROM subscriptions_subscription s WHERE s.id = p.subscription_id",
            migrations.RunSQL.noop,
        ),
    ]
