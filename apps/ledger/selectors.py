import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from django.db import connection
from django.db.models import QuerySet, Sum

from apps.core.money import ZERO
from apps.ledger.models import Account, Adjustment, Balance, Entry, LedgerTransaction, Wallet


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


def adjustment_list(*, merchant, customer) -> QuerySet[Adjustment]:
    """A customer's adjustments, newest first."""
    return (
        Adjustment.objects.filter(merchant=merchant, customer=customer)
        .select_related("merchant")
        .order_by("-created_at")
    )


def ledger_check() -> list[str]:
    """Recompute every balance from the entries and report each difference.

    Also reports transactions whose entries do not sum to zero, or that have none, and
    entries of a transaction that does not exist (entries keep no database key to it, see
    unchecked_foreign_key). An empty list means the ledger is consistent.
    """
    problems: list[str] = []
    entry_table = Entry._meta.db_table
    balance_table = Balance._meta.db_table
    txn_table = LedgerTransaction._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT COALESCE(b.account_id, e.account_id), COALESCE(b.shard, e.shard),
                   COALESCE(b.amount, 0), COALESCE(e.total, 0), b.id IS NULL
            FROM {balance_table} b
            FULL OUTER JOIN (
                SELECT account_id, shard, SUM(amount) AS total FROM {entry_table} GROUP BY account_id, shard
            ) e ON e.account_id = b.account_id AND e.shard = b.shard
            WHERE COALESCE(b.amount, 0) <> COALESCE(e.total, 0) OR b.id IS NULL
            ORDER BY 1, 2
            """  # noqa: S608 (table names only)
        )
        for account_id, shard, stored, computed, no_row in cursor.fetchall():
            if no_row:
                # entries keep no database key to their account (see unchecked_foreign_key)
                problems.append(
                    f"account {account_id} shard {shard}: entries sum to {computed} but there is no such "
                    "account shard (no balance row)"
                )
                continue
            problems.append(
                f"account {account_id} shard {shard}: balance row says {stored}, entries sum to {computed}"
                f" (difference {stored - computed})"
            )
        cursor.execute(
            f"""
            SELECT t.id, COALESCE(SUM(e.amount), 0), COUNT(e.id)
            FROM {txn_table} t LEFT JOIN {entry_table} e ON e.transaction_id = t.id
            GROUP BY t.id HAVING COALESCE(SUM(e.amount), 0) <> 0 OR COUNT(e.id) < 2
            """  # noqa: S608 (table names only)
        )
        for txn_id, total, count in cursor.fetchall():
            problems.append(f"transaction {txn_id}: {count} entries summing to {total}, not a balanced transaction")
        cursor.execute(
            f"""
            SELECT e.transaction_id, COUNT(*)
            FROM {entry_table} e LEFT JOIN {txn_table} t ON t.id = e.transaction_id
            WHERE t.id IS NULL GROUP BY e.transaction_id ORDER BY 1
            """  # noqa: S608 (table names only)
        )
        for txn_id, count in cursor.fetchall():
            problems.append(f"transaction {txn_id}: {count} entries, but no such transaction")
    return problems
