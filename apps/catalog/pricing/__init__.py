"""The pricing engine: what a quantity of usage costs under a price's model.

Pure Decimal functions, free of Django, shared by the API (validating a price's
`properties`), usage ingestion (instant charges against the period's running
total) and invoicing (a period's aggregate). One strategy module per model,
picked by name by `pricing_strategy`.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from apps.catalog.pricing.base import (
    PriceConfigError,
    PricingResult,
    PricingStrategy,
    TierCharge,
)
from apps.catalog.pricing.graduated import GraduatedPricing
from apps.catalog.pricing.package import PackagePricing
from apps.catalog.pricing.percentage import PercentagePricing
from apps.catalog.pricing.standard import StandardPricing
from apps.catalog.pricing.volume import VolumePricing
from apps.core.money import ZERO, money_context

__all__ = [
    "PRICE_MODELS",
    "PriceConfigError",
    "PricingResult",
    "PricingStrategy",
    "StandardPricing",
    "TierCharge",
    "price_line_amount",
    "price_quantity",
    "price_strategy",
    "pricing_strategy",
    "validate_properties",
]

STRATEGIES: dict[str, type[PricingStrategy]] = {
    strategy.name: strategy
    for strategy in (StandardPricing, GraduatedPricing, VolumePricing, PackagePricing, PercentagePricing)
}
PRICE_MODELS: tuple[str, ...] = tuple(STRATEGIES)


def pricing_strategy(model: str, properties: Any) -> PricingStrategy:
    """Parse `properties` with the strategy of `model`; raise PriceConfigError if unusable."""
    strategy = STRATEGIES.get(model) if isinstance(model, str) else None
    if strategy is None:
        raise PriceConfigError(
            "model",
            f"model must be one of {', '.join(PRICE_MODELS)}; got {model!r}.",
            "UNKNOWN_MODEL",
        )
    return strategy.from_properties(properties)


def validate_properties(model: str, properties: dict) -> dict:
    """Validate a price's `properties` as sent to the API; return the canonical copy to store."""
    return pricing_strategy(model, properties).to_properties()


def price_strategy(price: Any) -> PricingStrategy:
    """The parsed strategy of a catalog Price.

    The plan price cache (apps.subscriptions.selectors.plan_metric_prices) parses each
    price once as it loads it and keeps the strategy on it as `parsed_strategy`; a
    Price loaded anywhere else is parsed now.
    """
    strategy = getattr(price, "parsed_strategy", None)
    if strategy is None:
        strategy = pricing_strategy(price.model, price.properties)
    return strategy


def price_line_amount(price: Any, quantity: Decimal, override: Decimal | None, units_before: Decimal) -> PricingResult:
    """Price `quantity` units of a catalog Price charged now.

    `override` is a per-unit price set by the event (or by the entitlement that
    reserved the units): it replaces the price's model, while the price's free
    units still apply.
    """
    strategy = price_strategy(price) if override is None else StandardPricing(unit_price=override)
    return price_quantity(strategy, quantity, free_units=price.free_units, units_before=units_before)


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
    quantity = _quantity(quantity, "quantity")
    free_units = _quantity(free_units, "free_units")
    units_before = _quantity(units_before, "units_before")
    with money_context():
        free_left = max(ZERO, free_units - units_before)
        billable = max(ZERO, quantity - free_left)
        billable_before = max(ZERO, units_before - free_units)
        return strategy.price(billable, billable_before=billable_before)


def _quantity(value: Any, name: str) -> Decimal:
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
