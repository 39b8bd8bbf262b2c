"""Percentage pricing: a percent of the quantity (an amount, such as a payment's value).

The minimum charge applies only to billable quantities above 0, so that a period
or event without billable volume costs nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, ClassVar

from apps.catalog.pricing.base import (
    PriceConfigError,
    PricingResult,
    PricingStrategy,
    parse_decimal,
    parse_optional_decimal,
    pricing_result,
    read_object,
)
from apps.core.money import ZERO, format_decimal, round_amount

MAX_PERCENTAGE = Decimal(100)


@dataclass(frozen=True)
class PercentagePricing(PricingStrategy):
    name: ClassVar[str] = "percentage"

    percentage: Decimal
    min_charge: Decimal | None = None
    max_charge: Decimal | None = None

    @classmethod
    def from_properties(cls, properties: Any) -> PercentagePricing:
        props = read_object(
            properties, field="properties", required=("percentage",), optional=("minCharge", "maxCharge")
        )
        percentage = _parse_percentage(props["percentage"])
        min_charge = parse_optional_decimal(
            props.get("minCharge"), field="properties.minCharge", code="INVALID_MIN_CHARGE"
        )
        max_charge = parse_optional_decimal(
            props.get("maxCharge"), field="properties.maxCharge", code="INVALID_MAX_CHARGE"
        )
        if min_charge is not None and max_charge is not None and min_charge > max_charge:
            raise PriceConfigError(
                "properties.minCharge",
                f"properties.minCharge ({format_decimal(min_charge)}) must not be greater than "
                f"properties.maxCharge ({format_decimal(max_charge)}).",
                "MIN_CHARGE_ABOVE_MAX_CHARGE",
            )
        return cls(percentage=percentage, min_charge=min_charge, max_charge=max_charge)

    def to_properties(self) -> dict[str, Any]:
        return {
            "percentage": format_decimal(self.percentage),
            "minCharge": None if self.min_charge is None else format_decimal(self.min_charge),
            "maxCharge": None if self.max_charge is None else format_decimal(self.max_charge),
        }

    def price(self, billable: Decimal, *, billable_before: Decimal) -> PricingResult:
        if billable == 0:
            return pricing_result(amount=ZERO, billable=billable)
        rate = self.percentage.scaleb(-2)
        proportional = billable * rate
        charge = proportional
        if self.min_charge is not None and charge < self.min_charge:
            charge = self.min_charge
        if self.max_charge is not None and charge > self.max_charge:
            charge = self.max_charge
        return pricing_result(
            amount=round_amount(charge),
            billable=billable,
            exact_unit_price=rate if charge == proportional else None,
        )


def _parse_percentage(raw: Any) -> Decimal:
    field = "properties.percentage"
    percentage = parse_decimal(raw, field=field, code="INVALID_PERCENTAGE", example='a string such as "2.5"')
    if percentage == 0 or percentage > MAX_PERCENTAGE:
        raise PriceConfigError(
            field,
            f'{field} is a percent ("2.5" means 2.5%) and must be above 0 and at most 100; got {raw!r}.',
            "INVALID_PERCENTAGE",
        )
    return percentage
