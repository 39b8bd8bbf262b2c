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

from apps.core.bulk import Statement, array_param, run_statements
from apps.ledger.models import Balance


def _ordered(keys: Iterable[tuple]) -> list[tuple]:
    return sorted(set(keys), key=lambda k: (str(k[0]), k[1]))


def lock_statement(keys: Iterable[tuple]) -> Statement | None:
    """The statement that locks the balance rows of (account_id, shard) pairs, in order, and
    returns (account_id, shard, amount) for each; None when there are none."""
    ordered = _ordered(keys)
    if not ordered:
        return None
    # Two arrays rather than a VALUES list: one parameter each, whatever the batch size.
    # The keys drive a nested loop in the order given (sorted above), and each row is locked
    # as its key comes: a deterministic lock order, and one index lookup per key whatever
    # the planner guesses of the arrays' size (a LATERAL subquery with FOR UPDATE is not
    # flattened into a hash join).
    sql = (
        "SELECT b.account_id, b.shard, b.amount FROM unnest(%s::uuid[], %s::int[]) AS k(account_id, shard) "  # noqa: S608
        "CROSS JOIN LATERAL (SELECT b0.account_id, b0.shard, b0.amount "
        f"FROM {Balance._meta.db_table} b0 WHERE b0.account_id = k.account_id AND b0.shard = k.shard FOR UPDATE) b"
    )
    return Statement(sql, [array_param(key[0] for key in ordered), array_param((key[1] for key in ordered), "integer")])


def lock_balances(keys: Iterable[tuple]) -> dict[tuple, Decimal]:
    """Lock the balance rows for (account_id, shard) pairs, in order; returns their amounts by key."""
    statement = lock_statement(keys)
    if statement is None:
        return {}
    (rows,) = run_statements([statement])
    return {(account_id, shard): amount for account_id, shard, amount in rows}


def lock_wallet_balances(wallets) -> dict[tuple, Decimal]:
    """Lock the available and held balance rows of these wallets (phase 1)."""
    keys = []
    for wallet in wallets:
        keys.append((wallet.available_account_id, 0))
        keys.append((wallet.held_account_id, 0))
    return lock_balances(keys)
