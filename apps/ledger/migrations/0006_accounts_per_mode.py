"""Every ledger account belongs to one mode: sandbox and live money never meet.

Until now the platform's commission and clearing accounts were shared by both modes, so
sandbox charges and test payments moved live accounts. This migration gives every account a
`livemode` (the platform's existing accounts are live; a merchant's take their merchant's mode
in 0007, which also moves what sandbox activity left on the platform's live accounts). The
schema change is kept apart from that data step so that the lock it takes on the accounts
table (which every charge reads) is held for a moment, not for the scan of the entries.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("ledger", "0005_lean_hot_rows"),
        ("merchants", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="account",
            name="livemode",
            field=models.BooleanField(default=True),
            preserve_default=False,
        ),
        migrations.RemoveConstraint(model_name="account", name="ledger_account_unique_identity"),
        migrations.AddConstraint(
            model_name="account",
            constraint=models.UniqueConstraint(
                fields=("merchant", "customer", "kind", "currency", "source", "livemode"),
                name="ledger_account_unique_identity",
                nulls_distinct=False,
            ),
        ),
        migrations.AlterField(
            model_name="ledgertransaction",
            name="kind",
            field=models.CharField(
                choices=[
                    ("payment", "Payment"),
                    ("usage", "Usage"),
                    ("hold", "Hold"),
                    ("hold_release", "Hold Release"),
                    ("adjustment", "Adjustment"),
                    ("reversal", "Reversal"),
                    ("invoice_payment", "Invoice Payment"),
                    ("fee", "Fee"),
                    ("reclassification", "Reclassification"),
                ],
                max_length=32,
            ),
        ),
    ]
