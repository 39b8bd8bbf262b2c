"""Shared types of the pricing engine: strategies, results, errors and the one parser.

Every price model parses its `properties` through the helpers here, so the API's
validation and the engine's arithmetic read a price the same way: a price that
validates is a price that can be charged, and one that cannot be charged never
validates.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, ClassVar

from apps.core.money import (
    AMOUNT_DECIMAL_PLACES,
    AMOUNT_MAX_DIGITS,
    MONEY_CONTEXT,
    ZERO,
    format_decimal,
    parse_amount,
    round_amount,
)

INTEGER_DIGITS = AMOUNT_MAX_DIGITS - AMOUNT_DECIMAL_PLACES
INTEGER_LIMIT = Decimal(1).scaleb(INTEGER_DIGITS)
AMOUNT_EXAMPLE = 'a string such as "0.001"'


class PriceConfigError(ValueError):
    """A price's `properties` cannot be used; maps onto one entry of the API's `errors`."""

    def __init__(self, field: str, message: str, code: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message
        self.code = code

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message, "code": self.code}


@dataclass(frozen=True)
class TierCharge:
    """The part of a charge that fell in one tier.

    `flat_fee` is the fee charged by this result: a graduated tier's fee is charged
    once, by the event that first enters the tier, and is 0 in later events.
    """

    index: int
    units: Decimal
    unit_price: Decimal
    flat_fee: Decimal
    amount: Decimal


@dataclass(frozen=True)
class PricingResult:
    amount: Decimal
    billable_quantity: Decimal
    unit_price: Decimal
    tiers: tuple[TierCharge, ...] = ()


@dataclass(frozen=True)
class Tier:
    """One parsed tier: it prices the quantities in (lower, up_to]; `up_to` None is open."""

    index: int
    lower: Decimal
    up_to: Decimal | None
    unit_price: Decimal
    flat_fee: Decimal

    def to_properties(self) -> dict[str, str | None]:
        return {
            "upTo": None if self.up_to is None else format_decimal(self.up_to),
            "unitPrice": format_decimal(self.unit_price),
            "flatFee": format_decimal(self.flat_fee),
        }


class PricingStrategy(ABC):
    """One price model (Lago's charge-model strategies); the package's factory picks it."""

    name: ClassVar[str]

    @classmethod
    @abstractmethod
    def from_properties(cls, properties: Any) -> PricingStrategy:
        """Parse and validate API `properties`; raise PriceConfigError naming the field."""

    @abstractmethod
    def to_properties(self) -> dict[str, Any]:
        """The canonical `properties`: what is stored and returned by the API."""

    @abstractmethod
    def price(self, billable: Decimal, *, billable_before: Decimal) -> PricingResult:
        """Price `billable` units, run inside money_context().

        `billable_before` is the period's billable units already charged; only a
        model priced on the running total (graduated, package) reads it.
        """


@dataclass(frozen=True)
class TieredPricing(PricingStrategy):
    """The models priced by tiers (graduated, volume): they parse and store tiers alike."""

    tiers: tuple[Tier, ...]

    @classmethod
    def from_properties(cls, properties: Any) -> TieredPricing:
        return cls(tiers=parse_tiers(properties))

    def to_properties(self) -> dict[str, Any]:
        return {"tiers": [tier.to_properties() for tier in self.tiers]}


def pricing_result(
    *,
    amount: Decimal,
    billable: Decimal,
    tiers: tuple[TierCharge, ...] = (),
    exact_unit_price: Decimal | None = None,
) -> PricingResult:
    """Build a result; the unit price is derived from the amount unless one price applied."""
    if billable == 0:
        unit_price = ZERO
    elif exact_unit_price is not None:
        unit_price = exact_unit_price
    else:
        unit_price = round_amount(amount / billable)
    return PricingResult(amount=amount, billable_quantity=billable, unit_price=unit_price, tiers=tiers)


def read_object(
    value: Any,
    *,
    field: str,
    required: tuple[str, ...],
    optional: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Check an object's keys; unknown keys are refused so that a misspelt key is not lost."""
    allowed = required + optional
    if not isinstance(value, dict):
        raise PriceConfigError(
            field,
            f"{field} must be an object with {_names(allowed)}; got {_describe(value)}.",
            "INVALID_PROPERTIES",
        )
    for key in value:
        if key not in allowed:
            raise PriceConfigError(
                f"{field}.{key}",
                f"{field}.{key} is not recognized: {field} takes only {_names(allowed)}.",
                "UNKNOWN_FIELD",
            )
    for key in required:
        if value.get(key) is None:
            raise PriceConfigError(f"{field}.{key}", f"{field}.{key} is required.", "FIELD_REQUIRED")
    return value


def parse_decimal(raw: Any, *, field: str, code: str, example: str = AMOUNT_EXAMPLE) -> Decimal:
    """Parse a non-negative number that fits NUMERIC(38, 12), refusing floats."""
    if isinstance(raw, bool):
        raise PriceConfigError(field, f"{field} must be {example}, not {str(raw).lower()}.", code)
    if isinstance(raw, float):
        raise PriceConfigError(
            field,
            f"{field} must be {example}, not the JSON number {raw!r}: "
            "a floating-point number cannot hold every decimal exactly.",
            "FLOAT_NOT_ALLOWED",
        )
    try:
        value = parse_amount(raw, field=field)
    except ValueError as exc:
        raise PriceConfigError(field, f"{exc}.", code) from None
    if value < 0:
        raise PriceConfigError(field, f"{field} must be 0 or more; got {raw!r}.", code)
    # "-0" is 0: without its sign it is stored and priced as "0"
    value = value.copy_abs()
    if value.adjusted() >= INTEGER_LIMIT.adjusted() + 1:
        raise PriceConfigError(field, f"{field} is too large ({raw!r}); amounts have at most 26 integer digits.", code)
    fraction_digits = -value.normalize(MONEY_CONTEXT).as_tuple().exponent
    if fraction_digits > AMOUNT_DECIMAL_PLACES:
        raise PriceConfigError(
            field,
            f"{field} has {fraction_digits} digits after the decimal point ({raw!r}); "
            f"prices keep at most {AMOUNT_DECIMAL_PLACES}, so round it to {AMOUNT_DECIMAL_PLACES} places.",
            code,
        )
    if value >= INTEGER_LIMIT:
        raise PriceConfigError(
            field,
            f"{field} has more than {INTEGER_DIGITS} digits before the decimal point ({raw!r}).",
            code,
        )
    return value


def parse_optional_decimal(raw: Any, *, field: str, code: str) -> Decimal | None:
    return None if raw is None else parse_decimal(raw, field=field, code=code)


def parse_tiers(properties: Any) -> tuple[Tier, ...]:
    """Parse graduated and volume tiers: ascending, inclusive `upTo`, only the last one open."""
    props = read_object(properties, field="properties", required=("tiers",))
    raw_tiers = props["tiers"]
    if not isinstance(raw_tiers, list):
        raise PriceConfigError(
            "properties.tiers",
            f"properties.tiers must be a list of tiers; got {_describe(raw_tiers)}.",
            "INVALID_TIERS",
        )
    if not raw_tiers:
        raise PriceConfigError(
            "properties.tiers",
            'properties.tiers must list at least one tier, such as [{"upTo": null, "unitPrice": "0.001"}].',
            "TIERS_REQUIRED",
        )
    last = len(raw_tiers) - 1
    tiers: list[Tier] = []
    lower = ZERO
    for index, raw_tier in enumerate(raw_tiers):
        path = f"properties.tiers[{index}]"
        tier = read_object(raw_tier, field=path, required=("unitPrice",), optional=("upTo", "flatFee"))
        unit_price = parse_decimal(tier["unitPrice"], field=f"{path}.unitPrice", code="INVALID_UNIT_PRICE")
        flat_fee = parse_optional_decimal(tier.get("flatFee"), field=f"{path}.flatFee", code="INVALID_FLAT_FEE")
        up_to = _parse_up_to(tier.get("upTo"), index=index, last=last, previous=tiers[-1] if tiers else None)
        tiers.append(Tier(index, lower, up_to, unit_price, ZERO if flat_fee is None else flat_fee))
        if up_to is not None:
            lower = up_to
    return tuple(tiers)


def _parse_up_to(raw: Any, *, index: int, last: int, previous: Tier | None) -> Decimal | None:
    field = f"properties.tiers[{index}].upTo"
    if raw is None:
        if index != last:
            raise PriceConfigError(
                field,
                f"tiers[{index}] has no upTo but is not the last tier, so tiers[{index + 1}] and "
                f"any after it would never apply. Give tiers[{index}] an upTo, or remove the tiers after it: "
                "only the last tier may leave upTo empty.",
                "TIERS_GAP",
            )
        return None
    up_to = parse_decimal(raw, field=field, code="INVALID_UP_TO", example='a quantity such as "1000"')
    if previous is None and up_to == 0:
        raise PriceConfigError(
            field,
            "tiers[0].upTo must be greater than 0: the first tier starts above 0 units, "
            "so an upTo of 0 leaves it empty.",
            "INVALID_UP_TO",
        )
    if previous is not None and previous.up_to is not None and up_to <= previous.up_to:
        raise PriceConfigError(
            field,
            f"tiers[{index}] (upTo {format_decimal(up_to)}) overlaps tiers[{index - 1}] (upTo "
            f"{format_decimal(previous.up_to)}): each tier starts just above the previous tier's upTo, "
            f"so tiers[{index}].upTo must be greater than {format_decimal(previous.up_to)}.",
            "TIERS_OVERLAP",
        )
    if index == last:
        bound = format_decimal(up_to)
        raise PriceConfigError(
            field,
            f"tiers[{index}] is the last tier and ends at upTo {bound}, so quantities above {bound} "
            f"would have no price. Set tiers[{index}].upTo to null, or add a tier after it.",
            "TIERS_GAP",
        )
    return up_to


def _names(keys: tuple[str, ...]) -> str:
    return ", ".join(keys)


def _describe(value: Any) -> str:
    """Name a value the way an API client wrote it: in JSON terms."""
    if value is None:
        return "null"
    kinds = {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list", dict: "an object"}
    return f"{kinds.get(type(value), type(value).__name__)} {value!r}"
