"""Moves what sandbox activity already posted on the platform's accounts to their sandbox
twins (ledger 0006 gave accounts a mode):

1. a merchant's accounts take their merchant's mode;
2. for each platform account and sandbox merchant, one RECLASSIFICATION transaction of that
   merchant takes, shard by shard, exactly the sum that merchant's entries left on the live
   account off it and puts it on the sandbox twin. No entry is edited (the ledger is
   append-only); after it, each mode's accounts sum to zero on their own, which `ledger_check`
   verifies per mode (transactions from before this migration may reach both modes).

It runs in its own transaction, after the schema change: the scan of the entries takes no lock
that a charge waits on, and the balance rows it moves are locked only for their update.
"""

import uuid
from collections import defaultdict

from django.db import migrations, models

def split_by_mode(apps, schema_editor):
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            "UPDATE ledger_account a SET livemode = m.livemode FROM merchants_merchant m "
            "WHERE a.merchant_id = m.id AND a.livemode <> m.livemode"
        )
        cursor.execute(
            """
            SELECT e.account_id, e.merchant_id, e.shard, SUM(e.amount)
            FROM ledger_entry e
            JOIN ledger_account a ON a.id = e.account_id
            JOIN merchants_merchant m ON m.id = e.merchant_id
            WHERE a.merchant_id IS NULL AND a.livemode AND NOT m.livemode
            GROUP BY e.account_id, e.merchant_id, e.shard
            HAVING SUM(e.amount) <> 0
            ORDER BY e.account_id, e.merchant_id, e.shard
            """
        )
        moves = defaultdict(list)
        for account_id, merchant_id, shard, amount in cursor.fetchall():
            moves[(account_id, merchant_id)].append((shard, amount))
        for (account_id, merchant_id), shards in moves.items():
            twin_id, currency = _sandbox_twin(cursor, account_id)
            txn_id = uuid.uuid4()
            cursor.execute(
                "INSERT INTO ledger_ledgertransaction "
                "(id, created_at, updated_at, merchant_id, kind, currency, description, reference, metadata) "
                "VALUES (%s, now(), now(), %s, 'reclassification', %s, %s, %s, %s::jsonb)",
                [
                    txn_id,
                    merchant_id,
                    currency,
                    "sandbox amounts moved off a live platform account when the ledger was split by mode",
                    f"mode_split:{account_id}",
                    f'{{"liveAccountId": "{account_id}", "sandboxAccountId": "{twin_id}"}}',
                ],
            )
            values, params = [], []
            for shard, amount in shards:
                for target, signed in ((account_id, -amount), (twin_id, amount)):
                    values.append("(gen_random_uuid(), now(), now(), %s, %s, %s, %s, %s)")
                    params += [merchant_id, txn_id, target, shard, signed]
            # one statement: the balance trigger checks each transaction per INSERT
            cursor.execute(
                "INSERT INTO ledger_entry (id, created_at, updated_at, merchant_id, transaction_id, account_id, "
                "shard, amount) VALUES " + ", ".join(values),
                params,
            )
            for shard, amount in shards:
                cursor.execute(
                    "UPDATE ledger_balance SET amount = amount - %s WHERE account_id = %s AND shard = %s",
                    [amount, account_id, shard],
                )
                cursor.execute(
                    "UPDATE ledger_balance SET amount = amount + %s WHERE account_id = %s AND shard = %s",
                    [amount, twin_id, shard],
                )


def _sandbox_twin(cursor, account_id):
    """The sandbox account of the same kind, currency and source as this live platform account
    (created with its balance rows when missing); returns (its id, the currency)."""
    cursor.execute("SELECT kind, currency, source, shard_count FROM ledger_account WHERE id = %s", [account_id])
    kind, currency, source, shard_count = cursor.fetchone()
    cursor.execute(
        "SELECT id FROM ledger_account WHERE merchant_id IS NULL AND customer_id IS NULL AND kind = %s "
        "AND currency = %s AND source = %s AND NOT livemode",
        [kind, currency, source],
    )
    row = cursor.fetchone()
    if row is not None:
        return row[0], currency
    twin_id = uuid.uuid4()
    cursor.execute(
        "INSERT INTO ledger_account (id, created_at, updated_at, kind, currency, source, livemode, shard_count) "
        "VALUES (%s, now(), now(), %s, %s, %s, false, %s)",
        [twin_id, kind, currency, source, shard_count],
    )
    for shard in range(shard_count):
        cursor.execute(
            "INSERT INTO ledger_balance (account_id, shard, amount) VALUES (%s, %s, 0)", [twin_id, shard]
        )
    return twin_id, currency


def refuse_unsplit(apps, schema_editor):
    """Going back would put both modes' platform accounts under one identity again."""
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM ledger_account WHERE merchant_id IS NULL AND NOT livemode")
        (sandbox_accounts,) = cursor.fetchone()
    if sandbox_accounts:
        raise RuntimeError(
            "ledger 0007 cannot be reversed: the platform has sandbox accounts with entries, and the ledger is "
            "append-only. Restore a backup taken before the migration instead."
        )


class Migration(migrations.Migration):
    dependencies = [("ledger", "0006_accounts_per_mode"), ("merchants", "0001_initial")]

    operations = [migrations.RunPython(split_by_mode, refuse_unsplit)]
