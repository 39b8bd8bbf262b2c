from rest_framework import serializers

from apps.core.formats import iso, quantity_str
from apps.core.money import format_amount


def entitlement_data(entitlement) -> dict:
    items = sorted(entitlement.items.all(), key=lambda item: str(item.billable_metric_id))
    currency = entitlement.currency
    return {
        "id": str(entitlement.id),
        "object": "entitlement",
        "livemode": entitlement.merchant.livemode,
        "customerId": str(entitlement.customer_id),
        "subscriptionId": str(entitlement.subscription_id),
        "walletId": str(entitlement.wallet_id),
        "status": entitlement.status,
        "currency": currency,
        "reservedAmount": format_amount(entitlement.reserved_amount, currency),
        "remainingBalance": format_amount(entitlement.remaining_amount, currency),
        "remainingQuantity": quantity_str(items[0].remaining_quantity) if len(items) == 1 else None,
        "usedCount": entitlement.used_count,
        "maxUses": entitlement.max_uses,
        "expiresAt": iso(entitlement.expires_at),
        "releasedAt": iso(entitlement.released_at),
        "entitlementData": [
            {
                "billableMetricId": str(item.billable_metric_id),
                "priceId": str(item.price_id),
                "quantity": quantity_str(item.quantity),
                "remainingQuantity": quantity_str(item.remaining_quantity),
                "price": format_amount(item.unit_price_override, currency),
                "reservedAmount": format_amount(item.reserved_amount, currency),
                "remainingBalance": format_amount(item.remaining_amount, currency),
            }
            for item in items
        ],
        "createdAt": iso(entitlement.created_at),
    }


class EntitlementItemSchema(serializers.Serializer):
    billableMetricId = serializers.UUIDField()
    priceId = serializers.UUIDField()
    quantity = serializers.CharField()
    remainingQuantity = serializers.CharField()
    price = serializers.CharField(allow_null=True)
    reservedAmount = serializers.CharField()
    remainingBalance = serializers.CharField(help_text="What this metric may still draw from the hold.")


class EntitlementSchema(serializers.Serializer):
    """Schema of `entitlement_data` (for the OpenAPI document)."""

    id = serializers.UUIDField()
    object = serializers.CharField()
    livemode = serializers.BooleanField()
    customerId = serializers.UUIDField()
    subscriptionId = serializers.UUIDField()
    walletId = serializers.UUIDField()
    status = serializers.CharField()
    currency = serializers.CharField()
    reservedAmount = serializers.CharField()
    remainingBalance = serializers.CharField(help_text="The amount left on the hold.")
    remainingQuantity = serializers.CharField(allow_null=True, help_text="Units left, when one metric is reserved.")
    usedCount = serializers.IntegerField()
    maxUses = serializers.IntegerField(allow_null=True)
    expiresAt = serializers.DateTimeField()
    releasedAt = serializers.DateTimeField(allow_null=True)
    entitlementData = EntitlementItemSchema(many=True)
    createdAt = serializers.DateTimeField()
