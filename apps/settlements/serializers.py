"""Public shapes of settlements and wallet addresses (API and outbound webhooks)."""

from rest_framework import serializers

from apps.core.formats import iso
from apps.core.money import format_amount
from apps.settlements.models import Settlement, WalletAddress


def settlement_data(settlement: Settlement) -> dict:
    return {
        "id": str(settlement.id),
        "object": "settlement",
        "livemode": settlement.merchant.livemode,
        "status": settlement.status,
        "chain": settlement.chain,
        "chainId": settlement.chain_id,
        "transactionHash": settlement.transaction_hash,
        "referenceHash": settlement.reference_hash,
        "payerAddress": settlement.payer_address,
        "merchantAddress": settlement.merchant_address,
        "invoiceId": str(settlement.invoice_id) if settlement.invoice_id else None,
        "paymentSessionId": str(settlement.session_id),
        "customerId": str(settlement.customer_id),
        "confirmations": settlement.confirmations,
        "requiredConfirmations": settlement.required_confirmations,
        "blockNumber": settlement.block_number,
        "amount": None if settlement.amount is None else format_amount(settlement.amount, "USDC"),
        "failureReason": settlement.failure_reason or None,
        "paymentId": str(settlement.payment_id) if settlement.payment_id else None,
        "createdAt": iso(settlement.created_at),
        "confirmedAt": iso(settlement.confirmed_at),
        "failedAt": iso(settlement.failed_at),
        "updatedAt": iso(settlement.updated_at),
    }


class SettlementSchema(serializers.Serializer):
    """Schema of `settlement_data` (for the OpenAPI document)."""

    id = serializers.UUIDField()
    object = serializers.CharField()
    livemode = serializers.BooleanField()
    status = serializers.ChoiceField(choices=Settlement.Status.choices)
    chain = serializers.CharField()
    chainId = serializers.IntegerField()
    transactionHash = serializers.CharField()
    referenceHash = serializers.CharField()
    payerAddress = serializers.CharField()
    merchantAddress = serializers.CharField()
    invoiceId = serializers.UUIDField(allow_null=True)
    paymentSessionId = serializers.UUIDField()
    customerId = serializers.UUIDField()
    confirmations = serializers.IntegerField()
    requiredConfirmations = serializers.IntegerField()
    blockNumber = serializers.IntegerField(allow_null=True)
    amount = serializers.CharField(allow_null=True, help_text="What the matching Transfer logs moved, in USDC.")
    failureReason = serializers.ChoiceField(choices=Settlement.FailureReason.choices, allow_null=True)
    paymentId = serializers.UUIDField(allow_null=True)
    createdAt = serializers.DateTimeField()
    confirmedAt = serializers.DateTimeField(allow_null=True)
    failedAt = serializers.DateTimeField(allow_null=True)
    updatedAt = serializers.DateTimeField()

    class Meta:
        ref_name = "Settlement"


def wallet_address_data(row: WalletAddress) -> dict:
    return {
        "id": str(row.id),
        "object": "walletAddress",
        "livemode": row.livemode,
        "address": row.address,
        "customerId": str(row.customer_id),
        "createdAt": iso(row.created_at),
    }


class WalletAddressSchema(serializers.Serializer):
    id = serializers.UUIDField()
    object = serializers.CharField()
    livemode = serializers.BooleanField()
    address = serializers.CharField()
    customerId = serializers.UUIDField()
    createdAt = serializers.DateTimeField()

    class Meta:
        ref_name = "WalletAddress"


class ChainSchema(serializers.Serializer):
    object = serializers.CharField()
    name = serializers.CharField()
    chainId = serializers.IntegerField()
    token = serializers.CharField(help_text="The chain's USDC contract.")
    requiredConfirmations = serializers.IntegerField()
    recipient = serializers.CharField(help_text="The platform's collection address: where USDC is sent.")

    class Meta:
        ref_name = "Chain"
