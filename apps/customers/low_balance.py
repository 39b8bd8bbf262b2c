"""wallet.low_balance: published once when a wallet's available balance falls below the
customer's `lowBalanceThreshold` for its currency, and again only after the balance has been
back at or above it.

Every posting that moves a wallet's balance (a usage charge, a hold, a top-up, a refund, an
adjustment) carries one more statement in its own round trip (`apps.ledger.hooks`): for the
wallets it moved that have billing settings, compare the available balance (read after the
posting's update, under the wallet lock the ledger holds) with the threshold, flip the
settings' `low_balance_alerted` where the answer changed, and publish wallet.low_balance in the
outbox for each flip downwards. Postings of one wallet are serialized by its lock, so
concurrent batches crossing the threshold flip the flag, and publish, once.

Changing the threshold clears the flag (customers.services): the next movement of the balance
below the new threshold is heard.

Auto-recharge's crossing is found by the same statement, from the same probe of the settings
row (no statement of its own): for a USD wallet with auto-recharge enabled, the settings'
`auto_recharge_triggered` follows "available < autoRecharge.threshold" the same way (cleared,
with the crossing's session, once the balance is back at or above it), and the ids of the
settings that flipped downwards are handed, inside the posting's transaction, to the listeners
of `hooks.auto_recharge_due` (the cards app charges the card after the commit). A wallet whose
customer has no billing settings costs nothing more than before: the probe of the settings'
unique index finds no row, and the statement ends there.
"""

import functools
import uuid
from collections.abc import Sequence
from datetime import datetime

from apps.core.bulk import array_param
from apps.core.formats import iso
from apps.core.money import CURRENCY_DECIMALS
from apps.customers import hooks
from apps.customers.billing import AUTO_RECHARGE_CURRENCY
from apps.customers.models import BillingSettings
from apps.ledger.hooks import FollowUp
from apps.ledger.models import Balance, Wallet
from apps.webhooks.outbox import publish_statement, wake_relay_after_commit

EVENT_TYPE = "wallet.low_balance"


def _amount_sql(column: str) -> str:
    """`column` (numeric) as the API writes an amount of the row's currency (format_amount):
    exact, trailing zeros trimmed down to the currency's minor unit."""
    places = " ".join(f"WHEN '{code}' THEN {digits}" for code, digits in sorted(CURRENCY_DECIMALS.items()))
    minor = f"CASE cur.currency {places} ELSE 2 END"
    return (
        f"CASE WHEN scale(trim_scale({column})) > {minor} THEN trim_scale({column})::text "
        f"ELSE round({column}, {minor})::text END"
    )


@functools.cache
def _ctes() -> str:
    settings, wallets, balances = BillingSettings._meta.db_table, Wallet._meta.db_table, Balance._meta.db_table
    return (
        "cur AS ("  # noqa: S608 (names from models, no user input)
        "SELECT s.id AS settings_id, w.merchant_id, w.id AS wallet_id, w.customer_id, w.currency, "
        "a.amount AS available, h.amount AS held, s.low_balance_threshold AS threshold, "
        "coalesce(a.amount < s.low_balance_threshold, false) AS low, s.low_balance_alerted AS alerted, "
        f"coalesce(s.auto_recharge_enabled AND w.currency = '{AUTO_RECHARGE_CURRENCY}' "
        "AND a.amount < s.auto_recharge_threshold, false) AS recharge_low, "
        "s.auto_recharge_triggered AS triggered "
        f"FROM {wallets} w "
        # lateral: one probe of the settings' unique index per wallet (a join let the planner
        # hash the whole table, as the generic plan cannot know how few wallets there are; LIMIT
        # keeps the subquery from being flattened back into a join)
        f"CROSS JOIN LATERAL (SELECT id, low_balance_threshold, low_balance_alerted, auto_recharge_enabled, "
        f"auto_recharge_threshold, auto_recharge_triggered FROM {settings} "
        "WHERE merchant_id = w.merchant_id AND customer_id = w.customer_id AND currency = w.currency LIMIT 1) s "
        f"CROSS JOIN LATERAL (SELECT coalesce(sum(amount), 0) AS amount FROM {balances} "
        "WHERE account_id = w.available_account_id) a "
        f"CROSS JOIN LATERAL (SELECT coalesce(sum(amount), 0) AS amount FROM {balances} "
        "WHERE account_id = w.held_account_id) h "
        "WHERE w.available_account_id = ANY(%s::uuid[])), "
        f"flipped AS (UPDATE {settings} s SET low_balance_alerted = cur.low, "
        "auto_recharge_triggered = cur.recharge_low, "
        # back at or above the threshold: the crossing's charge is done with
        "auto_recharge_session_id = CASE WHEN cur.recharge_low THEN s.auto_recharge_session_id END FROM cur "
        "WHERE s.id = cur.settings_id "
        "AND (s.low_balance_alerted <> cur.low OR s.auto_recharge_triggered <> cur.recharge_low) "
        "RETURNING cur.*)"
    )


@functools.cache
def _source() -> str:
    return (
        f"SELECT cur.merchant_id, '{EVENT_TYPE}' AS type, jsonb_build_object("  # noqa: S608 (no user input)
        "'id', cur.wallet_id::text, 'object', 'wallet', 'customerId', cur.customer_id::text, "
        f"'currency', cur.currency, 'balance', {_amount_sql('cur.available')}, "
        f"'held', {_amount_sql('cur.held')}, 'lowBalanceThreshold', {_amount_sql('cur.threshold')}, "
        "'updatedAt', %s::text) AS data FROM flipped AS cur WHERE cur.low AND NOT cur.alerted"
    )


# the settings whose wallet the posting took below the auto-recharge threshold
_RECHARGE_DUE = "ARRAY(SELECT settings_id FROM flipped WHERE recharge_low AND NOT triggered ORDER BY settings_id)"


def _published(rows: list[tuple]) -> None:
    ((count, recharge_due),) = rows
    if count:
        wake_relay_after_commit()
    if recharge_due:
        hooks.auto_recharge_due(list(recharge_due))


def low_balance_follow_up(wallet_account_ids: Sequence[uuid.UUID], now: datetime) -> FollowUp:
    """The statement a posting that moved these wallet accounts carries (see the module)."""
    statement = publish_statement(
        ctes=_ctes(),
        cte_params=[array_param(wallet_account_ids)],
        source=_source(),
        source_params=[iso(now)],
        created_at=now,
        also=_RECHARGE_DUE,
    )
    return FollowUp(statement=statement, after=_published)
