"""Pricing each line of a resolved event, and the period's running totals it moves.

A line from an entitlement is charged what the hold reserved for its units; a line whose price
is billed at the period's end (in_arrears, in_advance) is recorded without an amount; any other
is priced now by the catalog's pricing engine, graduated tiers, packages and free units
continuing from the period's running total of its price (`Counters`, read under the wallets'
lock, see `lookup.period_counters`). The event's amount is the sum of its lines, split into the
platform's commission and the merchant's revenue. Nothing here reads or writes the database.
"""

from decimal import Decimal

from apps.catalog.models import PaymentTerm
from apps.catalog.pricing import price_line_amount
from apps.core.money import ZERO, round_amount, split_commission
from apps.entitlements.services import entitlement_item_charge
from apps.merchants.models import Merchant
from apps.usage.pricing import needs_counter
from apps.usage.services.charging.lookup import CounterKey, Counters
from apps.usage.services.charging.resolve import ResolvedEvent, ResolvedLine

# The running totals of events priced before any is read (see `priced_alone`): none.
NO_COUNTERS: Counters = {}


def price_line(line: ResolvedLine, units_before: Decimal) -> None:
    """Set the line's unit price, amount and payment term; `units_before`: the period's
    running total of its price before it."""
    if line.entitlement_item is not None:
        # charged now from the hold, what it reserved for these units (whatever the price became)
        result = entitlement_item_charge(line.entitlement_item, line.quantity)
        line.payment_term = PaymentTerm.INSTANT
    elif line.price.payment_term != PaymentTerm.INSTANT:
        line.unit_price = None
        line.amount = None
        line.payment_term = line.price.payment_term
        return
    else:
        result = price_line_amount(line.price, line.quantity, line.unit_price_override, units_before)
        line.payment_term = PaymentTerm.INSTANT
    line.amount = result.amount
    line.unit_price = round_amount(result.unit_price)


def priced_alone(event: ResolvedEvent) -> bool:
    """Whether the event's price depends on nothing a lock guards: no hold, no running total."""
    return event.entitlement is None and not any(needs_counter(line.price) for line in event.lines)


def counter_keys(events: list[ResolvedEvent]) -> set[CounterKey]:
    """The running totals the events' lines continue from."""
    return {
        (e.subscription.id, line.price.id, e.period_start)
        for e in events
        for line in e.lines
        if needs_counter(line.price)
    }


def price_event(merchant: Merchant, event: ResolvedEvent, counters: Counters) -> Counters:
    """Price the event's lines (graduated tiers, packages and free units continue from `counters`)
    and split its total; returns the running totals it moves (counted once it is charged)."""
    pending: Counters = {}
    for line in event.lines:
        key = (event.subscription.id, line.price.id, event.period_start)
        before = pending.get(key, counters.get(key, ZERO))
        price_line(line, before)
        if needs_counter(line.price):
            pending[key] = before + line.quantity
    event.amount = sum((line.amount for line in event.lines if line.amount is not None), ZERO)
    event.commission, event.owner_revenue = split_commission(event.amount, merchant.commission_rate)
    return pending
