"""What a quantity costs under a parsed price, after the period's free units left."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from apps.catalog.pricing.base import PricingResult, PricingStrategy
from apps.core.money import ZERO, money_context


def price_quantity(
    strategy: PricingStrategy,
    quantity: Decimal,
    *,
    free_units: Decimal = ZERO,
    units_before: Decimal = ZERO,
) -> PricingResult:
    """Price `quantity` units charged now, after the period's free units left.

    `strategy` is a parsed price: `pricing_strategy(model, properties)`, or
    `price_strategy(price)` for a catalog Price. `units_before` is the period's
    total already charged before this quantity: it uses up free units first, and
    graduated tiers and packages continue from it. Pass 0 to price a whole period's aggregate.
    """
    quantity = read_quantity(quantity, "quantity")
    free_units = read_quantity(free_units, "free_units")
    units_before = read_quantity(units_before, "units_before")
    with money_context():
        free_left = max(ZERO, free_units - units_before)
        billable = max(ZERO, quantity - free_left)
        billable_before = max(ZERO, units_before - free_units)
        return strategy.price(billable, billable_before=billable_before)


def read_quantity(value: Any, name: str) -> Decimal:
    """A quantity given to the engine: a finite Decimal or int, 0 or more."""
    if isinstance(value, bool) or not isinstance(value, (Decimal, int)):
        raise TypeError(
            f"{name} must be a Decimal or an int, not {type(value).__name__}; "
            "build Decimals from strings, never from floats"
        )
    value = Decimal(value)
    if not value.is_finite():
        raise ValueError(f"{name} must be a finite number; got {value}")
    if value < 0:
        raise ValueError(f"{name} must be 0 or more; got {value}: a negative quantity cannot be priced")
    return value
