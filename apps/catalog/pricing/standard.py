"""Standard pricing: every billable unit at one unit price."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, ClassVar

from apps.catalog.pricing.base import (
    PricingResult,
    PricingStrategy,
    parse_decimal,
    pricing_result,
    read_object,
)
from apps.core.money import format_decimal, round_amount


@dataclass(frozen=True)
class StandardPricing(PricingStrategy):
    name: ClassVar[str] = "standard"

    unit_price: Decimal

    @classmethod
    def from_properties(cls, properties: Any) -> StandardPricing:
        props = read_object(properties, field="properties", required=("unitPrice",))
        return cls(
            unit_price=parse_decimal(props["unitPrice"], field="properties.unitPrice", code="INVALID_UNIT_PRICE")
        )

    def to_properties(self) -> dict[str, Any]:
        return {"unitPrice": format_decimal(self.unit_price)}

    def price(self, billable: Decimal, *, billable_before: Decimal) -> PricingResult:
        return pricing_result(
            amount=round_amount(billable * self.unit_price),
            billable=billable,
            exact_unit_price=self.unit_price,
        )
