"""Writing a charge: one round trip for the ledger and the rows beside it, in the charge's
transaction, under the wallets' lock.

The ledger transactions (`rows.ledger_specs`) go first (the ledger locks the shared rows they
credit, after the wallets), then the usage events (their `balance_after` patched in, known only
now), their lines and the moved running totals. A duplicate idempotency key (a concurrent
request stored it first) aborts the whole transaction: `DuplicateRace`, and the caller starts
again, the other request's event then being a replay. The entitlements used are saved last
(their items, their use, and the release of an exhausted hold).
"""

from datetime import datetime

from django.db import IntegrityError

from apps.core.bulk import Statement, array_param, insert_rows, run_statements
from apps.core.models import violated_constraint
from apps.entitlements.services import entitlement_after_use
from apps.ledger.services import ledger_post_many
from apps.merchants.models import Merchant
from apps.subscriptions.models import UsageCounter
from apps.usage.services.charging.lookup import CounterKey, Counters
from apps.usage.services.charging.rows import (
    BALANCE_AFTER_PARAM,
    COUNTER_COLUMNS,
    PreparedRows,
    counter_rows,
    ledger_specs,
)

IDEMPOTENCY_CONSTRAINT = "usage_event_unique_idempotency_key"


class DuplicateRace(Exception):
    """A concurrent request stored one of these keys first, or a subscription changed between
    the reads: start again (from the lookup), where such a key is now a replay."""


def _counter_upsert(rows: list[tuple]) -> Statement:
    upsert = insert_rows(UsageCounter, COUNTER_COLUMNS, rows)
    return Statement(
        upsert.sql + " ON CONFLICT (merchant_id, subscription_id, price_id, period_start) "
        "DO UPDATE SET units = EXCLUDED.units, updated_at = EXCLUDED.updated_at",
        upsert.params,
    )


def write(
    merchant: Merchant, prepared: PreparedRows, counters: Counters, touched_counters: set[CounterKey], now: datetime
) -> None:
    """Write the charged events, their lines, counters, entitlements and ledger transactions:
    one round trip for the ledger and the rows beside it."""
    charged = prepared.events
    specs = ledger_specs(merchant, charged)

    # The balances after each charge are known only now, under the lock.
    for event in charged:
        event.row.balance_after = event.balance_after
    event_params = list(prepared.event_insert.params)
    event_params[BALANCE_AFTER_PARAM] = array_param([e.balance_after for e in charged], "numeric")
    statements = [Statement(prepared.event_insert.sql, event_params), prepared.line_insert]
    if touched_counters:
        statements.append(_counter_upsert(counter_rows(merchant, counters, touched_counters, now)))
    try:
        # No savepoint: a duplicate key aborts the whole transaction, and the caller starts
        # again (the other request's event is then a replay).
        if specs:
            ledger_post_many(specs, wallets_locked=True, then=statements)
        else:
            run_statements(statements)
    except IntegrityError as exc:
        if violated_constraint(exc) != IDEMPOTENCY_CONSTRAINT:
            raise
        raise DuplicateRace() from exc

    entitlements = {e.entitlement.id: e.entitlement for e in charged if e.entitlement is not None}
    items = {line.entitlement_item.id: line.entitlement_item for e in charged if e.entitlement for line in e.lines}
    for item in items.values():
        item.save(update_fields=["remaining_quantity", "remaining_amount", "updated_at"])
    for entitlement in entitlements.values():
        entitlement_after_use(entitlement=entitlement)
