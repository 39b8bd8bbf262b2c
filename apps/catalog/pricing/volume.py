"""Volume pricing: the whole quantity at the price of the tier that quantity falls in.

Unlike graduated pricing there is no running total: the quantity given (usually
a period's aggregate) selects one tier, and every unit costs that tier's price.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import ClassVar

from apps.catalog.pricing.base import (
    PricingResult,
    Tier,
    TierCharge,
    TieredPricing,
    pricing_result,
)
from apps.core.money import ZERO, round_amount


@dataclass(frozen=True)
class VolumePricing(TieredPricing):
    name: ClassVar[str] = "volume"

    def tier_for(self, quantity: Decimal) -> Tier:
        """The tier pricing `quantity`; parsing guarantees the last tier is open-ended."""
        return next(tier for tier in self.tiers if tier.up_to is None or quantity <= tier.up_to)

    def price(self, billable: Decimal, *, billable_before: Decimal) -> PricingResult:
        if billable == 0:
            return pricing_result(amount=ZERO, billable=billable)
        tier = self.tier_for(billable)
        amount = round_amount(billable * tier.unit_price + tier.flat_fee)
        charge = TierCharge(
            index=tier.index,
            units=billable,
            unit_price=tier.unit_price,
            flat_fee=tier.flat_fee,
            amount=amount,
        )
        return pricing_result(
            amount=amount,
            billable=billable,
            tiers=(charge,),
            exact_unit_price=tier.unit_price if tier.flat_fee == 0 else None,
        )
