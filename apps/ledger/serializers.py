"""Public shapes of wallets."""

from rest_framework import serializers

from apps.core.money import format_amount
from apps.ledger.selectors import WalletBalances


def wallet_data(wallet, balances: WalletBalances) -> dict:
    """A wallet as shown on customers and subscriptions: `balance` is the available balance."""
    return {
        "id": str(wallet.id),
        "object": "wallet",
        "livemode": wallet.merchant.livemode,
        "currency": wallet.currency,
        "balance": format_amount(balances.available, wallet.currency),
        "held": format_amount(balances.held, wallet.currency),
    }


class WalletSerializer(serializers.Serializer):
    """Schema of `wallet_data` (for the OpenAPI document)."""

    id = serializers.UUIDField()
    object = serializers.CharField()
    livemode = serializers.BooleanField()
    currency = serializers.CharField()
    balance = serializers.CharField(help_text="Available balance.")
    held = serializers.CharField(help_text="Reserved by entitlements.")
