"""The pricing engine: what a quantity of usage costs under a price's model.

Pure Decimal functions, free of Django, shared by the API (validating a price's
`properties`), usage ingestion (instant charges against the period's running
total), entitlements (what a hold reserves, and what each use of it is charged)
and invoicing (a period's aggregate). One strategy module per model,
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
from apps.catalog.pricing.quantity import price_quantity
from apps.catalog.pricing.reservation import Reservation, reservation_charge
from apps.catalog.pricing.standard import StandardPricing
from apps.catalog.pricing.volume import VolumePricing

__all__ = [
    "PRICE_MODELS",
    "PriceConfigError",
    "PricingResult",
    "PricingStrategy",
    "Reservation",
    "StandardPricing",
    "TierCharge",
    "price_line_amount",
    "price_quantity",
    "price_reservation",
    "price_strategy",
    "pricing_strategy",
    "reservation_charge",
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

    `override` is a per-unit price set by the event: it replaces the price's
    model, while the price's free units still apply. (Usage from an entitlement
    is charged by what the entitlement reserved: see `price_reservation`.)
    """
    strategy = price_strategy(price) if override is None else StandardPricing(unit_price=override)
    return price_quantity(strategy, quantity, free_units=price.free_units, units_before=units_before)


def price_reservation(price: Any, override: Decimal | None, units_before: Decimal) -> Reservation:
    """How an entitlement reserves units of a catalog Price now: the price's strategy, or a
    standard price at `override` (the per-unit price the entitlement was given), with the
    price's free units, after the period's `units_before` units already charged. What it
    reserves for `quantity` units is `reservation.amount(quantity)`, the same amount as
    `price_line_amount(price, quantity, override, units_before)`."""
    strategy = price_strategy(price) if override is None else StandardPricing(unit_price=override)
    return Reservation(strategy=strategy, free_units=price.free_units, units_before=units_before)
