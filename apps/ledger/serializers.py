"""Public shapes of wallets and adjustments."""

from rest_framework import serializers

from apps.core.money import format_amount
from apps.ledger.selectors import WalletBalances


def wallet_data(wallet, balances: WalletBalances) -> dict:
    """A wallet as shown on customers and subscriptions: `balance` is the available balance."""
    return {
        "id": str(wallet.id),
        "object": "wallet",
        "currency": wallet.currency,
        "balance": format_amount(balances.available, wallet.currency),
        "held": format_amount(balances.held, wallet.currency),
    }


class WalletSerializer(serializers.Serializer):
    """Schema of `wallet_data` (for the OpenAPI document)."""

    id = serializers.UUIDField()
    object = serializers.CharField()
    currency = serializers.CharField()
    balance = serializers.CharField(help_text="Available balance.")
    held = serializers.CharField(help_text="Reserved by entitlements.")


class AdjustmentSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    object = serializers.SerializerMethodField()
    livemode = serializers.BooleanField()
    customerId = serializers.UUIDField(source="customer_id")
    walletId = serializers.UUIDField(source="wallet_id")
    amount = serializers.SerializerMethodField()
    currency = serializers.CharField()
    reason = serializers.CharField()
    ledgerTransactionId = serializers.UUIDField(source="ledger_transaction_id")
    createdAt = serializers.DateTimeField(source="created_at")

    def get_object(self, obj) -> str:
        return "adjustment"

    def get_amount(self, obj) -> str:
        return format_amount(obj.amount, obj.currency)
