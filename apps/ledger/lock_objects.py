"""Row locks for money movements, always taken in one order so that concurrent
transactions cannot deadlock:

1. wallet balance rows (the rows whose limits are checked), in (account, shard) order;
2. then the shard rows of shared accounts (merchant revenue, platform commission,
   clearing), in (account, shard) order, just before the balances are changed.

A transaction never locks a wallet row after a shared row. Both helpers must be
called inside `transaction.atomic()`.
"""

from collections.abc import Iterable
from decimal import Decimal

from django.db import connection

from apps.ledger.models import Balance


def lock_balances(keys: Iterable[tuple]) -> dict[tuple, Decimal]:
    """Lock the balance rows for (account_id, shard) pairs, in order; returns their amounts by key."""
    ordered = sorted(set(keys), key=lambda k: (str(k[0]), k[1]))
    if not ordered:
        return {}
    placeholders = ", ".join(["(%s::uuid, %s)"] * len(ordered))
    params = [value for key in ordered for value in (str(key[0]), key[1])]
    # ORDER BY makes the lock order deterministic; the text cast matches the Python sort above.
    sql = (
        f"SELECT account_id, shard, amount FROM {Balance._meta.db_table} "  # noqa: S608 (no user input)
        f"WHERE (account_id, shard) IN ({placeholders}) ORDER BY account_id::text, shard FOR UPDATE"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return {(account_id, shard): amount for account_id, shard, amount in cursor.fetchall()}


def lock_wallet_balances(wallets) -> dict[tuple, Decimal]:
    """Lock the available and held balance rows of these wallets (phase 1)."""
    keys = []
    for wallet in wallets:
        keys.append((wallet.available_account_id, 0))
        keys.append((wallet.held_account_id, 0))
    return lock_balances(keys)
