"""UsageCounter, moved from the usage app with its table (renamed), rows and constraint."""

import uuid

import django.db.models.deletion
from django.db import migrations, models

import apps.core.fields


class Migration(migrations.Migration):
    dependencies = [
        ("subscriptions", "0003_move_payment_sessions"),
        ("usage", "0005_move_usage_counter"),
        ("catalog", "0002_initial"),
        ("merchants", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="UsageCounter",
                    fields=[
                        ("id", models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False)),
                        ("created_at", models.DateTimeField(auto_now_add=True, db_index=True)),
                        ("updated_at", models.DateTimeField(auto_now=True)),
                        ("period_start", models.DateTimeField()),
                        ("units", apps.core.fields.AmountField(decimal_places=12, default=0, max_digits=38)),
                        (
                            "merchant",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.PROTECT, related_name="+", to="merchants.merchant"
                            ),
                        ),
                        (
                            "price",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.PROTECT, related_name="+", to="catalog.price"
                            ),
                        ),
                        (
                            "subscription",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.PROTECT,
                                related_name="+",
                                to="subscriptions.subscription",
                            ),
                        ),
                    ],
                    options={
                        "db_table": "usage_usagecounter",
                        "constraints": [
                            models.UniqueConstraint(
                                fields=("merchant", "subscription", "price", "period_start"),
                                name="usage_counter_unique_period",
                            )
                        ],
                    },
                ),
            ]
        ),
        migrations.AlterModelTable(name="usagecounter", table=None),
    ]
