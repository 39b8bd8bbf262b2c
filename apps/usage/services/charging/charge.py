"""One charge: price, decide and write resolved events in one database transaction, under
the wallets' lock.

What does not depend on a locked row (the price of an event that names no entitlement and
whose prices keep no running total, its rows, their encoding) is done before the lock, so that
concurrent batches over the same customers hold each other's wallets for less time. Under the
lock: the wallets' balances (locked here, or already by `lookup` for single reports), the
entitlements named and their items (`lookup.lock_holds`), the running totals
(`lookup.period_counters`); then, event by event in order, the price where it depends on them
(`rate`), the decision (`decide`, pure) applied to the balances and holds, and at the end one
`write` of what was charged.
"""

import uuid
from collections import defaultdict
from datetime import datetime
from decimal import Decimal

from django.db import transaction

from apps.core.errors import ApiError
from apps.core.money import ZERO
from apps.entitlements.models import Entitlement, EntitlementItem
from apps.ledger.lock_objects import lock_balances
from apps.merchants.models import Merchant
from apps.usage.services.charging.decide import Hold, HoldItem, HoldUse, decide_hold_charge, decide_wallet_charge
from apps.usage.services.charging.lookup import Balances, Counters, lock_holds, period_counters
from apps.usage.services.charging.rate import NO_COUNTERS, counter_keys, price_event, priced_alone
from apps.usage.services.charging.resolve import ResolvedEvent
from apps.usage.services.charging.rows import prepare_rows
from apps.usage.services.charging.write import DuplicateRace, write


def _hold(entitlement: Entitlement, items: list[EntitlementItem]) -> Hold:
    return Hold(
        entitlement.id,
        entitlement.status,
        entitlement.currency,
        entitlement.expires_at,
        entitlement.max_uses,
        entitlement.used_count,
        entitlement.remaining_amount,
        {
            item.id: HoldItem(item.id, item.billable_metric_id, item.remaining_quantity, item.remaining_amount)
            for item in items
        },
    )


def _use_hold(
    event: ResolvedEvent, items: list[EntitlementItem], available: dict[uuid.UUID, Decimal], now: datetime
) -> ApiError | None:
    """Decide the use of the event's (locked) hold and apply it; the refusal, or None."""
    entitlement = event.entitlement
    uses = [HoldUse(line.entitlement_item.id, line.quantity, line.amount or ZERO) for line in event.lines]
    outcome = decide_hold_charge(hold=_hold(entitlement, items), uses=uses, amount=event.amount, now=now)
    if isinstance(outcome, ApiError):
        return outcome
    entitlement.remaining_amount = outcome.remaining_amount
    entitlement.used_count = outcome.used_count
    for line in event.lines:
        after = outcome.items[line.entitlement_item.id]
        line.entitlement_item.remaining_quantity = after.remaining_quantity
        line.entitlement_item.remaining_amount = after.remaining_amount
    wallet_id = event.subscription.wallet_id
    if outcome.exhausted:
        # what is left of the hold goes back to available now (posted by write, through
        # entitlements.entitlement_after_use)
        available[wallet_id] += outcome.released
        entitlement.status = Entitlement.Status.EXHAUSTED
    event.balance_after = available[wallet_id]
    return None


def charge(
    merchant: Merchant,
    events: list[ResolvedEvent],
    now: datetime,
    locked: Balances | None = None,
    *,
    shared_transaction: bool = True,
) -> list[ResolvedEvent | ApiError]:
    """Price, check and write `events` in one transaction; returns, per event, itself or its refusal.

    `locked`: the wallet balance rows the caller locked already in this transaction (lookup).
    `shared_transaction`: see rows.prepare_rows.
    """
    outcomes: list[ResolvedEvent | ApiError] = list(events)
    prepared = None
    if all(priced_alone(event) for event in events):
        for event in events:
            price_event(merchant, event, NO_COUNTERS)
        prepared = prepare_rows(merchant, events, now, shared_transaction=shared_transaction)
    # With `locked`, inside the caller's transaction (record_one), which any error aborts as a
    # whole: no savepoint. Otherwise its own transaction, or a savepoint within a caller's, so
    # that a duplicate race can be retried.
    with transaction.atomic(savepoint=locked is None):
        wallets = {e.subscription.wallet_id: e.subscription.wallet for e in events}
        # Only the rows an event can debit: the available balance, and the held one of
        # wallets whose events name an entitlement.
        held_wallets = {e.subscription.wallet_id for e in events if e.entitlement is not None}
        needed = [(w.available_account_id, 0) for w in wallets.values()] + [
            (w.held_account_id, 0) for w in wallets.values() if w.id in held_wallets
        ]
        if locked is None:
            balances = lock_balances(needed)
        elif all(key in locked for key in needed):
            balances = locked
        else:
            # a subscription changed between the reads: start again from the lookup
            raise DuplicateRace()
        available = {w.id: balances[(w.available_account_id, 0)] for w in wallets.values()}
        minimums = {e.subscription.wallet_id: e.wallet_minimum for e in events}
        entitlement_ids = {e.entitlement.id for e in events if e.entitlement}
        locked_entitlements, items = lock_holds(entitlement_ids) if entitlement_ids else ({}, {})
        items_by_entitlement: dict[uuid.UUID, list[EntitlementItem]] = defaultdict(list)
        for item in items.values():
            items_by_entitlement[item.entitlement_id].append(item)
        keys = counter_keys(events)
        counters: Counters = period_counters(merchant, keys) if keys else {}
        touched_counters = set()

        for index, event in enumerate(events):
            if event.entitlement is not None:
                event.entitlement = locked_entitlements[event.entitlement.id]
                for line in event.lines:
                    line.entitlement_item = items[line.entitlement_item.id]
            pending_counters = NO_COUNTERS if prepared is not None else price_event(merchant, event, counters)
            if event.entitlement is not None:
                refusal = _use_hold(event, items_by_entitlement[event.entitlement.id], available, now)
                if refusal is not None:
                    outcomes[index] = refusal
                    continue
            else:
                wallet_id = event.subscription.wallet_id
                outcome = decide_wallet_charge(
                    amount=event.amount,
                    available=available[wallet_id],
                    minimum=minimums.get(wallet_id, ZERO),
                    currency=event.currency,
                )
                if isinstance(outcome, ApiError):
                    outcomes[index] = outcome
                    continue
                event.balance_after = available[wallet_id] = outcome
            counters.update(pending_counters)
            touched_counters.update(pending_counters)

        charged = [e for e in outcomes if isinstance(e, ResolvedEvent)]
        if not charged:
            return outcomes
        if prepared is None or len(charged) != len(events):
            # priced under the lock, or some refused: the rows are built (again) for what is charged
            prepared = prepare_rows(merchant, charged, now, shared_transaction=shared_transaction)
        write(merchant, prepared, counters, touched_counters, now)
    return outcomes
