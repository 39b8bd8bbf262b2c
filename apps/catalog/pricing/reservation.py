"""Holds: what the units an entitlement reserved cost, and what each use of them is charged.

An entitlement reserves `reserved` units of a metric at the price in force then. It keeps how
it priced them, a `Reservation`: the price's strategy (or a standard price at the per-unit
override it was given), the price's free units, and the period's running total of the price
when it reserved (`units_before`). Then

    R(u) = price_quantity(strategy, u, free_units=free_units, units_before=units_before).amount

is the price of its first u reserved units, and R(reserved) is what it reserved: a graduated
price reserves across its tiers from the running total of the time, a package price the
packages the reserved units start.

Usage consumes the reserved units in order, whatever happens to the price or its running
total meanwhile: q units after c units consumed are charged R(c + q) - R(c), never more than
the hold has left for them, and the use that takes all the units left is charged exactly what
is left. So the charges of a hold used up sum to exactly what it reserved, refunds in between
included (a refund gives its units and its amount back to the hold).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from apps.catalog.pricing.base import PricingResult, PricingStrategy, pricing_result
from apps.catalog.pricing.quantity import price_quantity, read_quantity
from apps.core.money import ZERO, money_context


@dataclass(frozen=True)
class Reservation:
    """How a hold priced its units: R(u) is `amount(u)`."""

    strategy: PricingStrategy
    free_units: Decimal = ZERO
    units_before: Decimal = ZERO

    def price(self, units: Decimal) -> PricingResult:
        """The price of the first `units` reserved units."""
        return price_quantity(self.strategy, units, free_units=self.free_units, units_before=self.units_before)

    def amount(self, units: Decimal) -> Decimal:
        """R(units)."""
        return self.price(units).amount


def reservation_charge(
    reservation: Reservation,
    *,
    reserved: Decimal,
    consumed: Decimal,
    quantity: Decimal,
    remaining_amount: Decimal,
) -> PricingResult:
    """What `quantity` more units of a hold cost, `consumed` of its `reserved` units used before.

    R(consumed + quantity) - R(consumed), at most `remaining_amount` (what the hold has left for
    these units) and at least 0; exactly `remaining_amount` when the quantity takes every unit
    left (more than that is the caller's to refuse: it is priced as every unit left).
    """
    reserved = read_quantity(reserved, "reserved")
    consumed = read_quantity(consumed, "consumed")
    quantity = read_quantity(quantity, "quantity")
    remaining_amount = read_quantity(remaining_amount, "remaining_amount")
    if consumed > reserved:
        raise ValueError(f"consumed ({consumed}) must not exceed reserved ({reserved})")
    end = min(consumed + quantity, reserved)
    before = reservation.price(consumed)
    after = reservation.price(end)
    with money_context():
        billable = after.billable_quantity - before.billable_quantity
        # the use that takes every unit left takes all the hold has left for them, so that the
        # charges of a hold used up sum to exactly what it reserved
        taken = remaining_amount if end == reserved else after.amount - before.amount
        return pricing_result(amount=min(max(ZERO, taken), remaining_amount), billable=billable)
