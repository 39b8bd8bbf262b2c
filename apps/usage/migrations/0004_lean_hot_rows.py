"""Usage rows keep no database keys to rows the charge read or wrote itself, and the hot
tables lose indexes that others cover.

Not atomic, and the indexes are built CONCURRENTLY before the ones they replace are
dropped, so that ingestion goes on while this runs on a large table: each step takes its
table's lock only for a moment.
"""

import django.db.models.deletion
from django.contrib.postgres.operations import AddIndexConcurrently, RemoveIndexConcurrently
from django.db import migrations, models

LINE_TABLE = "usage_usageline"


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("catalog", "0002_initial"),
        ("customers", "0002_initial"),
        ("entitlements", "0004_item_remaining_amount"),
        ("ledger", "0005_lean_hot_rows"),
        ("merchants", "0001_initial"),
        ("subscriptions", "0001_initial"),
        ("usage", "0003_hot_path_keys"),
    ]

    operations = [
        # 1. the new indexes, built beside the old ones
        AddIndexConcurrently(
            model_name="usageevent",
            index=models.Index(fields=["customer", "timestamp"], name="usage_event_customer_ts"),
        ),
        AddIndexConcurrently(
            model_name="usageevent",
            index=models.Index(
                condition=models.Q(("entitlement__isnull", False)),
                fields=["entitlement"],
                name="usage_event_entitlement",
            ),
        ),
        AddIndexConcurrently(
            model_name="usageline",
            index=models.Index(fields=["billable_metric", "timestamp"], name="usage_line_metric_ts"),
        ),
        AddIndexConcurrently(
            model_name="usageline",
            index=models.Index(fields=["billable_metric", "customer", "timestamp"], name="usage_line_meter"),
        ),
        # 2. the line's unique key, led by its event: its index is built first, then it
        #    replaces the old constraint in one short statement
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL(
                    f"CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS usage_line_event_position "
                    f"ON {LINE_TABLE} (event_id, merchant_id, position)",
                    "DROP INDEX CONCURRENTLY IF EXISTS usage_line_event_position",
                ),
                migrations.RunSQL(
                    f"ALTER TABLE {LINE_TABLE} DROP CONSTRAINT usage_line_unique_position, "
                    "ADD CONSTRAINT usage_line_event_position UNIQUE USING INDEX usage_line_event_position",
                    f"ALTER TABLE {LINE_TABLE} DROP CONSTRAINT usage_line_event_position, "
                    "ADD CONSTRAINT usage_line_unique_position UNIQUE (merchant_id, event_id, position)",
                ),
            ],
            state_operations=[
                migrations.RemoveConstraint(model_name="usageline", name="usage_line_unique_position"),
                migrations.AddConstraint(
                    model_name="usageline",
                    constraint=models.UniqueConstraint(
                        fields=("event", "merchant", "position"), name="usage_line_event_position"
                    ),
                ),
            ],
        ),
        # 3. the indexes they replace
        RemoveIndexConcurrently(model_name="usageevent", name="usage_event_customer_time"),
        RemoveIndexConcurrently(model_name="usageline", name="usage_line_metric_time"),
        RemoveIndexConcurrently(model_name="usageline", name="usage_line_customer_meter"),
        # 4. keys without constraints, and single-column indexes the composites cover (each
        #    a short catalog change or an index drop)
        migrations.AlterField(
            model_name="usageevent",
            name="customer",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="usage_events",
                to="customers.customer",
            ),
        ),
        migrations.AlterField(
            model_name="usageevent",
            name="entitlement",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="usage_events",
                to="entitlements.entitlement",
            ),
        ),
        migrations.AlterField(
            model_name="usageevent",
            name="ledger_transaction",
            field=models.ForeignKey(
                blank=True,
                db_constraint=False,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="usage_events",
                to="ledger.ledgertransaction",
            ),
        ),
        migrations.AlterField(
            model_name="usageevent",
            name="subscription",
            field=models.ForeignKey(
                db_constraint=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="usage_events",
                to="subscriptions.subscription",
            ),
        ),
        migrations.AlterField(
            model_name="usageline",
            name="billable_metric",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="catalog.billablemetric",
            ),
        ),
        migrations.AlterField(
            model_name="usageline",
            name="created_at",
            field=models.DateTimeField(auto_now_add=True),
        ),
        migrations.AlterField(
            model_name="usageline",
            name="event",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="lines",
                to="usage.usageevent",
            ),
        ),
    ]
