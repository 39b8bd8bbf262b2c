"""A customer's billing settings per wallet currency, as values (no ORM).

The contract's `billingSettings` is a map keyed by currency:
`{"USDC": {"lowBalanceThreshold": "5.00", "autoRecharge": {"enabled": true, "threshold": "10",
"amount": "50"}}}`. Each currency's settings are one `CurrencyBillingSettings`; the rules here are
the ones the input serializers (apps.customers.inputs) report field by field, kept again so that
no caller can store settings that break them.
"""

from dataclasses import dataclass
from decimal import Decimal

from apps.core.fields import Currency
from apps.core.money import ZERO, amount_digits_problem, currency_decimals, round_to_minor_unit

SUPPORTED_CURRENCIES = tuple(Currency.values)
# Auto-recharge charges the saved card, and cards are in USD (apps.cards.stripe_client.CARD_CURRENCY;
# tests/cards/test_auto_recharge.py checks that the two agree).
AUTO_RECHARGE_CURRENCY = "USD"


@dataclass(frozen=True)
class CurrencyBillingSettings:
    """`low_balance_threshold`: below it the merchant hears wallet.low_balance (None: never).
    Auto-recharge, when enabled, charges `auto_recharge_amount` to the saved card once the
    available balance falls below `auto_recharge_threshold` (threshold and a positive amount
    are then required, and the wallet must be in USD; kept, unused, while disabled)."""

    low_balance_threshold: Decimal | None = None
    auto_recharge_enabled: bool = False
    auto_recharge_threshold: Decimal | None = None
    auto_recharge_amount: Decimal | None = None

    def problems(self, currency: str) -> list[tuple[str, str]]:
        """(field path, message) of each rule broken, in the contract's field names."""
        if currency not in SUPPORTED_CURRENCIES:
            return [("", f"{currency!r} is not a supported currency (one of {', '.join(SUPPORTED_CURRENCIES)})")]
        found = []
        for path, value in (
            ("lowBalanceThreshold", self.low_balance_threshold),
            ("autoRecharge.threshold", self.auto_recharge_threshold),
            ("autoRecharge.amount", self.auto_recharge_amount),
        ):
            if value is None:
                continue
            if not isinstance(value, Decimal):
                found.append((path, f"must be a Decimal, not {type(value).__name__}"))
            elif value < ZERO or amount_digits_problem(value):
                found.append((path, "must be a non-negative amount with at most 12 decimal places"))
        if found:
            return found
        amount = self.auto_recharge_amount
        if amount is not None and round_to_minor_unit(amount, currency) != amount:
            places = currency_decimals(currency)
            found.append(
                ("autoRecharge.amount", f"is charged to a card: at most {places} decimal places in {currency}")
            )
        if self.auto_recharge_enabled:
            if currency != AUTO_RECHARGE_CURRENCY:
                found.append(
                    (
                        "autoRecharge.enabled",
                        f"auto-recharge charges the saved card, and cards pay in {AUTO_RECHARGE_CURRENCY}: "
                        f"it cannot be enabled for the {currency} wallet",
                    )
                )
            if self.auto_recharge_threshold is None:
                found.append(("autoRecharge.threshold", "is required when autoRecharge is enabled"))
            if amount is None or amount <= ZERO:
                found.append(("autoRecharge.amount", "must be greater than 0 when autoRecharge is enabled"))
        return found

    def check(self, currency: str) -> None:
        problems = self.problems(currency)
        if problems:
            raise ValueError("; ".join(f"{currency}.{path}: {message}" for path, message in problems))
