"""Graduated pricing: each unit at the price of the tier its place in the period falls in.

A graduated price is defined on the period's running total: the first 100 units
of a month cost one price, the next ones another, whatever the events that
carried them. An instant charge is therefore the difference of the cumulative
price after and before the event, so an event crossing a tier boundary is split
across the tiers.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import ClassVar

from apps.catalog.pricing.base import (
    PricingResult,
    TierCharge,
    TieredPricing,
    pricing_result,
)
from apps.core.money import ZERO, round_amount


@dataclass(frozen=True)
class GraduatedPricing(TieredPricing):
    name: ClassVar[str] = "graduated"

    def cumulative_price(self, units: Decimal) -> Decimal:
        """G(units): the exact price of a period's first `units` billable units.

        A tier's flat fee is part of G from the first quantity above the tier's
        lower bound, so it is charged once, by whichever event enters the tier.
        """
        total = ZERO
        for tier in self.tiers:
            if units <= tier.lower:
                break
            top = units if tier.up_to is None else min(units, tier.up_to)
            total += (top - tier.lower) * tier.unit_price + tier.flat_fee
        return total

    def rounded_cumulative_price(self, units: Decimal) -> Decimal:
        """G rounded once; charges are differences of these, so they telescope.

        Rounding G(after) and G(before) rather than their difference makes the
        instant charges of a period add up to exactly the period's price, even
        when fractional quantities leave more than 12 places to round.
        """
        return round_amount(self.cumulative_price(units))

    def price(self, billable: Decimal, *, billable_before: Decimal) -> PricingResult:
        if billable == 0:
            return pricing_result(amount=ZERO, billable=billable)
        start = billable_before
        end = billable_before + billable
        charges = []
        for tier in self.tiers:
            if end <= tier.lower:
                break
            if tier.up_to is not None and tier.up_to <= start:
                continue
            segment_start = max(start, tier.lower)
            segment_end = end if tier.up_to is None else min(end, tier.up_to)
            charges.append(
                TierCharge(
                    index=tier.index,
                    units=segment_end - segment_start,
                    unit_price=tier.unit_price,
                    flat_fee=tier.flat_fee if start <= tier.lower else ZERO,
                    amount=self.rounded_cumulative_price(segment_end) - self.rounded_cumulative_price(segment_start),
                )
            )
        single_price = len(charges) == 1 and charges[0].flat_fee == 0
        return pricing_result(
            amount=self.rounded_cumulative_price(end) - self.rounded_cumulative_price(start),
            billable=billable,
            tiers=tuple(charges),
            exact_unit_price=charges[0].unit_price if single_price else None,
        )
