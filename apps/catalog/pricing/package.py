"""Package pricing: units sold in packages of a fixed size; a started package is paid whole.

Packages are counted over the period's running total, like graduated tiers: an instant
charge is the packages started after the event less those started before it, so 100
one-unit events on "100 units for 1.00" cost 1.00 in all, the first of them paying the
package.
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
    pricing_result,
    read_object,
)
from apps.core.money import format_decimal, round_amount


@dataclass(frozen=True)
class PackagePricing(PricingStrategy):
    name: ClassVar[str] = "package"

    package_size: int
    package_price: Decimal

    @classmethod
    def from_properties(cls, properties: Any) -> PackagePricing:
        props = read_object(properties, field="properties", required=("packageSize", "packagePrice"))
        return cls(
            package_size=_parse_package_size(props["packageSize"]),
            package_price=parse_decimal(
                props["packagePrice"], field="properties.packagePrice", code="INVALID_PACKAGE_PRICE"
            ),
        )

    def to_properties(self) -> dict[str, Any]:
        return {"packageSize": self.package_size, "packagePrice": format_decimal(self.package_price)}

    def packages(self, billable: Decimal) -> Decimal:
        """Packages started by `billable` units, by exact integer division (no rounding)."""
        full, rest = divmod(billable, self.package_size)
        return full + 1 if rest else full

    def cumulative_price(self, units: Decimal) -> Decimal:
        """P(units): the price of a period's first `units` billable units, rounded once."""
        return round_amount(self.packages(units) * self.package_price)

    def price(self, billable: Decimal, *, billable_before: Decimal) -> PricingResult:
        return pricing_result(
            amount=self.cumulative_price(billable_before + billable) - self.cumulative_price(billable_before),
            billable=billable,
        )


def _parse_package_size(raw: Any) -> int:
    field = "properties.packageSize"
    size = parse_decimal(raw, field=field, code="INVALID_PACKAGE_SIZE", example="a whole number such as 100")
    if size != size.to_integral_value() or size == 0:
        raise PriceConfigError(
            field,
            f"{field} must be a whole number of units, 1 or more, such as 100; got {raw!r}.",
            "INVALID_PACKAGE_SIZE",
        )
    return int(size)
