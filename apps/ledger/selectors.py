import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from django.db import connection
from django.db.models import Sum

from apps.core.money import ZERO
from apps.ledger.models import Account, Balance, Entry, LedgerTransaction, Wallet
from apps.merchants.models import Merchant


def account_balance(*, account: Account) -> Decimal:
    """The account's balance: the sum of its shard rows."""
    return Balance.objects.filter(account=account).aggregate(total=Sum("amount"))["total"] or ZERO


@dataclass(frozen=True)
class WalletBalances:
    available: Decimal
    held: Decimal


def wallets_balances(*, wallets: Iterable[Wallet]) -> dict[uuid.UUID, WalletBalances]:
    """The available and held balances of these wallets, by wallet id, read in one query
    (none for no wallets), whatever their number: lists and admin pages read a page at once."""
    wallets = list(wallets)
    if not wallets:
        return {}
    account_ids = {w.available_account_id for w in wallets} | {w.held_account_id for w in wallets}
    amounts = dict(
        Balance.objects.filter(account_id__in=account_ids)
        .order_by()
        .values("account_id")
        .annotate(total=Sum("amount"))
        .values_list("account_id", "total")
    )
    return {
        w.id: WalletBalances(
            available=amounts.get(w.available_account_id, ZERO), held=amounts.get(w.held_account_id, ZERO)
        )
        for w in wallets
    }


def wallet_balances(*, wallet: Wallet) -> WalletBalances:
    """One wallet's balances (see wallets_balances)."""
    return wallets_balances(wallets=[wallet])[wallet.id]


MODE_NAMES = {True: "live", False: "sandbox"}


def ledger_check() -> list[str]:
    """Recompute every balance from the entries and report each difference, each problem
    named with the mode ("[live]", "[sandbox]") of the ledger it is in.

    Per mode: every account's balance rows equal its entries; the mode's accounts sum to zero
    on their own; no merchant account is in another mode than its merchant; no transaction
    (but the split's reclassifications, see ledger migration 0007) reaches an account of the
    other mode. And: every transaction sums to zero with at least two entries, and no entry
    belongs to a transaction that does not exist (entries keep no database key to it, see
    unchecked_foreign_key). An empty list means the ledger is consistent.
    """
    problems: list[str] = []
    tables = {
        "entry": Entry._meta.db_table,
        "balance": Balance._meta.db_table,
        "txn": LedgerTransaction._meta.db_table,
        "account": Account._meta.db_table,
        "merchant": Merchant._meta.db_table,
    }
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT a.livemode, COALESCE(b.account_id, e.account_id), COALESCE(b.shard, e.shard),
                   COALESCE(b.amount, 0), COALESCE(e.total, 0), b.id IS NULL
            FROM {balance} b
            FULL OUTER JOIN (
                SELECT account_id, shard, SUM(amount) AS total FROM {entry} GROUP BY account_id, shard
            ) e ON e.account_id = b.account_id AND e.shard = b.shard
            LEFT JOIN {account} a ON a.id = COALESCE(b.account_id, e.account_id)
            WHERE COALESCE(b.amount, 0) <> COALESCE(e.total, 0) OR b.id IS NULL
            ORDER BY 2, 3
            """.format(**tables)  # noqa: S608 (table names only)
        )
        for livemode, account_id, shard, stored, computed, no_row in cursor.fetchall():
            mode = _mode(livemode)
            if no_row:
                # entries keep no database key to their account (see unchecked_foreign_key)
                problems.append(
                    f"{mode} account {account_id} shard {shard}: entries sum to {computed} but there is no such "
                    "account shard (no balance row)"
                )
                continue
            problems.append(
                f"{mode} account {account_id} shard {shard}: balance row says {stored}, entries sum to {computed}"
                f" (difference {stored - computed})"
            )
        cursor.execute(
            """
            SELECT a.livemode, SUM(e.amount) FROM {entry} e JOIN {account} a ON a.id = e.account_id
            GROUP BY a.livemode HAVING SUM(e.amount) <> 0 ORDER BY 1 DESC
            """.format(**tables)  # noqa: S608 (table names only)
        )
        for livemode, total in cursor.fetchall():
            problems.append(f"{_mode(livemode)} the mode's accounts sum to {total}, not zero")
        cursor.execute(
            """
            SELECT a.livemode, a.id, a.merchant_id FROM {account} a JOIN {merchant} m ON m.id = a.merchant_id
            WHERE a.livemode <> m.livemode ORDER BY 2
            """.format(**tables)  # noqa: S608 (table names only)
        )
        for livemode, account_id, merchant_id in cursor.fetchall():
            problems.append(
                f"{_mode(livemode)} account {account_id} belongs to merchant {merchant_id} of the other mode"
            )
        cursor.execute(
            """
            SELECT m.livemode, e.transaction_id, COUNT(*)
            FROM {entry} e
            JOIN {account} a ON a.id = e.account_id
            JOIN {merchant} m ON m.id = e.merchant_id
            JOIN {txn} t ON t.id = e.transaction_id
            WHERE a.livemode <> m.livemode AND t.kind <> %s AND e.created_at > COALESCE(
                (SELECT applied FROM django_migrations WHERE app = 'ledger' AND name = %s), '-infinity')
            GROUP BY m.livemode, e.transaction_id ORDER BY 2
            """.format(**tables),  # noqa: S608 (table names only)
            [LedgerTransaction.Kind.RECLASSIFICATION, MODE_SPLIT_MIGRATION],
        )
        for livemode, txn_id, count in cursor.fetchall():
            problems.append(f"{_mode(livemode)} transaction {txn_id}: {count} entries on accounts of the other mode")
        cursor.execute(
            """
            SELECT m.livemode, t.id, COALESCE(SUM(e.amount), 0), COUNT(e.id)
            FROM {txn} t LEFT JOIN {entry} e ON e.transaction_id = t.id
            LEFT JOIN {merchant} m ON m.id = t.merchant_id
            GROUP BY m.livemode, t.id HAVING COALESCE(SUM(e.amount), 0) <> 0 OR COUNT(e.id) < 2
            """.format(**tables)  # noqa: S608 (table names only)
        )
        for livemode, txn_id, total, count in cursor.fetchall():
            problems.append(
                f"{_mode(livemode)} transaction {txn_id}: {count} entries summing to {total}, "
                "not a balanced transaction"
            )
        cursor.execute(
            """
            SELECT m.livemode, e.transaction_id, COUNT(*)
            FROM {entry} e LEFT JOIN {txn} t ON t.id = e.transaction_id
            LEFT JOIN {merchant} m ON m.id = e.merchant_id
            WHERE t.id IS NULL GROUP BY m.livemode, e.transaction_id ORDER BY 2
            """.format(**tables)  # noqa: S608 (table names only)
        )
        for livemode, txn_id, count in cursor.fetchall():
            problems.append(f"{_mode(livemode)} transaction {txn_id}: {count} entries, but no such transaction")
    return problems


# Transactions posted before this migration split the ledger by mode may reach both modes'
# accounts: the migration moved their sums with reclassifying transactions.
MODE_SPLIT_MIGRATION = "0007_reclassify_sandbox_amounts"


def _mode(livemode) -> str:
    return f"[{MODE_NAMES.get(livemode, 'unknown mode')}]"
