"""Existing subscriptions get their current billing period as a row (open). Periods that ended
before invoicing existed are not invoiced: they were never billed by period."""

from django.db import migrations
from django.utils import timezone

from apps.subscriptions.periods import period_at


def create_current_periods(apps, schema_editor):
    Subscription = apps.get_model("subscriptions", "Subscription")
    BillingPeriod = apps.get_model("subscriptions", "BillingPeriod")
    now = timezone.now()
    rows = []
    queryset = Subscription.objects.exclude(status="terminated").select_related("plan").order_by("pk")
    for subscription in queryset.iterator(chunk_size=2000):
        start, end = period_at(subscription.started_at, subscription.plan.billing_interval, max(now, subscription.started_at))
        rows.append(
            BillingPeriod(merchant_id=subscription.merchant_id, subscription_id=subscription.pk, start=start, end=end)
        )
        if len(rows) >= 2000:
            BillingPeriod.objects.bulk_create(rows, ignore_conflicts=True)
            rows = []
    BillingPeriod.objects.bulk_create(rows, ignore_conflicts=True)


class Migration(migrations.Migration):
    dependencies = [("subscriptions", "0005_billingperiod")]

    operations = [migrations.RunPython(create_current_periods, migrations.RunPython.noop)]
