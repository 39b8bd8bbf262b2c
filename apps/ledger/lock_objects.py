"""Row locks for money movements, always taken in one order so that concurrent
transactions cannot deadlock:

1. wallet balance rows (the rows whose limits are checked), in (account, shard) order;
2. then the rows that hold a wallet's money for a purpose or record its movement (an
   entitlement's hold, a usage event being refunded), each table's rows in primary-key order
   (`locked_rows`);
3. then the shard rows of shared accounts (merchant revenue, platform commission,
   clearing), in (account, shard) order, just before the balances are changed.

A transaction never locks a wallet row after a row of a later step. Every statement that
locks rows for a money movement is built here, so that the order is kept in one place; the
helpers must be called inside `transaction.atomic()`.
"""

import functools
from collections.abc import Iterable
from decimal import Decimal
from typing import TypeVar

from django.db.models import Model, QuerySet

from apps.core.bulk import Statement, array_param, run_statements
from apps.ledger.models import Balance, Wallet

M = TypeVar("M", bound=Model)


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


@functools.cache
def _wallets_lock_sql(wallet_ids_sql: str) -> str:
    return (
        f"SELECT b.account_id, b.shard, b.amount FROM {Balance._meta.db_table} b "  # noqa: S608 (names from models)
        "WHERE b.shard = 0 AND b.account_id = ANY(ARRAY("
        "SELECT unnest(ARRAY[w.available_account_id, w.held_account_id]) "
        f"FROM ({wallet_ids_sql}) AS ids(wallet_id) JOIN {Wallet._meta.db_table} w ON w.id = ids.wallet_id)) "
        # wallet rows by account (the order of `lock_statement`), before any row of a later step
        "ORDER BY b.account_id::text, b.shard FOR UPDATE OF b"
    )


def wallets_lock_statement(wallet_ids: Statement) -> Statement:
    """The statement that locks the available and held balance rows of the wallets whose ids
    the query `wallet_ids` selects (one column; its parameters become this statement's), in
    order, and returns (account_id, shard, amount) for each: for a caller that sends it with
    the read that finds the wallets, in the same round trip, before it knows their ids."""
    return Statement(_wallets_lock_sql(wallet_ids.sql), wallet_ids.params, prepare=wallet_ids.prepare)


def locked_rows(queryset: QuerySet[M]) -> QuerySet[M]:
    """`queryset`, locking the rows it reads of its own table (not of `select_related` ones) in
    primary-key order (step 2 above). FOR NO KEY UPDATE: rows that refer to them (a usage event
    naming an entitlement) can still be inserted meanwhile."""
    return queryset.select_for_update(no_key=True, of=("self",)).order_by("pk")
